//! The admin API of `berth up`: what the `berth` CLI talks to.
//!
//! Loopback only, one bearer token (in the state folder, mode 0600), JSON
//! in and out, errors as `{"error": "…"}` with a status that says whose
//! fault it is. Handlers only read the ledger and runtime or hand a request
//! to the platform; no rule lives here.

mod backups;
mod discovery;
mod handlers;
mod sweep;
mod task_view;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use subtle::ConstantTimeEq;

pub use discovery::{AdminInfo, Discovery};
pub use task_view::TaskView;

use crate::host::HostRuntime;
use crate::platform::Platform;

/// An error answer.
pub struct ApiError(StatusCode, String);

impl ApiError {
    pub fn bad_request(m: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, m.into())
    }
    pub fn not_found(m: impl Into<String>) -> Self {
        Self(StatusCode::NOT_FOUND, m.into())
    }
    pub fn internal(m: impl std::fmt::Display) -> Self {
        Self(StatusCode::INTERNAL_SERVER_ERROR, m.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

struct AppState<R: HostRuntime> {
    platform: Arc<Platform<R>>,
    token: Arc<String>,
}

// By hand: a derive would ask the runtime itself to be Clone.
impl<R: HostRuntime> Clone for AppState<R> {
    fn clone(&self) -> Self {
        Self { platform: Arc::clone(&self.platform), token: Arc::clone(&self.token) }
    }
}

async fn auth<R: HostRuntime>(State(app): State<AppState<R>>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        // The scheme is case-insensitive (RFC 9110 11.1).
        .and_then(|v| v.split_once(' ').filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer")))
        .map(|(_, token)| token.trim_start())
        .unwrap_or("");
    if given.as_bytes().ct_eq(app.token.as_bytes()).into() {
        next.run(request).await
    } else {
        ApiError(StatusCode::UNAUTHORIZED, "missing or wrong admin token (see <state>/admin.token)".into())
            .into_response()
    }
}

/// The admin router for `platform`, guarded by `token`.
pub fn router<R: HostRuntime>(platform: Arc<Platform<R>>, token: String) -> Router {
    let state = AppState { platform, token: Arc::new(token) };
    Router::new()
        .route("/v1/status", get(handlers::status::<R>))
        .route("/v1/tasks", get(handlers::tasks::<R>))
        .route("/v1/tasks/{task}/stop", post(handlers::stop_task::<R>))
        .route("/v1/claims", get(handlers::claims::<R>))
        .route("/v1/claims/{name}", get(handlers::claim::<R>))
        .route("/v1/claims/{name}/restore", post(handlers::restore::<R>))
        .route("/v1/claims/{name}/backup", post(backups::backup_now::<R>))
        .route("/v1/claims/{name}/fork", post(handlers::fork::<R>))
        .route("/v1/claims/{name}/verify", post(backups::verify::<R>))
        .route("/v1/claims/{name}/drill", post(backups::drill::<R>))
        .route("/v1/backups", get(backups::report::<R>))
        .route("/v1/metrics", get(backups::metrics::<R>))
        .route("/v1/events", get(handlers::events::<R>))
        .route("/v1/services/{name}/scale", post(handlers::scale::<R>))
        .route("/v1/services/{name}", get(handlers::service::<R>))
        .route("/v1/services/{name}/deploy", post(handlers::deploy::<R>))
        .route("/v1/down", post(handlers::down::<R>))
        .route("/v1/sweep", get(sweep::plan::<R>).post(sweep::now::<R>))
        .layer(middleware::from_fn_with_state(state.clone(), auth::<R>))
        // The peer list is for the service's own tasks (`berth serve
        // --peers-url`), which hold no token: it names loopback endpoints only.
        .route("/v1/services/{name}/peers", get(handlers::peers::<R>))
        .with_state(state)
}
