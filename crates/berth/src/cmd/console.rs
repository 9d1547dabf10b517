//! `berth console`: a one-time login URL for the web console of a running
//! `berth up`.
//!
//! The console is served on the admin listener and needs the admin token.
//! Rather than ask for the token to be pasted, this command asks the admin
//! API (with the token it reads from the state folder) for a link that
//! logs a browser in once, within a minute, and prints it.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::admin::{AdminArgs, Client};
use crate::output::print_json;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    admin: AdminArgs,
}

/// The answer of `POST /v1/console/links`.
#[derive(Debug, Serialize, Deserialize)]
struct Link {
    path: String,
    expires_in_seconds: u64,
}

pub fn run(args: Args) -> Result<()> {
    let client = Client::connect(&args.admin)?;
    let link: Link = client.post("/v1/console/links", &json!({}))?;
    let url = format!("{}{}", client.info()?.url, link.path);
    if args.admin.json {
        return print_json(&json!({ "url": url, "expires_in_seconds": link.expires_in_seconds }));
    }
    println!("{url}");
    eprintln!(
        "open it within {} s; it works once (then log in again with `berth console` or the token in {})",
        link.expires_in_seconds,
        args.admin.state.join("admin.token").display()
    );
    Ok(())
}
