//! Reading files that may be hostile: regular files only, never blocking,
//! with a size limit.
//!
//! A `.drv` path or a record in a shared directory may be a FIFO (a plain
//! `read` would wait forever), a device (`/dev/zero` never ends), a
//! directory or a symlink loop. [`read_regular`] opens without blocking,
//! checks what it opened, and reads at most `limit` bytes, so each of these
//! is a clear error instead of a hang or an unbounded read.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// The largest `.drv` file drvmeta reads (real ones are at most a few MiB).
pub const DRV_LIMIT: u64 = 256 << 20;

/// What a path that is not a regular file is.
fn kind(meta: &std::fs::Metadata) -> &'static str {
    let ty = meta.file_type();
    if ty.is_dir() {
        "a directory"
    } else if ty.is_fifo() {
        "a FIFO"
    } else if ty.is_socket() {
        "a socket"
    } else if ty.is_block_device() || ty.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

/// Open `path` for reading without blocking (a FIFO opens at once), and
/// fail unless it is a regular file. `follow`: whether a final symlink is
/// followed (a loop is then an error, ELOOP); otherwise a symlink is an
/// error itself.
///
/// # Errors
/// The I/O error, or `InvalidInput` naming what the path is instead.
pub fn open_regular(path: &Path, follow: bool) -> io::Result<File> {
    open_checked(path, follow).map(|(file, _)| file)
}

/// [`open_regular`], also returning the metadata it checked.
fn open_checked(path: &Path, follow: bool) -> io::Result<(File, std::fs::Metadata)> {
    let mut flags = libc::O_NONBLOCK | libc::O_CLOEXEC;
    if !follow {
        flags |= libc::O_NOFOLLOW;
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .map_err(|error| {
            if error.raw_os_error() == Some(libc::ELOOP) {
                let what = if follow {
                    "a symlink loop"
                } else {
                    "a symlink (not followed)"
                };
                io::Error::new(io::ErrorKind::InvalidInput, what)
            } else {
                error
            }
        })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}, not a regular file", kind(&meta)),
        ));
    }
    Ok((file, meta))
}

/// Read the regular file at `path` (see [`open_regular`]), at most `limit`
/// bytes.
///
/// Reads the size the open file had (as Nix's `readFile` does): one
/// `open`, `statx`, `read` and `close` per small file, which is most of
/// what loading a closure of many `.drv` files costs. Bytes appended after
/// the open are not read; a file that shrinks meanwhile is an error.
///
/// # Errors
/// As [`open_regular`]; `FileTooLarge` when it holds more than `limit`;
/// `UnexpectedEof` when it ends before the size it had when opened.
pub fn read_regular(path: &Path, follow: bool, limit: u64) -> io::Result<Vec<u8>> {
    let (file, meta) = open_checked(path, follow)?;
    let size = meta.len();
    if size > limit {
        return Err(too_large(limit));
    }
    let size = usize::try_from(size).map_err(|_| too_large(limit))?;
    // Read into the vector's spare capacity: no zeroing of memory the read
    // overwrites at once.
    let mut bytes = Vec::with_capacity(size);
    while bytes.len() < size {
        let spare = rustix::buffer::spare_capacity(&mut bytes);
        match rustix::io::read(&file, spare) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "shrank while being read (ended before the size it had when opened)",
                ));
            }
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(error) => return Err(error.into()),
        }
    }
    // Never more than the size it had (the capacity may be larger).
    bytes.truncate(size);
    Ok(bytes)
}

fn too_large(limit: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!("larger than the {} MiB limit", limit >> 20),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_paths_are_errors_not_hangs() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.drv");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let err = read_regular(&fifo, true, DRV_LIMIT).unwrap_err();
        assert!(err.to_string().contains("FIFO"), "{err}");

        let err = read_regular(dir.path(), true, DRV_LIMIT).unwrap_err();
        assert!(err.to_string().contains("directory"), "{err}");

        let err = read_regular(Path::new("/dev/zero"), true, DRV_LIMIT).unwrap_err();
        assert!(err.to_string().contains("device"), "{err}");

        let a = dir.path().join("a.drv");
        let b = dir.path().join("b.drv");
        std::os::unix::fs::symlink(&b, &a).unwrap();
        std::os::unix::fs::symlink(&a, &b).unwrap();
        let err = read_regular(&a, true, DRV_LIMIT).unwrap_err();
        assert!(err.to_string().contains("symlink loop"), "{err}");

        let file = dir.path().join("big.drv");
        std::fs::write(&file, vec![b'x'; 2 << 20]).unwrap();
        let err = read_regular(&file, true, 1 << 20).unwrap_err();
        assert!(err.to_string().contains("limit"), "{err}");
        assert_eq!(read_regular(&file, true, 4 << 20).unwrap().len(), 2 << 20);

        let link = dir.path().join("link.drv");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(read_regular(&link, true, 4 << 20).is_ok());
        let err = read_regular(&link, false, 4 << 20).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
    }
}
