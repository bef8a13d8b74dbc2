//! Store directories, store paths and the fingerprints Nix hashes into them.

use std::fmt;

use sha2::{Digest, Sha256};

use super::error::StorePathError;
use super::nixbase32;

/// Length of a store path's hash part (Nix base-32 of 20 bytes).
pub const HASH_PART_LEN: usize = 32;

/// A store directory such as `/nix/store` (no trailing slash). Shared:
/// every parsed derivation and loaded node holds one, and a clone is a
/// reference count.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StoreDir(std::sync::Arc<str>);

impl Default for StoreDir {
    fn default() -> Self {
        Self("/nix/store".into())
    }
}

impl fmt::Display for StoreDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StoreDir {
    /// A store directory from an absolute path; trailing slashes are removed.
    ///
    /// # Errors
    /// When `path` is not absolute or holds characters Nix rejects (`:`).
    pub fn new(path: impl Into<String>) -> Result<Self, StorePathError> {
        let mut path: String = path.into();
        while path.len() > 1 && path.ends_with('/') {
            path.pop();
        }
        if !path.starts_with('/') || path.len() < 2 || path.contains(':') {
            return Err(StorePathError::BadStoreDir(path));
        }
        Ok(Self(path.into()))
    }

    /// The directory as a string.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parse an absolute store path in this store directory.
    ///
    /// # Errors
    /// When `path` is not `<store dir>/<hash>-<name>`.
    pub fn parse_path(&self, path: &[u8]) -> Result<StorePath, StorePathError> {
        let base = path
            .strip_prefix(self.0.as_bytes())
            .and_then(|rest| rest.strip_prefix(b"/"))
            .ok_or_else(|| StorePathError::NotInStore {
                path: String::from_utf8_lossy(path).into_owned(),
                store_dir: self.0.to_string(),
            })?;
        StorePath::from_basename(base)
    }

    /// `path` as an absolute path in this store.
    #[must_use]
    pub fn display(&self, path: &StorePath) -> String {
        path.to_absolute_path_in(self)
    }

    /// The store path Nix gives a fingerprint: `<type>:sha256:<hex>:<store
    /// dir>:<name>`, hashed, XOR-folded to 20 bytes.
    ///
    /// # Errors
    /// When `name` is not a valid store path name.
    pub fn make_store_path(
        &self,
        kind: &str,
        algorithm: &str,
        digest: &[u8],
        name: &str,
    ) -> Result<StorePath, StorePathError> {
        self.store_path_of(|h| h.update(kind.as_bytes()), algorithm, digest, name)
    }

    /// [`Self::make_store_path`] with the type written into the hasher by
    /// `kind` (no string is built for it).
    fn store_path_of(
        &self,
        kind: impl FnOnce(&mut Sha256),
        algorithm: &str,
        digest: &[u8],
        name: &str,
    ) -> Result<StorePath, StorePathError> {
        validate_name(name.as_bytes())?;
        StorePath::from_parts(self.fingerprint(kind, algorithm, digest, name), name)
    }

    /// The 20-byte hash of a store path's fingerprint (see
    /// [`Self::make_store_path`]).
    fn fingerprint(
        &self,
        kind: impl FnOnce(&mut Sha256),
        algorithm: &str,
        digest: &[u8],
        name: &str,
    ) -> [u8; 20] {
        let mut hex_digest = [0u8; 128];
        let hex_digest = &mut hex_digest[..digest.len() * 2];
        hex_into(digest, hex_digest);
        let mut hasher = Sha256::new();
        kind(&mut hasher);
        hasher.update(b":");
        hasher.update(algorithm.as_bytes());
        hasher.update(b":");
        hasher.update(&*hex_digest);
        hasher.update(b":");
        hasher.update(self.0.as_bytes());
        hasher.update(b":");
        hasher.update(name.as_bytes());
        compress(&hasher.finalize())
    }

    /// The path of a text file (a `.drv`) with these contents and
    /// references: type `text:<ref>:<ref>…` (references sorted).
    ///
    /// # Errors
    /// When `name` is not a valid store path name.
    pub fn make_text_path<'a>(
        &self,
        name: &str,
        contents: &[u8],
        references: impl IntoIterator<Item = &'a StorePath>,
    ) -> Result<StorePath, StorePathError> {
        let digest = Sha256::digest(contents);
        self.make_text_path_from_digest(name, &digest, references)
    }

    /// [`Self::make_text_path`] given the SHA-256 of the contents.
    ///
    /// # Errors
    /// When `name` is not a valid store path name.
    pub fn make_text_path_from_digest<'a>(
        &self,
        name: &str,
        digest: &[u8],
        references: impl IntoIterator<Item = &'a StorePath>,
    ) -> Result<StorePath, StorePathError> {
        let refs = sorted_unique(references);
        self.store_path_of(|h| self.text_kind(h, &refs), "sha256", digest, name)
    }

    /// Whether `path` is the path of a text file with these contents and
    /// references ([`Self::make_text_path`] without building the path).
    #[must_use]
    pub fn is_text_path<'a>(
        &self,
        path: &StorePath,
        contents: &[u8],
        references: impl IntoIterator<Item = &'a StorePath>,
    ) -> bool {
        let digest = Sha256::digest(contents);
        let refs = sorted_unique(references);
        let mut hash = [0u8; HASH_PART_LEN];
        nixbase32::encode_into(
            &self.fingerprint(|h| self.text_kind(h, &refs), "sha256", &digest, &path.name),
            &mut hash,
        );
        hash == path.hash
    }

    /// Write a text path's type, `text:<ref>:<ref>…`, into `hasher`.
    fn text_kind(&self, hasher: &mut Sha256, refs: &[&StorePath]) {
        hasher.update(b"text");
        for r in refs {
            hasher.update(b":");
            hasher.update(self.0.as_bytes());
            hasher.update(b"/");
            hasher.update(r.hash);
            hasher.update(b"-");
            hasher.update(r.name.as_bytes());
        }
    }

    /// The path of input-addressed output `output` of a derivation named
    /// `drv_name` whose masked hash modulo is `hash`.
    ///
    /// # Errors
    /// When the output path name is not a valid store path name.
    pub fn make_output_path(
        &self,
        hash: &[u8; 32],
        output: &str,
        drv_name: &str,
    ) -> Result<StorePath, StorePathError> {
        let kind = |hasher: &mut Sha256| {
            hasher.update(b"output:");
            hasher.update(output.as_bytes());
        };
        if output == "out" {
            self.store_path_of(kind, "sha256", hash, drv_name)
        } else {
            self.store_path_of(kind, "sha256", hash, &output_path_name(drv_name, output))
        }
    }
}

/// A hasher for keys that are digests already (store path hash parts,
/// placeholders): each write is folded in by its first 8 bytes, which
/// spreads them as well as SipHash at a fraction of the cost. Not for keys
/// an adversary picks to collide: a closure's store paths are digests of
/// their contents, and a forged collision costs only a slower lookup.
#[derive(Default)]
pub struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut first = [0u8; 8];
        let n = bytes.len().min(8);
        first[..n].copy_from_slice(&bytes[..n]);
        self.0 = (self.0 ^ u64::from_le_bytes(first)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn write_usize(&mut self, _length: usize) {
        // Slice length prefixes: the keys' lengths say nothing.
    }
}

/// A map keyed by store path, hashed by [`DigestHasher`].
pub type PathMap<V> =
    std::collections::HashMap<StorePath, V, std::hash::BuildHasherDefault<DigestHasher>>;

/// References sorted and deduplicated for a text path's type. Store paths
/// order as their absolute forms do (one store directory, then hash part
/// and name), so they are sorted as themselves and written straight into
/// the fingerprint.
fn sorted_unique<'a>(references: impl IntoIterator<Item = &'a StorePath>) -> Vec<&'a StorePath> {
    let mut refs: Vec<&StorePath> = references.into_iter().collect();
    refs.sort_unstable();
    refs.dedup();
    refs
}

/// The name of output `output` of a derivation named `drv_name`: the
/// derivation's name for `out`, `<name>-<output>` otherwise.
#[must_use]
pub fn output_path_name(drv_name: &str, output: &str) -> String {
    if output == "out" {
        drv_name.to_owned()
    } else {
        format!("{drv_name}-{output}")
    }
}

/// XOR-fold a digest to the 20 bytes of a store path hash.
#[must_use]
pub fn compress(digest: &[u8]) -> [u8; 20] {
    let mut out = [0u8; 20];
    for (i, byte) in digest.iter().enumerate() {
        out[i % 20] ^= byte;
    }
    out
}

/// Lowercase hexadecimal.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    let mut out = vec![0; bytes.len() * 2];
    hex_into(bytes, &mut out);
    String::from_utf8(out).expect("hex digits are ASCII")
}

/// [`hex`] into `out`, which must be twice as long as `bytes`.
///
/// # Panics
/// When `out` has another length.
pub fn hex_into(bytes: &[u8], out: &mut [u8]) {
    /// The two digits of every byte.
    const PAIRS: [[u8; 2]; 256] = {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut pairs = [[0; 2]; 256];
        let mut b = 0;
        while b < 256 {
            pairs[b] = [DIGITS[b >> 4], DIGITS[b & 15]];
            b += 1;
        }
        pairs
    };
    assert_eq!(out.len(), bytes.len() * 2, "two hex digits per byte");
    for (pair, &b) in out.chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&PAIRS[usize::from(b)]);
    }
}

/// Check a store path name: 1 to 211 bytes of `A-Za-z0-9+-._?=`, not
/// starting with `.`.
///
/// # Errors
/// Naming the first offending byte.
pub fn validate_name(name: &[u8]) -> Result<(), StorePathError> {
    let bad = |reason: &str| StorePathError::BadName {
        name: String::from_utf8_lossy(name).into_owned(),
        reason: reason.to_owned(),
    };
    if name.is_empty() {
        return Err(bad("it is empty"));
    }
    if name.len() > 211 {
        return Err(bad("it is longer than 211 bytes"));
    }
    if name[0] == b'.' {
        return Err(bad("it starts with '.'"));
    }
    if let Some(c) = name.iter().find(|&&c| !is_name_char(c)) {
        return Err(bad(&format!(
            "byte {:?} is not allowed (only A-Z a-z 0-9 + - . _ ? =)",
            char::from(*c)
        )));
    }
    Ok(())
}

/// Whether `c` may appear in a store path name.
#[must_use]
pub const fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.' | b'_' | b'?' | b'=')
}

/// A store path without its store directory: a 20-byte hash and a name.
///
/// Ordered like Nix orders store paths: by base name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorePath {
    /// The hash part as written (32 Nix base-32 characters): kept as text so
    /// that the derived order (hash part, then name) is base-name order.
    hash: [u8; HASH_PART_LEN],
    name: Box<str>,
}

impl fmt::Debug for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorePath({})", self.to_basename())
    }
}

impl StorePath {
    /// Parse `<hash>-<name>`.
    ///
    /// # Errors
    /// When the hash part or the name is malformed.
    pub fn from_basename(base: &[u8]) -> Result<Self, StorePathError> {
        let text = || String::from_utf8_lossy(base).into_owned();
        if base.len() < HASH_PART_LEN + 2 || base[HASH_PART_LEN] != b'-' {
            return Err(StorePathError::BadBaseName(text()));
        }
        let mut hash = [0u8; HASH_PART_LEN];
        hash.copy_from_slice(&base[..HASH_PART_LEN]);
        // 32 digits are exactly 160 bits: any 32 digits of the alphabet
        // decode to 20 bytes (`decode` agrees, tested below).
        if !hash.iter().all(|&c| nixbase32::is_digit(c)) {
            return Err(StorePathError::BadHashPart(text()));
        }
        let name = &base[HASH_PART_LEN + 1..];
        validate_name(name)?;
        Ok(Self {
            hash,
            name: std::str::from_utf8(name)
                .expect("validated names are ASCII")
                .into(),
        })
    }

    /// A store path from its parts.
    ///
    /// # Errors
    /// When `name` is not a valid store path name.
    pub fn from_parts(digest: [u8; 20], name: &str) -> Result<Self, StorePathError> {
        validate_name(name.as_bytes())?;
        let mut hash = [0u8; HASH_PART_LEN];
        nixbase32::encode_into(&digest, &mut hash);
        Ok(Self {
            hash,
            name: name.into(),
        })
    }

    /// The hash part, 32 Nix base-32 characters.
    #[must_use]
    pub fn hash_part(&self) -> &str {
        std::str::from_utf8(&self.hash).expect("hash parts are ASCII")
    }

    /// The name after the hash part.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the name ends in `.drv`.
    #[must_use]
    pub fn is_derivation(&self) -> bool {
        self.name.ends_with(".drv")
    }

    /// `<hash>-<name>`.
    #[must_use]
    pub fn to_basename(&self) -> String {
        let mut out = String::with_capacity(HASH_PART_LEN + 1 + self.name.len());
        out.push_str(self.hash_part());
        out.push('-');
        out.push_str(&self.name);
        out
    }

    /// `<store dir>/<hash>-<name>`.
    #[must_use]
    pub fn to_absolute_path_in(&self, store_dir: &StoreDir) -> String {
        let mut out =
            String::with_capacity(store_dir.0.len() + 2 + HASH_PART_LEN + self.name.len());
        out.push_str(&store_dir.0);
        out.push('/');
        out.push_str(self.hash_part());
        out.push('-');
        out.push_str(&self.name);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hash part is accepted exactly when Nix's base-32 decodes it to 20
    /// bytes: every text of 32 characters over the alphabet and a few
    /// others, at random.
    #[test]
    fn hash_parts_are_accepted_as_they_decode() {
        const CHARS: &[u8] = b"0123456789abcdfghijklmnpqrsvwxyzeotuA-_.";
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..100_000 {
            let mut hash = [0u8; HASH_PART_LEN];
            for c in &mut hash {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                // Mostly valid digits, so that both answers occur.
                let pick = usize::try_from(state % 1000).unwrap();
                *c = CHARS[if pick < 995 {
                    pick % 32
                } else {
                    pick % CHARS.len()
                }];
            }
            let mut base = hash.to_vec();
            base.extend_from_slice(b"-name");
            assert_eq!(
                StorePath::from_basename(&base).is_ok(),
                nixbase32::decode::<20>(&hash).is_some(),
                "{}",
                String::from_utf8_lossy(&hash)
            );
        }
    }

    #[test]
    fn parses_and_prints() {
        let dir = StoreDir::default();
        let path = dir
            .parse_path(b"/nix/store/c015dhfh5l0lp6wxyvdn7bmwhbbr6hr9-dep2.drv")
            .unwrap();
        assert_eq!(path.name(), "dep2.drv");
        assert!(path.is_derivation());
        assert_eq!(path.hash_part(), "c015dhfh5l0lp6wxyvdn7bmwhbbr6hr9");
        assert_eq!(
            path.to_absolute_path_in(&dir),
            "/nix/store/c015dhfh5l0lp6wxyvdn7bmwhbbr6hr9-dep2.drv"
        );
        assert!(dir.parse_path(b"/nix/store/short-x").is_err());
        assert!(
            dir.parse_path(b"/other/c015dhfh5l0lp6wxyvdn7bmwhbbr6hr9-x")
                .is_err()
        );
        assert!(
            dir.parse_path(b"/nix/store/c015dhfh5l0lp6wxyvdn7bmwhbbr6hr9-a/b")
                .is_err()
        );
        assert!(
            dir.parse_path(b"/nix/store/e015dhfh5l0lp6wxyvdn7bmwhbbr6hr9-x")
                .is_err()
        );
    }

    #[test]
    fn order_is_base_name_order() {
        let mut paths: Vec<StorePath> = [
            "zz15dhfh5l0lp6wxyvdn7bmwhbbr6hr9-a",
            "0015dhfh5l0lp6wxyvdn7bmwhbbr6hr9-b",
            "0015dhfh5l0lp6wxyvdn7bmwhbbr6hr9-a",
            "1015dhfh5l0lp6wxyvdn7bmwhbbr6hr0-a",
            "1015dhfh5l0lp6wxyvdn7bmwhbbr6hrz-a",
        ]
        .iter()
        .map(|b| StorePath::from_basename(b.as_bytes()).unwrap())
        .collect();
        paths.sort();
        let names: Vec<String> = paths.iter().map(StorePath::to_basename).collect();
        let mut expected = names.clone();
        expected.sort();
        assert_eq!(names, expected);
    }
}
