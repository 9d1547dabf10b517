//! `berth.toml`: the settings of `berth up`, each with the blog's default.
//!
//! With no file, `berth up` runs the blog's service: two tasks of the file
//! service on port 5000 (locally each task gets its own port), 256 CPU
//! units and 512 MiB, a container health check on `/health` every 30 s
//! with a 5 s timeout, 3 retries and a 60 s start period. Unknown keys are
//! an error, so a typo does not silently fall back to a default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_core::autoscale::ScalingPolicy;
use berth_core::defaults;
use berth_core::retention::KeepPolicy;
use berth_core::service::ServiceSpec;
use berth_core::task::{ContainerSpec, HealthCheck, Probe, TaskDefinition};
use berth_core::ClaimName;
use serde::{Deserialize, Deserializer};

mod backup;
mod lb;

pub use backup::{BackupConfig, HookKind, LockConfig, ObjectivesConfig, ReplicaConfig};
pub use lb::LbSettings;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// What is wrong with a berth.toml (or a task definition it names), in one
/// line that says where and what to change.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl From<String> for Invalid {
    fn from(m: String) -> Self {
        Self(m)
    }
}

impl From<&str> for Invalid {
    fn from(m: &str) -> Self {
        Self(m.to_owned())
    }
}

impl From<berth_core::backup::ScheduleError> for Invalid {
    fn from(e: berth_core::backup::ScheduleError) -> Self {
        Self(e.to_string())
    }
}

/// Whether a variable's name says its value is a secret.
fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["TOKEN", "SECRET", "PASSWORD", "PASSWD", "API_KEY", "PRIVATE_KEY", "CREDENTIAL"].iter().any(|w| upper.contains(w))
}

/// Durations as `humantime` strings ("30s", "5m", "1h 30m").
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(|e| serde::de::Error::custom(format!("{s:?}: {e}")))
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub cluster: String,
    pub controller: ControllerConfig,
    pub lb: LbSettings,
    #[serde(rename = "service")]
    pub services: Vec<ServiceConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            cluster: "berth".into(),
            controller: ControllerConfig::default(),
            lb: LbSettings::default(),
            services: vec![ServiceConfig::default()],
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControllerConfig {
    /// How often every claim is reconciled from observed state.
    #[serde(deserialize_with = "duration")]
    pub resync_interval: Duration,
    /// How long a controller holds a handoff step.
    #[serde(deserialize_with = "duration")]
    pub lease: Duration,
    /// Unreferenced volumes younger than this are left alone by the sweep.
    #[serde(deserialize_with = "duration")]
    pub sweep_grace: Duration,
    /// The admin API's address (loopback; port 0 picks a free one).
    pub admin_listen: String,
    /// Adopt an unchanged volume on replacement instead of restoring it.
    pub adopt: bool,
    /// Healthy this long, a claim's crash-loop count resets.
    #[serde(deserialize_with = "duration")]
    pub crash_loop_reset: Duration,
    /// Task logs are removed this long after their last line.
    #[serde(deserialize_with = "duration")]
    pub log_retention: Duration,
    /// How long `berth down` (or SIGTERM) waits for the last stop
    /// snapshots once the tasks' stop timeout has passed; then berth up
    /// exits anyway, naming each claim it could not park (its volume stays,
    /// and the next start snapshots it).
    #[serde(deserialize_with = "duration")]
    pub down_timeout: Duration,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            resync_interval: Duration::from_secs(30),
            lease: Duration::from_secs(600),
            sweep_grace: Duration::from_secs(600),
            admin_listen: "127.0.0.1:0".into(),
            adopt: true,
            crash_loop_reset: defaults::HEALTHY_RESET,
            log_retention: Duration::from_secs(7 * 24 * 3600),
            down_timeout: Duration::from_secs(120),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    pub name: String,
    pub desired_count: u32,
    /// The task's command; empty runs `berth serve` on the task's volume.
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// `[service.secrets]`: variables read as each task starts, by where
    /// (`env:NAME` or `file:PATH`); only where is stored, never the value.
    pub secrets: BTreeMap<String, String>,
    pub port: u16,
    /// CPU units (1024 = one core) and MiB, as an ECS task size.
    pub cpu: u32,
    pub memory: u32,
    #[serde(deserialize_with = "duration")]
    pub stop_timeout: Duration,
    pub health_check: HealthCheckConfig,
    pub retention: RetentionConfig,
    pub autoscaling: AutoscalingConfig,
    pub deployment: DeploymentConfig,
    /// `retain` (park with the data) or `delete` (drop it) on scale-in.
    pub when_scaled: berth_core::service::WhenScaled,
    /// Scheduled snapshots, replicas, verification (none by default).
    pub backup: Option<BackupConfig>,
    /// How often a running task's volume is snapshotted in the background
    /// when it changed, so a stop snapshot reads only what changed since
    /// (off by default). Crash-consistent; only the newest is kept.
    #[serde(deserialize_with = "opt_duration")]
    pub background_snapshots: Option<Duration>,
    /// An ECS task definition (JSON, as `aws ecs describe-task-definition`
    /// prints it) whose essential container and size the service runs; a
    /// relative path is from berth.toml's folder. See `taskdef`.
    pub task_definition: Option<PathBuf>,
    /// A container image: each task runs it through the container engine
    /// (Docker or Podman), on its volume. Without one a task is a process.
    pub image: Option<String>,
    /// The container's entry point (empty: the image's).
    pub entry_point: Vec<String>,
    /// `uid[:gid]` (or a name) the container runs as; default the image's `USER`.
    pub user: Option<String>,
    pub working_dir: Option<String>,
    /// Where the claim's volume is mounted in the container.
    pub mount_path: String,
    /// `bridge` (the default: its own network, its port published on
    /// 127.0.0.1) or `host` (the host's loopback; it listens on `PORT`).
    pub network: berth_core::NetworkMode,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            name: "files".into(),
            desired_count: defaults::DESIRED_COUNT,
            command: Vec::new(),
            env: BTreeMap::new(),
            secrets: BTreeMap::new(),
            port: defaults::PORT,
            cpu: defaults::TASK_CPU,
            memory: defaults::TASK_MEMORY,
            stop_timeout: defaults::STOP_TIMEOUT,
            health_check: HealthCheckConfig::default(),
            retention: RetentionConfig::default(),
            autoscaling: AutoscalingConfig::default(),
            deployment: DeploymentConfig::default(),
            when_scaled: Default::default(),
            backup: None,
            background_snapshots: None,
            task_definition: None,
            image: None,
            entry_point: Vec::new(),
            user: None,
            working_dir: None,
            mount_path: "/data".into(),
            network: Default::default(),
        }
    }
}

/// `[service.autoscaling]`: target tracking on the tasks' CPU and memory
/// (the blog's: 2–10 tasks, 70 % CPU, 80 % memory, 2 min out and 5 min in
/// cooldowns). Usage is read from `/proc` every `sample_interval`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutoscalingConfig {
    pub enabled: bool,
    pub min_capacity: u32,
    pub max_capacity: u32,
    /// Percent of the task's CPU units; 0 turns CPU tracking off.
    pub cpu_target: f64,
    /// Percent of the task's memory; 0 turns memory tracking off.
    pub memory_target: f64,
    #[serde(deserialize_with = "duration")]
    pub scale_out_cooldown: Duration,
    #[serde(deserialize_with = "duration")]
    pub scale_in_cooldown: Duration,
    #[serde(deserialize_with = "duration")]
    pub sample_interval: Duration,
}

impl Default for AutoscalingConfig {
    fn default() -> Self {
        let p = ScalingPolicy::default();
        Self {
            enabled: true,
            min_capacity: p.min_capacity,
            max_capacity: p.max_capacity,
            cpu_target: p.cpu_target_percent,
            memory_target: p.memory_target_percent,
            scale_out_cooldown: p.scale_out_cooldown,
            scale_in_cooldown: p.scale_in_cooldown,
            sample_interval: Duration::from_secs(60),
        }
    }
}

impl AutoscalingConfig {
    pub fn policy(&self) -> ScalingPolicy {
        ScalingPolicy {
            min_capacity: self.min_capacity,
            max_capacity: self.max_capacity,
            cpu_target_percent: self.cpu_target,
            memory_target_percent: self.memory_target,
            scale_out_cooldown: self.scale_out_cooldown,
            scale_in_cooldown: self.scale_in_cooldown,
        }
    }
}

/// `[service.deployment]`: rolling deployments (`berth deploy`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeploymentConfig {
    /// The claim being moved must be healthy on the new revision within
    /// this long, or the deployment rolls back.
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
}

impl Default for DeploymentConfig {
    fn default() -> Self {
        Self { timeout: berth_core::deploy::DEFAULT_TIMEOUT }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheckConfig {
    /// HTTP path probed on the task's port (the default), or…
    pub http: Option<String>,
    /// …a command run with the task's environment; exit 0 is healthy.
    pub command: Option<Vec<String>>,
    /// `false` turns the health check off (RUNNING is then enough).
    pub enabled: bool,
    #[serde(deserialize_with = "duration")]
    pub interval: Duration,
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
    pub retries: u32,
    #[serde(deserialize_with = "duration")]
    pub start_period: Duration,
    /// How often the check runs while the task starts (until its first
    /// pass, within `start_period`): Docker's `start_interval`.
    #[serde(deserialize_with = "duration")]
    pub start_interval: Duration,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        Self {
            http: None,
            command: None,
            enabled: true,
            interval: defaults::HEALTH_INTERVAL,
            timeout: defaults::HEALTH_TIMEOUT,
            retries: defaults::HEALTH_RETRIES,
            start_period: defaults::HEALTH_START_PERIOD,
            start_interval: berth_core::task::HEALTH_START_INTERVAL,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    pub keep_last: Option<u32>,
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_yearly: Option<u32>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub keep_within: Option<Duration>,
}

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

impl RetentionConfig {
    /// No rule at all (keeps everything).
    fn none() -> Self {
        Self {
            keep_last: None,
            keep_hourly: None,
            keep_daily: None,
            keep_weekly: None,
            keep_monthly: None,
            keep_yearly: None,
            keep_within: None,
        }
    }

    pub fn keep(&self) -> KeepPolicy {
        KeepPolicy {
            last: self.keep_last,
            hourly: self.keep_hourly,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
            yearly: self.keep_yearly,
            within: self.keep_within,
        }
    }
}

impl Default for RetentionConfig {
    /// Ten stop snapshots, and one a day for a week.
    fn default() -> Self {
        Self {
            keep_last: Some(10),
            keep_hourly: None,
            keep_daily: Some(7),
            keep_weekly: None,
            keep_monthly: None,
            keep_yearly: None,
            keep_within: None,
        }
    }
}

impl Config {
    /// Reads `path`; a missing file at the default path means the defaults.
    pub fn load(path: &Path, required: bool) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(Self::default()),
            Err(source) => return Err(ConfigError::Read { path: path.display().to_string(), source }),
        };
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse_in(&text, base).map_err(|e| ConfigError::Invalid { path: path.display().to_string(), message: e.0 })
    }

    pub fn parse(text: &str) -> Result<Self, Invalid> {
        Self::parse_in(text, Path::new("."))
    }

    /// Parses a berth.toml whose relative paths are from `base`.
    fn parse_in(text: &str, base: &Path) -> Result<Self, Invalid> {
        let mut config: Self = toml::from_str(text).map_err(|e| Invalid(e.to_string()))?;
        for s in &mut config.services {
            let Some(file) = s.task_definition.clone() else { continue };
            let ignored = super::taskdef::apply_file(s, &base.join(&file))
                .map_err(|e| Invalid(format!("service {:?}: task_definition {e}", s.name)))?;
            if !ignored.is_empty() {
                tracing::warn!(
                    service = %s.name,
                    file = %file.display(),
                    "berth up does not honour these fields of the task definition: {}",
                    ignored.join(", ")
                );
            }
        }
        config.validate()?;
        for s in &config.services {
            for name in s.env.keys().filter(|k| looks_secret(k)) {
                tracing::warn!(
                    service = %s.name,
                    variable = %name,
                    "env values are kept in the ledger in clear; give a secret as [service.secrets] {name} = \"env:NAME\" or \"file:PATH\""
                );
            }
        }
        Ok(config)
    }

    /// The service the load balancer fronts.
    pub fn lb_service(&self) -> String {
        self.lb.service.clone().unwrap_or_else(|| self.services.first().map(|s| s.name.clone()).unwrap_or_default())
    }

    fn validate(&self) -> Result<(), Invalid> {
        if self.services.is_empty() {
            return Err("no [[service]] is configured".into());
        }
        if self.lb.health_interval.is_zero() || self.lb.health_start_interval.is_zero() {
            return Err("[lb] health_interval and health_start_interval must be above 0".into());
        }
        if let Some(s) =
            self.services.iter().find(|s| s.background_snapshots.is_some_and(|d| d < Duration::from_secs(1)))
        {
            return Err(Invalid(format!("service {}: background_snapshots must be at least 1s", s.name)));
        }
        if self.lb.cert.is_some() != self.lb.key.is_some() {
            return Err("[lb] cert and key go together: give both or neither".into());
        }
        if let Some(s) = &self.lb.service {
            if !self.services.iter().any(|x| &x.name == s) {
                return Err(Invalid(format!("[lb] service {s:?} is not a configured [[service]]")));
            }
        }
        for (i, s) in self.services.iter().enumerate() {
            ClaimName::of_service(&s.name, 0).map_err(|e| format!("service name {:?}: {e}", s.name))?;
            if self.services[..i].iter().any(|o| o.name == s.name) {
                return Err(Invalid(format!("service {:?} is configured twice", s.name)));
            }
            for (name, from) in &s.secrets {
                crate::secrets::check_value_from(from)
                    .map_err(|e| format!("service {:?}: secret {name}: {e}", s.name))?;
                if s.env.contains_key(name) {
                    return Err(Invalid(format!(
                        "service {:?}: {name} is in both env and secrets; keep it in secrets",
                        s.name
                    )));
                }
            }
            let h = &s.health_check;
            if h.http.is_some() && h.command.is_some() {
                return Err(Invalid(format!("service {:?}: health_check has both http and command; pick one", s.name)));
            }
            if h.command.as_ref().is_some_and(Vec::is_empty) {
                return Err(Invalid(format!("service {:?}: health_check.command is empty", s.name)));
            }
            let a = &s.autoscaling;
            if a.enabled {
                a.policy().validate().map_err(|e| format!("service {:?}: [service.autoscaling] {e}", s.name))?;
                if s.desired_count != 0 && !(a.min_capacity..=a.max_capacity).contains(&s.desired_count) {
                    return Err(Invalid(format!(
                        "service {:?}: desired_count {} is outside autoscaling's {}–{}; change desired_count, \
                         min_capacity or max_capacity, or set [service.autoscaling] enabled = false",
                        s.name, s.desired_count, a.min_capacity, a.max_capacity
                    )));
                }
                if a.sample_interval.is_zero() {
                    return Err(Invalid(format!(
                        "service {:?}: [service.autoscaling] sample_interval must be above 0",
                        s.name
                    )));
                }
            }
            if let Some(b) = &s.backup {
                b.validate(&s.name, &s.command)?;
            }
            s.validate_container()?;
            if h.enabled
                && (h.interval.is_zero() || h.timeout.is_zero() || h.retries == 0 || h.start_interval.is_zero())
            {
                return Err(Invalid(format!(
                    "service {:?}: health_check interval, start_interval, timeout and retries must be above 0",
                    s.name
                )));
            }
        }
        Ok(())
    }

    /// The services as the controller sees them.
    pub fn specs(&self) -> Vec<ServiceSpec> {
        self.services.iter().map(|s| s.spec(&self.controller)).collect()
    }
}

impl ServiceConfig {
    /// The container settings mean something only with an image, and the
    /// limits must be ones an engine takes.
    fn validate_container(&self) -> Result<(), Invalid> {
        let name = &self.name;
        let Some(image) = &self.image else {
            if !self.entry_point.is_empty() || self.user.is_some() || self.working_dir.is_some() {
                return Err(Invalid(format!(
                    "service {name:?}: entry_point, user and working_dir are container settings; set image too"
                )));
            }
            return Ok(());
        };
        if image.trim().is_empty() || image.chars().any(char::is_whitespace) {
            return Err(Invalid(format!("service {name:?}: image {image:?} is not an image reference")));
        }
        if !self.mount_path.starts_with('/') || self.mount_path == "/" {
            return Err(Invalid(format!("service {name:?}: mount_path must be an absolute path below / (like /data)")));
        }
        // Fargate's smallest task is 256 units and 512 MiB; berth also
        // runs smaller ones locally (a test's 64 MiB), but not below what
        // an engine starts a container with.
        if self.memory < 6 || self.cpu == 0 {
            return Err(Invalid(format!("service {name:?}: cpu must be above 0 and memory at least 6 MiB")));
        }
        Ok(())
    }

    pub fn definition(&self) -> TaskDefinition {
        let h = &self.health_check;
        let health_check = h.enabled.then(|| HealthCheck {
            probe: match (&h.command, &h.http) {
                (Some(cmd), _) => Probe::Command(cmd.clone()),
                (None, path) => Probe::Http { path: path.clone().unwrap_or_else(|| "/health".into()) },
            },
            interval: h.interval,
            timeout: h.timeout,
            retries: h.retries,
            start_period: h.start_period,
            start_interval: h.start_interval,
        });
        TaskDefinition {
            family: self.name.clone(),
            revision: 1,
            command: self.command.clone(),
            env: self.env.clone(),
            secrets: self.secrets.clone(),
            port: self.port,
            health_check,
            stop_timeout: self.stop_timeout,
            container: self.container(),
        }
    }

    /// The container the service's tasks run, if it names an image.
    fn container(&self) -> Option<ContainerSpec> {
        Some(ContainerSpec {
            image: self.image.clone()?,
            entry_point: self.entry_point.clone(),
            user: self.user.clone(),
            working_dir: self.working_dir.clone(),
            mount_path: self.mount_path.clone(),
            cpu: self.cpu,
            memory: self.memory,
            network: self.network,
        })
    }

    pub fn spec(&self, controller: &ControllerConfig) -> ServiceSpec {
        ServiceSpec {
            name: self.name.clone(),
            desired_count: self.desired_count,
            definition: self.definition(),
            revisions: Vec::new(),
            retention: self.retention.keep(),
            lease: controller.lease,
            adopt: controller.adopt,
            healthy_reset: controller.crash_loop_reset,
            when_scaled: self.when_scaled,
        }
    }
}

#[cfg(test)]
mod tests {
    /// The README's `berth.toml` spells out every default: a default changed
    /// in code and not in the documentation (or the other way) fails here.
    #[test]
    fn the_readmes_berth_toml_states_the_defaults() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
        let after = readme.split("`berth.toml` (every key optional; unknown keys are errors):").nth(1).unwrap();
        let block = after.split("```toml\n").nth(1).unwrap().split("```").next().unwrap();
        let documented = Config::parse(block).unwrap_or_else(|e| panic!("the README's berth.toml: {e}"));
        assert_eq!(format!("{documented:#?}"), format!("{:#?}", Config::default()));
    }

    use super::*;

    #[test]
    fn no_file_is_the_blogs_service() {
        let c = Config::load(Path::new("/nonexistent/berth.toml"), false).unwrap();
        let s = &c.specs()[0];
        assert_eq!((s.name.as_str(), s.desired_count), ("files", 2));
        let h = s.definition.health_check.as_ref().unwrap();
        assert_eq!(h.probe, Probe::Http { path: "/health".into() });
        assert_eq!((h.interval, h.timeout, h.retries), (Duration::from_secs(30), Duration::from_secs(5), 3));
        assert!(Config::load(Path::new("/nonexistent/berth.toml"), true).is_err());
    }

    #[test]
    fn a_file_overrides_and_typos_are_errors() {
        let c = Config::parse(
            r#"
            [controller]
            resync_interval = "2s"
            [[service]]
            name = "db"
            desired_count = 3
            command = ["sleep", "100"]
            [service.health_check]
            command = ["true"]
            interval = "1s"
            [service.retention]
            keep_last = 2
            "#,
        )
        .unwrap();
        assert_eq!(c.controller.resync_interval, Duration::from_secs(2));
        let s = &c.specs()[0];
        assert_eq!(s.definition.health_check.as_ref().unwrap().probe, Probe::Command(vec!["true".into()]));
        assert_eq!(s.retention.last, Some(2));
        assert_eq!(s.retention.daily, Some(7));
        let typo = Config::parse("[[service]]\nname = \"x\"\ndesierd_count = 1\n").unwrap_err().to_string();
        assert!(typo.contains("desierd_count"), "{typo}");
        assert!(Config::parse("[controller]\nlease = \"soon\"\n").unwrap_err().to_string().contains("soon"));
        assert!(Config::parse("[[service]]\nname = \"Bad Name\"\n").is_err());
    }

    #[test]
    fn autoscaling_defaults_are_the_blogs_and_a_count_outside_them_is_an_error() {
        let c = Config::default();
        let a = &c.services[0].autoscaling;
        assert!(a.enabled);
        assert_eq!((a.min_capacity, a.max_capacity, a.cpu_target, a.memory_target), (2, 10, 70.0, 80.0));
        assert_eq!(c.services[0].deployment.timeout, Duration::from_secs(600));
        let e = Config::parse("[[service]]\nname = \"x\"\ndesired_count = 1\n").unwrap_err().to_string();
        assert!(e.contains("outside autoscaling's 2–10") && e.contains("enabled = false"), "{e}");
        Config::parse("[[service]]\nname = \"x\"\ndesired_count = 1\n[service.autoscaling]\nenabled = false\n")
            .unwrap();
        Config::parse("[[service]]\nname = \"x\"\ndesired_count = 0\n").expect("0 is a stopped service");
        let e = Config::parse("[[service]]\nname = \"x\"\n[service.autoscaling]\nmin_capacity = 5\nmax_capacity = 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("min_capacity 5 is above max_capacity 3"), "{e}");
        let c = Config::parse("[[service]]\nname = \"x\"\nwhen_scaled = \"delete\"\n").unwrap();
        assert_eq!(c.specs()[0].when_scaled, berth_core::service::WhenScaled::Delete);
        assert!(Config::parse("[[service]]\nname = \"x\"\nwhen_scaled = \"drop\"\n")
            .unwrap_err()
            .to_string()
            .contains("drop"));
        let c = Config::parse("[[service]]\nname = \"x\"\n[service.deployment]\ntimeout = \"90s\"\n").unwrap();
        assert_eq!(c.services[0].deployment.timeout, Duration::from_secs(90));
    }

    #[test]
    fn a_backup_policy_reads_whole_and_wrong_ones_say_why() {
        let c = Config::parse(
            r#"
            [[service]]
            name = "db"
            [service.backup]
            interval = "15m"
            verify_interval = "6h"
            [service.backup.lock]
            mode = "compliance"
            duration = "7d"
            [service.backup.objectives]
            rpo = "20m"
            rto = "2m"
            [[service.backup.replica]]
            name = "dr"
            repo = "/mnt/dr"
            [service.backup.replica.retention]
            keep_last = 100
            "#,
        )
        .unwrap();
        let b = c.services[0].backup.as_ref().unwrap();
        assert_eq!(b.hook_for(&c.services[0].command), HookKind::Http, "berth serve quiesces over HTTP");
        let p = b.policy().unwrap();
        assert_eq!(p.schedule.period(chrono::Utc::now()), Duration::from_secs(900));
        assert_eq!(p.retention.last, Some(24), "the default backup retention");
        assert_eq!(p.replicas[0].retention.last, Some(100));
        assert_eq!(p.lock.unwrap().mode, berth_core::LockMode::Compliance);
        assert_eq!(p.objectives.rpo, Some(Duration::from_secs(1200)));
        assert_eq!(p.window(), Some(Duration::from_secs(12 * 3600)));
        let bad = |body: &str| {
            Config::parse(&format!("[[service]]\nname = \"x\"\n[service.backup]\n{body}")).unwrap_err().to_string()
        };
        assert!(bad("").contains("needs interval"));
        assert!(bad("interval = \"1h\"\ncron = \"0 * * * *\"\n").contains("pick one"));
        assert!(bad("cron = \"hourly please\"\n").contains("hourly please"));
        assert!(bad("interval = \"1h\"\nhook = \"command\"\n").contains("quiesce_command"));
        assert!(bad("interval = \"1h\"\n[[service.backup.replica]]\nname = \"a b\"\nrepo = \"/x\"\n").contains("a b"));
        assert!(bad("interval = \"1h\"\nintervall = \"2h\"\n").contains("intervall"));
    }
}
