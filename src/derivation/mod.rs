//! The derivation core: ATerm parsing and printing, store paths, hash
//! modulo (classic and modulo meta) and `__meta` (DESIGN.md §2). No I/O.
//!
//! A [`Derivation`] owns the bytes of its `.drv` file and keeps every
//! string as the *raw* slice written there (escapes and non-UTF-8
//! included), so printing it back gives the file byte for byte, and hashing
//! streams those slices straight into SHA-256 ([`hash`]). Structured
//! attributes are never parsed and re-serialised: stripping `__meta` edits
//! the `__json` text as the writing Nix left it ([`meta`]). Nix 2.8 writes
//! floats with six significant digits (`1e+06`); modern Nix writes them in
//! full; both are hashed exactly as written.

pub mod error;
pub mod hash;
pub mod json_text;
pub mod meta;
pub mod nixbase32;
mod parse;
pub mod store_path;
#[cfg(test)]
pub(crate) mod test_corpus;
mod write;

use std::borrow::Cow;

pub use error::{HashError, ParseError, ParseErrorKind, StorePathError};
pub use hash::{Hashes, InputHash, OutputPaths};
pub use store_path::{StoreDir, StorePath};
pub use write::{escape, unescape};

/// Byte range of a raw (still escaped) string inside [`Derivation::bytes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn get(self, bytes: &[u8]) -> &[u8] {
        &bytes[self.start as usize..self.end as usize]
    }
}

/// How an output's path is determined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputKind {
    /// Input-addressed, path recorded.
    InputAddressed(StorePath),
    /// Input-addressed, path not known yet (an input is content-addressed).
    Deferred,
    /// Fixed content address: the recorded path (checked against it).
    Fixed(StorePath),
    /// Floating content address: path known after the build.
    Floating,
    /// Impure: a new path every build.
    Impure,
}

/// One output: name, kind and the raw hash fields.
#[derive(Debug, Clone)]
pub(crate) struct OutputEntry {
    name: Span,
    path: Span,
    algo: Span,
    hash: Span,
    kind: OutputKind,
}

/// The outputs an input derivation is needed for, and for dynamic
/// derivations (`DrvWithVersion("xp-dyn-drv", …)`) those of derivations
/// it outputs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InputNode {
    /// Requested output names, sorted.
    pub outputs: Vec<String>,
    /// Outputs of derivations that this one's outputs are, by output name.
    pub dynamic: Vec<(String, InputNode)>,
}

/// One input derivation.
#[derive(Debug, Clone)]
pub struct InputDerivation {
    /// Its store path.
    pub path: StorePath,
    /// What is needed of it.
    pub node: InputNode,
}

/// A parsed derivation that owns its `.drv` bytes (see the module docs).
#[derive(Debug, Clone)]
pub struct Derivation {
    bytes: Vec<u8>,
    name: String,
    store_dir: StoreDir,
    version: Option<Span>,
    /// Where the output list (`[` to `]`) and the input derivation list are
    /// written: the hash-modulo forms of a canonical file copy the bytes
    /// around them ([`hash`]).
    outputs_list: Span,
    input_drvs_list: Span,
    outputs: Vec<OutputEntry>,
    input_drvs: Vec<InputDerivation>,
    input_srcs: Vec<StorePath>,
    system: Span,
    builder: Span,
    args: Vec<Span>,
    env: Vec<(Span, Span)>,
    /// No environment key has an escape: keys compare as written, and
    /// `env` (sorted by unescaped key) is sorted by the raw keys.
    plain_env_keys: bool,
    canonical: bool,
}

/// A view of one output.
#[derive(Debug, Clone, Copy)]
pub struct Output<'a> {
    /// Its name.
    pub name: &'a str,
    /// How its path is determined.
    pub kind: &'a OutputKind,
    /// The hash algorithm field as written (`r:sha256`, `sha1`, `text:sha256`, … or empty).
    pub hash_algo: &'a str,
    /// The hash field as written (lowercase hex, `impure`, or empty).
    pub hash: &'a str,
}

impl<'a> Output<'a> {
    /// The recorded path, where one is recorded.
    #[must_use]
    pub fn path(&self) -> Option<&'a StorePath> {
        match self.kind {
            OutputKind::InputAddressed(path) | OutputKind::Fixed(path) => Some(path),
            _ => None,
        }
    }
}

fn ascii(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).expect("fields without escapes were validated as ASCII")
}

impl Derivation {
    /// Parse the ATerm `bytes` of the derivation whose store path name is
    /// `<name>.drv`, in `store_dir`.
    ///
    /// Beyond syntax, checks what Nix checks: store paths canonical and in
    /// `store_dir`, a fixed output's path equal to its content address,
    /// known hash algorithms. Keys out of order or repeated are accepted as
    /// Nix accepts them (sorted; the first output, the last input and the
    /// last environment entry win) and [`Self::is_canonical`] is then false.
    ///
    /// # Errors
    /// [`ParseError`] with the byte offset.
    pub fn parse(bytes: Vec<u8>, name: &str, store_dir: &StoreDir) -> Result<Self, ParseError> {
        parse::parse(bytes, name, store_dir)
    }

    /// The file's bytes, as read.
    #[must_use]
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Give the bytes back.
    #[must_use]
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// Whether [`Self::to_aterm_bytes`] equals [`Self::bytes`] (keys sorted
    /// and unique, as every Nix writes them).
    #[must_use]
    pub fn is_canonical(&self) -> bool {
        self.canonical
    }

    /// The derivation's name (the `.drv` path's name without `.drv`).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The store directory its paths are in.
    #[must_use]
    pub fn store_dir(&self) -> &StoreDir {
        &self.store_dir
    }

    /// The `DrvWithVersion` version, if written in that form.
    #[must_use]
    pub fn version(&self) -> Option<&str> {
        self.version.map(|span| ascii(span.get(&self.bytes)))
    }

    /// The outputs, sorted by name.
    pub fn outputs(&self) -> impl ExactSizeIterator<Item = Output<'_>> + Clone {
        self.outputs.iter().map(|entry| self.output_view(entry))
    }

    fn output_view<'a>(&'a self, entry: &'a OutputEntry) -> Output<'a> {
        Output {
            name: ascii(entry.name.get(&self.bytes)),
            kind: &entry.kind,
            hash_algo: ascii(entry.algo.get(&self.bytes)),
            hash: ascii(entry.hash.get(&self.bytes)),
        }
    }

    /// The output called `name`.
    #[must_use]
    pub fn output(&self, name: &str) -> Option<Output<'_>> {
        self.outputs().find(|o| o.name == name)
    }

    /// Whether the derivation is fixed-output.
    #[must_use]
    pub fn is_fixed_output(&self) -> bool {
        self.outputs
            .iter()
            .any(|o| matches!(o.kind, OutputKind::Fixed(_)))
    }

    /// The input derivations, sorted by path.
    #[must_use]
    pub fn input_derivations(&self) -> &[InputDerivation] {
        &self.input_drvs
    }

    /// The input sources, sorted.
    #[must_use]
    pub fn input_sources(&self) -> &[StorePath] {
        &self.input_srcs
    }

    /// The `.drv` file's references: input derivations and sources.
    pub fn references(&self) -> impl Iterator<Item = &StorePath> {
        self.input_drvs
            .iter()
            .map(|input| &input.path)
            .chain(&self.input_srcs)
    }

    /// The system, unescaped.
    #[must_use]
    pub fn system(&self) -> Cow<'_, [u8]> {
        write::unescape(self.system.get(&self.bytes))
    }

    /// The builder, unescaped.
    #[must_use]
    pub fn builder(&self) -> Cow<'_, [u8]> {
        write::unescape(self.builder.get(&self.bytes))
    }

    /// The builder's arguments, unescaped.
    pub fn arguments(&self) -> impl ExactSizeIterator<Item = Cow<'_, [u8]>> {
        self.args
            .iter()
            .map(|span| write::unescape(span.get(&self.bytes)))
    }

    /// The environment, unescaped, sorted by key.
    pub fn environment(&self) -> impl ExactSizeIterator<Item = (Cow<'_, [u8]>, Cow<'_, [u8]>)> {
        self.env.iter().map(|(key, value)| {
            (
                write::unescape(key.get(&self.bytes)),
                write::unescape(value.get(&self.bytes)),
            )
        })
    }

    /// The unescaped value of environment variable `key`.
    #[must_use]
    pub fn env(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        self.env_raw(key).map(write::unescape)
    }

    /// The raw (escaped) value of environment variable `key`.
    pub(crate) fn env_raw(&self, key: &[u8]) -> Option<&[u8]> {
        if self.plain_env_keys {
            // Sorted and unique by the raw keys.
            return self
                .env
                .binary_search_by(|(k, _)| k.get(&self.bytes).cmp(key))
                .ok()
                .map(|i| self.env[i].1.get(&self.bytes));
        }
        // Keys Nix writes are plain; an escaped key is compared unescaped.
        self.env
            .iter()
            .find(|(k, _)| {
                let raw = k.get(&self.bytes);
                raw == key || (raw.contains(&b'\\') && *write::unescape(raw) == *key)
            })
            .map(|(_, value)| value.get(&self.bytes))
    }

    /// The structured attributes' JSON text (`__json`), unescaped, as the
    /// writing Nix left it.
    #[must_use]
    pub fn structured_attrs(&self) -> Option<Cow<'_, [u8]>> {
        self.env(meta::JSON_KEY)
    }

    /// The derivation as ATerm: [`Self::bytes`], borrowed, for canonical
    /// files; printed for any other.
    #[must_use]
    pub fn aterm(&self) -> Cow<'_, [u8]> {
        if self.canonical {
            return Cow::Borrowed(&self.bytes);
        }
        let mut out = Vec::with_capacity(self.bytes.len());
        write::write_aterm(self, &mut out, &write::Form::default())
            .expect("writing to memory cannot fail");
        Cow::Owned(out)
    }

    /// Print the derivation as ATerm: [`Self::bytes`] for canonical files.
    #[must_use]
    pub fn to_aterm_bytes(&self) -> Vec<u8> {
        self.aterm().into_owned()
    }

    /// [`Self::to_aterm_bytes`], giving up the derivation: a canonical
    /// file's bytes are handed over, not copied.
    #[must_use]
    pub fn into_aterm_bytes(self) -> Vec<u8> {
        if self.canonical {
            self.bytes
        } else {
            self.to_aterm_bytes()
        }
    }

    /// The `.drv` path these contents and references give (Nix's text
    /// path of the printed ATerm).
    ///
    /// # Errors
    /// When the name does not make a valid store path name.
    pub fn drv_path(&self) -> Result<StorePath, StorePathError> {
        let name = format!("{}.drv", self.name);
        if self.canonical {
            return self
                .store_dir
                .make_text_path(&name, &self.bytes, self.references());
        }
        self.store_dir
            .make_text_path(&name, &self.to_aterm_bytes(), self.references())
    }

    /// Whether `path` is this derivation's store path: its bytes, as read,
    /// hash to it with its references.
    #[must_use]
    pub fn bytes_match_path(&self, path: &StorePath) -> bool {
        self.store_dir
            .is_text_path(path, &self.bytes, self.references())
    }

    /// A copy with edits: output paths (and the environment variables named
    /// after outputs) set, and `__json` replaced by raw (escaped) text.
    /// Reparsed, so the result is an ordinary derivation.
    ///
    /// # Errors
    /// When the edit makes an unparsable derivation (an invalid path).
    pub fn with_edits(
        &self,
        outputs: Option<&[(String, Option<StorePath>)]>,
        json: Option<&[u8]>,
    ) -> Result<Self, ParseError> {
        Self::parse(
            self.edited_bytes(outputs, json),
            &self.name,
            &self.store_dir,
        )
    }

    /// The ATerm of [`Self::with_edits`], not parsed again: its references
    /// are this derivation's. Printed canonically (keys sorted and unique).
    #[must_use]
    pub fn edited_bytes(
        &self,
        outputs: Option<&[(String, Option<StorePath>)]>,
        json: Option<&[u8]>,
    ) -> Vec<u8> {
        let form = write::Form {
            outputs,
            json,
            ..write::Form::default()
        };
        let mut out = Vec::with_capacity(self.bytes.len() + 64);
        if self.canonical {
            let mut scratch = Vec::new();
            write::emit_canonical_form(self, &form, &mut scratch, &mut |piece| {
                out.extend_from_slice(piece);
            });
        } else {
            write::write_aterm(self, &mut out, &form).expect("writing to memory cannot fail");
        }
        debug_assert!(
            Self::parse(out.clone(), &self.name, &self.store_dir).is_ok_and(|d| d.canonical),
            "edited bytes are a canonical derivation"
        );
        out
    }
}

/// The placeholder a dependent writes for output `output` of the
/// content-addressed derivation `drv_path`: `/` + Nix base-32 of
/// `sha256("nix-upstream-output:<hash part>:<output path name>")`.
#[must_use]
pub fn downstream_placeholder(drv_path: &StorePath, output: &str) -> String {
    use sha2::{Digest, Sha256};
    let drv_name = drv_path
        .name()
        .strip_suffix(".drv")
        .unwrap_or(drv_path.name());
    let clear = format!(
        "nix-upstream-output:{}:{}",
        drv_path.hash_part(),
        store_path::output_path_name(drv_name, output)
    );
    format!("/{}", nixbase32::encode(&Sha256::digest(clear.as_bytes())))
}
