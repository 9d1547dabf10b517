//! The admin API of `berth up`: what the `berth` CLI talks to.
//!
//! Loopback only, one bearer token (in the state folder, mode 0600), JSON
//! in and out, errors as `{"error": "…"}` with a status that says whose
//! fault it is. Handlers only read the ledger and runtime or hand a request
//! to the platform; no rule lives here.

mod backups;
mod console;
pub(crate) mod discovery;
mod handlers;
mod sweep;
mod task_view;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use subtle::ConstantTimeEq;

pub use discovery::{AdminInfo, Discovery};
pub use task_view::TaskView;

use crate::host::HostRuntime;
use crate::lb::LbView;
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
    /// The console's sessions and login links.
    console: Arc<console::sessions::Sessions>,
    /// The load balancer, when `berth up` runs one.
    lb: Option<LbView>,
    lb_client: Arc<std::sync::OnceLock<reqwest::Client>>,
}

// By hand: a derive would ask the runtime itself to be Clone.
impl<R: HostRuntime> Clone for AppState<R> {
    fn clone(&self) -> Self {
        Self {
            platform: Arc::clone(&self.platform),
            token: Arc::clone(&self.token),
            console: Arc::clone(&self.console),
            lb: self.lb.clone(),
            lb_client: Arc::clone(&self.lb_client),
        }
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
        return next.run(request).await;
    }
    // The console's session: reads as they are; anything else only with
    // the session's CSRF token, which no other site's page can know.
    if let Some(id) = console::sessions::session_of(request.headers()) {
        if let Some(csrf) = app.console.csrf(&id) {
            let safe = request.method() == Method::GET || request.method() == Method::HEAD;
            let sent = request.headers().get(console::sessions::CSRF_HEADER).map(|v| v.as_bytes()).unwrap_or(b"");
            if safe || bool::from(sent.ct_eq(csrf.as_bytes())) {
                return next.run(request).await;
            }
            return ApiError(
                StatusCode::FORBIDDEN,
                "missing or wrong CSRF token: the console's actions are taken from its own page".into(),
            )
            .into_response();
        }
    }
    ApiError(StatusCode::UNAUTHORIZED, "missing or wrong admin token (see <state>/admin.token)".into()).into_response()
}

/// The admin router for `platform`, guarded by `token`, with the console
/// (and its view of the load balancer `lb`, if berth up runs one).
pub fn router<R: HostRuntime>(platform: Arc<Platform<R>>, token: String, lb: Option<LbView>) -> Router {
    let state = AppState { platform, token: Arc::new(token), console: Arc::default(), lb, lb_client: Arc::default() };
    Router::new()
        .route("/v1/console/links", post(console::new_link::<R>))
        .route("/v1/events/stream", get(console::stream::events::<R>))
        .route("/v1/services/{name}/http/{*path}", any(console::files::forward::<R>))
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
        // The console's pages hold their own session check.
        .route("/console", get(console::index::<R>))
        .route("/console/login", get(console::login_page).post(console::login::<R>))
        .route("/console/login/{code}", get(console::login_link::<R>))
        .route("/console/logout", post(console::logout::<R>))
        .route("/console/assets/{file}", get(console::asset))
        .with_state(state)
}
