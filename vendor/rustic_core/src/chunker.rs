use std::{
    io::Read,
    sync::{Mutex, PoisonError},
};

mod fixed_size;
pub mod rabin;

use fixed_size::ChunkIter as FixedSizeChunkIter;
use rabin::ChunkIter as RabinChunkIter;
pub(crate) use rabin::Guide;
use rustic_cdc::Rabin64;

use crate::{
    RusticResult,
    id::Id,
    repofile::{ConfigFile, configfile::Chunker},
};

/// berth patch: the Rabin tables of the last polynomial used. Building them
/// takes a quarter of a millisecond, which for every file of a volume of
/// small files was a twelfth of a first snapshot's CPU time.
static RABIN: Mutex<Option<(u64, Rabin64)>> = Mutex::new(None);

/// A rolling hash for `poly`, its tables built once per polynomial.
fn rabin_for(poly: u64) -> Rabin64 {
    let mut cached = RABIN.lock().unwrap_or_else(PoisonError::into_inner);
    match &*cached {
        Some((p, rabin)) if *p == poly => rabin.clone(),
        _ => {
            let rabin = Rabin64::new_with_polynom(6, &poly);
            *cached = Some((poly, rabin.clone()));
            rabin
        }
    }
}

/// `ChunkIter` is an iterator that chunks data.
pub(crate) enum ChunkIter<R: Read + Send> {
    Rabin(Box<RabinChunkIter<R>>),
    FixedSize(FixedSizeChunkIter<R>),
}

impl<R: Read + Send> ChunkIter<R> {
    /// A chunker for a repository's config. `guide` holds the chunks a
    /// parent snapshot stored for the same file (berth patch; see [`Guide`]).
    pub(crate) fn from_config(
        config: &ConfigFile,
        reader: R,
        size_hint: usize,
        guide: Option<Guide>,
    ) -> RusticResult<Self> {
        let iter = match config.chunker() {
            Chunker::Rabin => {
                let poly = config.poly()?;
                let rabin = rabin_for(poly);
                let mut iter = RabinChunkIter::new(
                    rabin,
                    config.chunk_size(),
                    config.chunk_min_size(),
                    config.chunk_max_size(),
                    reader,
                    size_hint,
                )?;
                if let Some(guide) = guide {
                    iter = iter.with_guide(guide);
                }
                Self::Rabin(Box::new(iter))
            }
            Chunker::FixedSize => Self::FixedSize(FixedSizeChunkIter::new(
                config.chunk_size(),
                reader,
                size_hint,
            )),
        };
        Ok(iter)
    }
}

/// A chunk, with its id when the chunker had to hash it already.
impl<R: Read + Send> Iterator for ChunkIter<R> {
    type Item = RusticResult<(Vec<u8>, Option<Id>)>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Self::Rabin(rabin) => {
                let chunk = rabin.next()?;
                Some(chunk.map(|c| (c, rabin.take_known_id())))
            }
            Self::FixedSize(fixed_size) => fixed_size.next().map(|c| c.map(|c| (c, None))),
        }
    }
}
