//! The SQLite ledger's schema: connection settings and migrations.
//!
//! A *migration* is one step of SQL that moves the file's schema from
//! version `n` to `n + 1`; the version lives in SQLite's `user_version`
//! header field, so it needs no table of its own and reads before any
//! table exists. Steps are only ever appended: a released step never
//! changes, or files migrated by it would differ from new ones.

use rusqlite::{Connection, TransactionBehavior};

use super::Fail;
use berth_core::LedgerError;

/// How long a statement waits for another connection's lock before it
/// fails as busy (and the caller sees `Unavailable`).
pub const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Every migration, in order; `MIGRATIONS[n]` moves schema `n` to `n + 1`.
///
/// Times are text in one fixed-width UTC format (see `super::time_text`),
/// which sorts as time and reads well in the sqlite3 shell. Records that
/// the ledger never queries inside are whole JSON documents, so adding a
/// field to a record needs no migration. Tables are STRICT so a value of
/// the wrong type is refused instead of silently stored.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "
    CREATE TABLE claims (
        name    TEXT PRIMARY KEY NOT NULL,
        service TEXT NOT NULL,
        version INTEGER NOT NULL,
        json    TEXT NOT NULL
    ) STRICT;

    CREATE TABLE generations (
        claim      TEXT NOT NULL,
        generation INTEGER NOT NULL,
        json       TEXT NOT NULL,
        PRIMARY KEY (claim, generation)
    ) STRICT;

    -- AUTOINCREMENT: a sequence number is never reused, even after the
    -- newest events are deleted, so a reader's `after` cursor stays valid.
    CREATE TABLE events (
        seq     INTEGER PRIMARY KEY AUTOINCREMENT,
        time    TEXT NOT NULL,
        claim   TEXT,
        kind    TEXT NOT NULL,
        message TEXT NOT NULL,
        data    TEXT NOT NULL
    ) STRICT;
    CREATE INDEX events_by_claim ON events (claim, seq);

    CREATE TABLE idempotency (
        key     TEXT PRIMARY KEY NOT NULL,
        value   TEXT NOT NULL,
        expires TEXT NOT NULL
    ) STRICT;
    CREATE INDEX idempotency_by_expiry ON idempotency (expires);

    CREATE TABLE task_versions (
        arn     TEXT PRIMARY KEY NOT NULL,
        version INTEGER NOT NULL,
        updated TEXT NOT NULL
    ) STRICT;
    CREATE INDEX task_versions_by_update ON task_versions (updated);

    CREATE TABLE snapshots (
        id    TEXT PRIMARY KEY NOT NULL,
        claim TEXT,
        time  TEXT NOT NULL,
        json  TEXT NOT NULL
    ) STRICT;
    CREATE INDEX snapshots_by_claim ON snapshots (claim, time);
    ",
    // 2: service records (task definition revisions, deployments).
    "
    CREATE TABLE services (
        name    TEXT PRIMARY KEY NOT NULL,
        version INTEGER NOT NULL,
        json    TEXT NOT NULL
    ) STRICT;
    ",
];

/// The schema version this berth writes.
pub const LATEST: i64 = MIGRATIONS.len() as i64;

/// Sets up a fresh connection and brings the file to [`LATEST`].
///
/// Refuses, without writing anything, a file whose schema is newer than
/// this berth knows: an older berth would misread or damage it.
pub fn prepare(conn: &mut Connection) -> Result<(), Fail> {
    // First, so every statement below waits out another process's lock.
    conn.busy_timeout(BUSY_TIMEOUT)?;
    check_known(user_version(conn)?)?;
    check_intact(conn)?;

    // WAL: readers do not block the writer, and a commit is one append.
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Fail::Ledger(LedgerError::Unavailable(format!(
            "cannot switch the ledger to write-ahead logging (journal mode stays {mode})"
        ))));
    }
    // FULL, not WAL's usual NORMAL: NORMAL may lose the last commits on a
    // power cut, and a lost compare-and-swap could let two controllers
    // believe they both won a handoff.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    migrate(conn)
}

/// Refuses a damaged file before anything reads or writes it: a ledger
/// with damaged pages answers some reads and fails others, and a
/// controller on it records nothing while it retries forever (issue 20,
/// defect 3). SQLite's `quick_check` reads every page, in milliseconds
/// for a ledger's size.
fn check_intact(conn: &Connection) -> Result<(), Fail> {
    let mut stmt = conn.prepare("PRAGMA quick_check(5)")?;
    let found: Vec<String> = stmt.query_map([], |row| row.get(0))?.collect::<Result<_, _>>()?;
    if found.len() == 1 && found[0] == "ok" {
        return Ok(());
    }
    Err(Fail::Ledger(LedgerError::Corrupt(format!(
        "SQLite's quick_check found damage ({}); move the file aside and rebuild the ledger from the volumes and \
         snapshots (berth ledger rebuild)",
        // One line: SQLite's findings come with line breaks of their own.
        found.iter().flat_map(|f| f.lines()).map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ")
    ))))
}

fn migrate(conn: &mut Connection) -> Result<(), Fail> {
    // The common case, an up-to-date file, takes no write lock.
    if user_version(conn)? == LATEST {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Read again under the write lock: another process may have migrated
    // the file between the check above and the lock.
    let found = user_version(&tx)?;
    check_known(found)?;
    for (done, step) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", done as i64 + 1)?;
    }
    tx.commit()?;
    Ok(())
}

fn user_version(conn: &Connection) -> Result<i64, Fail> {
    Ok(conn.pragma_query_value(None, "user_version", |row| row.get(0))?)
}

fn check_known(found: i64) -> Result<(), Fail> {
    if found > LATEST {
        return Err(Fail::Ledger(LedgerError::Corrupt(format!(
            "the ledger was written by a newer berth (schema version {found}; this berth knows up to {LATEST}): \
             upgrade berth to open it"
        ))));
    }
    if found < 0 {
        return Err(Fail::Ledger(LedgerError::Corrupt(format!("the ledger has a negative schema version ({found})"))));
    }
    Ok(())
}
