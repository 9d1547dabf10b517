//! Prometheus metrics of the service: requests, bytes moved, latencies and the
//! volume's used and free space, and whether writes are quiesced, served as
//! text at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

type LatencyFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// The service's metrics, shared by every request.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: LatencyFamily,
    pub upload_bytes: Counter,
    pub download_bytes: Counter,
    pub volume_used: Gauge,
    pub volume_free: Gauge,
    pub volume_capacity: Gauge,
    /// 1 while writes are held for a snapshot (`POST /v1/quiesce`), else 0.
    pub quiesced: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("berth");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: LatencyFamily =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0001, 2.0, 18)));
        let upload_bytes = Counter::default();
        let download_bytes = Counter::default();
        let volume_used = Gauge::default();
        let volume_free = Gauge::default();
        let volume_capacity = Gauge::default();
        let quiesced = Gauge::default();
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        registry.register("http_request_duration_seconds", "Time to answer a request (headers)", latency.clone());
        registry.register("upload_bytes", "Bytes received in committed and failed uploads", upload_bytes.clone());
        registry.register("download_bytes", "Bytes sent in downloads", download_bytes.clone());
        registry.register("volume_used_bytes", "Bytes held by files on the volume", volume_used.clone());
        registry.register("volume_free_bytes", "Bytes still writable on the volume", volume_free.clone());
        registry.register(
            "volume_capacity_bytes",
            "Capacity of the volume (the quota if set, else the filesystem size)",
            volume_capacity.clone(),
        );
        registry.register(
            "quiesced",
            "1 while writes are held for a snapshot (POST /v1/quiesce), else 0",
            quiesced.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            upload_bytes,
            download_bytes,
            volume_used,
            volume_free,
            volume_capacity,
            quiesced,
        }
    }
}

impl Metrics {
    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
