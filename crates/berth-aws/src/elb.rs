//! ELBv2 target registration: the ALB's IP target group holds the
//! addresses `berth_core::targets` says, since ECS registers only a
//! service's tasks and berth's claims are standalone tasks.

use std::collections::BTreeSet;

use aws_sdk_elasticloadbalancingv2::types::TargetDescription;
use berth_core::targets::TargetPlan;
use berth_core::PortError;

use crate::sdk::port_error;

/// One target group of `ip` targets.
pub struct TargetGroup {
    client: aws_sdk_elasticloadbalancingv2::Client,
    arn: String,
}

/// `10.0.1.5:5000` as a target description.
fn target(address: &str) -> Result<TargetDescription, PortError> {
    let (ip, port) = address
        .rsplit_once(':')
        .and_then(|(ip, port)| Some((ip, port.parse::<i32>().ok()?)))
        .ok_or_else(|| PortError::permanent(format!("{address} is not IP:PORT")))?;
    Ok(TargetDescription::builder().id(ip).port(port).build())
}

impl TargetGroup {
    pub fn new(client: aws_sdk_elasticloadbalancingv2::Client, arn: impl Into<String>) -> Self {
        Self { client, arn: arn.into() }
    }

    /// The addresses registered now (draining ones excluded: they are
    /// already on their way out).
    pub async fn registered(&self) -> Result<BTreeSet<String>, PortError> {
        let answer = self
            .client
            .describe_target_health()
            .target_group_arn(&self.arn)
            .send()
            .await
            .map_err(|e| port_error("DescribeTargetHealth", e))?;
        Ok(answer
            .target_health_descriptions()
            .iter()
            .filter(|d| d.target_health().and_then(|h| h.state()).is_none_or(|s| s.as_str() != "draining"))
            .filter_map(|d| {
                let t = d.target()?;
                Some(format!("{}:{}", t.id()?, t.port()?))
            })
            .collect())
    }

    /// Carries out a plan.
    pub async fn apply(&self, plan: &TargetPlan) -> Result<(), PortError> {
        if !plan.register.is_empty() {
            let targets = plan.register.iter().map(|a| target(a)).collect::<Result<Vec<_>, _>>()?;
            self.client
                .register_targets()
                .target_group_arn(&self.arn)
                .set_targets(Some(targets))
                .send()
                .await
                .map_err(|e| port_error("RegisterTargets", e))?;
        }
        if !plan.deregister.is_empty() {
            let targets = plan.deregister.iter().map(|a| target(a)).collect::<Result<Vec<_>, _>>()?;
            self.client
                .deregister_targets()
                .target_group_arn(&self.arn)
                .set_targets(Some(targets))
                .send()
                .await
                .map_err(|e| port_error("DeregisterTargets", e))?;
        }
        Ok(())
    }
}
