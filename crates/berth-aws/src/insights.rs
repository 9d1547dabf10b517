//! How busy a service's tasks are, read from CloudWatch Container Insights,
//! as core's `autoscale::decide` takes it.
//!
//! Claims run as standalone tasks, so ECS's service metrics
//! (`AWS/ECS` `CPUUtilization` by `ServiceName`) do not exist for them and
//! ECS service auto scaling cannot track them. Container Insights (on in
//! the stack's cluster) publishes, per task definition family,
//! `CpuUtilized`/`CpuReserved` (CPU units) and
//! `MemoryUtilized`/`MemoryReserved` (MiB) in `ECS/ContainerInsights`,
//! dimensions `ClusterName` and `TaskDefinitionFamily`, one datapoint per
//! task per minute. The sums over one minute give the family's average use
//! in percent of its reservation: `100 × Σ utilized / Σ reserved`, the
//! same figure ECS's `CPUUtilization` is for a service. It is one reading
//! for the whole family; `decide` multiplies it by the desired count, so
//! an average is all it needs.
//!
//! The newest minute with both sums of a resource counts. No datapoint
//! within [`WINDOW`] (tasks still starting, Insights turned off) is no
//! reading, and `decide` then holds.

use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, ScanBy};
use berth_core::autoscale::TaskUsage;
use berth_core::PortError;
use chrono::{DateTime, Utc};

use crate::sdk::port_error;

/// Container Insights' namespace.
pub const NAMESPACE: &str = "ECS/ContainerInsights";

/// How far back a reading may be: Insights publishes each minute, a
/// little late.
pub const WINDOW: chrono::Duration = chrono::Duration::minutes(5);

const PERIOD_SECS: i32 = 60;

/// The metric reader of one cluster.
#[derive(Clone)]
pub struct ContainerInsights {
    client: aws_sdk_cloudwatch::Client,
    cluster: String,
}

impl ContainerInsights {
    pub fn new(client: aws_sdk_cloudwatch::Client, cluster: &str) -> Self {
        Self { client, cluster: cluster.to_owned() }
    }

    /// The average use of `family`'s running tasks over the newest minute
    /// within [`WINDOW`] before `now`; `None` without any datapoint.
    pub async fn usage(&self, family: &str, now: DateTime<Utc>) -> Result<Option<TaskUsage>, PortError> {
        let queries = ["CpuUtilized", "CpuReserved", "MemoryUtilized", "MemoryReserved"]
            .iter()
            .enumerate()
            .map(|(i, name)| self.query(&format!("m{i}"), name, family))
            .collect::<Vec<_>>();
        let start = now - WINDOW;
        let answer = self
            .client
            .get_metric_data()
            .set_metric_data_queries(Some(queries))
            .start_time(aws_smithy_types::DateTime::from_secs(start.timestamp()))
            .end_time(aws_smithy_types::DateTime::from_secs(now.timestamp()))
            .scan_by(ScanBy::TimestampDescending)
            .send()
            .await
            .map_err(|e| port_error("GetMetricData (Container Insights)", e))?;
        let mut series: [Vec<(i64, f64)>; 4] = Default::default();
        for result in answer.metric_data_results() {
            let Some(i) = result.id().and_then(|id| id.strip_prefix('m')).and_then(|i| i.parse::<usize>().ok()) else {
                continue;
            };
            let Some(slot) = series.get_mut(i) else { continue };
            *slot = result.timestamps().iter().map(|t| t.secs()).zip(result.values().iter().copied()).collect();
        }
        let [cpu_used, cpu_reserved, memory_used, memory_reserved] = &series;
        let cpu = newest_ratio(cpu_used, cpu_reserved);
        let memory = newest_ratio(memory_used, memory_reserved);
        if cpu.is_none() && memory.is_none() {
            return Ok(None);
        }
        // A resource without a reading is not tracked this time (decide
        // skips a value that is not finite).
        Ok(Some(TaskUsage {
            cpu_percent_of_reservation: cpu.unwrap_or(f64::NAN),
            memory_percent_of_reservation: memory.unwrap_or(f64::NAN),
        }))
    }

    fn query(&self, id: &str, name: &str, family: &str) -> MetricDataQuery {
        let dimension = |n: &str, v: &str| Dimension::builder().name(n).value(v).build();
        let metric = Metric::builder()
            .namespace(NAMESPACE)
            .metric_name(name)
            .dimensions(dimension("ClusterName", &self.cluster))
            .dimensions(dimension("TaskDefinitionFamily", family))
            .build();
        MetricDataQuery::builder()
            .id(id)
            .metric_stat(MetricStat::builder().metric(metric).period(PERIOD_SECS).stat("Sum").build())
            .return_data(true)
            .build()
    }
}

/// `100 × used / reserved` at the newest timestamp both series have.
fn newest_ratio(used: &[(i64, f64)], reserved: &[(i64, f64)]) -> Option<f64> {
    let mut best: Option<(i64, f64)> = None;
    for (t, u) in used {
        let Some((_, r)) = reserved.iter().find(|(s, _)| s == t) else { continue };
        if *r > 0.0 && best.is_none_or(|(b, _)| *t > b) {
            best = Some((*t, 100.0 * u / r));
        }
    }
    best.map(|(_, ratio)| ratio)
}

#[cfg(test)]
mod tests {
    use super::newest_ratio;

    #[test]
    fn the_newest_minute_both_sums_have_counts() {
        let used = [(60, 100.0), (120, 300.0), (180, 50.0)];
        let reserved = [(60, 512.0), (120, 512.0)];
        assert_eq!(newest_ratio(&used, &reserved), Some(300.0 / 512.0 * 100.0));
        assert_eq!(newest_ratio(&used, &[]), None);
        assert_eq!(newest_ratio(&[(60, 1.0)], &[(60, 0.0)]), None, "no reservation is no reading");
    }
}
