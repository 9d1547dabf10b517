//! `[lb]`: the load balancer's settings in berth.toml, and the
//! [`LbConfig`](crate::lb::LbConfig) they make.

use std::time::Duration;

use serde::Deserialize;

use super::duration;

/// `[lb]`: the load balancer in front of one service (the blog's ALB).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LbSettings {
    pub enabled: bool,
    /// The service it fronts (default: the first one).
    pub service: Option<String>,
    pub listen: String,
    /// 0 picks a free port (tests); the ports in use are in `<state>/lb.json`.
    pub http_port: u16,
    /// `redirect` (to HTTPS, the default) or `forward` (proxy plain HTTP too).
    pub http: crate::lb::HttpAction,
    pub https_port: u16,
    /// PEM certificate and key; without them a self-signed pair is made
    /// on first start and kept in the state folder.
    pub cert: Option<std::path::PathBuf>,
    pub key: Option<std::path::PathBuf>,
    pub health_path: String,
    #[serde(deserialize_with = "duration")]
    pub health_interval: Duration,
    /// How often a new target is checked until it is first healthy.
    #[serde(deserialize_with = "duration")]
    pub health_start_interval: Duration,
    #[serde(deserialize_with = "duration")]
    pub health_timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    #[serde(deserialize_with = "duration")]
    pub deregistration_delay: Duration,
    #[serde(deserialize_with = "duration")]
    pub grace_period: Duration,
}

impl Default for LbSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            service: None,
            listen: "127.0.0.1".into(),
            http_port: 8080,
            http: crate::lb::HttpAction::Redirect,
            https_port: 8443,
            cert: None,
            key: None,
            health_path: "/health".into(),
            health_interval: berth_core::defaults::LB_HEALTH_INTERVAL,
            health_start_interval: crate::lb::START_INTERVAL,
            health_timeout: berth_core::defaults::LB_HEALTH_TIMEOUT,
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            deregistration_delay: berth_core::defaults::DEREGISTRATION_DELAY,
            grace_period: Duration::from_secs(60),
        }
    }
}

impl LbSettings {
    pub fn lb_config(&self) -> crate::lb::LbConfig {
        crate::lb::LbConfig {
            listen_host: self.listen.clone(),
            http_port: self.http_port,
            http_action: self.http,
            https_port: self.https_port,
            cert: self.cert.clone().zip(self.key.clone()),
            health: crate::lb::TargetHealth {
                path: self.health_path.clone(),
                interval: self.health_interval,
                start_interval: self.health_start_interval,
                timeout: self.health_timeout,
                healthy_threshold: self.healthy_threshold,
                unhealthy_threshold: self.unhealthy_threshold,
            },
            deregistration_delay: self.deregistration_delay,
            grace_period: self.grace_period,
        }
    }
}
