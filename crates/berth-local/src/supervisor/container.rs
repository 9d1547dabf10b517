//! Container tasks: a task whose definition names an image runs as a
//! container of the engine (see `engine`), with the same ECS lifecycle,
//! events and health checks as a process task.
//!
//! The container gets the claim's volume folder mounted read-write at the
//! definition's mount path, owned by the user it runs as (so an image with a
//! non-root `USER` can write it); the task's CPU and memory as limits
//! (memory with no swap beyond it, as on Fargate); its port published on
//! the host's loopback at a free port (or, on the host network, the port
//! itself); labels naming its cluster, state folder, task, claim and
//! generation, so a later `berth up` finds what a killed one left (see
//! [`reap`]). Its output goes to the task's log file. A stop is the
//! engine's kill with the image's stop signal (SIGTERM unless its
//! `STOPSIGNAL` says otherwise), then SIGKILL after the stop timeout, as
//! ECS's StopTask; an exit is the essential container's exit; a kill by the
//! kernel for memory is reported as ECS reports it (`OutOfMemoryError`).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use berth_core::{ContainerSpec, HealthCheck, LaunchRequest, NetworkMode, PortError, TaskArn, TaskInfo, TaskStatus};
use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use chrono::Utc;

use super::config::SupervisorConfig;
use super::engine::{Engine, EngineError};
use super::table::Shared;
use super::{health, lifecycle, oom, process};

/// The label every container of berth carries, with the state folder it
/// belongs to: two `berth up`s on one engine never touch each other's.
pub(crate) const STATE_LABEL: &str = "berth.state";

/// ECS's reason for a container the kernel killed for memory.
pub(crate) const OOM_REASON: &str = "OutOfMemoryError: Container killed due to memory usage";

/// Why a container could not be started or cleaned up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ContainerError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("the image's /etc/passwd has no user {0:?}")]
    NoUser(String),
    #[error("cannot change the owner of the volume: {0}")]
    Chown(#[from] std::io::Error),
    #[error("cannot open the log file {}: {source}", path.display())]
    Log {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot hand volume {volume} to user {user}: {source}")]
    Owner {
        volume: String,
        user: String,
        #[source]
        source: Box<ContainerError>,
    },
}

/// What a container launch needs beyond the task's record.
pub(crate) struct Launch {
    pub arn: TaskArn,
    pub spec: ContainerSpec,
    pub name: String,
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub volume: String,
    pub container_port: u16,
    pub host_port: u16,
    pub labels: HashMap<String, String>,
    pub log_path: std::path::PathBuf,
    pub stop_timeout: Duration,
    pub health_check: Option<HealthCheck>,
    pub addr: SocketAddr,
}

/// The port the container listens on: its definition's on its own
/// network, the host port berth gave it on the host's.
pub(crate) fn container_port(spec: &ContainerSpec, definition_port: u16, host_port: u16) -> u16 {
    match spec.network {
        NetworkMode::Bridge => definition_port,
        NetworkMode::Host => host_port,
    }
}

/// A container task's environment: the definition's variables, then the
/// ones berth sets (which win). Nothing of berth up's own environment: the
/// image sets its own `PATH` and the rest.
///
/// `host_loopback` is where the host's `127.0.0.1` answers from inside a
/// container on its own network (see [`Engine::own_network`]). Through it
/// the task finds the admin API's peer list, and the list is asked to name
/// each peer by that address (`?host=`), as this task is advertised: so
/// `berth serve` answers as one namespace from containers as from processes.
pub(crate) fn task_env(
    config: &SupervisorConfig,
    request: &LaunchRequest,
    spec: &ContainerSpec,
    arn: &TaskArn,
    host_port: u16,
    host_loopback: Option<&str>,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let listen = match spec.network {
        NetworkMode::Bridge => "0.0.0.0",
        NetworkMode::Host => "127.0.0.1",
    };
    env.insert("BERTH_LISTEN".into(), listen.into());
    env.extend(request.definition.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let peers = |admin: &str| format!("{admin}/v1/services/{}/peers", request.service);
    match (&config.admin_url, spec.network, host_loopback) {
        (Some(admin), NetworkMode::Host, _) => {
            env.entry("BERTH_PEERS_URL".into()).or_insert_with(|| peers(admin));
        }
        (Some(admin), NetworkMode::Bridge, Some(host)) => {
            if let Some(admin) = via(admin, host) {
                env.entry("BERTH_PEERS_URL".into()).or_insert_with(|| format!("{}?host={host}", peers(&admin)));
                env.entry("BERTH_ADVERTISE_URL".into()).or_insert_with(|| format!("http://{host}:{host_port}"));
            }
        }
        _ => {}
    }
    let port = container_port(spec, request.definition.port, host_port);
    process::set_task_vars(&mut env, request, arn, &spec.mount_path, port);
    env
}

/// `url` (`http://ADDR:PORT`) as a container reaches it when the host's
/// loopback answers at `host`; `None` when it is not on the host's loopback.
fn via(url: &str, host: &str) -> Option<String> {
    let addr: SocketAddr = url.strip_prefix("http://")?.parse().ok()?;
    let local = addr.ip().is_loopback() || addr.ip().is_unspecified();
    local.then(|| format!("http://{host}:{}", addr.port()))
}

/// The labels of a task's container.
pub(crate) fn labels(config: &SupervisorConfig, request: &LaunchRequest, arn: &TaskArn) -> HashMap<String, String> {
    HashMap::from([
        (STATE_LABEL.to_owned(), state_scope(config)),
        ("berth.cluster".to_owned(), config.cluster.clone()),
        ("berth.task".to_owned(), arn.0.clone()),
        ("berth.claim".to_owned(), request.claim.to_string()),
        ("berth.generation".to_owned(), request.generation.to_string()),
    ])
}

/// The value of [`STATE_LABEL`] for this supervisor.
pub(crate) fn state_scope(config: &SupervisorConfig) -> String {
    config.logs.display().to_string()
}

/// Walks the task to RUNNING (or STOPPED) as a container and returns it.
pub(crate) async fn launch(shared: &Arc<Shared>, engine: &Engine, launch: Launch) -> Result<TaskInfo, PortError> {
    let arn = launch.arn.clone();
    let vanished = || PortError::retryable(format!("task {arn} vanished while starting"));
    if let Some(stopped) = shared.startup_step(&arn, TaskStatus::Pending, |r| r.pull_started_at = Some(Utc::now())) {
        return Ok(stopped);
    }
    // The image is looked up, never pulled: a missing one fails the task
    // as ECS's CannotPullContainerError, and the controller backs off.
    let image_user = match engine.image_user(&launch.spec.image).await {
        Ok(user) => user,
        Err(e) => return shared.fail_to_start(&arn, format!("CannotPullContainerError: {e}")).ok_or_else(vanished),
    };
    if let Some(stopped) = shared.startup_step(&arn, TaskStatus::Activating, |r| r.pull_stopped_at = Some(Utc::now())) {
        return Ok(stopped);
    }
    let user = launch.spec.user.clone().or(image_user);
    let started = match process::open_log(&launch.log_path) {
        Ok(log) => create_and_start(engine, &launch, user.as_deref()).await.map(|id| (id, log)),
        Err(e) => Err(ContainerError::Log { path: launch.log_path.clone(), source: e }),
    };
    let (id, log) = match started {
        Ok(started) => started,
        Err(reason) => {
            return shared.fail_to_start(&arn, format!("CannotStartContainerError: {reason}")).ok_or_else(vanished)
        }
    };
    let (pid, stop_signal) = engine.started(&id).await;
    let oom = oom::watch(pid);
    let logs = tokio::spawn({
        let (engine, id) = (engine.clone(), id.clone());
        async move { engine.follow_logs(&id, log).await }
    });
    let leaving = {
        let mut table = shared.lock();
        let Some(record) = table.tasks.get_mut(&arn) else { return Err(vanished()) };
        record.engine_id = Some(id.clone());
        record.stop_signal = stop_signal;
        record.leaving.subscribe()
    };
    let info = shared.started(&arn, pid).ok_or_else(vanished)?;
    let watcher = Watch { shared: shared.clone(), engine: engine.clone(), arn: arn.clone(), id: id.clone() };
    tokio::spawn(watcher.run(launch.stop_timeout, leaving.clone(), logs, oom, pid));
    if let Some(check) = launch.health_check {
        let target =
            health::Target { arn, check, env: launch.env, addr: launch.addr, container: Some((engine.clone(), id)) };
        tokio::spawn(health::watch(shared.clone(), target, leaving));
    }
    Ok(info)
}

/// Creates the container, hands the volume to the user it runs as, and
/// starts it; returns its id. A container that cannot start is removed.
async fn create_and_start(engine: &Engine, launch: &Launch, user: Option<&str>) -> Result<String, ContainerError> {
    let spec = &launch.spec;
    let bridge = spec.network == NetworkMode::Bridge;
    let network_mode = match spec.network {
        NetworkMode::Bridge => engine.own_network().mode,
        NetworkMode::Host => Some("host".to_owned()),
    };
    let port_key = format!("{}/tcp", launch.container_port);
    let memory = i64::from(spec.memory) * 1024 * 1024;
    let host_config = HostConfig {
        binds: Some(vec![format!("{}:{}:rw", launch.volume, spec.mount_path)]),
        memory: Some(memory),
        // No swap beyond the limit: the task is held to its size.
        memory_swap: Some(memory),
        nano_cpus: Some(i64::from(spec.cpu) * 1_000_000_000 / 1024),
        network_mode,
        port_bindings: bridge.then(|| {
            let binding = PortBinding {
                host_ip: Some(launch.addr.ip().to_string()),
                host_port: Some(launch.host_port.to_string()),
            };
            HashMap::from([(port_key.clone(), Some(vec![binding]))])
        }),
        ..Default::default()
    };
    let body = ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: (!launch.command.is_empty()).then(|| launch.command.clone()),
        entrypoint: (!spec.entry_point.is_empty()).then(|| spec.entry_point.clone()),
        env: Some(launch.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        user: spec.user.clone(),
        working_dir: spec.working_dir.clone(),
        labels: Some(launch.labels.clone()),
        exposed_ports: bridge.then(|| vec![port_key]),
        host_config: Some(host_config),
        ..Default::default()
    };
    let id = engine.create(&launch.name, body).await?;
    if let Err(e) = own_volume(engine, &id, &launch.volume, user).await {
        engine.remove(&id).await;
        let (volume, user) = (launch.volume.clone(), format!("{user:?}"));
        return Err(ContainerError::Owner { volume, user, source: Box::new(e) });
    }
    if let Err(e) = engine.start(&id).await {
        engine.remove(&id).await;
        return Err(e.into());
    }
    Ok(id)
}

/// The watcher of one container: waits for it to stop, escalates a stop
/// from SIGTERM to SIGKILL, then reports the exit and removes it.
struct Watch {
    shared: Arc<Shared>,
    engine: Engine,
    arn: TaskArn,
    id: String,
}

impl Watch {
    async fn run(
        self,
        stop_timeout: Duration,
        mut leaving: tokio::sync::watch::Receiver<bool>,
        logs: tokio::task::JoinHandle<()>,
        oom: oom::OomWatch,
        pid: Option<u32>,
    ) {
        let Self { shared, engine, arn, id } = self;
        let mut oom = oom;
        let exit = async {
            tokio::select! {
                exit = engine.wait(&id, pid) => exit,
                () = lifecycle::left(&mut leaving) => match tokio::time::timeout(stop_timeout, engine.wait(&id, pid)).await {
                    Ok(exit) => exit,
                    Err(_) => {
                        tracing::warn!(task = %arn, ?stop_timeout, "container ignored its stop signal; sending SIGKILL");
                        engine.kill(&id, "KILL").await;
                        engine.wait(&id, pid).await
                    }
                },
            }
        };
        // OOM notifications are read while the container runs.
        let exit = tokio::select! {
            exit = exit => exit,
            () = oom.follow() => unreachable!("follow never ends"),
        };
        // A kill by the kernel is a SIGKILL (137); an OOM that killed only
        // some other process of the container is not the task's end.
        let oom_killed = exit.oom_killed || (exit.code == Some(137) && oom.fired().await);
        // The log stream ends with the container: its last lines usually
        // reach the log file first. STOPPED is not held back for long (the
        // replacement waits on it); the rest is written before the removal.
        let mut logs = logs;
        let drained = tokio::time::timeout(LOG_GRACE, &mut logs).await.is_ok();
        shared.cleanups.send_modify(|n| *n += 1);
        shared.finish_as(&arn, exit.code, oom_killed.then_some(OOM_REASON));
        if !drained {
            let _ = tokio::time::timeout(Duration::from_secs(5), logs).await;
        }
        engine.remove(&id).await;
        shared.cleanups.send_modify(|n| *n -= 1);
    }
}

/// How long STOPPED waits for the end of a container's log stream.
const LOG_GRACE: Duration = Duration::from_millis(200);

/// Makes `volume` (and what is in it) owned by `user`, so a container
/// running as a non-root user can write its own volume: `uid[:gid]` by
/// number, or names looked up in the image's own `/etc/passwd` and
/// `/etc/group` (read from the created container, as the engine would).
async fn own_volume(engine: &Engine, id: &str, volume: &str, user: Option<&str>) -> Result<(), ContainerError> {
    let Some(user) = user.filter(|u| !u.is_empty()) else { return Ok(()) };
    let ids = match numeric_user(user) {
        Some(ids) => ids,
        None => {
            let passwd = engine.read_file(id, "/etc/passwd").await?;
            let group = engine.read_file(id, "/etc/group").await.unwrap_or_default();
            named_user(user, &String::from_utf8_lossy(&passwd), &String::from_utf8_lossy(&group))
                .ok_or_else(|| ContainerError::NoUser(user.to_owned()))?
        }
    };
    if ids == (0, 0) {
        return Ok(());
    }
    let volume = volume.to_owned();
    tokio::task::spawn_blocking(move || chown_tree(Path::new(&volume), ids.0, ids.1))
        .await
        .map_err(std::io::Error::other)??;
    Ok(())
}

/// `uid[:gid]` of a user given by number (gid defaults to the uid's own
/// number, as images that `useradd --uid N` get).
fn numeric_user(user: &str) -> Option<(u32, u32)> {
    let (uid, gid) = user.split_once(':').unwrap_or((user, user));
    Some((uid.parse().ok()?, gid.parse().ok()?))
}

/// `name[:group]` (either part may be a number) resolved in the image's
/// passwd and group files; the group defaults to the user's own.
fn named_user(user: &str, passwd: &str, group: &str) -> Option<(u32, u32)> {
    let (name, group_name) = match user.split_once(':') {
        Some((n, g)) => (n, Some(g)),
        None => (user, None),
    };
    let entry = |file: &str, key: &str| -> Option<Vec<String>> {
        file.lines()
            .map(|l| l.split(':').map(str::to_owned).collect::<Vec<_>>())
            .find(|f| f.first().is_some_and(|n| n == key))
    };
    let (uid, own_gid) = match name.parse::<u32>() {
        Ok(uid) => (uid, uid),
        Err(_) => {
            let fields = entry(passwd, name)?;
            (fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?)
        }
    };
    let gid = match group_name {
        None => own_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => entry(group, g)?.get(2)?.parse().ok()?,
        },
    };
    Some((uid, gid))
}

/// Hands every entry of `root` not owned by `uid:gid` to them (links
/// themselves, never what they point to).
fn chown_tree(root: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mut pending = vec![root.to_path_buf()];
    while let Some(path) = pending.pop() {
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.uid() != uid || meta.gid() != gid {
            std::os::unix::fs::lchown(&path, Some(uid), Some(gid))?;
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                pending.push(entry?.path());
            }
        }
    }
    Ok(())
}

/// Stops and removes every container a previous supervisor of this state
/// folder left (a killed `berth up`'s tasks keep running in the engine,
/// writing to volumes the next start snapshots, adopts or restores);
/// returns how many.
pub(crate) async fn reap(engine: &Engine, config: &SupervisorConfig) -> Result<usize, EngineError> {
    reap_scope(engine, &state_scope(config)).await
}

/// [`reap`] of the containers labelled with `scope`.
pub(crate) async fn reap_scope(engine: &Engine, scope: &str) -> Result<usize, EngineError> {
    let left = engine.labelled(&[(STATE_LABEL, scope)]).await?;
    for id in &left {
        tracing::warn!(container = %id, "removing a container a previous run's task left behind");
        engine.kill(id, "KILL").await;
        engine.remove(id).await;
    }
    Ok(left.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_users_give_their_ids_and_names_give_none() {
        assert_eq!(numeric_user("10001:10001"), Some((10001, 10001)));
        assert_eq!(numeric_user("999"), Some((999, 999)));
        assert_eq!(numeric_user("1000:50"), Some((1000, 50)));
        assert_eq!(numeric_user("postgres"), None);
        assert_eq!(numeric_user("1000:staff"), None);
    }

    #[test]
    fn names_are_looked_up_in_the_images_passwd_and_group() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\npostgres:x:999:998::/var/lib/postgresql:/bin/sh\n";
        let group = "root:x:0:\nstaff:x:50:\npostgres:x:998:\n";
        assert_eq!(named_user("postgres", passwd, group), Some((999, 998)));
        assert_eq!(named_user("postgres:staff", passwd, group), Some((999, 50)));
        assert_eq!(named_user("1000:staff", passwd, group), Some((1000, 50)));
        assert_eq!(named_user("postgres:7", passwd, group), Some((999, 7)));
        assert_eq!(named_user("nobody", passwd, group), None);
        assert_eq!(named_user("postgres:wheel", passwd, group), None);
    }

    #[test]
    fn the_admin_url_is_reached_through_the_hosts_loopback_only_when_it_listens_there() {
        assert_eq!(via("http://127.0.0.1:8081", "10.0.2.2").as_deref(), Some("http://10.0.2.2:8081"));
        assert_eq!(via("http://0.0.0.0:8081", "10.0.2.2").as_deref(), Some("http://10.0.2.2:8081"));
        assert_eq!(via("http://[::1]:8081", "10.0.2.2").as_deref(), Some("http://10.0.2.2:8081"));
        assert_eq!(via("http://192.0.2.7:8081", "10.0.2.2"), None);
        assert_eq!(via("https://127.0.0.1:8081", "10.0.2.2"), None);
    }
}
