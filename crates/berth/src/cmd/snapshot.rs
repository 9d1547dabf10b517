//! `berth snapshot …`: snapshots of folders in a restic-format repository.
//!
//! The repository is `--repo` or `BERTH_REPOSITORY` (default: the state
//! folder's), created on first use; its password comes from `BERTH_PASSWORD`,
//! `BERTH_PASSWORD_FILE` or the state folder's key file, never from an
//! argument. Every command prints a table for people and, with `--json`,
//! one JSON document for scripts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use berth_core::retention::{self, KeepPolicy};
use berth_core::{ClaimName, SnapshotKind, SnapshotRecord};
use berth_local::resolve_password;
use berth_repo::{Repo, SnapshotInfo, SnapshotMeta};
use chrono::{DateTime, Utc};
use serde_json::json;

use super::repo::RepoArgs;
use crate::output::{bytes, print_json, Table};
use crate::units::parse_duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    repo: RepoArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Snapshot a folder as a claim's volume.
    Create {
        /// The folder to snapshot.
        path: PathBuf,
        /// The claim the folder is the volume of (e.g. web-0).
        #[arg(long)]
        claim: ClaimName,
        /// The claim's generation, if the folder is the volume of one.
        #[arg(long)]
        generation: Option<u64>,
        /// Why it is taken.
        #[arg(long, default_value = "manual")]
        kind: SnapshotKind,
        /// Never remove it by retention (forget).
        #[arg(long)]
        pin: bool,
        /// Extra tags (repeatable).
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        #[command(flatten)]
        lock: LockArgs,
    },
    /// List snapshots, oldest first.
    List {
        #[command(flatten)]
        filter: Filter,
    },
    /// Restore a snapshot into a folder (which must be empty or missing).
    Restore {
        /// Snapshot id, a unique prefix of it, or `latest`: the newest
        /// snapshot, of those --claim, --tag, --since and --until select.
        id: String,
        /// Target folder.
        target: PathBuf,
        /// Replace a non-empty target (the old content is removed once the restore completed).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        filter: Filter,
    },
    /// Forget snapshots by a retention policy, per claim, or the snapshots
    /// named by id. Pinned and locked snapshots are kept: a governance lock
    /// yields to --bypass-governance, a compliance lock to nothing.
    Forget {
        /// Snapshot ids (or unique prefixes) to forget, instead of --keep-* rules.
        ids: Vec<String>,
        #[command(flatten)]
        keep: KeepArgs,
        /// Also forget governance-locked snapshots (compliance locks still hold).
        #[arg(long)]
        bypass_governance: bool,
        /// Forget pinned snapshots named by id (locks still hold).
        #[arg(long)]
        force: bool,
        /// Only this claim's snapshots.
        #[arg(long)]
        claim: Option<ClaimName>,
        /// Print the plan, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Prune afterwards, freeing the space of forgotten data.
        #[arg(long)]
        prune: bool,
    },
    /// Remove data no snapshot references.
    Prune {
        /// Print the plan, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Check the repository's structure (and with --read-data, every byte).
    Check {
        /// Read and verify all data, not only the index and trees.
        #[arg(long)]
        read_data: bool,
    },
    /// Copy snapshots to a second repository (disaster recovery).
    Copy {
        /// Destination repository (a folder); created on first use. Its password is
        /// BERTH_COPY_PASSWORD or BERTH_COPY_PASSWORD_FILE, else the source's.
        #[arg(long, value_name = "LOCATION")]
        to: String,
        /// Only this claim's snapshots.
        #[arg(long)]
        claim: Option<ClaimName>,
        /// Snapshot ids (default: all, or all of --claim).
        ids: Vec<String>,
    },
}

#[derive(Debug, clap::Args)]
struct Filter {
    /// Only this claim's snapshots.
    #[arg(long)]
    claim: Option<ClaimName>,
    /// Only snapshots with this tag (repeatable: all must match).
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Only snapshots at or after this time (RFC 3339, or a duration ago such as 2h).
    #[arg(long, value_parser = parse_time)]
    since: Option<DateTime<Utc>>,
    /// Only snapshots at or before this time.
    #[arg(long, value_parser = parse_time)]
    until: Option<DateTime<Utc>>,
}

/// A retention lock for a new snapshot.
#[derive(Debug, clap::Args)]
struct LockArgs {
    /// Lock the snapshot against deletion: governance (lifted by
    /// --bypass-governance) or compliance (by nothing before its date).
    #[arg(long, value_name = "MODE", requires = "lock_for")]
    lock: Option<berth_core::LockMode>,
    /// How long the lock holds (e.g. 30d).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION", requires = "lock")]
    lock_for: Option<Duration>,
}

impl LockArgs {
    fn lock(&self) -> Result<Option<berth_core::SnapshotLock>> {
        let (Some(mode), Some(span)) = (self.lock, self.lock_for) else { return Ok(None) };
        let until = chrono::Duration::from_std(span)
            .ok()
            .and_then(|d| Utc::now().checked_add_signed(d))
            .context("--lock-for is too long")?;
        Ok(Some(berth_core::SnapshotLock { mode, until }))
    }
}

/// A lock as a table cell: `compliance until 2026-12-09T10:00:00Z`.
fn lock_cell(s: &SnapshotInfo) -> String {
    match &s.lock {
        Some(l) if l.holds_at(Utc::now()) => {
            format!("{} until {}", l.mode, l.until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        }
        Some(_) => "expired".into(),
        None => String::new(),
    }
}

#[derive(Debug, clap::Args)]
struct KeepArgs {
    /// Keep the N newest snapshots.
    #[arg(long, value_name = "N")]
    keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the last N hours.
    #[arg(long, value_name = "N")]
    keep_hourly: Option<u32>,
    /// … of each of the last N days.
    #[arg(long, value_name = "N")]
    keep_daily: Option<u32>,
    /// … of each of the last N (ISO) weeks.
    #[arg(long, value_name = "N")]
    keep_weekly: Option<u32>,
    /// … of each of the last N months.
    #[arg(long, value_name = "N")]
    keep_monthly: Option<u32>,
    /// … of each of the last N years.
    #[arg(long, value_name = "N")]
    keep_yearly: Option<u32>,
    /// Keep every snapshot taken within this duration of now (e.g. 7d).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    keep_within: Option<Duration>,
}

impl KeepArgs {
    fn policy(&self) -> KeepPolicy {
        KeepPolicy {
            last: self.keep_last,
            hourly: self.keep_hourly,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
            yearly: self.keep_yearly,
            within: self.keep_within,
        }
    }
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let ago = parse_duration(s).map_err(|_| format!("'{s}' is neither an RFC 3339 time nor a duration ago (2h)"))?;
    Ok(Utc::now() - chrono::Duration::from_std(ago).map_err(|e| e.to_string())?)
}

pub fn run(args: Args) -> Result<()> {
    let r = &args.repo;
    match args.command {
        Command::Create { path, claim, generation, kind, pin, tags, lock } => {
            if !path.is_dir() {
                bail!("{} is not a folder", path.display());
            }
            let lock = lock.lock()?;
            let repo = r.open(true)?;
            let meta = SnapshotMeta {
                generation,
                pinned: pin,
                lock,
                extra_tags: tags,
                ..SnapshotMeta::new(claim.to_string(), kind)
            };
            let info = repo.snapshot(&path, &meta).with_context(|| format!("snapshot of {}", path.display()))?;
            if r.json {
                return print_json(&info);
            }
            println!(
                "snapshot {} of {} (claim {claim}): {} files, {}, {} new, {:.2} s",
                short(&info.id),
                path.display(),
                info.files,
                bytes(info.bytes),
                bytes(info.data_added),
                info.duration_secs
            );
            Ok(())
        }
        Command::List { filter } => {
            let repo = r.open(false)?;
            let snaps: Vec<SnapshotInfo> = repo.list()?.into_iter().filter(|s| filter.matches(s)).collect();
            if r.json {
                return print_json(&snaps);
            }
            let mut t = Table::new(["ID", "TIME", "CLAIM", "GEN", "KIND", "PIN", "LOCK", "FILES", "SIZE", "TAGS"]);
            for s in &snaps {
                t.row([
                    short(&s.id).to_owned(),
                    s.time.clone(),
                    s.claim.clone().unwrap_or_else(|| "-".into()),
                    s.generation.map_or("-".into(), |g| g.to_string()),
                    s.kind.clone().unwrap_or_else(|| "-".into()),
                    if s.pinned { "yes".into() } else { "".into() },
                    lock_cell(s),
                    s.files.to_string(),
                    bytes(s.bytes),
                    s.tags.join(","),
                ]);
            }
            t.print();
            println!("{} snapshots", snaps.len());
            Ok(())
        }
        Command::Restore { id, target, force, filter } => {
            let repo = r.open(false)?;
            let id = choose_snapshot(&repo, &id, &filter)?;
            let stats = restore(&repo, &id, &target, force)?;
            if r.json {
                return print_json(&json!({ "snapshot": id, "target": target, "stats": stats }));
            }
            println!("restored snapshot {id} into {}", target.display());
            Ok(())
        }
        Command::Forget { ids, keep, bypass_governance, force, claim, dry_run, prune } => {
            let policy = keep.policy();
            if !ids.is_empty() {
                if !policy.is_empty() {
                    bail!("give snapshot ids or --keep-* rules, not both");
                }
                return forget_ids(r, &ids, bypass_governance, force, dry_run, prune);
            }
            if policy.is_empty() {
                bail!("no retention rule given: pass snapshot ids or at least one --keep-* option (see --help)");
            }
            let repo = r.open(false)?;
            let mut snaps = repo.list()?;
            let now = Utc::now();
            if bypass_governance {
                // Retention keeps whatever a lock holds; a bypass lifts
                // governance locks before the plan is made.
                for s in &mut snaps {
                    s.lock = s.lock.take().filter(|l| l.mode == berth_core::LockMode::Compliance);
                }
            }
            let mut groups: BTreeMap<String, Vec<SnapshotRecord>> = BTreeMap::new();
            for s in &snaps {
                if claim.as_ref().is_some_and(|c| s.claim.as_deref() != Some(c.as_str())) {
                    continue;
                }
                groups
                    .entry(s.claim.clone().unwrap_or_else(|| "-".into()))
                    .or_default()
                    .push(berth_local::to_record(s));
            }
            let plans: BTreeMap<String, Vec<retention::Verdict>> =
                groups.iter().map(|(c, recs)| (c.clone(), retention::plan(recs, &policy, now))).collect();
            let doomed: Vec<String> = plans.values().flatten().filter(|v| !v.keep).map(|v| v.id.0.clone()).collect();
            if !dry_run && !doomed.is_empty() {
                repo.forget_with(&doomed, bypass_governance)?;
            }
            let pruned = if prune && !dry_run { Some(repo.prune(false)?) } else { None };
            if r.json {
                return print_json(
                    &json!({ "dry_run": dry_run, "plans": plans, "forgotten": doomed, "prune": pruned }),
                );
            }
            let mut t = Table::new(["CLAIM", "ID", "TIME", "VERDICT", "REASONS"]);
            for (c, verdicts) in &plans {
                for v in verdicts {
                    let verdict = if v.keep {
                        "keep"
                    } else if dry_run {
                        "would forget"
                    } else {
                        "forgotten"
                    };
                    t.row([
                        c.clone(),
                        short(&v.id.0).to_owned(),
                        v.time.to_rfc3339(),
                        verdict.into(),
                        v.reasons.join(","),
                    ]);
                }
            }
            t.print();
            let verb = if dry_run { "would forget" } else { "forgot" };
            println!("{verb} {} of {} snapshots", doomed.len(), plans.values().map(Vec::len).sum::<usize>());
            if let Some(p) = pruned {
                println!("pruned: {}", prune_summary(&p));
            }
            Ok(())
        }
        Command::Prune { dry_run } => {
            let repo = r.open(false)?;
            let stats = repo.prune(dry_run)?;
            if r.json {
                return print_json(&stats);
            }
            println!("{}{}", if dry_run { "plan (dry run): " } else { "pruned: " }, prune_summary(&stats));
            Ok(())
        }
        Command::Check { read_data } => {
            let repo = r.open(false)?;
            let report = repo.check(read_data)?;
            if r.json {
                print_json(&report)?;
            } else {
                for w in &report.warnings {
                    println!("warning: {w}");
                }
                for e in &report.errors {
                    println!("error: {e}");
                }
            }
            if !report.errors.is_empty() {
                bail!(
                    "the repository has {} errors (see above); restore from a copy or run prune",
                    report.errors.len()
                );
            }
            if !r.json {
                println!("no errors{}", if read_data { " (all data read and verified)" } else { "" });
            }
            Ok(())
        }
        Command::Copy { to, claim, ids } => {
            let repo = r.open(false)?;
            let state = r.state()?;
            let password =
                match (std::env::var("BERTH_COPY_PASSWORD").ok(), std::env::var_os("BERTH_COPY_PASSWORD_FILE")) {
                    (None, None) => RepoArgs::password(&state, false)?,
                    (env, file) => resolve_password(env, file.map(PathBuf::from), &state, false)?.0,
                };
            let dest = Repo::open_or_init(&to, &password, r.progress()).with_context(|| format!("repository {to}"))?;
            let wanted: Vec<String> = if ids.is_empty() {
                repo.list()?
                    .into_iter()
                    .filter(|s| claim.as_ref().is_none_or(|c| s.claim.as_deref() == Some(c.as_str())))
                    .map(|s| s.id)
                    .collect()
            } else {
                ids
            };
            let copied = repo.copy_to(&dest, &wanted)?;
            if r.json {
                return print_json(&copied);
            }
            println!("copied {} snapshots to {to} ({} were there already)", copied.len(), wanted.len() - copied.len());
            Ok(())
        }
    }
}

/// `berth snapshot forget ID…`: forgets exactly these snapshots, or none.
fn forget_ids(r: &RepoArgs, ids: &[String], bypass: bool, force: bool, dry_run: bool, prune: bool) -> Result<()> {
    let repo = r.open(false)?;
    let snaps = repo.list()?;
    let mut chosen: Vec<&SnapshotInfo> = Vec::new();
    for id in ids {
        let matches: Vec<&SnapshotInfo> = snaps.iter().filter(|s| s.id.starts_with(id.as_str())).collect();
        match matches.as_slice() {
            [one] => chosen.push(one),
            [] => bail!("snapshot {id} not found; `berth snapshot list` shows which exist"),
            _ => bail!("snapshot id prefix {id} matches {} snapshots; give more characters", matches.len()),
        }
    }
    if let Some(p) = chosen.iter().find(|s| s.pinned && !force) {
        bail!("snapshot {} is pinned (a claim's last known good); pass --force to forget it anyway", short(&p.id));
    }
    let now = Utc::now();
    if let Some((s, l)) =
        chosen.iter().find_map(|s| Some((s, s.lock.as_ref().filter(|l| l.forbids_delete(now, bypass))?)))
    {
        // The repository refuses too; saying it here keeps a dry run honest.
        bail!(berth_repo::RepoError::Locked {
            id: s.id.clone(),
            mode: l.mode,
            until: l.until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        });
    }
    let doomed: Vec<String> = chosen.iter().map(|s| s.id.clone()).collect();
    if !dry_run {
        repo.forget_with(&doomed, bypass)?;
    }
    let pruned = if prune && !dry_run { Some(repo.prune(false)?) } else { None };
    if r.json {
        return print_json(&json!({ "dry_run": dry_run, "forgotten": doomed, "prune": pruned }));
    }
    let verb = if dry_run { "would forget" } else { "forgot" };
    println!("{verb} {} snapshot(s): {}", doomed.len(), doomed.iter().map(|d| short(d)).collect::<Vec<_>>().join(" "));
    if let Some(p) = pruned {
        println!("pruned: {}", prune_summary(&p));
    }
    Ok(())
}

impl Filter {
    fn is_empty(&self) -> bool {
        self.claim.is_none() && self.tags.is_empty() && self.since.is_none() && self.until.is_none()
    }

    fn matches(&self, s: &SnapshotInfo) -> bool {
        self.claim.as_ref().is_none_or(|c| s.claim.as_deref() == Some(c.as_str()))
            && self.tags.iter().all(|t| s.tags.contains(t))
            && self.since.is_none_or(|since| berth_local::snapshot_time(s) >= since)
            && self.until.is_none_or(|until| berth_local::snapshot_time(s) <= until)
    }
}

/// The snapshot a restore names: an id or prefix as given, or for `latest`
/// the full id of the newest snapshot the filter selects.
fn choose_snapshot(repo: &Repo, id: &str, filter: &Filter) -> Result<String> {
    if !id.eq_ignore_ascii_case("latest") {
        if !filter.is_empty() {
            bail!("--claim, --tag, --since and --until choose the snapshot for `latest`; with a snapshot id, leave them out");
        }
        return Ok(id.to_string());
    }
    let newest = repo.list()?.into_iter().rev().find(|s| filter.matches(s));
    match newest {
        Some(s) => Ok(s.id),
        None if filter.is_empty() => bail!("the repository has no snapshots yet"),
        None => bail!("no snapshot matches the given --claim, --tag, --since and --until"),
    }
}

/// Restores through a staging folder beside the target, so the target is
/// either untouched or holds the whole snapshot: never half of it.
fn restore(repo: &Repo, id: &str, target: &Path, force: bool) -> Result<berth_repo::RestoreStats> {
    let occupied = match std::fs::read_dir(target) {
        Ok(mut rd) => rd.next().is_some(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(e).with_context(|| format!("cannot read the target {}", target.display())),
    };
    if occupied && !force {
        bail!(
            "{} is not empty: restore into an empty folder, or pass --force to replace its content",
            target.display()
        );
    }
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let name = target.file_name().context("the target has no folder name")?.to_string_lossy().into_owned();
    let staging = parent.join(format!(".{name}.berth-restore-{:08x}", fastrand::u32(..)));
    std::fs::create_dir(&staging).with_context(|| format!("cannot create {}", staging.display()))?;
    let stats = match repo.restore(id, &staging) {
        Ok(stats) => stats,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e)
                .with_context(|| format!("restore of snapshot {id} failed; {} is unchanged", target.display()));
        }
    };
    let old = parent.join(format!(".{name}.berth-old-{:08x}", fastrand::u32(..)));
    let had_target = target.exists();
    if had_target {
        std::fs::rename(target, &old).with_context(|| format!("cannot move {} aside", target.display()))?;
    }
    if let Err(e) = std::fs::rename(&staging, target) {
        if had_target {
            let _ = std::fs::rename(&old, target);
        }
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e).with_context(|| format!("cannot move the restored files into {}", target.display()));
    }
    if had_target {
        std::fs::remove_dir_all(&old)
            .with_context(|| format!("restored; but the old content in {} remains", old.display()))?;
    }
    Ok(stats)
}

fn prune_summary(p: &berth_repo::PruneStats) -> String {
    format!(
        "{} packs to delete, {} to repack, {} kept; {} freed",
        p.packs.delete_now + p.packs.unused,
        p.packs.repack,
        p.packs.keep,
        bytes(p.bytes_delete_now + p.bytes.remove)
    )
}

fn short(id: &str) -> &str {
    &id[..id.len().min(8)]
}
