//! The SQLite ledger against core's ledger contract, and what only a file
//! can show: durability across reopen, two handles on one file, the schema
//! version guard and the connection settings.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use berth_core::ledger::contract;
use berth_core::{ClaimName, ClaimRecord, EventRecord, Expect, Generation, GenerationRecord, Ledger, LedgerError};
use berth_local::SqliteLedger;
use chrono::{TimeZone, Utc};

/// A temporary folder and the path of a ledger file inside it, in a
/// folder that does not exist yet (open must create it).
fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state").join("ledger.db");
    (dir, path)
}

fn open(path: &Path) -> SqliteLedger {
    SqliteLedger::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_passes_the_ledger_contract() {
    let dir = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    contract::run_all(|| open(&dir.path().join(format!("ledger-{}.db", n.fetch_add(1, Ordering::Relaxed))))).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_handles_on_one_file_race_and_one_wins() {
    let (_dir, path) = setup();
    let a = open(&path);
    let b = open(&path);
    contract::concurrent_cas(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn data_survives_close_and_reopen() {
    let (_dir, path) = setup();
    let now = Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap();
    let name = ClaimName::parse("web-0").unwrap();
    let (stored, seq) = {
        let ledger = open(&path);
        let stored = ledger.put_claim(&ClaimRecord::new(name.clone(), "web", 0, 1, now), Expect::Absent).await.unwrap();
        ledger.put_generation(&GenerationRecord::new(name.clone(), Generation(1))).await.unwrap();
        let seq = ledger.append_event(&EventRecord::new(now, Some(&name), "claim-created", "created")).await.unwrap();
        (stored, seq)
    };

    let ledger = open(&path);
    assert_eq!(ledger.claim(&name).await.unwrap(), Some(stored.clone()));
    assert_eq!(ledger.generations(&name).await.unwrap().len(), 1);
    assert_eq!(ledger.events(0, None, 10).await.unwrap().iter().map(|e| e.seq).collect::<Vec<_>>(), [seq]);
    // The version survives too: a write at the old version still wins once.
    let next = ledger.put_claim(&stored, Expect::Version(stored.version)).await.unwrap();
    assert_eq!(next.version, 2);
    let later = ledger.append_event(&EventRecord::new(now, None, "resync", "tick")).await.unwrap();
    assert!(later > seq, "sequence numbers keep increasing across reopen");
}

#[tokio::test]
async fn a_ledger_from_a_newer_berth_is_refused() {
    let (_dir, path) = setup();
    drop(open(&path));
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 999).unwrap();
    }
    let err = SqliteLedger::open(&path).expect_err("a newer schema must be refused");
    assert!(matches!(err, LedgerError::Corrupt(_)), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("newer berth"), "{message}");
    assert!(message.contains("999"), "{message}");
    assert!(message.contains("upgrade berth"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
}

#[tokio::test]
async fn connection_settings_are_in_effect() {
    let (_dir, path) = setup();
    let ledger = open(&path);
    assert_eq!(ledger.pragma("journal_mode").unwrap(), "wal");
    assert_eq!(ledger.pragma("synchronous").unwrap(), "2", "synchronous = FULL");
    assert_eq!(ledger.pragma("foreign_keys").unwrap(), "1");
    assert_eq!(ledger.pragma("busy_timeout").unwrap(), "5000");
    assert_eq!(ledger.pragma("user_version").unwrap(), "2", "schema version 2: services");
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused() {
    let (_dir, path) = setup();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"this is not an sqlite database, not even close, it is just text......").unwrap();
    let err = SqliteLedger::open(&path).expect_err("garbage must be refused");
    assert!(matches!(err, LedgerError::Corrupt(_)), "{err:?}");
}

/// Issue 20, defect 3: random bytes over pages 3-6 of the ledger
/// (`dd if=/dev/urandom of=ledger.sqlite bs=4096 seek=3 count=4
/// conv=notrunc`) and `berth up` started anyway, recorded nothing and
/// retried forever. The damage is found when the file is opened.
#[tokio::test(flavor = "multi_thread")]
async fn a_ledger_with_damaged_pages_is_refused_at_open() {
    let (_dir, path) = setup();
    {
        let ledger = open(&path);
        for i in 0..400 {
            let event = EventRecord::new(Utc::now(), None, "filler", format!("event {i}: {}", "x".repeat(200)));
            ledger.append_event(&event).await.unwrap();
        }
    }
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size > 8 * 4096, "the ledger spans the damaged pages: {size} bytes");
    let mut junk = vec![0u8; 4 * 4096];
    fastrand::Rng::with_seed(20).fill(&mut junk);
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.seek(SeekFrom::Start(3 * 4096)).unwrap();
        f.write_all(&junk).unwrap();
    }
    let err = SqliteLedger::open(&path).unwrap_err();
    assert!(matches!(err, LedgerError::Corrupt(_)), "{err}");
    let line = err.to_string();
    assert!(line.contains("ledger.db") && line.contains("berth ledger rebuild"), "{line}");
}
