//! berth-files: the workload of berth, an HTTP file service on a task's volume.
//!
//! It is the blog's Flask app (upload, list, download, health) rebuilt so that
//! nothing a client sends can lose data or escape the volume: names are single
//! path segments, uploads are atomic and durable before they are answered,
//! sizes and capacity are limited, slow clients time out, and several tasks
//! can present their volumes as one namespace (cluster mode).
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
mod read_ahead;
mod server;
mod volume;

pub use config::{PeerSource, ServeConfig};
pub use name::{FileName, NameError};
pub use server::{serve, ServeError};
