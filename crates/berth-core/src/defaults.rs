//! berth's defaults, each once: the blog's values (its task size, health
//! check, ALB target group and auto scaling bounds) and berth's own.
//!
//! `berth up`'s configuration and core's policies take them from here; the
//! CDK stack reads the same values from `deploy/cdk/lib/defaults.json`, and
//! a test (`tests/defaults.rs`) keeps that file equal to these constants, so
//! the two platforms cannot drift apart.

use std::time::Duration;

/// Tasks per service.
pub const DESIRED_COUNT: u32 = 2;
/// The port a task serves on (the blog's Flask app).
pub const PORT: u16 = 5000;
/// CPU units (1024 = one core) and MiB of a task: the blog's Fargate size.
pub const TASK_CPU: u32 = 256;
pub const TASK_MEMORY: u32 = 512;
/// SIGTERM, then SIGKILL after this (ECS's default `stopTimeout`).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The container health check (ECS's `healthCheck`), as the blog sets it.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(30);
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);
pub const HEALTH_RETRIES: u32 = 3;
pub const HEALTH_START_PERIOD: Duration = Duration::from_secs(60);

/// The load balancer's target health checks and draining (the blog's ALB).
pub const LB_HEALTH_INTERVAL: Duration = Duration::from_secs(30);
pub const LB_HEALTH_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEREGISTRATION_DELAY: Duration = Duration::from_secs(30);

/// Auto scaling bounds and targets (the blog's 2–10 tasks at 70 % CPU, 80 % memory).
pub const MIN_CAPACITY: u32 = 2;
pub const MAX_CAPACITY: u32 = 10;
pub const CPU_TARGET_PERCENT: u32 = 70;
pub const MEMORY_TARGET_PERCENT: u32 = 80;

/// A generation healthy this long resets its claim's crash-loop count.
pub const HEALTHY_RESET: Duration = Duration::from_secs(10 * 60);
