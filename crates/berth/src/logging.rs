//! Structured logs on stderr: JSON for machines (when not on a terminal), text
//! for people; the level comes from `RUST_LOG`, by default `info` for the
//! services (`serve`) and `warn` for one-shot commands, whose results go to
//! stdout. The snapshot library's own chatter stays at `warn` either way.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Format {
    Auto,
    Json,
    Text,
}

pub fn init(format: Format, default_level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{default_level},rustic_core=warn,rustic_backend=warn")));
    let json = match format {
        Format::Auto => !std::io::stderr().is_terminal(),
        Format::Json => true,
        Format::Text => false,
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}
