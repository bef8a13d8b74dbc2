//! Typed errors of the drvmeta library.

use std::path::PathBuf;

use thiserror::Error;

/// Everything that can go wrong while loading, hashing or showing derivations.
///
/// Every variant names the file or derivation it is about, so a message can be
/// printed as is.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// A `.drv` file could not be read.
    #[error("{}: cannot read: {source}", file.display())]
    Read {
        /// The file that failed.
        file: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A derivation was asked for after its closure released it (a bug of
    /// the walk that asked).
    #[error("{path}: the derivation was already released")]
    Released {
        /// The derivation.
        path: String,
    },
    /// A `.drv` file is not a derivation `ATerm` (the message carries the byte offset).
    #[error("{}: {source}", file.display())]
    Parse {
        /// The file that failed.
        file: PathBuf,
        /// The parser's error, with the byte offset where it stopped.
        source: crate::derivation::ParseError,
    },
    /// A `.drv` file parses but breaks a rule Nix's parser enforces.
    #[error("{}: invalid derivation at byte {offset}: {message}", file.display())]
    Invalid {
        /// The file that failed.
        file: PathBuf,
        /// Byte offset of the offending field.
        offset: usize,
        /// What is wrong.
        message: String,
    },
    /// A path given on the command line or found in a derivation is not a valid
    /// store path or `.drv` file name.
    #[error("{path}: not a derivation store path or .drv file: {reason}")]
    BadPath {
        /// The offending path, as given.
        path: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A `--drv-dir` does not exist or is not a directory.
    #[error("{}: --drv-dir is not a readable directory: {reason}", dir.display())]
    BadDrvDir {
        /// The directory as given.
        dir: PathBuf,
        /// Why it was rejected.
        reason: String,
    },
    /// An input derivation is in neither a `--drv-dir` nor the store directory.
    #[error(
        "input derivation {missing} (needed by {needed_by}) was not found in any --drv-dir nor at {}",
        looked_at.display()
    )]
    MissingInput {
        /// The input derivation that is missing.
        missing: String,
        /// The derivation that lists it as an input.
        needed_by: String,
        /// Where it was last looked for.
        looked_at: PathBuf,
    },
    /// The input derivations form a cycle, which real store paths cannot do.
    #[error("input derivations form a cycle through {path}")]
    Cycle {
        /// A derivation on the cycle.
        path: String,
    },
    /// A derivation asked for is not part of the loaded closure.
    #[error("{path} is not part of the loaded closure")]
    NotInClosure {
        /// The derivation asked for.
        path: String,
    },
    /// Derivations of a closure to post-process are invalid or
    /// inconsistent ([`crate::closure::problems_of`]).
    #[error(
        "{} problem(s) in the closure (drvmeta hash reports the same): nothing was done",
        problems.len()
    )]
    Problems {
        /// What is wrong, one line per problem, naming the derivation.
        problems: Vec<String>,
    },
    /// A derivation could not be rewritten or stripped.
    #[error("{path}: cannot post-process: {message}")]
    Rewrite {
        /// The derivation.
        path: String,
        /// Why.
        message: String,
    },
    /// An output directory cannot take the closure.
    #[error("{}: {message}", file.display())]
    Output {
        /// The file or directory.
        file: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Talking to the Nix store failed.
    #[error("{0}")]
    Store(String),
    /// A remote record store failed (after retries, for transient errors).
    #[error("{url}: {message}")]
    Remote {
        /// The URL asked.
        url: String,
        /// What went wrong: the HTTP status or the connection error.
        message: String,
    },
    /// A record store location drvmeta cannot use.
    #[error("{location}: {message}")]
    StoreLocation {
        /// The location as given.
        location: String,
        /// Why it cannot be used.
        message: String,
    },
    /// Writing output failed.
    #[error("cannot write output: {source}")]
    Write {
        /// The I/O error.
        source: std::io::Error,
    },
    /// `SOURCE_DATE_EPOCH` is set but is not a number of seconds.
    #[error(
        "SOURCE_DATE_EPOCH={value:?} is not a non-negative integer number of seconds since 1970"
    )]
    SourceDateEpoch {
        /// What it was set to.
        value: String,
    },
    /// A derivation could not be converted to Nix's JSON form.
    #[error("{path}: cannot render as derivation JSON: {message}")]
    Json {
        /// The derivation.
        path: String,
        /// Why.
        message: String,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
