//! `berth claims` and `berth claim history NAME`: the claims of a running
//! `berth up`, and the generations of one.
//!
//! A claim is a stable logical volume identity (`<service>-<ordinal>`) that
//! outlives its tasks; each generation is one incarnation of it, started
//! from a snapshot of the one before and stopped into a new snapshot.

use anyhow::Result;
use berth_core::{ClaimName, ClaimRecord, DesiredState, GenerationRecord, SnapshotRecord};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::admin::{self, AdminArgs, Client};
use crate::output::{print_json, Table};

/// `berth claims`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    admin: AdminArgs,
}

/// `berth claim …`.
#[derive(Debug, clap::Args)]
pub struct ClaimArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(subcommand)]
    command: ClaimCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ClaimCommand {
    /// Every generation of a claim (task, times, stop code, source and stop
    /// snapshots, measured RTO), then the claim's snapshots.
    History {
        /// The claim, e.g. web-0.
        name: ClaimName,
    },
}

/// The answer of `GET /v1/claims/{name}`.
#[derive(Debug, Serialize, Deserialize)]
struct ClaimDetail {
    claim: ClaimRecord,
    generations: Vec<GenerationRecord>,
    snapshots: Vec<SnapshotRecord>,
}

pub fn list(args: ListArgs) -> Result<()> {
    let client = Client::connect(&args.admin)?;
    let claims: Vec<ClaimRecord> = client.get("/v1/claims")?;
    if args.admin.json {
        return print_json(&claims);
    }
    let now = Utc::now();
    let mut table = Table::new(["NAME", "SERVICE", "DESIRED", "GEN", "TASK", "HEAD-SNAPSHOT", "HANDOFF", "BACKOFF"]);
    for c in &claims {
        table.row([
            c.name.to_string(),
            c.service.clone(),
            desired(c.desired).to_owned(),
            c.generation.to_string(),
            admin::or_dash(c.task.as_ref().map(|t| admin::short_id(&t.0))),
            admin::or_dash(c.head_snapshot.as_ref().map(|s| admin::short_snapshot(&s.0))),
            admin::or_dash(c.handoff.as_ref().map(|h| h.step.as_str())),
            backoff(c, now),
        ]);
    }
    table.print();
    Ok(())
}

pub fn run(args: ClaimArgs) -> Result<()> {
    let client = Client::connect(&args.admin)?;
    match args.command {
        ClaimCommand::History { name } => {
            let detail: ClaimDetail = client.get(&format!("/v1/claims/{}", admin::encode(name.as_str())))?;
            if args.admin.json {
                return print_json(&detail);
            }
            history(&detail);
        }
    }
    Ok(())
}

fn history(d: &ClaimDetail) {
    let mut table =
        Table::new(["GEN", "TASK", "STARTED", "HEALTHY", "STOPPED", "STOP-CODE", "SOURCE", "STOP-SNAPSHOT", "RTO"]);
    for g in &d.generations {
        let source = match (&g.source_snapshot, g.adopted) {
            (Some(s), true) => format!("{} (adopted)", admin::short_snapshot(&s.0)),
            (None, true) => "(adopted)".to_owned(),
            (s, false) => admin::or_dash(s.as_ref().map(|s| admin::short_snapshot(&s.0))),
        };
        table.row([
            g.generation.to_string(),
            admin::or_dash(g.task.as_ref().map(|t| admin::short_id(&t.0))),
            admin::or_dash(g.started_at.map(admin::time)),
            after(g.started_at, g.healthy_at),
            after(g.started_at, g.stopped_at),
            admin::or_dash(g.stop_code.as_ref().map(|c| c.as_str())),
            source,
            admin::or_dash(g.stop_snapshot.as_ref().map(|s| admin::short_snapshot(&s.0))),
            admin::or_dash(g.rto_ms.map(|ms| admin::duration(std::time::Duration::from_millis(ms)))),
        ]);
    }
    table.print();

    println!();
    let claim = &d.claim;
    let mut table = Table::new(["SNAPSHOT", "TIME", "GEN", "KIND", "NOTE"]);
    for s in &d.snapshots {
        let mut notes = Vec::new();
        if claim.head_snapshot.as_ref() == Some(&s.id) {
            notes.push("head");
        }
        if claim.last_good_snapshot.as_ref() == Some(&s.id) {
            notes.push("last good");
        }
        if s.pinned {
            notes.push("pinned");
        }
        table.row([
            admin::short_snapshot(&s.id.0).to_owned(),
            admin::time(s.time),
            admin::or_dash(s.generation),
            admin::or_dash(s.kind),
            if notes.is_empty() { "-".to_owned() } else { notes.join(", ") },
        ]);
    }
    table.print();
}

/// When `at` happened, as an offset from `start` (`+1.2s`), or as a time if
/// there is no start.
fn after(start: Option<DateTime<Utc>>, at: Option<DateTime<Utc>>) -> String {
    match (start, at) {
        (_, None) => "-".to_owned(),
        (Some(start), Some(at)) => format!("+{}", admin::duration(admin::between(start, at))),
        (None, Some(at)) => admin::time(at),
    }
}

fn desired(d: DesiredState) -> &'static str {
    match d {
        DesiredState::Running => "running",
        DesiredState::Parked => "parked",
        DesiredState::Deleted => "deleted",
    }
}

/// The crash-loop state: `-`, `2 failures`, or `2 failures, retry in 40s`.
fn backoff(c: &ClaimRecord, now: DateTime<Utc>) -> String {
    let b = &c.backoff;
    if b.failures == 0 {
        return "-".to_owned();
    }
    let failures = if b.failures == 1 { "1 failure".to_owned() } else { format!("{} failures", b.failures) };
    match b.not_before.filter(|t| *t > now) {
        Some(t) => format!("{failures}, retry in {}", admin::duration(admin::between(now, t))),
        None => failures,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_and_backoff_read_well() {
        let start: DateTime<Utc> = "2024-05-01T12:00:00Z".parse().unwrap();
        let later = start + chrono::Duration::milliseconds(1500);
        assert_eq!(after(Some(start), Some(later)), "+1.5s");
        assert_eq!(after(Some(start), None), "-");
        assert_eq!(after(None, Some(later)), "2024-05-01T12:00:01Z");

        let name = ClaimName::parse("web-0").unwrap();
        let mut c = ClaimRecord::new(name, "web", 0, 1, start);
        assert_eq!(backoff(&c, start), "-");
        c.backoff.failures = 2;
        c.backoff.not_before = Some(start + chrono::Duration::seconds(40));
        assert_eq!(backoff(&c, start), "2 failures, retry in 40.0s");
        assert_eq!(backoff(&c, start + chrono::Duration::seconds(41)), "2 failures");
    }
}
