//! `berth aws …`: the commands that call AWS live in the `berth-aws`
//! binary (crate `berth-aws`), so that `berth` itself does not link the AWS
//! SDK; this runs it, from beside `berth` or from `PATH`, with the same
//! arguments and exit status.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true)]
pub struct Args {
    /// The `berth-aws` command and its arguments (`cleanup --cluster C …`; `--help` lists them).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// `berth-aws` beside the running `berth`, else the one on `PATH`.
fn binary() -> PathBuf {
    let beside = std::env::current_exe().ok().and_then(|p| Some(p.parent()?.join("berth-aws")));
    beside.filter(|p| p.is_file()).unwrap_or_else(|| PathBuf::from("berth-aws"))
}

/// A read of the admin API's `path` answered from the AWS ledger at `url`
/// (`berth-aws ledger get`), decoded as the admin API's answer would be.
pub fn ledger_get<T: serde::de::DeserializeOwned>(url: &str, path: &str) -> Result<T> {
    let bin = binary();
    let out = match Command::new(&bin).args(["ledger", "get", "--ledger", url, path]).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "--ledger needs the berth-aws binary, which is not beside berth nor on PATH; \
             build it with `cargo build --release -p berth-aws` (it links the AWS SDK)"
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot run {}", bin.display())),
    };
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr);
        let said = said.trim().strip_prefix("berth-aws ledger get: ").unwrap_or(said.trim());
        bail!("{said}");
    }
    serde_json::from_slice(&out.stdout).with_context(|| format!("unexpected answer of berth-aws ledger get {path}"))
}

/// Runs `berth-aws`, and exits with its exit status.
pub fn run(args: Args) -> Result<()> {
    let bin = binary();
    let status = match Command::new(&bin).args(&args.args).status() {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "berth aws needs the berth-aws binary, which is not beside berth nor on PATH; \
             build it with `cargo build --release -p berth-aws` (it links the AWS SDK)"
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot run {}", bin.display())),
    };
    std::process::exit(status.code().unwrap_or(1))
}
