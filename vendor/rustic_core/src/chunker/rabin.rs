use std::io::{self, Read};

use rand::{RngExt, rng};
use rustic_cdc::{Polynom, Polynom64, Rabin64, RollingHash64};

use crate::{
    crypto::hasher::hash,
    error::{ErrorKind, RusticError, RusticResult},
    id::Id,
};

pub(super) mod constants {
    /// The size of a kilobyte.
    pub(super) const KB: usize = 1024;
    /// Buffer size used for reading. berth patch: 64 KiB rather than 4 KiB,
    /// a sixteenth of the read calls.
    pub(super) const BUF_SIZE: usize = 64 * KB;
    /// Random polynomial maximum tries.
    pub(super) const RAND_POLY_MAX_TRIES: i32 = 1_000_000;
}

pub(crate) fn check_rabin_params(
    chunk_size: usize,
    chunk_min_size: usize,
    chunk_max_size: usize,
) -> RusticResult<()> {
    if (chunk_size & (chunk_size - 1)) != 0 {
        return Err(RusticError::new(
            ErrorKind::Unsupported,
            "Chunk size must be a power of 2 for the rabin chunker. chunk size = {chunk_size}.",
        )
        .attach_context("chunk_size", chunk_size.to_string()));
    }
    if chunk_min_size > chunk_size {
        return Err(RusticError::new(
            ErrorKind::Unsupported,
            "Chunk min size must be smaller or equal than the chunk size.",
        ));
    }
    if chunk_max_size < chunk_size {
        return Err(RusticError::new(
            ErrorKind::Unsupported,
            "Chunk max size must be larger or equal than the chunk size.",
        ));
    }
    Ok(())
}

/// Chunks a parent snapshot stored for the same file, in order: where each
/// starts in the file, how long it is and its id. The file's last chunk is
/// left out: the end of the file cut it, not the rolling hash.
///
/// berth patch: the rolling hash restarts at every chunk boundary, so a chunk
/// that starts where a parent's chunk started and holds the same bytes would
/// be cut exactly where the parent's was. Comparing its SHA-256 with the
/// parent's id (which the chunk's id needs anyway) then replaces rolling the
/// hash over every byte of it, and a file changed in one place is chunked
/// only around that place.
#[derive(Debug)]
pub(crate) struct Guide {
    /// `(offset, length, id)` of each chunk.
    chunks: Vec<(u64, usize, Id)>,
    /// The first chunk not yet passed.
    next: usize,
}

impl Guide {
    /// A guide from the parent's chunks as `(length, id)`, in file order.
    pub(crate) fn new(chunks: impl IntoIterator<Item = (usize, Id)>) -> Self {
        let mut offset = 0;
        let mut with_offsets: Vec<_> = chunks
            .into_iter()
            .map(|(len, id)| {
                let start = offset;
                offset += len as u64;
                (start, len, id)
            })
            .collect();
        _ = with_offsets.pop();
        // A length no chunker could have cut (a damaged index) is not worth
        // reading into memory to compare.
        with_offsets.retain(|c| c.1 > 0 && c.1 <= MAX_GUIDED_CHUNK);
        Self {
            chunks: with_offsets,
            next: 0,
        }
    }

    /// The parent's chunk starting at `offset`, if there is one.
    fn at(&mut self, offset: u64) -> Option<(usize, Id)> {
        while self.chunks.get(self.next).is_some_and(|c| c.0 < offset) {
            self.next += 1;
        }
        self.chunks
            .get(self.next)
            .filter(|c| c.0 == offset)
            .map(|c| (c.1, c.2))
    }
}

/// The largest parent chunk a [`Guide`] compares (restic's and rustic's
/// largest chunk is 8 MiB).
const MAX_GUIDED_CHUNK: usize = 64 * constants::KB * 1024;

/// `ChunkIter` is an iterator that chunks data.
pub(crate) struct ChunkIter<R: Read + Send> {
    /// The buffer used for reading; bytes `pos..` are read but not yet chunked.
    buf: Vec<u8>,

    /// The position in the buffer.
    pos: usize,

    /// The reader.
    reader: R,

    /// The split mask used to determine if a chunk is a chunk boundary.
    split_mask: u64,

    /// The rolling hash.
    rabin: Rabin64,

    /// The size hint is used to optimize memory allocation; this should be an upper bound on the size.
    size_hint: usize,

    /// The minimum size of a chunk.
    min_size: usize,

    /// The maximum size of a chunk.
    max_size: usize,

    /// If the iterator is finished.
    finished: bool,

    /// Bytes of the stream returned as chunks so far.
    offset: u64,

    /// The parent's chunks of this file, if any.
    guide: Option<Guide>,

    /// The id of the chunk `next` returned last, when it was checked against the guide.
    known_id: Option<Id>,
}

impl<R: Read + Send> ChunkIter<R> {
    /// Creates a new `ChunkIter`.
    ///
    /// # Arguments
    ///
    /// * `reader` - The reader to read from.
    /// * `size_hint` - The size hint is used to optimize memory allocation; this should be an upper bound on the size.
    /// * `rabin` - The rolling hash.
    pub(crate) fn new(
        rabin: Rabin64,
        chunk_size: usize,
        chunk_min_size: usize,
        chunk_max_size: usize,
        reader: R,
        size_hint: usize,
    ) -> RusticResult<Self> {
        check_rabin_params(chunk_size, chunk_min_size, chunk_max_size)?;
        let chunk_size: u64 = chunk_size.try_into().unwrap();
        let split_mask: u64 = chunk_size - 1;
        Ok(Self {
            buf: Vec::new(),
            pos: 0,
            reader,
            split_mask,
            rabin,
            size_hint, // size hint is used to optimize memory allocation; this should be an upper bound on the size
            min_size: chunk_min_size,
            max_size: chunk_max_size,
            finished: false,
            offset: 0,
            guide: None,
            known_id: None,
        })
    }

    /// Chunks along the parent's chunks where the bytes are the same (see [`Guide`]).
    pub(crate) fn with_guide(mut self, guide: Guide) -> Self {
        self.guide = Some(guide);
        self
    }

    /// The id of the chunk `next` returned last, if it was already hashed.
    pub(crate) fn take_known_id(&mut self) -> Option<Id> {
        self.known_id.take()
    }

    /// Appends bytes to `vec` until it holds `len` or the stream ends:
    /// buffered bytes first, then straight from the reader.
    fn fill(&mut self, vec: &mut Vec<u8>, len: usize) -> RusticResult<()> {
        let from_buf = (self.buf.len() - self.pos).min(len.saturating_sub(vec.len()));
        vec.extend_from_slice(&self.buf[self.pos..self.pos + from_buf]);
        self.pos += from_buf;
        let missing = len.saturating_sub(vec.len());
        if missing > 0 {
            _ = (&mut self.reader)
                .take(missing as u64)
                .read_to_end(vec)
                .map_err(read_error)?;
        }
        Ok(())
    }

    /// Puts bytes back in front of the buffered ones.
    fn unread(&mut self, bytes: &[u8]) {
        let mut buf = Vec::with_capacity(bytes.len() + self.buf.len() - self.pos);
        buf.extend_from_slice(bytes);
        buf.extend_from_slice(&self.buf[self.pos..]);
        self.buf = buf;
        self.pos = 0;
    }

    /// Reads the next bytes into the buffer; `false` at the end of the stream.
    fn refill(&mut self) -> RusticResult<bool> {
        self.buf.clear();
        self.buf.resize(constants::BUF_SIZE, 0);
        self.pos = 0;
        loop {
            match self.reader.read(&mut self.buf[..]) {
                Ok(size) => {
                    self.buf.truncate(size);
                    return Ok(size > 0);
                }
                Err(ref e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    self.buf.clear();
                    return Err(read_error(err));
                }
            }
        }
    }

    /// Returns a chunk and counts it.
    fn emit(&mut self, vec: Vec<u8>) -> Option<RusticResult<Vec<u8>>> {
        self.offset += vec.len() as u64;
        self.size_hint = self.size_hint.saturating_sub(vec.len()); // size_hint can be too small!
        Some(Ok(vec))
    }

    /// Cuts the next chunk with the rolling hash. `vec` holds the bytes of
    /// the chunk read already (those of a parent's chunk that differed).
    fn cut(&mut self, mut vec: Vec<u8>) -> Option<RusticResult<Vec<u8>>> {
        let min_size = self.min_size;
        if vec.len() < min_size {
            vec.reserve(self.size_hint.min(min_size).saturating_sub(vec.len()));
            if let Err(err) = self.fill(&mut vec, min_size) {
                return Some(Err(err));
            }
            // If min_size is not reached, we are done.
            if vec.len() < min_size {
                self.finished = true;
                return if vec.is_empty() { None } else { self.emit(vec) };
            }
        }

        _ = self
            .rabin
            .reset_and_prefill_window(&mut vec[min_size - 64..min_size].iter().copied());

        // Bytes read already past the minimum: the cut may fall among them.
        for i in min_size..vec.len() {
            if i >= self.max_size || (self.rabin.hash & self.split_mask) == 0 {
                self.unread(&vec[i..]);
                vec.truncate(i);
                return self.emit(vec);
            }
            self.rabin.slide(vec[i]);
        }

        while vec.len() < self.max_size {
            if self.pos == self.buf.len() {
                match self.refill() {
                    Ok(true) => {}
                    Ok(false) => {
                        self.finished = true;
                        break;
                    }
                    Err(err) => return Some(Err(err)),
                }
            }
            // Roll over the buffered bytes up to the cut, then copy them at once.
            let avail = &self.buf[self.pos..];
            let limit = avail.len().min(self.max_size - vec.len());
            let mut n = 0;
            let mut cut = false;
            while n < limit {
                if (self.rabin.hash & self.split_mask) == 0 {
                    cut = true;
                    break;
                }
                self.rabin.slide(avail[n]);
                n += 1;
            }
            vec.extend_from_slice(&avail[..n]);
            self.pos += n;
            if cut {
                break;
            }
        }
        self.emit(vec)
    }
}

/// The error for a failed read of the stream being chunked.
fn read_error(err: io::Error) -> Box<RusticError> {
    RusticError::with_source(
        ErrorKind::InputOutput,
        "Failed to read from reader in iterator",
        err,
    )
}

impl<R: Read + Send> Iterator for ChunkIter<R> {
    type Item = RusticResult<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        self.known_id = None;

        let expected = self.guide.as_mut().and_then(|g| g.at(self.offset));
        let Some((len, id)) = expected else {
            return self.cut(Vec::new());
        };
        let mut vec = Vec::with_capacity(len);
        if let Err(err) = self.fill(&mut vec, len) {
            return Some(Err(err));
        }
        if vec.len() == len && hash(&vec) == id {
            self.known_id = Some(id);
            return self.emit(vec);
        }
        // Changed, or the stream ended early: chunk these bytes as usual.
        self.cut(vec)
    }
}

/// [`random_poly`] returns an random irreducible polynomial of degree 53
/// (largest prime number below 64-8)
/// There are (2^53-2/53) irreducible polynomials of degree 53 in
/// `F_2[X]`, c.f. Michael O. Rabin (1981): "Fingerprinting by Random
/// Polynomials", page 4.
///
/// # Errors
///
/// * If no polynomial could be found in one million tries.
pub fn random_poly() -> RusticResult<u64> {
    for _ in 0..constants::RAND_POLY_MAX_TRIES {
        let mut poly: u64 = rng().random();

        // mask away bits above bit 53
        poly &= (1 << 54) - 1;

        // set highest and lowest bit so that the degree is 53 and the
        // polynomial is not trivially reducible
        poly |= (1 << 53) | 1;

        if poly.irreducible() {
            return Ok(poly);
        }
    }

    Err(RusticError::new(
        ErrorKind::Internal,
        "No suitable polynomial found, this should essentially never happen. Please try again.",
    )
    .ask_report())
}

/// A trait for extending polynomials.
pub(crate) trait PolynomExtend {
    /// Returns true IFF x is irreducible over `F_2`.
    fn irreducible(&self) -> bool;

    /// Returns the degree of the polynomial.
    fn gcd(self, other: Self) -> Self;

    /// Adds two polynomials.
    fn add(self, other: Self) -> Self;

    /// Multiplies two polynomials modulo another polynomial.
    fn mulmod(self, other: Self, modulo: Self) -> Self;
}

// implementation goes along the lines of
// https://github.com/restic/chunker/blob/master/polynomials.go
impl PolynomExtend for Polynom64 {
    // Irreducible returns true IFF x is irreducible over F_2. This function
    // uses Ben Or's reducibility test.
    //
    // For details see "Tests and Constructions of Irreducible Polynomials over
    // Finite Fields".
    fn irreducible(&self) -> bool {
        for i in 1..=self.degree() / 2 {
            if self.gcd(qp(i, *self)) != 1 {
                return false;
            }
        }
        true
    }

    fn gcd(self, other: Self) -> Self {
        if other == 0 {
            return self;
        }

        if self == 0 {
            return other;
        }

        if self.degree() < other.degree() {
            self.gcd(other.modulo(&self))
        } else {
            other.gcd(self.modulo(&other))
        }
    }

    fn add(self, other: Self) -> Self {
        self ^ other
    }

    fn mulmod(self, other: Self, modulo: Self) -> Self {
        if self == 0 || other == 0 {
            return 0;
        }

        let mut res: Self = 0;
        let mut a = self;
        let mut b = other;

        if b & 1 > 0 {
            res = res.add(a).modulo(&modulo);
        }

        while b != 0 {
            a = (a << 1).modulo(&modulo);
            b >>= 1;
            if b & 1 > 0 {
                res = res.add(a).modulo(&modulo);
            }
        }

        res
    }
}

// qp computes the polynomial (x^(2^p)-x) mod g. This is needed for the
// reducibility test.
fn qp(p: i32, g: Polynom64) -> Polynom64 {
    // start with x
    let mut res: Polynom64 = 2;

    for _ in 0..p {
        // repeatedly square res
        res = res.mulmod(res, g);
    }

    // add x
    res.add(2).modulo(&g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::hasher::hash;
    use insta::assert_ron_snapshot;
    use rand::prelude::*;
    use std::io::{Cursor, repeat};

    use crate::id::Id;

    /// The Splitmask is used to determine if a chunk is a chunk boundary.
    const SIZE: usize = 1 << 20;
    /// The size of a megabyte.
    const MB: usize = 1024 * constants::KB;
    /// The minimum size of a chunk.
    const MIN_SIZE: usize = 512 * constants::KB;
    /// The maximum size of a chunk.
    const MAX_SIZE: usize = 8 * MB;

    fn chunker<R: Read + Send>(reader: R, size_hint: usize) -> ChunkIter<R> {
        let poly = 0x003D_A335_8B4D_C173;
        let rabin = Rabin64::new_with_polynom(6, &poly);
        ChunkIter::new(rabin, SIZE, MIN_SIZE, MAX_SIZE, reader, size_hint).unwrap()
    }

    #[test]
    fn chunk_random() {
        const RANDOM_DATA_SIZE: usize = 32 * 1024 * 1024;
        const SEED: u64 = 23;
        let mut rng = StdRng::seed_from_u64(SEED);
        let mut data = vec![0u8; RANDOM_DATA_SIZE];
        rng.fill_bytes(&mut data);
        let mut reader = Cursor::new(data);
        let chunker = chunker(&mut reader, 0);
        let chunks: Vec<_> = chunker
            .map(|chunk| {
                let chunk = chunk.unwrap();
                (chunk.len(), hash(&chunk))
            })
            .collect();

        assert_ron_snapshot!(chunks);
    }

    /// Chunks of `data` as (length, id), unguided or guided by `parent`'s.
    fn chunks_of(data: &[u8], parent: Option<&[u8]>) -> Vec<(usize, Id, bool)> {
        let mut iter = chunker(Cursor::new(data.to_vec()), data.len());
        if let Some(parent) = parent {
            let guide = Guide::new(chunks_of(parent, None).into_iter().map(|(l, id, _)| (l, id)));
            iter = iter.with_guide(guide);
        }
        let mut out = Vec::new();
        while let Some(chunk) = iter.next() {
            let chunk = chunk.unwrap();
            let known = iter.take_known_id();
            let id = hash(&chunk);
            assert!(known.is_none_or(|k| k == id), "a known id is the chunk's id");
            out.push((chunk.len(), id, known.is_some()));
        }
        out
    }

    #[test]
    fn guided_chunks_are_the_unguided_ones() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut parent = vec![0u8; 24 * MB + 12_345];
        rng.fill_bytes(&mut parent);
        let cuts = |c: &[(usize, Id, bool)]| c.iter().map(|x| (x.0, x.1)).collect::<Vec<_>>();

        // Unchanged: every chunk but the last is taken from the parent.
        let same = chunks_of(&parent, Some(&parent));
        assert_eq!(cuts(&same), cuts(&chunks_of(&parent, None)));
        assert_eq!(same.iter().filter(|c| !c.2).count(), 1);

        // Changed in place, grown, shrunk, with bytes inserted and removed,
        // emptied: the same chunks as without a guide.
        let mut in_place = parent.clone();
        rng.fill_bytes(&mut in_place[10 * MB..10 * MB + 300_000]);
        let mut grown = parent.clone();
        grown.extend_from_slice(&parent[..3 * MB]);
        let shrunk = parent[..17 * MB + 5].to_vec();
        let mut inserted = parent.clone();
        _ = inserted.splice(5 * MB..5 * MB, [1u8, 2, 3]);
        let mut removed = parent.clone();
        _ = removed.drain(9 * MB..9 * MB + 1000);
        let tiny = parent[..1000].to_vec();
        for (name, data) in [
            ("in place", &in_place),
            ("grown", &grown),
            ("shrunk", &shrunk),
            ("inserted", &inserted),
            ("removed", &removed),
            ("tiny", &tiny),
            ("empty", &Vec::new()),
        ] {
            let guided = chunks_of(data, Some(&parent));
            assert_eq!(cuts(&guided), cuts(&chunks_of(data, None)), "{name}");
            assert_eq!(guided.iter().map(|c| c.0).sum::<usize>(), data.len(), "{name}");
        }
        let reused = chunks_of(&in_place, Some(&parent)).iter().filter(|c| c.2).count();
        assert!(reused + 3 >= same.len(), "only the chunks around the change are cut again: {reused}");
    }

    #[test]
    fn chunk_empty() {
        let empty: Vec<u8> = vec![];
        let mut reader = Cursor::new(empty);
        let chunker = chunker(&mut reader, 0);

        assert_eq!(0, chunker.into_iter().count());
    }

    #[test]
    fn chunk_empty_wrong_hint() {
        let empty: Vec<u8> = vec![];
        let mut reader = Cursor::new(empty);
        let chunker = chunker(&mut reader, 100);

        assert_eq!(0, chunker.into_iter().count());
    }

    #[test]
    fn chunk_zeros() {
        let mut reader = repeat(0u8);
        let mut chunker = chunker(&mut reader, usize::MAX);

        let chunk = chunker.next().unwrap().unwrap();
        assert_eq!(MIN_SIZE, chunk.len());
    }
}
