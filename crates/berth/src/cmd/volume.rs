//! `berth volume …`: the local volumes of the state folder, by hand.
//!
//! Normally the controller creates, snapshots and deletes volumes; these
//! commands expose the same adapter for inspection, scripting and the
//! benchmarks (the same-host adopt path among them).

use anyhow::{Context, Result};
use berth_core::{ClaimName, Generation, SnapshotId, SnapshotKind, SnapshotRequest, VolumeId, VolumeSource};
use berth_local::LocalVolumes;

use super::repo::RepoArgs;
use crate::output::{print_json, Table};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    repo: RepoArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Create a volume: empty, restored from a snapshot (--from), or adopted
    /// from a stopped volume if it is unchanged since that snapshot (--adopt).
    Create {
        #[arg(long)]
        claim: ClaimName,
        #[arg(long)]
        generation: Option<u64>,
        /// Restore from this snapshot.
        #[arg(long, value_name = "SNAPSHOT")]
        from: Option<String>,
        /// Take over this volume by rename if it is unchanged since --from's
        /// snapshot was taken of it; restore from --from otherwise.
        #[arg(long, value_name = "VOLUME", requires = "from")]
        adopt: Option<String>,
    },
    /// List volumes.
    List,
    /// Snapshot a volume (its task must have stopped).
    Snapshot {
        volume: String,
        /// The generation it belongs to (default: the volume's).
        #[arg(long)]
        generation: Option<u64>,
        #[arg(long, default_value = "on-stop")]
        kind: SnapshotKind,
        #[arg(long)]
        pin: bool,
    },
    /// Delete a volume and its folder.
    Delete { volume: String },
}

pub fn run(args: Args) -> Result<()> {
    let r = &args.repo;
    let state = r.state()?;
    let volumes = LocalVolumes::new(&state, r.opener(true)?)
        .with_context(|| format!("cannot prepare the state folder {}", state.root().display()))?;
    match args.command {
        Command::Create { claim, generation, from, adopt } => {
            let source = match (from, adopt) {
                (None, _) => VolumeSource::Empty,
                (Some(s), None) => VolumeSource::Snapshot(SnapshotId(s)),
                (Some(s), Some(v)) => VolumeSource::AdoptOrRestore { volume: VolumeId(v), snapshot: SnapshotId(s) },
            };
            let info = volumes.create_blocking(&claim, generation.map(Generation), &source)?;
            if r.json {
                return print_json(&info);
            }
            let how = match (&info.adopted_from, &info.source_snapshot) {
                (Some(v), _) => format!("adopted from {v}"),
                (None, Some(s)) => format!("restored from snapshot {s}"),
                _ => "empty".to_owned(),
            };
            println!("volume {} for {claim} at {} ({how})", info.id, info.location);
        }
        Command::List => {
            let list = volumes.list_blocking()?;
            if r.json {
                return print_json(&list);
            }
            let mut t = Table::new(["ID", "CLAIM", "GEN", "CREATED", "SOURCE", "LOCATION"]);
            for v in &list {
                t.row([
                    v.id.to_string(),
                    v.claim.to_string(),
                    v.generation.map_or("-".into(), |g| g.to_string()),
                    v.created.to_rfc3339(),
                    v.source_snapshot.as_ref().map_or("-".into(), |s| s.0.chars().take(8).collect()),
                    v.location.clone(),
                ]);
            }
            t.print();
        }
        Command::Snapshot { volume, generation, kind, pin } => {
            let id = VolumeId(volume);
            let info = volumes
                .list_blocking()?
                .into_iter()
                .find(|v| v.id == id)
                .with_context(|| format!("no volume {id}: see `berth volume list`"))?;
            let request = SnapshotRequest {
                pinned: pin,
                ..SnapshotRequest::new(info.claim, generation.map(Generation).or(info.generation), kind)
            };
            let record = volumes.snapshot_blocking(&id, &request)?;
            if r.json {
                return print_json(&record);
            }
            println!("snapshot {} of volume {id}", record.id);
        }
        Command::Delete { volume } => {
            volumes.delete_blocking(&VolumeId(volume.clone()))?;
            if r.json {
                return print_json(&serde_json::json!({ "deleted": volume }));
            }
            println!("volume {volume} deleted");
        }
    }
    Ok(())
}
