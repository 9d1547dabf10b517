//! The client of a running `berth up`'s admin API, and the formatting the
//! commands built on it share.
//!
//! The admin API is a small JSON-over-HTTP interface that `berth up` serves
//! on loopback. A CLI finds it through the state folder: `<state>/admin.json`
//! names its URL and process id, `<state>/admin.token` holds the bearer token
//! every request carries. Errors come back as non-2xx responses with a JSON
//! body `{"error": "message"}`, whose message is what the user sees.

use std::fmt::Display;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// How long a connection to the admin API may take to open (it is on
/// loopback: anything slower means nothing is listening).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one admin request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the running `berth up` is, and how to print what it answers.
#[derive(Debug, Clone, clap::Args)]
pub struct AdminArgs {
    /// State folder of the running `berth up`.
    #[arg(
        long,
        global = true,
        env = "BERTH_STATE",
        value_name = "DIR",
        default_value = "./.berth",
        help_heading = "Admin"
    )]
    pub state: PathBuf,

    /// Read the AWS stack's ledger instead of a running `berth up`:
    /// dynamodb://TABLE[?region=REGION] (read only: claims, claim history,
    /// events; runs `berth-aws ledger get`).
    #[arg(long, global = true, env = "BERTH_LEDGER", value_name = "URL", help_heading = "Admin")]
    pub ledger: Option<String>,

    /// Print the server's JSON instead of a table.
    #[arg(long, global = true, help_heading = "Output")]
    pub json: bool,
}

/// `<state>/admin.json`, as `berth up` writes it when its admin API listens.
#[derive(Debug, Clone, Deserialize)]
pub struct AdminInfo {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The `berth up` process.
    pub pid: u32,
}

/// A connection to the admin API of one `berth up`, or to the AWS ledger
/// (`--ledger`), which answers the same reads.
pub struct Client {
    remote: Remote,
}

enum Remote {
    Admin { http: reqwest::blocking::Client, token: String, state: PathBuf, info: AdminInfo },
    Ledger { url: String },
}

impl Client {
    /// Reads the state folder's admin files. Nothing is sent yet: a
    /// `berth up` that has gone away shows at the first request.
    pub fn connect(args: &AdminArgs) -> Result<Self> {
        if let Some(url) = &args.ledger {
            return Ok(Self { remote: Remote::Ledger { url: url.clone() } });
        }
        let state = args.state.clone();
        let info_path = state.join("admin.json");
        let text = match std::fs::read_to_string(&info_path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(not_running(&state)),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", info_path.display())),
        };
        let info: AdminInfo = serde_json::from_str(&text)
            .with_context(|| format!("{} is not what `berth up` writes", info_path.display()))?;
        let token_path = state.join("admin.token");
        let token = match std::fs::read_to_string(&token_path) {
            Ok(token) => token.trim().to_owned(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(not_running(&state)),
            Err(e) => return Err(e).with_context(|| format!("cannot read the admin token {}", token_path.display())),
        };
        let http = reqwest::blocking::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .no_proxy()
            .build()
            .context("cannot set up an HTTP client")?;
        Ok(Self { remote: Remote::Admin { http, token, state, info } })
    }

    /// Where the running `berth up` is; there is none behind `--ledger`.
    pub fn info(&self) -> Result<&AdminInfo> {
        match &self.remote {
            Remote::Admin { info, .. } => Ok(info),
            Remote::Ledger { url } => bail!("this command needs a running berth up; --ledger {url} is only read"),
        }
    }

    /// GETs `path` (which starts with `/v1/`) and decodes the JSON answer.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        match &self.remote {
            Remote::Admin { http, .. } => self.send(http.get(self.url(path)?), "GET", path),
            Remote::Ledger { url } => super::aws::ledger_get(url, path),
        }
    }

    /// POSTs `body` as JSON to `path` and decodes the JSON answer.
    pub fn post<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T> {
        self.send(self.http()?.post(self.url(path)?).json(body), "POST", path)
    }

    /// [`Client::post`] for work that takes long (a restore, a drill):
    /// waits up to `timeout` for the answer.
    pub fn post_slow<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize, timeout: Duration) -> Result<T> {
        self.send(self.http()?.post(self.url(path)?).json(body).timeout(timeout), "POST", path)
    }

    fn http(&self) -> Result<&reqwest::blocking::Client> {
        match &self.remote {
            Remote::Admin { http, .. } => Ok(http),
            Remote::Ledger { url } => {
                bail!("--ledger {url} is read only: act through the AWS stack (its controller acts on its own)")
            }
        }
    }

    fn url(&self, path: &str) -> Result<String> {
        Ok(format!("{}{path}", self.info()?.url.trim_end_matches('/')))
    }

    fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::blocking::RequestBuilder,
        method: &str,
        path: &str,
    ) -> Result<T> {
        let Remote::Admin { token, state, info, .. } = &self.remote else { bail!("{method} {path}: no berth up") };
        let response = match request.bearer_auth(token).send() {
            Ok(r) => r,
            Err(e) if e.is_connect() => return Err(not_running(state)),
            Err(e) => return Err(e).with_context(|| format!("{method} {path} to berth up at {}", info.url)),
        };
        let status = response.status();
        let body = response.text().with_context(|| format!("reading the answer to {method} {path}"))?;
        if !status.is_success() {
            bail!("{}", error_message(status, &body));
        }
        serde_json::from_str(&body).with_context(|| format!("unexpected answer to {method} {path}: {}", clip(&body)))
    }
}

/// The one error for "there is no admin API to talk to".
pub fn not_running(state: &Path) -> anyhow::Error {
    anyhow!("no berth up is running with state folder {} (start it with `berth up`)", state.display())
}

/// The message of an error answer: its `error` field, else its status and text.
fn error_message(status: reqwest::StatusCode, body: &str) -> String {
    #[derive(Deserialize)]
    struct ErrorBody {
        error: String,
    }
    match serde_json::from_str::<ErrorBody>(body) {
        Ok(e) => e.error,
        Err(_) if body.trim().is_empty() => format!("berth up answered {status}"),
        Err(_) => format!("berth up answered {status}: {}", clip(body)),
    }
}

fn clip(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// `text` percent-encoded as one URL path segment or query value: every
/// byte but the unreserved ones (RFC 3986) is escaped, `/` and `:` of a task
/// ARN included.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The short id of a task (the 32 hex digits after the ARN's last `/`).
pub fn short_id(task: &str) -> &str {
    task.rsplit('/').next().unwrap_or(task)
}

/// The first 8 characters of a snapshot id, as restic prints them.
pub fn short_snapshot(id: &str) -> &str {
    id.char_indices().nth(8).map_or(id, |(i, _)| &id[..i])
}

/// A point in time, as RFC 3339 in UTC to the second.
pub fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A value, or `-` when there is none.
pub fn or_dash(value: Option<impl Display>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// A duration for people, precise for short spans: `350ms`, `1.2s`,
/// `4m05s`, `3h07m`, `2d04h`.
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    let s = d.as_secs();
    if ms < 1000 {
        format!("{ms}ms")
    } else if s < 60 {
        format!("{}.{}s", s, (ms % 1000) / 100)
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else if s < 86_400 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600)
    }
}

/// How long ago `t` was, in one coarse unit as `docker ps` shows ages:
/// `12s`, `5m`, `3h`, `2d` (a time in the future counts as now).
pub fn age(now: DateTime<Utc>, t: DateTime<Utc>) -> String {
    let s = (now - t).num_seconds().max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// The span from `from` to `to` (zero if `to` is earlier).
pub fn between(from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
    (to - from).to_std().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_escapes_everything_but_unreserved() {
        assert_eq!(encode("web-0"), "web-0");
        assert_eq!(
            encode("arn:aws:ecs:local:000000000000:task/berth/ab12"),
            "arn%3Aaws%3Aecs%3Alocal%3A000000000000%3Atask%2Fberth%2Fab12"
        );
        assert_eq!(encode("a b&c=é"), "a%20b%26c%3D%C3%A9");
    }

    #[test]
    fn ids_are_shortened() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(short_id(&format!("arn:aws:ecs:local:000000000000:task/berth/{id}")), id);
        assert_eq!(short_id(id), id);
        assert_eq!(short_snapshot("1a2b3c4d5e6f7a8b"), "1a2b3c4d");
        assert_eq!(short_snapshot("1a2b"), "1a2b");
        assert_eq!(or_dash(None::<u32>), "-");
        assert_eq!(or_dash(Some(3)), "3");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(Duration::from_millis(350)), "350ms");
        assert_eq!(duration(Duration::from_millis(1200)), "1.2s");
        assert_eq!(duration(Duration::from_millis(59_999)), "59.9s");
        assert_eq!(duration(Duration::from_secs(245)), "4m05s");
        assert_eq!(duration(Duration::from_secs(3 * 3600 + 7 * 60 + 5)), "3h07m");
        assert_eq!(duration(Duration::from_secs(2 * 86_400 + 4 * 3600)), "2d04h");
    }

    #[test]
    fn ages_are_coarse() {
        let now: DateTime<Utc> = "2024-05-01T12:00:00Z".parse().unwrap();
        let ago = |s: i64| now - chrono::Duration::seconds(s);
        assert_eq!(age(now, ago(12)), "12s");
        assert_eq!(age(now, ago(330)), "5m");
        assert_eq!(age(now, ago(3 * 3600 + 10)), "3h");
        assert_eq!(age(now, ago(2 * 86_400 + 5)), "2d");
        assert_eq!(age(now, ago(-30)), "0s");
        assert_eq!(between(now, ago(-2)), Duration::from_secs(2));
        assert_eq!(between(now, ago(2)), Duration::ZERO);
        assert_eq!(time(now), "2024-05-01T12:00:00Z");
    }

    #[test]
    fn error_answers_give_their_message() {
        let status = reqwest::StatusCode::NOT_FOUND;
        assert_eq!(error_message(status, r#"{"error":"no claim web-9"}"#), "no claim web-9");
        assert_eq!(error_message(status, ""), "berth up answered 404 Not Found");
        assert_eq!(error_message(status, "oops"), "berth up answered 404 Not Found: oops");
    }
}
