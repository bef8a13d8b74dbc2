//! Closure post-processing: rewrite (A → A*) and strip (A or A* → B),
//! DESIGN.md §2.3.
//!
//! Both walk the closure in dependency order. Each derivation gets its input
//! derivation paths, and every embedded hash part or downstream placeholder of
//! an input that changed, replaced ([`crate::substitute`]); its outputs are
//! then computed modulo meta from the results of its inputs. **Strip** writes
//! the meta-normal form (meta removed: the exact derivation a meta-free
//! instantiation gives); **rewrite** keeps `__meta` and the feature and sets
//! the outputs to the modulo-meta paths, as a derivation-meta Nix would. Both
//! give every output the same path, so nothing a strip imports rebuilds for a
//! meta-only change.

use rayon::prelude::*;

use crate::closure::{Closure, drv_name, parse_owned};
use crate::derivation::meta;
use crate::derivation::{Derivation, InputHash, StorePath, downstream_placeholder};
use crate::error::{Error, Result};
use crate::hashing::{OutputPaths, meta_normal_form, recorded_outputs};
use crate::substitute::Substitutions;

/// What to make of the closure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// What a derivation-meta Nix would have instantiated (meta kept).
    Rewrite,
    /// The exact meta-free closure.
    Strip,
}

/// One derivation of the resulting closure.
#[derive(Debug, Clone)]
pub struct Rewritten {
    /// Its store path.
    pub path: StorePath,
    /// Its ATerm bytes.
    pub bytes: Vec<u8>,
    /// Its outputs (`None` where unknown before building).
    pub outputs: OutputPaths,
    /// Its references: input derivations and input sources.
    pub references: Vec<StorePath>,
    /// Whether it differs from the derivation it was made from.
    pub changed: bool,
    /// Whether it is opted in to hash modulo meta.
    pub opted_in: bool,
    /// Its hash modulo meta in input form (what dependents see).
    input_hash: InputHash,
    /// The output paths the original derivation recorded (what dependents
    /// embed today).
    recorded: OutputPaths,
}

/// Rewrite or strip every derivation of `closure`; results are in
/// [`Closure::nodes`] order.
///
/// # Errors
/// An invalid derivation (naming it and why), or one that cannot be
/// re-serialised.
pub fn rewrite_closure(closure: &Closure, mode: Mode) -> Result<Vec<Rewritten>> {
    let nodes = closure.nodes();
    let mut results: Vec<Option<Rewritten>> = (0..nodes.len()).map(|_| None).collect();
    let mut subs = Substitutions::default();
    for level in closure.levels() {
        let done = &results;
        let subs_ref = &subs;
        let computed: Vec<Result<Rewritten>> = level
            .par_iter()
            .with_min_len(16)
            .map(|&index| rewrite_one(closure, index, done, subs_ref, mode))
            .collect();
        for (index, result) in level.into_iter().zip(computed) {
            let result = result?;
            record_changes(closure, index, &result, &mut subs)?;
            results[index] = Some(result);
        }
    }
    Ok(results
        .into_iter()
        .map(|r| r.expect("every level was rewritten"))
        .collect())
}

/// Add what dependents must replace after derivation `index` became `result`.
fn record_changes(
    closure: &Closure,
    index: usize,
    result: &Rewritten,
    subs: &mut Substitutions,
) -> Result<()> {
    let node = &closure.nodes()[index];
    if !result.changed {
        return Ok(());
    }
    let hash_part = |path: &StorePath| path.to_basename()[..crate::substitute::HASH_LEN].to_owned();
    subs.hash(&hash_part(&node.path), &hash_part(&result.path));
    for (name, old) in &result.recorded {
        let new = result
            .outputs
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, p)| p.as_ref());
        if let (Some(old), Some(new)) = (old, new) {
            subs.hash(&hash_part(old), &hash_part(new));
        }
        subs.placeholder(
            &downstream_placeholder(&node.path, name),
            &downstream_placeholder(&result.path, name),
        );
    }
    Ok(())
}

fn rewrite_one(
    closure: &Closure,
    index: usize,
    done: &[Option<Rewritten>],
    subs: &Substitutions,
    mode: Mode,
) -> Result<Rewritten> {
    let node = &closure.nodes()[index];
    let store_dir = closure.store_dir();
    let fail = |message: String| Error::Rewrite {
        path: closure.render(&node.path),
        message,
    };
    // Parsed again only when an input's change reaches its bytes.
    let substituted = node.with_bytes(|original| subs.apply(original));
    let drv = match substituted {
        Some(bytes) => parse_owned(bytes, drv_name(&node.path), store_dir, &node.file)?,
        None => node.derivation()?,
    };

    // Input hashes modulo meta, by the inputs' new paths.
    let inputs: Vec<(&StorePath, &Rewritten)> = node
        .inputs
        .iter()
        .map(|&i| {
            let input = done[i].as_ref().expect("inputs are rewritten first");
            (&input.path, input)
        })
        .collect();
    let resolve = |path: &StorePath| -> Option<InputHash> {
        inputs
            .iter()
            .find(|(candidate, _)| *candidate == path)
            .map(|(_, input)| input.input_hash)
    };
    // Substitution never touches the derivation's own output paths.
    let recorded = recorded_outputs(&drv);
    let (normal, hashes) = meta_normal_form(&drv, resolve).map_err(fail)?;
    let opted_in = meta::inspect(&drv).opt_in;

    let result: Derivation = match mode {
        Mode::Strip => normal,
        Mode::Rewrite if !opted_in => normal,
        Mode::Rewrite => {
            // Keep meta; give the outputs (and every occurrence of their old
            // hash parts) the modulo-meta paths.
            let mut own = Substitutions::default();
            for ((_, old), (_, new)) in recorded.iter().zip(&hashes.outputs) {
                if let (Some(old), Some(new)) = (old, new) {
                    own.hash(&old.to_basename()[..32], &new.to_basename()[..32]);
                }
            }
            match own.apply(&drv.to_aterm_bytes()) {
                Some(bytes) => parse_owned(bytes, drv.name(), store_dir, &node.file)?,
                None => drv,
            }
        }
    };
    // Every derivation the walk makes is printed canonically, so its bytes
    // are its ATerm: hash them for the path and hand them over, uncopied.
    let path = result.drv_path().map_err(|error| fail(error.to_string()))?;
    let references = result.references().cloned().collect();
    let bytes = if result.is_canonical() {
        result.into_bytes()
    } else {
        result.to_aterm_bytes()
    };
    Ok(Rewritten {
        changed: path != node.path,
        path,
        bytes,
        outputs: hashes.outputs,
        references,
        opted_in: mode == Mode::Rewrite && opted_in,
        input_hash: hashes.input_hash,
        recorded,
    })
}
