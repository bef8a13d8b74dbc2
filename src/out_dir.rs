//! Writing a closure's `.drv` files into a directory, atomically and without
//! ever replacing a different file.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use crate::error::{Error, Result};

/// Write each `(file name, bytes)` into `dir` (created if missing).
///
/// A file that already exists with the same bytes is left as it is; one
/// with other bytes is a conflict, and then nothing is written at all. Each
/// file is written to a temporary file in `dir` and renamed into place, so a
/// reader never sees a partial file. Returns how many files were written.
///
/// # Errors
/// [`Error::Output`] naming the conflicting files, or the directory or file
/// that could not be written.
pub fn write_files<'a>(
    dir: &Path,
    files: impl IntoIterator<Item = (String, &'a [u8])>,
) -> Result<usize> {
    let error = |file: &Path, message: String| Error::Output {
        file: file.to_owned(),
        message,
    };
    std::fs::create_dir_all(dir)
        .map_err(|e| error(dir, format!("cannot create the output directory: {e}")))?;
    let mut pending = Vec::new();
    let mut conflicts = Vec::new();
    for (name, bytes) in files {
        let target = dir.join(&name);
        match std::fs::read(&target) {
            Ok(existing) if existing == bytes => {}
            Ok(_) => conflicts.push(name),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => pending.push((target, bytes)),
            Err(e) => {
                return Err(error(
                    &target,
                    format!("cannot read the existing file: {e}"),
                ));
            }
        }
    }
    if !conflicts.is_empty() {
        conflicts.sort();
        return Err(error(
            dir,
            format!(
                "{} file(s) already exist with different contents, nothing was written: {}",
                conflicts.len(),
                conflicts.join(", ")
            ),
        ));
    }
    if pending.is_empty() {
        return Ok(0);
    }
    // Files are written under their final names into a fresh staging
    // directory inside `dir`, then hard-linked into place: a reader never
    // sees a partial file, and a name that appeared meanwhile is never
    // replaced (linking fails instead). Creating files under random
    // temporary names in a large directory was ten times slower on ext4.
    let staging = tempfile::Builder::new()
        .prefix(".drvmeta-staging-")
        .tempdir_in(dir)
        .map_err(|e| error(dir, format!("cannot write into the output directory: {e}")))?;
    for (target, bytes) in &pending {
        let name = target.file_name().expect("a file name was joined");
        let staged = staging.path().join(name);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&staged)
            .and_then(|mut file| file.write_all(bytes))
            .map_err(|e| error(target, format!("cannot write: {e}")))?;
        match std::fs::hard_link(&staged, target) {
            Ok(()) => {}
            // Another writer got there first: fine if it wrote the same.
            Err(_) if std::fs::read(target).is_ok_and(|existing| existing == *bytes) => {}
            Err(e) => return Err(error(target, format!("cannot move into place: {e}"))),
        }
    }
    staging
        .close()
        .map_err(|e| error(dir, format!("cannot remove the staging directory: {e}")))?;
    Ok(pending.len())
}
