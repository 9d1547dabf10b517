//! The SQLite ledger: core's `Ledger` port in one local file.
//!
//! The *ledger* is berth's durable state (claims, generations, the event
//! log, idempotency records, task versions, the snapshot catalogue). Locally
//! it is one SQLite file in the state folder, shared by every berth process
//! on the machine: SQLite's file locks make a claim's compare-and-swap
//! atomic across processes, not only across the handles of one.
//!
//! SQLite calls block, so each runs on tokio's blocking pool while holding
//! the handle's one connection; a handle is cheap to clone and clones share
//! that connection. Records are stored as JSON beside the few columns that
//! queries need, so the file stays readable with the sqlite3 shell.

mod schema;

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use berth_core::deploy::ServiceRecord;
use berth_core::ledger::{ClaimRecord, EventRecord, Expect, GenerationRecord, Ledger, LedgerError, Remembered};
use berth_core::{ClaimName, Generation, SnapshotId, SnapshotRecord, TaskArn};
use chrono::{DateTime, Duration, Utc};
use rusqlite::types::Value;
use rusqlite::{params, Connection, ErrorCode, OptionalExtension, TransactionBehavior};

/// How long a task's newest version is remembered after its last update:
/// ECS stops reporting a task about an hour after it stopped, so a week
/// leaves room for a controller that was down for days.
pub const TASK_VERSION_TTL: Duration = Duration::days(7);

/// A ledger in one SQLite file.
#[derive(Clone)]
pub struct SqliteLedger {
    conn: Arc<Mutex<Connection>>,
    path: Arc<Path>,
}

impl fmt::Debug for SqliteLedger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteLedger").field("path", &self.path).finish_non_exhaustive()
    }
}

impl SqliteLedger {
    /// Opens the ledger at `path`, creating the file and its folder if
    /// needed and migrating the schema to this berth's.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                LedgerError::Unavailable(format!("cannot create the ledger's folder {}: {e}", parent.display()))
            })?;
        }
        let mut conn = Connection::open(path).map_err(|e| Fail::Db(e).at(path))?;
        schema::prepare(&mut conn).map_err(|e| e.at(path))?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)), path: path.into() })
    }

    /// A copy of this ledger at `dest` (a new file), consistent as of one
    /// moment even while others write it (SQLite's `VACUUM INTO`); for
    /// dry runs, which write their copy and leave this one alone.
    pub fn copy_to(&self, dest: &Path) -> Result<Self, LedgerError> {
        let dest_text =
            dest.to_str().ok_or_else(|| LedgerError::Unavailable(format!("{} is not a UTF-8 path", dest.display())))?;
        self.lock().execute("VACUUM INTO ?1", [dest_text]).map_err(|e| Fail::Db(e).at(&self.path))?;
        Self::open(dest)
    }

    /// The newest event's sequence number (0 with none): where a stream of
    /// events from now on starts.
    pub fn last_event_seq(&self) -> Result<u64, LedgerError> {
        let seq: i64 = self
            .lock()
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |row| row.get(0))
            .map_err(|e| Fail::Db(e).at(&self.path))?;
        Ok(u64::try_from(seq).unwrap_or(0))
    }

    /// The file this ledger lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The value of a pragma on this handle's connection, as text (for
    /// tests that check the connection settings).
    #[doc(hidden)]
    pub fn pragma(&self, name: &str) -> Result<String, LedgerError> {
        let conn = self.lock();
        let value = conn
            .pragma_query_value(None, name, |row| row.get::<_, Value>(0))
            .map_err(|e| Fail::Db(e).at(&self.path))?;
        Ok(match value {
            Value::Null => String::new(),
            Value::Integer(i) => i.to_string(),
            Value::Real(r) => r.to_string(),
            Value::Text(t) => t,
            Value::Blob(b) => String::from_utf8_lossy(&b).into_owned(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while the lock was held rolled its transaction back as it
        // unwound (rusqlite's Transaction rolls back on drop): the
        // connection is still sound.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `work` on the blocking pool with this handle's connection.
    async fn run<T, F>(&self, work: F) -> Result<T, LedgerError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, Fail> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        let joined = tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            work(&mut conn)
        })
        .await;
        match joined {
            Ok(result) => result.map_err(|e| e.at(&self.path)),
            // A bug in the closure: let it surface as the panic it is.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(LedgerError::Unavailable(format!("{}: {e}", self.path.display()))),
        }
    }
}

/// A failure inside a blocking call, before it is classified: `?` works on
/// both SQLite's errors and the ledger's own.
enum Fail {
    Db(rusqlite::Error),
    Ledger(LedgerError),
}

impl From<rusqlite::Error> for Fail {
    fn from(e: rusqlite::Error) -> Self {
        Self::Db(e)
    }
}

impl From<LedgerError> for Fail {
    fn from(e: LedgerError) -> Self {
        Self::Ledger(e)
    }
}

impl Fail {
    /// The ledger error, naming the file. Busy, locked and I/O failures may
    /// pass on a retry; anything else SQLite refuses (a malformed file, a
    /// type mismatch, a bad statement) will not.
    fn at(self, path: &Path) -> LedgerError {
        let path = path.display();
        match self {
            Self::Ledger(LedgerError::Conflict(what)) => LedgerError::Conflict(what),
            Self::Ledger(LedgerError::Unavailable(m)) => LedgerError::Unavailable(format!("{path}: {m}")),
            Self::Ledger(LedgerError::Corrupt(m)) => LedgerError::Corrupt(format!("{path}: {m}")),
            Self::Db(e) => {
                let transient = matches!(
                    e.sqlite_error_code(),
                    Some(
                        ErrorCode::DatabaseBusy
                            | ErrorCode::DatabaseLocked
                            | ErrorCode::SystemIoFailure
                            | ErrorCode::CannotOpen
                            | ErrorCode::DiskFull
                            | ErrorCode::ReadOnly
                            | ErrorCode::PermissionDenied
                            | ErrorCode::OutOfMemory
                            | ErrorCode::OperationInterrupted
                            | ErrorCode::FileLockingProtocolFailed
                    )
                );
                if transient {
                    LedgerError::Unavailable(format!("{path}: {e}"))
                } else {
                    LedgerError::Corrupt(format!("{path}: {e}"))
                }
            }
        }
    }
}

fn corrupt(message: String) -> Fail {
    Fail::Ledger(LedgerError::Corrupt(message))
}

/// Times as fixed-width UTC text with nanoseconds: sorts as time in
/// SQLite's text comparison and keeps every digit chrono has.
fn time_text(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, Fail> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| corrupt(format!("unreadable time '{text}': {e}")))
}

/// SQLite integers are signed: numbers past `i64::MAX` cannot be stored.
fn to_sql_int(n: u64, what: &str) -> Result<i64, Fail> {
    i64::try_from(n).map_err(|_| corrupt(format!("{what} {n} is too large to store")))
}

fn from_sql_int(n: i64, what: &str) -> Result<u64, Fail> {
    u64::try_from(n).map_err(|_| corrupt(format!("{what} is negative ({n})")))
}

fn to_json<T: serde::Serialize>(value: &T, what: &str) -> Result<String, Fail> {
    serde_json::to_string(value).map_err(|e| corrupt(format!("cannot encode {what}: {e}")))
}

fn from_json<T: serde::de::DeserializeOwned>(json: &str, what: &str) -> Result<T, Fail> {
    serde_json::from_str(json).map_err(|e| corrupt(format!("unreadable record of {what}: {e}")))
}

/// A claim row as stored: the version column is the truth, whatever the
/// JSON says.
fn decode_claim(name: &str, version: i64, json: &str) -> Result<ClaimRecord, Fail> {
    let mut record: ClaimRecord = from_json(json, &format!("claim {name}"))?;
    record.version = from_sql_int(version, &format!("the version of claim {name}"))?;
    Ok(record)
}

fn read_claim(conn: &Connection, name: &str) -> Result<Option<ClaimRecord>, Fail> {
    read_row(conn, "claims", name)?.map(|(version, json)| decode_claim(name, version, &json)).transpose()
}

/// The version and JSON of the record `name` of `table` (claims and
/// services share this shape).
fn read_row(conn: &Connection, table: &str, name: &str) -> Result<Option<(i64, String)>, Fail> {
    Ok(conn
        .prepare_cached(&format!("SELECT version, json FROM {table} WHERE name = ?1"))?
        .query_row([name], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?)))
        .optional()?)
}

/// The version a compare-and-swap of the record `name` of `table` writes,
/// or the conflict: read inside the caller's `BEGIN IMMEDIATE` transaction,
/// so the write lock is taken before the version is read and no other
/// connection can write between the check and the write.
fn next_version(tx: &Connection, table: &str, what: &str, expect: Expect) -> Result<u64, Fail> {
    let (kind, name) = what.split_once(' ').unwrap_or((what, ""));
    let current = tx
        .prepare_cached(&format!("SELECT version FROM {table} WHERE name = ?1"))?
        .query_row([name], |row| row.get::<_, i64>(0))
        .optional()?
        .map(|v| from_sql_int(v, &format!("the version of {what}")))
        .transpose()?;
    match (expect, current) {
        (Expect::Absent, None) => Ok(1),
        (Expect::Version(want), Some(found)) if want == found => {
            found.checked_add(1).ok_or_else(|| corrupt(format!("the version of {kind} {name} overflowed")))
        }
        _ => Err(Fail::Ledger(LedgerError::Conflict(what.to_owned()))),
    }
}

/// The compare-and-swap of one claim, in one transaction.
fn put_claim(conn: &mut Connection, record: &ClaimRecord, expect: Expect) -> Result<ClaimRecord, Fail> {
    let name = record.name.as_str();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let next = next_version(&tx, "claims", &format!("claim {name}"), expect)?;
    let stored = ClaimRecord { version: next, ..record.clone() };
    tx.prepare_cached(
        "INSERT INTO claims (name, service, version, json) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (name) DO UPDATE SET service = excluded.service, version = excluded.version, json = excluded.json",
    )?
    .execute(params![
        name,
        stored.service,
        to_sql_int(next, "claim version")?,
        to_json(&stored, &format!("claim {name}"))?
    ])?;
    tx.commit()?;
    Ok(stored)
}

/// The compare-and-swap of one service record, in one transaction.
fn put_service(conn: &mut Connection, record: &ServiceRecord, expect: Expect) -> Result<ServiceRecord, Fail> {
    let name = record.name.as_str();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let next = next_version(&tx, "services", &format!("service {name}"), expect)?;
    let stored = ServiceRecord { version: next, ..record.clone() };
    tx.prepare_cached(
        "INSERT INTO services (name, version, json) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO UPDATE SET version = excluded.version, json = excluded.json",
    )?
    .execute(params![
        name,
        to_sql_int(next, "service version")?,
        to_json(&stored, &format!("service {name}"))?
    ])?;
    tx.commit()?;
    Ok(stored)
}

fn read_service(conn: &Connection, name: &str) -> Result<Option<ServiceRecord>, Fail> {
    read_row(conn, "services", name)?
        .map(|(version, json)| {
            let mut record: ServiceRecord = from_json(&json, &format!("service {name}"))?;
            record.version = from_sql_int(version, &format!("the version of service {name}"))?;
            Ok(record)
        })
        .transpose()
}

fn decode_event(
    seq: i64,
    time: &str,
    claim: Option<String>,
    kind: String,
    message: String,
    data: &str,
) -> Result<EventRecord, Fail> {
    let what = format!("event {seq}");
    let claim = claim
        .map(|c| ClaimName::parse(&c).map_err(|e| corrupt(format!("unreadable claim of {what}: {e}"))))
        .transpose()?;
    Ok(EventRecord {
        seq: from_sql_int(seq, "an event's sequence number")?,
        time: parse_time(time)?,
        claim,
        kind,
        message,
        data: from_json(data, &what)?,
    })
}

fn events(conn: &Connection, after: u64, claim: Option<&str>, limit: usize) -> Result<Vec<EventRecord>, Fail> {
    // Past i64::MAX there is nothing to read and no limit to respect.
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(
        "SELECT seq, time, claim, kind, message, data FROM events
         WHERE seq > ?1 AND (?2 IS NULL OR claim = ?2) ORDER BY seq LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![after, claim, limit], |row| {
        Ok((row.get(0)?, row.get::<_, String>(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get::<_, String>(5)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, time, claim, kind, message, data) = row?;
        out.push(decode_event(seq, &time, claim, kind, message, &data)?);
    }
    Ok(out)
}

/// Insert-if-absent-or-expired of one idempotency key, atomic across
/// processes because the write lock is taken before the key is read.
fn remember(conn: &mut Connection, key: &str, value: &str, now: &str, expires: &str) -> Result<Remembered, Fail> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let live: Option<String> = tx
        .prepare_cached("SELECT value FROM idempotency WHERE key = ?1 AND expires > ?2")?
        .query_row([key, now], |row| row.get(0))
        .optional()?;
    if let Some(seen) = live {
        return Ok(Remembered::Seen(seen));
    }
    tx.prepare_cached("INSERT OR REPLACE INTO idempotency (key, value, expires) VALUES (?1, ?2, ?3)")?
        .execute([key, value, expires])?;
    tx.commit()?;
    Ok(Remembered::New)
}

fn snapshots(conn: &Connection, claim: Option<&str>) -> Result<Vec<SnapshotRecord>, Fail> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, json FROM snapshots WHERE (?1 IS NULL OR claim = ?1) ORDER BY time DESC, id DESC",
    )?;
    let rows = stmt.query_map([claim], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (id, json) = row?;
        out.push(from_json(&json, &format!("snapshot {id}"))?);
    }
    Ok(out)
}

impl Ledger for SqliteLedger {
    async fn claim(&self, name: &ClaimName) -> Result<Option<ClaimRecord>, LedgerError> {
        let name = name.clone();
        self.run(move |conn| read_claim(conn, name.as_str())).await
    }

    async fn claims(&self) -> Result<Vec<ClaimRecord>, LedgerError> {
        self.run(|conn| {
            let mut stmt = conn.prepare_cached("SELECT name, version, json FROM claims ORDER BY name")?;
            let rows =
                stmt.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get(1)?, row.get::<_, String>(2)?)))?;
            let mut out = Vec::new();
            for row in rows {
                let (name, version, json) = row?;
                out.push(decode_claim(&name, version, &json)?);
            }
            Ok(out)
        })
        .await
    }

    async fn put_claim(&self, record: &ClaimRecord, expect: Expect) -> Result<ClaimRecord, LedgerError> {
        let record = record.clone();
        self.run(move |conn| put_claim(conn, &record, expect)).await
    }

    async fn service(&self, name: &str) -> Result<Option<ServiceRecord>, LedgerError> {
        let name = name.to_owned();
        self.run(move |conn| read_service(conn, &name)).await
    }

    async fn put_service(&self, record: &ServiceRecord, expect: Expect) -> Result<ServiceRecord, LedgerError> {
        let record = record.clone();
        self.run(move |conn| put_service(conn, &record, expect)).await
    }

    async fn put_generation(&self, record: &GenerationRecord) -> Result<(), LedgerError> {
        let record = record.clone();
        self.run(move |conn| {
            let what = format!("generation {} of {}", record.generation, record.claim);
            conn.prepare_cached("INSERT OR REPLACE INTO generations (claim, generation, json) VALUES (?1, ?2, ?3)")?
                .execute(params![
                    record.claim.as_str(),
                    to_sql_int(record.generation.0, "generation")?,
                    to_json(&record, &what)?
                ])?;
            Ok(())
        })
        .await
    }

    async fn generation(
        &self,
        claim: &ClaimName,
        generation: Generation,
    ) -> Result<Option<GenerationRecord>, LedgerError> {
        let claim = claim.clone();
        self.run(move |conn| {
            // A generation past i64::MAX was never stored.
            let Ok(number) = i64::try_from(generation.0) else { return Ok(None) };
            let json: Option<String> = conn
                .prepare_cached("SELECT json FROM generations WHERE claim = ?1 AND generation = ?2")?
                .query_row(params![claim.as_str(), number], |row| row.get(0))
                .optional()?;
            json.map(|j| from_json(&j, &format!("generation {generation} of {claim}"))).transpose()
        })
        .await
    }

    async fn generations(&self, claim: &ClaimName) -> Result<Vec<GenerationRecord>, LedgerError> {
        let claim = claim.clone();
        self.run(move |conn| {
            let mut stmt =
                conn.prepare_cached("SELECT generation, json FROM generations WHERE claim = ?1 ORDER BY generation")?;
            let rows = stmt.query_map([claim.as_str()], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?)))?;
            let mut out = Vec::new();
            for row in rows {
                let (number, json) = row?;
                out.push(from_json(&json, &format!("generation {number} of {claim}"))?);
            }
            Ok(out)
        })
        .await
    }

    async fn append_event(&self, event: &EventRecord) -> Result<u64, LedgerError> {
        let event = event.clone();
        self.run(move |conn| {
            conn.prepare_cached("INSERT INTO events (time, claim, kind, message, data) VALUES (?1, ?2, ?3, ?4, ?5)")?
                .execute(params![
                time_text(event.time),
                event.claim.as_ref().map(ClaimName::as_str),
                event.kind,
                event.message,
                to_json(&event.data, "an event's data")?
            ])?;
            from_sql_int(conn.last_insert_rowid(), "an event's sequence number")
        })
        .await
    }

    async fn events(
        &self,
        after: u64,
        claim: Option<&ClaimName>,
        limit: usize,
    ) -> Result<Vec<EventRecord>, LedgerError> {
        let claim = claim.cloned();
        self.run(move |conn| events(conn, after, claim.as_ref().map(ClaimName::as_str), limit)).await
    }

    async fn remember(
        &self,
        key: &str,
        value: &str,
        now: DateTime<Utc>,
        expires: DateTime<Utc>,
    ) -> Result<Remembered, LedgerError> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.run(move |conn| remember(conn, &key, &value, &time_text(now), &time_text(expires))).await
    }

    async fn observe_task_version(
        &self,
        task: &TaskArn,
        version: u64,
        now: DateTime<Utc>,
    ) -> Result<bool, LedgerError> {
        let task = task.clone();
        self.run(move |conn| {
            // One statement: the comparison and the write are atomic
            // without an explicit transaction. An older or equal version
            // changes no row.
            let changed = conn
                .prepare_cached(
                    "INSERT INTO task_versions (arn, version, updated) VALUES (?1, ?2, ?3)
                     ON CONFLICT (arn) DO UPDATE SET version = excluded.version, updated = excluded.updated
                     WHERE excluded.version > task_versions.version",
                )?
                .execute(params![task.0, to_sql_int(version, "task version")?, time_text(now)])?;
            Ok(changed > 0)
        })
        .await
    }

    async fn catalogue(&self, snapshots: &[SnapshotRecord]) -> Result<(), LedgerError> {
        let snapshots = snapshots.to_vec();
        self.run(move |conn| {
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT OR REPLACE INTO snapshots (id, claim, time, json) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for s in &snapshots {
                    stmt.execute(params![
                        s.id.0,
                        s.claim.as_ref().map(ClaimName::as_str),
                        time_text(s.time),
                        to_json(s, &format!("snapshot {}", s.id))?
                    ])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn uncatalogue(&self, ids: &[SnapshotId]) -> Result<(), LedgerError> {
        let ids = ids.to_vec();
        self.run(move |conn| {
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare_cached("DELETE FROM snapshots WHERE id = ?1")?;
                for id in &ids {
                    stmt.execute([&id.0])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn snapshots(&self, claim: Option<&ClaimName>) -> Result<Vec<SnapshotRecord>, LedgerError> {
        let claim = claim.cloned();
        self.run(move |conn| snapshots(conn, claim.as_ref().map(ClaimName::as_str))).await
    }

    async fn purge(&self, now: DateTime<Utc>) -> Result<u64, LedgerError> {
        self.run(move |conn| {
            let tx = conn.transaction()?;
            let expired = tx.execute("DELETE FROM idempotency WHERE expires <= ?1", [time_text(now)])?;
            let stale =
                tx.execute("DELETE FROM task_versions WHERE updated < ?1", [time_text(now - TASK_VERSION_TTL)])?;
            tx.commit()?;
            Ok((expired + stale) as u64)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn time_text_sorts_as_time_and_round_trips() {
        let a = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        let b = a + Duration::nanoseconds(1);
        let c = a + Duration::seconds(1);
        assert!(time_text(a) < time_text(b) && time_text(b) < time_text(c));
        assert_eq!(time_text(a), "2026-01-02T03:04:05.000000000Z");
        for t in [a, b, c] {
            assert_eq!(parse_time(&time_text(t)).ok(), Some(t));
        }
    }
}
