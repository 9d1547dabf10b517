//! The ledger contract: behaviour every `Ledger` adapter must show.
//!
//! A *contract check* is one public async function that takes a fresh,
//! empty ledger, drives it through one behaviour and panics with a message
//! naming the broken promise. [`run_all`] runs every check, each on its own
//! ledger; an adapter's test suite calls it with a constructor (a temporary
//! SQLite file, a fresh DynamoDB table on the emulator, an in-memory fake),
//! so the controller can rely on the same semantics whatever stores them.
//!
//! The checks await the ledger's futures and nothing else: no runtime, no
//! timers, so core stays free of any async runtime. The one place two
//! writes must really overlap, [`concurrent_cas`], polls both futures by
//! hand in [`join2`].

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::{
    ClaimRecord, EventRecord, Expect, GenerationRecord, Handoff, HandoffStep, Ledger, LedgerError, Remembered,
    StopOrder,
};
use crate::backoff::CrashLoop;
use crate::claim::{ClaimName, Generation};
use crate::deploy::ServiceRecord;
use crate::event::StopCode;
use crate::intent::{DesiredState, StopCause, StopIntent};
use crate::ports::VolumeId;
use crate::snapshot::{SnapshotId, SnapshotKind, SnapshotRecord};
use crate::task::TaskArn;

/// Runs every contract check, each on a fresh ledger from `make`.
pub async fn run_all<L: Ledger>(make: impl Fn() -> L) {
    claim_insert_is_conditional(&make()).await;
    claim_compare_and_swap(&make()).await;
    claim_versions_increase_by_one(&make()).await;
    racing_writers_one_wins(&make()).await;
    claim_round_trip(&make()).await;
    claims_ordered_by_name(&make()).await;
    generations_upsert_and_order(&make()).await;
    events_sequence_and_filters(&make()).await;
    remember_until_expiry(&make()).await;
    task_versions_only_move_forward(&make()).await;
    snapshot_catalogue(&make()).await;
    purge_expired(&make()).await;
    service_records(&make()).await;
}

/// Service records are written like claims: conditional, versioned,
/// returned as stored, and round-trip with their deployment.
pub async fn service_records<L: Ledger>(ledger: &L) {
    assert_eq!(ledger.service("files").await.expect("read an unknown service"), None);
    let definition = crate::task::TaskDefinition {
        family: "files".into(),
        revision: 1,
        command: vec!["serve".into()],
        env: Default::default(),
        port: 5000,
        health_check: None,
        stop_timeout: std::time::Duration::from_secs(30),
        secrets: Default::default(),
        container: None,
    };
    let mut record = ServiceRecord::new("files", definition.clone());
    expect_conflict(ledger.put_service(&record, Expect::Version(1)).await, "Expect::Version of a missing service");
    let v1 = ledger.put_service(&record, Expect::Absent).await.expect("insert a service record");
    assert_eq!(v1.version, 1, "a new service record is stored at version 1");
    expect_conflict(ledger.put_service(&record, Expect::Absent).await, "a second insert of one service");
    let mut changed = definition;
    changed.command = vec!["serve".into(), "--v2".into()];
    record.deploy(changed, std::time::Duration::from_secs(60), t0()).expect("start a deployment");
    let v2 = ledger.put_service(&record, Expect::Version(1)).await.expect("write at the version read");
    assert_eq!(v2.version, 2);
    expect_conflict(ledger.put_service(&record, Expect::Version(1)).await, "a service write at a stale version");
    let read = ledger.service("files").await.expect("read").expect("the service exists");
    assert_eq!(read, v2, "a service record round-trips, deployment included");
    assert_eq!(read.active, 2);
    assert_eq!(ledger.service("other").await.expect("read"), None, "services are independent");
}

/// `Expect::Absent` inserts once; a second insert of the same claim
/// conflicts and leaves the first record alone.
pub async fn claim_insert_is_conditional<L: Ledger>(ledger: &L) {
    let name = claim_name("web-0");
    assert_eq!(ledger.claim(&name).await.expect("read an unknown claim"), None, "an unknown claim reads as None");

    let first = ClaimRecord::new(name.clone(), "web", 0, 1, t0());
    let stored = ledger.put_claim(&first, Expect::Absent).await.expect("insert a new claim with Expect::Absent");
    assert_eq!(stored.version, 1, "a new claim is stored at version 1");
    assert_eq!(stored, ClaimRecord { version: 1, ..first.clone() }, "put_claim returns the record as stored");

    let mut second = first.clone();
    second.revision = 2;
    expect_conflict(ledger.put_claim(&second, Expect::Absent).await, "a second Expect::Absent insert of one claim");
    let read = ledger.claim(&name).await.expect("read the claim").expect("the claim exists");
    assert_eq!(read, stored, "a conflicting insert must not change the stored record");

    // Another claim is independent.
    let other = ClaimRecord::new(claim_name("web-1"), "web", 1, 1, t0());
    let other = ledger.put_claim(&other, Expect::Absent).await.expect("insert a second, different claim");
    assert_eq!(other.version, 1, "each claim has its own version");
}

/// `Expect::Version(v)` writes only at exactly version `v`: a wrong or
/// stale version conflicts, and so does any version of a missing claim.
pub async fn claim_compare_and_swap<L: Ledger>(ledger: &L) {
    let name = claim_name("db-0");
    let mut record = ClaimRecord::new(name.clone(), "db", 0, 1, t0());
    expect_conflict(ledger.put_claim(&record, Expect::Version(0)).await, "Expect::Version(0) on a missing claim");
    expect_conflict(ledger.put_claim(&record, Expect::Version(1)).await, "Expect::Version(1) on a missing claim");
    assert_eq!(ledger.claim(&name).await.expect("read"), None, "a failed conditional write must create nothing");

    let v1 = ledger.put_claim(&record, Expect::Absent).await.expect("insert");
    record.desired = DesiredState::Parked;
    let v2 = ledger.put_claim(&record, Expect::Version(v1.version)).await.expect("write at the version read");
    assert_eq!(v2.version, 2, "a write at the right version stores the next version");
    assert_eq!(v2.desired, DesiredState::Parked, "the write's content is stored");

    record.desired = DesiredState::Deleted;
    expect_conflict(ledger.put_claim(&record, Expect::Version(7)).await, "a write at a version never stored");
    expect_conflict(ledger.put_claim(&record, Expect::Version(v1.version)).await, "a write at a stale version");
    expect_conflict(ledger.put_claim(&record, Expect::Absent).await, "Expect::Absent on an existing claim");
    let read = ledger.claim(&name).await.expect("read").expect("the claim exists");
    assert_eq!(read, v2, "failed conditional writes must leave the record as it was");
}

/// Every successful write stores the previous version plus one, whatever
/// version the written record carried.
pub async fn claim_versions_increase_by_one<L: Ledger>(ledger: &L) {
    let mut record = ClaimRecord::new(claim_name("web-3"), "web", 3, 1, t0());
    record.version = 99; // set by the ledger, not by the writer
    let mut stored = ledger.put_claim(&record, Expect::Absent).await.expect("insert");
    assert_eq!(stored.version, 1, "the version a new record carries is ignored; it is stored at 1");
    for expected in 2..=6 {
        let mut next = stored.clone();
        next.generation = Generation(next.generation.0 + 1);
        next.version = 1234;
        stored = ledger.put_claim(&next, Expect::Version(stored.version)).await.expect("write at the current version");
        assert_eq!(stored.version, expected, "versions increase by exactly one per write");
    }
    let read = ledger.claim(&record.name).await.expect("read").expect("the claim exists");
    assert_eq!(read.version, 6, "the stored record carries the version of the last write");
    assert_eq!(read.generation, Generation(5), "the stored record is the last one written");
}

/// Two writers that read the same version both write: exactly one wins,
/// and the record is the winner's. Sequential, so any ledger can run it;
/// [`concurrent_cas`] is the overlapping version.
pub async fn racing_writers_one_wins<L: Ledger>(ledger: &L) {
    let name = claim_name("web-7");
    ledger.put_claim(&ClaimRecord::new(name.clone(), "web", 7, 1, t0()), Expect::Absent).await.expect("insert");

    let read_a = ledger.claim(&name).await.expect("read a").expect("the claim exists");
    let read_b = ledger.claim(&name).await.expect("read b").expect("the claim exists");
    let mut a = read_a.clone();
    a.generation = Generation(1);
    a.task = Some(TaskArn("arn:aws:ecs:local:0:task/berth/a".into()));
    let mut b = read_b.clone();
    b.generation = Generation(1);
    b.task = Some(TaskArn("arn:aws:ecs:local:0:task/berth/b".into()));

    let won = ledger.put_claim(&a, Expect::Version(read_a.version)).await.expect("the first writer wins");
    expect_conflict(ledger.put_claim(&b, Expect::Version(read_b.version)).await, "the second writer of one version");
    let read = ledger.claim(&name).await.expect("read").expect("the claim exists");
    assert_eq!(read, won, "the stored record is the winner's");
    assert_eq!(read.version, read_a.version + 1, "only one write happened");
}

/// A claim with every field set, a full handoff and stop order included,
/// reads back exactly as written.
pub async fn claim_round_trip<L: Ledger>(ledger: &L) {
    let record = full_claim();
    let stored = ledger.put_claim(&record, Expect::Absent).await.expect("insert a full claim");
    let expected = ClaimRecord { version: 1, ..record };
    assert_eq!(stored, expected, "put_claim returns every field as written");
    let read = ledger.claim(&expected.name).await.expect("read").expect("the claim exists");
    assert_eq!(read, expected, "claim() returns every field as written");
    let all = ledger.claims().await.expect("list claims");
    assert_eq!(all, vec![expected], "claims() returns every field as written");
}

/// `claims()` lists every claim once, ordered by name.
pub async fn claims_ordered_by_name<L: Ledger>(ledger: &L) {
    assert!(ledger.claims().await.expect("list an empty ledger").is_empty(), "a new ledger has no claims");
    for (service, ordinal) in [("web", 2), ("api", 0), ("web", 10), ("web", 1)] {
        let name = ClaimName::of_service(service, ordinal).expect("claim name");
        ledger.put_claim(&ClaimRecord::new(name, service, ordinal, 1, t0()), Expect::Absent).await.expect("insert");
    }
    let names: Vec<String> =
        ledger.claims().await.expect("list claims").into_iter().map(|c| c.name.as_str().to_owned()).collect();
    assert_eq!(names, ["api-0", "web-1", "web-10", "web-2"], "claims() is ordered by name (as strings)");
}

/// `put_generation` inserts or replaces one generation; `generations()`
/// lists one claim's, oldest (lowest number) first.
pub async fn generations_upsert_and_order<L: Ledger>(ledger: &L) {
    let name = claim_name("web-0");
    let other = claim_name("web-1");
    assert_eq!(ledger.generation(&name, Generation(1)).await.expect("read"), None, "an unknown generation is None");
    assert!(ledger.generations(&name).await.expect("list").is_empty(), "an unknown claim has no generations");

    for n in [10, 2, 9, 1] {
        ledger.put_generation(&GenerationRecord::new(name.clone(), Generation(n))).await.expect("put a generation");
    }
    ledger.put_generation(&GenerationRecord::new(other.clone(), Generation(5))).await.expect("put another claim's");

    let full = full_generation(name.clone(), Generation(9));
    ledger.put_generation(&full).await.expect("replace a generation");
    assert_eq!(
        ledger.generation(&name, Generation(9)).await.expect("read"),
        Some(full.clone()),
        "put_generation replaces the record, every field as written"
    );

    let listed = ledger.generations(&name).await.expect("list generations");
    let numbers: Vec<u64> = listed.iter().map(|g| g.generation.0).collect();
    assert_eq!(numbers, [1, 2, 9, 10], "generations are one claim's, oldest first, numbers compared as numbers");
    assert_eq!(listed[2], full, "the list holds the replaced record");
    assert_eq!(ledger.generations(&other).await.expect("list").len(), 1, "generations are per claim");
}

/// Events get strictly increasing sequence numbers; `events` reads those
/// after a number, oldest first, up to a limit, optionally of one claim.
pub async fn events_sequence_and_filters<L: Ledger>(ledger: &L) {
    let a = claim_name("web-0");
    let b = claim_name("web-1");
    assert!(ledger.events(0, None, 10).await.expect("read an empty log").is_empty(), "a new ledger has no events");

    let mut written = Vec::new();
    for (i, claim) in [Some(&a), Some(&b), None, Some(&a), Some(&b), Some(&a)].into_iter().enumerate() {
        let mut event = EventRecord::new(t0() + ms(i as i64 * 1500), claim, "handoff-claimed", format!("event {i}"));
        event.data = serde_json::json!({ "i": i, "why": "spot interruption → replace", "nested": [1, null, true] });
        let seq = ledger.append_event(&event).await.expect("append an event");
        written.push(EventRecord { seq, ..event });
    }
    for pair in written.windows(2) {
        assert!(pair[1].seq > pair[0].seq, "sequence numbers strictly increase: {} then {}", pair[0].seq, pair[1].seq);
    }
    assert!(written[0].seq > 0, "sequence numbers start above 0, so `after = 0` reads from the start");

    let all = ledger.events(0, None, 100).await.expect("read all");
    assert_eq!(all, written, "events() returns every event, oldest first, every field and its seq as assigned");

    let after = ledger.events(written[2].seq, None, 100).await.expect("read after");
    assert_eq!(after, written[3..], "events() returns only events after `after`");

    let limited = ledger.events(written[0].seq, None, 2).await.expect("read with a limit");
    assert_eq!(limited, written[1..3], "events() returns at most `limit`, the oldest first");

    let of_a = ledger.events(0, Some(&a), 100).await.expect("read one claim's");
    let expected: Vec<EventRecord> = written.iter().filter(|e| e.claim.as_ref() == Some(&a)).cloned().collect();
    assert_eq!(of_a, expected, "events() filters by claim");
    let of_a = ledger.events(written[0].seq, Some(&a), 1).await.expect("read one claim's with after and limit");
    assert_eq!(of_a, [written[3].clone()], "after, limit and the claim filter combine");

    assert!(
        ledger.events(written[5].seq, None, 10).await.expect("read past the end").is_empty(),
        "nothing after the last"
    );
    assert!(ledger.events(0, None, 0).await.expect("read with limit 0").is_empty(), "limit 0 reads nothing");
}

/// `remember` stores a key once: while its record is unexpired it answers
/// with the stored value; at and after `expires` the key is new again.
pub async fn remember_until_expiry<L: Ledger>(ledger: &L) {
    let key = "launch:web-0:3";
    let expires = t0() + secs(60);
    assert_eq!(ledger.remember(key, "a", t0(), expires).await.expect("remember"), Remembered::New, "a new key");
    assert_eq!(
        ledger.remember(key, "b", t0() + secs(30), t0() + secs(90)).await.expect("remember"),
        Remembered::Seen("a".into()),
        "an unexpired key answers with the first value"
    );
    assert_eq!(
        ledger.remember("launch:web-1:3", "x", t0() + secs(30), expires).await.expect("remember"),
        Remembered::New,
        "keys are independent"
    );
    assert_eq!(
        ledger.remember(key, "c", expires, expires + secs(60)).await.expect("remember"),
        Remembered::New,
        "a record is expired from its `expires` on, and the key is new again"
    );
    assert_eq!(
        ledger.remember(key, "d", expires + secs(1), expires + secs(120)).await.expect("remember"),
        Remembered::Seen("c".into()),
        "an expired key's new record is stored with its new value"
    );
}

/// `observe_task_version` accepts only a version newer than the newest
/// seen of the same task.
pub async fn task_versions_only_move_forward<L: Ledger>(ledger: &L) {
    let t1 = TaskArn("arn:aws:ecs:local:0:task/berth/one".into());
    let t2 = TaskArn("arn:aws:ecs:local:0:task/berth/two".into());
    let cases = [
        (&t1, 3, true, "the first version of a task"),
        (&t1, 3, false, "a duplicate version"),
        (&t1, 2, false, "an older version"),
        (&t1, 4, true, "a newer version"),
        (&t1, 3, false, "an older version after a newer one"),
        (&t2, 1, true, "another task's first version, lower than the first task's"),
        (&t2, 1, false, "another task's duplicate"),
        (&t1, 10, true, "a version more than one newer"),
        (&t1, 9, false, "older than the jump"),
    ];
    for (i, (task, version, newer, what)) in cases.into_iter().enumerate() {
        let seen = ledger.observe_task_version(task, version, t0() + secs(i as i64)).await.expect("observe");
        assert_eq!(seen, newer, "observe_task_version({}, {version}): {what}", task.short());
    }
}

/// The catalogue adds, replaces and removes snapshots by id and lists
/// them newest first (ties: the greater id first), optionally of one claim.
pub async fn snapshot_catalogue<L: Ledger>(ledger: &L) {
    let a = claim_name("web-0");
    let b = claim_name("web-1");
    assert!(ledger.snapshots(None).await.expect("list an empty catalogue").is_empty(), "a new catalogue is empty");
    ledger.catalogue(&[]).await.expect("catalogue nothing");

    let s1 = snapshot("s1", t0(), Some(&a), 1);
    let s2 = snapshot("s2", t0() + secs(60), Some(&a), 2);
    let s3 = snapshot("s3", t0(), Some(&b), 1);
    let s4 = snapshot("s4", t0() + secs(120), None, 0);
    ledger.catalogue(&[s1.clone(), s2.clone(), s3.clone(), s4.clone()]).await.expect("catalogue four");

    let ids = |list: Vec<SnapshotRecord>| list.into_iter().map(|s| s.id.0).collect::<Vec<_>>();
    assert_eq!(
        ids(ledger.snapshots(None).await.expect("list")),
        ["s4", "s2", "s3", "s1"],
        "snapshots() is newest first, ties by id descending, untagged ones included"
    );
    assert_eq!(ledger.snapshots(Some(&a)).await.expect("list a"), [s2.clone(), s1.clone()], "filtered by claim");

    let s1_pinned = SnapshotRecord { pinned: true, kind: Some(SnapshotKind::Manual), ..s1.clone() };
    ledger.catalogue(std::slice::from_ref(&s1_pinned)).await.expect("replace s1");
    assert_eq!(
        ledger.snapshots(Some(&a)).await.expect("list a"),
        [s2.clone(), s1_pinned.clone()],
        "cataloguing a known id replaces its record"
    );

    ledger.uncatalogue(&[s2.id.clone(), SnapshotId("never-catalogued".into())]).await.expect("uncatalogue");
    ledger.uncatalogue(&[]).await.expect("uncatalogue nothing");
    assert_eq!(
        ledger.snapshots(None).await.expect("list"),
        [s4, s3, s1_pinned],
        "uncatalogue removes the named snapshots and ignores unknown ids"
    );
}

/// `purge(now)` deletes idempotency records expired at `now` and task
/// versions not updated for more than 7 days, and counts them.
pub async fn purge_expired<L: Ledger>(ledger: &L) {
    assert_eq!(ledger.purge(t0()).await.expect("purge an empty ledger"), 0, "nothing to purge");
    ledger.remember("k1", "v1", t0(), t0() + secs(10)).await.expect("remember k1");
    ledger.remember("k2", "v2", t0(), t0() + secs(20)).await.expect("remember k2");
    let old = TaskArn("arn:aws:ecs:local:0:task/berth/old".into());
    let young = TaskArn("arn:aws:ecs:local:0:task/berth/young".into());
    ledger.observe_task_version(&old, 5, t0()).await.expect("observe old");
    ledger.observe_task_version(&young, 5, t0() + Duration::days(6)).await.expect("observe young");

    assert_eq!(ledger.purge(t0() + secs(9)).await.expect("purge"), 0, "nothing has expired yet");
    assert_eq!(ledger.purge(t0() + secs(10)).await.expect("purge"), 1, "k1 expired at its `expires`");
    assert_eq!(
        ledger.remember("k2", "other", t0() + secs(11), t0() + secs(60)).await.expect("remember k2"),
        Remembered::Seen("v2".into()),
        "purge keeps unexpired records"
    );

    let week = t0() + Duration::days(7);
    assert_eq!(ledger.purge(week).await.expect("purge"), 1, "k2 went; a task version exactly 7 days old stays");
    assert_eq!(ledger.purge(week + secs(1)).await.expect("purge"), 1, "a task version older than 7 days goes");
    assert_eq!(ledger.purge(week + secs(1)).await.expect("purge"), 0, "purge is idempotent");

    assert!(
        ledger.observe_task_version(&old, 5, week + secs(2)).await.expect("observe old"),
        "a purged task's version is forgotten"
    );
    assert!(
        !ledger.observe_task_version(&young, 5, week + secs(2)).await.expect("observe young"),
        "a kept task's version is remembered"
    );
}

/// Two handles on one store (two processes, two connections) write the
/// same claim at the same version at the same time: exactly one wins, every
/// round. `a` and `b` must share a store that starts without claim `race-0`.
pub async fn concurrent_cas<L: Ledger>(a: &L, b: &L) {
    const ROUNDS: u64 = 20;
    let name = claim_name("race-0");
    let (ins_a, ins_b) = join2(
        a.put_claim(&ClaimRecord::new(name.clone(), "race", 0, 1, t0()), Expect::Absent),
        b.put_claim(&ClaimRecord::new(name.clone(), "race", 0, 2, t0()), Expect::Absent),
    )
    .await;
    one_winner(ins_a, ins_b, "two concurrent Expect::Absent inserts");

    for round in 0..ROUNDS {
        let read_a = a.claim(&name).await.expect("read through a").expect("the claim exists");
        let read_b = b.claim(&name).await.expect("read through b").expect("the claim exists");
        assert_eq!(read_a, read_b, "both handles read the same record (round {round})");
        let mut next_a = read_a.clone();
        next_a.stop_order = Some(StopOrder {
            task: TaskArn(format!("a-{round}")),
            intent: StopIntent::Replace,
            cause: StopCause::FailedHealthChecks,
            reason: "a".into(),
            at: t0(),
        });
        let mut next_b = read_b.clone();
        next_b.stop_order =
            Some(StopOrder { task: TaskArn(format!("b-{round}")), ..next_a.stop_order.clone().unwrap() });
        let (res_a, res_b) = join2(
            a.put_claim(&next_a, Expect::Version(read_a.version)),
            b.put_claim(&next_b, Expect::Version(read_b.version)),
        )
        .await;
        let won = one_winner(res_a, res_b, &format!("round {round} of two concurrent writers"));
        let read = b.claim(&name).await.expect("read").expect("the claim exists");
        assert_eq!(read, won, "the stored record is the winner's (round {round})");
    }
    let last = a.claim(&name).await.expect("read").expect("the claim exists");
    assert_eq!(last.version, ROUNDS + 1, "exactly one write per round happened");
}

/// Polls two futures together until both are done. Std-only, so the
/// contract needs no runtime; on a multi-threaded runtime the two writes
/// overlap for real.
async fn join2<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let mut a = pin!(a);
    let mut b = pin!(b);
    let (mut out_a, mut out_b) = (None, None);
    poll_fn(move |cx| {
        if out_a.is_none() {
            if let Poll::Ready(v) = a.as_mut().poll(cx) {
                out_a = Some(v);
            }
        }
        if out_b.is_none() {
            if let Poll::Ready(v) = b.as_mut().poll(cx) {
                out_b = Some(v);
            }
        }
        match (out_a.take(), out_b.take()) {
            (Some(x), Some(y)) => Poll::Ready((x, y)),
            (x, y) => {
                (out_a, out_b) = (x, y);
                Poll::Pending
            }
        }
    })
    .await
}

#[track_caller]
fn one_winner(a: Result<ClaimRecord, LedgerError>, b: Result<ClaimRecord, LedgerError>, what: &str) -> ClaimRecord {
    match (a, b) {
        (Ok(won), Err(e)) | (Err(e), Ok(won)) if e.is_conflict() => won,
        (Ok(_), Ok(_)) => panic!("{what}: both writers won; the compare-and-swap is not atomic"),
        (a, b) => panic!("{what}: expected one winner and one conflict, got {a:?} and {b:?}"),
    }
}

#[track_caller]
fn expect_conflict<T: std::fmt::Debug>(result: Result<T, LedgerError>, what: &str) {
    match result {
        Err(LedgerError::Conflict(_)) => {}
        Ok(stored) => panic!("{what} must conflict, but it stored {stored:?}"),
        Err(e) => panic!("{what} must conflict, but it failed otherwise: {e}"),
    }
}

fn claim_name(raw: &str) -> ClaimName {
    ClaimName::parse(raw).expect("valid claim name")
}

/// A fixed instant with sub-second digits, so adapters must keep them.
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap() + Duration::microseconds(123_456)
}

fn secs(n: i64) -> Duration {
    Duration::seconds(n)
}

fn ms(n: i64) -> Duration {
    Duration::milliseconds(n)
}

fn snapshot(id: &str, time: DateTime<Utc>, claim: Option<&ClaimName>, generation: u64) -> SnapshotRecord {
    SnapshotRecord {
        id: SnapshotId(id.into()),
        time,
        claim: claim.cloned(),
        generation: claim.map(|_| Generation(generation)),
        kind: claim.map(|_| SnapshotKind::OnStop),
        pinned: false,
        pending: false,
        lock: None,
        consistency: None,
        volume: None,
    }
}

/// A claim with every optional field set and nothing at its default.
fn full_claim() -> ClaimRecord {
    let task = |id: &str| TaskArn(format!("arn:aws:ecs:eu-west-1:123456789012:task/berth/{id}"));
    ClaimRecord {
        name: claim_name("files-4"),
        service: "files".into(),
        ordinal: 4,
        desired: DesiredState::Parked,
        generation: Generation(12),
        task: Some(task("t12")),
        volume: Some(VolumeId("vol-12".into())),
        head_snapshot: Some(SnapshotId("snap-head".into())),
        last_good_snapshot: Some(SnapshotId("snap-good".into())),
        backoff: CrashLoop { failures: 3, not_before: Some(t0() + secs(40)) },
        healthy_since: Some(t0() - secs(5)),
        handoff: Some(Handoff {
            from: Generation(11),
            step: HandoffStep::Launching,
            stopped_task: Some(task("t11")),
            old_volume: Some(VolumeId("vol-11".into())),
            stop_code: Some(StopCode::Other("SomethingNew".into())),
            stop_reason: Some("Your Spot Task was interrupted.".into()),
            stopped_at: Some(t0() - secs(30)),
            was_healthy: true,
            intent: StopIntent::Replace,
            intent_from_desired: true,
            intent_reason: "spot interruption → replace".into(),
            snapshot: Some(SnapshotId("snap-11".into())),
            restore: true,
            new_volume: Some(VolumeId("vol-12".into())),
            new_task: Some(task("t12")),
            owner: Some("controller-a".into()),
            lease_until: Some(t0() + secs(300)),
            started_at: t0() - secs(29),
        }),
        restore_to: Some(SnapshotId("restore".into())),
        stop_order: Some(StopOrder {
            task: task("t10"),
            intent: StopIntent::Park,
            cause: StopCause::Parked,
            reason: "scale-in".into(),
            at: t0() - Duration::hours(1),
        }),
        revision: 7,
        created_at: t0() - Duration::days(30),
        updated_at: t0(),
        version: 0,
        fork_of: Some(claim_name("files-0")),
    }
}

/// A generation with every optional field set.
fn full_generation(claim: ClaimName, generation: Generation) -> GenerationRecord {
    GenerationRecord {
        claim,
        generation,
        task: Some(TaskArn("arn:aws:ecs:local:0:task/berth/g".into())),
        volume: Some(VolumeId("vol-g".into())),
        source_snapshot: Some(SnapshotId("snap-src".into())),
        adopted: true,
        revision: 3,
        started_at: Some(t0()),
        healthy_at: Some(t0() + secs(4)),
        stopped_at: Some(t0() + Duration::hours(2)),
        stop_code: Some(StopCode::SpotInterruption),
        stop_reason: Some("interrupted".into()),
        stop_snapshot: Some(SnapshotId("snap-stop".into())),
        rto_ms: Some(4_321),
    }
}
