//! berth-files: the workload of berth, an HTTP file service on a task's volume.
//!
//! It is the blog's Flask app (upload, list, download, health) rebuilt so that
//! nothing a client sends can lose data or escape the volume: names are single
//! path segments, uploads are atomic and durable before they are answered,
//! sizes and capacity are limited, slow clients time out, and several tasks
//! can present their volumes as one namespace (cluster mode).
//!
//! Before a scheduled snapshot of the volume, a backup job can *quiesce* the
//! service: `POST /v1/quiesce?timeout_ms=N` (default 30 000, at most 600 000)
//! holds new uploads and deletes (they wait, they are not refused), waits for
//! those in flight to commit or abort, flushes the volume and answers
//! `{"quiesced":true,"timeout_ms":N,"in_flight_waited":K}` — or 503 if the
//! writes in flight did not end within N ms, and then holds nothing.
//! `POST /v1/resume` answers `{"resumed":true|false}` and lets the held
//! writes in; without it they resume on their own N ms after the quiesce
//! answered. Reads and `/health` are never held. See `quiesce.rs`.
//!
//! Entry point: [`serve`] with a [`ServeConfig`].

mod app;
mod cluster;
mod config;
mod error;
mod handlers;
mod health;
mod index;
mod metrics;
mod name;
mod quiesce;
mod read_ahead;
mod server;
mod volume;

pub use config::{PeerSource, ServeConfig};
pub use name::{FileName, NameError};
pub use server::{serve, ServeError};
