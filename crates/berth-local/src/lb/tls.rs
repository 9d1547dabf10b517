//! The HTTPS listener's certificate: the user's PEM files, or a self-signed
//! one the load balancer makes once and keeps in the state folder.
//!
//! The self-signed certificate names `localhost`, `127.0.0.1` and `::1`
//! (plus `listen_host` when it is another name or address), so
//! `curl --cacert <state>/lb-cert.pem https://localhost:8443/` trusts it. It
//! is reused on every later start, so a client that trusted it once keeps
//! trusting it.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

use super::LbError;

/// File name of the self-signed certificate in the state folder.
pub const SELF_SIGNED_CERT: &str = "lb-cert.pem";
/// File name of its private key (mode 0600).
pub const SELF_SIGNED_KEY: &str = "lb-key.pem";

/// The certificate and key files in use.
#[derive(Clone, Debug)]
pub(crate) struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The user's files if given, else the self-signed pair in `state_dir`
/// (created when either file is missing).
pub(crate) fn cert_files(
    user: Option<&(PathBuf, PathBuf)>,
    state_dir: &Path,
    listen_host: &str,
) -> Result<CertFiles, LbError> {
    if let Some((cert, key)) = user {
        return Ok(CertFiles { cert: cert.clone(), key: key.clone() });
    }
    let files = CertFiles { cert: state_dir.join(SELF_SIGNED_CERT), key: state_dir.join(SELF_SIGNED_KEY) };
    if !(files.cert.is_file() && files.key.is_file()) {
        generate(&files, listen_host)?;
    }
    Ok(files)
}

/// The rustls server configuration for `files`, HTTP/1.1 only.
pub(crate) fn server_config(files: &CertFiles) -> Result<Arc<ServerConfig>, LbError> {
    let chain = read(&files.cert)?;
    let chain = CertificateDer::pem_slice_iter(&chain)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| LbError::Pem { path: files.cert.clone(), message: e.to_string() })?;
    if chain.is_empty() {
        return Err(LbError::Pem { path: files.cert.clone(), message: "no certificate found".into() });
    }
    let key = read(&files.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key)
        .map_err(|e| LbError::Pem { path: files.key.clone(), message: e.to_string() })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read(path: &Path) -> Result<Vec<u8>, LbError> {
    std::fs::read(path).map_err(|source| LbError::Read { path: path.to_owned(), source })
}

fn generate(files: &CertFiles, listen_host: &str) -> Result<(), LbError> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    let unspecified = listen_host.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified());
    if !unspecified && !names.iter().any(|n| n == listen_host) {
        names.push(listen_host.to_string());
    }
    let mut params = rcgen::CertificateParams::new(names)?;
    params.distinguished_name.push(rcgen::DnType::CommonName, "berth local load balancer");
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    write(&files.key, key.serialize_pem().as_bytes(), 0o600)?;
    write(&files.cert, cert.pem().as_bytes(), 0o644)?;
    Ok(())
}

/// Writes through a temporary file and a rename, so a crash never leaves half a PEM.
fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), LbError> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| LbError::Write { path: path.to_owned(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension("pem.tmp");
    let mut file =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp).map_err(err)?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_pair_is_made_once_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let files = cert_files(None, dir.path(), "127.0.0.1").unwrap();
        let first = std::fs::read(&files.cert).unwrap();
        server_config(&files).unwrap();
        let again = cert_files(None, dir.path(), "127.0.0.1").unwrap();
        assert_eq!(std::fs::read(&again.cert).unwrap(), first);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&files.key).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_file_without_pem_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("c.pem");
        let key = dir.path().join("k.pem");
        std::fs::write(&cert, "not a certificate").unwrap();
        std::fs::write(&key, "not a key").unwrap();
        let files = cert_files(Some(&(cert, key)), dir.path(), "127.0.0.1").unwrap();
        let err = server_config(&files).unwrap_err();
        assert!(matches!(err, LbError::Pem { .. }), "{err}");
    }
}
