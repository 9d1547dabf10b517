//! Desired counts set with `berth scale`, kept in `<state>/scale.json` so a
//! restart keeps them instead of going back to `berth.toml`.

use std::collections::BTreeMap;

use crate::state::StateDir;

fn path(state: &StateDir) -> std::path::PathBuf {
    state.root().join("scale.json")
}

fn read_all(state: &StateDir) -> BTreeMap<String, u32> {
    std::fs::read(path(state)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

pub fn read(state: &StateDir, service: &str) -> Option<u32> {
    read_all(state).get(service).copied()
}

/// Writes the file whole (temporary file, then rename): never half-written.
pub fn write(state: &StateDir, service: &str, count: u32) -> std::io::Result<()> {
    let mut all = read_all(state);
    all.insert(service.to_owned(), count);
    let tmp = path(state).with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&all)?)?;
    std::fs::rename(&tmp, path(state))
}
