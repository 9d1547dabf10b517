//! The router: routes, shared state, and the middleware every request passes
//! (bearer-token check, metrics). Handlers live in `handlers/`.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use subtle::ConstantTimeEq;

use crate::cluster::Cluster;
use crate::config::ServeConfig;
use crate::error::ApiError;
use crate::handlers;
use crate::health::Health;
use crate::metrics::{Metrics, RequestLabels, RouteLabels};
use crate::quiesce::Gate;
use crate::volume::Volume;

/// What every handler shares.
pub struct AppState {
    pub config: ServeConfig,
    pub volume: Arc<Volume>,
    pub health: Health,
    pub metrics: Metrics,
    pub cluster: Option<Cluster>,
    /// Holds writes while a snapshot is taken (`/v1/quiesce`, `/v1/resume`).
    pub quiesce: Gate,
    /// Set on SIGTERM: `/health` then fails so a load balancer stops sending.
    pub draining: AtomicBool,
}

impl AppState {
    /// The state for `config`; an error says which setting is wrong.
    pub fn new(config: ServeConfig, volume: Arc<Volume>) -> Result<Self, crate::cluster::ClusterError> {
        let metrics = Metrics::default();
        Ok(Self {
            health: Health::new(Arc::clone(&volume)),
            cluster: Cluster::new(&config)?,
            quiesce: Gate::new(metrics.quiesced.clone()),
            metrics,
            draining: AtomicBool::new(false),
            config,
            volume,
        })
    }
}

/// The service's routes, with auth and metrics around them.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(handlers::status::health))
        .route("/metrics", get(handlers::status::metrics))
        .route("/files", get(handlers::list::list_files))
        .route(
            "/files/{name}",
            get(handlers::download::download).put(handlers::upload::put_file).delete(handlers::remove::delete_file),
        )
        .route("/download/{name}", get(handlers::download::download))
        .route("/upload", post(handlers::upload::upload_multipart))
        .route("/v1/quiesce", post(handlers::quiesce::quiesce))
        .route("/v1/resume", post(handlers::quiesce::resume))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this route")
        })
        .layer(middleware::from_fn_with_state(Arc::clone(&state), require_token))
        .layer(middleware::from_fn_with_state(Arc::clone(&state), record_metrics))
        // Uploads are streamed to disk and limited by `max_upload`, not buffered.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// Refuses every route but `/health` without the configured bearer token.
async fn require_token(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let Some(token) = &state.config.token else {
        return next.run(request).await;
    };
    if request.uri().path() == "/health" {
        return next.run(request).await;
    }
    let presented =
        request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer).unwrap_or("");
    if bool::from(presented.as_bytes().ct_eq(token.as_bytes())) {
        next.run(request).await
    } else {
        ApiError::unauthorized().into_response()
    }
}

/// Counts requests and times them to the response headers, by route template.
async fn record_metrics(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    let m = &state.metrics;
    m.latency.get_or_create(&RouteLabels { route: route.clone() }).observe(start.elapsed().as_secs_f64());
    m.requests.get_or_create(&RequestLabels { route, method, status: response.status().as_u16() }).inc();
    response
}

/// The token of an `Authorization: Bearer TOKEN` value; the scheme is
/// case-insensitive (RFC 9110 11.1), so `bearer TOKEN` is one too.
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim_start())
}
