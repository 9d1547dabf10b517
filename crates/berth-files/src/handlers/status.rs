//! `/health` and `/metrics`: what load balancers and monitoring read.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::{blocking, iso8601, Shared};
use crate::volume::filesystem_size;

/// 200 while the volume takes writes; 503 with a reason otherwise, and while draining.
/// While quiesced (or a quiesce waits) the write probe is skipped: the volume
/// must not change under a snapshot, and a held probe would fail the check.
pub async fn health(state: Shared) -> Response {
    let timestamp = iso8601(SystemTime::now());
    let verdict = if state.draining.load(Ordering::Relaxed) {
        Err(crate::health::Unhealthy::Draining)
    } else if let Some(_probe) = state.quiesce.try_probe() {
        state.health.check().await
    } else {
        state.health.check_present().await
    };
    match verdict {
        Ok(()) => Json(json!({ "status": "healthy", "timestamp": timestamp })).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unhealthy", "reason": reason.to_string(), "timestamp": timestamp })),
        )
            .into_response(),
    }
}

/// Prometheus text; the volume gauges are read at scrape time.
pub async fn metrics(state: Shared) -> Response {
    let volume = state.volume.clone();
    let space = blocking(move || (volume.free(), filesystem_size(volume.root()))).await;
    let m = &state.metrics;
    m.volume_used.set(state.volume.used() as i64);
    if let Ok((Ok(free), Ok(size))) = space {
        m.volume_free.set(free as i64);
        m.volume_capacity.set(state.volume.capacity().unwrap_or(size) as i64);
    }
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], m.render()).into_response()
}
