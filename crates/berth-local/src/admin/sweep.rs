//! The sweep's plan over the admin API: `GET /v1/sweep` (what it would
//! delete and keep, with each volume's size) and `POST /v1/sweep` (carry
//! that plan out now).

use axum::extract::State;
use axum::Json;
use berth_core::sweep::Sweep;
use berth_core::Volumes;
use serde::Serialize;
use serde_json::json;

use super::{ApiError, AppState};
use crate::host::HostRuntime;
use crate::platform::Platform;

type Answer = Result<Json<serde_json::Value>, ApiError>;

/// One unreferenced volume past the grace period, as the plan shows it.
#[derive(Serialize)]
struct PlannedVolume {
    id: String,
    claim: String,
    generation: Option<u64>,
    bytes: u64,
    deletes: bool,
    reason: String,
}

pub async fn plan<R: HostRuntime>(State(app): State<AppState<R>>) -> Answer {
    let plan = app.platform.controller.sweep_plan().await.map_err(ApiError::internal)?;
    Ok(Json(report(&app.platform, &plan).await?))
}

pub async fn now<R: HostRuntime>(State(app): State<AppState<R>>) -> Answer {
    let plan = app.platform.controller.sweep_plan().await.map_err(ApiError::internal)?;
    let mut answer = report(&app.platform, &plan).await?;
    let (volumes, snapshots) = app.platform.controller.carry_out_sweep(&plan).await.map_err(ApiError::internal)?;
    answer["deleted"] = json!({ "volumes": volumes, "snapshots": snapshots });
    Ok(Json(answer))
}

/// The plan with each volume's claim, generation and size, and totals.
async fn report<R: HostRuntime>(platform: &Platform<R>, plan: &Sweep) -> Result<serde_json::Value, ApiError> {
    let store = platform.controller.volumes().inner();
    let known = store.list().await.map_err(ApiError::internal)?;
    let mut volumes = Vec::new();
    for (id, verdict) in &plan.verdicts {
        let info = known.iter().find(|v| &v.id == id);
        let path = store.path(id);
        let bytes = tokio::task::spawn_blocking(move || crate::platform::drill::tree_size(&path).map_or(0, |(_, b)| b))
            .await
            .unwrap_or(0);
        volumes.push(PlannedVolume {
            id: id.0.clone(),
            claim: info.map(|v| v.claim.to_string()).unwrap_or_default(),
            generation: info.and_then(|v| v.generation).map(|g| g.0),
            bytes,
            deletes: verdict.deletes(),
            reason: verdict.reason(),
        });
    }
    let sum = |deletes: bool| volumes.iter().filter(|v| v.deletes == deletes).map(|v| v.bytes).sum::<u64>();
    Ok(json!({
        "volumes": volumes,
        "snapshots": plan.snapshots,
        "totals": {
            "volumes_deleted": plan.volumes().len(),
            "bytes_deleted": sum(true),
            "volumes_kept": plan.kept().len(),
            "bytes_kept": sum(false),
            "snapshots_deleted": plan.snapshots.len(),
        },
    }))
}
