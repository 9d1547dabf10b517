//! The web console of `berth up`, served on the admin listener.
//!
//! A page built of the four files in `assets/` (plain HTML, CSS and one
//! script, no framework, compiled into the binary) that reads and acts
//! through the same admin API the CLI uses: it has no data of its own.
//! Here are its pages, its logins ([`sessions`]), the live event stream
//! ([`stream`]) and the proxy to the load balancer for the file browser
//! ([`files`]). Server-rendered HTML for the few pages that need the
//! session (the CSRF token goes into the page), the rest in the script:
//! no Node.js is needed to build berth.

pub mod files;
pub mod sessions;
pub mod stream;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, Json};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::{ApiError, AppState};
use crate::host::HostRuntime;
use sessions::{cookie, session_of};

const INDEX: &str = include_str!("assets/index.html");
const LOGIN: &str = include_str!("assets/login.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// The console page of a session, or the login page.
pub async fn index<R: HostRuntime>(State(app): State<AppState<R>>, headers: HeaderMap) -> Response {
    match session_of(&headers).and_then(|id| app.console.csrf(&id)) {
        Some(csrf) => page(StatusCode::OK, INDEX.replace("{{CSRF}}", &csrf)),
        None => Redirect::to("/console/login").into_response(),
    }
}

pub async fn login_page() -> Response {
    login_with(StatusCode::OK, "")
}

fn login_with(status: StatusCode, error: &str) -> Response {
    page(status, LOGIN.replace("{{ERROR}}", &escape(error)))
}

fn page(status: StatusCode, html: String) -> Response {
    let headers = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        // No frame of another site may hold the console (clickjacking).
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
        ),
    ];
    (status, headers, html).into_response()
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
}

/// Logs in with the admin token: a session cookie, then the console.
pub async fn login<R: HostRuntime>(State(app): State<AppState<R>>, Form(form): Form<LoginForm>) -> Response {
    if !bool::from(form.token.trim().as_bytes().ct_eq(app.token.as_bytes())) {
        return login_with(StatusCode::UNAUTHORIZED, "That is not this berth up's admin token.");
    }
    logged_in(&app)
}

/// Logs in with a one-time link that `berth console` printed.
pub async fn login_link<R: HostRuntime>(State(app): State<AppState<R>>, Path(code): Path<String>) -> Response {
    if !app.console.redeem(&code) {
        return login_with(
            StatusCode::UNAUTHORIZED,
            "This login link was used already or has expired (a link works once, for a minute): run `berth console` again.",
        );
    }
    logged_in(&app)
}

fn logged_in<R: HostRuntime>(app: &AppState<R>) -> Response {
    let id = app.console.open();
    ([(header::SET_COOKIE, cookie(Some(&id)))], Redirect::to("/console")).into_response()
}

#[derive(Deserialize)]
pub struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

/// Ends the session; a form of another site (no CSRF token) cannot.
pub async fn logout<R: HostRuntime>(
    State(app): State<AppState<R>>,
    headers: HeaderMap,
    Form(form): Form<LogoutForm>,
) -> Response {
    let Some(id) = session_of(&headers) else { return Redirect::to("/console/login").into_response() };
    if !app.console.csrf_matches(&id, &form.csrf) {
        return ApiError(StatusCode::FORBIDDEN, "missing or wrong CSRF token".into()).into_response();
    }
    app.console.close(&id);
    ([(header::SET_COOKIE, cookie(None))], Redirect::to("/console/login")).into_response()
}

/// The console's script and style sheet.
pub async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "app.css" => (APP_CSS, "text/css; charset=utf-8"),
        _ => return ApiError::not_found(format!("no console asset {file:?}")).into_response(),
    };
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// A one-time login URL (`berth console`), asked for with the admin token.
pub async fn new_link<R: HostRuntime>(State(app): State<AppState<R>>) -> Json<serde_json::Value> {
    let code = app.console.link();
    Json(json!({
        "path": format!("/console/login/{code}"),
        "expires_in_seconds": sessions::LINK_LIFE.as_secs(),
    }))
}

/// Text made safe to place in HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
