//! Writing a closure's `.drv` files into a directory, atomically and without
//! ever replacing a different file.

use std::io::Write;
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
    for (target, bytes) in &pending {
        let mut temp = tempfile::Builder::new()
            .prefix(".drvmeta-")
            .tempfile_in(dir)
            .map_err(|e| error(dir, format!("cannot write into the output directory: {e}")))?;
        temp.write_all(bytes)
            .and_then(|()| {
                use std::os::unix::fs::PermissionsExt as _;
                temp.as_file()
                    .set_permissions(std::fs::Permissions::from_mode(0o644))
            })
            .map_err(|e| error(target, format!("cannot write: {e}")))?;
        match temp.persist_noclobber(target) {
            Ok(_) => {}
            // Another writer got there first: fine if it wrote the same.
            Err(e) if std::fs::read(target).is_ok_and(|existing| existing == *bytes) => drop(e),
            Err(e) => {
                return Err(error(
                    target,
                    format!("cannot move into place: {}", e.error),
                ));
            }
        }
    }
    Ok(pending.len())
}
