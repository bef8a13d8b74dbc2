//! drvmeta: inspect Nix derivations, hash them classically and *modulo meta*.
//!
//! Nix hashes everything in a derivation into its output paths, so metadata
//! (a license, the kernel commit a build came from) causes rebuilds. *Hash
//! modulo meta* (NixOS/nix PR #16285) keeps metadata in structured attrs as
//! `__meta` and hashes derivations with it stripped. This crate brings that
//! to today's Nix: it reads `.drv` files, tells which derivations are opted
//! in ([`meta`]), computes the classic and the meta-stripped hashes and output
//! paths side by side ([`hashing`]), and renders derivations as Nix's JSON
//! ([`show`]). ATerm parsing, hashing and store paths are done by the
//! `nix-derivation` crate.
//!
//! # Example
//!
//! ```
//! use drvmeta::closure::{Closure, LoadOptions};
//!
//! // The bundled example closure: a kernel-like build with `__meta`.
//! let options = LoadOptions {
//!     drv_dirs: vec!["fixtures/kernel/drvs".into()],
//!     ..LoadOptions::default()
//! };
//! let root = std::fs::read_to_string("fixtures/kernel/root")?;
//! let closure = Closure::load(&options, &[root.trim().to_owned()])?;
//! let hashes = drvmeta::hashing::hash_closure(&closure);
//! let report = drvmeta::report::build(&closure, &hashes, closure.roots());
//! let (path, root) = report.derivations.iter().next().unwrap();
//! assert!(root.meta_opt_in, "{path} carries __meta and derivation-meta");
//! // Meta is hashed classically but not modulo meta: the output paths differ.
//! assert!(root.meta_changes_outputs());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod batch;
pub mod closure;
pub mod diff;
pub mod error;
pub mod export;
pub mod hashing;
pub mod import;
pub mod meta;
pub mod nix_store;
pub mod one_pass;
pub mod out_dir;
pub mod provenance;
pub mod report;
pub mod rewrite;
pub mod sbom;
pub mod show;
pub mod substitute;

pub use error::{Error, Result};
