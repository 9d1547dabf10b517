//! The storage folder: every read and write of the volume goes through here.
//!
//! A *volume* is the folder a task owns (`STORAGE_PATH`). Writes follow one
//! protocol so that no reader, snapshot or crash ever sees a torn file: bytes go
//! to a temporary file in the same folder, which is fsynced, renamed over the
//! final name in one atomic step, and the folder is fsynced so the rename itself
//! survives a power cut. Reads open files with `O_NOFOLLOW`, so a symbolic link
//! planted in the volume cannot lead outside it.
//!
//! The volume also keeps the byte count that the optional capacity (quota)
//! is checked against, and reserves space for uploads while they stream.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::index::{DirStamp, Index, Meta};
use crate::name::{FileName, TEMP_PREFIX};

/// One regular file as listed by the service.
#[derive(Clone, Debug)]
pub struct Entry {
    pub name: String,
    pub size: u64,
    pub modified: SystemTime,
}

/// A regular file opened for reading, with the metadata a download needs.
#[derive(Debug)]
pub struct OpenFile {
    pub file: File,
    pub size: u64,
    pub modified: SystemTime,
    pub etag: String,
}

/// Space accounting against the optional capacity.
#[derive(Debug, Default)]
struct Usage {
    /// Bytes of committed files in the folder.
    used: AtomicU64,
    /// Bytes being written by uploads in flight.
    reserved: AtomicU64,
}

/// The task's storage folder.
#[derive(Debug)]
pub struct Volume {
    root: PathBuf,
    capacity: Option<u64>,
    usage: Usage,
    /// Serializes "stat the old file, rename, update usage" so concurrent
    /// uploads of one name account for the replaced file exactly once.
    commit_lock: Mutex<()>,
    index: Index,
}

impl Volume {
    /// Opens the folder, creating it if missing, removes temporary files left by
    /// a crash (they were never visible under a real name), and counts its bytes.
    pub fn open(root: &Path, capacity: Option<u64>) -> io::Result<Self> {
        fs::create_dir_all(root)?;
        let root = root.to_path_buf();
        let mut used = 0;
        for entry in fs::read_dir(&root)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if !kind.is_file() {
                continue;
            }
            if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                fs::remove_file(entry.path())?;
                tracing::info!(path = %entry.path().display(), "removed a temporary file left by an interrupted upload");
                continue;
            }
            used += entry.metadata()?.len();
        }
        let volume =
            Self { root, capacity, usage: Usage::default(), commit_lock: Mutex::new(()), index: Index::default() };
        volume.usage.used.store(used, Ordering::Relaxed);
        Ok(volume)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path_of(&self, name: &FileName) -> PathBuf {
        self.root.join(name.as_str())
    }

    pub fn capacity(&self) -> Option<u64> {
        self.capacity
    }

    /// Bytes held by committed files, as counted by the service.
    pub fn used(&self) -> u64 {
        self.usage.used.load(Ordering::Relaxed)
    }

    /// Free bytes: the lower of the quota's remainder and the filesystem's.
    pub fn free(&self) -> io::Result<u64> {
        let fs_free = filesystem_free(&self.root)?;
        Ok(match self.capacity {
            Some(cap) => fs_free.min(cap.saturating_sub(self.used() + self.usage.reserved.load(Ordering::Relaxed))),
            None => fs_free,
        })
    }

    /// Lists regular files (not links, folders or temporary files) whose name
    /// starts with `prefix` and sorts after `after`, sorted by name, at most `limit`.
    /// Returns the entries and whether more remained.
    pub fn list(&self, prefix: &str, after: Option<&str>, limit: usize) -> io::Result<(Vec<Entry>, bool)> {
        self.index.list(&self.root, prefix, after, limit)
    }

    /// Opens a regular file for reading without following links.
    pub fn open_read(&self, name: &FileName) -> io::Result<OpenFile> {
        // O_NONBLOCK so that opening a planted FIFO cannot hang the request;
        // it has no effect on regular files.
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(self.path_of(name))?;
        let meta = file.metadata()?;
        if !meta.file_type().is_file() {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        let modified = meta.modified()?;
        Ok(OpenFile { size: meta.len(), modified, etag: etag(&meta), file })
    }

    /// Metadata of a regular file, without following links; `None` if absent.
    pub fn stat(&self, name: &FileName) -> io::Result<Option<Entry>> {
        match fs::symlink_metadata(self.path_of(name)) {
            Ok(meta) if meta.file_type().is_file() => {
                Ok(Some(Entry { name: name.to_string(), size: meta.len(), modified: meta.modified()? }))
            }
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes a file (a link is removed itself, never its target).
    /// Returns false when there was nothing to remove.
    pub fn delete(&self, name: &FileName) -> io::Result<bool> {
        let _guard = self.commit_lock.lock().unwrap_or_else(|p| p.into_inner());
        let path = self.path_of(name);
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        if meta.is_dir() {
            return Err(io::Error::from_raw_os_error(libc::EISDIR));
        }
        let before = DirStamp::of(&self.root).ok();
        fs::remove_file(&path)?;
        self.index.apply(&self.root, before, |files| {
            files.remove(name.as_str());
        });
        sync_dir(&self.root)?;
        if meta.file_type().is_file() {
            self.usage.used.fetch_sub(meta.len().min(self.used()), Ordering::Relaxed);
        }
        Ok(true)
    }

    /// Starts an upload: a new, empty temporary file in the volume.
    pub fn begin_upload(self: &Arc<Self>, name: FileName) -> io::Result<PendingUpload> {
        let temp = self.root.join(format!("{TEMP_PREFIX}{:016x}", fastrand::u64(..)));
        let file =
            OpenOptions::new().write(true).create_new(true).mode(0o644).custom_flags(libc::O_CLOEXEC).open(&temp)?;
        Ok(PendingUpload {
            volume: Arc::clone(self),
            name,
            temp,
            file: Some(file),
            reserved: 0,
            written: 0,
            writeback_from: 0,
            committed: false,
        })
    }

    /// Flushes the volume to disk for a snapshot: fsyncs the folder, then the
    /// whole filesystem holding it (`syncfs`; `sync` where there is none).
    /// Commits already fsync their own file and the folder; this also covers
    /// deletes and anything else that reached the filesystem.
    pub fn flush(&self) -> io::Result<()> {
        let dir = File::open(&self.root)?;
        dir.sync_all()?;
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: syncfs on a descriptor we own and keep open for the call.
            if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            // SAFETY: sync(2) takes no arguments and cannot fail.
            unsafe { libc::sync() };
        }
        Ok(())
    }

    /// Runs the write probe of the health check: create, write, fsync, delete.
    pub fn probe(&self) -> io::Result<()> {
        let meta = fs::metadata(&self.root)?;
        if !meta.is_dir() {
            return Err(io::Error::other("storage path is not a directory"));
        }
        let path = self.root.join(format!("{TEMP_PREFIX}health-{:016x}", fastrand::u64(..)));
        // The probe changes the folder; under the commit lock it can tell the
        // listing index so, and spare it a rebuild.
        let _guard = self.commit_lock.lock().unwrap_or_else(|p| p.into_inner());
        let before = DirStamp::of(&self.root).ok();
        let result = (|| {
            let mut file = OpenOptions::new().write(true).create_new(true).open(&path)?;
            io::Write::write_all(&mut file, b"ok")?;
            file.sync_all()
        })();
        let removed = fs::remove_file(&path);
        self.index.apply(&self.root, before, |_| {});
        result.and(removed)
    }

    fn reserve(&self, bytes: u64) -> Result<(), UploadError> {
        let Some(cap) = self.capacity else {
            return Ok(());
        };
        let reserved = self.usage.reserved.fetch_add(bytes, Ordering::AcqRel) + bytes;
        if self.used() + reserved > cap {
            self.usage.reserved.fetch_sub(bytes, Ordering::AcqRel);
            return Err(UploadError::Capacity(cap));
        }
        Ok(())
    }
}

/// Why an upload did not commit.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("the volume's capacity of {0} bytes would be exceeded")]
    Capacity(u64),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// An upload in progress. Until [`PendingUpload::commit`] its bytes live only
/// in a temporary file, which is removed if the upload is dropped.
#[derive(Debug)]
pub struct PendingUpload {
    volume: Arc<Volume>,
    name: FileName,
    temp: PathBuf,
    file: Option<File>,
    reserved: u64,
    written: u64,
    /// Offset up to which writeback was already started.
    writeback_from: u64,
    committed: bool,
}

/// Writeback of an upload is started every this many bytes, so the fsync at
/// the end finds little left to write (as RocksDB's `bytes_per_sync`).
const WRITEBACK_EVERY: u64 = 8 << 20;

impl PendingUpload {
    /// Appends chunks, after reserving their space against the capacity, with
    /// as few system calls as the kernel allows.
    pub fn write_chunks(&mut self, chunks: &[&[u8]]) -> Result<(), UploadError> {
        let len: u64 = chunks.iter().map(|c| c.len() as u64).sum();
        self.volume.reserve(len)?;
        self.reserved += len;
        let file = self.file.as_mut().expect("file is present until commit");
        let mut slices: Vec<io::IoSlice<'_>> = chunks.iter().map(|c| io::IoSlice::new(c)).collect();
        let mut slices = &mut slices[..];
        while !slices.is_empty() {
            match io::Write::write_vectored(file, slices) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero).into()),
                Ok(n) => io::IoSlice::advance_slices(&mut slices, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.written += len;
        if self.written - self.writeback_from >= WRITEBACK_EVERY {
            start_writeback(file, self.writeback_from, self.written - self.writeback_from);
            self.writeback_from = self.written;
        }
        Ok(())
    }

    /// Makes the upload durable and visible: fsync the data, rename over the
    /// final name, fsync the folder. Returns the size and whether a previous
    /// version was replaced. On error the temporary file is removed and any
    /// previous version is intact.
    pub fn commit(mut self) -> io::Result<Committed> {
        let file = self.file.take().expect("file is present until commit");
        file.sync_all()?;
        let size = file.metadata()?.len();
        drop(file);
        let target = self.volume.path_of(&self.name);
        let replaced = {
            let _guard = self.volume.commit_lock.lock().unwrap_or_else(|p| p.into_inner());
            let old = match fs::symlink_metadata(&target) {
                Ok(m) if m.is_dir() => return Err(io::Error::from_raw_os_error(libc::EISDIR)),
                Ok(m) => Some(m),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(e),
            };
            let before = DirStamp::of(self.volume.root()).ok();
            fs::rename(&self.temp, &target)?;
            self.committed = true;
            let modified =
                fs::symlink_metadata(&target).and_then(|m| m.modified()).unwrap_or_else(|_| SystemTime::now());
            self.volume.index.apply(self.volume.root(), before, |files| {
                files.insert(self.name.to_string(), Meta { size, modified });
            });
            let usage = &self.volume.usage;
            let old_len = old.as_ref().filter(|m| m.file_type().is_file()).map_or(0, |m| m.len());
            usage.used.fetch_add(size, Ordering::AcqRel);
            usage.used.fetch_sub(old_len.min(usage.used.load(Ordering::Acquire)), Ordering::AcqRel);
            old.is_some()
        };
        sync_dir(self.volume.root())?;
        Ok(Committed { size, replaced, path: target })
    }
}

impl Drop for PendingUpload {
    fn drop(&mut self) {
        if self.reserved > 0 && self.volume.capacity.is_some() {
            self.volume.usage.reserved.fetch_sub(self.reserved, Ordering::AcqRel);
        }
        if !self.committed {
            self.file.take();
            if let Err(e) = fs::remove_file(&self.temp) {
                tracing::warn!(path = %self.temp.display(), error = %e, "could not remove temporary file");
            }
        }
    }
}

/// The outcome of a committed upload.
#[derive(Debug)]
pub struct Committed {
    pub size: u64,
    pub replaced: bool,
    pub path: PathBuf,
}

/// A strong validator that changes whenever the file is replaced or rewritten.
fn etag(meta: &fs::Metadata) -> String {
    format!("\"{:x}-{:x}{:08x}-{:x}\"", meta.len(), meta.mtime(), meta.mtime_nsec(), meta.ino())
}

/// Asks the kernel to start writing a range to disk without waiting for it.
/// Only an optimization: durability still comes from the fsync in commit.
fn start_writeback(file: &File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: sync_file_range on an open descriptor we own; it reads no memory of ours.
        unsafe {
            libc::sync_file_range(file.as_raw_fd(), offset as i64, len as i64, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Bytes available to an unprivileged writer on the filesystem holding `path`.
pub fn filesystem_free(path: &Path) -> io::Result<u64> {
    let stat = statvfs(path)?;
    Ok(stat.f_bavail as u64 * stat.f_frsize as u64)
}

/// Total bytes of the filesystem holding `path`.
pub fn filesystem_size(path: &Path) -> io::Result<u64> {
    let stat = statvfs(path)?;
    Ok(stat.f_blocks as u64 * stat.f_frsize as u64)
}

fn statvfs(path: &Path) -> io::Result<libc::statvfs> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: c_path is a valid NUL-terminated string and stat points to
    // writable memory of the right size; statvfs initializes it on success.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: rc == 0, so statvfs filled the struct.
    Ok(unsafe { stat.assume_init() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> FileName {
        FileName::parse(s).unwrap()
    }

    #[test]
    fn upload_is_invisible_until_commit_and_removed_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let vol = Arc::new(Volume::open(dir.path(), None).unwrap());
        let mut up = vol.begin_upload(name("a")).unwrap();
        up.write_chunks(&[b"hello"]).unwrap();
        assert!(vol.list("", None, 10).unwrap().0.is_empty());
        drop(up);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);

        let mut up = vol.begin_upload(name("a")).unwrap();
        up.write_chunks(&[b"hello"]).unwrap();
        let done = up.commit().unwrap();
        assert_eq!((done.size, done.replaced), (5, false));
        assert_eq!(fs::read(dir.path().join("a")).unwrap(), b"hello");
        assert_eq!(vol.used(), 5);
    }

    #[test]
    fn capacity_refuses_and_keeps_previous_version() {
        let dir = tempfile::tempdir().unwrap();
        let vol = Arc::new(Volume::open(dir.path(), Some(10)).unwrap());
        let mut up = vol.begin_upload(name("a")).unwrap();
        up.write_chunks(&[b"123456"]).unwrap();
        up.commit().unwrap();
        let mut up = vol.begin_upload(name("a")).unwrap();
        assert!(matches!(up.write_chunks(&[b"123456"]), Err(UploadError::Capacity(10))));
        drop(up);
        assert_eq!(fs::read(dir.path().join("a")).unwrap(), b"123456");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(vol.delete(&name("a")).unwrap());
        assert_eq!(vol.used(), 0);
    }

    #[test]
    fn open_cleans_temporary_files_and_list_skips_links() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(format!("{TEMP_PREFIX}dead")), b"partial").unwrap();
        fs::write(dir.path().join("b"), b"bb").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link")).unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        let vol = Volume::open(dir.path(), None).unwrap();
        let (list, more) = vol.list("", None, 10).unwrap();
        assert_eq!(list.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["b"]);
        assert!(!more);
        assert!(!dir.path().join(format!("{TEMP_PREFIX}dead")).exists());
        assert_eq!(vol.open_read(&name("link")).unwrap_err().raw_os_error(), Some(libc::ELOOP));
    }

    #[test]
    fn list_pages_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["c", "a", "b", "d", "x1"] {
            fs::write(dir.path().join(n), n).unwrap();
        }
        let vol = Volume::open(dir.path(), None).unwrap();
        let (page, more) = vol.list("", None, 2).unwrap();
        assert_eq!(page.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert!(more);
        let (page, more) = vol.list("", Some("b"), 2).unwrap();
        assert_eq!(page.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["c", "d"]);
        assert!(more);
        let (page, more) = vol.list("x", None, 2).unwrap();
        assert_eq!(page.len(), 1);
        assert!(!more);
    }
}
