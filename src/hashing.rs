//! Classic hash modulo and hash modulo meta over a closure, memoised.
//!
//! Both hashes are computed by `nix-derivation`; this module only decides
//! *which* derivation is hashed and which input hashes it sees:
//!
//! - **classic**: the derivation as written, each input contributing its
//!   classic input-form hash — exactly what Nix computes.
//! - **modulo meta**: the derivation's *meta-normal form*: stripped of meta
//!   when opted in ([`crate::meta`]), each input contributing its
//!   modulo-meta input-form hash, and its own outputs (paths and environment
//!   entries) set to the paths that result. For a derivation of a meta-free
//!   closure this is the derivation itself, so both hashes agree; for a
//!   derivation written by a derivation-meta Nix it is the byte-exact
//!   derivation a meta-free instantiation gives.
//!
//! Each derivation is hashed once per run, inputs before dependents
//! ([`crate::closure::Closure::nodes`] order).

use std::collections::HashMap;

use nix_derivation::{
    Derivation, DerivationModuloHash, InputDerivationHash, InputResolutionError, Output,
    OutputPathHash, StoreDir, StorePath,
};

use rayon::prelude::*;

use crate::closure::Closure;
use crate::meta::{self, MetaInfo};

/// Output paths by output name, sorted by name. A vector rather than a map:
/// most derivations have one output, and a closure holds three of these per
/// derivation.
pub type OutputPaths = Vec<(String, Option<StorePath>)>;

/// The hashes of one derivation under one hashing scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hashes {
    /// Output form (outputs masked): decides the derivation's own
    /// input-addressed output paths. `None` for fixed-output, floating CA and
    /// impure derivations, and while an input is deferred.
    pub output_hash: Option<DerivationModuloHash>,
    /// Input form: what dependents see. For a fixed-output derivation this is
    /// the fixed-output hash.
    pub input_hash: InputDerivationHash,
    /// Output paths by output name (sorted), `None` where they are not known
    /// before building.
    pub outputs: OutputPaths,
}

impl Hashes {
    /// The input-form hash, `None` when deferred.
    #[must_use]
    pub fn input_hash_value(&self) -> Option<DerivationModuloHash> {
        match self.input_hash {
            InputDerivationHash::Regular(hash) | InputDerivationHash::FixedOutput(hash) => {
                Some(hash)
            }
            InputDerivationHash::Deferred => None,
        }
    }
}

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
///
/// `drvmeta hash` loads and hashes in one pass instead
/// ([`crate::one_pass::load_and_hash`]: each derivation parsed once); this is
/// for walks that need the closure's bytes afterwards.
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
    hash_derivation(
        node.derivation().map_err(|error| error.to_string()),
        closure.store_dir(),
        input,
    )
}

/// Hash one parsed derivation (or record why it could not be read), given
/// the results of its input derivations: `input` answers for every path in
/// [`Derivation::input_derivations`].
///
/// The derivation is taken by value so that its meta-normal form is built
/// without copying it.
///
/// # Panics
/// When `input` does not know an input derivation of `drv`.
pub fn hash_derivation<'a>(
    drv: Result<Derivation, String>,
    store_dir: &StoreDir,
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
    let input = |path: &StorePath| input(path).expect("the results of every input are known");
    let lookup = |scheme: fn(&NodeHashes) -> &Result<Hashes, String>| {
        move |path: &StorePath| -> Result<InputDerivationHash, String> {
            scheme(input(path))
                .as_ref()
                .map(|hashes| hashes.input_hash)
                .map_err(|_| "the input is invalid".to_owned())
        }
    };
    let classic = merge_colliding_inputs(&drv, lookup(|r| &r.classic)).and_then(|merged| {
        hashes_of(
            store_dir,
            merged.as_ref().unwrap_or(&drv),
            lookup(|r| &r.classic),
        )
    });
    let info = meta::inspect(&drv);
    let inputs_unchanged = drv.input_derivations().keys().all(|path| {
        let input = input(path);
        match (&input.classic, &input.modulo_meta) {
            (Ok(classic), Ok(modulo)) => classic.input_hash == modulo.input_hash,
            _ => false,
        }
    });
    let meta_object = meta::meta_object(&drv).cloned();
    let recorded = recorded_outputs(store_dir, &drv);
    let modulo_meta = if !info.opt_in && inputs_unchanged {
        classic.clone()
    } else {
        meta_normal_form_of(drv, lookup(|r| &r.modulo_meta))
            .and_then(|normal| hashes_of(store_dir, &normal, lookup(|r| &r.modulo_meta)))
    };
    NodeHashes {
        meta_object,
        recorded,
        meta: info,
        classic,
        modulo_meta,
    }
}

fn resolution_error(error: InputResolutionError<String>, store_dir: &StoreDir) -> String {
    match error {
        InputResolutionError::Derivation(error) => error.to_string(),
        InputResolutionError::Resolve { path, error } => format!(
            "input derivation {}: {error}",
            path.to_absolute_path_in(store_dir)
        ),
        other => other.to_string(),
    }
}

/// The derivation as a meta-free Nix would have written it, as far as this
/// derivation alone decides: meta stripped when opted in, own outputs set
/// from the modulo-meta hashes of the inputs.
///
/// # Errors
/// A message when the derivation is invalid or an input is.
pub fn meta_normal_form(
    drv: &Derivation,
    resolve: impl FnMut(&StorePath) -> Result<InputDerivationHash, String>,
) -> Result<Derivation, String> {
    meta_normal_form_of(drv.clone(), resolve)
}

/// [`meta_normal_form`] of a derivation the caller no longer needs.
fn meta_normal_form_of(
    drv: Derivation,
    mut resolve: impl FnMut(&StorePath) -> Result<InputDerivationHash, String>,
) -> Result<Derivation, String> {
    let stripped = meta::stripped_attrs(&drv);
    let store_dir = drv.store_dir().clone();
    let merged = merge_colliding_inputs(&drv, &mut resolve)?;
    let mut builder = merged.unwrap_or(drv).into_builder();
    if let Some(stripped) = stripped {
        *builder.structured_attrs_mut() = Some(stripped);
    }
    builder
        .try_build_with_input_hashes(resolve)
        .map(nix_derivation::ValidatedDerivation::into_derivation)
        .map_err(|error| resolution_error(error, &store_dir))
}

/// `drv` with input derivations whose regular hashes collide merged, as Nix
/// does; `None` when no inputs collide (the common case: nothing is copied).
///
/// Nix replaces each input derivation path by its hash and *unions* the
/// requested outputs of inputs with the same hash. `nix-derivation` 0.6.1
/// keeps only the last input's outputs (its `try_modulo_inputs` inserts
/// into a map), which gives a wrong hash for, e.g., Nix's `parent-split`
/// vector. Folding the colliding entries into one input beforehand makes the
/// crate's result Nix's. The merge goes through Nix's derivation JSON so that
/// nothing else changes (the crate's builder would fill in outputs); a
/// derivation whose environment is not UTF-8 cannot take that route and is
/// reported as an error in the rare case that its inputs collide.
fn merge_colliding_inputs(
    drv: &Derivation,
    mut resolve: impl FnMut(&StorePath) -> Result<InputDerivationHash, String>,
) -> Result<Option<Derivation>, String> {
    let mut first_with_hash: HashMap<DerivationModuloHash, &StorePath> = HashMap::new();
    let mut moves: Vec<(String, String)> = Vec::new();
    for path in drv.input_derivations().keys() {
        if let InputDerivationHash::Regular(hash) = resolve(path)? {
            match first_with_hash.get(&hash) {
                Some(first) => moves.push((path.to_basename(), first.to_basename())),
                None => {
                    first_with_hash.insert(hash, path);
                }
            }
        }
    }
    if moves.is_empty() {
        return Ok(None);
    }
    let context = "merging input derivations with equal hashes";
    let mut value =
        nix_derivation::json::to_value(drv).map_err(|error| format!("{context}: {error}"))?;
    let inputs = value["inputs"]["drvs"]
        .as_object_mut()
        .ok_or_else(|| format!("{context}: no inputs.drvs object"))?;
    for (from, into) in moves {
        let moved = inputs.remove(&from).unwrap_or_default();
        let has_dynamic = |v: &serde_json::Value| {
            v["dynamicOutputs"]
                .as_object()
                .is_some_and(|m| !m.is_empty())
        };
        if has_dynamic(&moved) || has_dynamic(&inputs[&into]) {
            return Err(format!("{context}: dynamic outputs cannot be merged"));
        }
        let mut outputs: Vec<serde_json::Value> = inputs[&into]["outputs"]
            .as_array()
            .into_iter()
            .chain(moved["outputs"].as_array())
            .flatten()
            .cloned()
            .collect();
        outputs.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
        outputs.dedup();
        inputs[&into]["outputs"] = serde_json::Value::Array(outputs);
    }
    let bytes = serde_json::to_vec(&value).map_err(|error| format!("{context}: {error}"))?;
    Derivation::from_json_bytes_in(&bytes, drv.store_dir().clone())
        .map(Some)
        .map_err(|error| format!("{context}: {error}"))
}

fn is_input_addressed(drv: &Derivation) -> bool {
    drv.outputs()
        .values()
        .all(|output| matches!(output, Output::InputAddressed { .. } | Output::Deferred))
}

/// Hash one derivation with the given input hashes.
///
/// # Errors
/// A message when the derivation is invalid or an input is.
pub fn hashes_of(
    store_dir: &StoreDir,
    drv: &Derivation,
    mut resolve: impl FnMut(&StorePath) -> Result<InputDerivationHash, String>,
) -> Result<Hashes, String> {
    let input_hash = drv
        .try_hash_input_derivation_modulo(&mut resolve)
        .map_err(|error| resolution_error(error, store_dir))?;
    let output_hash = if is_input_addressed(drv) {
        match drv
            .try_hash_output_path_modulo(&mut resolve)
            .map_err(|error| resolution_error(error, store_dir))?
        {
            OutputPathHash::Ready(hash) => Some(hash),
            OutputPathHash::Deferred => None,
        }
    } else {
        None
    };
    let name = drv.name();
    let outputs = drv
        .outputs()
        .iter()
        .map(|(output_name, output)| {
            let path = match output {
                Output::InputAddressed { .. } | Output::Deferred => output_hash
                    .map(|hash| store_dir.build_output_path(hash, output_name, name))
                    .transpose()
                    .map_err(|error| error.to_string()),
                Output::Fixed { .. } => output
                    .path_in(store_dir, name, output_name)
                    .map_err(|error| error.to_string()),
                Output::Floating { .. } | Output::Impure { .. } => Ok(None),
            }
            .map_err(|error| format!("output {output_name:?}: {error}"))?;
            Ok((output_name.clone(), path))
        })
        .collect::<Result<_, String>>()?;
    Ok(Hashes {
        output_hash,
        input_hash,
        outputs,
    })
}

/// The output paths as written in the derivation (`None` where empty).
#[must_use]
pub fn recorded_outputs(store_dir: &StoreDir, drv: &Derivation) -> OutputPaths {
    drv.outputs()
        .iter()
        .map(|(name, output)| {
            (
                name.clone(),
                output.path_in(store_dir, drv.name(), name).ok().flatten(),
            )
        })
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
