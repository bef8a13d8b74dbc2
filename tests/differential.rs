//! Differential tests against real Nix 2.8 with the twin method (DESIGN.md §6).
//!
//! Each seed generates an expression, instantiated by Nix with meta (closure
//! A) and without (closure B). For every derivation of both closures drvmeta
//! must agree with Nix on drv paths and output paths; in B the modulo-meta
//! hashes equal the classic ones; in A the modulo-meta outputs of every
//! derivation with no opted-in derivation strictly below it equal B's.

mod support;

use std::collections::BTreeMap;

use drvmeta::closure::{Closure, LoadOptions};
use drvmeta::hashing::hash_closure;
use drvmeta::report::{DrvReport, HashReport};
use support::generator::{Generated, Options, generate};

struct Twin {
    /// Report of every derivation of the closure.
    report: HashReport,
    /// Generated derivation name → drv path, from nix-instantiate.
    by_name: BTreeMap<String, String>,
    /// Drv path → whether an opted-in derivation is strictly below it.
    opted_below: BTreeMap<String, bool>,
}

fn twin(generated: &Generated, paths: Vec<String>, with_meta: bool) -> Twin {
    let context = format!("seed {} (withMeta = {with_meta})", generated.seed);
    assert_eq!(
        paths.len(),
        generated.specs.len(),
        "{context}: one drv per element"
    );
    let closure = Closure::load(&LoadOptions::default(), &paths)
        .unwrap_or_else(|error| panic!("{context}: drvmeta cannot load the closure: {error}"));
    let hashes = hash_closure(&closure);
    let all: Vec<usize> = (0..closure.nodes().len()).collect();
    let report = drvmeta::report::build(&closure, &hashes, &all);
    // Nodes are in dependency order, so one forward pass suffices.
    let mut below = vec![false; closure.nodes().len()];
    for (index, node) in closure.nodes().iter().enumerate() {
        below[index] = node
            .inputs
            .iter()
            .any(|&input| below[input] || hashes[input].meta.opt_in);
    }
    let opted_below = closure
        .nodes()
        .iter()
        .zip(&below)
        .map(|(node, &below)| (closure.render(&node.path), below))
        .collect();
    let by_name = generated
        .specs
        .iter()
        .zip(paths)
        .map(|(spec, path)| (spec.name.clone(), path))
        .collect();
    Twin {
        report,
        by_name,
        opted_below,
    }
}

fn check_closure_matches_nix(twin: &Twin, failures: &mut Vec<String>, label: &str) {
    for (path, drv) in &twin.report.derivations {
        if !drv.errors.is_empty() {
            failures.push(format!(
                "{label} {path}: unexpected errors {:?}",
                drv.errors
            ));
        }
        if !drv.drv_path_matches {
            failures.push(format!("{label} {path}: drvPathMatches is false"));
        }
        if drv.classic.outputs != drv.recorded_outputs {
            failures.push(format!(
                "{label} {path}: classic outputs {:?} != recorded {:?}",
                drv.classic.outputs, drv.recorded_outputs
            ));
        }
    }
}

fn report_of<'a>(twin: &'a Twin, name: &str) -> (&'a String, &'a DrvReport) {
    let path = &twin.by_name[name];
    (path, &twin.report.derivations[path])
}

/// What one seed checked: derivations in both closures, and opted-in
/// derivations whose modulo-meta outputs were compared with the twin's.
#[derive(Default)]
struct Checked {
    derivations: usize,
    opted_in_vs_twin: usize,
}

fn run_seed(seed: u64, options: &Options) -> Checked {
    let mut checked = Checked::default();
    let generated = generate(seed, options);
    let (a_paths, b_paths) = support::instantiate_twins(&generated);
    let a = twin(&generated, a_paths, true);
    let b = twin(&generated, b_paths, false);
    let mut failures = Vec::new();
    check_closure_matches_nix(&a, &mut failures, "A");
    check_closure_matches_nix(&b, &mut failures, "B");

    for spec in &generated.specs {
        let (path_a, drv_a) = report_of(&a, &spec.name);
        let (path_b, drv_b) = report_of(&b, &spec.name);
        if drv_a.meta_opt_in != spec.opted_in {
            failures.push(format!(
                "A {path_a} ({}): metaOptIn {} but the generator opted it {}",
                spec.name, drv_a.meta_opt_in, spec.opted_in
            ));
        }
        if drv_b.meta_opt_in {
            failures.push(format!(
                "B {path_b} ({}): metaOptIn without meta",
                spec.name
            ));
        }
        if spec.opted_in && drv_a.meta.is_none() {
            failures.push(format!("A {path_a}: meta object missing"));
        }
        if drv_b.modulo_meta != drv_b.classic {
            failures.push(format!(
                "B {path_b} ({}): moduloMeta {:?} != classic {:?}",
                spec.name, drv_b.modulo_meta, drv_b.classic
            ));
        }
        if spec.opted_in && !a.opted_below[path_a] {
            checked.opted_in_vs_twin += 1;
            let known = drv_a.classic.outputs.values().all(Option::is_some);
            if known
                && !drv_a.meta_changes_outputs()
                && spec.kind == support::generator::Kind::InputAddressed
            {
                failures.push(format!(
                    "A {path_a}: meta does not change the classic outputs"
                ));
            }
        }
        if !a.opted_below[path_a] && drv_a.modulo_meta.outputs != drv_b.classic.outputs {
            failures.push(format!(
                "A {path_a} ({}): moduloMeta outputs {:?} != twin's outputs {:?}",
                spec.name, drv_a.modulo_meta.outputs, drv_b.classic.outputs
            ));
        }
        // An opted-in derivation's stripped input hash is the twin's when
        // nothing below it is opted in (its meta-normal form is B's drv).
        if spec.opted_in
            && !a.opted_below[path_a]
            && drv_a.modulo_meta.input_hash != drv_b.classic.input_hash
        {
            failures.push(format!(
                "A {path_a} ({}): moduloMeta inputHash != twin's classic inputHash",
                spec.name
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "seed {seed}: {} failures:\n{}\n--- expression (seed {seed}) ---\n{}",
        failures.len(),
        failures.join("\n"),
        generated.expr
    );
    checked.derivations = a.report.derivations.len() + b.report.derivations.len();
    checked
}

#[test]
fn twin_closures_agree_with_nix() {
    let seeds = support::seed_count(8);
    let options = Options::default();
    let (mut derivations, mut opted) = (0, 0);
    for seed in 0..seeds {
        let checked = run_seed(seed, &options);
        derivations += checked.derivations;
        opted += checked.opted_in_vs_twin;
    }
    eprintln!(
        "checked {derivations} derivations, {opted} opted-in against their twin, over {seeds} seeds"
    );
    if seeds >= 8 {
        assert!(
            derivations >= 600,
            "too few derivations checked: {derivations}"
        );
        assert!(
            opted >= 20,
            "too few opted-in derivations compared with their twin: {opted}"
        );
    }
}

#[test]
fn twin_closures_shallow_agree_with_nix() {
    // Few inputs each: many opted-in derivations have nothing opted in
    // below them, so their modulo-meta outputs are compared with Nix's.
    let options = Options {
        count: 50,
        opt_in_percent: 60,
        max_deps: 1,
    };
    let mut opted = 0;
    for seed in 2000..2000 + support::seed_count(8) {
        opted += run_seed(seed, &options).opted_in_vs_twin;
    }
    eprintln!("shallow: {opted} opted-in derivations compared with their twin");
    assert!(opted >= 5, "too few opted-in derivations compared: {opted}");
}

#[test]
fn twin_closures_mostly_opted_in_agree_with_nix() {
    let options = Options::dense_meta();
    for seed in 1000..1000 + support::seed_count(8).div_ceil(2) {
        run_seed(seed, &options);
    }
}
