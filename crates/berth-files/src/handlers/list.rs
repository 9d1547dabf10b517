//! `GET /files`: the folder listing, in name order, paged, merged across the
//! cluster when the task has peers.

use std::collections::BTreeMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::Query;
use axum::http::{HeaderMap, Method};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use futures_util::future::join_all;
use serde::{Deserialize, Serialize};

use super::{blocking, iso8601, Shared};
use crate::cluster::is_local_scope;
use crate::error::ApiError;

/// Page size when the client names none; large enough for the blog's use.
pub const DEFAULT_LIMIT: usize = 10_000;
/// Largest page a client may ask for.
pub const MAX_LIMIT: usize = 100_000;

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    prefix: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// One file in a listing (the blog's fields).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FileInfo {
    pub name: String,
    pub size: u64,
    pub modified: String,
}

/// The listing: the blog's `files`, `count` and `storage_path`, plus paging and,
/// in a cluster, the members that did not answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct Listing {
    pub files: Vec<FileInfo>,
    pub count: usize,
    pub storage_path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub peers_unavailable: Option<Vec<String>>,
}

pub async fn list_files(
    state: Shared,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Listing>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(format!("bad query: {}", e.body_text())))?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::bad_request(format!("limit must be between 1 and {MAX_LIMIT}")));
    }
    let after = match &query.cursor {
        Some(c) => Some(decode_cursor(c)?),
        None => None,
    };
    let prefix = query.prefix.clone().unwrap_or_default();
    let volume = state.volume.clone();
    let (after2, prefix2) = (after.clone(), prefix.clone());
    let (entries, mut more) = blocking(move || volume.list(&prefix2, after2.as_deref(), limit))
        .await?
        .map_err(|e| ApiError::io("storage path", &e))?;
    let mut files: Vec<FileInfo> =
        entries.into_iter().map(|e| FileInfo { name: e.name, size: e.size, modified: iso8601(e.modified) }).collect();

    let mut unavailable = None;
    if let Some(cluster) = state.cluster.as_ref().filter(|_| !is_local_scope(&headers)) {
        let local = std::mem::take(&mut files);
        let local_more = more;
        let mut params = vec![("limit", limit.to_string())];
        if !prefix.is_empty() {
            params.push(("prefix", prefix.clone()));
        }
        if let Some(c) = &query.cursor {
            params.push(("cursor", c.clone()));
        }
        // A member that does not answer may have been replaced (a task's
        // handoff): ask for the peer list again and retry once.
        for attempt in 0..2 {
            let others = cluster.others().await;
            more = local_more;
            let answers = join_all(others.iter().map(|m| {
                let req = cluster.short_request(Method::GET, m, &["files"]).query(&params);
                async move {
                    let resp = req.send().await?.error_for_status()?;
                    resp.json::<Listing>().await
                }
            }))
            .await;
            let mut down = Vec::new();
            // Merge by name; should a name exist on two members (an interrupted
            // move), the newer copy wins, as in a last-writer-wins store.
            let mut merged: BTreeMap<String, FileInfo> = local.iter().map(|f| (f.name.clone(), f.clone())).collect();
            for (member, answer) in others.iter().zip(answers) {
                match answer {
                    Ok(listing) => {
                        more |= listing.next_cursor.is_some();
                        for f in listing.files {
                            match merged.get(&f.name) {
                                Some(have) if have.modified >= f.modified => {}
                                _ => {
                                    merged.insert(f.name.clone(), f);
                                }
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(peer = %member, error = %e, "peer did not answer the listing");
                        down.push(member.clone());
                    }
                }
            }
            more |= merged.len() > limit;
            files = merged.into_values().take(limit).collect();
            let retry = !down.is_empty() && attempt == 0 && cluster.invalidate().await;
            unavailable = Some(down);
            if !retry {
                break;
            }
        }
    }

    let next_cursor = more.then(|| files.last().map(|f| URL_SAFE_NO_PAD.encode(&f.name))).flatten();
    Ok(Json(Listing {
        count: files.len(),
        files,
        storage_path: state.volume.root().display().to_string(),
        next_cursor,
        peers_unavailable: unavailable,
    }))
}

fn decode_cursor(cursor: &str) -> Result<String, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| ApiError::bad_request("invalid cursor: pass back the next_cursor of a previous page"))
}
