//! `berth scale SERVICE N`: set how many claims of a service run.
//!
//! The desired count is the number of claims of the service that should
//! have a task. Scaling in parks the highest claims with their snapshots
//! (their data stays); scaling out resumes parked claims before it creates
//! new ones. The autoscaler may change the count again within its bounds.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::admin::{self, AdminArgs, Client};
use crate::output::print_json;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    admin: AdminArgs,
    /// The service, as named in berth.toml.
    service: String,
    /// Its new desired count.
    count: u32,
}

/// The answer of `POST /v1/services/{name}/scale`.
#[derive(Debug, Serialize, Deserialize)]
struct Scaled {
    service: String,
    desired_count: u32,
}

pub fn run(args: Args) -> Result<()> {
    let client = Client::connect(&args.admin)?;
    let path = format!("/v1/services/{}/scale", admin::encode(&args.service));
    let scaled: Scaled = client.post(&path, &json!({ "count": args.count }))?;
    if args.admin.json {
        return print_json(&scaled);
    }
    println!("service {}: desired count {}", scaled.service, scaled.desired_count);
    Ok(())
}
