//! Loading derivations and their closures from the store and `--drv-dir`s.
//!
//! Every command loads through one walker ([`walk`]): each `.drv` is read
//! once, parsed once by the derivation core, checked against its store
//! path, and visited as soon as its inputs are. The nodes are kept in
//! dependency order (inputs before dependents), so any later walk that
//! needs the results of the inputs is a single forward pass over
//! [`Closure::nodes`].
//!
//! A parsed [`Derivation`] is its file's bytes plus the spans of its
//! fields, so [`Closure::load`] keeps them (parse once, for every command).
//! A walk that needs only something small from each derivation takes it
//! while loading instead and keeps nothing ([`Closure::load_mapped`] for
//! `show`, [`crate::hashing::load_and_hash`] for `hash`). The persistent
//! hash cache of the post-build hook is in [`cache`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::derivation::store_path::PathMap;
use crate::derivation::{Derivation, StoreDir, StorePath};
use rayon::prelude::*;

use crate::error::{Error, Result};

pub mod cache;
pub mod inputs;
pub mod walk;

/// Where to look for derivations.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The logical store directory (`/nix/store` by default). Input
    /// derivations not found in a `drv_dir` are read at their path here.
    pub store_dir: StoreDir,
    /// Directories searched first, in order, for input derivations by base
    /// name (`<hash>-<name>.drv`).
    pub drv_dirs: Vec<PathBuf>,
}

impl LoadOptions {
    /// Check that every `drv_dir` is a readable directory.
    ///
    /// # Errors
    /// [`Error::BadDrvDir`] naming the first directory that is not.
    pub fn check(&self) -> Result<()> {
        for dir in &self.drv_dirs {
            let reason = match std::fs::metadata(dir) {
                Ok(meta) if meta.is_dir() => match std::fs::read_dir(dir) {
                    Ok(_) => continue,
                    Err(error) => error.to_string(),
                },
                Ok(_) => "not a directory".to_owned(),
                Err(error) => error.to_string(),
            };
            return Err(Error::BadDrvDir {
                dir: dir.clone(),
                reason,
            });
        }
        Ok(())
    }

    /// The file a derivation with this store path is read from: the first
    /// `drv_dir` holding its base name, else its path in the store directory.
    #[must_use]
    pub fn locate(&self, path: &StorePath) -> PathBuf {
        if self.drv_dirs.is_empty() {
            return PathBuf::from(path.to_absolute_path_in(&self.store_dir));
        }
        let base = path.to_basename();
        self.drv_dirs
            .iter()
            .map(|dir| dir.join(&base))
            .find(|candidate| candidate.is_file())
            .unwrap_or_else(|| PathBuf::from(path.to_absolute_path_in(&self.store_dir)))
    }

    /// Resolve a command-line argument: a store path of a derivation, or the
    /// path of a `.drv` file anywhere (its store path is then the store
    /// directory joined with its base name). Nix's `drv!output` form (what
    /// `nix-instantiate` prints for a derivation whose first output is not
    /// `out`) names the derivation itself.
    ///
    /// # Errors
    /// [`Error::BadPath`] when the argument names no derivation.
    pub fn resolve_arg(&self, arg: &str) -> Result<(StorePath, PathBuf)> {
        let bad = |reason: String| Error::BadPath {
            path: arg.to_owned(),
            reason,
        };
        let arg = match arg.split_once('!') {
            Some((drv, _outputs)) if drv.ends_with(".drv") => drv,
            _ => arg,
        };
        // A GC root or `result` link made by `nix-instantiate --add-root`:
        // a link into the store names the store path it points to. Any
        // other link is read as the file it is (and followed when read).
        let store_prefix = format!("{}/", self.store_dir);
        let link_target = std::fs::read_link(arg)
            .ok()
            .and_then(|target| target.to_str().map(str::to_owned))
            .filter(|target| target.starts_with(&store_prefix));
        let arg = link_target.as_deref().unwrap_or(arg);
        let in_store = arg
            .strip_prefix(self.store_dir.as_str())
            .and_then(|rest| rest.strip_prefix('/'))
            .filter(|rest| !rest.contains('/'));
        if let Some(base) = in_store {
            let path = parse_base(base).map_err(bad)?;
            let file = self.locate(&path);
            return Ok((path, file));
        }
        let file = PathBuf::from(arg);
        let base = file
            .file_name()
            .and_then(|name| name.to_str())
            .ok_or_else(|| bad("no UTF-8 file name".to_owned()))?
            .to_owned();
        let path = parse_base(&base).map_err(bad)?;
        Ok((path, file))
    }
}

fn parse_base(base: &str) -> std::result::Result<StorePath, String> {
    let path = StorePath::from_basename(base.as_bytes()).map_err(|error| error.to_string())?;
    if path.is_derivation() {
        Ok(path)
    } else {
        Err("the name does not end in .drv".to_owned())
    }
}

/// The derivation name (without `.drv`) of a derivation store path.
#[must_use]
pub fn drv_name(path: &StorePath) -> &str {
    path.name().strip_suffix(".drv").unwrap_or(path.name())
}

/// One loaded derivation.
#[derive(Debug)]
pub struct DrvNode {
    /// Its store path (logical, in the configured store directory).
    pub path: StorePath,
    /// The file it was read from.
    pub file: PathBuf,
    /// Whether the file's bytes hash to `path` (Nix's text-path rule).
    pub path_matches: bool,
    /// Indices in [`Closure::nodes`] of the input derivations, in the order
    /// of [`Derivation::input_derivations`] (sorted by store path).
    pub inputs: Vec<usize>,
    /// The parsed derivation (which owns the file's bytes); `None` once
    /// released by [`Closure::release_bytes`]. Behind a mutex so that a walk
    /// can release it as it goes.
    drv: Mutex<Option<Arc<Derivation>>>,
    store_dir: StoreDir,
}

/// Why a derivation whose file does not hash to its store path is
/// reported (by every command, with `hash`'s words).
pub const INCONSISTENT: &str = "inconsistent: the file's contents do not hash to its store path";

impl DrvNode {
    /// What makes this derivation invalid or inconsistent without hashing
    /// it ([`Closure::problems`]), with the messages `drvmeta hash` gives.
    ///
    /// # Errors
    /// When its bytes were released.
    pub fn problems(&self) -> Result<Vec<String>> {
        Ok(problems_of(
            &self.store_dir,
            &self.path,
            self.path_matches,
            &*self.derivation()?,
        ))
    }

    /// Call `f` with the file's bytes, as read (empty once released).
    pub fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        let drv = self.drv.lock().unwrap_or_else(PoisonError::into_inner);
        f(drv.as_deref().map_or(&[][..], Derivation::bytes))
    }

    /// The derivation parsed while loading (shared, not copied).
    ///
    /// # Errors
    /// [`Error::Released`] once released with [`Closure::release_bytes`].
    pub fn derivation(&self) -> Result<Arc<Derivation>> {
        self.drv
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| Error::Released {
                path: self.path.to_absolute_path_in(&self.store_dir),
            })
    }
}

/// What makes derivation `drv` at `path` invalid or inconsistent without
/// hashing it ([`DrvNode::problems`]).
#[must_use]
pub fn problems_of(
    store_dir: &StoreDir,
    path: &StorePath,
    path_matches: bool,
    drv: &Derivation,
) -> Vec<String> {
    let path = path.to_absolute_path_in(store_dir);
    let mut problems = Vec::new();
    if !path_matches {
        problems.push(format!("{path}: {INCONSISTENT}"));
    }
    for problem in crate::derivation::meta::inspect(drv).problems {
        problems.push(format!("{path}: invalid: {problem}"));
    }
    problems
}

/// Whether `target` is reachable from `start`'s inputs, among `len`
/// derivations whose inputs `inputs_of` gives (by index): a depth-first
/// walk, each derivation looked at once.
pub(crate) fn reaches<'a>(
    len: usize,
    start: usize,
    target: usize,
    inputs_of: impl Fn(usize) -> &'a [usize],
) -> bool {
    let mut seen = vec![false; len];
    let mut stack: Vec<usize> = inputs_of(start).to_vec();
    while let Some(at) = stack.pop() {
        if at == target {
            return true;
        }
        if !std::mem::replace(&mut seen[at], true) {
            stack.extend_from_slice(inputs_of(at));
        }
    }
    false
}

/// A set of derivations closed under their inputs, in dependency order.
#[derive(Debug)]
pub struct Closure {
    store_dir: StoreDir,
    nodes: Vec<DrvNode>,
    index: PathMap<usize>,
    roots: Vec<usize>,
}

/// A derivation read and checked, not yet placed in the closure order.
pub(crate) struct Loaded {
    pub(crate) path: StorePath,
    pub(crate) file: PathBuf,
    /// The parsed derivation, when the closure keeps it.
    pub(crate) drv: Option<Arc<Derivation>>,
    pub(crate) path_matches: bool,
}

/// Parse a derivation's bytes with the derivation core, rejecting what
/// Nix's parser rejects (a fixed output whose path is not its content
/// address included).
///
/// # Errors
/// [`Error::Parse`], naming `file` and the byte offset.
pub fn parse_drv(
    bytes: &[u8],
    name: &str,
    store_dir: &StoreDir,
    file: &Path,
) -> Result<Derivation> {
    parse_owned(bytes.to_vec(), name, store_dir, file)
}

/// [`parse_drv`] of bytes the caller gives up.
///
/// # Errors
/// As [`parse_drv`].
pub fn parse_owned(
    bytes: Vec<u8>,
    name: &str,
    store_dir: &StoreDir,
    file: &Path,
) -> Result<Derivation> {
    Derivation::parse(bytes, name, store_dir).map_err(|source| Error::Parse {
        file: file.to_owned(),
        source,
    })
}

/// Read derivation `path` from `file`, parse and check it. `needed_by`
/// names the derivation that lists it as an input (`None` for an argument):
/// a file that does not exist is then [`Error::MissingInput`].
pub(crate) fn load_one(
    store_dir: &StoreDir,
    path: StorePath,
    file: PathBuf,
    needed_by: Option<&dyn Fn() -> String>,
) -> Result<(Loaded, Derivation)> {
    // Regular files only, a final symlink not followed (a GC root given on
    // the command line is resolved to its store path before this).
    let bytes = match crate::safe_read::read_regular(&file, false, crate::safe_read::DRV_LIMIT) {
        Ok(bytes) => bytes,
        Err(source) => {
            return Err(match needed_by {
                Some(needed_by) if source.kind() == std::io::ErrorKind::NotFound => {
                    Error::MissingInput {
                        missing: path.to_absolute_path_in(store_dir),
                        needed_by: needed_by(),
                        looked_at: file,
                    }
                }
                _ => Error::Read { file, source },
            });
        }
    };
    check_one(store_dir, path, file, bytes)
}

/// Parse and check a derivation's bytes, read from `file`.
fn check_one(
    store_dir: &StoreDir,
    path: StorePath,
    file: PathBuf,
    bytes: Vec<u8>,
) -> Result<(Loaded, Derivation)> {
    let drv = parse_owned(bytes, drv_name(&path), store_dir, &file)?;
    let path_matches = drv.bytes_match_path(&path);
    let loaded = Loaded {
        path,
        file,
        drv: None,
        path_matches,
    };
    Ok((loaded, drv))
}

/// Read and parse one derivation without its inputs (`inputs` is empty).
///
/// # Errors
/// As [`Closure::load`], for this one file.
pub fn read_one(options: &LoadOptions, arg: &str) -> Result<DrvNode> {
    let (path, file) = options.resolve_arg(arg)?;
    let (loaded, drv) = load_one(&options.store_dir, path, file, None)?;
    Ok(DrvNode {
        path: loaded.path,
        file: loaded.file,
        path_matches: loaded.path_matches,
        inputs: Vec::new(),
        drv: Mutex::new(Some(Arc::new(drv))),
        store_dir: options.store_dir.clone(),
    })
}

impl Closure {
    /// Load the closures of `roots` (command-line arguments, see
    /// [`LoadOptions::resolve_arg`]).
    ///
    /// # Errors
    /// Bad arguments or `--drv-dir`s, unreadable or unparsable files, missing
    /// inputs (naming the derivation that needs them) and cycles.
    pub fn load(options: &LoadOptions, roots: &[String]) -> Result<Self> {
        Self::load_with_progress(options, roots, &mut |_| {})
    }

    /// [`Self::load`], calling `progress` (from the walk's threads) with
    /// the number of derivations read so far now and then.
    ///
    /// # Errors
    /// As [`Self::load`].
    pub fn load_with_progress(
        options: &LoadOptions,
        roots: &[String],
        progress: &mut (dyn FnMut(usize) + Send),
    ) -> Result<Self> {
        walk::walk(options, roots, true, progress, &|_: &walk::Visit<
            '_,
            (),
        >| ())
        .map(|(closure, _)| closure)
    }

    /// [`Self::load_with_progress`] for a walk that needs only what `map`
    /// takes from each derivation: `map` is called (on the worker threads)
    /// with each derivation once its inputs were mapped, its store path and
    /// whether it is one of `roots`; the derivations are not kept, so each
    /// is parsed once and dropped. [`DrvNode::derivation`] fails on the
    /// closure. The values come in [`Self::nodes`] order.
    ///
    /// # Errors
    /// As [`Self::load`].
    pub fn load_mapped<T: Send + Sync>(
        options: &LoadOptions,
        roots: &[String],
        progress: &mut (dyn FnMut(usize) + Send),
        map: impl Fn(&StorePath, &Derivation, bool) -> T + Sync,
    ) -> Result<(Self, Vec<T>)> {
        walk::walk(options, roots, false, progress, &|visit: &walk::Visit<
            '_,
            T,
        >| {
            map(visit.path, visit.drv, visit.is_root)
        })
    }

    /// Put loaded derivations in dependency order with an iterative
    /// depth-first walk, detecting cycles. `edges[i]` are the positions in
    /// `loaded` of the inputs of `loaded[i]`, in the order of its input
    /// derivations; `positions` maps every path to its position in
    /// `loaded`. Returns the closure and, for each of its nodes, its
    /// position in `loaded`.
    pub(crate) fn order(
        store_dir: StoreDir,
        loaded: Vec<Loaded>,
        mut edges: Vec<Vec<usize>>,
        mut positions: PathMap<usize>,
        roots: &[StorePath],
    ) -> Result<(Self, Vec<usize>)> {
        const NEW: u8 = 0;
        const OPEN: u8 = 1;
        const DONE: u8 = 2;
        let mut state = vec![NEW; loaded.len()];
        let mut order = Vec::with_capacity(loaded.len());
        for start in 0..loaded.len() {
            if state[start] != NEW {
                continue;
            }
            let mut stack = vec![(start, 0_usize)];
            state[start] = OPEN;
            while let Some((node, next_edge)) = stack.last_mut() {
                if let Some(&child) = edges[*node].get(*next_edge) {
                    *next_edge += 1;
                    match state[child] {
                        NEW => {
                            state[child] = OPEN;
                            stack.push((child, 0));
                        }
                        OPEN => {
                            return Err(Error::Cycle {
                                path: loaded[child].path.to_absolute_path_in(&store_dir),
                            });
                        }
                        _ => {}
                    }
                } else {
                    state[*node] = DONE;
                    order.push(*node);
                    stack.pop();
                }
            }
        }
        let mut new_index = vec![0; loaded.len()];
        for (new, &old) in order.iter().enumerate() {
            new_index[old] = new;
        }
        let mut slots: Vec<Option<Loaded>> = loaded.into_iter().map(Some).collect();
        let mut nodes = Vec::with_capacity(order.len());
        for &old in &order {
            let node = slots[old].take().expect("each node is placed once");
            // Renumbered in place: no second vector per node.
            let mut inputs = std::mem::take(&mut edges[old]);
            for input in &mut inputs {
                *input = new_index[*input];
            }
            nodes.push(DrvNode {
                path: node.path,
                file: node.file,
                path_matches: node.path_matches,
                inputs,
                drv: Mutex::new(node.drv),
                store_dir: store_dir.clone(),
            });
        }
        for position in positions.values_mut() {
            *position = new_index[*position];
        }
        let roots = roots.iter().map(|path| positions[path]).collect();
        let closure = Self {
            store_dir,
            nodes,
            index: positions,
            roots,
        };
        Ok((closure, order))
    }

    /// The logical store directory of the closure.
    #[must_use]
    pub fn store_dir(&self) -> &StoreDir {
        &self.store_dir
    }

    /// All derivations, inputs before dependents.
    #[must_use]
    pub fn nodes(&self) -> &[DrvNode] {
        &self.nodes
    }

    /// The index in [`Self::nodes`] of input derivation `path` of the node
    /// at `node`.
    #[must_use]
    pub fn input_position(&self, node: usize, path: &StorePath) -> Option<usize> {
        let inputs = &self.nodes[node].inputs;
        // The inputs follow the derivation's sorted input derivations.
        inputs
            .binary_search_by(|&input| self.nodes[input].path.cmp(path))
            .ok()
            .map(|at| inputs[at])
    }

    /// Indices of the roots, in the order given (duplicates kept).
    #[must_use]
    pub fn roots(&self) -> &[usize] {
        &self.roots
    }

    /// Whether derivation `other` is in the input closure of the node at
    /// `node` (an input, an input's input, …).
    #[must_use]
    pub fn is_in_input_closure(&self, node: usize, other: &StorePath) -> bool {
        self.position(other).is_some_and(|target| {
            reaches(self.nodes.len(), node, target, |at| &self.nodes[at].inputs)
        })
    }

    /// The index of a derivation in [`Self::nodes`].
    #[must_use]
    pub fn position(&self, path: &StorePath) -> Option<usize> {
        self.index.get(path).copied()
    }

    /// What makes derivations of the closure invalid, found without
    /// hashing them, with the messages `drvmeta hash` gives: bytes that do
    /// not hash to the store path, and `__meta` a derivation-meta Nix
    /// rejects. (Parse errors already fail the load.) Every command that
    /// reads a closure checks these, so they agree on what is valid.
    ///
    /// # Errors
    /// A derivation whose bytes were released.
    pub fn problems(&self) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        for node in &self.nodes {
            problems.extend(node.problems()?);
        }
        Ok(problems)
    }

    /// Free the files' bytes once no walk needs the derivations any more
    /// (after hashing, say); [`DrvNode::derivation`] fails afterwards.
    pub fn release_bytes(&self) {
        self.release_bytes_of(0..self.nodes.len());
    }

    /// [`Self::release_bytes`] for the derivations at `positions` only.
    pub fn release_bytes_of(&self, positions: impl IntoIterator<Item = usize>) {
        for position in positions {
            *self.nodes[position]
                .drv
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = None;
        }
    }

    /// The derivations at `positions` keyed by `key` of their store path,
    /// sorted by key, duplicates removed: the order of every report.
    #[must_use]
    pub fn keyed(
        &self,
        positions: &[usize],
        key: impl Fn(&StorePath) -> String + Sync,
    ) -> Vec<(String, usize)> {
        let mut keyed: Vec<(String, usize)> = positions
            .par_iter()
            .map(|&position| (key(&self.nodes[position].path), position))
            .collect();
        keyed.par_sort_unstable();
        keyed.dedup();
        keyed
    }

    /// Render a store path of this closure's store directory.
    #[must_use]
    pub fn render(&self, path: &StorePath) -> String {
        path.to_absolute_path_in(&self.store_dir)
    }
}
