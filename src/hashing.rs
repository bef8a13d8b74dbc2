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

use crate::closure::cache::{CachedHashes, HashCache};
use crate::closure::walk::{Visit, visit_loaded, walk};
use crate::closure::{Closure, LoadOptions, load_one};
use crate::derivation::hash::{HashOptions, hash_derivation};
use crate::derivation::meta::{self, MetaInfo};
use crate::derivation::{Derivation, StoreDir, StorePath};
pub use crate::derivation::{Hashes, InputHash, OutputPaths};

/// Classic and modulo-meta hashes of one derivation, or why they could not
/// be computed, with what reports need from the derivation itself.
#[derive(Debug, Clone)]
pub struct NodeHashes {
    /// What the derivation says about `__meta`.
    pub meta: MetaInfo,
    /// The `__meta` object when opted in.
    pub meta_object: Option<serde_json::Map<String, serde_json::Value>>,
    /// The output paths as written in the file, kept only where they
    /// differ from the classic ones (a closure keeps one of these per
    /// derivation): see [`Self::recorded`].
    recorded: Option<OutputPaths>,
    /// The classic hashes (what Nix computes).
    pub classic: Result<Hashes, String>,
    /// The hashes modulo meta.
    pub modulo_meta: Result<Hashes, String>,
}

/// What a dependent needs of an input derivation's hashes: its input-form
/// hash under each scheme, `None` where that scheme failed for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputHashes {
    /// The classic input-form hash.
    pub classic: Option<InputHash>,
    /// The modulo-meta input-form hash.
    pub modulo_meta: Option<InputHash>,
}

impl NodeHashes {
    /// What dependents need of these hashes.
    #[must_use]
    pub fn input_hashes(&self) -> InputHashes {
        InputHashes {
            classic: self.classic.as_ref().ok().map(|h| h.input_hash),
            modulo_meta: self.modulo_meta.as_ref().ok().map(|h| h.input_hash),
        }
    }

    /// The output paths as written in the file.
    #[must_use]
    pub fn recorded(&self) -> &OutputPaths {
        match (&self.recorded, &self.classic) {
            (Some(recorded), _) => recorded,
            (None, Ok(classic)) => &classic.outputs,
            (None, Err(_)) => unreachable!("kept whenever the classic hashes failed"),
        }
    }

    /// The outputs `drv` records, kept only where the classic outputs
    /// differ (compared without building them).
    fn keep_recorded(drv: &Derivation, classic: &Result<Hashes, String>) -> Option<OutputPaths> {
        match classic {
            Ok(classic)
                if classic.outputs.len() == drv.outputs().len()
                    && classic.outputs.iter().zip(drv.outputs()).all(
                        |((name, path), recorded)| {
                            *name == recorded.name && path.as_ref() == recorded.path()
                        },
                    ) =>
            {
                None
            }
            _ => Some(recorded_outputs(drv)),
        }
    }

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
/// Each derivation is hashed as soon as its inputs are, in parallel
/// ([`visit_loaded`]).
#[must_use]
pub fn hash_closure(closure: &Closure) -> Vec<NodeHashes> {
    visit_loaded(closure, &|index, done| hash_node(closure, index, done))
}

/// Load the closures of `roots` (as [`Closure::load`]) and hash every
/// derivation (as [`hash_closure`]) in one walk
/// ([`crate::closure::walk`]): each `.drv` is read and parsed once, hashed
/// as soon as its inputs are, and dropped right after. The closure keeps no
/// derivation ([`crate::closure::DrvNode::derivation`] fails on it).
///
/// # Errors
/// As [`Closure::load`].
pub fn load_and_hash(
    options: &LoadOptions,
    roots: &[String],
    progress: &mut (dyn FnMut(usize) + Send),
) -> crate::Result<(Closure, Vec<NodeHashes>)> {
    load_hash_and(options, roots, progress, &|_, _, _, hashes| hashes)
}

/// [`load_and_hash`], handing each derivation's hashes to `finish` as soon
/// as they are computed — with the store directory, the derivation's path
/// and whether its bytes hash to it — and keeping only what `finish`
/// returns (and what dependents need), in [`Closure::nodes`] order. A
/// report rendered there is written while the hashes are still in the
/// cache, and the hashes need not be kept.
///
/// # Errors
/// As [`Closure::load`].
pub fn load_hash_and<R: Send + Sync>(
    options: &LoadOptions,
    roots: &[String],
    progress: &mut (dyn FnMut(usize) + Send),
    finish: &(dyn Fn(&StoreDir, &StorePath, bool, NodeHashes) -> R + Sync),
) -> crate::Result<(Closure, Vec<R>)> {
    let (closure, results) = walk(options, roots, false, progress, &|visit: &Visit<
        '_,
        (InputHashes, R),
    >| {
        let hashes = hash_derivation_both(Ok(visit.drv), |path| {
            visit.input(path).map(|(input, _)| *input)
        });
        let input_hashes = hashes.input_hashes();
        let value = finish(&options.store_dir, visit.path, visit.path_matches, hashes);
        (input_hashes, value)
    })?;
    Ok((
        closure,
        results.into_iter().map(|(_, value)| value).collect(),
    ))
}

/// Hash one derivation of `closure`; `done` gives the hashes of its
/// inputs (by node index).
fn hash_node<'r>(
    closure: &Closure,
    index: usize,
    done: &'r dyn Fn(usize) -> &'r NodeHashes,
) -> NodeHashes {
    let node = &closure.nodes()[index];
    let input = |path: &StorePath| {
        let position = closure.input_position(index, path)?;
        Some(done(position).input_hashes())
    };
    let drv = node.derivation().map_err(|error| error.to_string());
    hash_derivation_both(drv.as_deref().map_err(Clone::clone), input)
}

/// Hash one parsed derivation (or record why it could not be read), given
/// the input hashes of its input derivations: `input` answers for every
/// input derivation path.
pub fn hash_derivation_both(
    drv: Result<&Derivation, String>,
    input: impl Fn(&StorePath) -> Option<InputHashes>,
) -> NodeHashes {
    let drv = match drv {
        Ok(drv) => drv,
        Err(error) => {
            return NodeHashes {
                meta: MetaInfo::default(),
                meta_object: None,
                recorded: Some(OutputPaths::new()),
                classic: Err(error.clone()),
                modulo_meta: Err(error),
            };
        }
    };
    let input = &input;
    let scheme = |pick: fn(InputHashes) -> Option<InputHash>| {
        move |path: &StorePath| -> Option<InputHash> { input(path).and_then(pick) }
    };
    let classic = hash_derivation(drv, HashOptions::default(), scheme(|h| h.classic))
        .map_err(|error| error.to_string());
    let analysis = meta::analyse(drv);
    let info = analysis.info;
    let inputs_unchanged = drv.input_derivations().iter().all(|i| {
        input(&i.path).is_some_and(|hashes| match (hashes.classic, hashes.modulo_meta) {
            (Some(classic), Some(modulo)) => classic == modulo,
            _ => false,
        })
    });
    let modulo_meta = if !info.opt_in && inputs_unchanged {
        classic.clone()
    } else {
        hash_derivation(
            drv,
            HashOptions {
                json: analysis.stripped_raw.as_deref(),
                set_outputs: true,
            },
            scheme(|h| h.modulo_meta),
        )
        .map_err(|error| error.to_string())
    };
    NodeHashes {
        meta_object: analysis.object,
        recorded: NodeHashes::keep_recorded(drv, &classic),
        meta: info,
        classic,
        modulo_meta,
    }
}

/// A derivation's meta-normal form ([`meta_normal_form`]).
#[derive(Debug)]
pub struct MetaNormal {
    /// Its ATerm, `None` when the derivation is its own meta-normal form.
    pub bytes: Option<Vec<u8>>,
    /// Its hashes.
    pub hashes: Hashes,
    /// What the derivation says about `__meta`.
    pub meta: MetaInfo,
}

/// The derivation as a meta-free Nix would have written it, as far as this
/// derivation alone decides: meta stripped from the `__json` text when opted
/// in, own outputs set from the modulo-meta hashes of the inputs. Returns
/// the form's bytes (printed, not parsed again: its references are the
/// derivation's) and its hashes.
///
/// # Errors
/// A message when the derivation is invalid or an input is.
pub fn meta_normal_form(
    drv: &Derivation,
    input: impl Fn(&StorePath) -> Option<InputHash>,
) -> Result<MetaNormal, String> {
    let analysis = meta::analyse(drv);
    let stripped = analysis.stripped_raw;
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
    let unchanged = stripped.is_none()
        && set.iter().all(|(name, path)| {
            drv.outputs()
                .any(|o| o.name == name && o.path() == path.as_ref())
        });
    let bytes = (!unchanged).then(|| drv.edited_bytes(Some(&set), stripped.as_deref()));
    Ok(MetaNormal {
        bytes,
        hashes,
        meta: analysis.info,
    })
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

/// A derivation asked for by name, hashed, with its direct inputs at hand:
/// what the post-build hook and `record` need, without the closure.
#[derive(Debug)]
pub struct Rooted {
    /// Its store path.
    pub path: StorePath,
    /// Whether its bytes hash to its path.
    pub path_matches: bool,
    /// The derivation.
    pub drv: std::sync::Arc<Derivation>,
    /// Its hashes.
    pub hashes: NodeHashes,
    /// Its input derivations, parsed, in [`Derivation::input_derivations`]
    /// order.
    pub inputs: Vec<std::sync::Arc<Derivation>>,
}

/// The hashes a dependent needs of a cached input.
fn from_cache(cached: CachedHashes) -> NodeHashes {
    let light = |input_hash| Hashes {
        output_hash: None,
        input_hash,
        outputs: OutputPaths::new(),
    };
    NodeHashes {
        meta: MetaInfo::default(),
        meta_object: None,
        recorded: None,
        classic: Ok(light(cached.classic)),
        modulo_meta: Ok(light(cached.modulo_meta)),
    }
}

/// Hash the derivations `roots` (command-line forms, as
/// [`Closure::load`] takes them) with the persistent cache: when the cache
/// knows every direct input of every root, only the roots and their direct
/// inputs are read (the cost does not grow with the closure); otherwise the
/// whole closure is loaded and hashed, and every derivation whose bytes,
/// and all of whose inputs' bytes, hash to their paths is added to the
/// cache.
///
/// # Errors
/// As [`Closure::load`].
pub fn roots_with_cache(
    options: &LoadOptions,
    roots: &[String],
    cache: Option<&mut HashCache>,
) -> crate::Result<Vec<Rooted>> {
    let mut cache = cache;
    if let Some(cache) = cache.as_deref_mut()
        && let Some(warm) = warm_roots(options, roots, cache)?
    {
        return Ok(warm);
    }
    let closure = Closure::load(options, roots)?;
    let hashes = hash_closure(&closure);
    if let Some(cache) = cache {
        let mut trusted = vec![false; closure.nodes().len()];
        let mut entries = Vec::new();
        for (index, (node, node_hashes)) in closure.nodes().iter().zip(&hashes).enumerate() {
            if let (true, Ok(classic), Ok(modulo)) = (
                node.path_matches && node.inputs.iter().all(|&i| trusted[i]),
                &node_hashes.classic,
                &node_hashes.modulo_meta,
            ) {
                trusted[index] = true;
                entries.push((
                    node.path.clone(),
                    CachedHashes {
                        classic: classic.input_hash,
                        modulo_meta: modulo.input_hash,
                    },
                ));
            }
        }
        // A cache is an optimisation: a read-only or full disk only costs
        // the next run its speed.
        let _ = cache.insert(&entries);
    }
    closure
        .roots()
        .iter()
        .map(|&root| {
            let node = &closure.nodes()[root];
            let inputs = node
                .inputs
                .iter()
                .map(|&i| closure.nodes()[i].derivation())
                .collect::<crate::Result<_>>()?;
            Ok(Rooted {
                path: node.path.clone(),
                path_matches: node.path_matches,
                drv: node.derivation()?,
                hashes: hashes[root].clone(),
                inputs,
            })
        })
        .collect()
}

/// [`roots_with_cache`]'s warm path; `None` when an input is not cached or
/// an input's file does not hash to its path.
fn warm_roots(
    options: &LoadOptions,
    roots: &[String],
    cache: &mut HashCache,
) -> crate::Result<Option<Vec<Rooted>>> {
    options.check()?;
    let mut rooted = Vec::with_capacity(roots.len());
    for arg in roots {
        let (path, file) = options.resolve_arg(arg)?;
        let (loaded, drv) = load_one(&options.store_dir, path, file, None)?;
        let mut inputs = Vec::with_capacity(drv.input_derivations().len());
        let mut cached = Vec::with_capacity(inputs.capacity());
        for input in drv.input_derivations() {
            let Some(hashes) = cache.get(&input.path) else {
                return Ok(None);
            };
            let render = || loaded.path.to_absolute_path_in(&options.store_dir);
            let (input_loaded, input_drv) = load_one(
                &options.store_dir,
                input.path.clone(),
                options.locate(&input.path),
                Some(&render),
            )?;
            if !input_loaded.path_matches {
                return Ok(None);
            }
            inputs.push(std::sync::Arc::new(input_drv));
            cached.push((input.path.clone(), from_cache(hashes)));
        }
        let hashes = hash_derivation_both(Ok(&drv), |p| {
            cached
                .iter()
                .find(|(c, _)| c == p)
                .map(|(_, h)| h.input_hashes())
        });
        rooted.push(Rooted {
            path: loaded.path,
            path_matches: loaded.path_matches,
            drv: std::sync::Arc::new(drv),
            hashes,
            inputs,
        });
    }
    Ok(Some(rooted))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::derivation::StoreDir;
    use crate::derivation::hash::HashOptions;

    /// The kernel fixture in a scratch drv-dir, and its root.
    fn fixture() -> (tempfile::TempDir, LoadOptions, String) {
        let dir = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir("fixtures/kernel/drvs").unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
        let options = LoadOptions {
            drv_dirs: vec![dir.path().to_owned()],
            ..LoadOptions::default()
        };
        let root = std::fs::read_to_string("fixtures/kernel/root").unwrap();
        (dir, options, root.trim().to_owned())
    }

    fn summary(rooted: &[Rooted]) -> Vec<String> {
        rooted
            .iter()
            .map(|r| {
                format!(
                    "{:?} {:?} {:?} {}",
                    r.hashes.classic,
                    r.hashes.modulo_meta,
                    r.hashes.meta,
                    r.inputs.len()
                )
            })
            .collect()
    }

    /// A chain of `n` consistent derivations (each the input of the next)
    /// written to a fresh drv-dir; returns the dir, options and the paths.
    fn chain(n: usize) -> (tempfile::TempDir, LoadOptions, Vec<StorePath>) {
        let dir = tempfile::tempdir().unwrap();
        let store_dir = StoreDir::default();
        let mut paths: Vec<StorePath> = Vec::new();
        let mut previous: Option<(StorePath, InputHash)> = None;
        for i in 0..n {
            let inputs = previous
                .as_ref()
                .map(|(p, _)| format!("(\"{}\",[\"out\"])", p.to_absolute_path_in(&store_dir)))
                .unwrap_or_default();
            let aterm = format!(
                "Derive([(\"out\",\"\",\"\",\"\")],[{inputs}],[],\"x86_64-linux\",\"/bin/sh\",[],[(\"i\",\"{i}\"),(\"out\",\"\")])"
            );
            let name = format!("c{i}");
            let draft = Derivation::parse(aterm.into_bytes(), &name, &store_dir).unwrap();
            let lookup = |p: &StorePath| previous.as_ref().filter(|(q, _)| q == p).map(|(_, h)| *h);
            let hashes = hash_derivation(&draft, HashOptions::default(), lookup).unwrap();
            let drv = draft.with_edits(Some(&hashes.outputs), None).unwrap();
            let hashes = hash_derivation(&drv, HashOptions::default(), lookup).unwrap();
            let path = drv.drv_path().unwrap();
            std::fs::write(dir.path().join(path.to_basename()), drv.bytes()).unwrap();
            previous = Some((path.clone(), hashes.input_hash));
            paths.push(path);
        }
        let options = LoadOptions {
            drv_dirs: vec![dir.path().to_owned()],
            ..LoadOptions::default()
        };
        (dir, options, paths)
    }

    #[test]
    fn the_warm_cache_reads_only_the_roots_and_their_inputs() {
        let (dir, options, paths) = chain(6);
        let top = &paths[5];
        let roots = [top.to_absolute_path_in(&options.store_dir)];
        let uncached = roots_with_cache(&options, &roots, None).unwrap();
        assert!(uncached[0].path_matches);
        assert!(
            uncached[0]
                .hashes
                .classic
                .as_ref()
                .unwrap()
                .output_hash
                .is_some()
        );
        let cache_dir = tempfile::tempdir().unwrap();
        let mut cache = HashCache::open(cache_dir.path(), &options.store_dir);
        let cold = roots_with_cache(&options, &roots, Some(&mut cache)).unwrap();
        assert_eq!(summary(&cold), summary(&uncached));

        // Remove everything below the root's input: only the cache can
        // answer for it.
        for path in &paths[..4] {
            std::fs::remove_file(dir.path().join(path.to_basename())).unwrap();
        }
        assert!(roots_with_cache(&options, &roots, None).is_err());
        let mut cache = HashCache::open(cache_dir.path(), &options.store_dir);
        let warm = roots_with_cache(&options, &roots, Some(&mut cache)).unwrap();
        assert_eq!(summary(&warm), summary(&uncached));
    }

    #[test]
    fn a_tampered_input_is_not_taken_from_the_cache() {
        let (dir, options, root) = fixture();
        let roots = [root];
        let cache_dir = tempfile::tempdir().unwrap();
        let mut cache = HashCache::open(cache_dir.path(), &options.store_dir);
        let cold = roots_with_cache(&options, &roots, Some(&mut cache)).unwrap();
        // An input's file no longer hashes to its path: the warm path does
        // not trust the cache for it and the closure is hashed again.
        let input = &cold[0].drv.input_derivations()[0].path;
        let file = dir.path().join(input.to_basename());
        let mut bytes = std::fs::read(&file).unwrap();
        let at = bytes.len() - 3;
        bytes[at] = b'x';
        std::fs::write(&file, bytes).unwrap();
        let mut cache = HashCache::open(cache_dir.path(), &options.store_dir);
        let again = roots_with_cache(&options, &roots, Some(&mut cache));
        let direct = roots_with_cache(&options, &roots, None);
        assert_eq!(
            again.map(|r| summary(&r)).map_err(|e| e.to_string()),
            direct.map(|r| summary(&r)).map_err(|e| e.to_string())
        );
    }
}
