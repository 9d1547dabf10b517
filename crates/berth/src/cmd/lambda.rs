//! `berth lambda decide`: what the controller Lambda would do with one
//! EventBridge event, without calling AWS.
//!
//! For operators replaying an event and for tests. The event's task is read
//! as the ECS runtime reads it (`berth_core::ecs_task`: claim and generation
//! from `startedBy`), the claim and its snapshots come from the ledger given
//! (a SQLite ledger such as `berth up`'s `<state>/ledger.sqlite`; none: an
//! empty one). Then the handler's own controller handles the event, with
//! its routing (scope, redelivery, stale versions) and its executor, over
//! a copy of the ledger and ports wrapped in core's dry run
//! ([`berth_core::dry_run`]): the ledger given is only read, and the pass
//! goes up to the first AWS call, whose effect on the world is not known
//! offline. Each action it took or would take is listed, in the order the
//! executor runs them.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use berth_core::controller::{action_name, ActionObserver, Controller, ControllerError, EventOutcome, SystemClock};
use berth_core::dry_run::{DryRun, REFUSED};
use berth_core::ecs_task::task_info;
use berth_core::event::printable;
use berth_core::ledger::{ClaimRecord, Ledger};
use berth_core::ports::{PortError, VolumeInfo, Volumes};
use berth_core::reconcile::Action;
use berth_core::scope::Scope;
use berth_core::task::Runtime;
use berth_core::{TaskStateChange, VolumeId};
use berth_local::platform::Config;
use berth_local::SqliteLedger;
use chrono::Utc;
use serde::Serialize;

use crate::output::print_json;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Print what the handler would do with one EventBridge event (JSON), calling no AWS API.
    Decide(DecideArgs),
}

#[derive(Debug, clap::Args)]
struct DecideArgs {
    /// The event: an EventBridge `ECS Task State Change` as JSON; `-` reads standard input.
    #[arg(long, value_name = "FILE")]
    event: PathBuf,
    /// A SQLite ledger to read (e.g. .berth/ledger.sqlite); default: an empty ledger.
    #[arg(long, value_name = "FILE")]
    ledger: Option<PathBuf>,
    /// Only events of this cluster (name or ARN) are in scope, as the handler's EventBridge rule.
    #[arg(long)]
    cluster: Option<String>,
    /// The port the task serves on, for its load balancer target.
    #[arg(long, default_value_t = 5000)]
    port: u16,
    /// Print the decision as JSON.
    #[arg(long)]
    json: bool,
}

/// What `decide` found.
#[derive(Debug, Serialize)]
struct Verdict {
    task: String,
    claim: Option<String>,
    generation: Option<u64>,
    last_status: String,
    stop_code: Option<String>,
    /// out-of-scope | unclaimed | unknown-claim | idle | act
    outcome: &'static str,
    explanation: String,
    actions: Vec<Step>,
    requeue_after_ms: Option<u128>,
}

#[derive(Debug, Serialize)]
struct Step {
    action: String,
    detail: String,
}

pub fn run(args: Args) -> Result<()> {
    match args.command {
        Command::Decide(args) => decide(args),
    }
}

fn decide(args: DecideArgs) -> Result<()> {
    let text = if args.event.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("cannot read the event from standard input")?;
        s
    } else {
        std::fs::read_to_string(&args.event).with_context(|| format!("cannot read {}", args.event.display()))?
    };
    let event = TaskStateChange::parse_ecs(&text)
        .with_context(|| format!("{} is not an ECS task state change event", args.event.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let verdict = runtime.block_on(judge(&args, &event))?;
    if args.json {
        return print_json(&verdict);
    }
    let status = verdict.stop_code.as_deref().map(|c| format!(", {c}")).unwrap_or_default();
    println!("task {} ({}{status})", verdict.task, verdict.last_status);
    match (&verdict.claim, verdict.generation) {
        (Some(c), Some(g)) => println!("claim {c}, generation {g}"),
        (Some(c), None) => println!("claim {c}"),
        _ => {}
    }
    println!("{}: {}", verdict.outcome, verdict.explanation);
    for step in &verdict.actions {
        println!("  {:<16} {}", step.action, step.detail);
    }
    if let Some(ms) = verdict.requeue_after_ms {
        println!("then looks again in {ms} ms");
    }
    Ok(())
}

async fn judge(args: &DecideArgs, event: &TaskStateChange) -> Result<Verdict> {
    let detail = &event.detail;
    let now = Utc::now();
    let task = task_info(detail, args.port, now);
    let mut verdict = Verdict {
        task: task.arn.0.clone(),
        claim: task.claim.as_ref().map(|c| c.to_string()),
        generation: task.generation.map(|g| g.0),
        last_status: task.last_status.as_str().to_owned(),
        stop_code: task.stop_code.as_ref().map(|c| c.as_str().to_owned()),
        outcome: "idle",
        explanation: String::new(),
        actions: Vec::new(),
        requeue_after_ms: None,
    };
    if let Some(cluster) = &args.cluster {
        let scope = Scope { clusters: vec![cluster.clone()], ..Default::default() };
        if !scope.admits(detail) {
            verdict.outcome = "out-of-scope";
            verdict.explanation = format!("the task is not in cluster {cluster}: the rule would not deliver it");
            return Ok(verdict);
        }
    }
    let _empty;
    let ledger = match &args.ledger {
        Some(path) => {
            if !path.exists() {
                bail!("no ledger at {} (give a berth up state folder's ledger.sqlite, or no --ledger)", path.display());
            }
            SqliteLedger::open(path).with_context(|| format!("cannot open the ledger {}", path.display()))?
        }
        None => {
            _empty = tempfile::tempdir()?;
            SqliteLedger::open(&_empty.path().join("ledger.sqlite"))?
        }
    };
    let claims = ledger.claims().await?;
    let claim: Option<&ClaimRecord> = match &task.claim {
        Some(name) => claims.iter().find(|c| &c.name == name),
        None => claims.iter().find(|c| c.owns_task(&task.arn)),
    };
    let Some(claim) = claim else {
        match &task.claim {
            Some(name) => {
                verdict.outcome = "unknown-claim";
                verdict.explanation = format!(
                    "claim {name} is not in the ledger: the handler does nothing for this event (a resync creates \
                     claims from each service's desired count)"
                );
            }
            None => {
                verdict.outcome = "unclaimed";
                verdict.explanation = format!(
                    "not a task berth started (startedBy {}): the handler ignores it",
                    detail.started_by.as_deref().map_or_else(|| "missing".to_owned(), |s| printable(s, 128))
                );
            }
        }
        return Ok(verdict);
    };
    verdict.claim = Some(claim.name.to_string());

    // The service as the ledger knows it; the configured defaults otherwise.
    let config = Config::default();
    let mut spec = config.specs().into_iter().next().context("the default configuration has a service")?;
    spec.name = claim.service.clone();
    let record = ledger.service(&claim.service).await?;
    let world = EventWorld {
        volumes: detail
            .ebs_volume_id()
            .map(|id| VolumeInfo {
                id: VolumeId(id.to_owned()),
                claim: claim.name.clone(),
                generation: task.generation,
                created: task.created_at,
                source_snapshot: None,
                adopted_from: None,
                location: String::new(),
            })
            .into_iter()
            .collect(),
        snapshots: ledger.snapshots(None).await?,
        task,
    };
    // The handler's own controller and executor, over a copy of the
    // ledger (its writes go there) and ports that refuse every AWS call:
    // the pass goes as far as its first one.
    let scratch = tempfile::tempdir()?;
    let copy = ledger.copy_to(&scratch.path().join("ledger.sqlite")).context("cannot copy the ledger for a dry run")?;
    let scope = Scope {
        clusters: args.cluster.iter().cloned().chain(detail.cluster_arn.clone()).collect(),
        ..Default::default()
    };
    let steps = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Step>::new()));
    let seen = steps.clone();
    let observer: ActionObserver = Box::new(move |action| {
        let step = Step { action: action_name(action), detail: describe(action) };
        seen.lock().expect("steps lock").push(step);
    });
    let controller = Controller::new(
        "berth-lambda",
        DryRun::new(world.clone()),
        DryRun::new(world),
        copy,
        vec![spec],
        scope,
        Box::new(SystemClock),
    )
    .with_observer(observer);
    if let Some(record) = &record {
        controller.apply_service_record(record);
    }
    controller.refresh_snapshots().await?;
    let outcome = controller.on_event(event).await;
    verdict.actions = std::mem::take(&mut *steps.lock().expect("steps lock"));
    match outcome {
        Ok(EventOutcome::Reconciled(_, requeue)) => {
            verdict.requeue_after_ms = requeue.map(|d| d.as_millis());
            (verdict.outcome, verdict.explanation) = match verdict.actions.is_empty() {
                true => ("idle", "nothing to do for this claim now".into()),
                false => ("act", "the handler's steps; it then waits for the next event or resync".into()),
            };
        }
        Ok(EventOutcome::Stale) => {
            verdict.outcome = "stale";
            verdict.explanation =
                "the ledger has seen this event (its id) or a newer version of the task: the handler drops it".into();
        }
        Ok(EventOutcome::OutOfScope) => {
            verdict.outcome = "out-of-scope";
            verdict.explanation = "the event names no cluster: the rule would not deliver it".into();
        }
        Ok(EventOutcome::Unclaimed) => {
            verdict.outcome = "unclaimed";
            verdict.explanation = "not a task of any claim in the ledger: the handler ignores it".into();
        }
        Err(ControllerError::Port(e)) if e.message.starts_with(REFUSED) => {
            let call = verdict.actions.last().map_or_else(|| "?".to_owned(), |s| s.action.clone());
            verdict.outcome = "act";
            verdict.explanation = format!(
                "the handler's steps up to its first AWS call ({call}); it then observes the world again and goes on"
            );
        }
        Err(e) => return Err(e).context("the controller's pass failed"),
    }
    Ok(verdict)
}

/// The world as one event shows it: its task, its volume (from the task's
/// EBS attachment) and the snapshots the ledger catalogues. Read only: the
/// controller sees it through [`DryRun`], which refuses every change.
#[derive(Clone)]
struct EventWorld {
    task: berth_core::TaskInfo,
    volumes: Vec<VolumeInfo>,
    snapshots: Vec<berth_core::SnapshotRecord>,
}

/// The error of a change asked of the event's world itself (the dry run
/// refuses them first).
fn unchanged() -> PortError {
    PortError::permanent("an event's world is read only")
}

impl Runtime for EventWorld {
    type Events = berth_core::task::NoEvents;

    async fn run_task(&self, _: &berth_core::LaunchRequest) -> Result<berth_core::TaskInfo, PortError> {
        Err(unchanged())
    }

    async fn stop_task(&self, _: &berth_core::TaskArn, _: berth_core::StopCode, _: &str) -> Result<(), PortError> {
        Err(unchanged())
    }

    async fn tasks(&self) -> Result<Vec<berth_core::TaskInfo>, PortError> {
        Ok(vec![self.task.clone()])
    }

    fn subscribe(&self) -> Self::Events {
        berth_core::task::NoEvents
    }

    async fn usage(&self, _: &berth_core::TaskArn) -> Result<Option<berth_core::autoscale::UsageSample>, PortError> {
        Ok(None)
    }
}

impl Volumes for EventWorld {
    fn made_at_launch(&self) -> bool {
        true
    }

    async fn create(
        &self,
        _: &berth_core::ClaimName,
        _: Option<berth_core::Generation>,
        _: &berth_core::ports::VolumeSource,
    ) -> Result<VolumeInfo, PortError> {
        Err(unchanged())
    }

    async fn snapshot(
        &self,
        _: &VolumeId,
        _: &berth_core::snapshot::SnapshotRequest,
    ) -> Result<berth_core::SnapshotRecord, PortError> {
        Err(unchanged())
    }

    async fn delete(&self, _: &VolumeId) -> Result<(), PortError> {
        Err(unchanged())
    }

    async fn list(&self) -> Result<Vec<VolumeInfo>, PortError> {
        Ok(self.volumes.clone())
    }

    async fn snapshots(&self) -> Result<Vec<berth_core::SnapshotRecord>, PortError> {
        Ok(self.snapshots.clone())
    }

    async fn delete_snapshots(&self, _: &[berth_core::SnapshotId]) -> Result<(), PortError> {
        Err(unchanged())
    }
}

/// One line on what an action does.
fn describe(action: &Action) -> String {
    match action {
        Action::WriteClaim(c) => match &c.handoff {
            Some(h) => format!(
                "claim {} at generation {}: handoff {} ({:?}: {})",
                c.name,
                c.generation,
                h.step.as_str(),
                h.intent,
                h.intent_reason
            ),
            None => format!("claim {} at generation {}", c.name, c.generation),
        },
        Action::MarkGeneration { generation, mark } => format!("generation {generation}: {mark:?}"),
        Action::StopTask { task, code, reason } => format!("stop {} ({}: {reason})", task.short(), code.as_str()),
        Action::TakeSnapshot { volume, request } => {
            format!("snapshot {volume} for {} ({:?})", request.claim, request.kind)
        }
        Action::DeleteSnapshots(ids) => format!("forget {} snapshot(s) by retention", ids.len()),
        Action::CreateVolume { generation, source } => format!("volume for generation {generation} from {source:?}"),
        Action::RunTask(r) => format!("run {} generation {} (client token {})", r.claim, r.generation, r.client_token),
        Action::DeleteVolume(v) => format!("delete volume {v}"),
        Action::Log(e) => format!("{}: {}", e.kind, e.message),
        Action::CreateClaim(c) => format!("create claim {} of service {}", c.name, c.service),
        Action::WriteService { record, .. } => format!("service {} record", record.name),
    }
}
