//! Writing restored file contents past the page cache.
//!
//! A restore writes gigabytes that nobody reads soon after: the replacement
//! task reads its volume at its own pace. Written through the page cache,
//! every byte is copied into a page the kernel has to find (on this kind of
//! VM, fresh memory faults in page by page), then written back, then synced.
//! Written with `O_DIRECT`, the disk takes the bytes from the worker's own
//! buffer, which is reused for every range it writes.
//!
//! `O_DIRECT` wants the file offset, the length and the memory address all
//! aligned to the device's block. A restored file is a sequence of blobs of
//! any length, so a worker collects consecutive blobs in a [`Staging`]
//! buffer laid out so that buffer address and file offset agree modulo
//! [`ALIGN`]; the aligned middle of the range goes through the direct
//! descriptor, and the unaligned head and tail (under a block each) through
//! the ordinary one. The two never share a block, and the kernel writes back
//! and drops cached pages of a range before a direct write to it, so the
//! file's bytes are the same either way. Where the filesystem refuses
//! `O_DIRECT` (tmpfs, some FUSE and network filesystems) everything takes
//! the ordinary path.

use std::{fs::File, io, os::unix::fs::FileExt};

/// Alignment for direct writes: 4 KiB satisfies 512-byte and 4 KiB block
/// devices alike.
pub(crate) const ALIGN: usize = 4096;
const ALIGN_U64: u64 = ALIGN as u64;

/// Where a range of one file is written.
pub(crate) struct Sink<'f> {
    /// The file opened as usual.
    pub(crate) buffered: &'f File,
    /// The same file opened with `O_DIRECT`, when the filesystem allows it.
    pub(crate) direct: Option<&'f File>,
}

/// How a flushed range was written, for the writeback hint.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Written {
    /// Bytes written through the page cache.
    pub(crate) buffered: usize,
    /// Bytes written with `O_DIRECT`.
    pub(crate) direct: usize,
}

/// One contiguous file range being collected by a worker, kept between
/// ranges so that its memory is allocated (and faulted in) once.
pub(crate) struct Staging {
    buf: Vec<u8>,
    /// `buf[pad..]` starts on an [`ALIGN`] boundary.
    pad: usize,
    /// File offset of the first byte held.
    start: u64,
    /// Bytes held.
    len: usize,
}

impl Default for Staging {
    fn default() -> Self {
        Self::new()
    }
}

impl Staging {
    pub(crate) fn new() -> Self {
        Self { buf: Vec::new(), pad: 0, start: 0, len: 0 }
    }

    /// File offset of the held range (meaningless when empty).
    pub(crate) fn start(&self) -> u64 {
        self.start
    }

    /// Drops the held bytes unwritten.
    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }

    /// Where in `buf` the byte at file offset `start` sits: past the
    /// alignment pad and one spare block (room for whatever a slot puts
    /// before its bytes, [`Self::slot`]), at its offset within its block.
    fn lead(&self) -> usize {
        self.pad + ALIGN + (self.start % ALIGN_U64) as usize
    }

    /// Returns `len` bytes of buffer whose byte `front` is where the file
    /// continues at `offset`; [`Self::commit`] then takes bytes from there
    /// into the range. An empty buffer starts a new range at `offset`; a
    /// non-empty one must be continued exactly. The `front` bytes before
    /// are the end of the held range (or spare): the caller keeps them.
    pub(crate) fn slot(&mut self, offset: u64, front: usize, len: usize) -> &mut [u8] {
        debug_assert!(front <= ALIGN);
        if self.len == 0 {
            self.start = offset;
        }
        debug_assert_eq!(self.start + self.len as u64, offset, "a range is continued where it ends");
        self.reserve(len);
        let at = self.lead() + self.len;
        &mut self.buf[at - front..at - front + len]
    }

    /// Adds the `n` bytes written after the front of the last slot.
    pub(crate) fn commit(&mut self, n: usize) {
        debug_assert!(self.lead() + self.len + n <= self.buf.len());
        self.len += n;
    }

    /// Appends `data`, which continues the file at `offset`.
    #[cfg(test)]
    pub(crate) fn push(&mut self, offset: u64, data: &[u8]) {
        self.slot(offset, 0, data.len()).copy_from_slice(data);
        self.commit(data.len());
    }

    /// Makes room for `extra` more bytes, keeping the held ones at the same
    /// offset from an aligned address. Grows rarely: a worker's ranges are
    /// of similar size.
    fn reserve(&mut self, extra: usize) {
        let need = ALIGN + (self.start % ALIGN_U64) as usize + self.len + extra;
        if self.pad + need <= self.buf.len() {
            return;
        }
        let size = need.max(2 * self.buf.len().saturating_sub(ALIGN)).next_multiple_of(ALIGN) + ALIGN;
        let buf = vec![0u8; size];
        let pad = buf.as_ptr().align_offset(ALIGN);
        let (old, held) = (self.lead(), self.len);
        let old_buf = std::mem::replace(&mut self.buf, buf);
        self.pad = pad;
        if held > 0 {
            let new = self.lead();
            self.buf[new..new + held].copy_from_slice(&old_buf[old..old + held]);
        }
    }

    /// Writes the held range to `sink` and empties the buffer, also on
    /// error (the caller abandons the file then).
    pub(crate) fn flush(&mut self, sink: &Sink<'_>) -> io::Result<Written> {
        if self.len == 0 {
            return Ok(Written::default());
        }
        let lead = self.lead();
        let data = &self.buf[lead..lead + self.len];
        let start = self.start;
        self.len = 0;
        write_range(sink, data, start)
    }
}

/// Writes `data` at `start`: the aligned middle directly, the rest
/// buffered.
fn write_range(sink: &Sink<'_>, data: &[u8], start: u64) -> io::Result<Written> {
    let end = start + data.len() as u64;
    let mid_start = start.next_multiple_of(ALIGN_U64);
    let mid_end = end - end % ALIGN_U64;
    let Some(direct) = sink.direct.filter(|_| mid_end > mid_start) else {
        sink.buffered.write_all_at(data, start)?;
        return Ok(Written { buffered: data.len(), direct: 0 });
    };
    let head = (mid_start - start) as usize;
    let mid = (mid_end - mid_start) as usize;
    sink.buffered.write_all_at(&data[..head], start)?;
    let mut written = Written { buffered: data.len() - mid, direct: mid };
    match direct.write_all_at(&data[head..head + mid], mid_start) {
        Ok(()) => {}
        // Opened with O_DIRECT but refused at write time (some filesystems
        // check only here): the ordinary path writes the same bytes.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            sink.buffered.write_all_at(&data[head..head + mid], mid_start)?;
            written = Written { buffered: data.len(), direct: 0 };
        }
        Err(e) => return Err(e),
    }
    sink.buffered.write_all_at(&data[head + mid..], mid_end)?;
    Ok(written)
}

/// Opens `path` a second time with `O_DIRECT` for writing, or `None` where
/// the filesystem does not support it.
pub(crate) fn open_direct(path: &std::path::Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    File::options().write(true).custom_flags(libc::O_DIRECT).open(path).ok()
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    fn read_all(path: &std::path::Path) -> Vec<u8> {
        let mut out = Vec::new();
        File::open(path).unwrap().read_to_end(&mut out).unwrap();
        out
    }

    /// Ranges starting and ending anywhere, pushed in pieces of any length,
    /// some flushed mid-file, land byte for byte; the aligned middles go
    /// direct where the filesystem allows it, and tiny ranges never do.
    #[test]
    fn unaligned_ranges_land_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let size = 3 * 1024 * 1024 + 777;
        let expected = pattern(size, 7);
        let file = File::options().write(true).create_new(true).open(&path).unwrap();
        file.set_len(size as u64).unwrap();
        let direct = open_direct(&path);
        let sink = Sink { buffered: &file, direct: direct.as_ref() };

        let mut staging = Staging::new();
        let mut direct_bytes = 0;
        // Pieces like blobs: odd lengths, a flush every few of them.
        let pieces = [1usize, 4095, 4097, 100_000, 3, 1_048_577, 65_536, 12_345, 900_001];
        let (mut offset, mut i) = (0usize, 0usize);
        while offset < size {
            let len = pieces[i % pieces.len()].min(size - offset);
            staging.push(offset as u64, &expected[offset..offset + len]);
            offset += len;
            i += 1;
            if i % 3 == 0 {
                direct_bytes += staging.flush(&sink).unwrap().direct;
                assert_eq!(staging.len, 0);
            }
        }
        let last = staging.flush(&sink).unwrap();
        direct_bytes += last.direct;
        drop(direct);
        drop(file);
        assert_eq!(read_all(&path), expected);
        if open_direct(&path).is_some() {
            assert!(direct_bytes > size / 2, "only {direct_bytes} of {size} bytes went direct");
        }

        // A range inside one block has no aligned middle.
        let small = dir.path().join("small");
        let file = File::options().write(true).create_new(true).open(&small).unwrap();
        file.set_len(10_000).unwrap();
        let direct = open_direct(&small);
        let sink = Sink { buffered: &file, direct: direct.as_ref() };
        staging.push(4100, &[9u8; 3000]);
        assert_eq!(staging.flush(&sink).unwrap(), Written { buffered: 3000, direct: 0 });
        let got = read_all(&small);
        assert!(got[4100..7100].iter().all(|&b| b == 9) && got[..4100].iter().all(|&b| b == 0));
    }

    /// Growing a non-empty buffer keeps what it holds at its file offset.
    #[test]
    fn growing_keeps_the_held_bytes() {
        let mut staging = Staging::new();
        let first = pattern(5000, 1);
        let second = pattern(3 * 1024 * 1024, 2);
        staging.push(123, &first);
        staging.push(123 + 5000, &second);
        let lead = staging.lead();
        assert_eq!(staging.buf[lead..lead + 5000], first[..]);
        assert_eq!(staging.buf[lead + 5000..lead + 5000 + second.len()], second[..]);
        assert_eq!((staging.buf.as_ptr() as usize + staging.pad) % ALIGN, 0);
    }
}
