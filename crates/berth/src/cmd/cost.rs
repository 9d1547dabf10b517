//! `berth cost`: what a berth deployment on AWS costs a month.
//!
//! The blog's estimate (two tasks of 0.25 vCPU / 512 MiB on Fargate, their
//! gp3 volumes) recomputed from the dated price table that ships with
//! berth, for any task count, task size, volume, snapshot retention and
//! region in the table, with the parts of the stack the blog's table leaves
//! out priced beside it. Nothing is asked of AWS.

use std::path::PathBuf;

use anyhow::{Context, Result};
use berth_core::cost::{blog_note, estimate, CostInputs, PriceTable};
use serde_json::json;

use crate::output::{print_json, Table};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// AWS region (must be in the price table).
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// Tasks (claims) running continuously.
    #[arg(long, default_value_t = 2)]
    tasks: u32,
    /// CPU units per task (1024 = one vCPU), as in berth.toml.
    #[arg(long, default_value_t = 256)]
    cpu: u32,
    /// Memory per task in MiB.
    #[arg(long, default_value_t = 512)]
    memory: u32,
    /// CPU architecture: x86 or arm.
    #[arg(long, default_value = "x86")]
    arch: String,
    /// Volume size per task in GiB.
    #[arg(long, value_name = "GIB", default_value_t = 10)]
    volume_gib: u32,
    /// Volume type: gp3, gp2 or io2.
    #[arg(long, default_value = "gp3")]
    volume_type: String,
    /// Provisioned IOPS (gp3 above 3,000 is charged; io2 always).
    #[arg(long)]
    iops: Option<u32>,
    /// gp3 throughput in MB/s (above 125 is charged).
    #[arg(long, value_name = "MBPS")]
    throughput: Option<u32>,
    /// Data on each volume in GiB, for the snapshots' full copy (default: the whole volume).
    #[arg(long, value_name = "GIB")]
    used_gib: Option<f64>,
    /// Data changed on a volume between two kept snapshots, in GiB.
    #[arg(long, value_name = "GIB", default_value_t = 0.0)]
    change_gib: f64,
    /// Snapshots kept per claim (retention keep-last).
    #[arg(long, value_name = "N", default_value_t = 1)]
    keep: u32,
    /// NAT gateways (berth's stack has one; the blog's CDK VPC default is one per AZ, 3).
    #[arg(long, value_name = "N", default_value_t = 1)]
    nat: u32,
    /// Hours in a month (default: the table's, 730 as in AWS's calculator).
    #[arg(long)]
    hours: Option<f64>,
    /// Use this price table (JSON, the shape of berth's own) instead of the built-in one.
    #[arg(long, value_name = "FILE")]
    prices: Option<PathBuf>,
    /// Print the estimate as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let table = match &args.prices {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the price table {}", path.display()))?;
            PriceTable::parse(&text).with_context(|| path.display().to_string())?
        }
        None => PriceTable::builtin(),
    };
    let inputs = CostInputs {
        region: args.region.clone(),
        tasks: args.tasks,
        cpu: args.cpu,
        memory_mib: args.memory,
        arch: args.arch.clone(),
        volume_gib: args.volume_gib,
        volume_type: args.volume_type.clone(),
        iops: args.iops,
        throughput_mbps: args.throughput,
        used_gib: args.used_gib,
        change_gib: args.change_gib,
        snapshots_kept: args.keep,
        nat_gateways: args.nat,
        alb_lcu: 1.0,
        hours_per_month: args.hours,
    };
    let e = estimate(&inputs, &table)?;
    let blogs = inputs.region == "us-east-1" && inputs.tasks == 2 && inputs.cpu == 256 && inputs.memory_mib == 512;
    let note = if blogs { blog_note(&table) } else { None };
    if args.json {
        return print_json(
            &json!({ "estimate": e, "inputs": inputs, "blog_note": note, "prices_source": table.source }),
        );
    }
    println!(
        "monthly estimate, {} ({} h a month; prices of {}, {})",
        e.region, e.hours_per_month, e.prices_date, e.currency
    );
    let mut t = Table::new(["CATEGORY", "MONTHLY", "IN THE BLOG'S TABLE", "HOW"]);
    for item in &e.items {
        let blog = if item.in_blog { "yes" } else { "no" };
        t.row([item.category.clone(), format!("${:.2}", item.monthly), blog.into(), item.detail.clone()]);
    }
    t.row(["total of the blog's lines".into(), format!("${:.2}", e.blog_lines_total), String::new(), String::new()]);
    t.row(["total".into(), format!("${:.2}", e.total), String::new(), String::new()]);
    t.print();
    if let Some(note) = note {
        println!("\n{note}");
    }
    println!("\nPrices: {}", table.source);
    Ok(())
}
