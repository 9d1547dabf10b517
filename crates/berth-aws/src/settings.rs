//! What the AWS adapters need to know about the stack they run in: the
//! cluster, its network, the target group, the EBS volume every claim
//! gets, and the services. The CDK stack writes it as JSON into the
//! Lambda's `BERTH_CONFIG` variable; tests build it directly.

use berth_core::service::ServiceSpec;
use serde::{Deserialize, Serialize};

/// The stack as the adapters see it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AwsSettings {
    /// The ECS cluster's name (also the `berth:cluster` tag on volumes and
    /// snapshots, which scopes every query to this stack).
    pub cluster: String,
    /// Private subnets and security groups of the tasks (awsvpc).
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    #[serde(default)]
    pub assign_public_ip: bool,
    /// Run claims on Fargate Spot (the blog's cost note) instead of Fargate.
    #[serde(default)]
    pub spot: bool,
    /// The container in the task definition that berth's overrides name.
    pub container: String,
    /// The ALB target group tasks are registered with, by IP.
    #[serde(default)]
    pub target_group_arn: Option<String>,
    pub volume: EbsVolumeSpec,
    pub services: Vec<ServiceSpec>,
    /// The registered task definition's ARN (`…:task-definition/FAMILY:N`),
    /// as CloudFormation knows it only at deploy time: it sets the revision
    /// of the service of that family.
    #[serde(default)]
    pub task_definition_arn: Option<String>,
    /// Scheduled EBS snapshots per service, copied to a replica region.
    #[serde(default)]
    pub backups: Vec<AwsBackup>,
    /// Target-tracking auto scaling per service, on Container Insights' readings.
    #[serde(default)]
    pub autoscaling: Vec<AwsAutoscaling>,
}

/// One service's auto scaling on AWS: core's target-tracking policy (its
/// bounds, targets and cooldowns), applied by the resync each minute to
/// the family's average use from Container Insights (`crate::insights`).
/// The count it sets and its cooldowns live in the service's record in the
/// ledger, so every Lambda instance decides from the same state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AwsAutoscaling {
    pub service: String,
    #[serde(default)]
    pub policy: berth_core::autoscale::ScalingPolicy,
}

/// One service's backup policy on AWS: an EBS snapshot of each running
/// claim's volume every `interval` (crash-consistent: the Lambda does not
/// reach into tasks to quiesce them), kept by `retention`, locked by
/// `lock`, and copied to `replica_region` where `replica_retention` keeps
/// the copies.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AwsBackup {
    pub service: String,
    #[serde(with = "berth_core::serde_secs")]
    pub interval: std::time::Duration,
    #[serde(default)]
    pub retention: berth_core::KeepPolicy,
    #[serde(default)]
    pub lock: Option<berth_core::backup::LockPolicy>,
    #[serde(default)]
    pub replica_region: Option<String>,
    #[serde(default)]
    pub replica_retention: Option<berth_core::KeepPolicy>,
}

impl AwsBackup {
    /// Core's view of the policy.
    pub fn policy(&self) -> berth_core::backup::Policy {
        berth_core::backup::Policy {
            schedule: berth_core::backup::Schedule::Every(self.interval),
            retention: self.retention.clone(),
            lock: self.lock,
            replicas: self
                .replica_region
                .iter()
                .map(|r| berth_core::backup::Replica {
                    name: r.clone(),
                    location: r.clone(),
                    retention: self.replica_retention.clone().unwrap_or_else(|| self.retention.clone()),
                })
                .collect(),
            objectives: Default::default(),
            verify_every: None,
            verify_window: None,
        }
    }
}

/// The EBS volume RunTask makes for each task (`managedEBSVolume`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EbsVolumeSpec {
    /// The volume's name in the task definition (configured at launch).
    pub name: String,
    /// The role ECS uses to make and attach the volume.
    pub role_arn: String,
    #[serde(default = "default_size")]
    pub size_gib: i32,
    #[serde(default = "default_type")]
    pub volume_type: String,
    #[serde(default)]
    pub iops: Option<i32>,
    #[serde(default)]
    pub throughput: Option<i32>,
    #[serde(default = "yes")]
    pub encrypted: bool,
    #[serde(default)]
    pub kms_key_id: Option<String>,
    /// Must match the file system of the snapshots restored from.
    #[serde(default = "default_fs")]
    pub filesystem_type: String,
    /// EBS's provisioned rate for volume initialization (MiB/s) of a volume
    /// made from a snapshot: every block is fetched from S3 within
    /// size/rate instead of at the default, unpredictable rate. None: the
    /// default rate.
    #[serde(default)]
    pub initialization_rate: Option<i32>,
}

impl EbsVolumeSpec {
    /// The rules of ECS's API reference for a task's managed EBS volume
    /// that the service model does not carry (so no SDK check catches
    /// them; RunTask would refuse each task):
    /// <https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_TaskManagedEBSVolumeConfiguration.html>.
    pub fn check(&self) -> Result<(), SettingsError> {
        let bad = |m: String| Err(SettingsError::Volume(m));
        let (sizes, iops): (std::ops::RangeInclusive<i32>, Option<std::ops::RangeInclusive<i32>>) = match self
            .volume_type
            .as_str()
        {
            "gp2" => (1..=16_384, None),
            "gp3" => (1..=16_384, Some(3_000..=16_000)),
            "io1" => (4..=16_384, Some(100..=64_000)),
            "io2" => (4..=16_384, Some(100..=256_000)),
            "st1" | "sc1" => (125..=16_384, None),
            other => {
                return bad(format!("volume_type {other:?} is not one Fargate takes (gp2, gp3, io1, io2, st1, sc1)"))
            }
        };
        let t = &self.volume_type;
        if !sizes.contains(&self.size_gib) {
            return bad(format!("size_gib {} is outside {}–{} GiB for {t}", self.size_gib, sizes.start(), sizes.end()));
        }
        match (self.iops, &iops) {
            (Some(n), Some(range)) if !range.contains(&n) => {
                return bad(format!("iops {n} is outside {}–{} for {t}", range.start(), range.end()))
            }
            (Some(_), None) if t != "gp2" => return bad(format!("iops is not supported for {t}")),
            (None, Some(_)) if t.starts_with("io") => return bad(format!("iops is required for {t}")),
            _ => {}
        }
        match self.throughput {
            Some(_) if t != "gp3" => return bad(format!("throughput is supported for gp3 only, not {t}")),
            Some(n) if !(1..=1_000).contains(&n) => return bad(format!("throughput {n} MiB/s is above 1000 MiB/s")),
            _ => {}
        }
        if !matches!(self.filesystem_type.as_str(), "ext3" | "ext4" | "xfs") {
            return bad(format!("filesystem_type {:?} is not ext3, ext4 or xfs", self.filesystem_type));
        }
        Ok(())
    }
}

/// The range of `volumeInitializationRate` (MiB/s), as the EC2 API reference
/// of CreateVolume states it (ECS's RunTask passes it on).
pub const INITIALIZATION_RATES: std::ops::RangeInclusive<i32> = 100..=300;

fn default_size() -> i32 {
    20
}

fn default_type() -> String {
    "gp3".into()
}

fn default_fs() -> String {
    "ext4".into()
}

fn yes() -> bool {
    true
}

/// A settings document that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("BERTH_CONFIG is not set: the Lambda needs the stack's settings (the CDK stack sets them)")]
    Missing,
    #[error("BERTH_CONFIG is not valid settings JSON: {0}")]
    Invalid(#[from] serde_json::Error),
    #[error("BERTH_CONFIG's task_definition_arn {0} does not end in FAMILY:REVISION")]
    BadTaskDefinition(String),
    #[error("BERTH_CONFIG names no subnet: tasks need at least one (the stack's private subnets)")]
    NoSubnet,
    #[error("BERTH_CONFIG's autoscaling names service {0}, which is not among its services")]
    UnknownService(String),
    #[error("BERTH_CONFIG's autoscaling of service {0}: {1}")]
    Scaling(String, berth_core::autoscale::PolicyError),
    #[error(
        "BERTH_CONFIG's volume initialization_rate {0} MiB/s is outside EBS's {low}–{high} MiB/s",
        low = INITIALIZATION_RATES.start(),
        high = INITIALIZATION_RATES.end()
    )]
    InitializationRate(i32),
    #[error("BERTH_CONFIG's volume: {0}")]
    Volume(String),
}

impl AwsSettings {
    pub fn parse(json: &str) -> Result<Self, SettingsError> {
        let settings: Self = serde_json::from_str(json)?;
        let mut settings = settings;
        if settings.subnets.is_empty() {
            return Err(SettingsError::NoSubnet);
        }
        if let Some(rate) = settings.volume.initialization_rate.filter(|r| !INITIALIZATION_RATES.contains(r)) {
            return Err(SettingsError::InitializationRate(rate));
        }
        settings.volume.check()?;
        for a in &settings.autoscaling {
            if !settings.services.iter().any(|s| s.name == a.service) {
                return Err(SettingsError::UnknownService(a.service.clone()));
            }
            a.policy.validate().map_err(|e| SettingsError::Scaling(a.service.clone(), e))?;
        }
        if let Some(arn) = &settings.task_definition_arn {
            let (family, revision) = arn
                .rsplit('/')
                .next()
                .and_then(|d| d.split_once(':'))
                .and_then(|(f, r)| Some((f.to_owned(), r.parse::<u32>().ok()?)))
                .ok_or_else(|| SettingsError::BadTaskDefinition(arn.clone()))?;
            for service in settings.services.iter_mut().filter(|s| s.definition.family == family) {
                service.definition.revision = revision;
            }
        }
        Ok(settings)
    }

    /// The settings in `BERTH_CONFIG`.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::parse(&std::env::var("BERTH_CONFIG").map_err(|_| SettingsError::Missing)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"{
        "cluster": "berth", "subnets": ["subnet-1"], "security_groups": ["sg-1"], "container": "files",
        "target_group_arn": "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/t/1",
        "task_definition_arn": "arn:aws:ecs:us-east-1:1:task-definition/BerthTaskDef:7",
        "volume": { "name": "data", "role_arn": "arn:aws:iam::1:role/infra", "size_gib": 10 },
        "services": [{ "name": "files", "desired_count": 2,
            "definition": { "family": "BerthTaskDef", "revision": 1, "command": [], "env": {}, "port": 5000,
                "health_check": null, "stop_timeout": 30 },
            "retention": { "last": 7 }, "lease": 60, "healthy_reset": 600 }]
    }"#;

    #[test]
    fn the_stacks_document_reads_with_defaults_and_the_deployed_revision() {
        let s = AwsSettings::parse(DOC).unwrap();
        assert_eq!(s.services[0].definition.revision, 7, "the revision comes from the deployed ARN");
        assert_eq!((s.volume.size_gib, s.volume.volume_type.as_str(), s.volume.encrypted), (10, "gp3", true));
        assert_eq!(s.volume.filesystem_type, "ext4");
        assert!(!s.spot);
        assert!(s.autoscaling.is_empty());
        let scaled = DOC.replace(
            r#""services": ["#,
            r#""autoscaling": [{ "service": "files", "policy": { "min_capacity": 2, "max_capacity": 4 } }], "services": ["#,
        );
        let s = AwsSettings::parse(&scaled).unwrap();
        assert_eq!((s.autoscaling[0].policy.max_capacity, s.autoscaling[0].policy.cpu_target_percent), (4, 70.0));
    }

    #[test]
    fn bad_documents_are_one_clear_error() {
        assert!(matches!(AwsSettings::parse("{"), Err(SettingsError::Invalid(_))));
        let no_subnet = DOC.replace(r#"["subnet-1"]"#, "[]");
        assert!(matches!(AwsSettings::parse(&no_subnet), Err(SettingsError::NoSubnet)));
        let stranger = DOC.replace(r#""services": ["#, r#""autoscaling": [{ "service": "web" }], "services": ["#);
        let e = AwsSettings::parse(&stranger).unwrap_err();
        assert!(e.to_string().contains("service web"), "{e}");
        let upside_down = DOC.replace(
            r#""services": ["#,
            r#""autoscaling": [{ "service": "files", "policy": { "min_capacity": 5, "max_capacity": 2 } }], "services": ["#,
        );
        let e = AwsSettings::parse(&upside_down).unwrap_err();
        assert!(e.to_string().contains("min_capacity 5"), "{e}");
        let bad_arn = DOC.replace("BerthTaskDef:7", "BerthTaskDef");
        let e = AwsSettings::parse(&bad_arn).unwrap_err();
        assert!(e.to_string().contains("FAMILY:REVISION"), "{e}");
    }

    /// ECS's API reference for TaskManagedEBSVolumeConfiguration states
    /// these rules in prose; the service model carries none of them:
    /// <https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_TaskManagedEBSVolumeConfiguration.html>.
    #[test]
    fn a_volume_ecs_would_refuse_is_refused_at_start_with_the_rule_it_breaks() {
        let with = |volume: serde_json::Value| {
            let mut doc: serde_json::Value = serde_json::from_str(DOC).unwrap();
            for (k, v) in volume.as_object().unwrap() {
                doc["volume"][k] = v.clone();
            }
            AwsSettings::parse(&doc.to_string()).map(|_| ()).map_err(|e| e.to_string())
        };
        assert_eq!(with(serde_json::json!({})), Ok(()));
        assert_eq!(with(serde_json::json!({ "volume_type": "io2", "size_gib": 4, "iops": 256000 })), Ok(()));
        for (volume, says) in [
            (serde_json::json!({ "volume_type": "standard" }), "not one Fargate takes"),
            (serde_json::json!({ "size_gib": 0 }), "size_gib 0 is outside 1–16384 GiB for gp3"),
            (serde_json::json!({ "volume_type": "st1", "size_gib": 100 }), "outside 125–16384 GiB for st1"),
            (serde_json::json!({ "iops": 2000 }), "iops 2000 is outside 3000–16000 for gp3"),
            (serde_json::json!({ "volume_type": "io1", "size_gib": 10 }), "iops is required for io1"),
            (
                serde_json::json!({ "volume_type": "sc1", "size_gib": 500, "iops": 100 }),
                "iops is not supported for sc1",
            ),
            (serde_json::json!({ "volume_type": "gp2", "throughput": 200 }), "throughput is supported for gp3 only"),
            (serde_json::json!({ "throughput": 1001 }), "above 1000 MiB/s"),
            (serde_json::json!({ "filesystem_type": "btrfs" }), "not ext3, ext4 or xfs"),
        ] {
            let e = with(volume.clone()).unwrap_err();
            assert!(e.contains(says), "{volume}: {e}");
        }
    }
}
