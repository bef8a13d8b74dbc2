//! Errors of the derivation core. None of them does I/O or names a file:
//! the closure layer adds the file and the chain of dependents.

use thiserror::Error;

/// A malformed store path or store directory.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StorePathError {
    /// Not `<store dir>/<hash>-<name>`.
    #[error("{path:?} is not in the store directory {store_dir}")]
    NotInStore {
        /// The path.
        path: String,
        /// The store directory.
        store_dir: String,
    },
    /// Not `<32 characters>-<name>`.
    #[error("{0:?} is not a store path base name (<32-character hash>-<name>)")]
    BadBaseName(String),
    /// The hash part is not Nix base-32.
    #[error("{0:?} has a hash part that is not Nix base-32")]
    BadHashPart(String),
    /// The name holds a character Nix rejects, or is empty or too long.
    #[error("store path name {name:?} is invalid: {reason}")]
    BadName {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
    /// A store directory that is not absolute.
    #[error("store directory {0:?} is not an absolute path without ':'")]
    BadStoreDir(String),
}

/// Why an ATerm could not be parsed, and where.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("at byte {offset}: {kind}")]
pub struct ParseError {
    /// Byte offset into the file where the problem was found.
    pub offset: usize,
    /// What is wrong.
    pub kind: ParseErrorKind,
}

/// What is wrong with an ATerm.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseErrorKind {
    /// Something other than the expected token.
    #[error("expected {0}")]
    Expected(&'static str),
    /// The file ends inside a term.
    #[error("unexpected end of file, expected {0}")]
    Eof(&'static str),
    /// A string never closed.
    #[error("unterminated string")]
    Unterminated,
    /// `DrvWithVersion` with a version Nix does not know.
    #[error("unknown derivation ATerm version {0:?} (Nix knows \"xp-dyn-drv\")")]
    UnknownVersion(String),
    /// An escape Nix never writes.
    #[error("escape \\{0} is not one Nix writes (\\\" \\\\ \\n \\r \\t)")]
    BadEscape(char),
    /// A backslash in a field Nix prints without escaping (paths, output
    /// names, hash algorithms, hashes): Nix could not print it back.
    #[error("{0} contains a backslash, which Nix writes unescaped there")]
    EscapeInUnquoted(&'static str),
    /// A store path that is malformed or outside the store directory.
    #[error("{field}: {source}")]
    StorePath {
        /// Which field.
        field: &'static str,
        /// Why.
        source: StorePathError,
    },
    /// An input derivation path not ending in `.drv`.
    #[error("input derivation {0:?} does not end in .drv")]
    InputNotDrv(String),
    /// An output name that cannot form a store path name.
    #[error("output name {name:?} is invalid: {reason}")]
    BadOutputName {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
    /// A malformed output (path, hash algorithm and hash that do not fit
    /// together).
    #[error("output {output:?}: {reason}")]
    BadOutput {
        /// The output's name.
        output: String,
        /// Why.
        reason: String,
    },
    /// An input derivation that requests no outputs.
    #[error("input derivation {0:?} requests no outputs")]
    NoOutputsRequested(String),
    /// Nesting deeper than any Nix writes.
    #[error("dynamic input outputs nested deeper than {0} levels")]
    TooDeep(usize),
    /// `__json` that is not a JSON object (Nix parses it while reading).
    #[error("structured attributes (__json) are not a JSON object: {0}")]
    BadStructuredAttrs(String),
    /// Bytes after the closing parenthesis.
    #[error("trailing bytes after the derivation")]
    Trailing,
    /// A file too large to address with the parser's 32-bit offsets.
    #[error("the derivation is larger than 4 GiB")]
    TooLarge,
}

/// Why a derivation could not be hashed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HashError {
    /// Outputs of kinds Nix does not combine in one derivation.
    #[error("invalid mix of output kinds ({0})")]
    MixedOutputs(String),
    /// A fixed-output derivation with more than one output, or one not
    /// named `out`.
    #[error("a fixed-output derivation must have exactly one output, named \"out\"")]
    FixedNotSingleOut,
    /// The input derivation's hash is unknown (it is invalid itself).
    #[error("input derivation {0} is invalid")]
    InputInvalid(String),
    /// An input derivation does not have a requested output.
    #[error("input derivation {input} has no output {output:?}")]
    NoSuchOutput {
        /// The input.
        input: String,
        /// The output.
        output: String,
    },
    /// A computed path is not a valid store path.
    #[error("{0}")]
    StorePath(#[from] StorePathError),
}
