//! The record store (DESIGN.md §3.3): a directory laid out like a binary
//! cache, `<root>/<output-hash-part>/<drv-hash-part>.intoto.json`.
//!
//! Writes are atomic (a temporary file in the same directory, fsync,
//! rename without replacing); concurrent writers of the same record never
//! leave a partial or corrupt file, and a reader never sees half a record.
//! Records are immutable: writing one that exists is a no-op.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The default location when it is writable.
pub const SYSTEM_ROOT: &str = "/nix/var/drvmeta/records";
/// File name suffix of a record.
pub const SUFFIX: &str = ".intoto.json";

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
    /// A record for this output and derivation already existed; it was kept.
    Existed,
}

fn is_writable_dir(dir: &Path) -> bool {
    std::fs::create_dir_all(dir).is_ok()
        && tempfile::Builder::new()
            .prefix(".drvmeta-probe-")
            .tempfile_in(dir)
            .is_ok()
}

impl RecordStore {
    /// A store at `root`.
    #[must_use]
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// `/nix/var/drvmeta/records` when writable, else
    /// `$XDG_STATE_HOME/drvmeta/records` (`~/.local/state/…`).
    #[must_use]
    pub fn default_root() -> PathBuf {
        let system = PathBuf::from(SYSTEM_ROOT);
        if is_writable_dir(&system) {
            return system;
        }
        let state = std::env::var_os("XDG_STATE_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| {
                std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state"))
            })
            .unwrap_or_else(|| PathBuf::from("."));
        state.join("drvmeta/records")
    }

    /// The store's root directory.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the record of derivation `drv_hash` for output `output_hash`
    /// lives (both are 32-character store path hash parts).
    #[must_use]
    pub fn path_of(&self, output_hash: &str, drv_hash: &str) -> PathBuf {
        self.root
            .join(output_hash)
            .join(format!("{drv_hash}{SUFFIX}"))
    }

    /// Write `record` for `output_hash`/`drv_hash` unless one exists.
    ///
    /// # Errors
    /// [`Error::Output`] when the directory or file cannot be written.
    pub fn write(
        &self,
        output_hash: &str,
        drv_hash: &str,
        record: &[u8],
    ) -> Result<(PathBuf, Written)> {
        let target = self.path_of(output_hash, drv_hash);
        let dir = target.parent().expect("a record has a directory");
        let error = |file: &Path, message: String| Error::Output {
            file: file.to_owned(),
            message,
        };
        if target.exists() {
            return Ok((target, Written::Existed));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| error(dir, format!("cannot create the records directory: {e}")))?;
        let mut temp = tempfile::Builder::new()
            .prefix(".drvmeta-")
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(|e| error(dir, format!("cannot write a record here: {e}")))?;
        temp.write_all(record)
            .and_then(|()| temp.as_file().sync_all())
            .and_then(|()| {
                use std::os::unix::fs::PermissionsExt as _;
                temp.as_file()
                    .set_permissions(std::fs::Permissions::from_mode(0o644))
            })
            .map_err(|e| error(&target, format!("cannot write the record: {e}")))?;
        match temp.persist_noclobber(&target) {
            Ok(_) => {
                // Make the rename itself durable.
                if let Ok(dir) = std::fs::File::open(dir) {
                    let _ = dir.sync_all();
                }
                Ok((target, Written::New))
            }
            // Another writer got there first: records are immutable.
            Err(_) if target.exists() => Ok((target, Written::Existed)),
            Err(e) => Err(error(
                &target,
                format!("cannot move the record into place: {}", e.error),
            )),
        }
    }

    /// Every record file for output `output_hash`, sorted.
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
            .filter(|p| p.to_string_lossy().ends_with(SUFFIX))
            .collect();
        files.sort();
        Ok(files)
    }
}
