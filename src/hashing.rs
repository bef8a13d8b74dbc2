//! Classic hash modulo and hash modulo meta over a closure, memoised.
//!
//! Both hashes are computed by the derivation core
//! ([`crate::derivation::hash`]); this module only decides *which* form is
//! hashed and which input hashes it sees:
//!
//! - **classic**: the derivation as written, each input contributing its
//!   classic input-form hash — exactly what Nix computes.
//! - **modulo meta**: the derivation's *meta-normal form*: `__meta` stripped
//!   from the `__json` text when opted in ([`crate::derivation::meta`]), each
//!   input contributing its modulo-meta input-form hash, and its own outputs
//!   (paths and environment entries) set to the paths that result. For a
//!   derivation of a meta-free closure this is the derivation itself, so
//!   both hashes agree; for a derivation written by a derivation-meta Nix it
//!   is the byte-exact derivation a meta-free instantiation gives.
//!
//! Each derivation is hashed once per run, inputs before dependents
//! ([`crate::closure::Closure::nodes`] order).

use rayon::prelude::*;

use crate::closure::Closure;
use crate::derivation::hash::{HashOptions, hash_derivation};
use crate::derivation::meta::{self, MetaInfo};
use crate::derivation::{Derivation, StorePath};
pub use crate::derivation::{Hashes, InputHash, OutputPaths};

/// Classic and modulo-meta hashes of one derivation, or why they could not
/// be computed, with what reports need from the derivation itself.
#[derive(Debug, Clone)]
pub struct NodeHashes {
    /// What the derivation says about `__meta`.
    pub meta: MetaInfo,
    /// The `__meta` object when opted in.
    pub meta_object: Option<serde_json::Map<String, serde_json::Value>>,
    /// The output paths as written in the file.
    pub recorded: OutputPaths,
    /// The classic hashes (what Nix computes).
    pub classic: Result<Hashes, String>,
    /// The hashes modulo meta.
    pub modulo_meta: Result<Hashes, String>,
}

impl NodeHashes {
    /// Reasons the derivation is invalid: meta problems and hashing errors.
    #[must_use]
    pub fn errors(&self) -> Vec<String> {
        let mut errors = self.meta.problems.clone();
        if let Err(error) = &self.classic {
            errors.push(error.clone());
        }
        if let Err(error) = &self.modulo_meta
            && self.classic.as_ref().err() != Some(error)
        {
            errors.push(format!("modulo meta: {error}"));
        }
        errors
    }
}

/// Hash every derivation of `closure`, returning results in
/// [`Closure::nodes`] order.
///
/// Derivations are hashed level by level (a derivation's level is one more
/// than its deepest input's), each level in parallel.
#[must_use]
pub fn hash_closure(closure: &Closure) -> Vec<NodeHashes> {
    let nodes = closure.nodes();
    let mut results: Vec<Option<NodeHashes>> = (0..nodes.len()).map(|_| None).collect();
    for level in closure.levels() {
        let done = &results;
        let computed: Vec<NodeHashes> = level
            .par_iter()
            .with_min_len(16)
            .map(|&index| hash_node(closure, index, done))
            .collect();
        for (index, hashes) in level.into_iter().zip(computed) {
            results[index] = Some(hashes);
        }
    }
    results
        .into_iter()
        .map(|hashes| hashes.expect("every level was hashed"))
        .collect()
}

/// Hash one derivation of `closure` whose inputs are all in `done`.
fn hash_node(closure: &Closure, index: usize, done: &[Option<NodeHashes>]) -> NodeHashes {
    let node = &closure.nodes()[index];
    let input = |path: &StorePath| {
        let position = node.input_position(path)?;
        done[position].as_ref()
    };
    hash_derivation_both(node.derivation().map_err(|error| error.to_string()), input)
}

/// Hash one parsed derivation (or record why it could not be read), given
/// the results of its input derivations: `input` answers for every input
/// derivation path.
pub fn hash_derivation_both<'a>(
    drv: Result<Derivation, String>,
    input: impl Fn(&StorePath) -> Option<&'a NodeHashes>,
) -> NodeHashes {
    let drv = match drv {
        Ok(drv) => drv,
        Err(error) => {
            return NodeHashes {
                meta: MetaInfo::default(),
                meta_object: None,
                recorded: OutputPaths::new(),
                classic: Err(error.clone()),
                modulo_meta: Err(error),
            };
        }
    };
    let input = &input;
    let scheme = |pick: fn(&NodeHashes) -> &Result<Hashes, String>| {
        move |path: &StorePath| -> Option<InputHash> {
            input(path).and_then(|node| pick(node).as_ref().ok().map(|h| h.input_hash))
        }
    };
    let classic = hash_derivation(&drv, HashOptions::default(), scheme(|r| &r.classic))
        .map_err(|error| error.to_string());
    let info = meta::inspect(&drv);
    let inputs_unchanged = drv.input_derivations().iter().all(|i| {
        input(&i.path).is_some_and(|node| match (&node.classic, &node.modulo_meta) {
            (Ok(classic), Ok(modulo)) => classic.input_hash == modulo.input_hash,
            _ => false,
        })
    });
    let recorded = recorded_outputs(&drv);
    let modulo_meta = if !info.opt_in && inputs_unchanged {
        classic.clone()
    } else {
        let stripped = meta::stripped_json_raw(&drv);
        hash_derivation(
            &drv,
            HashOptions {
                json: stripped.as_deref(),
                set_outputs: true,
            },
            scheme(|r| &r.modulo_meta),
        )
        .map_err(|error| error.to_string())
    };
    NodeHashes {
        meta_object: meta::meta_object(&drv),
        recorded,
        meta: info,
        classic,
        modulo_meta,
    }
}

/// The derivation as a meta-free Nix would have written it, as far as this
/// derivation alone decides: meta stripped from the `__json` text when opted
/// in, own outputs set from the modulo-meta hashes of the inputs. Returns
/// the form and its hashes.
///
/// # Errors
/// A message when the derivation is invalid or an input is.
pub fn meta_normal_form(
    drv: &Derivation,
    input: impl Fn(&StorePath) -> Option<InputHash>,
) -> Result<(Derivation, Hashes), String> {
    let stripped = meta::stripped_json_raw(drv);
    let hashes = hash_derivation(
        drv,
        HashOptions {
            json: stripped.as_deref(),
            set_outputs: true,
        },
        &input,
    )
    .map_err(|error| error.to_string())?;
    let set: OutputPaths = hashes
        .outputs
        .iter()
        .filter(|(name, _)| {
            drv.output(name).is_some_and(|o| {
                matches!(
                    o.kind,
                    crate::derivation::OutputKind::InputAddressed(_)
                        | crate::derivation::OutputKind::Deferred
                )
            })
        })
        .cloned()
        .collect();
    let normal = drv
        .with_edits(Some(&set), stripped.as_deref())
        .map_err(|error| format!("the meta-normal form does not parse: {error}"))?;
    Ok((normal, hashes))
}

/// The output paths as written in the derivation (`None` where empty).
#[must_use]
pub fn recorded_outputs(drv: &Derivation) -> OutputPaths {
    drv.outputs()
        .map(|o| (o.name.to_owned(), o.path().cloned()))
        .collect()
}

/// Which computed output paths agree with the ones written in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecordedMatches {
    /// Only the classic paths (a derivation written by a classic Nix, whose
    /// meta changes its outputs).
    Classic,
    /// Only the modulo-meta paths (written by a derivation-meta Nix).
    ModuloMeta,
    /// Both (meta does not change the outputs).
    Both,
    /// Neither: the derivation is inconsistent.
    Neither,
}

impl RecordedMatches {
    /// Compare recorded outputs with both computed sets.
    #[must_use]
    pub fn compare(
        recorded: &OutputPaths,
        classic: Option<&Hashes>,
        modulo_meta: Option<&Hashes>,
    ) -> Self {
        let same = |hashes: Option<&Hashes>| hashes.is_some_and(|h| &h.outputs == recorded);
        match (same(classic), same(modulo_meta)) {
            (true, true) => Self::Both,
            (true, false) => Self::Classic,
            (false, true) => Self::ModuloMeta,
            (false, false) => Self::Neither,
        }
    }
}
