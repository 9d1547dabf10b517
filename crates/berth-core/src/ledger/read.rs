//! The ledger's read-only views, as the admin API answers them: every
//! claim, one claim's history, the event log. `berth up`'s admin API
//! serves them from its SQLite ledger; `berth-aws ledger get` from the
//! DynamoDB one, so the CLI reads either the same way (`--ledger`). One
//! shape, defined here.

use serde::{Deserialize, Serialize};

use super::{ClaimRecord, EventRecord, GenerationRecord, Ledger, LedgerError};
use crate::claim::ClaimName;
use crate::snapshot::SnapshotRecord;

/// The most events one read returns.
pub const MAX_EVENTS: usize = 10_000;
/// Events one read returns unless told.
pub const DEFAULT_EVENTS: usize = 1000;

/// One claim with its generations and snapshots (`GET /v1/claims/{name}`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClaimHistory {
    pub claim: ClaimRecord,
    pub generations: Vec<GenerationRecord>,
    pub snapshots: Vec<SnapshotRecord>,
}

/// Why a read has no answer.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("no claim {0}")]
    NoClaim(ClaimName),
    #[error("{0}")]
    BadRequest(String),
    #[error("no such view {0:?}: the ledger answers /v1/claims, /v1/claims/NAME and /v1/events")]
    NoView(String),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// A claim name from a request.
pub fn claim_name(raw: &str) -> Result<ClaimName, ReadError> {
    ClaimName::parse(raw).map_err(|e| ReadError::BadRequest(format!("claim {raw:?}: {e}")))
}

pub async fn claims(ledger: &impl Ledger) -> Result<Vec<ClaimRecord>, ReadError> {
    Ok(ledger.claims().await?)
}

pub async fn history(ledger: &impl Ledger, name: &ClaimName) -> Result<ClaimHistory, ReadError> {
    let claim = ledger.claim(name).await?.ok_or_else(|| ReadError::NoClaim(name.clone()))?;
    let generations = ledger.generations(name).await?;
    let snapshots = ledger.snapshots(Some(name)).await?;
    Ok(ClaimHistory { claim, generations, snapshots })
}

/// Events after `after`, of one claim or all, at most `limit` (default
/// [`DEFAULT_EVENTS`], never above [`MAX_EVENTS`]).
pub async fn events(
    ledger: &impl Ledger,
    after: u64,
    claim: Option<&ClaimName>,
    limit: Option<usize>,
) -> Result<Vec<EventRecord>, ReadError> {
    let limit = limit.unwrap_or(DEFAULT_EVENTS).min(MAX_EVENTS);
    Ok(ledger.events(after, claim, limit).await?)
}

/// Answers a GET of the admin API's path (with its query) from `ledger`.
pub async fn get(ledger: &impl Ledger, path_and_query: &str) -> Result<serde_json::Value, ReadError> {
    let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    let json = |v: Result<serde_json::Value, serde_json::Error>| v.map_err(|e| ReadError::BadRequest(e.to_string()));
    match path.trim_end_matches('/') {
        "/v1/claims" => json(serde_json::to_value(claims(ledger).await?)),
        "/v1/events" => {
            let (mut after, mut claim, mut limit) = (0, None, None);
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                let number = |what: &str| {
                    value.parse().map_err(|_| ReadError::BadRequest(format!("{what}={value:?} is not a whole number")))
                };
                match key {
                    "after" => after = number("after")?,
                    "claim" => claim = Some(claim_name(value)?),
                    "limit" => limit = Some(number("limit")? as usize),
                    other => return Err(ReadError::BadRequest(format!("no query parameter {other:?} of /v1/events"))),
                }
            }
            json(serde_json::to_value(events(ledger, after, claim.as_ref(), limit).await?))
        }
        other => match other.strip_prefix("/v1/claims/") {
            Some(name) if !name.contains('/') => json(serde_json::to_value(history(ledger, &claim_name(name)?).await?)),
            _ => Err(ReadError::NoView(other.to_owned())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeLedger;
    use crate::ledger::Expect;

    #[tokio::test]
    async fn the_views_answer_by_path_and_refuse_what_they_do_not_know() {
        let ledger = FakeLedger::default();
        let name = ClaimName::parse("files-0").unwrap();
        let record = ClaimRecord::new(name.clone(), "files", 0, 1, chrono::Utc::now());
        ledger.put_claim(&record, Expect::Absent).await.unwrap();
        for i in 0..3 {
            let event = EventRecord::new(chrono::Utc::now(), Some(&name), "test", format!("event {i}"));
            ledger.append_event(&event).await.unwrap();
        }
        let claims = get(&ledger, "/v1/claims").await.unwrap();
        assert_eq!(claims[0]["name"], "files-0");
        let history: ClaimHistory = serde_json::from_value(get(&ledger, "/v1/claims/files-0").await.unwrap()).unwrap();
        assert_eq!(history.claim.name, name);
        let events = get(&ledger, "/v1/events?after=1&claim=files-0&limit=1").await.unwrap();
        assert_eq!(events.as_array().unwrap().len(), 1);
        assert_eq!(events[0]["message"], "event 1");
        assert!(matches!(get(&ledger, "/v1/claims/files-9").await, Err(ReadError::NoClaim(_))));
        assert!(matches!(get(&ledger, "/v1/claims/NOT A NAME").await, Err(ReadError::BadRequest(_))));
        assert!(matches!(get(&ledger, "/v1/events?after=x").await, Err(ReadError::BadRequest(_))));
        assert!(matches!(get(&ledger, "/v1/tasks").await, Err(ReadError::NoView(_))));
    }
}
