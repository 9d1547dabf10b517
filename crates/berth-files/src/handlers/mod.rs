//! HTTP handlers, one file per family of routes.

pub mod download;
pub mod list;
pub mod quiesce;
pub mod remove;
pub mod status;
pub mod upload;

use std::sync::Arc;

use crate::error::ApiError;

/// Runs blocking filesystem work off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, format!("worker failed: {e}")))
}

/// RFC 3339 in UTC with microseconds, the precision of the blog's `isoformat()`.
pub(crate) fn iso8601(t: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

pub(crate) type Shared = axum::extract::State<Arc<crate::app::AppState>>;
