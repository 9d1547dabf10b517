//! Why the load balancer could not start.

use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LbError {
    /// The address is taken or not ours; another `listen_host` or port helps.
    #[error("cannot listen on {addr}: {source} (is another program using the port? set other ports in berth.toml)")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// `listen_host` plus port is not an address.
    #[error("invalid listen address {0:?}: expected an IP address or \"localhost\"")]
    Address(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A PEM file holds no usable certificate or key.
    #[error("{path}: {message} (expected PEM: a certificate chain and its private key)")]
    Pem { path: PathBuf, message: String },
    #[error("cannot generate the self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the certificate and key (for example they do not match).
    #[error("invalid certificate or key: {0}")]
    Tls(#[from] rustls::Error),
}

impl LbError {
    pub(crate) fn bind(addr: SocketAddr, source: std::io::Error) -> Self {
        Self::Bind { addr: addr.to_string(), source }
    }
}
