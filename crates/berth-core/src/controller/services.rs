//! The controller's service-level work: the services it knows, their
//! counts (scaling), deployments (one claim at a time) and auto scaling.
//! Each rule is a pure decider ([`crate::service::scale`],
//! [`crate::deploy::rollout`], [`crate::autoscale::decide`]); this carries
//! their results out through the ledger.

use super::*;

impl<R: Runtime, V: Volumes, L: Ledger> Controller<R, V, L> {
    pub fn services(&self) -> Vec<ServiceSpec> {
        self.services.lock().expect("services lock").clone()
    }

    /// Replaces a service's spec (a new desired count or task definition).
    pub fn set_service(&self, spec: ServiceSpec) {
        let mut services = self.services.lock().expect("services lock");
        match services.iter_mut().find(|s| s.name == spec.name) {
            Some(s) => *s = spec,
            None => services.push(spec),
        }
    }

    /// Gives the service of a record its active and other revisions (a
    /// deployment's, as the ledger holds them); a service not configured
    /// here is left alone.
    pub fn apply_service_record(&self, record: &ServiceRecord) {
        let Some(mut spec) = self.services().into_iter().find(|s| s.name == record.name) else { return };
        let Some(active) = record.active_definition() else { return };
        spec.definition = active.clone();
        spec.revisions = record.revisions.clone();
        if let Some(count) = record.autoscaled_count {
            spec.desired_count = count;
        }
        self.set_service(spec);
    }

    /// Where the runtime registers revisions itself (ECS), brings the
    /// service's record in line with `configured`, the revision the stack
    /// hands over ([`ServiceRecord::follow`]): the first record keeps its
    /// number, a new revision starts a deployment, and the record (read
    /// once here) gives the controller the service's revisions. Returns
    /// the revision a deployment started to. A lost compare-and-swap or a
    /// deployment still under way leaves it to the next look.
    pub async fn follow_registered(
        &self,
        service: &str,
        configured: &TaskDefinition,
        timeout: Duration,
    ) -> Result<Option<u32>, ControllerError> {
        let (mut record, expect) = ServiceRecord::or_first(self.ledger.service(service).await?, service, configured);
        let before = record.clone();
        let started = match record.follow(configured.clone(), timeout, self.now()) {
            Ok(started) => started,
            Err(e) => {
                tracing::info!(service, error = %e, "a new revision waits for the deployment under way");
                self.apply_service_record(&record);
                return Ok(None);
            }
        };
        if expect != Expect::Absent && record == before {
            // Nothing new: no write.
            self.apply_service_record(&record);
            return Ok(None);
        }
        match self.ledger.put_service(&record, expect).await {
            Ok(stored) => self.apply_service_record(&stored),
            Err(e) if e.is_conflict() => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        if let Some(to) = started {
            let message = format!("{service}: revision {to} registered; deploying it one claim at a time");
            let mut event = EventRecord::new(self.now(), None, "deploy-started", message);
            event.data = serde_json::json!({ "service": service, "to": to });
            self.log(event).await;
        }
        Ok(started)
    }

    /// One target-tracking decision for a service whose desired count and
    /// cooldowns live in its service record (the Lambda, where nothing
    /// stays in memory between decisions): [`crate::autoscale::decide`] on
    /// `usage` from the record's count (the configured one before the
    /// first decision), the new count and activity written back with a
    /// compare-and-swap, then taken by the service's spec, so the next
    /// [`Self::scale_services`] creates, resumes or parks claims to match.
    /// `None` when the service is not configured, or when another
    /// controller wrote the record meanwhile (it decided on the same
    /// readings; the next look decides again).
    pub async fn autoscale(
        &self,
        service: &str,
        policy: &ScalingPolicy,
        usage: &[TaskUsage],
    ) -> Result<Option<ScalingDecision>, ControllerError> {
        let Some(spec) = self.services().into_iter().find(|s| s.name == service) else { return Ok(None) };
        let (record, expect) = ServiceRecord::or_first(self.ledger.service(service).await?, service, &spec.definition);
        let current = record.autoscaled_count.unwrap_or(spec.desired_count);
        let now = self.now();
        let decision = decide(policy, current, usage, &record.scaling, now);
        let plan = crate::autoscale::plan(record, expect, current, &decision, usage, now);
        match self.carry_out(plan).await?.lost {
            0 => Ok(Some(decision)),
            _ => Ok(None),
        }
    }

    /// Takes one step of a service's deployment, if one is under way (see
    /// [`crate::deploy::rollout`]): writes the service record, then the
    /// claims it moves, and returns those claims, which the caller
    /// reconciles next. A lost compare-and-swap is no error: the next look
    /// plans again.
    pub async fn step_rollout(&self, service: &str) -> Result<Vec<ClaimName>, ControllerError> {
        let Some(record) = self.ledger.service(service).await? else { return Ok(Vec::new()) };
        if !record.in_progress() {
            return Ok(Vec::new());
        }
        let claims = self.ledger.claims().await?;
        let plan = rollout(&record, &claims, self.now()).into_plan(&record);
        Ok(self.carry_out(plan).await?.written)
    }

    /// Brings each service's claims in line with its desired count. Called
    /// at start and when a count changes, not on every resync: a claim a
    /// user parked by stopping its task stays parked until then. So a change
    /// that loses its compare-and-swap (a handoff wrote the claim meanwhile)
    /// is decided again at once from what the ledger now holds: no later
    /// pass would make it, and the service would run above or below its count.
    pub async fn scale_services(&self) -> Result<(), ControllerError> {
        for _ in 0..MAX_STEPS {
            if !self.scale_pass().await? {
                return Ok(());
            }
        }
        Err(ControllerError::ScaleContended(MAX_STEPS))
    }

    /// One pass of [`Self::scale_services`]; returns whether a change lost
    /// its compare-and-swap.
    async fn scale_pass(&self) -> Result<bool, ControllerError> {
        let claims = self.ledger.claims().await?;
        let mut lost = false;
        for service in self.services() {
            let plan = scale_plan(&service, &claims, self.now()).map_err(|e| PortError::permanent(e.to_string()))?;
            lost |= self.carry_out(plan).await?.lost > 0;
        }
        Ok(lost)
    }
}
