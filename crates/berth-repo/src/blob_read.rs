//! Reading data blobs straight from their packs, for restore.
//!
//! `rustic_core`'s blob read decrypts into a new buffer, decompresses with a
//! streaming decoder that grows a third one, and puts every blob in a shared
//! cache a restore never hits again (each blob of a file is read once). At
//! restore speeds those copies and allocations were a large part of the CPU
//! time. Here one ranged read fills a buffer that is decrypted in place and
//! decompressed into a second one, both kept by the worker between blobs
//! (in a local repository the read is a `pread` of the pack file into that
//! buffer: the backend's read zero-fills a fresh one for every blob), and
//! the result is checked against the blob's SHA-256 id before anyone may
//! write it. The format is
//! restic's: a blob is `nonce (16) || AES-256-CTR ciphertext || Poly1305-AES
//! MAC (16)`, its plaintext zstd-compressed when the index records an
//! uncompressed length.

use std::{fs::File, os::unix::fs::FileExt, path::PathBuf, sync::Arc};

use aes256ctr_poly1305aes::aead::AeadInPlace;
use aes256ctr_poly1305aes::Aes256CtrPoly1305Aes;
use rustic_core::repofile::MasterKey;
use rustic_core::{FileType, WriteBackend};
use sha2::{Digest, Sha256};

/// Overhead restic's encryption adds to a blob: nonce and MAC.
const NONCE: usize = 16;
const MAC: usize = 16;

/// Where a blob lies, from the index.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlobPlace {
    pub(crate) pack: rustic_core::Id,
    pub(crate) offset: u32,
    pub(crate) length: u32,
    /// Set when the blob is compressed: its length before compression.
    pub(crate) uncompressed: Option<u32>,
}

/// Bytes before a blob's plaintext in the slot [`BlobReader::read_into`]
/// fills: room for the nonce of a blob read in place.
pub(crate) const SLOT_FRONT: usize = NONCE;

impl BlobPlace {
    /// The blob's plaintext length (the index's, checked on read).
    pub(crate) fn plain_len(&self) -> usize {
        match self.uncompressed {
            Some(n) => n as usize,
            None => (self.length as usize).saturating_sub(NONCE + MAC),
        }
    }

    /// The length of the slot [`BlobReader::read_into`] needs: the front,
    /// the plaintext and, for a blob read in place, its MAC.
    pub(crate) fn slot_len(&self) -> usize {
        match self.uncompressed {
            Some(n) => SLOT_FRONT + n as usize,
            None => SLOT_FRONT - NONCE + self.length as usize,
        }
    }
}

/// Why a blob could not be read; the caller names the snapshot and file.
#[derive(Debug)]
pub(crate) enum BlobReadError {
    /// The backend could not read the pack range.
    Read(Box<rustic_core::RusticError>),
    /// The pack file of a local repository could not be read.
    Io(PathBuf, std::io::Error),
    /// The bytes are not the blob: MAC, compression, length or hash wrong.
    Corrupt(String),
}

/// Shared by the restore workers: the repository's backend and data key.
pub(crate) struct BlobReader {
    be: Arc<dyn WriteBackend>,
    /// The repository's folder, when it is local.
    dir: Option<PathBuf>,
    cipher: Aes256CtrPoly1305Aes,
}

/// A worker's own buffers, kept between blobs.
pub(crate) struct Scratch {
    /// The sealed blob as read; its length only grows, so a read never
    /// zero-fills it again.
    sealed: Vec<u8>,
    zstd: zstd::bulk::Decompressor<'static>,
    /// The pack file of a local repository read last: a file's blobs mostly
    /// sit in the same few packs, so this saves an open per blob.
    pack: Option<(rustic_core::Id, File)>,
}

impl Scratch {
    pub(crate) fn new() -> std::io::Result<Self> {
        Ok(Self { sealed: Vec::new(), zstd: zstd::bulk::Decompressor::new()?, pack: None })
    }
}

impl BlobReader {
    pub(crate) fn new(be: Arc<dyn WriteBackend>, dir: Option<PathBuf>, key: &MasterKey) -> Result<Self, BlobReadError> {
        let mut raw = Vec::with_capacity(64);
        raw.extend_from_slice(&key.encrypt);
        raw.extend_from_slice(&key.mac.k);
        raw.extend_from_slice(&key.mac.r);
        if raw.len() != 64 {
            return Err(BlobReadError::Corrupt("the repository's master key has the wrong length".into()));
        }
        let cipher = Aes256CtrPoly1305Aes::new(aes256ctr_poly1305aes::Key::from_slice(&raw));
        Ok(Self { be, dir, cipher })
    }

    /// Reads, decrypts, decompresses and checks the blob `id` at `place`,
    /// leaving its plaintext in `slot[SLOT_FRONT..SLOT_FRONT + n]` and
    /// returning `n` ([`BlobPlace::plain_len`]). `slot` must be
    /// [`BlobPlace::slot_len`] long. Its first [`SLOT_FRONT`] bytes are kept
    /// as they were (they usually end the previous blob of the range); the
    /// bytes after the plaintext are clobbered.
    ///
    /// An uncompressed blob is read straight into the slot and decrypted
    /// there, so its bytes are never copied in user space; a compressed one
    /// is decompressed into it.
    pub(crate) fn read_into(
        &self,
        id: &rustic_core::Id,
        place: &BlobPlace,
        scratch: &mut Scratch,
        slot: &mut [u8],
    ) -> Result<usize, BlobReadError> {
        let len = place.length as usize;
        if len < NONCE + MAC {
            return Err(BlobReadError::Corrupt(format!(
                "blob {} is {len} bytes long in the index, too short to be sealed",
                id.to_hex().as_str()
            )));
        }
        let n = place.plain_len();
        debug_assert_eq!(slot.len(), place.slot_len());
        let plain = match place.uncompressed {
            None => {
                let kept: [u8; SLOT_FRONT] = slot[..SLOT_FRONT].try_into().unwrap_or([0; SLOT_FRONT]);
                // The nonce lands in the kept bytes and the MAC after the
                // plaintext: sealed is nonce || body || MAC, exactly len.
                let sealed = &mut slot[SLOT_FRONT - NONCE..SLOT_FRONT - NONCE + len];
                let opened = self.fetch(place, &mut scratch.pack, sealed).and_then(|()| self.open(id, sealed));
                slot[..SLOT_FRONT].copy_from_slice(&kept);
                opened?;
                &slot[SLOT_FRONT..SLOT_FRONT + n]
            }
            Some(_) => {
                if scratch.sealed.len() < len {
                    scratch.sealed.resize(len, 0);
                }
                let sealed = &mut scratch.sealed[..len];
                self.fetch(place, &mut scratch.pack, sealed)?;
                self.open(id, sealed)?;
                let body = &sealed[NONCE..len - MAC];
                let out = &mut slot[SLOT_FRONT..SLOT_FRONT + n];
                let got = scratch.zstd.decompress_to_buffer(body, out).map_err(|e| {
                    BlobReadError::Corrupt(format!("blob {} does not decompress: {e}", id.to_hex().as_str()))
                })?;
                if got != n {
                    return Err(BlobReadError::Corrupt(format!(
                        "blob {} decompresses to {got} bytes, not {n}",
                        id.to_hex().as_str()
                    )));
                }
                &slot[SLOT_FRONT..SLOT_FRONT + n]
            }
        };
        let hash: [u8; 32] = Sha256::digest(plain).into();
        if rustic_core::Id::new(hash) != *id {
            return Err(BlobReadError::Corrupt(format!("blob {} does not match its id", id.to_hex().as_str())));
        }
        Ok(n)
    }

    /// Reads the sealed blob at `place` into `sealed` (its exact length).
    fn fetch(
        &self,
        place: &BlobPlace,
        pack: &mut Option<(rustic_core::Id, File)>,
        sealed: &mut [u8],
    ) -> Result<(), BlobReadError> {
        let len = sealed.len();
        match &self.dir {
            Some(dir) => {
                // restic's layout: data/<first two hex digits>/<pack id>.
                let path = || {
                    let hex = place.pack.to_hex();
                    dir.join("data").join(&hex.as_str()[..2]).join(hex.as_str())
                };
                let file = match pack {
                    Some((id, file)) if *id == place.pack => file,
                    _ => {
                        let file = File::open(path()).map_err(|e| BlobReadError::Io(path(), e))?;
                        &pack.insert((place.pack, file)).1
                    }
                };
                file.read_exact_at(sealed, u64::from(place.offset)).map_err(|e| BlobReadError::Io(path(), e))
            }
            None => {
                let data = self
                    .be
                    .read_partial(FileType::Pack, &place.pack, false, place.offset, place.length)
                    .map_err(BlobReadError::Read)?;
                if data.len() != len {
                    return Err(BlobReadError::Corrupt(format!(
                        "pack {} holds {} bytes at offset {} where the index says {len}",
                        place.pack.to_hex().as_str(),
                        data.len(),
                        place.offset
                    )));
                }
                sealed.copy_from_slice(&data);
                Ok(())
            }
        }
    }

    /// Checks the MAC of `sealed` (nonce || body || MAC) and decrypts the
    /// body in place.
    fn open(&self, id: &rustic_core::Id, sealed: &mut [u8]) -> Result<(), BlobReadError> {
        let (nonce, rest) = sealed.split_at_mut(NONCE);
        let (body, mac) = rest.split_at_mut(rest.len() - MAC);
        self.cipher
            .decrypt_in_place_detached(
                aes256ctr_poly1305aes::aead::Nonce::<Aes256CtrPoly1305Aes>::from_slice(nonce),
                &[],
                body,
                aes256ctr_poly1305aes::aead::Tag::<Aes256CtrPoly1305Aes>::from_slice(mac),
            )
            .map_err(|_| BlobReadError::Corrupt(format!("blob {} fails its MAC check", id.to_hex().as_str())))
    }
}
