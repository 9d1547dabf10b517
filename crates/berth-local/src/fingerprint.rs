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
use std::path::Path;

use sha2::{Digest, Sha256};

/// The fingerprint of the tree below `root` (the root folder's own times are
/// left out: renaming the volume into place changes them).
pub fn fingerprint(root: &Path) -> io::Result<String> {
    let mut hasher = Sha256::new();
    walk(root, Path::new(""), &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

fn walk(dir: &Path, rel: &Path, hasher: &mut Sha256) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let meta = entry.metadata()?; // lstat: links are not followed
        let path = rel.join(entry.file_name());
        hasher.update(path.as_os_str().as_bytes());
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
            walk(&entry.path(), &path, hasher)?;
            hasher.update(b"\0end-of-dir\0");
        }
    }
    Ok(())
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
        assert_ne!(f1, fingerprint(&moved).unwrap());
    }
}
