//! Loading and hashing a closure in one pass: each `.drv` is read and parsed
//! once, and hashed as soon as its inputs are.
//!
//! [`crate::closure::Closure::load`] followed by
//! [`crate::hashing::hash_closure`] parses every derivation twice (the
//! closure keeps the files' bytes, because a parsed derivation takes about
//! 2.5 times their memory). Here a derivation is parsed when it is read and
//! kept parsed only until it is hashed, which happens as soon as the last of
//! its inputs is: a dataflow walk on the rayon pool, with no barrier between
//! levels. Reading goes depth first (each thread takes the inputs it found
//! last), so few parsed derivations wait for their inputs at any time and
//! the bytes are not kept at all.
//!
//! The result is the same closure (without bytes: [`DrvNode::derivation`]
//! fails on it) and the same hashes as the two-step route gives.
//!
//! [`DrvNode::derivation`]: crate::closure::DrvNode::derivation

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use crate::derivation::{Derivation, StorePath};

use crate::closure::{Closure, LoadOptions, Loaded, load_one};
use crate::error::{Error, Result};
use crate::hashing::{NodeHashes, hash_derivation_both};

/// How often (in derivations read) `progress` is called.
const PROGRESS_EVERY: usize = 256;

/// One derivation of the walk.
struct Slot {
    path: StorePath,
    /// The derivation that first asked for it (`None` for a root).
    needed_by: Option<usize>,
    /// Set once read. (Boxed, as `parsed` is: slots are moved as the
    /// vector of them grows.)
    loaded: Option<Box<Loaded>>,
    /// Slot indices of its inputs, in the order of `loaded.input_paths`.
    inputs: Vec<usize>,
    /// The parsed derivation, from reading until hashing.
    parsed: Option<Box<Derivation>>,
    /// Inputs not hashed yet.
    pending: usize,
    /// Derivations waiting for this one.
    dependents: Vec<usize>,
    hashes: Option<Arc<NodeHashes>>,
}

impl Slot {
    fn new(path: StorePath, needed_by: Option<usize>) -> Self {
        Self {
            path,
            needed_by,
            loaded: None,
            inputs: Vec::new(),
            parsed: None,
            pending: 0,
            dependents: Vec::new(),
            hashes: None,
        }
    }
}

struct State<'p> {
    slots: Vec<Slot>,
    index: HashMap<StorePath, usize>,
    read: usize,
    /// Errors by the slot they belong to.
    errors: Vec<(usize, Error)>,
    progress: &'p mut (dyn FnMut(usize) + Send),
}

struct Walk<'o, 'p> {
    options: &'o LoadOptions,
    state: Mutex<State<'p>>,
}

/// Load the closures of `roots` (as [`Closure::load`]) and hash every
/// derivation (as [`crate::hashing::hash_closure`]), reading and parsing
/// each `.drv` once. `progress` is called from the worker threads now and
/// then with the number of derivations read so far.
///
/// # Errors
/// As [`Closure::load`]. When several derivations fail, the error of the one
/// with the smallest store path is returned, so the message does not depend
/// on scheduling.
pub fn load_and_hash(
    options: &LoadOptions,
    roots: &[String],
    progress: &mut (dyn FnMut(usize) + Send),
) -> Result<(Closure, Vec<NodeHashes>)> {
    options.check()?;
    let mut state = State {
        slots: Vec::new(),
        index: HashMap::new(),
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
            state.slots.push(Slot::new(path, None));
            start.push((slot, file));
        }
    }
    let walk = Walk {
        options,
        state: Mutex::new(state),
    };
    rayon::scope(|scope| {
        for (slot, file) in start {
            let walk = &walk;
            scope.spawn(move |scope| walk.read(scope, slot, Some(file)));
        }
    });
    let state = walk
        .state
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    finish(options, state, &root_paths)
}

impl<'p> Walk<'_, 'p> {
    fn lock(&self) -> std::sync::MutexGuard<'_, State<'p>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Read and parse derivation `slot` (from `file`, or where
    /// [`LoadOptions::locate`] finds it), register its inputs, start reading
    /// the new ones and hash it when they are all hashed already.
    fn read<'s>(&'s self, scope: &rayon::Scope<'s>, slot: usize, file: Option<PathBuf>) {
        let (path, needed_by) = {
            let state = self.lock();
            (state.slots[slot].path.clone(), state.slots[slot].needed_by)
        };
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
        let (mut loaded, drv) = match result {
            Ok(done) => done,
            Err(error) => {
                state.errors.push((slot, error));
                return;
            }
        };
        // The file's bytes are not needed any more: the path check is done.
        loaded.bytes = Box::default();
        let mut new_inputs = Vec::new();
        let mut inputs = Vec::with_capacity(loaded.input_paths.len());
        let mut pending = 0;
        for input_path in &loaded.input_paths {
            let input = match state.index.get(input_path) {
                Some(&input) => input,
                None => {
                    let input = state.slots.len();
                    state.index.insert(input_path.clone(), input);
                    state.slots.push(Slot::new(input_path.clone(), Some(slot)));
                    new_inputs.push(input);
                    input
                }
            };
            if state.slots[input].hashes.is_none() {
                pending += 1;
                state.slots[input].dependents.push(slot);
            }
            inputs.push(input);
        }
        let this = &mut state.slots[slot];
        this.loaded = Some(Box::new(loaded));
        this.inputs = inputs;
        this.pending = pending;
        this.parsed = Some(Box::new(drv));
        state.read += 1;
        if state.read.is_multiple_of(PROGRESS_EVERY) {
            let read = state.read;
            (state.progress)(read);
        }
        drop(state);
        for input in new_inputs {
            scope.spawn(move |scope| self.read(scope, input, None));
        }
        if pending == 0 {
            self.hash(scope, slot);
        }
    }

    /// Hash derivation `slot`, whose inputs are all hashed, and start
    /// hashing the dependents this was the last missing input of.
    fn hash<'s>(&'s self, scope: &rayon::Scope<'s>, slot: usize) {
        let (drv, inputs) = {
            let mut state = self.lock();
            let drv = state.slots[slot]
                .parsed
                .take()
                .expect("parsed once, hashed once");
            let inputs: Vec<(StorePath, Arc<NodeHashes>)> = state.slots[slot]
                .inputs
                .iter()
                .map(|&input| {
                    let input = &state.slots[input];
                    let hashes = input.hashes.clone().expect("inputs are hashed first");
                    (input.path.clone(), hashes)
                })
                .collect();
            (drv, inputs)
        };
        // `inputs` follows the derivation's sorted input derivations.
        let hashes = hash_derivation_both(Ok(*drv), |path| {
            inputs
                .binary_search_by(|(candidate, _)| candidate.cmp(path))
                .ok()
                .map(|position| &*inputs[position].1)
        });
        drop(inputs);
        let mut ready = Vec::new();
        {
            let mut state = self.lock();
            state.slots[slot].hashes = Some(Arc::new(hashes));
            for dependent in std::mem::take(&mut state.slots[slot].dependents) {
                let waiting = &mut state.slots[dependent].pending;
                *waiting -= 1;
                if *waiting == 0 {
                    ready.push(dependent);
                }
            }
        }
        for dependent in ready {
            scope.spawn(move |scope| self.hash(scope, dependent));
        }
    }
}

/// Report the first error, or put the walk's result in closure order. A
/// derivation left unhashed without an error is on or above a cycle, which
/// [`Closure`]'s ordering names.
fn finish(
    options: &LoadOptions,
    state: State<'_>,
    roots: &[StorePath],
) -> Result<(Closure, Vec<NodeHashes>)> {
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
    let mut hashes: Vec<Option<Arc<NodeHashes>>> = Vec::with_capacity(slots.len());
    let mut loaded = Vec::with_capacity(slots.len());
    let mut edges = Vec::with_capacity(slots.len());
    for slot in slots {
        hashes.push(slot.hashes);
        loaded.push(
            *slot
                .loaded
                .expect("every derivation without an error was read"),
        );
        edges.push(slot.inputs);
    }
    let (closure, order) = Closure::order(options.store_dir.clone(), loaded, edges, index, roots)?;
    let mut ordered = Vec::with_capacity(hashes.len());
    for (node, old) in closure.nodes().iter().zip(order) {
        let hashes = hashes[old].take().ok_or_else(|| Error::Cycle {
            path: closure.render(&node.path),
        })?;
        ordered.push(Arc::into_inner(hashes).expect("the walk holds no other reference"));
    }
    Ok((closure, ordered))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hashing::hash_closure;
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

    /// The walk gives what loading and then hashing gives, in the same
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
            // Nothing is kept but the hashes: the walk drops the bytes.
            assert!(closure.nodes()[0].derivation().is_err());
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
