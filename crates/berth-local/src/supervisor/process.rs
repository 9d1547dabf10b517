//! Child processes: what a task runs, with which environment, and how it is
//! signalled.
//!
//! A task's process is the leader of its own process group, so a signal to
//! the group reaches whatever it started too. On Linux it also asks the
//! kernel for SIGKILL when its parent dies (`PR_SET_PDEATHSIG`): a killed
//! supervisor must not leave tasks writing to volumes that a replacement
//! will be restored onto. The kernel ties that signal to the thread that
//! forked the child, hence the spawner thread (see `spawner`). It reaches
//! the task's own process only: what the task started outlives a killed
//! supervisor until the next one starts and kills it (see `leftovers`); a
//! stop or an exit of the task kills its whole group at once.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;
use std::process::{ExitStatus, Stdio};

use berth_core::ports::VolumeInfo;
use berth_core::{LaunchRequest, TaskArn, TaskDefinition};
use tokio::process::{Child, Command};

use super::config::SupervisorConfig;

/// The argv a definition runs: its command, or `<berth> serve` when it has none.
pub(crate) fn argv(config: &SupervisorConfig, definition: &TaskDefinition) -> Vec<String> {
    if definition.command.is_empty() {
        vec![config.program.to_string_lossy().into_owned(), "serve".into()]
    } else {
        definition.command.clone()
    }
}

/// A task's environment: the inherited variables, `BERTH_LISTEN`, the
/// definition's variables, then the ones berth sets (which win).
pub(crate) fn task_env(
    config: &SupervisorConfig,
    request: &LaunchRequest,
    volume: &VolumeInfo,
    arn: &TaskArn,
    port: u16,
) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> =
        config.inherit_env.iter().filter_map(|k| Some((k.clone(), std::env::var(k).ok()?))).collect();
    env.insert("BERTH_LISTEN".into(), config.listen_host.to_string());
    env.extend(request.definition.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    if let Some(admin) = &config.admin_url {
        env.entry("BERTH_PEERS_URL".into()).or_insert_with(|| format!("{admin}/v1/services/{}/peers", request.service));
    }
    set_task_vars(&mut env, request, arn, &volume.location, port);
    env
}

/// The variables berth sets in every task (process or container), over
/// what the definition set: where its volume is, its port, who it is.
pub(crate) fn set_task_vars(
    env: &mut BTreeMap<String, String>,
    request: &LaunchRequest,
    arn: &TaskArn,
    storage: &str,
    port: u16,
) {
    env.insert("STORAGE_PATH".into(), storage.to_owned());
    env.insert("PORT".into(), port.to_string());
    env.insert("BERTH_TASK_ARN".into(), arn.0.clone());
    env.insert("BERTH_CLAIM".into(), request.claim.to_string());
    env.insert("BERTH_GENERATION".into(), request.generation.to_string());
}

/// Opens a task's log file for appending, creating its folder.
pub(crate) fn open_log(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

/// A command for `argv` with exactly `env`, stdin closed, in a new process
/// group, dying with the supervisor on Linux.
pub(crate) fn command(argv: &[String], env: &BTreeMap<String, String>) -> io::Result<Command> {
    let (program, args) =
        argv.split_first().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the command is empty"))?;
    let mut cmd = Command::new(program);
    cmd.args(args).env_clear().envs(env).stdin(Stdio::null()).process_group(0);
    #[cfg(target_os = "linux")]
    {
        let parent = std::process::id();
        // SAFETY: the closure runs between fork and exec and calls only
        // async-signal-safe functions (prctl, getppid).
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The parent may have died before prctl: then nobody will
                // signal us. (No allocation here: this runs after fork.)
                if libc::getppid() as u32 != parent {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
    }
    Ok(cmd)
}

/// Spawns a task's process with its output appended to `log`.
pub(crate) fn spawn(argv: &[String], env: &BTreeMap<String, String>, log: File) -> io::Result<Child> {
    let mut cmd = command(argv, env)?;
    cmd.stdout(log.try_clone()?).stderr(log).kill_on_drop(false);
    cmd.spawn()
}

/// Sends `signal` to the process group led by `pgid`; a group that is gone
/// is not an error.
pub(crate) fn signal_group(pgid: Option<u32>, signal: libc::c_int) {
    let Some(pgid) = pgid.and_then(|p| libc::pid_t::try_from(p).ok()).filter(|p| *p > 1) else {
        return;
    };
    // SAFETY: kill has no memory-safety preconditions.
    if unsafe { libc::kill(-pgid, signal) } != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ESRCH) {
            tracing::warn!(pgid, signal, error = %err, "cannot signal a task's process group");
        }
    }
}

/// A container exit code as ECS reports it: the code, or 128 + the signal.
pub(crate) fn exit_code(status: ExitStatus) -> i64 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => i64::from(code),
        (None, Some(signal)) => 128 + i64::from(signal),
        (None, None) => -1,
    }
}
