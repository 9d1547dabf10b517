//! A service's desired count under `berth up`: set by hand (`berth
//! scale`) or by auto scaling's decision, applied by core's scaling of the
//! claims, kept in the state folder for the next start, and kept equal to
//! the count auto scaling works from (the service record's).

use berth_core::ledger::{EventRecord, Expect, Ledger};
use chrono::Utc;

use super::{scale_file, Platform, PlatformError};
use crate::host::HostRuntime;

impl<R: HostRuntime> Platform<R> {
    /// Sets a service's desired count (kept across restarts) and applies it.
    pub async fn scale(&self, service: &str, count: u32) -> Result<bool, PlatformError> {
        let Some(spec) = self.controller.services().into_iter().find(|s| s.name == service) else {
            return Ok(false);
        };
        self.keep_autoscaled_count(service, count).await?;
        self.apply_count(service, spec.desired_count, count).await
    }

    /// Brings a service's claims to `count` (from `before`), kept in the
    /// state folder for the next `berth up`.
    pub(super) async fn apply_count(&self, service: &str, before: u32, count: u32) -> Result<bool, PlatformError> {
        let Some(mut spec) = self.controller.services().into_iter().find(|s| s.name == service) else {
            return Ok(false);
        };
        spec.desired_count = count;
        self.controller.set_service(spec);
        scale_file::write(&self.state, service, count)?;
        self.controller.scale_services().await?;
        let mut event = EventRecord::new(Utc::now(), None, "service-scaled", format!("{service}: {before} → {count}"));
        event.data = serde_json::json!({ "service": service, "from": before, "to": count });
        self.controller.log(event).await;
        self.wake_all().await?;
        Ok(true)
    }

    /// Keeps the count auto scaling works from (the service record's, which
    /// the next `berth up` starts from too) equal to a count set by hand;
    /// a service without auto scaling has none.
    async fn keep_autoscaled_count(&self, service: &str, count: u32) -> Result<(), PlatformError> {
        let enabled = self.config.services.iter().any(|s| s.name == service && s.autoscaling.enabled);
        for _ in 0..8 {
            let Some(mut record) = self.ledger.service(service).await? else { return Ok(()) };
            let wanted = enabled.then_some(count);
            if record.autoscaled_count == wanted {
                return Ok(());
            }
            record.autoscaled_count = wanted;
            match self.ledger.put_service(&record, Expect::Version(record.version)).await {
                Ok(_) => return Ok(()),
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(PlatformError::ServiceBusy(service.to_owned()))
    }

    /// Sets a desired count by hand (`berth scale`): 0 or within the
    /// service's auto scaling bounds, which would otherwise undo it.
    pub async fn scale_by_user(&self, service: &str, count: u32) -> Result<bool, PlatformError> {
        if let Some(s) = self.config.services.iter().find(|s| s.name == service && s.autoscaling.enabled) {
            s.autoscaling.policy().admits(count)?;
        }
        self.scale(service, count).await
    }
}
