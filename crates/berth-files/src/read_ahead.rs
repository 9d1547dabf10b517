//! Streaming a file to a client with one chunk read ahead.
//!
//! A plain async file stream reads a chunk, waits for the socket to take it,
//! then reads the next: disk and network take turns. Here the read of chunk
//! k+1 runs on the blocking pool while chunk k is being sent, so both stay
//! busy. A blocking thread is held only for the duration of one read, never
//! while waiting for a slow client, so slow downloads cannot use up the pool
//! that the health probe and uploads also need.

use std::fs::File;
use std::io::{self, Read};

use bytes::Bytes;
use futures_util::Stream;
use tokio::task::JoinHandle;

/// Size of one read; the memory one download holds is about twice this.
pub const CHUNK: usize = 1024 * 1024;

type Pending = JoinHandle<io::Result<(File, Bytes)>>;

/// The `len` bytes of `file` from its current position, as a stream of chunks.
/// A file that turns out shorter than `len` (truncated by another process)
/// ends the stream with an error, so the client sees a cut transfer rather
/// than silently short data.
pub fn stream(file: File, len: u64) -> impl Stream<Item = io::Result<Bytes>> + Send {
    let first = (len > 0).then(|| read(file, len.min(CHUNK as u64) as usize));
    futures_util::stream::unfold((first, len), |(pending, left)| async move {
        let handle = pending?;
        let result = match handle.await {
            Ok(result) => result,
            Err(e) => Err(io::Error::other(format!("read task failed: {e}"))),
        };
        match result {
            Ok((file, chunk)) => {
                let left = left - chunk.len() as u64;
                let next = (left > 0).then(|| read(file, left.min(CHUNK as u64) as usize));
                Some((Ok(chunk), (next, left)))
            }
            Err(e) => Some((Err(e), (None, 0))),
        }
    })
}

fn read(mut file: File, n: usize) -> Pending {
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; n];
        file.read_exact(&mut buf)?;
        Ok((file, Bytes::from(buf)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::TryStreamExt;
    use std::io::{Seek, SeekFrom, Write};

    #[tokio::test]
    async fn streams_the_range_and_reports_truncation() {
        let mut f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..(CHUNK * 2 + 10)).map(|i| (i % 251) as u8).collect();
        f.write_all(&data).unwrap();
        f.seek(SeekFrom::Start(5)).unwrap();
        let got: Vec<Bytes> = stream(f.try_clone().unwrap(), data.len() as u64 - 5).try_collect().await.unwrap();
        assert_eq!(got.concat(), &data[5..]);
        f.seek(SeekFrom::Start(0)).unwrap();
        let short: Result<Vec<Bytes>, _> = stream(f, data.len() as u64 + 1).try_collect().await;
        assert_eq!(short.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }
}
