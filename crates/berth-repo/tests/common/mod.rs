//! Helpers shared by the integration tests: temporary repositories, volume
//! data made on the spot, and a comparable digest of a directory tree.

#![allow(dead_code)] // each test binary uses a different part

use std::{
    collections::BTreeMap,
    fs,
    io::Write,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
};

use berth_repo::{Progress, Repo, SnapshotKind, SnapshotMeta};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

pub const PASSWORD: &str = "correct horse battery staple";

/// A fresh repository in a temporary folder.
pub fn new_repo() -> (TempDir, Repo) {
    let dir = tempfile::tempdir().unwrap();
    let repo = open(dir.path());
    (dir, repo)
}

pub fn open(path: &Path) -> Repo {
    Repo::open_or_init(path.to_str().unwrap(), PASSWORD, Progress::Hidden).unwrap()
}

pub fn meta(claim: &str) -> SnapshotMeta {
    SnapshotMeta::new(claim, SnapshotKind::OnStop)
}

/// Writes `len` pseudo-random (incompressible) bytes from `seed`.
pub fn write_random(path: &Path, len: usize, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut file = fs::File::create(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len());
        rng.fill(&mut buf[..n]);
        file.write_all(&buf[..n]).unwrap();
        left -= n;
    }
}

/// Total size of the files under `dir`.
pub fn disk_usage(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                total += meta.len();
            }
        }
    }
    total
}

/// Everything a restore must reproduce about one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: &'static str,
    pub mode: u32,
    pub size: u64,
    pub mtime_ns: i128,
    pub content: String,
    pub link: Option<PathBuf>,
}

/// Entry by path (relative to `root`), not following symlinks. The root
/// itself is left out: its metadata is the caller's.
pub fn digest(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let ft = meta.file_type();
            let (kind, content, link) = if ft.is_symlink() {
                ("symlink", String::new(), Some(fs::read_link(&path).unwrap()))
            } else if ft.is_dir() {
                stack.push(path.clone());
                ("dir", String::new(), None)
            } else {
                let data = fs::read(&path).unwrap();
                ("file", hex(&Sha256::digest(&data)), None)
            };
            out.insert(
                rel,
                Entry {
                    kind,
                    mode: meta.permissions().mode() & 0o7777,
                    size: if ft.is_dir() { 0 } else { meta.len() },
                    mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
                    content,
                    link,
                },
            );
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The pack files of a local repository, largest first.
pub fn packs(repo_dir: &Path) -> Vec<PathBuf> {
    let mut packs = Vec::new();
    for sub in fs::read_dir(repo_dir.join("data")).unwrap() {
        for pack in fs::read_dir(sub.unwrap().path()).unwrap() {
            packs.push(pack.unwrap().path());
        }
    }
    packs.sort_by_key(|p| std::cmp::Reverse(fs::metadata(p).unwrap().len()));
    packs
}
