//! Provenance records: what was built, from which derivation, kernel and
//! builder revisions (DESIGN.md §3).
//!
//! [`facts`] gathers what a record says about a built derivation (from the
//! `.drv` closure and the Nix store), [`record::statement`] renders it as an
//! in-toto/SLSA statement, [`store::RecordStore`] keeps it, and
//! [`verify`] checks outputs against records later.

pub mod hook;
pub mod kernel;
pub mod kernel_digest;
pub mod kernels_metadata;
pub mod nar;
pub mod push;
pub mod realise;
pub mod record;
pub mod remote;
pub mod sign;
pub mod store;
pub mod verify;

use std::collections::{BTreeMap, HashSet};

use crate::derivation::StorePath;

use crate::closure::cache::HashCache;
use crate::closure::{LoadOptions, drv_name};
use crate::error::{Error, Result};
use crate::hashing::roots_with_cache;
use crate::nix_store;
use kernel::KernelProvenance;
use record::{Facts, Input, Output, Run};
use store::{RecordStore, Written};

/// The output name of store path `path` of derivation `drv_name`:
/// `out` for `<name>`, `<output>` for `<name>-<output>`.
fn output_name_of(path: &StorePath, drv_name: &str, names: &[String]) -> Option<String> {
    names
        .iter()
        .find(|name| {
            let expected = if *name == "out" {
                drv_name.to_owned()
            } else {
                format!("{drv_name}-{name}")
            };
            path.name() == expected
        })
        .cloned()
}

/// Gather the facts of a record for derivation `drv` (a store path) that
/// was built into `out_paths` (all its outputs, valid in the store; empty:
/// ask the store). `original` is the meta-carrying derivation `drv` was
/// stripped from, when there is one (`drvmeta realise`); meta is read from
/// it.
///
/// # Errors
/// Loading errors, an output that is not valid, or Nix failing.
pub fn facts(
    options: &LoadOptions,
    drv: &str,
    out_paths: &[String],
    original: Option<&str>,
) -> Result<Facts> {
    facts_with_cache(options, drv, out_paths, original, None)
}

/// The output paths a command-line path names: itself for an output
/// path; for a derivation (its classic,
/// modulo-meta and realised — stripped — outputs) also the derivation, to
/// filter records by.
///
/// # Errors
/// When the derivation's closure cannot be loaded.
pub fn outputs_named_by(
    options: &LoadOptions,
    path: &str,
) -> Result<(Vec<String>, Option<String>)> {
    if !path.ends_with(".drv") {
        return Ok((vec![path.trim_end_matches('/').to_owned()], None));
    }
    let closure = crate::closure::Closure::load(options, &[path.to_owned()])?;
    let hashes = crate::hashing::hash_closure(&closure);
    let root = closure.roots()[0];
    let mut outputs = std::collections::BTreeSet::new();
    for hashes in [&hashes[root].classic, &hashes[root].modulo_meta]
        .into_iter()
        .flatten()
    {
        outputs.extend(
            hashes
                .outputs
                .iter()
                .filter_map(|(_, p)| p.as_ref())
                .map(|p| closure.render(p)),
        );
    }
    // And what drvmeta realise builds: the stripped derivation's outputs.
    if let Ok(stripped) =
        crate::rewrite::rewrite_closure(&closure, crate::rewrite::Mode::Strip, false)
    {
        outputs.extend(
            stripped[root]
                .outputs
                .iter()
                .filter_map(|(_, p)| p.as_ref())
                .map(|p| closure.render(p)),
        );
    }
    if outputs.is_empty() {
        outputs.extend(nix_store::outputs_of(path).unwrap_or_default());
    }
    Ok((
        outputs.into_iter().collect(),
        Some(closure.render(&closure.nodes()[root].path)),
    ))
}

/// The facts of derivation `arg` as built: its own outputs when they are
/// valid; otherwise, when it was realised modulo meta (`drvmeta realise`:
/// its meta-free derivation's outputs are valid), the facts of that
/// meta-free derivation with `arg` as the original, which is what
/// `realise` records. Returns whether the meta-free derivation was taken.
///
/// # Errors
/// As [`facts`]; when neither is built, that the outputs are not valid
/// (build or `drvmeta realise` it first).
pub fn facts_of_built(
    options: &LoadOptions,
    arg: &str,
    cache: Option<&mut HashCache>,
) -> Result<(Facts, bool)> {
    let node = crate::closure::read_one(options, arg)?;
    let drv = node.derivation()?;
    let recorded: Vec<String> = drv
        .outputs()
        .filter_map(|o| o.path().map(|p| p.to_absolute_path_in(&options.store_dir)))
        .collect();
    let all_recorded = recorded.len() == drv.outputs().count();
    if !all_recorded || nix_store::invalid_paths(&recorded)?.is_empty() {
        return Ok((facts_with_cache(options, arg, &[], None, cache)?, false));
    }
    let closure = crate::closure::Closure::load(options, &[arg.to_owned()])?;
    let root = closure.roots()[0];
    let stripped = crate::rewrite::rewrite_closure(&closure, crate::rewrite::Mode::Strip, false)?;
    let meta_free = &stripped[root];
    let paths: Vec<String> = meta_free
        .outputs
        .iter()
        .filter_map(|(_, p)| p.as_ref().map(|p| closure.render(p)))
        .collect();
    let original = closure.render(&closure.nodes()[root].path);
    let built = closure.render(&meta_free.path);
    if meta_free.changed
        && paths.len() == meta_free.outputs.len()
        && nix_store::invalid_paths(std::slice::from_ref(&built))?.is_empty()
        && nix_store::invalid_paths(&paths)?.is_empty()
    {
        return Ok((facts(options, &built, &[], Some(&original))?, true));
    }
    let hint = if meta_free.changed {
        " (or `drvmeta realise` it)"
    } else {
        ""
    };
    Err(Error::Store(format!(
        "{} is not valid in the Nix store: build {original} first{hint}",
        recorded
            .iter()
            .find(|p| !p.is_empty())
            .cloned()
            .unwrap_or_default()
    )))
}

/// [`facts`], with the closure hashes taken from (and added to) the
/// persistent `cache` ([`crate::hashing::roots_with_cache`]): what the
/// post-build hook uses, so that its cost does not grow with the closure.
///
/// # Errors
/// As [`facts`].
pub fn facts_with_cache(
    options: &LoadOptions,
    drv: &str,
    out_paths: &[String],
    original: Option<&str>,
    cache: Option<&mut HashCache>,
) -> Result<Facts> {
    let mut roots = vec![drv.to_owned()];
    roots.extend(original.map(str::to_owned));
    let rooted = roots_with_cache(options, &roots, cache)?;
    let store_dir = &options.store_dir;
    let render = |path: &StorePath| path.to_absolute_path_in(store_dir);
    let built = &rooted[0];
    let meta_source = rooted.last().expect("at least one root");
    let derivation = &built.drv;
    if !built.path_matches {
        return Err(Error::BadPath {
            path: render(&built.path),
            reason: "its bytes do not hash to its store path: refusing to record it".to_owned(),
        });
    }
    let name = drv_name(&built.path).to_owned();
    let names: Vec<String> = derivation.outputs().map(|o| o.name.to_owned()).collect();

    // Outputs: given, or from the store.
    let out_paths = if out_paths.is_empty() {
        nix_store::outputs_of(&render(&built.path))?
    } else {
        out_paths.to_vec()
    };
    let mut outputs: Vec<(String, String)> = Vec::new();
    for path in &out_paths {
        let parsed = store_dir
            .parse_path(path.as_bytes())
            .map_err(|e| Error::BadPath {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        let output = output_name_of(&parsed, &name, &names).ok_or_else(|| Error::BadPath {
            path: path.clone(),
            reason: format!("not an output of {}", render(&built.path)),
        })?;
        // Recorded only if it is exactly the output Nix registered: the
        // path the derivation records, when it records one.
        if let Some(recorded) = derivation.output(&output).and_then(|o| o.path())
            && render(recorded) != *path
        {
            return Err(Error::BadPath {
                path: path.clone(),
                reason: format!(
                    "named like output {output:?} of {}, but that output is {}",
                    render(&built.path),
                    render(recorded)
                ),
            });
        }
        outputs.push((output, path.clone()));
    }
    outputs.sort();
    if let Some(pair) = outputs.windows(2).find(|pair| pair[0].0 == pair[1].0) {
        return Err(Error::BadPath {
            path: pair[1].1.clone(),
            reason: format!("output {:?} is given twice", pair[0].0),
        });
    }
    // A subset is fine: Nix 2.8 runs the hook of a content-addressed
    // derivation's unresolved form with only the outputs that were wanted.
    check_floating_outputs(options, built, &outputs)?;

    // Inputs: outputs of input derivations, and input sources.
    let mut inputs: Vec<Input> = Vec::new();
    for (input, input_drv) in derivation.input_derivations().iter().zip(&built.inputs) {
        let input_path = &input.path;
        for output in &input.node.outputs {
            let known = input_drv.output(output).and_then(|o| o.path().cloned());
            let drv_text = render(input_path);
            inputs.push(Input {
                uri: known.map_or_else(|| format!("{drv_text}^{output}"), |p| render(&p)),
                nar_sha256: None,
                from: Some((drv_text, output.clone())),
            });
        }
    }
    for source in derivation.input_sources() {
        inputs.push(Input {
            uri: render(source),
            nar_sha256: None,
            from: None,
        });
    }
    inputs.sort_by(|a, b| a.uri.cmp(&b.uri));
    let candidates: Vec<String> = inputs
        .iter()
        .filter(|i| !i.uri.contains('^'))
        .map(|i| i.uri.clone())
        .collect();

    // The narHash Nix has, in as few nix-store calls as possible (the hook
    // runs after every build): one for every hash, one for the sizes.
    let paths: Vec<String> = outputs.iter().map(|(_, p)| p.clone()).collect();
    let all: Vec<String> = paths.iter().chain(&candidates).cloned().collect();
    let (output_hashes, digests) = match nix_store::nar_hashes(&all) {
        Ok(mut hashes) => {
            let inputs = hashes.split_off(paths.len());
            (
                hashes,
                candidates
                    .iter()
                    .cloned()
                    .zip(inputs)
                    .collect::<BTreeMap<_, _>>(),
            )
        }
        Err(_) => {
            // Something is not valid: say which output, or skip the inputs.
            let invalid: HashSet<String> = nix_store::invalid_paths(&all)?.into_iter().collect();
            if let Some(path) = paths.iter().find(|p| invalid.contains(*p)) {
                return Err(Error::Store(format!(
                    "{path} is not valid in the Nix store: build {} first",
                    render(&built.path)
                )));
            }
            let valid: Vec<String> = candidates
                .iter()
                .filter(|p| !invalid.contains(*p))
                .cloned()
                .collect();
            let hashes = nix_store::nar_hashes(&valid)?;
            let outputs = match nix_store::nar_hashes(&paths) {
                Ok(hashes) => hashes,
                // Valid, but Nix will not say its hash: serialise the NARs.
                Err(_) => paths
                    .iter()
                    .map(|p| nar::nar_sha256(std::path::Path::new(p)).map(|(hash, _)| hash))
                    .collect::<Result<_>>()?,
            };
            (outputs, valid.into_iter().zip(hashes).collect())
        }
    };
    let sizes = match nix_store::nar_sizes(&paths) {
        Ok(sizes) => sizes,
        // Nix knows the paths but not their sizes (very old databases):
        // serialise the NARs ourselves.
        Err(_) => paths
            .iter()
            .map(|p| nar::nar_sha256(std::path::Path::new(p)).map(|(_, size)| size))
            .collect::<Result<_>>()?,
    };
    for input in &mut inputs {
        input.nar_sha256 = digests.get(&input.uri).cloned();
    }
    let outputs = outputs
        .into_iter()
        .zip(output_hashes.into_iter().zip(sizes))
        .map(|((name, path), (nar_sha256, nar_size))| {
            let variants = kernel_variants(&path);
            Output {
                name,
                path,
                nar_sha256,
                nar_size,
                variants,
            }
        })
        .collect();

    let meta_hashes = &meta_source.hashes;
    let meta = meta_hashes.meta_object.clone();
    let provenance = meta
        .as_ref()
        .map(KernelProvenance::from_meta)
        .unwrap_or_default();
    let built_hashes = &built.hashes;
    let same = built.path == meta_source.path;
    let hex = |h: &std::result::Result<crate::hashing::Hashes, String>| {
        h.as_ref()
            .ok()
            .and_then(|h| h.output_hash)
            .map(|h| crate::derivation::store_path::hex(&h))
    };
    let (classic, modulo) = if same {
        (hex(&built_hashes.classic), hex(&built_hashes.modulo_meta))
    } else {
        (hex(&meta_hashes.classic), hex(&meta_hashes.modulo_meta))
    };
    Ok(Facts {
        derivation: render(&built.path),
        original_derivation: (!same).then(|| render(&meta_source.path)),
        meta,
        opted_in: meta_hashes.meta.opt_in,
        system: String::from_utf8_lossy(&derivation.system()).into_owned(),
        classic_output_hash: classic,
        modulo_meta_output_hash: modulo,
        outputs,
        inputs,
        provenance,
    })
}

/// Outputs the `.drv` cannot record (floating content-addressed) must be
/// registered by Nix as built from this derivation or from its resolved
/// form: Nix 2.8 runs the hook of the unresolved derivation with outputs
/// whose registered deriver is the resolved one — a derivation of the same
/// name, outputs and system, with no input derivations: their outputs became
/// input sources, beside ours (checked for every input output whose path
/// our inputs record).
fn check_floating_outputs(
    options: &LoadOptions,
    built: &crate::hashing::Rooted,
    outputs: &[(String, String)],
) -> Result<()> {
    let store_dir = &options.store_dir;
    let floating: Vec<&(String, String)> = outputs
        .iter()
        .filter(|(name, _)| built.drv.output(name).is_some_and(|o| o.path().is_none()))
        .collect();
    if floating.is_empty() {
        return Ok(());
    }
    let paths: Vec<String> = floating.iter().map(|(_, p)| p.clone()).collect();
    let derivers = nix_store::derivers(&paths)?;
    let ours = built.path.to_absolute_path_in(store_dir);
    for ((name, path), deriver) in floating.iter().zip(derivers) {
        let refuse = |why: String| Error::BadPath {
            path: path.clone(),
            reason: format!("not output {name:?} of {ours}: {why}"),
        };
        let deriver = deriver.ok_or_else(|| refuse("Nix registered no deriver".to_owned()))?;
        if deriver == ours {
            continue;
        }
        let resolved = crate::closure::read_one(options, &deriver)
            .and_then(|node| node.derivation())
            .map_err(|e| refuse(format!("its deriver {deriver} cannot be read: {e}")))?;
        let names = |drv: &crate::derivation::Derivation| -> Vec<String> {
            drv.outputs().map(|o| o.name.to_owned()).collect()
        };
        // Resolving turns every input derivation's output into an input
        // source: those whose paths our inputs record must be there.
        let realised_inputs_kept =
            built
                .drv
                .input_derivations()
                .iter()
                .zip(&built.inputs)
                .all(|(input, input_drv)| {
                    input.node.outputs.iter().all(|output| {
                        input_drv
                            .output(output)
                            .and_then(|o| o.path())
                            .is_none_or(|path| resolved.input_sources().contains(path))
                    })
                });
        let is_resolution = resolved.name() == built.drv.name()
            && names(&resolved) == names(&built.drv)
            && resolved.input_derivations().is_empty()
            && built
                .drv
                .input_sources()
                .iter()
                .all(|src| resolved.input_sources().contains(src))
            && realised_inputs_kept
            && resolved.system() == built.drv.system();
        if !is_resolution {
            return Err(refuse(format!(
                "Nix built it from {deriver}, which is not this derivation's resolved form"
            )));
        }
    }
    Ok(())
}

/// The kernel variants of a built output that pass `kernels`' digest check,
/// with their variant digests (a variant that fails gets no subject).
fn kernel_variants(output: &str) -> Vec<(String, String)> {
    let root = std::path::Path::new(output);
    kernel_digest::variants(root)
        .into_iter()
        .filter_map(|variant| {
            let digest = kernel_digest::variant_digest(&variant).ok()?;
            let relative = variant
                .strip_prefix(root)
                .ok()?
                .to_string_lossy()
                .into_owned();
            Some((relative, digest))
        })
        .collect()
}

/// The hash part of an absolute store path.
#[must_use]
pub fn hash_part(path: &str) -> &str {
    let base = path.rsplit('/').next().unwrap_or(path);
    // Not a store path (any bytes from the command line): the whole name.
    base.get(..crate::substitute::HASH_LEN).unwrap_or(base)
}

/// Where records go, what run they describe and the key that signs them:
/// what the hook, `record` and `realise` share.
#[derive(Debug, Clone, Copy)]
pub struct Recording<'a> {
    /// The record store written.
    pub store: &'a RecordStore,
    /// The run the records describe (builder id, invocation).
    pub run: &'a Run,
    /// The key records are signed with.
    pub key: Option<&'a sign::SecretKey>,
}

impl Recording<'_> {
    /// [`write_records`] of `facts` with these settings.
    ///
    /// # Errors
    /// As [`write_records`].
    pub fn write(&self, facts: &Facts) -> Result<Vec<(std::path::PathBuf, Written)>> {
        write_records(self.store, facts, self.run, self.key)
    }
}

/// Write the record of `facts` for every output: a DSSE envelope around
/// the Statement, signed with `key` when given (its builder id is then the
/// key's, [`verify::builder_id_of_key`]). The record is filed under the
/// meta-carrying derivation (the original one when there is one). Returns
/// the record files and whether each was new.
///
/// # Errors
/// When a record cannot be written.
pub fn write_records(
    store: &RecordStore,
    facts: &Facts,
    run: &Run,
    key: Option<&sign::SecretKey>,
) -> Result<Vec<(std::path::PathBuf, Written)>> {
    let mut run = run.clone();
    if let Some(key) = key {
        run.builder_id = verify::builder_id_of_key(key.name());
    }
    let statement = record::statement(facts, &run);
    let payload = serde_json::to_vec(&statement).expect("a statement serialises");
    let envelope = sign::Envelope::new(&payload, key);
    let mut bytes = serde_json::to_vec_pretty(&envelope).expect("an envelope serialises");
    bytes.push(b'\n');
    let filed_under = facts
        .original_derivation
        .as_deref()
        .unwrap_or(&facts.derivation);
    let mut written = Vec::new();
    for output in &facts.outputs {
        written.push(store.write(hash_part(&output.path), hash_part(filed_under), &bytes)?);
        // Also filed under each variant's digest, so that a copy of the
        // variant alone finds its record.
        for (_, digest) in &output.variants {
            store.write(&store::variant_dir(digest), hash_part(filed_under), &bytes)?;
        }
    }
    Ok(written)
}
