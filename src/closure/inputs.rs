//! Command-line inputs as Nix users give them, turned into derivations.
//!
//! drvmeta reads `.drv` files; users also have output paths, `result`
//! links, `.nix` files and flake installables at hand. [`resolve`] takes
//! each argument to the derivations it names:
//!
//! | argument | derivations |
//! |---|---|
//! | a `.drv` store path or file (`…drv!out` too) | itself |
//! | an output path, or a link to one (`result`) | its deriver, from the Nix database |
//! | a `.nix` file, or a directory with `default.nix` | what `nix-instantiate` prints |
//! | a flake installable (`.#pkg`, `nixpkgs#hello`) | `nix path-info --derivation` |
//!
//! drvmeta never evaluates Nix itself: the last two are handed to Nix, and
//! a note on stderr says so. Anything else is an error naming the argument
//! and what to give instead.

use std::path::Path;

use super::LoadOptions;
use crate::error::{Error, Result};

/// The derivations the arguments name, and notes for the user (what was
/// handed to Nix, which deriver was taken).
#[derive(Debug, Clone, Default)]
pub struct Resolution {
    /// Derivation arguments, in the order given (as [`super::Closure::load`]
    /// takes them).
    pub drvs: Vec<String>,
    /// What was done to get them, one line each.
    pub notes: Vec<String>,
}

/// Whether anything is at `path` (a dangling or looping symlink counts:
/// reading it says what it is).
fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

fn bad(arg: &str, reason: impl Into<String>) -> Error {
    Error::BadPath {
        path: arg.to_owned(),
        reason: reason.into(),
    }
}

/// Resolve every argument (see the module docs).
///
/// # Errors
/// [`Error::BadPath`] for an argument that names no derivation, saying what
/// to give instead; [`Error::Store`] when Nix fails on what it was handed.
pub fn resolve(options: &LoadOptions, args: &[String]) -> Result<Resolution> {
    options.check()?;
    let mut resolution = Resolution::default();
    for arg in args {
        resolve_one(options, arg, &mut resolution)?;
    }
    Ok(resolution)
}

fn resolve_one(options: &LoadOptions, arg: &str, out: &mut Resolution) -> Result<()> {
    let store = options.store_dir.as_str();
    let drv_part = arg.split_once('!').map_or(arg, |(drv, _)| drv);
    if drv_part.ends_with(".drv") {
        let in_store = drv_part
            .strip_prefix(store)
            .is_some_and(|rest| rest.starts_with('/'));
        if !in_store && !exists(Path::new(drv_part)) {
            return Err(bad(arg, "no such file"));
        }
        if in_store {
            let (_, file) = options.resolve_arg(drv_part)?;
            if !exists(&file) {
                return Err(bad(
                    arg,
                    format!(
                        "no such derivation (looked at {})\nhint: instantiate it first, e.g. \
                         nix-instantiate FILE.nix",
                        file.display()
                    ),
                ));
            }
        }
        out.drvs.push(arg.to_owned());
        return Ok(());
    }
    // A flake installable: `<flake ref>#<attribute>` (a file of that name
    // is a file).
    if arg.contains('#') && !exists(Path::new(arg)) {
        out.notes.push(format!(
            "{arg}: a flake installable: asking Nix for its derivation (nix path-info --derivation)"
        ));
        out.drvs.extend(crate::nix_store::flake_derivation(arg)?);
        return Ok(());
    }
    // A link into the store (`result`, a GC root) or a store path.
    let target = std::fs::read_link(arg)
        .ok()
        .and_then(|t| t.to_str().map(str::to_owned))
        .filter(|t| t.starts_with(&format!("{store}/")));
    let store_path = target.as_deref().or_else(|| {
        arg.strip_prefix(store)
            .filter(|rest| rest.starts_with('/'))
            .map(|_| arg)
    });
    if let Some(path) = store_path {
        let path = path.trim_end_matches('/');
        if path.ends_with(".drv") {
            out.drvs.push(path.to_owned());
            return Ok(());
        }
        if !Path::new(path).exists() {
            return Err(bad(
                arg,
                "no such store path\nhint: give a .drv, an output path that exists, a .nix file \
                 or a flake installable",
            ));
        }
        let deriver = crate::nix_store::derivers(&[path.to_owned()])
            .ok()
            .and_then(|d| d.into_iter().next().flatten())
            .ok_or_else(|| {
                bad(
                    arg,
                    "an output path whose deriver Nix does not know (substituted or imported \
                     without one)\nhint: give its .drv instead",
                )
            })?;
        if !Path::new(&deriver).exists() {
            return Err(bad(
                arg,
                format!(
                    "an output path of {deriver}, which is no longer in the store (garbage \
                     collected)\nhint: instantiate it again"
                ),
            ));
        }
        out.notes.push(format!(
            "{arg}: an output path: using its deriver {deriver}"
        ));
        out.drvs.push(deriver);
        return Ok(());
    }
    let file = Path::new(arg);
    if file.is_dir() {
        if file.join("default.nix").is_file() {
            return instantiate(arg, out);
        }
        return Err(bad(
            arg,
            "a directory without default.nix\nhint: give a .drv, an output path, a .nix file or \
             a flake installable",
        ));
    }
    if arg.ends_with(".nix") {
        if !file.is_file() {
            return Err(bad(arg, "no such file"));
        }
        return instantiate(arg, out);
    }
    if file.exists() {
        // Some other file: read as a derivation, which says what is wrong.
        out.drvs.push(arg.to_owned());
        return Ok(());
    }
    if !arg.contains('/') {
        return Err(bad(
            arg,
            format!(
                "not a file, store path or flake installable\nhint: drvmeta reads \
                 derivations: instantiate it first (nix-instantiate '<nixpkgs>' -A {arg}) or pass \
                 a flake installable (nixpkgs#{arg})"
            ),
        ));
    }
    Err(bad(arg, "no such file or directory"))
}

fn instantiate(arg: &str, out: &mut Resolution) -> Result<()> {
    out.notes.push(format!(
        "{arg}: a Nix expression: instantiating it with nix-instantiate (drvmeta does not evaluate)"
    ));
    let drvs = crate::nix_store::instantiate(arg)?;
    if drvs.is_empty() {
        return Err(bad(arg, "nix-instantiate gave no derivation"));
    }
    out.drvs.extend(drvs);
    Ok(())
}
