//! The one walker every command loads closures with: each `.drv` is read
//! and parsed once, and visited as soon as its inputs are.
//!
//! Reading starts from the roots and follows input derivations in parallel
//! on the rayon pool, depth first (each thread takes the inputs it found
//! last). A derivation is *visited* — `visit` is called with it and the
//! results of its inputs — as soon as the last of its inputs is: a dataflow
//! walk with no barrier between levels, so `hash` computes a derivation's
//! hashes as soon as it can and drops the parsed derivation right after
//! (peak memory stays near the size of the files), while [`Closure::load`]
//! keeps every derivation for the walks that follow.
//!
//! [`visit_loaded`] visits a closure already loaded in the same dataflow
//! order ([`crate::hashing::hash_closure`],
//! [`crate::rewrite::rewrite_closure`]).
//!
//! A cycle makes no derivation on it ready, so the walk ends instead of
//! waiting forever, and the closure ordering names a derivation on it. When
//! several derivations fail, the error of the one with the smallest store
//! path is returned, so the message does not depend on scheduling.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use crate::closure::{Closure, LoadOptions, Loaded, load_one, reaches};
use crate::derivation::store_path::PathMap;
use crate::derivation::{Derivation, StorePath};
use crate::error::{Error, Result};

/// How often (in derivations read) `progress` is called.
const PROGRESS_EVERY: usize = 256;

/// What a visit sees of one derivation.
pub struct Visit<'a, T> {
    /// Its store path.
    pub path: &'a StorePath,
    /// The derivation.
    pub drv: &'a Derivation,
    /// Whether it was given as a root (and first reached as one).
    pub is_root: bool,
    /// Whether the file's bytes hash to its store path.
    pub path_matches: bool,
    /// The results of its input derivations, in the order of
    /// `drv.input_derivations()`.
    inputs: &'a [Arc<T>],
    /// Whether a path is in its input closure ([`Self::is_in_input_closure`]).
    in_input_closure: &'a dyn Fn(&StorePath) -> bool,
}

impl<'a, T> Visit<'a, T> {
    /// The result of visiting input derivation `path` (visited before).
    #[must_use]
    pub fn input(&self, path: &StorePath) -> Option<&'a T> {
        // The input derivations are sorted by path.
        self.drv
            .input_derivations()
            .binary_search_by(|candidate| candidate.path.cmp(path))
            .ok()
            .map(|position| &*self.inputs[position])
    }

    /// Whether derivation `path` is in its input closure (an input, an
    /// input's input, …): visited before it. A walk through the inputs,
    /// for the rare question that its direct inputs do not answer.
    #[must_use]
    pub fn is_in_input_closure(&self, path: &StorePath) -> bool {
        (self.in_input_closure)(path)
    }
}

/// One derivation of the walk.
struct Slot<T> {
    path: StorePath,
    /// The derivation that first asked for it (`None` for a root).
    needed_by: Option<usize>,
    /// Set once read. (Boxed: slots are moved as the vector grows.)
    loaded: Option<Box<Loaded>>,
    /// Slot indices of its inputs, in the order of its input derivations.
    inputs: Vec<usize>,
    /// The parsed derivation, from reading until visiting.
    parsed: Option<Arc<Derivation>>,
    /// Inputs not visited yet.
    pending: usize,
    /// Derivations waiting for this one.
    dependents: Vec<usize>,
    result: Option<Arc<T>>,
}

impl<T> Slot<T> {
    fn new(path: StorePath, needed_by: Option<usize>) -> Self {
        Self {
            path,
            needed_by,
            loaded: None,
            inputs: Vec::new(),
            parsed: None,
            pending: 0,
            dependents: Vec::new(),
            result: None,
        }
    }
}

/// A derivation to read: its slot, store path, the derivation that first
/// asked for it (`None` for a root) and its file when known.
struct Read {
    slot: usize,
    path: StorePath,
    needed_by: Option<usize>,
    file: Option<PathBuf>,
}

struct State<'p, T> {
    slots: Vec<Slot<T>>,
    index: PathMap<usize>,
    read: usize,
    /// Errors by the slot they belong to.
    errors: Vec<(usize, Error)>,
    progress: &'p mut (dyn FnMut(usize) + Send),
}

struct Walk<'o, 'p, 'v, T> {
    options: &'o LoadOptions,
    keep: bool,
    visit: &'v (dyn Fn(&Visit<'_, T>) -> T + Sync),
    state: Mutex<State<'p, T>>,
}

/// Load the closures of `roots` (command-line forms, as [`Closure::load`]
/// takes them), calling `visit` on every derivation once its inputs are
/// visited; `keep`: whether the closure keeps the parsed derivations.
/// `progress` is called from the worker threads now and then with the
/// number of derivations read so far. Results come in [`Closure::nodes`]
/// order.
///
/// # Errors
/// As [`Closure::load`]; see the module docs for which error is returned.
pub fn walk<T: Send + Sync>(
    options: &LoadOptions,
    roots: &[String],
    keep: bool,
    progress: &mut (dyn FnMut(usize) + Send),
    visit: &(dyn Fn(&Visit<'_, T>) -> T + Sync),
) -> Result<(Closure, Vec<T>)> {
    options.check()?;
    let mut state = State {
        slots: Vec::new(),
        index: PathMap::default(),
        read: 0,
        errors: Vec::new(),
        progress,
    };
    let mut root_paths = Vec::with_capacity(roots.len());
    let mut start = Vec::new();
    for arg in roots {
        let (path, file) = options.resolve_arg(arg)?;
        root_paths.push(path.clone());
        if !state.index.contains_key(&path) {
            let slot = state.slots.len();
            state.index.insert(path.clone(), slot);
            state.slots.push(Slot::new(path.clone(), None));
            start.push((slot, path, file));
        }
    }
    let walk = Walk {
        options,
        keep,
        visit,
        state: Mutex::new(state),
    };
    rayon::scope(|scope| {
        for (slot, path, file) in start {
            let walk = &walk;
            let job = Read {
                slot,
                path,
                needed_by: None,
                file: Some(file),
            };
            scope.spawn(move |scope| walk.read(scope, job));
        }
    });
    let state = walk
        .state
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    finish(options, state, &root_paths)
}

impl<'p, T: Send + Sync> Walk<'_, 'p, '_, T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, State<'p, T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Read and parse a derivation (from its `file`, or where
    /// [`LoadOptions::locate`] finds it), register its inputs, start reading
    /// the new ones and visit it when they are all visited already.
    fn read<'s>(&'s self, scope: &rayon::Scope<'s>, job: Read) {
        // The last new input found is read on this thread, the others are
        // left to any thread (a task each): depth first, with a task spawned
        // only where another thread may take it.
        let mut next = Some(job);
        while let Some(job) = next.take() {
            next = self.read_one(scope, job);
        }
    }

    /// [`Self::read`] of one derivation; returns the input to read next on
    /// this thread.
    fn read_one<'s>(&'s self, scope: &rayon::Scope<'s>, job: Read) -> Option<Read> {
        let Read {
            slot,
            path,
            needed_by,
            file,
        } = job;
        let file = file.unwrap_or_else(|| self.options.locate(&path));
        let dependent = needed_by.map(|i| {
            move || {
                self.lock().slots[i]
                    .path
                    .to_absolute_path_in(&self.options.store_dir)
            }
        });
        let name = dependent.as_ref().map(|f| f as &dyn Fn() -> String);
        let result = load_one(&self.options.store_dir, path, file, name);
        let mut state = self.lock();
        let (loaded, drv) = match result {
            Ok(done) => done,
            Err(error) => {
                state.errors.push((slot, error));
                return None;
            }
        };
        // Each new input but the last becomes a task as the next is found.
        let mut last: Option<Read> = None;
        let mut inputs = Vec::with_capacity(drv.input_derivations().len());
        let mut pending = 0;
        for input_drv in drv.input_derivations() {
            let input_path = &input_drv.path;
            let input = match state.index.get(input_path) {
                Some(&input) => input,
                None => {
                    let input = state.slots.len();
                    state.index.insert(input_path.clone(), input);
                    state.slots.push(Slot::new(input_path.clone(), Some(slot)));
                    let job = Read {
                        slot: input,
                        path: input_path.clone(),
                        needed_by: Some(slot),
                        file: None,
                    };
                    if let Some(previous) = last.replace(job) {
                        scope.spawn(move |scope| self.read(scope, previous));
                    }
                    input
                }
            };
            if state.slots[input].result.is_none() {
                pending += 1;
                state.slots[input].dependents.push(slot);
            }
            inputs.push(input);
        }
        let this = &mut state.slots[slot];
        this.loaded = Some(Box::new(loaded));
        this.inputs = inputs;
        this.pending = pending;
        this.parsed = Some(Arc::new(drv));
        state.read += 1;
        if state.read.is_multiple_of(PROGRESS_EVERY) {
            let read = state.read;
            (state.progress)(read);
        }
        drop(state);
        if pending == 0 {
            self.visit(scope, slot);
        }
        last
    }

    /// Whether the derivation at `other` is reachable from slot `slot`'s
    /// inputs (under the lock).
    fn in_input_closure(&self, slot: usize, other: &StorePath) -> bool {
        let state = self.lock();
        state.index.get(other).is_some_and(|&target| {
            reaches(state.slots.len(), slot, target, |at| {
                &state.slots[at].inputs
            })
        })
    }

    /// Visit derivation `slot`, whose inputs are all visited, and start
    /// visiting the dependents this was the last missing input of.
    fn visit<'s>(&'s self, scope: &rayon::Scope<'s>, slot: usize) {
        // As in `read`: one dependent made ready goes on on this thread.
        let mut next = Some(slot);
        while let Some(slot) = next.take() {
            next = self.visit_one(scope, slot);
        }
    }

    /// [`Self::visit`] of one derivation; returns a dependent it made ready,
    /// to visit next on this thread.
    fn visit_one<'s>(&'s self, scope: &rayon::Scope<'s>, slot: usize) -> Option<usize> {
        let (drv, inputs, path, is_root, path_matches) = {
            let mut state = self.lock();
            let drv = state.slots[slot]
                .parsed
                .take()
                .expect("parsed once, visited once");
            let inputs: Vec<Arc<T>> = state.slots[slot]
                .inputs
                .iter()
                .map(|&input| {
                    state.slots[input]
                        .result
                        .clone()
                        .expect("inputs are visited first")
                })
                .collect();
            let this = &state.slots[slot];
            let path_matches = this
                .loaded
                .as_ref()
                .expect("read before visited")
                .path_matches;
            (
                drv,
                inputs,
                this.path.clone(),
                this.needed_by.is_none(),
                path_matches,
            )
        };
        let in_input_closure = |other: &StorePath| self.in_input_closure(slot, other);
        let result = (self.visit)(&Visit {
            path: &path,
            drv: &drv,
            is_root,
            path_matches,
            inputs: &inputs,
            in_input_closure: &in_input_closure,
        });
        drop(inputs);
        // Each dependent made ready but the last becomes a task as the next
        // is found.
        let mut last = None;
        let mut state = self.lock();
        let this = &mut state.slots[slot];
        this.result = Some(Arc::new(result));
        if self.keep {
            this.loaded.as_mut().expect("read before visited").drv = Some(drv);
        }
        for dependent in std::mem::take(&mut state.slots[slot].dependents) {
            let waiting = &mut state.slots[dependent].pending;
            *waiting -= 1;
            if *waiting == 0
                && let Some(previous) = last.replace(dependent)
            {
                scope.spawn(move |scope| self.visit(scope, previous));
            }
        }
        last
    }
}

/// The results of the nodes visited so far, by node index, as
/// [`visit_loaded`] gives them to a visit.
pub type Done<'r, T> = dyn Fn(usize) -> &'r T + 'r;

/// What [`visit_loaded`] calls on each node: its index and the results
/// so far.
pub type VisitLoaded<'v, T> = dyn for<'r> Fn(usize, &'r Done<'r, T>) -> T + Sync + 'v;

/// Visit every derivation of a loaded closure as soon as its inputs are
/// visited: the dataflow order of [`walk`] (no barrier between levels), on
/// the rayon pool, over [`Closure::nodes`]. `visit` gets a node's index and
/// the results of the nodes visited before it (any of its input closure,
/// by index). Results come in node order.
pub fn visit_loaded<T: Send + Sync>(closure: &Closure, visit: &VisitLoaded<T>) -> Vec<T> {
    let nodes = closure.nodes();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (index, node) in nodes.iter().enumerate() {
        for &input in &node.inputs {
            dependents[input].push(index);
        }
    }
    let visiting = Visiting {
        pending: nodes
            .iter()
            .map(|node| AtomicUsize::new(node.inputs.len()))
            .collect(),
        dependents,
        results: (0..nodes.len()).map(|_| OnceLock::new()).collect(),
        visit,
    };
    rayon::scope(|scope| {
        for (index, node) in nodes.iter().enumerate() {
            if node.inputs.is_empty() {
                let visiting = &visiting;
                scope.spawn(move |scope| visiting.run(scope, index));
            }
        }
    });
    visiting
        .results
        .into_iter()
        .map(|result| {
            result
                .into_inner()
                .expect("a loaded closure has no cycle: every node is visited")
        })
        .collect()
}

/// The state of [`visit_loaded`].
struct Visiting<'v, T> {
    /// Inputs of each node not visited yet.
    pending: Vec<AtomicUsize>,
    dependents: Vec<Vec<usize>>,
    results: Vec<OnceLock<T>>,
    visit: &'v VisitLoaded<'v, T>,
}

impl<T: Send + Sync> Visiting<'_, T> {
    /// Visit `index`, then the dependents it made ready: the last on this
    /// thread, the others as tasks (as [`Walk::visit`]).
    fn run<'s>(&'s self, scope: &rayon::Scope<'s>, index: usize) {
        let mut next = Some(index);
        while let Some(index) = next.take() {
            let done = |node: usize| -> &T {
                self.results[node]
                    .get()
                    .expect("a node's input closure is visited before it")
            };
            let result = (self.visit)(index, &done);
            assert!(
                self.results[index].set(result).is_ok(),
                "each node is visited once"
            );
            for &dependent in &self.dependents[index] {
                if self.pending[dependent].fetch_sub(1, Ordering::AcqRel) == 1
                    && let Some(previous) = next.replace(dependent)
                {
                    scope.spawn(move |scope| self.run(scope, previous));
                }
            }
        }
    }
}

/// Report the first error, or put the walk's result in closure order. A
/// derivation left unvisited without an error is on or above a cycle, which
/// the closure ordering names.
fn finish<T>(
    options: &LoadOptions,
    state: State<'_, T>,
    roots: &[StorePath],
) -> Result<(Closure, Vec<T>)> {
    let State {
        slots,
        index,
        mut errors,
        ..
    } = state;
    if !errors.is_empty() {
        errors.sort_by(|(a, _), (b, _)| slots[*a].path.cmp(&slots[*b].path));
        return Err(errors.swap_remove(0).1);
    }
    let mut results: Vec<Option<Arc<T>>> = Vec::with_capacity(slots.len());
    let mut loaded = Vec::with_capacity(slots.len());
    let mut edges = Vec::with_capacity(slots.len());
    for slot in slots {
        results.push(slot.result);
        loaded.push(
            *slot
                .loaded
                .expect("every derivation without an error was read"),
        );
        edges.push(slot.inputs);
    }
    let (closure, order) = Closure::order(options.store_dir.clone(), loaded, edges, index, roots)?;
    let mut ordered = Vec::with_capacity(results.len());
    for (node, old) in closure.nodes().iter().zip(order) {
        let result = results[old].take().ok_or_else(|| Error::Cycle {
            path: closure.render(&node.path),
        })?;
        let result = Arc::try_unwrap(result)
            .unwrap_or_else(|_| unreachable!("the walk holds no other reference"));
        ordered.push(result);
    }
    Ok((closure, ordered))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hashing::{NodeHashes, hash_closure, load_and_hash};
    use crate::report;

    fn fixture(drvs: &str, root: &str) -> (LoadOptions, Vec<String>) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/kernel");
        let options = LoadOptions {
            drv_dirs: vec![dir.join(drvs)],
            ..LoadOptions::default()
        };
        let root = std::fs::read_to_string(dir.join(root)).expect("fixture root");
        (options, vec![root.trim().to_owned()])
    }

    fn one_pass(options: &LoadOptions, roots: &[String]) -> Result<(Closure, Vec<NodeHashes>)> {
        load_and_hash(options, roots, &mut |_| {})
    }

    /// Hashing while walking gives what loading and then hashing gives, in the same
    /// closure order (`Closure::nodes`), for both example closures.
    #[test]
    fn one_pass_agrees_with_load_then_hash() {
        for (drvs, root) in [("drvs", "root"), ("drvs-nometa", "root-nometa")] {
            let (options, roots) = fixture(drvs, root);
            let (closure, hashes) = one_pass(&options, &roots).expect("loads");
            let reference = Closure::load(&options, &roots).expect("loads");
            let reference_hashes = hash_closure(&reference);
            let paths = |c: &Closure| c.nodes().iter().map(|n| n.path.clone()).collect::<Vec<_>>();
            assert_eq!(paths(&closure), paths(&reference), "{drvs}");
            assert_eq!(closure.roots(), reference.roots(), "{drvs}");
            for (node, other) in closure.nodes().iter().zip(reference.nodes()) {
                assert_eq!(node.inputs, other.inputs, "{drvs}");
                assert_eq!(node.path_matches, other.path_matches, "{drvs}");
            }
            let all: Vec<usize> = (0..closure.nodes().len()).collect();
            let report = report::build(&closure, &hashes, &all);
            assert!(report.derivations.len() > 3, "{drvs}: {report:?}");
            assert_eq!(
                report,
                report::build(&reference, &reference_hashes, &all),
                "{drvs}"
            );
            // Nothing is kept but the hashes: the walk drops the derivations.
            assert!(closure.nodes()[0].derivation().is_err());
            assert!(reference.nodes()[0].derivation().is_ok());
        }
    }

    /// Every node of a loaded closure is visited once, after its inputs: the
    /// depths computed from the inputs' results are those computed in node
    /// order (`done` panics on a node not visited yet).
    #[test]
    fn visit_loaded_visits_inputs_first() {
        for (drvs, root) in [("drvs", "root"), ("drvs-nometa", "root-nometa")] {
            let (options, roots) = fixture(drvs, root);
            let closure = Closure::load(&options, &roots).expect("loads");
            let depths = visit_loaded(&closure, &|index, done| {
                closure.nodes()[index]
                    .inputs
                    .iter()
                    .map(|&input| *done(input) + 1)
                    .max()
                    .unwrap_or(0usize)
            });
            let mut expected: Vec<usize> = Vec::new();
            for node in closure.nodes() {
                let depth = node.inputs.iter().map(|&i| expected[i] + 1).max();
                expected.push(depth.unwrap_or(0));
            }
            assert_eq!(depths, expected, "{drvs}");
            assert!(depths.iter().any(|&depth| depth >= 2), "{drvs}: {depths:?}");
        }
    }

    const HASH_A: &str = "0aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const HASH_B: &str = "0bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    /// A derivation `<hash>-<name>.drv` in `dir` needing `inputs`.
    fn write_drv(dir: &std::path::Path, hash: &str, name: &str, inputs: &[String]) -> String {
        let inputs: Vec<String> = inputs
            .iter()
            .map(|input| format!("(\"{input}\",[\"out\"])"))
            .collect();
        let text = format!(
            "Derive([(\"out\",\"\",\"\",\"\")],[{}],[],\"x86_64-linux\",\"/bin/sh\",[],[(\"out\",\"\")])",
            inputs.join(",")
        );
        let file = dir.join(format!("{hash}-{name}.drv"));
        std::fs::write(&file, text).expect("write");
        format!("/nix/store/{hash}-{name}.drv")
    }

    fn drv_dir_options(dir: &std::path::Path) -> LoadOptions {
        LoadOptions {
            drv_dirs: vec![dir.to_owned()],
            ..LoadOptions::default()
        }
    }

    /// Derivations that need each other never become ready: the walk ends
    /// and names one of them instead of waiting forever.
    #[test]
    fn a_cycle_is_reported_not_waited_for() {
        let dir = tempfile::tempdir().expect("temp dir");
        let b = format!("/nix/store/{HASH_B}-b.drv");
        let a = write_drv(dir.path(), HASH_A, "a", std::slice::from_ref(&b));
        write_drv(dir.path(), HASH_B, "b", std::slice::from_ref(&a));
        let top = write_drv(
            dir.path(),
            "0ccccccccccccccccccccccccccccccc",
            "top",
            std::slice::from_ref(&a),
        );
        match one_pass(&drv_dir_options(dir.path()), &[top]) {
            Err(Error::Cycle { path }) => assert!(path == a || path == b, "{path}"),
            other => panic!("expected a cycle, got {:?}", other.map(|_| ())),
        }
    }

    /// Of several missing inputs, the one with the smallest store path is
    /// reported, with the derivation that needs it, whatever the schedule.
    #[test]
    fn the_reported_error_does_not_depend_on_scheduling() {
        let dir = tempfile::tempdir().expect("temp dir");
        let gone: Vec<String> = (1..=9)
            .map(|i| format!("/nix/store/{}-gone.drv", i.to_string().repeat(32)))
            .collect();
        let needs: Vec<String> = gone
            .iter()
            .enumerate()
            .map(|(i, missing)| {
                // Nix's base-32 alphabet has no e, o, t or u.
                let letter = &"abcdfghij"[i..=i];
                let hash = format!("0{}", letter.repeat(31));
                write_drv(dir.path(), &hash, "needs", std::slice::from_ref(missing))
            })
            .collect();
        for _ in 0..20 {
            match one_pass(&drv_dir_options(dir.path()), &needs) {
                Err(Error::MissingInput {
                    missing, needed_by, ..
                }) => {
                    assert_eq!(missing, gone[0]);
                    assert_eq!(needed_by, needs[0]);
                }
                other => panic!("expected a missing input, got {:?}", other.map(|_| ())),
            }
        }
    }
}
