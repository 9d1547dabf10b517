//! How the CLI finds a running `berth up`: `<state>/admin.json` (address
//! and pid) and `<state>/admin.token` (0600), both written whole through a
//! temporary file and removed when the platform exits.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::state::StateDir;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AdminInfo {
    pub url: String,
    pub pid: u32,
    pub started_at: DateTime<Utc>,
}

/// The discovery files of one running platform; removed on drop.
pub struct Discovery {
    files: Vec<PathBuf>,
}

fn write_whole(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// `bytes` random bytes in hex, from the kernel's randomness (fastrand,
/// which is no CSPRNG, only where /dev/urandom cannot be read).
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    for b in &mut raw {
        *b = fastrand::u8(..);
    }
    if let Ok(mut urandom) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = urandom.read_exact(&mut raw);
    }
    hex::encode(raw)
}

impl Discovery {
    /// Writes a new token and the address; returns the token.
    pub fn publish(state: &StateDir, info: &AdminInfo) -> std::io::Result<(Self, String)> {
        let token = random_hex(32);
        write_whole(&state.admin_token(), token.as_bytes(), 0o600)?;
        write_whole(&state.admin(), &serde_json::to_vec_pretty(info)?, 0o644)?;
        Ok((Self { files: vec![state.admin(), state.admin_token()] }, token))
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}
