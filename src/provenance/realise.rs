//! `drvmeta realise`: build a meta-carrying closure the way a
//! derivation-meta Nix would, on stock Nix, and record what was built.
//!
//! The closure is stripped of meta ([`crate::rewrite`]), imported
//! ([`crate::import`]) and the stripped roots are realised with
//! `nix-store --realise` — Nix builds or substitutes only what is missing,
//! so a provenance-only change builds nothing. Then every derivation whose
//! outputs this run made valid (built or substituted), and every root, gets
//! a record naming both the meta-free derivation that was built and the
//! meta-carrying one it stands for (DESIGN.md §3).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::Recording;
use super::record::Facts;
use super::store::Written;
use crate::closure::{Closure, LoadOptions};
use crate::error::Result;
use crate::rewrite::{Mode, rewrite_closure};

/// How to realise.
#[derive(Debug, Clone, Copy)]
pub struct RealiseOptions<'a> {
    /// Where records go, the run and the key.
    pub recording: Recording<'a>,
    /// Where the outputs' GC roots go (`nix-build --out-link`); `None`: no
    /// root.
    pub out_link: Option<&'a Path>,
}

/// The records written for one derivation.
#[derive(Debug)]
pub struct Recorded {
    /// The meta-carrying derivation (as given).
    pub original: String,
    /// What the records say.
    pub facts: Facts,
    /// The record files, new or already there.
    pub written: Vec<(PathBuf, Written)>,
}

/// What a realise did.
#[derive(Debug)]
pub struct Realised {
    /// The roots' output paths, as `nix-store --realise` prints them.
    pub outputs: Vec<String>,
    /// Records, inputs before dependents: every derivation whose outputs
    /// were missing before, and every root.
    pub recorded: Vec<Recorded>,
}

/// Strip, import and realise `closure`'s roots, then record (see the
/// module docs). `options.store_dir` and drv directories are those the
/// closure was loaded with.
///
/// # Errors
/// When stripping, importing, the build, or writing a record fails.
pub fn realise(
    closure: &Closure,
    load: &LoadOptions,
    options: RealiseOptions<'_>,
) -> Result<Realised> {
    let stripped = rewrite_closure(closure, Mode::Strip, true)?;
    crate::import::import_closure(closure, &stripped)?;
    // Which derivations have outputs missing now: those the build makes.
    let known: Vec<String> = stripped
        .iter()
        .flat_map(|s| s.outputs.iter().filter_map(|(_, path)| path.as_ref()))
        .map(|path| closure.render(path))
        .collect();
    let missing: BTreeSet<String> = crate::nix_store::invalid_paths(&known)?
        .into_iter()
        .collect();
    let roots: BTreeSet<usize> = closure.roots().iter().copied().collect();
    let to_build: Vec<String> = roots
        .iter()
        .map(|&r| closure.render(&stripped[r].path))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let outputs = crate::nix_store::realise(&to_build, options.out_link)?;
    let mut recorded = Vec::new();
    // Closure order: inputs before dependents.
    for (index, node) in closure.nodes().iter().enumerate() {
        let built_now = stripped[index]
            .outputs
            .iter()
            .filter_map(|(_, path)| path.as_ref())
            .any(|path| missing.contains(&closure.render(path)));
        if !(built_now || roots.contains(&index)) {
            continue;
        }
        let original = closure.render(&node.path);
        let built = closure.render(&stripped[index].path);
        let facts = super::facts(load, &built, &[], Some(&original))?;
        let written = options.recording.write(&facts)?;
        recorded.push(Recorded {
            original,
            facts,
            written,
        });
    }
    Ok(Realised { outputs, recorded })
}
