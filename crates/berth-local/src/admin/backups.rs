//! The admin API's backup routes: the report and its metrics, a backup now,
//! restore verification and DR drills.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_core::ClaimName;
use serde::Deserialize;
use serde_json::Value;

use super::{ApiError, AppState};
use crate::host::HostRuntime;
use crate::platform::drill::CheckKind;
use crate::platform::PlatformError;

type Answer = Result<Json<Value>, ApiError>;

fn claim_name(raw: &str) -> Result<ClaimName, ApiError> {
    ClaimName::parse(raw).map_err(|e| ApiError::bad_request(format!("claim {raw:?}: {e}")))
}

/// How a platform error reads over HTTP.
pub(super) fn platform_error(e: PlatformError) -> ApiError {
    match e {
        PlatformError::NoClaim(_) | PlatformError::NoSnapshotAt(..) => ApiError::not_found(e.to_string()),
        PlatformError::NoService(_) | PlatformError::NoReplica(..) | PlatformError::NoBackupPolicy(_) => {
            ApiError::bad_request(e.to_string())
        }
        PlatformError::Busy(_) | PlatformError::Backup(_) | PlatformError::ClaimExists(_) => {
            ApiError(StatusCode::CONFLICT, e.to_string())
        }
        e => ApiError::internal(e),
    }
}

pub async fn report<R: HostRuntime>(State(app): State<AppState<R>>) -> Answer {
    let report = app.platform.backup_report().await.map_err(platform_error)?;
    Ok(Json(serde_json::to_value(report).map_err(ApiError::internal)?))
}

pub async fn metrics<R: HostRuntime>(State(app): State<AppState<R>>) -> Result<Response, ApiError> {
    let text = app.platform.backup_metrics().await.map_err(platform_error)?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

pub async fn backup_now<R: HostRuntime>(State(app): State<AppState<R>>, Path(name): Path<String>) -> Answer {
    let name = claim_name(&name)?;
    let outcome = app.platform.backup_now(&name).await.map_err(platform_error)?;
    Ok(Json(serde_json::to_value(outcome).map_err(ApiError::internal)?))
}

#[derive(Deserialize, Default)]
pub struct CheckBody {
    /// A replica's name; none means the primary (verify) or the first
    /// replica, else the primary (drill).
    from: Option<String>,
}

pub async fn verify<R: HostRuntime>(
    State(app): State<AppState<R>>,
    Path(name): Path<String>,
    body: Option<Json<CheckBody>>,
) -> Answer {
    check(app, name, body, CheckKind::Verify).await
}

pub async fn drill<R: HostRuntime>(
    State(app): State<AppState<R>>,
    Path(name): Path<String>,
    body: Option<Json<CheckBody>>,
) -> Answer {
    check(app, name, body, CheckKind::Drill).await
}

async fn check<R: HostRuntime>(
    app: AppState<R>,
    name: String,
    body: Option<Json<CheckBody>>,
    kind: CheckKind,
) -> Answer {
    let name = claim_name(&name)?;
    let mut from = body.and_then(|b| b.0.from);
    if from.is_none() && kind == CheckKind::Drill {
        from = app.platform.first_replica(&name).await.map_err(platform_error)?;
    }
    let report = app.platform.recovery_check(&name, from.as_deref(), kind).await.map_err(platform_error)?;
    Ok(Json(serde_json::to_value(report).map_err(ApiError::internal)?))
}
