//! Monthly cost of a berth deployment on AWS, from a dated price table.
//!
//! An *estimate* is a list of line items — Fargate compute, EBS volumes,
//! EBS snapshots, and the parts of the stack the blog's own table leaves
//! out (the load balancer, NAT gateways) — each a quantity times a price
//! from [`PriceTable`]. The table ships with berth (`cost/prices.json`,
//! with the date it was copied) and can be replaced by the user's own.
//! Pure arithmetic: nothing here asks AWS.
//!
//! Snapshots are incremental, as EBS bills them: each claim stores one full
//! copy of its used data plus what changed between the snapshots kept.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The price table that ships with berth.
pub const BUILTIN_PRICES: &str = include_str!("cost/prices.json");

/// Prices by region, with where they came from and when.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PriceTable {
    pub date: String,
    pub currency: String,
    pub source: String,
    /// Hours in a billing month (AWS's calculator uses 730).
    pub hours_per_month: f64,
    pub regions: BTreeMap<String, RegionPrices>,
}

/// One region's prices (on demand, Linux).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegionPrices {
    /// Per vCPU-hour, by architecture (`x86`, `arm`).
    pub fargate_vcpu_hour: BTreeMap<String, f64>,
    /// Per GB of memory-hour, by architecture.
    pub fargate_gb_hour: BTreeMap<String, f64>,
    /// Per GB-month of provisioned volume, by volume type.
    pub ebs_gb_month: BTreeMap<String, f64>,
    pub gp3_iops_month: f64,
    pub gp3_free_iops: u32,
    pub gp3_mbps_month: f64,
    pub gp3_free_mbps: u32,
    pub io2_iops_month: f64,
    pub snapshot_gb_month: f64,
    pub alb_hour: f64,
    pub alb_lcu_hour: f64,
    pub nat_hour: f64,
}

/// What is being priced (defaults: the blog's deployment).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CostInputs {
    pub region: String,
    pub tasks: u32,
    /// CPU units per task (1024 = one vCPU).
    pub cpu: u32,
    /// MiB per task.
    pub memory_mib: u32,
    pub arch: String,
    pub volume_gib: u32,
    pub volume_type: String,
    /// Provisioned IOPS (gp3 above its free 3,000, or io2's).
    pub iops: Option<u32>,
    /// gp3 throughput in MB/s (above its free 125).
    pub throughput_mbps: Option<u32>,
    /// Data on each volume, for the snapshots' first full copy (default: the whole volume).
    pub used_gib: Option<f64>,
    /// Data that changes on a volume between two kept snapshots.
    pub change_gib: f64,
    /// Snapshots kept per claim (retention).
    pub snapshots_kept: u32,
    /// NAT gateways of the VPC (the blog's VPC has private subnets in 3 AZs).
    pub nat_gateways: u32,
    /// Load balancer capacity units used on average.
    pub alb_lcu: f64,
    /// Override the table's hours per month.
    pub hours_per_month: Option<f64>,
}

impl Default for CostInputs {
    fn default() -> Self {
        Self {
            region: "us-east-1".into(),
            tasks: 2,
            cpu: 256,
            memory_mib: 512,
            arch: "x86".into(),
            volume_gib: 10,
            volume_type: "gp3".into(),
            iops: None,
            throughput_mbps: None,
            used_gib: None,
            change_gib: 0.0,
            snapshots_kept: 1,
            nat_gateways: 1,
            alb_lcu: 1.0,
            hours_per_month: None,
        }
    }
}

/// One priced line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LineItem {
    pub category: String,
    pub detail: String,
    pub monthly: f64,
    /// Whether the blog's cost table has this line.
    pub in_blog: bool,
}

/// A monthly estimate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub region: String,
    pub currency: String,
    pub prices_date: String,
    pub hours_per_month: f64,
    pub items: Vec<LineItem>,
    /// The lines the blog's table has (compute and EBS storage).
    pub blog_lines_total: f64,
    pub total: f64,
}

/// An estimate that cannot be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CostError {
    #[error("no prices for region {region}; the table ({date}) has {known}")]
    Region { region: String, date: String, known: String },
    #[error("no {what} price for {value:?} in {region}; known: {known}")]
    Missing { what: &'static str, value: String, region: String, known: String },
    #[error("{0}")]
    Invalid(String),
}

impl PriceTable {
    /// The table that ships with berth.
    pub fn builtin() -> Self {
        serde_json::from_str(BUILTIN_PRICES).expect("the built-in price table is valid JSON")
    }

    pub fn parse(text: &str) -> Result<Self, CostError> {
        serde_json::from_str(text).map_err(|e| CostError::Invalid(format!("price table: {e}")))
    }
}

fn price(map: &BTreeMap<String, f64>, key: &str, what: &'static str, region: &str) -> Result<f64, CostError> {
    map.get(key).copied().ok_or_else(|| CostError::Missing {
        what,
        value: key.to_owned(),
        region: region.to_owned(),
        known: map.keys().cloned().collect::<Vec<_>>().join(", "),
    })
}

/// Prices `inputs` with `table`.
pub fn estimate(inputs: &CostInputs, table: &PriceTable) -> Result<Estimate, CostError> {
    let r = table.regions.get(&inputs.region).ok_or_else(|| CostError::Region {
        region: inputs.region.clone(),
        date: table.date.clone(),
        known: table.regions.keys().cloned().collect::<Vec<_>>().join(", "),
    })?;
    let hours = inputs.hours_per_month.unwrap_or(table.hours_per_month);
    let positive = |x: f64| x.is_finite() && x >= 0.0;
    if !positive(hours) || hours == 0.0 || !positive(inputs.change_gib) {
        return Err(CostError::Invalid("hours and change must be positive numbers".into()));
    }
    let tasks = f64::from(inputs.tasks);
    let vcpu = f64::from(inputs.cpu) / 1024.0;
    let gb = f64::from(inputs.memory_mib) / 1024.0;
    let region = inputs.region.as_str();
    let vcpu_hour = price(&r.fargate_vcpu_hour, &inputs.arch, "Fargate vCPU", region)?;
    let gb_hour = price(&r.fargate_gb_hour, &inputs.arch, "Fargate memory", region)?;
    let mut items = vec![LineItem {
        category: "compute (Fargate)".into(),
        detail: format!("{} task(s) × ({vcpu} vCPU × ${vcpu_hour} + {gb} GB × ${gb_hour}) × {hours} h", inputs.tasks),
        monthly: tasks * (vcpu * vcpu_hour + gb * gb_hour) * hours,
        in_blog: true,
    }];

    let size = f64::from(inputs.volume_gib);
    let gb_month = price(&r.ebs_gb_month, &inputs.volume_type, "EBS volume", region)?;
    let mut storage = size * gb_month;
    let mut detail = format!("{} volume(s) × {size} GiB {} × ${gb_month}", inputs.tasks, inputs.volume_type);
    match inputs.volume_type.as_str() {
        "gp3" => {
            let extra_iops = inputs.iops.unwrap_or(r.gp3_free_iops).saturating_sub(r.gp3_free_iops);
            let extra_mbps = inputs.throughput_mbps.unwrap_or(r.gp3_free_mbps).saturating_sub(r.gp3_free_mbps);
            storage += f64::from(extra_iops) * r.gp3_iops_month + f64::from(extra_mbps) * r.gp3_mbps_month;
            if extra_iops > 0 || extra_mbps > 0 {
                detail += &format!(" + {extra_iops} IOPS and {extra_mbps} MB/s above gp3's free baseline");
            }
        }
        "io2" => {
            let iops = inputs.iops.unwrap_or(3000);
            storage += f64::from(iops) * r.io2_iops_month;
            detail += &format!(" + {iops} provisioned IOPS × ${}", r.io2_iops_month);
        }
        _ => {}
    }
    items.push(LineItem { category: "storage (EBS)".into(), detail, monthly: tasks * storage, in_blog: true });

    let used = inputs.used_gib.unwrap_or(size).clamp(0.0, size);
    let kept = inputs.snapshots_kept.max(1);
    let stored = used + f64::from(kept - 1) * inputs.change_gib;
    items.push(LineItem {
        category: "snapshots (EBS)".into(),
        detail: format!(
            "{} claim(s) × ({used} GiB full + {} × {} GiB changed) × ${}",
            inputs.tasks,
            kept - 1,
            inputs.change_gib,
            r.snapshot_gb_month
        ),
        monthly: tasks * stored * r.snapshot_gb_month,
        in_blog: false,
    });
    items.push(LineItem {
        category: "load balancer (ALB)".into(),
        detail: format!("(${} + {} LCU × ${}) × {hours} h", r.alb_hour, inputs.alb_lcu, r.alb_lcu_hour),
        monthly: (r.alb_hour + inputs.alb_lcu * r.alb_lcu_hour) * hours,
        in_blog: false,
    });
    if inputs.nat_gateways > 0 {
        items.push(LineItem {
            category: "NAT gateways".into(),
            detail: format!("{} × ${} × {hours} h, before data processing", inputs.nat_gateways, r.nat_hour),
            monthly: f64::from(inputs.nat_gateways) * r.nat_hour * hours,
            in_blog: false,
        });
    }
    let total = items.iter().map(|i| i.monthly).sum();
    let blog_lines_total = items.iter().filter(|i| i.in_blog).map(|i| i.monthly).sum();
    Ok(Estimate {
        region: inputs.region.clone(),
        currency: table.currency.clone(),
        prices_date: table.date.clone(),
        hours_per_month: hours,
        items,
        blog_lines_total,
        total,
    })
}

/// The blog's cost table (us-east-1, two tasks running continuously).
pub const BLOG_COMPUTE: f64 = 35.55;
pub const BLOG_STORAGE: f64 = 1.60;

/// What the blog's figures correspond to, for `berth cost` to say beside
/// an estimate of the blog's inputs: its compute line is not what its
/// own task size costs.
pub fn blog_note(table: &PriceTable) -> Option<String> {
    let r = table.regions.get("us-east-1")?;
    let (vcpu, gb) = (*r.fargate_vcpu_hour.get("x86")?, *r.fargate_gb_hour.get("x86")?);
    let own = 2.0 * (0.25 * vcpu + 0.5 * gb) * 720.0;
    let doubled = 2.0 * (0.5 * vcpu + 1.0 * gb) * 720.0;
    let gb_month = *r.ebs_gb_month.get("gp3")?;
    Some(format!(
        "The blog's table: compute ${BLOG_COMPUTE:.2}, EBS ${BLOG_STORAGE:.2}, total $37. Its ${BLOG_COMPUTE:.2} is \
         two tasks of 0.5 vCPU / 1 GB for 720 h (${doubled:.2}), twice what its own 0.25 vCPU / 512 MiB tasks cost \
         (${own:.2} for 720 h); its ${BLOG_STORAGE:.2} is {:.0} GB of gp3 (two 10 GiB volumes; the blog gives no \
         size). It leaves out the load balancer, the NAT gateways of its private subnets and the snapshots.",
        BLOG_STORAGE / gb_month
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cents(x: f64) -> i64 {
        (x * 100.0).round() as i64
    }

    #[test]
    fn the_blogs_deployment_and_its_own_figures() {
        let table = PriceTable::builtin();
        assert_eq!(table.date, "2026-12-02");
        let e = estimate(&CostInputs::default(), &table).unwrap();
        // 2 × (0.25 × 0.04048 + 0.5 × 0.004445) × 730 h
        assert_eq!(cents(e.items[0].monthly), 1802);
        // 2 × 10 GiB gp3 × $0.08
        assert_eq!(cents(e.items[1].monthly), 160);
        assert_eq!(cents(e.blog_lines_total), 1962);
        assert!(e.total > e.blog_lines_total, "the lines the blog leaves out cost something");
        // The blog's $35.55 is what 0.5 vCPU / 1 GB tasks cost for 720 h.
        let doubled = CostInputs { cpu: 512, memory_mib: 1024, hours_per_month: Some(720.0), ..Default::default() };
        let e = estimate(&doubled, &table).unwrap();
        assert_eq!(cents(e.items[0].monthly), cents(BLOG_COMPUTE));
        assert_eq!(cents(e.items[1].monthly), cents(BLOG_STORAGE));
        assert_eq!(e.blog_lines_total.round(), 37.0);
        let note = blog_note(&table).unwrap();
        assert!(note.contains("$17.77") && note.contains("$35.55") && note.contains("20 GB"), "{note}");
    }

    #[test]
    fn scales_with_tasks_size_volume_and_retention() {
        let table = PriceTable::builtin();
        let base = estimate(&CostInputs::default(), &table).unwrap();
        let five = estimate(&CostInputs { tasks: 5, ..Default::default() }, &table).unwrap();
        assert_eq!(cents(five.items[0].monthly), cents(base.items[0].monthly * 2.5));
        let arm = estimate(&CostInputs { arch: "arm".into(), ..Default::default() }, &table).unwrap();
        assert!(arm.items[0].monthly < base.items[0].monthly);
        // gp3 above its baseline: 6000 IOPS and 250 MB/s on 100 GiB.
        let fast = CostInputs { volume_gib: 100, iops: Some(6000), throughput_mbps: Some(250), ..Default::default() };
        let fast = estimate(&fast, &table).unwrap();
        assert_eq!(cents(fast.items[1].monthly), cents(2.0 * (100.0 * 0.08 + 3000.0 * 0.005 + 125.0 * 0.04)));
        // Retention: 7 kept, 1 GiB used, 0.5 GiB changed between them.
        let kept = CostInputs { used_gib: Some(1.0), change_gib: 0.5, snapshots_kept: 7, ..Default::default() };
        let kept = estimate(&kept, &table).unwrap();
        assert_eq!(cents(kept.items[2].monthly), cents(2.0 * (1.0 + 6.0 * 0.5) * 0.05));
    }

    #[test]
    fn unknown_region_or_type_is_one_clear_error() {
        let table = PriceTable::builtin();
        let e = estimate(&CostInputs { region: "mars-1".into(), ..Default::default() }, &table).unwrap_err();
        assert!(e.to_string().contains("us-east-1") && e.to_string().contains("2026-12-02"), "{e}");
        let e = estimate(&CostInputs { volume_type: "st1".into(), ..Default::default() }, &table).unwrap_err();
        assert!(e.to_string().contains("gp3"), "{e}");
        let bad = CostInputs { hours_per_month: Some(-1.0), ..Default::default() };
        assert!(estimate(&bad, &table).is_err());
        assert!(PriceTable::parse("{").is_err());
    }
}
