//! Nix's export format (`nix-store --export` / `--import`), DESIGN.md §2.3.
//!
//! For each path, dependencies first: u64 1, the NAR of the file, u64
//! `0x4558494e` ("NIXE"), the path, its references as a string list, the
//! deriver (empty here), u64 0 (no signature); then u64 0. Integers are
//! little-endian u64; strings are length-prefixed and zero-padded to 8
//! bytes. NARs are written by `nix-nar`.

use std::io::{self, Cursor, Read, Write};

use camino::Utf8Path;
use nix_nar::{Encoder, FileSystem, FileSystemMetadata};

/// Magic number before each path's metadata.
const EXPORT_MAGIC: u64 = 0x4558_494e;

/// One store path to export: a regular, non-executable file.
#[derive(Debug, Clone)]
pub struct ExportItem<'a> {
    /// The absolute store path.
    pub path: String,
    /// The file's contents.
    pub contents: &'a [u8],
    /// Absolute store paths it references, sorted.
    pub references: Vec<String>,
}

/// A one-file filesystem for `nix-nar`'s encoder: the root is the file.
struct OneFile<'a>(&'a [u8]);

impl<'a> FileSystem for OneFile<'a> {
    type File = Cursor<&'a [u8]>;

    fn metadata(&self, _path: &Utf8Path) -> io::Result<FileSystemMetadata> {
        Ok(FileSystemMetadata::File {
            executable: false,
            length: self.0.len() as u64,
        })
    }

    fn read_dir(&self, _path: &Utf8Path) -> io::Result<Vec<String>> {
        Err(io::Error::other("a one-file archive has no directories"))
    }

    fn open(&self, _path: &Utf8Path) -> io::Result<Self::File> {
        Ok(Cursor::new(self.0))
    }
}

/// The NAR serialisation of a regular, non-executable file.
///
/// # Errors
/// Only if `nix-nar` fails, which it does not for in-memory contents.
pub fn nar_of_file(contents: &[u8]) -> io::Result<Vec<u8>> {
    let mut encoder = Encoder::builder("file")
        .filesystem(OneFile(contents))
        .build()
        .map_err(io::Error::other)?;
    let mut nar = Vec::with_capacity(contents.len() + 128);
    encoder.read_to_end(&mut nar)?;
    Ok(nar)
}

fn write_u64(writer: &mut impl Write, value: u64) -> io::Result<()> {
    writer.write_all(&value.to_le_bytes())
}

fn write_string(writer: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    write_u64(writer, bytes.len() as u64)?;
    writer.write_all(bytes)?;
    let padding = (8 - bytes.len() % 8) % 8;
    writer.write_all(&[0; 8][..padding])
}

/// Write the export stream of `items`, in the order given (dependencies
/// first).
///
/// # Errors
/// Errors of `writer`.
pub fn write_export<'a>(
    items: impl IntoIterator<Item = &'a ExportItem<'a>>,
    writer: &mut impl Write,
) -> io::Result<()> {
    for item in items {
        write_u64(writer, 1)?;
        writer.write_all(&nar_of_file(item.contents)?)?;
        write_u64(writer, EXPORT_MAGIC)?;
        write_string(writer, item.path.as_bytes())?;
        write_u64(writer, item.references.len() as u64)?;
        for reference in &item.references {
            write_string(writer, reference.as_bytes())?;
        }
        write_string(writer, b"")?;
        write_u64(writer, 0)?;
    }
    write_u64(writer, 0)
}
