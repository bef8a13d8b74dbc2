//! A persistent cache of closure hashes: Nix's `drvHashes` memo made
//! durable, so the post-build hook's cost does not grow with the closure.
//!
//! A `.drv` store path never changes content, and a derivation's hash
//! modulo (classic and modulo meta, input form) is a function of its
//! closure's contents. So the input-form hashes of a derivation can be kept
//! by its drv path — but only when its bytes hash to that path and every
//! derivation below it was checked the same way ([`HashCache::insert`]'s
//! caller decides; see [`crate::hashing::roots_with_cache`]).
//!
//! The cache is 1,024 append-only shard files (by the first two characters
//! of the hash part), so a lookup reads only the shards of the paths asked
//! for: the hook's cost grows neither with the closure nor with the cache.
//! Each shard holds fixed 128-byte records, each with its own checksum:
//! concurrent writers append whole records with one `O_APPEND` write each;
//! a reader skips (and never trusts) a damaged or partial record,
//! resynchronising on the next record's magic; a shard with damage is
//! rewritten from its good records by the next writer; a shard over
//! [`MAX_SHARD_BYTES`] is started afresh. The directory name carries a
//! version (a change of drvmeta's hashing semantics starts anew) and the
//! store directory's hash (stores never mix).
//!
//! Where: `DRVMETA_CACHE_DIR`, else `/nix/var/drvmeta/cache` when writable
//! (the hook runs as root), else `$XDG_CACHE_HOME/drvmeta` or
//! `~/.cache/drvmeta`. Deleting the directory clears it.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::derivation::store_path::{HASH_PART_LEN, hex};
use crate::derivation::{InputHash, StoreDir, StorePath};

/// Size of one record.
pub const RECORD: usize = 128;
/// The largest shard; a larger one is started afresh (the cache holds about
/// 500,000 derivations at most, 64 MiB).
pub const MAX_SHARD_BYTES: u64 = 64 << 10;
const MAGIC: &[u8; 4] = b"dmc1";
/// Bumped whenever what drvmeta computes for a derivation changes.
const VERSION: u32 = 1;
const CHECKED: usize = 112;

/// What the cache keeps of a derivation: its input-form hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachedHashes {
    /// Classic hash modulo, input form.
    pub classic: InputHash,
    /// Hash modulo meta, input form.
    pub modulo_meta: InputHash,
}

fn put_hash(out: &mut [u8], hash: InputHash) {
    let (tag, bytes) = match hash {
        InputHash::Regular(h) => (1, h),
        InputHash::Fixed(h) => (2, h),
        InputHash::Deferred => (3, [0; 32]),
    };
    out[0] = tag;
    out[1..33].copy_from_slice(&bytes);
}

fn get_hash(bytes: &[u8]) -> Option<InputHash> {
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&bytes[1..33]);
    match bytes[0] {
        1 => Some(InputHash::Regular(hash)),
        2 => Some(InputHash::Fixed(hash)),
        3 => Some(InputHash::Deferred),
        _ => None,
    }
}

fn checksum(bytes: &[u8]) -> [u8; 16] {
    let digest = Sha256::digest(bytes);
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

fn encode(path: &StorePath, hashes: &CachedHashes) -> [u8; RECORD] {
    let mut record = [0u8; RECORD];
    record[..4].copy_from_slice(MAGIC);
    record[4..36].copy_from_slice(path.hash_part().as_bytes());
    put_hash(&mut record[36..69], hashes.classic);
    put_hash(&mut record[69..102], hashes.modulo_meta);
    let sum = checksum(&record[..CHECKED]);
    record[CHECKED..].copy_from_slice(&sum);
    record
}

fn decode(record: &[u8]) -> Option<([u8; HASH_PART_LEN], CachedHashes)> {
    if record.len() < RECORD
        || &record[..4] != MAGIC
        || checksum(&record[..CHECKED]) != record[CHECKED..RECORD]
    {
        return None;
    }
    let mut key = [0u8; HASH_PART_LEN];
    key.copy_from_slice(&record[4..36]);
    Some((
        key,
        CachedHashes {
            classic: get_hash(&record[36..69])?,
            modulo_meta: get_hash(&record[69..102])?,
        },
    ))
}

type Key = [u8; HASH_PART_LEN];

fn key_of(path: &StorePath) -> Key {
    let mut key = [0u8; HASH_PART_LEN];
    key.copy_from_slice(path.hash_part().as_bytes());
    key
}

/// One shard, read.
#[derive(Debug, Default)]
struct Shard {
    entries: HashMap<Key, CachedHashes>,
    /// Bytes that were not good records before a good one.
    damaged: usize,
    /// The file's size when read.
    size: u64,
}

impl Shard {
    fn read(file: &Path) -> Self {
        let bytes =
            crate::safe_read::read_regular(file, false, MAX_SHARD_BYTES * 2).unwrap_or_default();
        let mut entries = HashMap::with_capacity(bytes.len() / RECORD);
        // Bad bytes before a good record are damage; after the last one they
        // may be a record being appended right now, so they are only skipped.
        let mut damaged = 0;
        let mut bad = 0;
        let mut pos = 0;
        while pos + RECORD <= bytes.len() {
            if let Some((key, hashes)) = decode(&bytes[pos..pos + RECORD]) {
                entries.insert(key, hashes);
                pos += RECORD;
                damaged += bad;
                bad = 0;
                continue;
            }
            // Resynchronise on the next record's magic.
            let skip =
                memchr::memmem::find(&bytes[pos + 1..], MAGIC).map_or(bytes.len() - pos, |i| i + 1);
            bad += skip;
            pos += skip;
        }
        Self {
            entries,
            damaged,
            size: bytes.len() as u64,
        }
    }
}

/// The cache of one store directory; shards are read when first asked.
#[derive(Debug)]
pub struct HashCache {
    dir: PathBuf,
    shards: HashMap<[u8; 2], Shard>,
}

impl HashCache {
    /// The directory the cache lives in (see the module docs), `None` when
    /// no home is known.
    #[must_use]
    pub fn default_dir() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("DRVMETA_CACHE_DIR") {
            return Some(PathBuf::from(dir));
        }
        let system = Path::new("/nix/var/drvmeta/cache");
        let uid = effective_uid();
        let ours = std::fs::metadata(system).is_ok_and(|m| {
            use std::os::unix::fs::MetadataExt;
            m.is_dir() && Some(m.uid()) == uid
        });
        if uid == Some(0) || ours {
            return Some(system.to_owned());
        }
        std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
            .map(|base| base.join("drvmeta"))
    }

    /// The cache of `store_dir` in `dir`. Nothing is read yet.
    #[must_use]
    pub fn open(dir: &Path, store_dir: &StoreDir) -> Self {
        let store = hex(&Sha256::digest(store_dir.as_str().as_bytes())[..8]);
        Self {
            dir: dir.join(format!("hashes-v{VERSION}-{store}")),
            shards: HashMap::new(),
        }
    }

    /// The directory of this store's shards.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn shard_name(key: &Key) -> [u8; 2] {
        [key[0], key[1]]
    }

    fn shard_file(&self, name: [u8; 2]) -> PathBuf {
        self.dir
            .join(std::str::from_utf8(&name).expect("hash parts are ASCII"))
    }

    fn shard(&mut self, name: [u8; 2]) -> &mut Shard {
        let file = self.shard_file(name);
        self.shards
            .entry(name)
            .or_insert_with(|| Shard::read(&file))
    }

    /// The cached hashes of `path`.
    pub fn get(&mut self, path: &StorePath) -> Option<CachedHashes> {
        let key = key_of(path);
        self.shard(Self::shard_name(&key))
            .entries
            .get(&key)
            .copied()
    }

    /// Bytes of the shards read so far that were not good records (0 when
    /// sound).
    #[must_use]
    pub fn damaged_bytes(&self) -> usize {
        self.shards.values().map(|s| s.damaged).sum()
    }

    /// Add entries that are not cached yet, each checked by the caller
    /// (bytes hash to the path, all inputs checked too): one `O_APPEND`
    /// write per shard; a damaged shard is rewritten from its good records
    /// first, a full one started afresh.
    ///
    /// # Errors
    /// When the directory or a shard cannot be written (a cache is an
    /// optimisation: callers may ignore this).
    pub fn insert(&mut self, new: &[(StorePath, CachedHashes)]) -> io::Result<()> {
        let mut by_shard: HashMap<[u8; 2], Vec<u8>> = HashMap::new();
        for (path, hashes) in new {
            let key = key_of(path);
            let name = Self::shard_name(&key);
            let shard = self.shard(name);
            if shard.entries.insert(key, *hashes).is_none() {
                by_shard
                    .entry(name)
                    .or_default()
                    .extend_from_slice(&encode(path, hashes));
            }
        }
        if by_shard.is_empty() {
            return Ok(());
        }
        create_dir_0755(&self.dir)?;
        for (name, out) in by_shard {
            let file = self.shard_file(name);
            let shard = self.shards.get_mut(&name).expect("read above");
            if shard.damaged > 0 || shard.size + out.len() as u64 > MAX_SHARD_BYTES {
                let full = shard.size + out.len() as u64 > MAX_SHARD_BYTES;
                rewrite(&file, shard, full, &out)?;
                continue;
            }
            let mut handle = OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o644)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&file)?;
            handle.write_all(&out)?;
            shard.size += out.len() as u64;
        }
        Ok(())
    }
}

/// Replace a shard (temp file, rename): with every good entry, or only
/// `new` when it is full.
fn rewrite(file: &Path, shard: &mut Shard, full: bool, new: &[u8]) -> io::Result<()> {
    let dir = file.parent().expect("a shard is in a directory");
    let mut temp = tempfile::Builder::new()
        .prefix(".shard-")
        .tempfile_in(dir)?;
    let bytes = if full {
        new.to_vec()
    } else {
        let mut all = Vec::with_capacity(shard.entries.len() * RECORD);
        for (key, hashes) in &shard.entries {
            let path = StorePath::from_basename(&[&key[..], b"-x"].concat())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            all.extend_from_slice(&encode(&path, hashes));
        }
        all
    };
    temp.write_all(&bytes)?;
    temp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    temp.persist(file).map_err(|e| e.error)?;
    shard.damaged = 0;
    shard.size = bytes.len() as u64;
    Ok(())
}

/// The effective uid: `/proc/self` belongs to it.
fn effective_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// Create `dir` (and parents) with mode 0755 whatever the umask.
fn create_dir_0755(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new().recursive(true).create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(i: u8) -> StorePath {
        // Hash parts that share their first two characters: one shard.
        let mut digest = [0u8; 20];
        digest[0] = i;
        StorePath::from_parts(digest, "x.drv").unwrap()
    }

    fn hashes(i: u8) -> CachedHashes {
        CachedHashes {
            classic: InputHash::Regular([i; 32]),
            modulo_meta: if i.is_multiple_of(2) {
                InputHash::Fixed([i ^ 1; 32])
            } else {
                InputHash::Deferred
            },
        }
    }

    #[test]
    fn entries_survive_reopening_and_damage_is_skipped_then_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let store = StoreDir::default();
        let mut cache = HashCache::open(dir.path(), &store);
        assert_eq!(cache.get(&path(3)), None);
        let first: Vec<_> = (0..10).map(|i| (path(i), hashes(i))).collect();
        cache.insert(&first).unwrap();
        let mut reopened = HashCache::open(dir.path(), &store);
        assert_eq!(reopened.get(&path(3)), Some(hashes(3)));
        assert_eq!(reopened.get(&path(42)), None);
        let shard = |cache: &HashCache| {
            cache
                .shards
                .values()
                .map(|s| s.entries.len())
                .sum::<usize>()
        };
        assert_eq!(shard(&reopened), 10, "all in one shard");

        // Flip a byte of record 4 and put half a record after record 7:
        // both are skipped, the others still read.
        let key = key_of(&path(0));
        let file = reopened.shard_file(HashCache::shard_name(&key));
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[4 * RECORD + 40] ^= 1;
        let half = encode(&path(50), &hashes(50));
        bytes.splice(8 * RECORD..8 * RECORD, half[..60].iter().copied());
        std::fs::write(&file, &bytes).unwrap();
        let mut damaged = HashCache::open(dir.path(), &store);
        assert_eq!(
            damaged.get(&path(4)),
            None,
            "a damaged record is never trusted"
        );
        assert_eq!(damaged.get(&path(9)), Some(hashes(9)));
        assert_eq!(shard(&damaged), 9);
        assert!(damaged.damaged_bytes() >= RECORD);
        // The next writer rewrites the good records.
        damaged.insert(&[(path(11), hashes(11))]).unwrap();
        let mut healed = HashCache::open(dir.path(), &store);
        assert_eq!(healed.get(&path(11)), Some(hashes(11)));
        assert_eq!(healed.damaged_bytes(), 0);
        assert_eq!(shard(&healed), 10);

        // Another store directory has its own shards.
        let mut other = HashCache::open(dir.path(), &StoreDir::new("/other/store").unwrap());
        assert_eq!(other.get(&path(3)), None);
    }

    #[test]
    fn concurrent_writers_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = StoreDir::default();
        std::thread::scope(|scope| {
            for t in 0..8u8 {
                let dir = dir.path();
                let store = &store;
                scope.spawn(move || {
                    for round in 0..20u8 {
                        let mut cache = HashCache::open(dir, store);
                        let i = t * 20 + round;
                        cache.insert(&[(path(i), hashes(i))]).unwrap();
                    }
                });
            }
        });
        let mut cache = HashCache::open(dir.path(), &store);
        for i in 0..160 {
            assert_eq!(cache.get(&path(i)), Some(hashes(i)), "entry {i}");
        }
        assert_eq!(cache.damaged_bytes(), 0);
    }
}
