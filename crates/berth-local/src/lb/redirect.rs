//! The HTTP listener's only answer: a permanent redirect (308, which keeps
//! the method and body) to the same path and query on the HTTPS listener.
//!
//! The redirect names the host the client asked for (its `Host` header
//! without the port, as ALB's `#{host}`), else `listen_host`, so a client
//! that came through `localhost` stays on a name the certificate covers.

use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};

use super::proxy::{full, LbBody};

/// The `Location` for `request`: `https://host:https_port/path?query`.
pub(crate) fn location<B>(request: &Request<B>, listen_host: &str, https_port: u16) -> String {
    let asked = request.headers().get(header::HOST).and_then(|h| h.to_str().ok()).and_then(host_of);
    let host = match asked {
        Some(host) => host.to_string(),
        None if listen_host.contains(':') && !listen_host.starts_with('[') => format!("[{listen_host}]"),
        None => listen_host.to_string(),
    };
    let path = request.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
    format!("https://{host}:{https_port}{path}")
}

/// The host part of a `Host` header value ("[::1]:8080" → "[::1]"), if it is a plausible host.
fn host_of(value: &str) -> Option<&str> {
    let host = if value.starts_with('[') { &value[..=value.find(']')?] } else { value.split(':').next()? };
    let plausible = !host.is_empty()
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'));
    plausible.then_some(host)
}

pub(crate) fn redirect<B>(request: &Request<B>, listen_host: &str, https_port: u16) -> Response<LbBody> {
    let location = location(request, listen_host, https_port);
    let mut response = Response::new(full(""));
    *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(host: Option<&str>, uri: &str) -> Request<()> {
        let mut builder = Request::get(uri);
        if let Some(host) = host {
            builder = builder.header(header::HOST, host);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn keeps_path_and_query_and_the_asked_host() {
        let r = request(Some("localhost:8080"), "/files/a.txt?x=1");
        assert_eq!(location(&r, "127.0.0.1", 8443), "https://localhost:8443/files/a.txt?x=1");
        let r = request(Some("[::1]:8080"), "/");
        assert_eq!(location(&r, "127.0.0.1", 8443), "https://[::1]:8443/");
    }

    #[test]
    fn falls_back_to_listen_host() {
        assert_eq!(location(&request(None, "/health"), "127.0.0.1", 443), "https://127.0.0.1:443/health");
        assert_eq!(location(&request(Some("a/b"), "/"), "::1", 8443), "https://[::1]:8443/");
    }
}
