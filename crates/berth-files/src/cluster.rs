//! Cluster mode: one namespace over the volumes of every task of a service.
//!
//! The blog runs two tasks behind one load balancer, each with its own volume,
//! so an upload and the next list may reach different tasks. Given its *peers*
//! (the base URLs of every task of the service), a task answers as if all
//! volumes were one: lists merge every member's own list, reads of a file held
//! elsewhere are streamed from its holder, and a new name is placed on the
//! member chosen by rendezvous hashing, so every task picks the same one for
//! the same member set. Requests between members carry `X-Berth-Scope: local`,
//! which makes the receiver answer from its own volume only (no recursion).

use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, Method};
use futures_util::future::join_all;
use reqwest::Url;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use crate::config::{PeerSource, ServeConfig};
use crate::name::FileName;

/// Header marking a request from another member.
pub const SCOPE_HEADER: &str = "x-berth-scope";

/// How long a fetched member list is reused.
const REFRESH_EVERY: Duration = Duration::from_secs(2);
/// How long a list known to be off is reused: one that lacks members the
/// service should have (a member is being started or replaced, and until the
/// list names it, reads of its files answer 503), or one whose member stopped
/// answering. Asking again this soon ends a 503 within a quarter second of the
/// platform listing the replacement, rather than up to [`REFRESH_EVERY`]
/// later, while a storm of failing requests still costs one fetch per period.
const REFRESH_SOON: Duration = Duration::from_millis(250);

/// A member list as fetched from the peer-list URL.
struct Fetched {
    at: Instant,
    list: Vec<String>,
    /// The members that take no new files (being parked or replaced).
    leaving: Vec<String>,
    /// How long it may be reused.
    fresh_for: Duration,
}

/// This task's view of its cluster.
pub struct Cluster {
    me: String,
    source: PeerSource,
    client: reqwest::Client,
    token: Option<String>,
    timeout: Duration,
    fetched: Mutex<Option<Fetched>>,
    /// How many members the peer-list URL says the service should have
    /// (its `expected` field; 0: not said).
    expected: std::sync::atomic::AtomicUsize,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PeerList {
    Object {
        peers: Vec<String>,
        #[serde(default)]
        expected: Option<usize>,
        #[serde(default)]
        leaving: Vec<String>,
    },
    List(Vec<String>),
}

/// A cluster setting that cannot be used; `berth serve` refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("peer '{0}' is not an http(s) URL such as http://10.0.0.5:5000")]
    Peer(String),
    #[error("peer list URL '{0}' is not an http(s) URL")]
    PeerList(String),
    #[error("advertise URL '{0}' is not an http(s) URL such as http://10.0.0.5:5000")]
    Advertise(String),
    #[error("cannot build the HTTP client for peers: {0}")]
    Client(#[source] reqwest::Error),
}

impl Cluster {
    /// A cluster for `config`, or `None` when the task runs alone; an error
    /// names a member or peer-list URL that is not an http(s) URL.
    pub fn new(config: &ServeConfig) -> Result<Option<Self>, ClusterError> {
        match &config.peers {
            PeerSource::None => return Ok(None),
            PeerSource::Static(list) => {
                if let Some(bad) = list.iter().find(|u| normalize(u).is_none()) {
                    return Err(ClusterError::Peer(bad.clone()));
                }
            }
            PeerSource::Url(url) => {
                if normalize(url).is_none() {
                    return Err(ClusterError::PeerList(url.clone()));
                }
            }
        }
        let advertise = config.advertise_url();
        let me = normalize(&advertise).ok_or_else(|| ClusterError::Advertise(advertise.clone()))?;
        let client = reqwest::Client::builder()
            .connect_timeout(config.peer_timeout)
            // A member closes a connection that has waited its header
            // timeout for the next request; reusing one it is closing fails
            // the lookup (a 503 for a file it holds), so idle connections are
            // dropped here first (members share the service's settings).
            .pool_idle_timeout(config.header_timeout / 2)
            .build()
            .map_err(ClusterError::Client)?;
        Ok(Some(Self {
            me,
            source: config.peers.clone(),
            client,
            token: config.token.clone(),
            timeout: config.peer_timeout,
            fetched: Mutex::new(None),
            expected: std::sync::atomic::AtomicUsize::new(0),
        }))
    }

    /// Forgets the fetched peer list (when a member stopped answering), so
    /// the next lookup asks the peer-list URL again; returns whether there
    /// was one to forget that is older than a quarter second (a storm of
    /// failures then costs one fetch).
    pub async fn invalidate(&self) -> bool {
        if !matches!(self.source, PeerSource::Url(_)) {
            return false;
        }
        let mut fetched = self.fetched.lock().await;
        let stale = fetched.as_ref().is_some_and(|f| f.at.elapsed() >= REFRESH_SOON);
        if stale {
            *fetched = None;
        }
        stale
    }

    /// How many members of the service did not answer a lookup: listed
    /// ones that did not answer, and those the peer list says the service
    /// should have but does not list (being started or replaced).
    pub fn missing(&self, members: &[String], found: &Lookup) -> usize {
        let expected = self.expected.load(std::sync::atomic::Ordering::Relaxed);
        expected.max(members.len()).saturating_sub(found.reachable.len())
    }

    /// How many members the peer list says the service should have (0:
    /// not said).
    pub fn expected(&self) -> usize {
        self.expected.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// This member's own base URL.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// Every member's base URL, this one included, sorted.
    pub async fn members(&self) -> Vec<String> {
        let mut members = match &self.source {
            PeerSource::None => Vec::new(),
            PeerSource::Static(list) => list.iter().filter_map(|u| normalize(u)).collect(),
            PeerSource::Url(url) => self.fetch_members(url).await,
        };
        members.push(self.me.clone());
        members.sort();
        members.dedup();
        members
    }

    async fn fetch_members(&self, url: &str) -> Vec<String> {
        let mut fetched = self.fetched.lock().await;
        if let Some(f) = &*fetched {
            if f.at.elapsed() < f.fresh_for {
                return f.list.clone();
            }
        }
        let result = async {
            let resp = self.client.get(url).timeout(self.timeout).send().await?.error_for_status()?;
            resp.json::<PeerList>().await
        }
        .await;
        match result {
            Ok(list) => {
                let (peers, expected, leaving) = match list {
                    PeerList::Object { peers, expected, leaving } => (peers, expected.unwrap_or(0), leaving),
                    PeerList::List(peers) => (peers, 0, Vec::new()),
                };
                self.expected.store(expected, std::sync::atomic::Ordering::Relaxed);
                let list: Vec<String> = peers
                    .iter()
                    .filter_map(|u| {
                        let n = normalize(u);
                        if n.is_none() {
                            tracing::warn!(peer = %u, "ignoring a peer that is not an http(s) URL");
                        }
                        n
                    })
                    .collect();
                let leaving = leaving.iter().filter_map(|u| normalize(u)).collect();
                // This task is a member whether or not the list names it yet.
                let named = list.len() + usize::from(!list.contains(&self.me));
                let fresh_for = if named < expected { REFRESH_SOON } else { REFRESH_EVERY };
                *fetched = Some(Fetched { at: Instant::now(), list: list.clone(), leaving, fresh_for });
                list
            }
            Err(e) => {
                // Keep serving with the last known members: a flapping peer
                // service must not split the namespace.
                tracing::warn!(url, error = %e, "could not fetch the peer list");
                fetched.as_ref().map(|f| f.list.clone()).unwrap_or_default()
            }
        }
    }

    /// Of `reachable`, the members a new file may be placed on: all but
    /// those the peer list says are leaving (a file placed on a claim being
    /// parked would go offline with it), unless that leaves none.
    pub async fn placeable(&self, reachable: &[String]) -> Vec<String> {
        let fetched = self.fetched.lock().await;
        let leaving = fetched.as_ref().map(|f| f.leaving.as_slice()).unwrap_or_default();
        let staying: Vec<String> = reachable.iter().filter(|m| !leaving.contains(m)).cloned().collect();
        if staying.is_empty() {
            reachable.to_vec()
        } else {
            staying
        }
    }

    /// The members other than this one.
    pub async fn others(&self) -> Vec<String> {
        self.members().await.into_iter().filter(|m| *m != self.me).collect()
    }

    /// Starts a request to `member` for `segments` (path segments, encoded here),
    /// with the token and the local-scope marker.
    pub fn request(&self, method: Method, member: &str, segments: &[&str]) -> reqwest::RequestBuilder {
        // Members are normalized URLs, so parsing cannot fail; were it to,
        // the request fails when sent rather than the server panicking.
        let url = Url::parse(member).map(|mut url| {
            if let Ok(mut path) = url.path_segments_mut() {
                path.pop_if_empty().extend(segments);
            }
            url
        });
        let builder = match url {
            Ok(url) => self.client.request(method, url),
            Err(_) => self.client.request(method, member),
        };
        let mut builder = builder.header(SCOPE_HEADER, "local");
        if let Some(token) = &self.token {
            builder = builder.bearer_auth(token);
        }
        builder
    }

    /// Short requests (lists, lookups) also get a total deadline.
    pub fn short_request(&self, method: Method, member: &str, segments: &[&str]) -> reqwest::RequestBuilder {
        self.request(method, member, segments).timeout(self.timeout)
    }

    /// Asks every other member whether it holds `name`: the holder (the
    /// rendezvous owner preferred), and the members that answered at all,
    /// this one included — a member being replaced does not answer, and a
    /// new name is placed among those that do.
    pub async fn lookup(&self, name: &FileName, members: &[String]) -> Lookup {
        let owner = owner(name, members);
        let mut others: Vec<&String> = members.iter().filter(|m| **m != self.me).collect();
        others.sort_by_key(|m| m.as_str() != owner);
        let answers = join_all(others.iter().map(|m| async move {
            match self.short_request(Method::HEAD, m, &["files", name.as_str()]).send().await {
                Ok(r) if r.status().is_success() => Some(true),
                // 404 and the like: up, without the file. 5xx: up but unwell
                // (draining answers 503), so no new file goes there.
                Ok(r) => (!r.status().is_server_error()).then_some(false),
                Err(_) => None,
            }
        }))
        .await;
        let holder = others.iter().zip(&answers).find(|(_, a)| **a == Some(true)).map(|(m, _)| (*m).clone());
        let mut reachable: Vec<String> =
            others.iter().zip(&answers).filter(|(_, a)| a.is_some()).map(|(m, _)| (*m).clone()).collect();
        if answers.iter().any(Option::is_none) {
            // Someone left: the next request asks the platform again.
            self.invalidate().await;
        }
        reachable.push(self.me.clone());
        reachable.sort();
        Lookup { holder, reachable }
    }
}

/// What [`Cluster::lookup`] found of a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lookup {
    pub holder: Option<String>,
    /// Members that answered, this one included, sorted.
    pub reachable: Vec<String>,
}

/// The member a new `name` is placed on: the highest rendezvous score.
/// SHA-256 rather than the std hasher, whose output may change between Rust
/// releases, so members built by different versions still agree.
pub fn owner<'a>(name: &FileName, members: &'a [String]) -> &'a str {
    members
        .iter()
        .max_by_key(|m| {
            let digest = Sha256::new()
                .chain_update(m.as_bytes())
                .chain_update([0u8])
                .chain_update(name.as_str().as_bytes())
                .finalize();
            u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
        })
        .map(String::as_str)
        .unwrap_or("")
}

/// Whether a request came from another member and must be answered locally.
pub fn is_local_scope(headers: &HeaderMap) -> bool {
    headers.get(SCOPE_HEADER) == Some(&HeaderValue::from_static("local"))
}

/// Canonical form of a member URL, so `http://h:1/` and `http://h:1` match;
/// `None` for anything but an http(s) URL with a host.
fn normalize(url: &str) -> Option<String> {
    let u = Url::parse(url.trim()).ok()?;
    if !matches!(u.scheme(), "http" | "https") || u.host().is_none() {
        return None;
    }
    Some(u.as_str().trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendezvous_is_stable_and_spreads() {
        let members: Vec<String> = (0..3).map(|i| format!("http://127.0.0.1:{}", 5000 + i)).collect();
        let mut counts = [0; 3];
        for i in 0..300 {
            let name = FileName::parse(&format!("file-{i}")).unwrap();
            let o = owner(&name, &members);
            assert_eq!(o, owner(&name, &members));
            counts[members.iter().position(|m| m == o).unwrap()] += 1;
        }
        assert!(counts.iter().all(|&c| c > 60), "{counts:?}");
        // Removing a member moves only the names it owned.
        let fewer = &members[..2];
        for i in 0..300 {
            let name = FileName::parse(&format!("file-{i}")).unwrap();
            let before = owner(&name, &members);
            if before != members[2] {
                assert_eq!(owner(&name, fewer), before);
            }
        }
    }

    #[test]
    fn normalize_strips_trailing_slash() {
        assert_eq!(normalize("http://127.0.0.1:5000/").as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(normalize(" http://127.0.0.1:5000 ").as_deref(), Some("http://127.0.0.1:5000"));
        for bad in ["garbage", "127.0.0.1:5000", "ftp://h/", "file:///tmp", ""] {
            assert_eq!(normalize(bad), None, "{bad}");
        }
    }
}
