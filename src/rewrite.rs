//! Closure post-processing: rewrite (A → A*) and strip (A or A* → B),
//! DESIGN.md §2.3.
//!
//! Both go through the closure inputs first. Each derivation gets the paths
//! of its input derivations that changed, and every embedded hash part or
//! downstream placeholder of their outputs, replaced ([`crate::substitute`]);
//! its outputs are then computed modulo meta from the results of its
//! inputs. **Strip** writes the meta-normal form (meta removed: the exact
//! derivation a meta-free instantiation gives); **rewrite** keeps `__meta`
//! and the feature and sets the outputs to the modulo-meta paths, as a
//! derivation-meta Nix would. Both give every output the same path, so
//! nothing a strip imports rebuilds for a meta-only change.
//!
//! The changes replaced in a derivation are those of its input closure
//! (DESIGN.md §2.3): its direct inputs' first — a store path a derivation
//! embeds with string context makes its derivation an input — then, for a
//! hash part or placeholder they do not cover (a path whose context was
//! discarded), any derivation rewritten before it that is in its input
//! closure; a changed derivation outside it is never replaced. So each
//! derivation's result depends on its input closure alone, and
//! [`load_and_rewrite`] computes it in the one walk every command loads
//! closures with, as soon as its inputs are done, dropping the parsed
//! derivation right after.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::path::PathBuf;
use std::sync::{PoisonError, RwLock};

use crate::closure::walk::{Visit, visit_loaded, walk};
use crate::closure::{Closure, LoadOptions, drv_name};
use crate::derivation::store_path::DigestHasher;
use crate::derivation::{Derivation, InputHash, StoreDir, StorePath, downstream_placeholder};
use crate::error::{Error, Result};
use crate::hashing::{OutputPaths, meta_normal_form, recorded_outputs};
use crate::substitute::{Changes, Fallback, HashPart, PlaceholderBody, Substitutions};

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
    /// What a dependent replaces ([`record_changes`]), computed once.
    changes: Changes,
}

/// The changes of every derivation rewritten so far, by old hash part or
/// placeholder, with the derivation they belong to (its old path, by its
/// position in `owners`).
#[derive(Default)]
struct Seen {
    owners: Vec<StorePath>,
    hashes: HashMap<HashPart, (HashPart, u32), BuildHasherDefault<DigestHasher>>,
    placeholders:
        HashMap<PlaceholderBody, (PlaceholderBody, u32), BuildHasherDefault<DigestHasher>>,
}

impl Seen {
    fn add(&mut self, owner: &StorePath, changes: &Changes) {
        if changes.hashes.is_empty() && changes.placeholders.is_empty() {
            return;
        }
        let at = u32::try_from(self.owners.len()).expect("fewer than 2^32 derivations");
        self.owners.push(owner.clone());
        for (old, new) in &changes.hashes {
            self.hashes.insert(*old, (*new, at));
        }
        for (old, new) in &changes.placeholders {
            self.placeholders.insert(*old, (*new, at));
        }
    }
}

/// [`Seen`] shared by the threads that rewrite.
struct SharedSeen(RwLock<Seen>);

impl SharedSeen {
    fn new() -> Self {
        Self(RwLock::new(Seen::default()))
    }

    /// Record `owner`'s changes: before the walk starts its dependents,
    /// which the walk's lock orders after this.
    fn add(&self, owner: &StorePath, changes: &Changes) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .add(owner, changes);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Seen> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The changes a derivation's direct inputs do not cover: those of
/// derivations in its input closure ([`Seen`], asked `in_input_closure`).
struct Others<'a> {
    seen: &'a SharedSeen,
    in_input_closure: &'a dyn Fn(&StorePath) -> bool,
}

impl Fallback for Others<'_> {
    fn is_empty(&self) -> bool {
        let seen = self.seen.read();
        seen.hashes.is_empty() && seen.placeholders.is_empty()
    }

    fn hash(&self, old: &HashPart) -> Option<HashPart> {
        self.if_in_input_closure(|seen| seen.hashes.get(old))
    }

    fn placeholder(&self, old: &PlaceholderBody) -> Option<PlaceholderBody> {
        self.if_in_input_closure(|seen| seen.placeholders.get(old))
    }
}

impl Others<'_> {
    /// The replacement `lookup` finds among the changes seen, if the
    /// derivation it belongs to is in the input closure (checked after
    /// the lock is released).
    fn if_in_input_closure<V: Copy>(
        &self,
        lookup: impl FnOnce(&Seen) -> Option<&(V, u32)>,
    ) -> Option<V> {
        let (new, owner) = {
            let seen = self.seen.read();
            let &(new, at) = lookup(&seen)?;
            (new, seen.owners[at as usize].clone())
        };
        (self.in_input_closure)(&owner).then_some(new)
    }
}

/// Rewrite or strip every derivation of `closure` (loaded with its
/// derivations); results are in [`Closure::nodes`] order. `keep_bytes`:
/// whether the results keep the new ATerm bytes (to write, import or
/// compare them); without, only paths and outputs (a closure's worth of
/// memory less).
///
/// # Errors
/// An invalid derivation (naming it and why), or one that cannot be
/// re-serialised.
pub fn rewrite_closure(closure: &Closure, mode: Mode, keep_bytes: bool) -> Result<Vec<Rewritten>> {
    let nodes = closure.nodes();
    // The changes of every derivation rewritten so far: a node's input
    // closure is rewritten before it.
    let seen = SharedSeen::new();
    let results = visit_loaded::<Result<Rewritten>>(closure, &|index, done| {
        let node = &nodes[index];
        let drv = node.derivation()?;
        // A failed input fails this derivation too (naming the input); its
        // own error comes first in node order.
        let input = |path: &StorePath| {
            let position = closure.input_position(index, path)?;
            done(position).as_ref().ok()
        };
        let file = || node.file.clone();
        let in_input_closure = |other: &StorePath| closure.is_in_input_closure(index, other);
        let one = One {
            path: &node.path,
            file: &file,
            store_dir: closure.store_dir(),
            mode,
            keep_bytes,
            seen: &seen,
            in_input_closure: &in_input_closure,
        };
        one.rewrite(&drv, input)
    });
    results.into_iter().collect()
}

/// Load the closures of `roots` (as [`Closure::load`] takes them) and
/// rewrite or strip them in one walk ([`crate::closure::walk`]): each
/// `.drv` is read and parsed once, rewritten as soon as its inputs are and
/// dropped right after. `keep_bytes`: whether the results keep the new
/// ATerm bytes (to write or import them); without, only paths and outputs.
/// The closure keeps no derivation.
///
/// # Errors
/// As [`Closure::load`]; [`Error::Problems`] when derivations are invalid
/// or inconsistent (all of them, in closure order, as
/// [`Closure::problems`] names them); then as [`rewrite_closure`], for the
/// first derivation in closure order that fails.
pub fn load_and_rewrite(
    options: &LoadOptions,
    roots: &[String],
    mode: Mode,
    keep_bytes: bool,
    progress: &mut (dyn FnMut(usize) + Send),
) -> Result<(Closure, Vec<Rewritten>)> {
    enum Failed {
        Problems(Vec<String>),
        Error(Error),
        /// An input failed (its own failure comes first in closure order,
        /// inputs before dependents).
        Input,
    }
    let seen = SharedSeen::new();
    let visit = |visit: &Visit<'_, std::result::Result<Rewritten, Failed>>| {
        let problems = crate::closure::problems_of(
            &options.store_dir,
            visit.path,
            visit.path_matches,
            visit.drv,
        );
        if !problems.is_empty() {
            return Err(Failed::Problems(problems));
        }
        let mut failed = false;
        let input = |path: &StorePath| match visit.input(path)? {
            Ok(done) => Some(done),
            Err(_) => {
                failed = true;
                None
            }
        };
        let file = || options.locate(visit.path);
        let in_input_closure = |other: &StorePath| visit.is_in_input_closure(other);
        let one = One {
            path: visit.path,
            file: &file,
            store_dir: &options.store_dir,
            mode,
            keep_bytes,
            seen: &seen,
            in_input_closure: &in_input_closure,
        };
        one.rewrite(visit.drv, input).map_err(|error| {
            if failed {
                Failed::Input
            } else {
                Failed::Error(error)
            }
        })
    };
    let (closure, outcomes) = walk(options, roots, false, progress, &visit)?;
    let mut problems = Vec::new();
    let mut first_error = None;
    let mut results = Vec::with_capacity(outcomes.len());
    for outcome in outcomes {
        match outcome {
            Ok(done) => results.push(done),
            Err(Failed::Problems(found)) => problems.extend(found),
            Err(Failed::Error(error)) => {
                first_error.get_or_insert(error);
            }
            Err(Failed::Input) => {}
        }
    }
    if !problems.is_empty() {
        return Err(Error::Problems { problems });
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok((closure, results)),
    }
}

/// What [`One::rewrite`] needs to know about the derivation it rewrites.
struct One<'a> {
    path: &'a StorePath,
    /// The file it was read from (for errors).
    file: &'a dyn Fn() -> PathBuf,
    store_dir: &'a StoreDir,
    mode: Mode,
    keep_bytes: bool,
    /// The changes of the derivations rewritten before it; its own are
    /// added once rewritten.
    seen: &'a SharedSeen,
    /// Whether a derivation is in its input closure.
    in_input_closure: &'a dyn Fn(&StorePath) -> bool,
}

impl One<'_> {
    fn parse(&self, bytes: Vec<u8>, name: &str) -> Result<Derivation> {
        Derivation::parse(bytes, name, self.store_dir).map_err(|source| Error::Parse {
            file: (self.file)(),
            source,
        })
    }

    /// Rewrite `drv` (as read), given the results of its input derivations
    /// (`input` answers for every input derivation path as written), and
    /// record its changes in `seen`: before its dependents are rewritten,
    /// which the walks start once this returns.
    fn rewrite<'r>(
        &self,
        drv: &Derivation,
        mut input: impl FnMut(&StorePath) -> Option<&'r Rewritten>,
    ) -> Result<Rewritten> {
        let others = Others {
            seen: self.seen,
            in_input_closure: self.in_input_closure,
        };
        let fail = |message: String| Error::Rewrite {
            path: self.store_dir.display(self.path),
            message,
        };
        // What the inputs' changes make of this derivation's bytes.
        let mut subs = Substitutions::default();
        let mut inputs: Vec<(&StorePath, &Rewritten)> =
            Vec::with_capacity(drv.input_derivations().len());
        for input_drv in drv.input_derivations() {
            let done = input(&input_drv.path).ok_or_else(|| {
                fail(format!(
                    "input {} could not be rewritten",
                    self.store_dir.display(&input_drv.path)
                ))
            })?;
            subs.extend(&done.changes);
            inputs.push((&done.path, done));
        }
        // Parsed again only when an input's change reaches its bytes.
        let substituted = match subs.apply_with(drv.bytes(), &others) {
            Some(bytes) => Some(self.parse(bytes, drv_name(self.path))?),
            None => None,
        };
        let drv = substituted.as_ref().unwrap_or(drv);
        // Input hashes modulo meta, by the inputs' new paths.
        let resolve = |path: &StorePath| -> Option<InputHash> {
            inputs
                .iter()
                .find(|(candidate, _)| *candidate == path)
                .map(|(_, input)| input.input_hash)
        };
        // Substitution never touches the derivation's own output paths.
        let recorded = recorded_outputs(drv);
        let normal = meta_normal_form(drv, resolve).map_err(fail)?;
        let hashes = normal.hashes;
        let opted_in = normal.meta.opt_in;
        // The result's bytes; its references are `drv`'s (the edits touch
        // outputs, `__json` and hash parts of its own outputs only).
        let bytes: Cow<'_, [u8]> = match self.mode {
            Mode::Rewrite if opted_in => {
                // Keep meta; give the outputs (and every occurrence of their
                // old hash parts) the modulo-meta paths.
                let mut own = Substitutions::default();
                for ((_, old), (_, new)) in recorded.iter().zip(&hashes.outputs) {
                    if let (Some(old), Some(new)) = (old, new) {
                        own.hash(old.hash_part(), new.hash_part());
                    }
                }
                let printed = drv.aterm();
                match own.apply(&printed) {
                    Some(bytes) => {
                        // Parsed: still a derivation, printed canonically.
                        Cow::Owned(self.parse(bytes, drv.name())?.into_aterm_bytes())
                    }
                    None => printed,
                }
            }
            Mode::Strip | Mode::Rewrite => normal.bytes.map_or_else(|| drv.aterm(), Cow::Owned),
        };
        let path = self
            .store_dir
            .make_text_path(&format!("{}.drv", drv.name()), &bytes, drv.references())
            .map_err(|error| fail(error.to_string()))?;
        let references = drv.references().cloned().collect();
        // Copied only to be kept (written or imported).
        let bytes = if self.keep_bytes {
            bytes.into_owned()
        } else {
            Vec::new()
        };
        let mut done = Rewritten {
            changed: path != *self.path,
            path,
            bytes,
            outputs: hashes.outputs,
            references,
            opted_in: self.mode == Mode::Rewrite && opted_in,
            input_hash: hashes.input_hash,
            recorded,
            changes: Changes::default(),
        };
        done.changes = record_changes(self.path, &done);
        self.seen.add(self.path, &done.changes);
        Ok(done)
    }
}

/// What a dependent must replace after input derivation `old_path` became
/// `done`: its path's hash part, its outputs' hash parts and its downstream
/// placeholders.
fn record_changes(old_path: &StorePath, done: &Rewritten) -> Changes {
    let mut subs = Substitutions::default();
    if !done.changed {
        return Changes::default();
    }
    subs.hash(old_path.hash_part(), done.path.hash_part());
    for (name, old) in &done.recorded {
        let new = done
            .outputs
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, p)| p.as_ref());
        if let (Some(old), Some(new)) = (old, new) {
            subs.hash(old.hash_part(), new.hash_part());
        }
        subs.placeholder(
            &downstream_placeholder(old_path, name),
            &downstream_placeholder(&done.path, name),
        );
    }
    subs.to_changes()
}
