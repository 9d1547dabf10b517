//! `berth cost`: the blog's estimate from the built-in price table.

use std::process::Command;

use serde_json::Value;

use crate::util::BERTH;

fn cost(args: &[&str]) -> std::process::Output {
    Command::new(BERTH).arg("cost").args(args).output().expect("run berth cost")
}

fn json(args: &[&str]) -> Value {
    let mut with = args.to_vec();
    with.push("--json");
    let out = cost(&with);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn line(v: &Value, category: &str) -> f64 {
    let items = v["estimate"]["items"].as_array().unwrap();
    items.iter().find(|i| i["category"] == category).unwrap()["monthly"].as_f64().unwrap()
}

#[test]
fn the_blogs_inputs_and_the_blogs_figure() {
    let v = json(&[]);
    assert_eq!(format!("{:.2}", line(&v, "compute (Fargate)")), "18.02");
    assert_eq!(format!("{:.2}", line(&v, "storage (EBS)")), "1.60");
    assert!(v["blog_note"].as_str().unwrap().contains("$35.55"), "{v:#}");
    // The blog's $35.55 + $1.60 = $37 is 0.5 vCPU / 1 GB tasks for 720 h.
    let v = json(&["--cpu", "512", "--memory", "1024", "--hours", "720"]);
    assert_eq!(format!("{:.2}", line(&v, "compute (Fargate)")), "35.55");
    assert_eq!(v["estimate"]["blog_lines_total"].as_f64().unwrap().round(), 37.0);
    assert!(v["blog_note"].is_null(), "the note is for the blog's own inputs");
    // A table for people, too.
    let out = cost(&[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("compute (Fargate)") && text.contains("$18.02") && text.contains("2026-12-02"), "{text}");
}

#[test]
fn bad_inputs_are_one_clear_line() {
    let out = cost(&["--region", "mars-1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no prices for region mars-1") && err.contains("us-east-1"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("prices.json");
    std::fs::write(&bad, "{not json").unwrap();
    let out = cost(&["--prices", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("price table"), "{}", String::from_utf8_lossy(&out.stderr));
}
