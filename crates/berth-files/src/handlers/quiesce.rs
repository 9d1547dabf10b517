//! `POST /v1/quiesce` and `POST /v1/resume`: hold the volume's writes around
//! a consistent snapshot (the pre and post hooks of a backup job). The gate
//! itself is in `quiesce.rs`.

use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::Shared;
use crate::error::ApiError;

/// How long a quiesce holds writes when the client names no `timeout_ms`.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// Longest hold a client may ask for: ten minutes.
pub const MAX_TIMEOUT_MS: u64 = 600_000;

#[derive(Debug, Deserialize)]
pub struct QuiesceQuery {
    timeout_ms: Option<u64>,
}

/// Holds new writes, waits for those in flight and flushes the volume; 200
/// once quiesced, 503 if that took longer than `timeout_ms` (not quiesced).
pub async fn quiesce(
    state: Shared,
    query: Result<Query<QuiesceQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let range = || format!("timeout_ms must be a whole number of milliseconds from 1 to {MAX_TIMEOUT_MS}");
    let Query(query) =
        query.map_err(|e| ApiError::bad_request(format!("bad query: {}; {}", e.body_text(), range())))?;
    let timeout_ms = query.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
    if !(1..=MAX_TIMEOUT_MS).contains(&timeout_ms) {
        return Err(ApiError::bad_request(range()));
    }
    let volume = state.volume.clone();
    let done = state
        .quiesce
        .quiesce(Duration::from_millis(timeout_ms), move || volume.flush())
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(Json(json!({ "quiesced": true, "timeout_ms": timeout_ms, "in_flight_waited": done.in_flight_waited })))
}

/// Lets held writes in; `resumed` says whether the volume was quiesced.
pub async fn resume(state: Shared) -> Json<Value> {
    Json(json!({ "resumed": state.quiesce.resume().await }))
}
