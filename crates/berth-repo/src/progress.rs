//! Progress display for long repository operations.
//!
//! `rustic_core` asks a [`ProgressBars`] implementation for a bar whenever a
//! phase starts (reading the index, backing up, restoring…). [`Progress`] is
//! berth's choice between none at all and indicatif bars on the terminal's
//! standard error; indicatif hides the bars by itself when stderr is not a
//! terminal, so `Terminal` is safe in scripts too.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rustic_core::{ProgressBars, ProgressType, RusticProgress};

/// How repository operations show their progress.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Progress {
    /// Show nothing (services, tests).
    #[default]
    Hidden,
    /// indicatif progress bars on standard error (the CLI).
    Terminal,
}

/// The [`ProgressBars`] handed to `rustic_core`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bars(pub(crate) Progress);

impl ProgressBars for Bars {
    fn progress(&self, progress_type: ProgressType, prefix: &str) -> rustic_core::Progress {
        match self.0 {
            Progress::Hidden => rustic_core::Progress::hidden(),
            Progress::Terminal => rustic_core::Progress::new(TerminalBar::new(progress_type, prefix)),
        }
    }
}

#[derive(Debug)]
struct TerminalBar(ProgressBar);

impl TerminalBar {
    fn new(progress_type: ProgressType, prefix: &str) -> Self {
        let template = match progress_type {
            ProgressType::Spinner => "{prefix:30} [{elapsed_precise}] {spinner}",
            ProgressType::Counter => "{prefix:30} [{elapsed_precise}] {bar:40.cyan/blue} {pos:>10}/{len:10}",
            ProgressType::Bytes => {
                "{prefix:30} [{elapsed_precise}] {bar:40.cyan/blue} {bytes:>10}/{total_bytes:10} {bytes_per_sec:12}"
            }
        };
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr())
            .with_style(ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()))
            .with_prefix(prefix.to_string());
        if matches!(progress_type, ProgressType::Spinner) {
            bar.enable_steady_tick(Duration::from_millis(100));
        }
        Self(bar)
    }
}

impl RusticProgress for TerminalBar {
    fn is_hidden(&self) -> bool {
        false
    }

    fn set_length(&self, len: u64) {
        self.0.set_length(len);
    }

    fn set_title(&self, title: &str) {
        self.0.set_prefix(title.to_string());
    }

    fn inc(&self, inc: u64) {
        self.0.inc(inc);
    }

    fn finish(&self) {
        self.0.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_bar_can_be_driven() {
        for progress in [Progress::Hidden, Progress::Terminal] {
            for kind in [ProgressType::Spinner, ProgressType::Counter, ProgressType::Bytes] {
                let bar = Bars(progress).progress(kind, "testing");
                assert_eq!(bar.is_hidden(), progress == Progress::Hidden);
                bar.set_length(10);
                bar.set_title("still testing");
                bar.inc(5);
                bar.finish();
            }
        }
    }
}
