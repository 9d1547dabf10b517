//! The service's error type and how each error becomes an HTTP response.
//!
//! Every failure a client can see is an [`ApiError`]: a status code and a
//! one-line message, sent as `{"error": "..."}`. Handlers return it with `?`;
//! the mapping from I/O errors (ENOSPC, ELOOP, ...) to statuses lives here once.

use std::io;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::name::NameError;

/// An error with the HTTP status a client should see.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(name: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("file not found: {name}"))
    }

    pub fn too_large(limit: u64) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, format!("upload is larger than the limit of {limit} bytes"))
    }

    pub fn volume_full(detail: &str) -> Self {
        Self::new(StatusCode::INSUFFICIENT_STORAGE, format!("volume full: {detail}"))
    }

    pub fn timeout(what: &str) -> Self {
        Self::new(StatusCode::REQUEST_TIMEOUT, format!("timed out waiting for {what}"))
    }

    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "missing or wrong bearer token")
    }

    /// Maps an I/O error met while working on `what` to the status that tells
    /// the client what happened: full volume, not a regular file, or a server fault.
    pub fn io(what: &str, err: &io::Error) -> Self {
        match err.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => Self::volume_full("no space left on device"),
            Some(libc::ELOOP) => Self::new(
                StatusCode::NOT_FOUND,
                format!("{what} is a symbolic link, which the service does not follow"),
            ),
            Some(libc::EISDIR) => Self::new(StatusCode::CONFLICT, format!("{what} is a directory")),
            _ if err.kind() == io::ErrorKind::NotFound => Self::not_found(what),
            _ => Self::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{what}: {err}")),
        }
    }
}

impl From<NameError> for ApiError {
    fn from(err: NameError) -> Self {
        Self::bad_request(err.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() && self.status != StatusCode::INSUFFICIENT_STORAGE {
            tracing::error!(status = %self.status, error = %self.message, "request failed");
        }
        let mut response = (self.status, Json(json!({ "error": self.message }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
