//! The record store (DESIGN.md §3.3): a directory laid out like a binary
//! cache, `<root>/<output-hash-part>/<drv-hash-part>.<content>.dsse.json`,
//! where `<content>` is the first 32 hex digits of the file's SHA-256.
//!
//! Several records per output coexist (different builders, rebuilds): a
//! record's name follows from its own bytes, so a file planted at any
//! other name — forged, empty, a symlink, another builder's record — never
//! blocks a genuine one. Writes are atomic (a temporary file in the same
//! directory, fsync, rename, directory fsync); directories are 0755 and
//! files 0644 whatever the umask; temporary files of killed writers are
//! removed by the next writer. Readers open regular files only, without
//! following a final symlink or blocking, with a size limit. Records of
//! drvmeta before signing (`<drv-hash-part>.intoto.json`, a bare Statement)
//! are still read, as unsigned.

use std::io::Write;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest as _, Sha256};

use super::remote::HttpStore;
use crate::derivation::store_path::hex;
use crate::error::{Error, Result};

/// The system-wide store.
pub const SYSTEM_ROOT: &str = "/nix/var/drvmeta/records";
/// File name suffix of a record (a DSSE envelope).
pub const SUFFIX: &str = ".dsse.json";
/// File name suffix of a record written before records were signed.
pub const LEGACY_SUFFIX: &str = ".intoto.json";
/// The largest record drvmeta reads.
pub const RECORD_LIMIT: u64 = 16 << 20;
/// A writer's temporary file older than this belongs to a killed writer.
const STALE_TEMP: Duration = Duration::from_secs(600);

/// A record store rooted at a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordStore {
    root: PathBuf,
}

/// What writing a record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The record is new.
    New,
    /// The same record (same bytes) was there already.
    Existed,
}

/// The effective uid (`/proc/self` belongs to it).
fn effective_uid() -> Option<u32> {
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

fn state_dir() -> PathBuf {
    std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("drvmeta/records")
}

/// Create `dir` and its missing parents with mode 0755, whatever the umask.
fn create_dirs(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dirs(parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// The directory that files records by the digest of a kernel variant they
/// attest (`v-<64 hex>`), beside the output hash parts.
#[must_use]
pub fn variant_dir(digest: &str) -> String {
    format!("v-{digest}")
}

/// The content part of a record's file name.
#[must_use]
pub fn content_name(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes)[..16])
}

impl RecordStore {
    /// A store at `root`.
    #[must_use]
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Where writers go by default: `/nix/var/drvmeta/records` for root or
    /// when that directory is the caller's, else
    /// `$XDG_STATE_HOME/drvmeta/records` (`~/.local/state/…`). Nothing is
    /// created or probed.
    #[must_use]
    pub fn default_write_root() -> PathBuf {
        let system = Path::new(SYSTEM_ROOT);
        let uid = effective_uid();
        let ours = std::fs::metadata(system).is_ok_and(|m| m.is_dir() && Some(m.uid()) == uid);
        if uid == Some(0) || ours {
            system.to_owned()
        } else {
            state_dir()
        }
    }

    /// Where readers look by default: the system store whenever it is
    /// readable (an unprivileged user verifies against what the builders
    /// recorded, not against a store of their own), else the caller's.
    #[must_use]
    pub fn default_read_root() -> PathBuf {
        let system = Path::new(SYSTEM_ROOT);
        if std::fs::read_dir(system).is_ok() {
            system.to_owned()
        } else {
            state_dir()
        }
    }

    /// The store's root directory.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Warnings about the store itself: a root that users other than its
    /// owner (or root) can write, where anyone could plant records.
    #[must_use]
    pub fn warnings(&self) -> Vec<String> {
        match std::fs::metadata(&self.root) {
            Ok(meta) if meta.mode() & 0o022 != 0 => vec![format!(
                "{}: the record store is writable by others (mode {:o}): anyone can add records \
                 there; trust only signed ones",
                self.root.display(),
                meta.mode() & 0o7777
            )],
            _ => Vec::new(),
        }
    }

    /// Where the record with these bytes of derivation `drv_hash` for
    /// output `output_hash` (both 32-character hash parts) lives.
    #[must_use]
    pub fn path_of(&self, output_hash: &str, drv_hash: &str, record: &[u8]) -> PathBuf {
        self.root
            .join(output_hash)
            .join(format!("{drv_hash}.{}{SUFFIX}", content_name(record)))
    }

    /// Write `record` for `output_hash`/`drv_hash`. Other records of the
    /// same output and derivation stay; a file already at this record's
    /// name that is not this record (planted, damaged) is replaced.
    ///
    /// # Errors
    /// [`Error::Output`] when the directory or file cannot be written.
    pub fn write(
        &self,
        output_hash: &str,
        drv_hash: &str,
        record: &[u8],
    ) -> Result<(PathBuf, Written)> {
        let name = format!("{drv_hash}.{}{SUFFIX}", content_name(record));
        self.write_named(output_hash, &name, record)
    }

    /// Write `bytes` as file `name` of directory `dir` (an output hash part
    /// or a [`variant_dir`]), atomically, unless these bytes are there.
    ///
    /// # Errors
    /// [`Error::Output`] when the directory or file cannot be written.
    pub fn write_named(&self, dir: &str, name: &str, bytes: &[u8]) -> Result<(PathBuf, Written)> {
        let target = self.root.join(dir).join(name);
        let dir = target.parent().expect("a record has a directory");
        let error = |file: &Path, message: String| Error::Output {
            file: file.to_owned(),
            message,
        };
        if crate::safe_read::read_regular(&target, false, RECORD_LIMIT)
            .is_ok_and(|existing| existing == bytes)
        {
            return Ok((target, Written::Existed));
        }
        create_dirs(dir)
            .map_err(|e| error(dir, format!("cannot create the records directory: {e}")))?;
        remove_stale_temps(dir);
        let mut temp = tempfile::Builder::new()
            .prefix(".drvmeta-")
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(|e| error(dir, format!("cannot write a record here: {e}")))?;
        temp.write_all(bytes)
            .and_then(|()| {
                temp.as_file()
                    .set_permissions(std::fs::Permissions::from_mode(0o644))
            })
            .and_then(|()| temp.as_file().sync_all())
            .map_err(|e| error(&target, format!("cannot write the record: {e}")))?;
        // Rename over whatever is at this name: only this record belongs
        // there (a symlink is replaced, not followed).
        temp.persist(&target).map_err(|e| {
            error(
                &target,
                format!("cannot move the record into place: {}", e.error),
            )
        })?;
        if let Ok(dir) = std::fs::File::open(dir) {
            let _ = dir.sync_all();
        }
        Ok((target, Written::New))
    }

    /// The record directories of the store: output hash parts and
    /// [`variant_dir`]s, sorted.
    ///
    /// # Errors
    /// When the root exists but cannot be read.
    pub fn dirs(&self) -> Result<Vec<String>> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(Error::Output {
                    file: self.root.clone(),
                    message: format!("cannot read the record store: {e}"),
                });
            }
        };
        let mut dirs: Vec<String> = entries
            .filter_map(std::result::Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| is_record_dir(name))
            .collect();
        dirs.sort();
        Ok(dirs)
    }

    /// Every record file for output `output_hash` (current and legacy),
    /// sorted. Entries that are not files are listed too: reading them
    /// says what they are.
    ///
    /// # Errors
    /// When the directory exists but cannot be read.
    pub fn records_for(&self, output_hash: &str) -> Result<Vec<PathBuf>> {
        let dir = self.root.join(output_hash);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(Error::Output {
                    file: dir,
                    message: format!("cannot read the records directory: {e}"),
                });
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(std::result::Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                let name = p.to_string_lossy();
                name.ends_with(SUFFIX) || name.ends_with(LEGACY_SUFFIX)
            })
            .collect();
        files.sort();
        Ok(files)
    }
}

/// Whether `name` is a record directory's name: a store path hash part
/// (32 Nix base-32 characters) or a [`variant_dir`].
#[must_use]
pub fn is_record_dir(name: &str) -> bool {
    let hash_part = name.len() == 32
        && name
            .bytes()
            .all(|b| crate::derivation::nixbase32::ALPHABET.contains(&b));
    let variant = name
        .strip_prefix("v-")
        .is_some_and(|d| d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit()));
    hash_part || variant
}

/// Whether `name` is a record file's name (current or legacy).
fn is_record_name(name: &str) -> bool {
    name.ends_with(SUFFIX) || name.ends_with(LEGACY_SUFFIX)
}

/// Where records are: a directory or an HTTP(S) server.
#[derive(Debug, Clone)]
pub enum Location {
    /// A directory (given as a path or a `file://` URL).
    Dir(RecordStore),
    /// An `http://` or `https://` URL ([`HttpStore`]).
    Http(HttpStore),
}

/// One record file found in a [`Sources`].
#[derive(Debug, Clone)]
pub struct Found {
    /// Where it is: a path or a URL.
    pub location: String,
    /// Its file name.
    pub name: String,
    /// Its bytes, or why they could not be read.
    pub bytes: std::result::Result<Vec<u8>, String>,
}

impl Location {
    /// A directory, `file:///abs/path`, `http://…` or `https://…`.
    ///
    /// # Errors
    /// [`Error::StoreLocation`] for a relative `file://` URL or another
    /// scheme (`s3://` included: no S3-compatible server could be run and
    /// tested here; serve the layout over HTTP instead).
    pub fn parse(text: &str) -> Result<Self> {
        let fail = |message: &str| Error::StoreLocation {
            location: text.to_owned(),
            message: message.to_owned(),
        };
        if let Some(path) = text.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(fail("a file:// URL needs an absolute path (file:///…)"));
            }
            return Ok(Self::Dir(RecordStore::new(path)));
        }
        if text.starts_with("http://") || text.starts_with("https://") {
            return Ok(Self::Http(HttpStore::new(text)));
        }
        if let Some((scheme, _)) = text.split_once("://") {
            return Err(fail(&if scheme == "s3" {
                "s3:// record stores are not supported; serve the store over HTTP(S) \
                 (docs/record-stores.md)"
                    .to_owned()
            } else {
                format!(
                    "unsupported scheme {scheme}://: a record store is a directory, file://, \
                     http:// or https://"
                )
            }));
        }
        Ok(Self::Dir(RecordStore::new(text)))
    }

    /// The directory or URL.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Self::Dir(store) => store.root().display().to_string(),
            Self::Http(store) => store.url().to_owned(),
        }
    }

    /// The record files of directory `dir` (an output hash part or a
    /// [`variant_dir`]), sorted by name.
    ///
    /// # Errors
    /// When the directory or listing cannot be read.
    pub fn list(&self, dir: &str) -> Result<Vec<String>> {
        let mut names = match self {
            Self::Dir(store) => store
                .records_for(dir)?
                .iter()
                .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
                .collect(),
            Self::Http(store) => store.list(dir)?,
        };
        names.retain(|name| is_record_name(name));
        names.sort();
        Ok(names)
    }

    /// Read file `name` of directory `dir`.
    #[must_use]
    pub fn read(&self, dir: &str, name: &str) -> Found {
        let (location, bytes) = match self {
            Self::Dir(store) => {
                let file = store.root().join(dir).join(name);
                let bytes = crate::safe_read::read_regular(&file, false, RECORD_LIMIT)
                    .map_err(|e| format!("cannot read: {e}"));
                (file.display().to_string(), bytes)
            }
            Self::Http(store) => {
                let bytes = match store.get(dir, name, RECORD_LIMIT) {
                    Ok(Some(bytes)) => Ok(bytes),
                    Ok(None) => Err("listed but no longer served".to_owned()),
                    Err(e) => Err(format!("cannot read: {e}")),
                };
                (store.url_of(dir, name), bytes)
            }
        };
        Found {
            location,
            name: name.to_owned(),
            bytes,
        }
    }

    /// Store `bytes` as file `name` of directory `dir`; `true` when they
    /// were not there yet.
    ///
    /// # Errors
    /// When writing or uploading fails.
    pub fn put(&self, dir: &str, name: &str, bytes: &[u8]) -> Result<bool> {
        match self {
            Self::Dir(store) => Ok(store.write_named(dir, name, bytes)?.1 == Written::New),
            Self::Http(store) => store.put(dir, name, bytes, RECORD_LIMIT),
        }
    }
}

/// The record stores a reader looks in, in order: a record found in
/// several (same name, so same bytes) is read from the first.
#[derive(Debug, Clone)]
pub struct Sources {
    locations: Vec<Location>,
}

impl Sources {
    /// Read from `locations`, in this order.
    #[must_use]
    pub fn new(locations: Vec<Location>) -> Self {
        Self { locations }
    }

    /// One directory store.
    #[must_use]
    pub fn dir(store: RecordStore) -> Self {
        Self::new(vec![Location::Dir(store)])
    }

    /// The stores, in order.
    #[must_use]
    pub fn locations(&self) -> &[Location] {
        &self.locations
    }

    /// The stores, for messages: `a, b`.
    #[must_use]
    pub fn describe(&self) -> String {
        let all: Vec<String> = self.locations.iter().map(Location::describe).collect();
        all.join(", ")
    }

    /// Every record of directory `dir` in any of the stores, each read.
    ///
    /// # Errors
    /// When a store's directory or listing cannot be read.
    pub fn found(&self, dir: &str) -> Result<Vec<Found>> {
        let mut seen = std::collections::HashSet::new();
        let mut found = Vec::new();
        for location in &self.locations {
            for name in location.list(dir)? {
                if seen.insert(name.clone()) {
                    found.push(location.read(dir, &name));
                }
            }
        }
        Ok(found)
    }

    /// Warnings about the directory stores ([`RecordStore::warnings`]).
    #[must_use]
    pub fn warnings(&self) -> Vec<String> {
        self.locations
            .iter()
            .filter_map(|l| match l {
                Location::Dir(store) => Some(store.warnings()),
                Location::Http(_) => None,
            })
            .flatten()
            .collect()
    }
}

/// Remove `.drvmeta-*.tmp` files of writers killed long enough ago.
fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.filter_map(std::result::Result::ok) {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with(".drvmeta-") && name.ends_with(".tmp")) {
            continue;
        }
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|modified| now.duration_since(modified).ok())
            .is_some_and(|age| age > STALE_TEMP);
        if stale {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: &str = "0aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const DRV: &str = "0bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn records_coexist_and_planted_files_never_block() {
        let dir = tempfile::tempdir().unwrap();
        let store = RecordStore::new(dir.path().join("records"));
        let (first, written) = store.write(OUT, DRV, b"record one").unwrap();
        assert_eq!(written, Written::New);
        assert_eq!(
            store.write(OUT, DRV, b"record one").unwrap().1,
            Written::Existed
        );
        let (second, _) = store.write(OUT, DRV, b"record two").unwrap();
        assert_ne!(first, second);
        assert_eq!(store.records_for(OUT).unwrap().len(), 2);

        // A planted file (empty, a symlink to /dev/zero) at the very name
        // of the next record: replaced, not followed.
        let third = b"record three";
        let target = store.path_of(OUT, DRV, third);
        std::os::unix::fs::symlink("/dev/zero", &target).unwrap();
        store.write(OUT, DRV, third).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), third);
        assert!(
            !std::fs::symlink_metadata(&target)
                .unwrap()
                .file_type()
                .is_symlink()
        );

        // Modes whatever the umask.
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(&first), 0o644);
        assert_eq!(mode(first.parent().unwrap()), 0o755);
        assert_eq!(mode(store.root()), 0o755);
        assert!(store.warnings().is_empty());
        std::fs::set_permissions(store.root(), std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(store.warnings()[0].contains("writable by others"));
    }

    #[test]
    fn stale_temporary_files_are_removed_by_the_next_writer() {
        let dir = tempfile::tempdir().unwrap();
        let store = RecordStore::new(dir.path());
        store.write(OUT, DRV, b"one").unwrap();
        let records = dir.path().join(OUT);
        let stale = records.join(".drvmeta-killed.tmp");
        let fresh = records.join(".drvmeta-running.tmp");
        std::fs::write(&stale, b"half").unwrap();
        std::fs::write(&fresh, b"half").unwrap();
        let old = SystemTime::now() - Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&stale)
            .unwrap()
            .set_modified(old)
            .unwrap();
        store.write(OUT, DRV, b"two").unwrap();
        assert!(!stale.exists(), "a killed writer's file is removed");
        assert!(fresh.exists(), "a running writer's file is left alone");
    }
}
