//! Forwarding one request (HTTPS, or HTTP with the forward action) to a
//! healthy target and streaming the answer back.
//!
//! Bodies are passed through as streams in both directions (hyper's
//! backpressure keeps an upload of any size in constant memory). The
//! request gains `X-Forwarded-For` (appended), `X-Forwarded-Proto`
//! and `X-Forwarded-Port`; hop-by-hop headers are dropped both ways. With no
//! healthy target the answer is 503, when the target cannot be reached 502,
//! both as JSON `{"error": …, "detail": …}`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;

use super::health::error_chain;
use super::pool::{InFlight, Pool};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body of every answer the load balancer gives.
pub(crate) type LbBody = UnsyncBoxBody<Bytes, BoxError>;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");

/// Headers that describe one connection, not the request (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
];

/// How long an idle connection to a target is kept for the next request.
const TARGET_IDLE: std::time::Duration = std::time::Duration::from_secs(4);

/// How much the proxy reads from a target at once.
const READ_BUFFER: usize = 256 * 1024;

/// The proxy shared by every connection of one listener.
pub(crate) struct Proxy {
    pool: Arc<Pool>,
    client: Client<HttpConnector, Incoming>,
    /// The listener's port and scheme, for `X-Forwarded-Port` and `-Proto`.
    port: u16,
    proto: &'static str,
}

impl Proxy {
    pub fn new(pool: Arc<Pool>, port: u16, proto: &'static str) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        // Large fixed reads from the target: a body passes in fewer, bigger
        // frames (hyper's adaptive buffer starts at 8 KiB).
        // Idle connections to targets are dropped well before `berth
        // serve` closes them (after its 10 s header timeout): a request sent
        // on a connection the target is closing fails with a 502.
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            .http1_read_buf_exact_size(READ_BUFFER)
            .pool_idle_timeout(TARGET_IDLE)
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .build(connector);
        Self { pool, client, port, proto }
    }

    /// Answers one request from `peer`.
    pub async fn handle(&self, request: Request<Incoming>, peer: SocketAddr) -> Result<Response<LbBody>, Infallible> {
        let Some(guard) = self.pool.pick() else {
            let counts = self.pool.counts();
            return Ok(json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({
                    "error": "no healthy target",
                    "detail": "no task passes its health check right now; retry in a moment",
                    "targets": counts,
                }),
            ));
        };
        let backend = guard.backend().clone();
        let request = match outbound(request, backend.target.addr, peer, (self.port, self.proto)) {
            Ok(request) => request,
            Err(e) => return Ok(json_error(StatusCode::BAD_REQUEST, serde_json::json!({ "error": e.to_string() }))),
        };
        let cut = backend.cut_signal();
        let answer = tokio::select! {
            answer = self.client.request(request) => answer,
            () = cut => return Ok(bad_gateway("the target was deregistered before it answered".into())),
        };
        match answer {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                let body = Tracked { inner: body, guard: Some(guard), cut: Box::pin(backend.cut_signal()) };
                Ok(Response::from_parts(parts, body.boxed_unsync()))
            }
            Err(e) => {
                tracing::warn!(target_id = %backend.target.id, error = %error_chain(&e), "load balancer: target failed");
                Ok(bad_gateway(format!("target {}: {}", backend.target.addr, error_chain(&e))))
            }
        }
    }
}

/// A request that cannot be forwarded as it came (a 400 to the client).
#[derive(Debug, thiserror::Error)]
enum Unforwardable {
    #[error("invalid request target: {0}")]
    Target(#[source] hyper::http::Error),
    #[error("invalid X-Forwarded-For: {0}")]
    ForwardedFor(#[source] hyper::header::InvalidHeaderValue),
}

/// The request as the target gets it: origin-form URI on the target's
/// address, forwarding headers added, hop-by-hop headers removed.
fn outbound(
    request: Request<Incoming>,
    target: SocketAddr,
    peer: SocketAddr,
    (port, proto): (u16, &'static str),
) -> Result<Request<Incoming>, Unforwardable> {
    let (mut parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    parts.uri = Uri::builder()
        .scheme("http")
        .authority(target.to_string())
        .path_and_query(path)
        .build()
        .map_err(Unforwardable::Target)?;
    if !parts.headers.contains_key(header::HOST) {
        if let Ok(host) = HeaderValue::from_str(&target.to_string()) {
            parts.headers.insert(header::HOST, host);
        }
    }
    strip_hop_by_hop(&mut parts.headers);
    let headers = &mut parts.headers;
    let client = peer.ip().to_string();
    let forwarded_for = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(before) if !before.trim().is_empty() => format!("{before}, {client}"),
        _ => client,
    };
    headers.insert(X_FORWARDED_FOR, HeaderValue::from_str(&forwarded_for).map_err(Unforwardable::ForwardedFor)?);
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    headers.insert(X_FORWARDED_PORT, HeaderValue::from(port));
    Ok(Request::from_parts(parts, body))
}

/// Removes the hop-by-hop headers and those the `Connection` header names.
/// `Upgrade` goes too: upgraded connections (WebSocket) are not proxied.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
}

fn bad_gateway(detail: String) -> Response<LbBody> {
    json_error(
        StatusCode::BAD_GATEWAY,
        serde_json::json!({ "error": "target unreachable", "detail": detail, "retry": true }),
    )
}

pub(crate) fn json_error(status: StatusCode, body: serde_json::Value) -> Response<LbBody> {
    let mut response = Response::new(full(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

pub(crate) fn full(bytes: impl Into<Bytes>) -> LbBody {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

/// A target's answer body that keeps its request counted in flight until it
/// ends, and fails once the target's deregistration delay has run out.
struct Tracked {
    inner: Incoming,
    guard: Option<InFlight>,
    cut: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.guard.is_some() && this.cut.as_mut().poll(cx).is_ready() {
            this.guard = None;
            return Poll::Ready(Some(Err("deregistration delay over: answer cut".into())));
        }
        let frame = std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if !matches!(frame, Some(Ok(_))) {
            this.guard = None;
        }
        Poll::Ready(frame.map(|f| f.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_stripped() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, x-secret"));
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key(header::CONTENT_TYPE));
    }
}
