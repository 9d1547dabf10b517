//! Output for people and for scripts: aligned tables, byte sizes, JSON.

use anyhow::Result;
use serde::Serialize;

/// An error and its causes on one line, each said once. A wrapper whose
/// message already holds its cause's text (thiserror's `"ledger: {0}"` on a
/// `#[from]` field, whose cause anyhow's `{:#}` prints again) would
/// otherwise repeat it ("ledger is damaged: X …: ledger is damaged: X …").
pub fn error_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json(value: &impl Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A byte count for people: 1.5 GiB.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A table with left-aligned columns, as `docker ps` prints them.
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<const N: usize>(header: [&str; N]) -> Self {
        Self { rows: vec![header.iter().map(|h| h.to_string()).collect()] }
    }

    pub fn row<const N: usize>(&mut self, cells: [String; N]) {
        self.rows.push(cells.to_vec());
    }

    pub fn print(&self) {
        let cols = self.rows[0].len();
        let widths: Vec<usize> =
            (0..cols).map(|c| self.rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
        for r in &self.rows {
            let line: Vec<String> = r.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
            println!("{}", line.join("  ").trim_end());
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_error_whose_message_holds_its_cause_says_it_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("ledger is damaged: {0}")]
        struct Damaged(String);
        #[derive(Debug, thiserror::Error)]
        enum Platform {
            #[error("ledger: {0}")]
            Ledger(#[from] Damaged),
        }
        let err = anyhow::Error::from(Platform::from(Damaged("x.sqlite".into()))).context("berth up");
        assert_eq!(super::error_line(&err), "berth up: ledger: ledger is damaged: x.sqlite");
        let plain = anyhow::anyhow!("no space").context("writing the ledger");
        assert_eq!(super::error_line(&plain), "writing the ledger: no space");
    }

    #[test]
    fn bytes() {
        assert_eq!(super::bytes(512), "512 B");
        assert_eq!(super::bytes(1536), "1.5 KiB");
        assert_eq!(super::bytes(3 << 30), "3.0 GiB");
    }
}
