//! `/v1/services/{service}/http/{path}`: the console's file browser reaches
//! a `berth serve` service through the load balancer, as any client does.
//!
//! The browser cannot call the load balancer itself: it is another origin,
//! its certificate is self-signed, and the service may want a token the
//! browser has not got. So the admin API forwards the request to the load
//! balancer's HTTPS listener, trusting exactly its certificate, with the
//! service's own `BERTH_TOKEN` (from its `env` or `[service.secrets]`) if it
//! has one. The answer's status and body come back as they are.

use std::sync::OnceLock;

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};

use super::super::{ApiError, AppState};
use crate::host::HostRuntime;
use crate::lb::LbView;

/// The headers a request or answer keeps on its way through.
const KEPT: [HeaderName; 7] = [
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::CONTENT_DISPOSITION,
    header::ETAG,
    header::IF_NONE_MATCH,
    header::IF_MATCH,
    header::RANGE,
];

/// The HTTPS client for the load balancer, made on first use.
fn client<'a>(lb: &LbView, cell: &'a OnceLock<reqwest::Client>) -> Result<&'a reqwest::Client, ApiError> {
    if let Some(c) = cell.get() {
        return Ok(c);
    }
    let pem = std::fs::read(&lb.cert).map_err(|e| ApiError::internal(format!("{}: {e}", lb.cert.display())))?;
    let cert = reqwest::Certificate::from_pem(&pem).map_err(ApiError::internal)?;
    let made = reqwest::Client::builder()
        .add_root_certificate(cert)
        // The certificate names localhost; the listener is on loopback.
        .resolve("localhost", lb.https_addr)
        .build()
        .map_err(ApiError::internal)?;
    Ok(cell.get_or_init(|| made))
}

pub async fn forward<R: HostRuntime>(
    State(app): State<AppState<R>>,
    Path((service, path)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    request: Request,
) -> Result<Response, ApiError> {
    let config = &app.platform.config;
    let Some(lb) = app.lb.as_ref() else {
        return Err(ApiError(StatusCode::NOT_FOUND, "berth up runs no load balancer ([lb] enabled = false)".into()));
    };
    if config.lb_service() != service {
        return Err(ApiError::not_found(format!(
            "service {service} is not behind the load balancer (it serves {})",
            config.lb_service()
        )));
    }
    let spec = config.services.iter().find(|s| s.name == service);
    let token = match spec.and_then(|s| s.secrets.get("BERTH_TOKEN")) {
        Some(from) => Some(crate::secrets::read_secret(from).map_err(ApiError::internal)?),
        None => spec.and_then(|s| s.env.get("BERTH_TOKEN")).cloned(),
    };
    let port = lb.https_addr.port();
    let url = match query {
        Some(q) => format!("https://localhost:{port}/{path}?{q}"),
        None => format!("https://localhost:{port}/{path}"),
    };
    let (parts, body) = request.into_parts();
    let mut out = client(lb, &app.lb_client)?.request(parts.method, url);
    for name in &KEPT {
        if let Some(v) = parts.headers.get(name) {
            out = out.header(name, v);
        }
    }
    if let Some(token) = token {
        out = out.bearer_auth(token);
    }
    let answer = out
        .body(reqwest::Body::wrap_stream(body.into_data_stream()))
        .send()
        .await
        .map_err(|e| ApiError(StatusCode::BAD_GATEWAY, format!("the load balancer did not answer: {e}")))?;
    let mut response = Response::builder().status(answer.status().as_u16());
    for name in KEPT.iter().chain([&header::WWW_AUTHENTICATE]) {
        if let Some(v) = answer.headers().get(name) {
            response = response.header(name, v);
        }
    }
    response.body(Body::from_stream(answer.bytes_stream())).map_err(ApiError::internal).map(IntoResponse::into_response)
}
