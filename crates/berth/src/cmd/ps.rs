//! `berth ps`: the tasks of a running `berth up`, as `docker ps` lists
//! containers.
//!
//! A task is one running incarnation of a claim (a child process locally).
//! Stopped tasks are kept by the runtime for a while; `--all` lists them too,
//! with the stop code that decides whether their claim is replaced or parked.

use anyhow::Result;
use berth_core::{Health, TaskInfo};
use berth_local::admin::TaskView;
use chrono::Utc;

use super::admin::{self, AdminArgs, Client};
use crate::output::{print_json, Table};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    admin: AdminArgs,
    /// Include stopped tasks, with their stop code.
    #[arg(long, short)]
    all: bool,
}

pub fn run(args: Args) -> Result<()> {
    let client = Client::connect(&args.admin)?;
    let mut views: Vec<TaskView> = client.get("/v1/tasks")?;
    views.retain(|v| args.all || !v.task.is_stopped());
    views.sort_by(|a, b| {
        let key = |v: &TaskView| (v.task.claim.clone(), v.task.generation, v.task.created_at);
        key(a).cmp(&key(b))
    });
    if args.admin.json {
        return print_json(&views);
    }
    let now = Utc::now();
    let mut table = Table::new(["TASK", "CLAIM", "GEN", "STATUS", "HEALTH", "ENDPOINT", "PID", "AGE"]);
    for v in &views {
        let t = &v.task;
        table.row([
            admin::short_id(&t.arn.0).to_owned(),
            admin::or_dash(t.claim.as_ref()),
            admin::or_dash(t.generation),
            status(t),
            health(t).to_owned(),
            admin::or_dash(t.endpoint.as_ref()),
            admin::or_dash(v.pid),
            admin::age(now, t.started_at.unwrap_or(t.created_at)),
        ]);
    }
    table.print();
    Ok(())
}

/// The last status, with the stop code once stopped: `STOPPED (SpotInterruption)`.
fn status(t: &TaskInfo) -> String {
    match (&t.stop_code, t.is_stopped()) {
        (Some(code), true) => format!("{} ({})", t.last_status.as_str(), code.as_str()),
        _ => t.last_status.as_str().to_owned(),
    }
}

fn health(t: &TaskInfo) -> &'static str {
    if !t.has_health_check || t.is_stopped() {
        return "-";
    }
    match t.health {
        Health::Unknown => "unknown",
        Health::Healthy => "healthy",
        Health::Unhealthy => "unhealthy",
    }
}
