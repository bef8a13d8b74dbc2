//! Differential tests against real Nix — Nix 2.8 and a modern Nix — with
//! the twin method (DESIGN.md §6).
//!
//! Each seed generates an expression, instantiated by each Nix with meta
//! (closure A) and without (closure B). For every derivation of both closures drvmeta
//! must agree with Nix on drv paths and output paths; in B the modulo-meta
//! hashes equal the classic ones; in A the modulo-meta outputs of every
//! derivation with no opted-in derivation strictly below it equal B's.

mod support;

use std::collections::BTreeMap;

use drvmeta::closure::Closure;
use drvmeta::hashing::hash_closure;
use drvmeta::report::{DrvReport, HashReport};
use support::NixVersion;
use support::generator::{Generated, Options, generate};

struct Twin {
    /// Report of every derivation of the closure.
    report: HashReport,
    /// Generated derivation name → drv path, from nix-instantiate.
    by_name: BTreeMap<String, String>,
    /// Drv path → whether an opted-in derivation is strictly below it.
    opted_below: BTreeMap<String, bool>,
}

fn twin(version: NixVersion, generated: &Generated, paths: Vec<String>, with_meta: bool) -> Twin {
    let context = format!(
        "seed {} (withMeta = {with_meta}, {})",
        generated.seed,
        version.label()
    );
    assert_eq!(
        paths.len(),
        generated.specs.len(),
        "{context}: one drv per element"
    );
    let closure = Closure::load(&version.load_options(), &paths)
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

fn run_seed(version: NixVersion, seed: u64, options: &Options) -> Checked {
    let mut checked = Checked::default();
    let generated = generate(seed, options);
    let (a_paths, b_paths) = support::instantiate_twins_with(version, &generated);
    let a = twin(version, &generated, a_paths, true);
    let b = twin(version, &generated, b_paths, false);
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
        "{}, seed {seed}: {} failures:\n{}\n--- expression (seed {seed}) ---\n{}",
        version.label(),
        failures.len(),
        failures.join("\n"),
        generated.expr
    );
    checked.derivations = a.report.derivations.len() + b.report.derivations.len();
    checked
}

fn twin_closures_agree(version: NixVersion, options: &Options) {
    let seeds = support::seed_count(8);
    let (mut derivations, mut opted) = (0, 0);
    for seed in 0..seeds {
        let checked = run_seed(version, seed, options);
        derivations += checked.derivations;
        opted += checked.opted_in_vs_twin;
    }
    eprintln!(
        "{}: checked {derivations} derivations, {opted} opted-in against their twin, over {seeds} seeds",
        version.label()
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
fn twin_closures_agree_with_nix_2_8() {
    twin_closures_agree(NixVersion::Old, &Options::default());
}

#[test]
fn twin_closures_agree_with_modern_nix() {
    twin_closures_agree(NixVersion::Modern, &Options::default());
}

#[test]
fn exotic_twin_closures_agree_with_both_nix_versions() {
    // Odd systems, builders, output names and environment keys (unicode,
    // quotes, backslashes, tabs, newlines, control bytes) and floats in
    // every form either Nix writes.
    let options = Options {
        exotic: true,
        ..Options::default()
    };
    for version in NixVersion::BOTH {
        for seed in 3000..3000 + support::seed_count(8) {
            run_seed(version, seed, &options);
        }
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
        exotic: false,
    };
    for version in NixVersion::BOTH {
        let mut opted = 0;
        for seed in 2000..2000 + support::seed_count(8) {
            opted += run_seed(version, seed, &options).opted_in_vs_twin;
        }
        eprintln!(
            "{} shallow: {opted} opted-in derivations compared with their twin",
            version.label()
        );
        assert!(opted >= 5, "too few opted-in derivations compared: {opted}");
    }
}

#[test]
fn twin_closures_mostly_opted_in_agree_with_nix() {
    let options = Options::dense_meta();
    for version in NixVersion::BOTH {
        for seed in 1000..1000 + support::seed_count(8).div_ceil(2) {
            run_seed(version, seed, &options);
        }
    }
}

/// Nix's JSON of an opted-in derivation with meta stripped as drvmeta shows
/// it: `__meta` moved out of `structuredAttrs`, `"derivation-meta"` removed
/// from the required features (and the list once empty).
fn strip_nix_json(mut drv: serde_json::Value) -> (serde_json::Value, serde_json::Value) {
    let attrs = drv["structuredAttrs"].as_object_mut().unwrap();
    let meta = attrs.remove("__meta").unwrap();
    let features = attrs
        .get_mut("requiredSystemFeatures")
        .and_then(serde_json::Value::as_array_mut)
        .unwrap();
    features.retain(|f| f != "derivation-meta");
    if features.is_empty() {
        attrs.remove("requiredSystemFeatures");
    }
    (drv, meta)
}

#[test]
fn show_equals_modern_nix_derivation_show() {
    // `nix derivation show -r` of modern Nix (format version 4) against
    // drvmeta's JSON of every derivation, as values; opted-in derivations
    // are compared with meta stripped from Nix's side and `meta` equal to
    // Nix's `__meta`.
    let version = NixVersion::Modern;
    let options = Options {
        exotic: true,
        ..Options::default()
    };
    let mut compared = 0;
    let mut opted = 0;
    for seed in 5000..5000 + support::seed_count(8).div_ceil(2) {
        let generated = generate(seed, &options);
        let (a, b) = support::instantiate_twins_with(version, &generated);
        for roots in [a, b] {
            let mut command = version.command("nix");
            command.args(["derivation", "show", "-r"]).args(&roots);
            let nix: serde_json::Value =
                serde_json::from_str(&support::run(&mut command, &format!("seed {seed}"))).unwrap();
            assert_eq!(nix["version"], 4, "seed {seed}: Nix's JSON format version");
            let closure = Closure::load(&version.load_options(), &roots).unwrap();
            for node in closure.nodes() {
                let base = node.path.to_basename();
                let ours: serde_json::Value = serde_json::from_str(
                    &drvmeta::show::derivation_json(&node.derivation().unwrap()).unwrap(),
                )
                .unwrap();
                let mut ours = ours.as_object().unwrap().clone();
                let meta = ours.remove("meta").unwrap();
                let theirs = nix["derivations"][&base].clone();
                assert!(theirs.is_object(), "seed {seed}: Nix does not show {base}");
                let theirs = if meta.is_null() {
                    theirs
                } else {
                    opted += 1;
                    let (stripped, nix_meta) = strip_nix_json(theirs);
                    assert_eq!(meta, nix_meta, "seed {seed}: {base}: meta");
                    stripped
                };
                assert_eq!(
                    serde_json::Value::Object(ours),
                    theirs,
                    "seed {seed}: {base}"
                );
                compared += 1;
            }
        }
    }
    eprintln!("compared {compared} derivations with nix derivation show, {opted} opted in");
    assert!(compared >= 200 && opted >= 10, "{compared} / {opted}");
}

#[test]
fn dynamic_inputs_hash_as_modern_nix_wrote_them() {
    // `builtins.outputOf`: Nix 2.34 writes the dependent of a fixed-output
    // `.drv` producer input-addressed (Nix master defers it); of a floating
    // producer, deferred. drvmeta must agree with the file either way.
    let version = NixVersion::Modern;
    let (dir, seen) = version.tempdir();
    let mut checked = 0;
    for (n, producer) in [
        r#"outputHashMode = "text"; outputHashAlgo = "sha256"; outputHash = builtins.hashString "sha256" "x";"#,
        r#"__contentAddressed = true; outputHashMode = "text"; outputHashAlgo = "sha256";"#,
    ]
    .iter()
    .enumerate()
    {
        for (m, consumer_outputs) in ["", r#"outputs = [ "out" "dev" ];"#].iter().enumerate() {
            let expr = format!(
                r#"let producer = derivation {{ name = "producer-{n}.drv"; system = "x86_64-linux";
                     builder = "/bin/sh"; args = [ "-c" "echo > $out" ]; {producer} }};
                   in derivation {{ name = "consumer-{n}-{m}"; system = "x86_64-linux";
                     builder = "/bin/sh"; {consumer_outputs}
                     args = [ "-c" "echo ${{builtins.outputOf producer.outPath "out"}} > $out" ]; }}"#
            );
            let file = format!("outputof-{n}-{m}.nix");
            std::fs::write(dir.path().join(&file), expr).unwrap();
            let mut command = version.command("nix-instantiate");
            command
                .arg("--option")
                .arg("experimental-features")
                .arg("nix-command dynamic-derivations ca-derivations")
                .arg(seen.join(&file));
            let drv = support::run(&mut command, &file).trim().to_owned();
            let closure = Closure::load(&version.load_options(), std::slice::from_ref(&drv)).unwrap();
            let hashes = hash_closure(&closure);
            let root = &hashes[closure.roots()[0]];
            let classic = root.classic.as_ref().unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(classic.outputs, *root.recorded(), "{file}");
            let recorded_ia = root.recorded().iter().all(|(_, p)| p.is_some());
            assert_eq!(recorded_ia, n == 0, "{file}: 2.34 writes a path only for a fixed producer");
            checked += 1;
        }
    }
    assert_eq!(checked, 4);
}
