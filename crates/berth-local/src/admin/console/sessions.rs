//! The console's logins: sessions (a cookie naming one, with its own CSRF
//! token) and one-time login links (`berth console`).
//!
//! A session is made by the admin token, typed into the login page or
//! carried by a one-time link that `berth console` asks for with the token
//! and that works once, within a minute. Both live in memory only: a
//! restarted `berth up` has a new admin token, so every session ends with
//! it. The cookie is `HttpOnly` (no script reads it) and `SameSite=Strict`
//! (no other site's page sends it); every request that changes something
//! must also carry the session's CSRF token in a header, which only the
//! console's own page knows.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;

/// The cookie that names a session.
pub const COOKIE: &str = "berth_session";
/// The header that carries a session's CSRF token.
pub const CSRF_HEADER: &str = "x-berth-csrf";
/// How long a session lasts without use.
const SESSION_IDLE: Duration = Duration::from_secs(12 * 3600);
/// How long a one-time login link works.
pub const LINK_LIFE: Duration = Duration::from_secs(60);

struct Session {
    csrf: String,
    last_used: Instant,
}

/// Every session and unused login link of this `berth up`.
#[derive(Default)]
pub struct Sessions {
    sessions: Mutex<HashMap<String, Session>>,
    links: Mutex<HashMap<String, Instant>>,
}

impl Sessions {
    /// A new session: its id (the cookie's value).
    pub fn open(&self) -> String {
        let id = crate::admin::discovery::random_hex(32);
        let session = Session { csrf: crate::admin::discovery::random_hex(32), last_used: Instant::now() };
        let mut sessions = self.sessions.lock().expect("sessions lock");
        sessions.retain(|_, s| s.last_used.elapsed() < SESSION_IDLE);
        sessions.insert(id.clone(), session);
        id
    }

    /// The CSRF token of a live session, which this use keeps alive.
    pub fn csrf(&self, id: &str) -> Option<String> {
        let mut sessions = self.sessions.lock().expect("sessions lock");
        let session = sessions.get_mut(id).filter(|s| s.last_used.elapsed() < SESSION_IDLE)?;
        session.last_used = Instant::now();
        Some(session.csrf.clone())
    }

    /// Whether `given` is the CSRF token of session `id`.
    pub fn csrf_matches(&self, id: &str, given: &str) -> bool {
        self.csrf(id).is_some_and(|csrf| csrf.as_bytes().ct_eq(given.as_bytes()).into())
    }

    pub fn close(&self, id: &str) {
        self.sessions.lock().expect("sessions lock").remove(id);
    }

    /// A new one-time login code.
    pub fn link(&self) -> String {
        let code = crate::admin::discovery::random_hex(24);
        let mut links = self.links.lock().expect("links lock");
        links.retain(|_, made| made.elapsed() < LINK_LIFE);
        links.insert(code.clone(), Instant::now());
        code
    }

    /// Uses up a login code; whether it was good.
    pub fn redeem(&self, code: &str) -> bool {
        let made = self.links.lock().expect("links lock").remove(code);
        made.is_some_and(|made| made.elapsed() < LINK_LIFE)
    }
}

/// The session id a request's `Cookie` header names, if any.
pub fn session_of(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// The `Set-Cookie` value for session `id`; `None` ends it.
pub fn cookie(id: Option<&str>) -> String {
    match id {
        Some(id) => format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict"),
        None => format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_link_works_once() {
        let s = Sessions::default();
        let code = s.link();
        assert!(s.redeem(&code));
        assert!(!s.redeem(&code), "a second use of one link is refused");
        assert!(!s.redeem("not-a-code"));
    }

    #[test]
    fn a_sessions_csrf_token_is_its_own_and_ends_with_it() {
        let s = Sessions::default();
        let (a, b) = (s.open(), s.open());
        let csrf = s.csrf(&a).unwrap();
        assert!(s.csrf_matches(&a, &csrf));
        assert!(!s.csrf_matches(&b, &csrf), "one session's token is not another's");
        assert!(!s.csrf_matches(&a, ""));
        s.close(&a);
        assert!(s.csrf(&a).is_none());
    }

    #[test]
    fn the_cookie_is_read_among_others() {
        let mut h = axum::http::HeaderMap::new();
        h.append(axum::http::header::COOKIE, "a=1; berth_session=abc; b=2".parse().unwrap());
        assert_eq!(session_of(&h).as_deref(), Some("abc"));
    }
}
