//! The CDK stack's defaults (`deploy/cdk/lib/defaults.json`, which the stack
//! reads) are core's constants (`berth_core::defaults`), so the two
//! platforms start from the same values.
//!
//! Before this test the blog's values were written as literals in the stack,
//! in `berth up`'s configuration and in core, and the 10-minute healthy
//! reset in four places.

use std::time::Duration;

use berth_core::defaults::*;

fn stack_defaults() -> serde_json::Map<String, serde_json::Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/cdk/lib/defaults.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_cdk_stacks_defaults_are_cores_constants() {
    let secs = |d: Duration| serde_json::Value::from(d.as_secs());
    let want = serde_json::json!({
        "desired_count": DESIRED_COUNT,
        "task_cpu": TASK_CPU,
        "task_memory": TASK_MEMORY,
        "stop_timeout_seconds": secs(STOP_TIMEOUT),
        "health_interval_seconds": secs(HEALTH_INTERVAL),
        "health_timeout_seconds": secs(HEALTH_TIMEOUT),
        "health_retries": HEALTH_RETRIES,
        "health_start_period_seconds": secs(HEALTH_START_PERIOD),
        "lb_health_interval_seconds": secs(LB_HEALTH_INTERVAL),
        "lb_health_timeout_seconds": secs(LB_HEALTH_TIMEOUT),
        "deregistration_delay_seconds": secs(DEREGISTRATION_DELAY),
        "min_capacity": MIN_CAPACITY,
        "max_capacity": MAX_CAPACITY,
        "cpu_target_percent": CPU_TARGET_PERCENT,
        "memory_target_percent": MEMORY_TARGET_PERCENT,
        "healthy_reset_seconds": secs(HEALTHY_RESET),
    });
    assert_eq!(
        serde_json::Value::Object(stack_defaults()),
        want,
        "deploy/cdk/lib/defaults.json against berth_core::defaults"
    );
}

#[test]
fn cores_policies_start_from_the_defaults() {
    let policy = berth_core::autoscale::ScalingPolicy::default();
    assert_eq!((policy.min_capacity, policy.max_capacity), (MIN_CAPACITY, MAX_CAPACITY));
    assert_eq!(policy.cpu_target_percent, f64::from(CPU_TARGET_PERCENT));
    assert_eq!(policy.memory_target_percent, f64::from(MEMORY_TARGET_PERCENT));
    assert_eq!(berth_core::backoff::HEALTHY_RESET, HEALTHY_RESET);
}
