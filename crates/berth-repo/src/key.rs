//! The repository's password key, re-written with restic's cost.
//!
//! rustic_core 0.13 writes key files with scrypt N=2^17, r=8, p=1 and no way
//! to choose: every open of the repository then costs about 0.45 s and
//! 128 MiB here, which was most of the time and memory of an unchanged
//! snapshot (and 128 MiB was the peak memory of a first snapshot, which
//! creates the repository). restic calibrates its own keys to about half a
//! second and 60 MiB at most, and chose N=2^15 on this machine. berth
//! therefore creates a repository from a master key of its own and writes
//! the one key file itself, with N=2^15, r=8, p=1 (restic's format: a
//! 64-byte scrypt output split into an AES-256-CTR key and a Poly1305-AES
//! key, the master key's JSON encrypted as nonce || ciphertext || MAC);
//! `rustic_core` then writes only the config. restic and rustic read it
//! like any key of theirs.

use aes256ctr_poly1305aes::aead::Aead;
use aes256ctr_poly1305aes::Aes256CtrPoly1305Aes;
use rustic_core::repofile::{KeyFile, MasterKey};
use rustic_core::{FileType, Id, RepositoryBackends};
use sha2::{Digest, Sha256};

use crate::error::RepoError;

/// log2 of scrypt's N: restic's calibrated choice here (32 MiB with r=8).
const LOG_N: u8 = 15;
const R: u32 = 8;
const P: u32 = 1;

/// Writes a key file that opens `master` with `password` at restic's cost.
pub(crate) fn write_key(
    backends: &RepositoryBackends,
    master: &MasterKey,
    password: &str,
    location: &str,
) -> Result<(), RepoError> {
    let be = backends.repository();
    let fail = |what: &str, detail: String| RepoError::Other { detail: format!("{what}: {detail}") };

    let mut salt = vec![0u8; 64];
    fill_random(&mut salt);
    let params = scrypt::Params::new(LOG_N, R, P).map_err(|e| fail("scrypt parameters", e.to_string()))?;
    let mut derived = [0u8; 64];
    scrypt::scrypt(password.as_bytes(), &salt, &params, &mut derived).map_err(|e| fail("scrypt", e.to_string()))?;
    let plain = serde_json::to_vec(master).map_err(|e| fail("master key", e.to_string()))?;
    let mut nonce = [0u8; 16];
    fill_random(&mut nonce);
    let cipher = Aes256CtrPoly1305Aes::new(aes256ctr_poly1305aes::Key::from_slice(&derived));
    let sealed = cipher
        .encrypt(aes256ctr_poly1305aes::aead::Nonce::<Aes256CtrPoly1305Aes>::from_slice(&nonce), plain.as_slice())
        .map_err(|e| fail("encrypting the master key", e.to_string()))?;
    let mut data = nonce.to_vec();
    data.extend_from_slice(&sealed);

    let key = KeyFile {
        hostname: None,
        username: None,
        created: Some(rustic_core::jiff::Zoned::now()),
        kdf: "scrypt".to_owned(),
        n: 1 << LOG_N,
        r: R,
        p: P,
        data,
        salt,
    };
    let bytes = serde_json::to_vec(&key).map_err(|e| fail("key file", e.to_string()))?;
    // A key file's id is the SHA-256 of its bytes, as restic names them.
    let id: Id = hex::encode(Sha256::digest(&bytes))
        .parse()
        .map_err(|e: Box<rustic_core::RusticError>| RepoError::from_rustic(location, &e))?;
    be.write_bytes(FileType::Key, &id, false, bytes.into()).map_err(|e| RepoError::from_rustic(location, &e))
}

fn fill_random(buf: &mut [u8]) {
    use std::io::Read;
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(buf)).expect("/dev/urandom is readable");
}
