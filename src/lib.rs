//! drvmeta: inspect Nix derivations, hash them classically and *modulo meta*.
//!
//! Nix hashes everything in a derivation into its output paths, so metadata
//! (a license, the kernel commit a build came from) causes rebuilds. *Hash
//! modulo meta* (NixOS/nix PR #16285) keeps metadata in structured attrs as
//! `__meta` and hashes derivations with it stripped. This crate brings that
//! to today's Nix: it reads `.drv` files byte-exactly as any Nix version
//! wrote them ([`derivation`]: ATerm, store paths, hash modulo streamed
//! into SHA-256, `__meta` stripped by editing the `__json` text), tells which
//! derivations are opted in ([`derivation::meta`]), computes the classic and
//! the meta-stripped hashes and output paths side by side over closures
//! ([`hashing`]), and renders derivations as Nix's JSON ([`show`]).
//!
//! # Example
//!
//! One derivation, parsed and printed back byte for byte:
//!
//! ```
//! use drvmeta::derivation::{Derivation, StoreDir};
//!
//! let bytes = br#"Derive([("out","","r:sha256","")],[],[],"x86_64-linux","/bin/sh",[],[("__json","{\"x\":1e+06}"),("out","")])"#;
//! let drv = Derivation::parse(bytes.to_vec(), "f", &StoreDir::default())?;
//! assert_eq!(drv.to_aterm_bytes(), bytes);
//! // Nix 2.8's float form is kept as written.
//! assert_eq!(drv.structured_attrs().unwrap().as_ref(), br#"{"x":1e+06}"#);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A closure:
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
pub mod derivation;
pub mod diff;
pub mod error;
pub mod export;
pub mod hashing;
pub mod import;

pub mod nix_store;
pub mod out_dir;
pub mod provenance;
pub mod report;
pub mod rewrite;
pub mod safe_read;
pub mod sbom;
pub mod show;
pub mod substitute;

pub use error::{Error, Result};
