//! NAR hashing of store paths (nix-nar serialises, sha2 hashes).

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256, Sha512};

use crate::error::{Error, Result};

/// sha256 (lowercase hex) and size of the NAR serialisation of `path`.
///
/// # Errors
/// When the path cannot be read or archived.
pub fn nar_sha256(path: &Path) -> Result<(String, u64)> {
    let (sha256, _, size) = nar_digests(path, false)?;
    Ok((hex(&sha256), size))
}

/// The SHA-256, the SHA-512 when `sha512` (else `None`) and the size of the
/// NAR serialisation of `path`, in one pass.
///
/// # Errors
/// When the path cannot be read or archived.
pub fn nar_digests(path: &Path, sha512: bool) -> Result<([u8; 32], Option<[u8; 64]>, u64)> {
    let fail = |message: String| Error::Output {
        file: path.to_owned(),
        message,
    };
    let mut encoder = nix_nar::Encoder::builder(path)
        .internal_buffer_size(1 << 20)
        .build()
        .map_err(|e| fail(format!("cannot archive: {e}")))?;
    let mut hasher = Sha256::new();
    let mut long = sha512.then(Sha512::new);
    let mut buffer = vec![0_u8; 1 << 20];
    let mut size = 0_u64;
    loop {
        let n = encoder
            .read(&mut buffer)
            .map_err(|e| fail(format!("cannot archive: {e}")))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        if let Some(long) = &mut long {
            long.update(&buffer[..n]);
        }
        size += n as u64;
    }
    Ok((
        hasher.finalize().into(),
        long.map(|l| l.finalize().into()),
        size,
    ))
}

/// Lowercase hex of `bytes` (the core's).
pub use crate::derivation::store_path::hex;
