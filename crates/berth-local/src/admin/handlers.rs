//! The admin API's handlers.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use berth_core::event::StopCode;
use berth_core::ledger::read;
use berth_core::ledger::Ledger;
use berth_core::task::{Runtime, TaskArn};
use berth_core::{ClaimName, DesiredState};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{ApiError, AppState};
use crate::host::HostRuntime;

type Answer = Result<Json<Value>, ApiError>;

fn claim_name(raw: &str) -> Result<ClaimName, ApiError> {
    read::claim_name(raw).map_err(read_error)
}

pub async fn status<R: HostRuntime>(State(app): State<AppState<R>>) -> Answer {
    let p = &app.platform;
    let claims = p.ledger.claims().await.map_err(ApiError::internal)?;
    let services: Vec<Value> = p
        .controller
        .services()
        .iter()
        .map(|s| {
            let mine = claims.iter().filter(|c| c.service == s.name);
            let running = mine.filter(|c| c.task.is_some() && c.desired == DesiredState::Running).count();
            json!({ "name": s.name, "desired_count": s.desired_count, "running": running })
        })
        .collect();
    Ok(Json(json!({
        "cluster": p.config.cluster,
        "pid": std::process::id(),
        "started_at": p.started_at,
        "state": p.state.root().display().to_string(),
        "services": services,
        "load_balancer": app.lb.as_ref().map(|lb| json!({
            "url": lb.url,
            "service": p.config.lb_service(),
            "targets": lb.targets().iter().map(|t| json!({
                "id": t.id,
                "addr": t.addr,
                "healthy": t.state == crate::lb::HealthState::Healthy,
                "state": t.state,
                "since": t.since,
                "reason": t.reason,
            })).collect::<Vec<_>>(),
        })),
    })))
}

pub async fn tasks<R: HostRuntime>(State(app): State<AppState<R>>) -> Answer {
    let runtime = &app.platform.runtime;
    let tasks = runtime.tasks().await.map_err(ApiError::internal)?;
    let views: Vec<super::TaskView> =
        tasks.into_iter().map(|task| super::TaskView { pid: runtime.pid(&task.arn), task }).collect();
    Ok(Json(serde_json::to_value(views).map_err(ApiError::internal)?))
}

#[derive(Deserialize)]
pub struct PeersQuery {
    /// Name each peer on the host's loopback by this address instead: where
    /// a container on its own network reaches the host's loopback.
    host: Option<std::net::IpAddr>,
}

/// The running tasks of a service as `berth serve` reads a peer list
/// (core's [`berth_core::membership`]).
pub async fn peers<R: HostRuntime>(
    State(app): State<AppState<R>>,
    Path(service): Path<String>,
    Query(q): Query<PeersQuery>,
) -> Answer {
    let tasks = app.platform.runtime.tasks().await.map_err(ApiError::internal)?;
    let claims = app.platform.ledger.claims().await.map_err(ApiError::internal)?;
    let m = berth_core::membership::membership(&service, &claims, &tasks);
    let url = |endpoint: String| match (q.host, endpoint.parse::<std::net::SocketAddr>()) {
        (Some(host), Ok(addr)) if addr.ip().is_loopback() => {
            format!("http://{}", std::net::SocketAddr::new(host, addr.port()))
        }
        _ => format!("http://{endpoint}"),
    };
    let urls = |endpoints: Vec<String>| endpoints.into_iter().map(url).collect::<Vec<_>>();
    Ok(Json(json!({ "peers": urls(m.members), "leaving": urls(m.leaving), "expected": m.expected })))
}

// The ledger's read-only views: one shape for berth up and the AWS
// ledger (`berth_core::ledger::read`).
fn read_error(e: read::ReadError) -> ApiError {
    match e {
        read::ReadError::NoClaim(_) | read::ReadError::NoView(_) => ApiError::not_found(e.to_string()),
        read::ReadError::BadRequest(m) => ApiError::bad_request(m),
        read::ReadError::Ledger(e) => ApiError::internal(e),
    }
}

pub async fn claims<R: HostRuntime>(State(app): State<AppState<R>>) -> Answer {
    let claims = read::claims(&*app.platform.ledger).await.map_err(read_error)?;
    Ok(Json(serde_json::to_value(claims).map_err(ApiError::internal)?))
}

pub async fn claim<R: HostRuntime>(State(app): State<AppState<R>>, Path(name): Path<String>) -> Answer {
    let name = claim_name(&name)?;
    let history = read::history(&*app.platform.ledger, &name).await.map_err(read_error)?;
    Ok(Json(serde_json::to_value(history).map_err(ApiError::internal)?))
}

#[derive(Deserialize)]
pub struct EventQuery {
    #[serde(default)]
    after: u64,
    claim: Option<String>,
    limit: Option<usize>,
}

pub async fn events<R: HostRuntime>(State(app): State<AppState<R>>, Query(q): Query<EventQuery>) -> Answer {
    let claim = q.claim.as_deref().map(claim_name).transpose()?;
    let events = read::events(&*app.platform.ledger, q.after, claim.as_ref(), q.limit).await.map_err(read_error)?;
    Ok(Json(serde_json::to_value(events).map_err(ApiError::internal)?))
}

#[derive(Deserialize)]
pub struct StopBody {
    #[serde(default = "default_reason")]
    reason: String,
}

fn default_reason() -> String {
    "user".into()
}

/// Stops a task the way ECS would for the cause named, so each path of the
/// controller can be exercised on one machine.
pub async fn stop_task<R: HostRuntime>(
    State(app): State<AppState<R>>,
    Path(task): Path<String>,
    Json(body): Json<StopBody>,
) -> Answer {
    let (code, reason) = match body.reason.as_str() {
        "spot" => (StopCode::SpotInterruption, "Your Spot Task was interrupted."),
        "health" => (StopCode::ServiceSchedulerInitiated, "Task failed container health checks"),
        "user" => (StopCode::UserInitiated, "Task stopped by user (berth stop-task)"),
        other => return Err(ApiError::bad_request(format!("reason {other:?}: expected spot, health or user"))),
    };
    let runtime = &app.platform.runtime;
    let tasks = runtime.tasks().await.map_err(ApiError::internal)?;
    let found = tasks
        .iter()
        .find(|t| t.arn.0 == task || t.arn.short() == task)
        .ok_or_else(|| ApiError::not_found(format!("no task {task} (see `berth ps`)")))?;
    if found.is_stopped() {
        return Err(ApiError(StatusCode::CONFLICT, format!("task {} has already stopped", found.arn.short())));
    }
    let arn: TaskArn = found.arn.clone();
    runtime.stop_task(&arn, code.clone(), reason).await.map_err(ApiError::internal)?;
    Ok(Json(json!({ "task": arn.0, "stop_code": code.as_str() })))
}

#[derive(Deserialize)]
pub struct ScaleBody {
    count: u32,
}

pub async fn scale<R: HostRuntime>(
    State(app): State<AppState<R>>,
    Path(service): Path<String>,
    Json(body): Json<ScaleBody>,
) -> Answer {
    if body.count > 1000 {
        return Err(ApiError::bad_request("count above 1000: berth up runs on one machine"));
    }
    let scaled = app.platform.scale_by_user(&service, body.count).await.map_err(|e| match e {
        crate::platform::PlatformError::Scaling(e) => ApiError::bad_request(e.to_string()),
        e => ApiError::internal(e),
    })?;
    if !scaled {
        return Err(ApiError::not_found(format!("no service {service}")));
    }
    Ok(Json(json!({ "service": service, "desired_count": body.count })))
}

#[derive(Deserialize)]
pub struct RestoreBody {
    snapshot: Option<String>,
    at: Option<DateTime<Utc>>,
    /// A replica to take the snapshot from (with `at`).
    from: Option<String>,
}

pub async fn restore<R: HostRuntime>(
    State(app): State<AppState<R>>,
    Path(name): Path<String>,
    Json(body): Json<RestoreBody>,
) -> Answer {
    let name = claim_name(&name)?;
    if let Some(from) = &body.from {
        let at = body.at.ok_or_else(|| ApiError::bad_request("a restore from a replica takes at, not snapshot"))?;
        let id = app.platform.bring_back(&name, from, at).await.map_err(super::backups::platform_error)?;
        app.platform.restore(&name, &id).await.map_err(|e| ApiError(StatusCode::CONFLICT, e.to_string()))?;
        return Ok(Json(json!({ "claim": name, "snapshot": id, "from": from })));
    }
    let snapshots = app.platform.ledger.snapshots(Some(&name)).await.map_err(ApiError::internal)?;
    let chosen = match (&body.snapshot, body.at) {
        (Some(id), None) => {
            snapshots.iter().find(|s| s.id.0 == *id || (id.len() >= 8 && s.id.0.starts_with(id.as_str())))
        }
        (None, Some(at)) => snapshots.iter().filter(|s| s.time <= at).max_by_key(|s| s.time),
        _ => return Err(ApiError::bad_request("give exactly one of snapshot and at")),
    }
    .cloned()
    .ok_or_else(|| ApiError::not_found(format!("no snapshot of {name} matches")))?;
    app.platform.restore(&name, &chosen.id).await.map_err(|e| ApiError(StatusCode::CONFLICT, e.to_string()))?;
    Ok(Json(json!({ "claim": name, "snapshot": chosen.id })))
}

#[derive(Deserialize)]
pub struct ForkBody {
    /// The new claim's name.
    new: String,
    at: DateTime<Utc>,
    from: Option<String>,
}

/// `berth fork`: a new claim from the source claim's newest snapshot at or
/// before `at` (from a replica too); the source is left running.
pub async fn fork<R: HostRuntime>(
    State(app): State<AppState<R>>,
    Path(name): Path<String>,
    Json(body): Json<ForkBody>,
) -> Answer {
    let name = claim_name(&name)?;
    let new = claim_name(&body.new)?;
    let id = match &body.from {
        Some(from) => app.platform.bring_back(&name, from, body.at).await.map_err(super::backups::platform_error)?,
        None => {
            let snapshots = app.platform.ledger.snapshots(Some(&name)).await.map_err(ApiError::internal)?;
            berth_core::backup::at_or_before(&snapshots, body.at)
                .map(|s| s.id.clone())
                .ok_or_else(|| ApiError::not_found(format!("no snapshot of {name} at or before {}", body.at)))?
        }
    };
    app.platform.fork(&name, &id, &new).await.map_err(super::backups::platform_error)?;
    Ok(Json(json!({ "claim": new, "fork_of": name, "snapshot": id })))
}

pub async fn down<R: HostRuntime>(State(app): State<AppState<R>>) -> Result<(StatusCode, Json<Value>), ApiError> {
    let claims = app.platform.ledger.claims().await.map_err(ApiError::internal)?;
    let stopping = claims.iter().filter(|c| c.task.is_some()).count();
    app.platform.request_down();
    Ok((StatusCode::ACCEPTED, Json(json!({ "stopping": stopping }))))
}

/// A service's record: revisions and the deployment, if any.
pub async fn service<R: HostRuntime>(State(app): State<AppState<R>>, Path(service): Path<String>) -> Answer {
    let record = app
        .platform
        .ledger
        .service(&service)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(format!("no service {service}")))?;
    Ok(Json(serde_json::to_value(record).map_err(ApiError::internal)?))
}

/// Starts a rolling deployment of a service.
pub async fn deploy<R: HostRuntime>(
    State(app): State<AppState<R>>,
    Path(service): Path<String>,
    Json(body): Json<crate::platform::DeployRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    use crate::platform::PlatformError as E;
    let record = app.platform.deploy(&service, &body).await.map_err(|e| match e {
        E::NoService(_) => ApiError::not_found(e.to_string()),
        E::Deploy(_) | E::ServiceBusy(_) => ApiError(StatusCode::CONFLICT, e.to_string()),
        e => ApiError::internal(e),
    })?;
    Ok((StatusCode::ACCEPTED, Json(serde_json::to_value(record).map_err(ApiError::internal)?)))
}
