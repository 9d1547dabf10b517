//! `berth up`: the whole architecture on one machine.
//!
//! One process holds the state folder's lock and runs the supervisor (tasks
//! as child processes), the directory volumes and snapshot repository, the
//! SQLite ledger, the controller, and the admin API the CLI talks to. The
//! controller is woken three ways, as on AWS: by the supervisor's ECS task
//! state change events, by per-claim timers the reconciler asks for, and by
//! a periodic resync of every claim. Stopping `berth up` (SIGTERM, Ctrl-C or
//! `berth down`) parks every claim with a snapshot before it exits, so the
//! next `berth up` brings the same data back.

mod autoscale;
mod background;
mod backup;
pub mod backup_book;
pub mod backup_report;
mod canary;
pub mod config;
mod deploy;
pub mod drill;
mod lock;
pub mod logs;
pub mod offline;
mod queue;
mod scale_file;
mod scaling;
mod shell;
mod taskdef;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use berth_core::controller::Controller;
use berth_core::fault::{CallHook, Faulty};
use berth_core::intent::DesiredState;
use berth_core::ledger::{ClaimRecord, EventRecord, Expect, Ledger};
use berth_core::scope::Scope;
use berth_core::snapshot::SnapshotId;
use berth_core::task::{Runtime, TaskEvents};
use berth_core::ClaimName;
use chrono::{DateTime, Utc};
use tokio::sync::watch;

use berth_core::controller::Due;
pub use config::{Config, ConfigError};
pub use deploy::DeployRequest;
pub use lock::StateLock;
use queue::Queue;
use shell::Local;

use crate::host::HostRuntime;
use crate::ledger::SqliteLedger;
use crate::state::StateDir;
use crate::supervisor::{leftovers, LocalRuntime, SupervisorConfig};
use crate::volumes::LocalVolumes;

/// Proof that [`Platform::preflight`] passed; only it makes one, and
/// [`Platform::run`] asks for one, so nothing starts on an unchecked ledger
/// and the check (a listing of the whole repository) runs once.
#[must_use]
pub struct Preflighted(());

/// The outcome of [`Platform::update_claim`].
enum Update {
    Written,
    Unchanged,
    Missing,
    /// Every attempt lost its compare-and-swap.
    Contended,
}

/// The controller over a local runtime and the local volumes and ledger.
/// Its ports are [`Faulty`] so the crash-point tests can stop `berth up`
/// between any two calls (no hook unless `BERTH_TEST_CRASH_BEFORE` is set).
pub type LocalController<R = LocalRuntime> =
    Controller<Faulty<Arc<R>>, Faulty<Arc<LocalVolumes>>, Faulty<Arc<SqliteLedger>>>;

#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    #[error("ledger: {0}")]
    Ledger(#[from] berth_core::LedgerError),
    #[error("controller: {0}")]
    Controller(#[from] berth_core::controller::ControllerError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no claim {0}")]
    NoClaim(ClaimName),
    #[error("claim {0} is in the middle of a handoff; try again when `berth claims` shows none")]
    Busy(ClaimName),
    #[error(
        "could not park {0} within the stop timeout and down_timeout: their volumes stay as they are, and the \
         next berth up snapshots them (see `berth events` for why the snapshots failed)"
    )]
    NotParked(String),
    #[error("no service {0}: services are the [[service]] tables of berth.toml")]
    NoService(String),
    #[error("service {0} has no replica {1}: replicas are the [[service.backup.replica]] tables of berth.toml")]
    NoReplica(String, String),
    #[error("service {0} has no [service.backup] policy in berth.toml")]
    NoBackupPolicy(String),
    #[error("claim {0} has no snapshot at or before {1}")]
    NoSnapshotAt(ClaimName, String),
    #[error("{0}")]
    Backup(String),
    #[error("claim {0} exists already; pick another name for the fork")]
    ClaimExists(ClaimName),
    #[error("service {0} is being changed by another request; try again")]
    ServiceBusy(String),
    #[error(transparent)]
    Deploy(#[from] berth_core::deploy::DeployError),
    #[error(transparent)]
    Scaling(#[from] berth_core::autoscale::PolicyError),
    #[error(transparent)]
    Host(#[from] crate::host::HostError),
}

/// The running platform, shared by its loops and the admin API; generic
/// over its runtime, so another local runtime is an adapter, not a fork of
/// the platform.
pub struct Platform<R: HostRuntime = LocalRuntime> {
    pub controller: Arc<LocalController<R>>,
    pub runtime: Arc<R>,
    pub ledger: Arc<SqliteLedger>,
    pub state: StateDir,
    pub config: Config,
    pub started_at: DateTime<Utc>,
    queue: Arc<Queue<R>>,
    /// Set to true when the platform is to park everything and exit.
    down: watch::Sender<bool>,
    /// The load balancer's targets: the running tasks of its service.
    lb_targets: watch::Sender<Vec<crate::lb::Target>>,
    /// Replica repositories, opened on first use.
    pub(crate) replicas: Arc<crate::backup::Replicas>,
    /// The latest backup, replication, verification and drill per claim.
    pub backups: backup_book::BackupBook,
    _lock: StateLock,
}

impl Platform<LocalRuntime> {
    /// Takes the state folder and assembles the platform on the process
    /// runtime (no task starts yet); `admin_url` is where the tasks find
    /// their peer list.
    pub fn assemble(
        state: StateDir,
        config: Config,
        volumes: LocalVolumes,
        program: PathBuf,
        admin_url: Option<String>,
    ) -> Result<Arc<Self>, PlatformError> {
        state.ensure()?;
        let lock = StateLock::acquire(&state)?;
        // Held the state lock: no other supervisor of this state is running,
        // so whatever its recorded task groups still hold was left behind.
        match leftovers::reap(&state.task_groups()) {
            Ok(0) => {}
            Ok(n) => tracing::warn!(killed = n, "killed processes the tasks of a previous run left behind"),
            Err(e) => tracing::warn!(error = %e, "cannot check for processes a previous run left behind"),
        }
        let mut supervisor = SupervisorConfig::new(program, state.logs());
        supervisor.cluster = config.cluster.clone();
        supervisor.admin_url = admin_url;
        supervisor.groups = Some(state.task_groups());
        let runtime = Arc::new(LocalRuntime::new(supervisor));
        Self::assemble_on(runtime, lock, state, config, volumes)
    }
}

impl<R: HostRuntime> Platform<R> {
    /// Assembles the platform on `runtime`, the state folder's lock held.
    pub fn assemble_on(
        runtime: Arc<R>,
        lock: StateLock,
        state: StateDir,
        config: Config,
        volumes: LocalVolumes,
    ) -> Result<Arc<Self>, PlatformError> {
        remove_staging(&state);
        let ledger = Arc::new(SqliteLedger::open(&state.ledger())?);
        let mut services = config.specs();
        for s in &mut services {
            if let Some(count) = scale_file::read(&state, &s.name) {
                s.desired_count = count;
            }
        }
        let scope = Scope {
            clusters: vec![config.cluster.clone()],
            services: services.iter().map(|s| s.name.clone()).collect(),
            families: Vec::new(),
        };
        // One identity per state folder: a restarted `berth up` holds the
        // leases its predecessor took and resumes at once.
        let hook = crash_point();
        let controller = Controller::new(
            "berth-up",
            Faulty::new(Arc::clone(&runtime), hook.clone()),
            Faulty::new(Arc::new(volumes), hook.clone()),
            Faulty::new(Arc::clone(&ledger), hook),
            services,
            scope,
            Box::new(berth_core::controller::SystemClock),
        )
        .with_grace(config.controller.sweep_grace);
        let controller = Arc::new(controller);
        let (down, _) = watch::channel(false);
        let (lb_targets, _) = watch::channel(Vec::new());
        let replicas = Arc::new(crate::backup::Replicas::new(state.clone()));
        let backups = backup_book::BackupBook::load(state.root().join("backups.json"));
        Ok(Arc::new(Self {
            queue: Queue::new(Arc::clone(&controller)),
            controller,
            runtime,
            ledger,
            state,
            config,
            started_at: Utc::now(),
            down,
            lb_targets,
            replicas,
            backups,
            _lock: lock,
        }))
    }

    pub async fn log(&self, kind: &str, message: impl Into<String>) {
        self.controller.log(EventRecord::new(Utc::now(), None, kind, message)).await;
    }

    /// The load balancer's view of the service's tasks.
    pub fn lb_targets(&self) -> watch::Receiver<Vec<crate::lb::Target>> {
        self.lb_targets.subscribe()
    }

    /// Publishes the running tasks of the load-balanced service as targets
    /// (a stopping task leaves the list, so the load balancer drains it).
    async fn refresh_targets(&self) {
        let service = self.config.lb_service();
        let Ok(tasks) = self.runtime.tasks().await else { return };
        // Forks (`berth fork`) take no traffic: they are copies on the side.
        let forks: Vec<ClaimName> = match self.ledger.claims().await {
            Ok(claims) => claims.into_iter().filter(|c| c.fork_of.is_some()).map(|c| c.name).collect(),
            Err(_) => return,
        };
        let mut targets: Vec<crate::lb::Target> = tasks
            .iter()
            .filter(|t| t.service.as_deref() == Some(service.as_str()))
            .filter(|t| t.claim.as_ref().is_none_or(|c| !forks.contains(c)))
            .filter(|t| t.last_status == berth_core::TaskStatus::Running)
            .filter(|t| t.desired_status == berth_core::TaskStatus::Running)
            .filter_map(|t| Some(crate::lb::Target::new(t.arn.0.clone(), t.endpoint.as_deref()?.parse().ok()?)))
            .collect();
        targets.sort_by(|a, b| a.id.cmp(&b.id));
        self.lb_targets.send_if_modified(|current| {
            let changed = *current != targets;
            if changed {
                *current = targets;
            }
            changed
        });
    }

    /// Removes task logs older than the retention, keeping running tasks' logs.
    async fn prune_logs(&self) {
        let Ok(tasks) = self.runtime.tasks().await else { return };
        let keep = tasks.iter().filter(|t| !t.is_stopped()).map(|t| t.arn.short().to_owned()).collect();
        let removed =
            logs::prune(&self.state.logs(), self.config.controller.log_retention, std::time::SystemTime::now(), &keep);
        if removed > 0 {
            tracing::info!(removed, "removed task logs past their retention");
        }
    }

    /// Asks the platform to park every claim and exit.
    pub fn request_down(&self) {
        self.down.send_replace(true);
    }

    /// Wakes every claim of the ledger.
    pub async fn wake_all(&self) -> Result<usize, PlatformError> {
        let claims = self.ledger.claims().await?;
        for c in &claims {
            self.queue.wake(c.name.clone());
        }
        Ok(claims.len())
    }

    /// Asks for a point-in-time restore of a claim: a running claim is
    /// stopped (its stop snapshot still taken, so nothing is lost) and
    /// relaunched from `snapshot`; a parked one resumes from it later.
    pub async fn restore(&self, name: &ClaimName, snapshot: &SnapshotId) -> Result<(), PlatformError> {
        let outcome = self
            .update_claim(name, |claim| {
                if claim.handoff.is_some() {
                    return Err(PlatformError::Busy(name.clone()));
                }
                if claim.task.is_some() {
                    claim.restore_to = Some(snapshot.clone());
                } else {
                    // Parked: the next launch restores the head; the old volume
                    // is no longer adopted and the sweep removes it.
                    claim.head_snapshot = Some(snapshot.clone());
                    claim.volume = None;
                }
                Ok(true)
            })
            .await?;
        match outcome {
            Update::Written => {
                let message = format!("restore to snapshot {snapshot} requested");
                self.controller.log(EventRecord::new(Utc::now(), Some(name), "restore-requested", message)).await;
                self.queue.wake(name.clone());
                Ok(())
            }
            Update::Missing => Err(PlatformError::NoClaim(name.clone())),
            Update::Unchanged | Update::Contended => Err(PlatformError::Busy(name.clone())),
        }
    }

    /// Starts a new claim `new` of `source`'s service from `snapshot`
    /// (`berth fork`), leaving `source` running as it is. The fork stands
    /// outside the service's count and load balancer; `berth down` parks it
    /// with its data, and scaling never brings it back.
    pub async fn fork(&self, source: &ClaimName, snapshot: &SnapshotId, new: &ClaimName) -> Result<(), PlatformError> {
        let from = self.ledger.claim(source).await?.ok_or_else(|| PlatformError::NoClaim(source.clone()))?;
        let fork = ClaimRecord::fork(new.clone(), &from, snapshot.clone(), Utc::now());
        match self.ledger.put_claim(&fork, Expect::Absent).await {
            Ok(_) => {}
            Err(e) if e.is_conflict() => return Err(PlatformError::ClaimExists(new.clone())),
            Err(e) => return Err(e.into()),
        }
        let message = format!("forked from {source} at snapshot {snapshot}");
        self.controller.log(EventRecord::new(Utc::now(), Some(new), "claim-forked", message)).await;
        self.queue.wake(new.clone());
        Ok(())
    }

    /// Reads a claim, lets `edit` change it (`Ok(false)`: leave it as it is)
    /// and writes it back with a compare-and-swap; a lost swap (the claim may
    /// be mid-handoff) starts over from a fresh read, up to 50 times.
    async fn update_claim(
        &self,
        name: &ClaimName,
        mut edit: impl FnMut(&mut ClaimRecord) -> Result<bool, PlatformError>,
    ) -> Result<Update, PlatformError> {
        for _ in 0..50 {
            let Some(mut claim) = self.ledger.claim(name).await? else { return Ok(Update::Missing) };
            if !edit(&mut claim)? {
                return Ok(Update::Unchanged);
            }
            claim.updated_at = Utc::now();
            let version = claim.version;
            match self.ledger.put_claim(&claim, Expect::Version(version)).await {
                Ok(_) => return Ok(Update::Written),
                Err(e) if e.is_conflict() => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Update::Contended)
    }

    /// Checks, before anything starts, that the ledger is in step with the
    /// volumes and snapshots: a deleted, emptied or older ledger is refused
    /// (see `berth_core::continuity`), so no claim restarts from nothing.
    /// The check is done once: [`Self::run`] takes the proof of it.
    pub async fn preflight(&self) -> Result<Preflighted, PlatformError> {
        let definitions: Vec<_> = self.config.services.iter().map(|s| s.definition()).collect();
        let removed = self.runtime.prepare(&definitions).await?;
        if removed > 0 {
            self.log("leftovers", format!("removed {removed} container(s) a previous run's tasks left")).await;
        }
        self.controller.refresh_snapshots().await?;
        self.controller.check_continuity().await?;
        Ok(Preflighted(()))
    }

    /// Runs until down is requested, then parks every claim and returns.
    pub async fn run(self: &Arc<Self>, _checked: Preflighted) -> Result<(), PlatformError> {
        let mut events = self.runtime.subscribe();
        self.load_services().await?;
        self.controller.scale_services().await?;
        let n = self.wake_all().await?;
        self.log("berth-up", format!("started with {n} claim(s); state folder {}", self.state.root().display())).await;

        let mut loops =
            vec![tokio::spawn(Arc::clone(self).resync_loop()), tokio::spawn(Arc::clone(self).rollout_loop())];
        loops.push(tokio::spawn(Arc::clone(self).backup_loop()));
        loops.push(tokio::spawn(Arc::clone(self).verify_loop()));
        for service in &self.config.services {
            if let Some(every) = service.background_snapshots {
                loops.push(tokio::spawn(Arc::clone(self).background_loop(service.clone(), every)));
            }
        }
        for service in self.config.services.iter().filter(|s| s.autoscaling.enabled) {
            loops.push(tokio::spawn(Arc::clone(self).autoscale_loop(service.clone())));
        }
        let mut down = self.down.subscribe();
        loop {
            tokio::select! {
                _ = down.wait_for(|d| *d) => break,
                event = events.next() => match event {
                    Some(Ok(event)) => {
                        self.route(event).await;
                        self.refresh_targets().await;
                    }
                    Some(Err(missed)) => {
                        // Level-triggered: a resync finds whatever the lost events said.
                        tracing::warn!(missed, "event stream lagged; resyncing every claim");
                        let _ = self.wake_all().await;
                    }
                    None => break,
                },
            }
        }
        for task in loops {
            task.abort();
        }
        let parked = self.park_all().await;
        self.replicate_final(self.config.controller.down_timeout).await;
        // Stopped containers are removed just after their STOPPED.
        self.runtime.settle(std::time::Duration::from_secs(10)).await;
        parked
    }

    async fn route(&self, event: berth_core::TaskStateChange) {
        match self.controller.route(&event).await {
            Ok(Ok(claim)) => self.queue.wake(claim),
            Ok(Err(outcome)) => tracing::debug!(task = %event.detail.task_arn, ?outcome, "event wakes no claim"),
            Err(e) => tracing::warn!(error = %e, "could not route a task event; the next resync covers it"),
        }
    }

    async fn resync_loop(self: Arc<Self>) {
        let mut every = tokio::time::interval(self.config.controller.resync_interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every.tick().await;
        // Core's pass, for the claims and the sweep (the deployment,
        // backup and auto scaling timers ask for their parts; see shell.rs).
        let due = Due { claims: true, sweep: true, ..Default::default() };
        loop {
            every.tick().await;
            let report = self.controller.pass(&due, &Local(&self)).await;
            for failure in &report.failed {
                tracing::warn!(error = %failure, "resync");
            }
            if report.swept_volumes + report.swept_snapshots > 0 {
                let (volumes, snapshots) = (report.swept_volumes, report.swept_snapshots);
                tracing::info!(volumes, snapshots, "sweep removed orphans");
            }
            self.refresh_targets().await;
            let _ = self.ledger.purge(Utc::now()).await;
            self.prune_logs().await;
        }
    }

    /// Parks every claim (stop, snapshot, keep the volume) and waits until
    /// no task runs and no handoff is open.
    async fn park_all(self: &Arc<Self>) -> Result<(), PlatformError> {
        let claims = self.ledger.claims().await?;
        let running = claims.iter().filter(|c| c.task.is_some() || c.handoff.is_some()).count();
        self.log("berth-down", format!("parking {running} claim(s) with a snapshot each")).await;
        for c in &claims {
            self.update_claim(&c.name, |claim| {
                let running = claim.desired == DesiredState::Running;
                claim.desired = DesiredState::Parked;
                Ok(running)
            })
            .await?;
            self.queue.wake(c.name.clone());
        }
        // Events keep flowing while claims park.
        let mut events = self.runtime.subscribe();
        let deadline = tokio::time::Instant::now() + self.park_deadline();
        // The ledger says when every claim is parked; workers still running
        // then find nothing to do. A resync every second covers lost events
        // (waking every claim more often would keep the queue forever busy).
        let mut resync = tokio::time::interval(Duration::from_secs(1));
        resync.tick().await;
        loop {
            let claims = self.ledger.claims().await?;
            let open = claims.iter().filter(|c| c.task.is_some() || c.handoff.is_some()).count();
            if open == 0 {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                let which = not_parked(&claims);
                self.log("berth-down", format!("gave up parking {which}: their volumes stay for the next start")).await;
                return Err(PlatformError::NotParked(which));
            }
            tokio::select! {
                Some(Ok(event)) = events.next() => {
                    self.route(event).await;
                    self.refresh_targets().await;
                }
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = resync.tick() => { let _ = self.wake_all().await; }
            }
        }
        let settle = tokio::time::Instant::now() + Duration::from_secs(5);
        while !self.queue.is_idle() && tokio::time::Instant::now() < settle {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.log("berth-down", "every claim parked").await;
        Ok(())
    }

    /// The tasks' longest stop timeout, then `down_timeout` for the last
    /// stop snapshots: a damaged repository must not keep berth up from
    /// ever going down.
    fn park_deadline(&self) -> Duration {
        let stop = self.config.services.iter().map(|s| s.stop_timeout).max().unwrap_or_default();
        stop + self.config.controller.down_timeout
    }
}

/// What could not be parked: each open claim with where its handoff stands.
fn not_parked(claims: &[ClaimRecord]) -> String {
    claims
        .iter()
        .filter(|c| c.task.is_some() || c.handoff.is_some())
        .map(|c| match &c.handoff {
            Some(h) => format!("{} (handoff of generation {} at {})", c.name, h.from, h.step.as_str()),
            None => format!("{} (its task has not stopped)", c.name),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `BERTH_TEST_CRASH_BEFORE=<action>[#<n>]` kills this process with SIGKILL
/// just before the controller's n-th (default first) port call of that
/// name (see [`berth_core::fault`]): the crash-point tests use it to stop
/// the controller between any two steps of a handoff.
fn crash_point() -> Option<CallHook> {
    let spec = std::env::var("BERTH_TEST_CRASH_BEFORE").ok()?;
    let (name, nth) = match spec.rsplit_once('#') {
        Some((name, n)) => (name.to_owned(), n.parse::<u32>().unwrap_or(1)),
        None => (spec, 1),
    };
    let seen = std::sync::atomic::AtomicU32::new(0);
    Some(Arc::new(move |call: &str| {
        if call == name && seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == nth {
            eprintln!("berth up: BERTH_TEST_CRASH_BEFORE={name}#{nth}: killing myself");
            // SAFETY: raising a signal at ourselves; nothing is shared.
            unsafe { libc::raise(libc::SIGKILL) };
        }
    }))
}

/// Removes volume staging folders (`.creating-*`) a crash left behind: with
/// the state lock held, no volume is being made. Their data is in the
/// snapshot they were restored from, or in the volume they were adopting.
pub(crate) fn remove_staging(state: &StateDir) {
    let Ok(entries) = std::fs::read_dir(state.volumes()) else { return };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(".creating-") {
            match std::fs::remove_dir_all(entry.path()) {
                Ok(()) => tracing::info!(path = %entry.path().display(), "removed a half-made volume left by a crash"),
                Err(e) => {
                    tracing::warn!(path = %entry.path().display(), error = %e, "cannot remove a half-made volume")
                }
            }
        }
    }
}
