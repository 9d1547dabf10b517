//! `berth up`: run the whole platform on this machine until `berth down`,
//! SIGTERM or Ctrl-C, which park every claim with a snapshot first.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use berth_core::controller::ControllerError;
use berth_local::admin::{self, AdminInfo, Discovery};
use berth_local::lb::LoadBalancer;
use berth_local::platform::{Config, Platform, PlatformError};
use berth_local::{LocalVolumes, StateDir};
use berth_repo::{Progress, Repo};
use chrono::Utc;

use super::repo::RepoArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Settings file; every setting has the blog's default, and with no file
    /// berth up runs the blog's file service with 2 tasks.
    #[arg(long, short, env = "BERTH_CONFIG", default_value = "berth.toml", value_name = "FILE")]
    config: PathBuf,

    /// State folder: ledger, volumes, snapshot repository, task logs.
    #[arg(long, env = "BERTH_STATE", default_value = ".berth", value_name = "DIR")]
    state: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    // A config file named explicitly must exist; the default may be absent.
    let explicit =
        args.config.as_path() != std::path::Path::new("berth.toml") || std::env::var_os("BERTH_CONFIG").is_some();
    let config = Config::load(&args.config, explicit)?;
    // Everything berth up and its tasks write (volumes, uploads, the
    // ledger, logs) is readable by this user alone.
    // SAFETY: umask(2) only sets this process's file mode mask.
    unsafe { libc::umask(0o077) };
    let root = std::path::absolute(&args.state).with_context(|| format!("state folder {}", args.state.display()))?;
    let state = StateDir::new(root);
    state.ensure().with_context(|| format!("cannot create the state folder {}", state.root().display()))?;

    let location = state.repository().display().to_string();
    let password = RepoArgs::password(&state, true)?;
    let volumes = LocalVolumes::new(&state, move || Repo::open_or_init(&location, &password, Progress::Hidden))
        .context("cannot prepare the volumes folder")?;
    let program = std::env::current_exe().context("cannot find the berth binary to run tasks with")?;

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let outcome = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&config.controller.admin_listen)
            .await
            .with_context(|| format!("admin API: cannot listen on {}", config.controller.admin_listen))?;
        let url = format!("http://{}", listener.local_addr()?);
        let platform = Platform::assemble(state.clone(), config, volumes, program, Some(url.clone()))?;
        let checked = platform.preflight().await.map_err(refusal)?;
        let lb = match platform.config.lb.enabled {
            true => {
                let lb = LoadBalancer::start(platform.config.lb.lb_config(), state.root(), platform.lb_targets())
                    .await
                    .context("load balancer")?;
                let info = serde_json::json!({
                    "http": format!("http://{}", lb.http_addr()),
                    "https": lb.https_url(),
                    "cert": lb.cert_path(),
                });
                std::fs::write(state.root().join("lb.json"), serde_json::to_vec_pretty(&info)?)?;
                eprintln!(
                    "berth up: load balancer {} (HTTP {} redirects); certificate {} (curl --cacert it)",
                    lb.https_url(),
                    lb.http_addr(),
                    lb.cert_path().display()
                );
                Some(lb)
            }
            false => None,
        };
        let info = AdminInfo { url: url.clone(), pid: std::process::id(), started_at: Utc::now() };
        let (discovery, token) = Discovery::publish(&state, &info).context("cannot write the admin API's address")?;
        let app = admin::router(Arc::clone(&platform), token, lb.as_ref().map(LoadBalancer::view));
        let server = tokio::spawn(async move { axum::serve(listener, app).await });

        let signals = Arc::clone(&platform);
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("stopping: parking every claim with a snapshot");
            signals.request_down();
            // A second signal means now: the tasks die with this process,
            // and the next start snapshots and adopts their volumes.
            wait_for_signal().await;
            eprintln!("berth up: a second signal: exiting without waiting for the last snapshots");
            std::process::exit(130);
        });
        eprintln!(
            "berth up: {} service(s), state folder {}, admin API {url}",
            platform.config.services.len(),
            state.root().display()
        );
        let outcome = platform.run(checked).await;
        if let Some(lb) = lb {
            lb.shutdown().await;
        }
        let _ = std::fs::remove_file(state.root().join("lb.json"));
        server.abort();
        drop(discovery);
        outcome?;
        eprintln!("berth up: every claim parked with a snapshot; `berth up` brings them back");
        Ok(())
    });
    // A copy or snapshot still running on a blocking thread (given up on
    // by down_timeout) must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    outcome
}

/// Says what to do about a ledger that is behind its volumes and snapshots.
fn refusal(e: PlatformError) -> anyhow::Error {
    match e {
        PlatformError::Controller(ControllerError::LedgerBehind(behind)) => anyhow::anyhow!(
            "{behind}. Nothing was started. `berth ledger rebuild` rebuilds it from them (`--dry-run` shows the plan)"
        ),
        e => e.into(),
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
