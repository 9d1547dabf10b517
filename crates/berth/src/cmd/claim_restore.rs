//! `berth restore CLAIM`: bring a claim of a running `berth up` back to an
//! earlier snapshot.
//!
//! The snapshot is named by id (`--snapshot`) or by time (`--at`: the
//! newest snapshot of the claim taken at or before that time, which `berth
//! up` picks). The time is RFC 3339 or a span ago such as `10m` or `2h30m`.
//! With `--from REPLICA` the snapshot comes from a replica of the service's
//! backup policy, copied back into the primary first.

use std::time::Duration;

use anyhow::Result;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::admin::{self, AdminArgs, Client};
use crate::output::print_json;

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["snapshot", "at"])))]
pub struct Args {
    #[command(flatten)]
    admin: AdminArgs,
    /// The claim, e.g. web-0.
    claim: berth_core::ClaimName,
    /// The snapshot id (as `berth claim history` shows it).
    #[arg(long, value_name = "ID")]
    snapshot: Option<String>,
    /// The claim's newest snapshot at this time: RFC 3339
    /// (2024-05-01T12:00:00Z) or a span ago (10m, 2h30m, "1h ago").
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// Take the snapshot from this replica (with --at): for a snapshot the
    /// primary no longer has, or a primary repository that was lost.
    #[arg(long, value_name = "REPLICA", requires = "at")]
    from: Option<String>,
}

/// The answer of `POST /v1/claims/{name}/restore`.
#[derive(Debug, Serialize, Deserialize)]
struct Restored {
    claim: String,
    snapshot: String,
}

pub fn run(args: Args) -> Result<()> {
    let body = match (&args.snapshot, &args.at) {
        (Some(id), _) => json!({ "snapshot": id }),
        (None, Some(at)) => {
            let at = parse_at(at, Utc::now()).map_err(anyhow::Error::msg)?;
            json!({ "at": at.to_rfc3339_opts(SecondsFormat::AutoSi, true), "from": args.from })
        }
        (None, None) => unreachable!("clap requires --snapshot or --at"),
    };
    let client = Client::connect(&args.admin)?;
    let path = format!("/v1/claims/{}/restore", admin::encode(args.claim.as_str()));
    let restored: Restored = client.post_slow(&path, &body, super::backup::CHECK_TIMEOUT)?;
    if args.admin.json {
        return print_json(&restored);
    }
    println!("claim {}: restoring from snapshot {}", restored.claim, admin::short_snapshot(&restored.snapshot));
    Ok(())
}

/// A time given as RFC 3339, or as a span before `now` (`10m`, `1h ago`).
pub fn parse_at(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let t = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(t) {
        return Ok(at.with_timezone(&Utc));
    }
    let span = t.strip_suffix("ago").unwrap_or(t).trim();
    let ago: Duration = humantime::parse_duration(span).map_err(|_| {
        format!("--at '{text}' is neither an RFC 3339 time (2024-05-01T12:00:00Z) nor a span ago (10m, 2h30m)")
    })?;
    chrono::Duration::from_std(ago)
        .ok()
        .and_then(|d| now.checked_sub_signed(d))
        .ok_or_else(|| format!("--at '{text}' is too far in the past"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_absolute_and_relative() {
        let now: DateTime<Utc> = "2024-05-01T12:00:00Z".parse().unwrap();
        assert_eq!(parse_at("2024-05-01T11:00:00Z", now).unwrap(), now - chrono::Duration::hours(1));
        assert_eq!(parse_at("2024-05-01T13:00:00+02:00", now).unwrap(), now - chrono::Duration::hours(1));
        assert_eq!(parse_at("10m", now).unwrap(), now - chrono::Duration::minutes(10));
        assert_eq!(parse_at("2h30m", now).unwrap(), now - chrono::Duration::minutes(150));
        assert_eq!(parse_at("1h ago", now).unwrap(), now - chrono::Duration::hours(1));
        assert!(parse_at("yesterday", now).unwrap_err().contains("neither"));
        assert!(parse_at("", now).is_err());
    }
}
