//! Volume fingerprints: has a folder changed since a snapshot was taken of it?
//!
//! The fast path of a same-host replacement adopts the stopped task's volume
//! by rename instead of restoring it, but only if the folder is exactly what
//! its stop snapshot holds. That is *checked, not assumed*: a fingerprint is a
//! SHA-256 over every entry's path, type, mode, size, inode, and modification
//! and change times (and a link's target), in name order. Any write, rename,
//! chmod or utime changes the change time (ctime), which no unprivileged
//! process can set back, so an equal fingerprint means an unchanged tree. It
//! costs one `lstat` per entry: proportional to the file count, not the bytes.

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

/// Names the fingerprint's layout: a seal written with another layout never
/// matches, so the volume is restored instead of adopted, which is safe.
const LAYOUT: &[u8] = b"berth-fingerprint-v2\0";

/// The fingerprint of the tree below `root` (the root folder's own times are
/// left out: renaming the volume into place changes them).
///
/// Folders are read in parallel: the `lstat`s are the whole cost, and the
/// same-host adopt that waits for them is on a replacement's critical path.
/// Each folder gets a digest of its own entries; the fingerprint is the
/// digest of every folder's relative path and digest, in path order, so it
/// does not depend on which thread read what.
pub fn fingerprint(root: &Path) -> io::Result<String> {
    let mut hasher = Sha256::new();
    hasher.update(LAYOUT);
    for (rel, digest) in digests(root, PathBuf::new())? {
        // Paths hold no NUL byte, so path and digest cannot run together.
        hasher.update(rel.as_os_str().as_bytes());
        hasher.update([0]);
        hasher.update(digest);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The digests of `dir` and of every folder below it, with their paths
/// relative to the volume, in path order: a folder before its subfolders,
/// which come in name order, whichever thread read them.
fn digests(dir: &Path, rel: PathBuf) -> io::Result<Vec<(PathBuf, [u8; 32])>> {
    let mut subdirs = Vec::new();
    let digest = digest_dir(dir, &rel, |sub, sub_rel| subdirs.push((sub, sub_rel)))?;
    let below: Vec<_> =
        subdirs.into_par_iter().map(|(sub, sub_rel)| digests(&sub, sub_rel)).collect::<io::Result<_>>()?;
    let mut all = vec![(rel, digest)];
    all.extend(below.into_iter().flatten());
    Ok(all)
}

/// The digest of one folder's entries (name, type, mode, size, inode,
/// mtime, ctime, a link's target), in name order; `subdir` is called for
/// every folder in it.
fn digest_dir(dir: &Path, rel: &Path, mut subdir: impl FnMut(PathBuf, PathBuf)) -> io::Result<[u8; 32]> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(fs::DirEntry::file_name);
    let mut hasher = Sha256::new();
    for entry in entries {
        let meta = entry.metadata()?; // lstat: links are not followed
        let name = entry.file_name();
        hasher.update(name.as_bytes());
        hasher.update([0]);
        let fields = [
            meta.mode() as i64,
            meta.size() as i64,
            meta.ino() as i64,
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ctime(),
            meta.ctime_nsec(),
        ];
        for f in fields {
            hasher.update(f.to_le_bytes());
        }
        let kind = meta.file_type();
        if kind.is_symlink() {
            hasher.update(fs::read_link(entry.path())?.as_os_str().as_bytes());
            hasher.update([0]);
        } else if kind.is_dir() {
            subdir(entry.path(), rel.join(&name));
        }
    }
    Ok(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_change_changes_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("v");
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::write(root.join("a"), "1").unwrap();
        fs::write(root.join("sub/b"), "2").unwrap();
        let f0 = fingerprint(&root).unwrap();
        assert_eq!(f0, fingerprint(&root).unwrap(), "stable");

        // Renaming the volume folder itself keeps it.
        let moved = dir.path().join("w");
        fs::rename(&root, &moved).unwrap();
        assert_eq!(f0, fingerprint(&moved).unwrap());

        // Same size, same content even: the change time still moves.
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(moved.join("sub/b"), "2").unwrap();
        let f1 = fingerprint(&moved).unwrap();
        assert_ne!(f0, f1);
        fs::create_dir(moved.join("empty")).unwrap();
        let f2 = fingerprint(&moved).unwrap();
        assert_ne!(f1, f2);

        // A change deep down, read by whichever thread, still shows.
        let deep = moved.join("d1/d2/d3");
        fs::create_dir_all(&deep).unwrap();
        for i in 0..50 {
            fs::create_dir(moved.join(format!("wide{i}"))).unwrap();
        }
        let f3 = fingerprint(&moved).unwrap();
        assert_eq!(f3, fingerprint(&moved).unwrap(), "stable across thread schedules");
        fs::write(deep.join("c"), "3").unwrap();
        assert_ne!(f3, fingerprint(&moved).unwrap());
        assert!(fingerprint(&dir.path().join("missing")).is_err());
    }
}
