//! `GET`/`HEAD /download/{name}` (and `/files/{name}`): streamed reads with
//! validators and single byte ranges; a file held by another member of the
//! cluster is streamed from it.

use std::io::{Seek, SeekFrom};

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;

use super::{blocking, Shared};
use crate::cluster::is_local_scope;
use crate::error::ApiError;
use crate::name::FileName;
use crate::read_ahead;

/// Request headers a proxied read passes on to the member holding the file.
const FORWARDED_REQUEST: [header::HeaderName; 3] = [header::RANGE, header::IF_NONE_MATCH, header::IF_RANGE];
/// Response headers a proxied read passes back.
const FORWARDED_RESPONSE: [header::HeaderName; 6] = [
    header::CONTENT_LENGTH,
    header::CONTENT_RANGE,
    header::ETAG,
    header::LAST_MODIFIED,
    header::ACCEPT_RANGES,
    header::CONTENT_TYPE,
];

pub async fn download(
    state: Shared,
    method: Method,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(raw) = name.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let name = FileName::parse(&raw)?;
    let volume = state.volume.clone();
    let lookup = name.clone();
    let opened = blocking(move || volume.open_read(&lookup)).await?;
    let file = match opened {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return match state.cluster.as_ref().filter(|_| !is_local_scope(&headers)) {
                Some(cluster) => {
                    let members = cluster.members().await;
                    let found = cluster.lookup(&name, &members).await;
                    let missing = cluster.missing(&members, &found);
                    match found.holder {
                        Some(member) => proxy(&state, &member, &name, method, &headers).await,
                        // A member of the service is not running (being
                        // replaced): the file may be on its volume. Not a
                        // 404, which would tell a client the file is gone.
                        None if missing > 0 => Err(ApiError::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!(
                                "{name} is on none of the members that answer, and {missing} member(s) of the service \
                                 do not answer (being started or replaced); retry in a moment",
                            ),
                        )),
                        None => Err(ApiError::not_found(name.as_str())),
                    }
                }
                None => Err(ApiError::not_found(name.as_str())),
            };
        }
        Err(e) => return Err(ApiError::io(name.as_str(), &e)),
    };

    let last_modified = httpdate::fmt_http_date(file.modified);
    let mut response = Response::builder()
        .header(header::ETAG, &file.etag)
        .header(header::LAST_MODIFIED, &last_modified)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_TYPE, "application/octet-stream");

    if let Some(tags) = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        // If-None-Match compares weakly (RFC 9110 13.1.2): `W/"x"` matches `"x"`.
        let weak = |t: &str| t.trim().trim_start_matches("W/").to_owned();
        if tags.split(',').any(|t| t.trim() == "*" || weak(t) == weak(&file.etag)) {
            return Ok(response.status(StatusCode::NOT_MODIFIED).body(Body::empty()).expect("valid response"));
        }
    }
    // If-Range with another validator means "the file changed: send it whole".
    let range_applies = headers
        .get(header::IF_RANGE)
        .is_none_or(|v| v.to_str().ok() == Some(file.etag.as_str()) || v.to_str().ok() == Some(&last_modified));
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(spec) if range_applies => parse_range(spec, file.size),
        _ => Range::Full,
    };
    let (status, start, len) = match range {
        Range::Full => (StatusCode::OK, 0, file.size),
        Range::Part { start, end } => {
            response = response.header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{}", file.size));
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        Range::Unsatisfiable => {
            let mut resp = ApiError::new(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable").into_response();
            resp.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{}", file.size)).expect("ascii"),
            );
            return Ok(resp);
        }
    };
    response = response.status(status).header(header::CONTENT_LENGTH, len);
    if method == Method::HEAD {
        return Ok(response.body(Body::empty()).expect("valid response"));
    }

    let mut std_file = file.file;
    if start > 0 {
        std_file.seek(SeekFrom::Start(start)).map_err(|e| ApiError::io(name.as_str(), &e))?;
    }
    let counter = state.metrics.download_bytes.clone();
    let stream = read_ahead::stream(std_file, len).inspect_ok(move |chunk| {
        counter.inc_by(chunk.len() as u64);
    });
    Ok(response.body(Body::from_stream(stream)).expect("valid response"))
}

/// Streams a read from the member that holds the file.
async fn proxy(
    state: &Shared,
    member: &str,
    name: &FileName,
    method: Method,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let cluster = state.cluster.as_ref().expect("proxy is only called in a cluster");
    let mut request = cluster.request(method, member, &["download", name.as_str()]);
    for h in FORWARDED_REQUEST {
        if let Some(v) = headers.get(&h) {
            request = request.header(h, v);
        }
    }
    let upstream = request
        .send()
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, format!("peer {member} did not answer: {e}")))?;
    let mut response = Response::builder().status(upstream.status().as_u16());
    for h in FORWARDED_RESPONSE {
        if let Some(v) = upstream.headers().get(&h) {
            response = response.header(h, v.as_bytes());
        }
    }
    let counter = state.metrics.download_bytes.clone();
    let body = upstream.bytes_stream().inspect_ok(move |chunk| {
        counter.inc_by(chunk.len() as u64);
    });
    Ok(response.body(Body::from_stream(body)).expect("valid response"))
}

/// A parsed `Range` header, against a file of known length.
#[derive(Debug, PartialEq, Eq)]
enum Range {
    /// No usable range: send the whole file (RFC 9110 lets a server ignore
    /// malformed and multi-range requests).
    Full,
    /// Inclusive byte positions.
    Part {
        start: u64,
        end: u64,
    },
    Unsatisfiable,
}

fn parse_range(spec: &str, size: u64) -> Range {
    let Some(set) = spec.trim().strip_prefix("bytes=") else {
        return Range::Full;
    };
    if set.contains(',') {
        return Range::Full;
    }
    let Some((first, last)) = set.trim().split_once('-') else {
        return Range::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // Suffix: the last N bytes.
        return match last.parse::<u64>() {
            Ok(0) => Range::Unsatisfiable,
            Ok(_) if size == 0 => Range::Unsatisfiable,
            Ok(n) => Range::Part { start: size.saturating_sub(n), end: size - 1 },
            Err(_) => Range::Full,
        };
    }
    let Ok(start) = first.parse::<u64>() else {
        return Range::Full;
    };
    let end = if last.is_empty() {
        u64::MAX
    } else {
        match last.parse::<u64>() {
            Ok(end) if end >= start => end,
            _ => return Range::Full,
        }
    };
    if start >= size {
        return Range::Unsatisfiable;
    }
    Range::Part { start, end: end.min(size - 1) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Range::Part { start: 0, end: 9 });
        assert_eq!(parse_range("bytes=90-", 100), Range::Part { start: 90, end: 99 });
        assert_eq!(parse_range("bytes=90-200", 100), Range::Part { start: 90, end: 99 });
        assert_eq!(parse_range("bytes=-10", 100), Range::Part { start: 90, end: 99 });
        assert_eq!(parse_range("bytes=-500", 100), Range::Part { start: 0, end: 99 });
        assert_eq!(parse_range("bytes=100-", 100), Range::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Range::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), Range::Unsatisfiable);
        assert_eq!(parse_range("bytes=5-1", 100), Range::Full);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Range::Full);
        assert_eq!(parse_range("items=0-1", 100), Range::Full);
        assert_eq!(parse_range("bytes=x-1", 100), Range::Full);
    }
}
