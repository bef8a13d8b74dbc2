//! Writing a closure's `.drv` files into a directory, atomically and without
//! ever replacing a different file.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use crate::error::{Error, Result};

/// Write each `(file name, bytes)` into `dir` (created if missing).
///
/// A file that already exists with the same bytes is left as it is; one
/// with other bytes is a conflict, and then nothing is written at all. The
/// files are written into a staging directory inside `dir`, synced, and
/// moved into place without replacing anything, so a reader never sees a
/// partial file and a failed run leaves none behind. Returns how many files
/// were written.
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
    // All or nothing: every file is first written (and synced) under its
    // final name into a fresh staging directory inside `dir`; only then are
    // they moved into place without replacing anything, and if any move
    // fails (a name that appeared meanwhile, a dangling symlink, a full
    // disk) the files this run moved are removed again. A reader never sees a partial file, a
    // name is never replaced, and a failed run leaves nothing behind.
    // (Creating files under random temporary names in a large directory was
    // ten times slower on ext4.)
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
            .mode(0o666)
            .open(&staged)
            .and_then(|mut file| file.write_all(bytes))
            .map_err(|e| error(target, format!("cannot write: {e}")))?;
    }
    // Every staged file on disk before any is moved into place: one
    // syncfs(2) for all of them (an fsync per file made writing 20,000
    // files ten times slower than cp).
    sync_filesystem(staging.path())
        .map_err(|e| error(dir, format!("cannot sync the written files: {e}")))?;
    let mut moved: Vec<&Path> = Vec::with_capacity(pending.len());
    for (target, bytes) in &pending {
        let name = target.file_name().expect("a file name was joined");
        match move_no_replace(&staging.path().join(name), target) {
            Ok(()) => moved.push(target),
            // Another writer got there first: fine if it wrote the same.
            Err(_) if std::fs::read(target).is_ok_and(|existing| existing == *bytes) => {}
            Err(e) => {
                for done in &moved {
                    let _ = std::fs::remove_file(done);
                }
                return Err(error(
                    target,
                    format!("cannot move into place, nothing was written: {e}"),
                ));
            }
        }
    }
    if let Ok(handle) = std::fs::File::open(dir) {
        let _ = handle.sync_all();
    }
    staging
        .close()
        .map_err(|e| error(dir, format!("cannot remove the staging directory: {e}")))?;
    Ok(pending.len())
}

/// Move `from` to `to` unless `to` exists: renameat2(RENAME_NOREPLACE),
/// or where the filesystem does not have it, a hard link (which never
/// replaces either) and the removal of `from`.
fn move_no_replace(from: &Path, to: &Path) -> std::io::Result<()> {
    let flags = rustix::fs::RenameFlags::NOREPLACE;
    match rustix::fs::renameat_with(rustix::fs::CWD, from, rustix::fs::CWD, to, flags) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
            std::fs::hard_link(from, to)?;
            let _ = std::fs::remove_file(from);
            Ok(())
        }
        Err(errno) => Err(errno.into()),
    }
}

/// syncfs(2) the filesystem holding `dir`: everything written to it is on
/// disk (or the write-back error is reported) when this returns.
fn sync_filesystem(dir: &Path) -> std::io::Result<()> {
    let handle = std::fs::File::open(dir)?;
    rustix::fs::syncfs(&handle).map_err(std::io::Error::from)
}

/// An I/O error's own message, without the temporary file's path that
/// `tempfile` adds: the user only knows the path they gave.
fn without_path(error: &std::io::Error) -> String {
    error.raw_os_error().map_or_else(
        || error.kind().to_string(),
        |code| std::io::Error::from_raw_os_error(code).to_string(),
    )
}

/// The process's umask (from `/proc/self/status`; 022 when unknown).
#[must_use]
pub fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|m| u32::from_str_radix(m.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

/// Write `bytes` to `file` atomically (a temporary file beside it, synced,
/// renamed) with the mode a new file usually gets (0666 less the umask).
///
/// # Errors
/// [`Error::Output`] naming `file` (never the temporary file).
pub fn write_file(file: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let error = |message: String| Error::Output {
        file: file.to_owned(),
        message,
    };
    let dir = match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut temp = tempfile::Builder::new()
        .prefix(".drvmeta-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| {
            if dir.is_dir() {
                error(format!("cannot create it: {}", without_path(&e)))
            } else {
                error(format!("its directory {} does not exist", dir.display()))
            }
        })?;
    temp.write_all(bytes)
        .and_then(|()| {
            temp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o666 & !umask()))
        })
        .and_then(|()| temp.as_file().sync_all())
        .map_err(|e| error(format!("cannot write it: {e}")))?;
    temp.persist(file)
        .map_err(|e| error(format!("cannot move it into place: {}", e.error)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_run_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        // A dangling symlink where the third file goes.
        std::os::unix::fs::symlink("/nonexistent/target", dir.path().join("c.drv")).unwrap();
        let files = [
            ("a.drv", &b"a"[..]),
            ("b.drv", b"b"),
            ("c.drv", b"c"),
            ("d.drv", b"d"),
        ];
        let error = write_files(dir.path(), files.iter().map(|(n, b)| ((*n).to_owned(), *b)))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("c.drv") && error.contains("nothing was written"),
            "{error}"
        );
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["c.drv"], "only the symlink that was there");
    }

    #[test]
    fn files_get_the_usual_mode() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sbom.json");
        write_file(&file, b"{}").unwrap();
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o666 & !umask());
        let missing = dir.path().join("missing/x.json");
        let error = write_file(&missing, b"{}").unwrap_err().to_string();
        assert!(
            error.contains("missing/x.json")
                && error.contains("does not exist")
                && !error.contains(".drvmeta-"),
            "{error}"
        );
    }
}
