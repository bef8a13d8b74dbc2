//! Post-processing against real Nix with the twin method (DESIGN.md §2.3):
//! outputs(rewrite(A)) = outputs(B); strip(A) = strip(rewrite(A)) = B byte
//! for byte; rewrite(B) = B; rewrite is idempotent.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use drvmeta::closure::{Closure, LoadOptions};
use drvmeta::rewrite::{Mode, Rewritten, rewrite_closure};
use support::NixVersion;
use support::generator::{Options, generate};

/// Every file of a closure: base name → bytes.
type Files = BTreeMap<String, Vec<u8>>;

fn load(roots: &[String], drv_dirs: &[&Path]) -> Closure {
    load_from(NixVersion::Old, roots, drv_dirs)
}

/// Load from `drv_dirs`, then the store of `version`.
fn load_from(version: NixVersion, roots: &[String], drv_dirs: &[&Path]) -> Closure {
    let mut options = LoadOptions {
        drv_dirs: drv_dirs.iter().map(|d| d.to_path_buf()).collect(),
        ..LoadOptions::default()
    };
    options.drv_dirs.extend(version.load_options().drv_dirs);
    Closure::load(&options, roots).unwrap_or_else(|error| panic!("cannot load: {error}"))
}

fn files_of(results: &[Rewritten]) -> Files {
    results
        .iter()
        .map(|r| (r.path.to_basename(), r.bytes.clone()))
        .collect()
}

/// The closure as Nix wrote it, from the store.
fn store_files(closure: &Closure) -> Files {
    closure
        .nodes()
        .iter()
        .map(|node| (node.path.to_basename(), std::fs::read(&node.file).unwrap()))
        .collect()
}

fn write_dir(files: &Files) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    drvmeta::out_dir::write_files(
        dir.path(),
        files.iter().map(|(n, b)| (n.clone(), b.as_slice())),
    )
    .unwrap();
    dir
}

fn compare(label: &str, actual: &Files, expected: &Files, failures: &mut Vec<String>) {
    if actual.keys().ne(expected.keys()) {
        let missing: Vec<_> = expected
            .keys()
            .filter(|k| !actual.contains_key(*k))
            .collect();
        let extra: Vec<_> = actual
            .keys()
            .filter(|k| !expected.contains_key(*k))
            .collect();
        failures.push(format!(
            "{label}: file names differ; missing {missing:?}, extra {extra:?}"
        ));
        return;
    }
    for (name, bytes) in actual {
        if bytes != &expected[name] {
            failures.push(format!(
                "{label}: {name} differs:\n  got      {}\n  expected {}",
                String::from_utf8_lossy(bytes),
                String::from_utf8_lossy(&expected[name])
            ));
        }
    }
}

fn root_results(closure: &Closure, results: &[Rewritten]) -> Vec<String> {
    closure
        .roots()
        .iter()
        .map(|&r| closure.render(&results[r].path))
        .collect()
}

fn run_seed(version: NixVersion, seed: u64, options: &Options) -> usize {
    let generated = generate(seed, options);
    let (a_roots, b_roots) = support::instantiate_twins_with(version, &generated);
    let load = |roots: &[String], dirs: &[&Path]| load_from(version, roots, dirs);
    let a = load(&a_roots, &[]);
    let b = load(&b_roots, &[]);
    let b_files = store_files(&b);
    let mut failures = Vec::new();

    // strip(A) == B
    let stripped = rewrite_closure(&a, Mode::Strip, true).unwrap();
    compare("strip(A)", &files_of(&stripped), &b_files, &mut failures);

    // outputs(rewrite(A)) == outputs(B), element by element.
    let rewritten = rewrite_closure(&a, Mode::Rewrite, true).unwrap();
    let b_hashes = drvmeta::hashing::hash_closure(&b);
    for ((spec, &a_root), &b_root) in generated.specs.iter().zip(a.roots()).zip(b.roots()) {
        let expected = b_hashes[b_root].recorded();
        if &rewritten[a_root].outputs != expected {
            failures.push(format!(
                "rewrite(A) {} ({}): outputs {:?} != B's {:?}",
                a.render(&rewritten[a_root].path),
                spec.name,
                rewritten[a_root].outputs,
                expected
            ));
        }
    }

    // strip(rewrite(A)) == B, from the rewritten files alone.
    let a_star_files = files_of(&rewritten);
    let a_star_dir = write_dir(&a_star_files);
    let a_star = load(&root_results(&a, &rewritten), &[a_star_dir.path()]);
    compare(
        "strip(rewrite(A))",
        &files_of(&rewrite_closure(&a_star, Mode::Strip, true).unwrap()),
        &b_files,
        &mut failures,
    );
    // rewrite(rewrite(A)) == rewrite(A)
    compare(
        "rewrite(rewrite(A))",
        &files_of(&rewrite_closure(&a_star, Mode::Rewrite, true).unwrap()),
        &a_star_files,
        &mut failures,
    );
    // Every rewritten derivation is consistent: its bytes hash to its name
    // and its recorded outputs are the modulo-meta ones.
    let report = drvmeta::report::build(
        &a_star,
        &drvmeta::hashing::hash_closure(&a_star),
        &(0..a_star.nodes().len()).collect::<Vec<_>>(),
    );
    for (path, drv) in &report.derivations {
        if drv.is_problem()
            || !matches!(
                drv.recorded_matches,
                drvmeta::hashing::RecordedMatches::ModuloMeta
                    | drvmeta::hashing::RecordedMatches::Both
            )
        {
            failures.push(format!(
                "rewrite(A) {path}: {:?} {:?}",
                drv.recorded_matches, drv.errors
            ));
        }
    }

    // rewrite(B) == B and strip(B) == B
    compare(
        "rewrite(B)",
        &files_of(&rewrite_closure(&b, Mode::Rewrite, true).unwrap()),
        &b_files,
        &mut failures,
    );
    compare(
        "strip(B)",
        &files_of(&rewrite_closure(&b, Mode::Strip, true).unwrap()),
        &b_files,
        &mut failures,
    );

    assert!(
        failures.is_empty(),
        "{}, seed {seed}: {} failures:\n{}\n--- expression (seed {seed}) ---\n{}",
        version.label(),
        failures.len(),
        failures.join("\n"),
        generated.expr
    );
    a.nodes().len()
}

#[test]
fn rewrite_and_strip_agree_with_both_nix_versions() {
    for version in NixVersion::BOTH {
        let mut checked = 0;
        for seed in 0..support::seed_count(8) {
            checked += run_seed(version, seed, &Options::default());
        }
        eprintln!("{}: post-processed {checked} derivations", version.label());
    }
}

#[test]
fn rewrite_and_strip_dense_meta_agree_with_both_nix_versions() {
    let options = Options::dense_meta();
    for version in NixVersion::BOTH {
        for seed in 3000..3000 + support::seed_count(8).div_ceil(2) {
            run_seed(version, seed, &options);
        }
    }
}

#[test]
fn rewrite_and_strip_of_exotic_closures_agree_with_both_nix_versions() {
    // Floats as each Nix writes them, unicode, escapes and control bytes in
    // every field: strip(A) must still be B byte for byte, and strip of a
    // meta-free closure the same files.
    let options = Options {
        exotic: true,
        ..Options::default()
    };
    for version in NixVersion::BOTH {
        for seed in 4000..4000 + support::seed_count(8).div_ceil(2) {
            run_seed(version, seed, &options);
        }
    }
}

fn diff(old: &str, new: &str) -> drvmeta::diff::DiffReport {
    let closure = load(&[old.to_owned(), new.to_owned()], &[]);
    drvmeta::diff::diff(&closure).unwrap()
}

#[test]
fn diff_tells_meta_only_from_rebuild() {
    use drvmeta::diff::Verdict;
    let (mut meta_only, mut identical, mut rebuild) = (0, 0, 0);
    for seed in 100..100 + support::seed_count(8).div_ceil(2) {
        let generated = generate(seed, &Options::default());
        let (a, b) = support::instantiate_twins(&generated);
        let b_tweaked = support::instantiate_tweaked(&generated, false, "1");
        let tweaked_name = &generated.specs[generated.tweaked].name;
        let context = |what: &str, i: usize| {
            format!(
                "seed {seed}, {what}, {}:\n{}",
                generated.specs[i].name, generated.expr
            )
        };
        for i in 0..generated.specs.len() {
            // A/B twins: identical when equal, meta-only otherwise.
            let report = diff(&a[i], &b[i]);
            if a[i] == b[i] {
                assert_eq!(report.verdict, Verdict::Identical, "{}", context("A/B", i));
                identical += 1;
            } else {
                assert_eq!(report.verdict, Verdict::MetaOnly, "{}", context("A/B", i));
                assert!(
                    report.changes.iter().all(|c| c.kind == "meta"),
                    "{:?}",
                    report.changes
                );
                meta_only += 1;
            }
            // A real change: the tweaked derivation and its dependents rebuild.
            let report = diff(&b[i], &b_tweaked[i]);
            if b[i] == b_tweaked[i] {
                assert_eq!(report.verdict, Verdict::Identical, "{}", context("B/B'", i));
            } else if generated.specs[i].kind == support::generator::Kind::FixedOutput {
                assert_eq!(
                    report.verdict,
                    Verdict::SameOutputs,
                    "{}",
                    context("B/B'", i)
                );
            } else {
                assert_eq!(report.verdict, Verdict::Rebuild, "{}", context("B/B'", i));
                assert!(!report.outputs.is_empty(), "{}", context("B/B'", i));
                assert!(
                    report.changes.iter().any(|c| &c.drv.name == tweaked_name
                        && c.key.as_deref() == Some("tweak")
                        && c.old == "0"
                        && c.new == "1"),
                    "{}: {:#?}",
                    context("B/B'", i),
                    report.changes
                );
                // With meta on one side too: still a rebuild.
                assert_eq!(diff(&a[i], &b_tweaked[i]).verdict, Verdict::Rebuild);
                rebuild += 1;
            }
        }
        // Unrelated derivations rebuild.
        let last = generated.specs.len() - 1;
        assert_eq!(diff(&b[0], &b[last]).verdict, Verdict::Rebuild);
    }
    eprintln!("diff: {identical} identical, {meta_only} meta-only, {rebuild} rebuild");
    assert!(identical > 0 && meta_only > 0 && rebuild > 0);
}

/// DESIGN.md §2.3: the changes replaced in a derivation are those of its
/// whole input closure, not only of its inputs. `app` embeds the path of
/// `lib` (an input of its input `mid`) with its string context discarded,
/// so `lib` is not an input of `app`; `other` embeds an unchanged path the
/// same way. Stripping the closure with meta gives Nix's own meta-free
/// instantiation, byte for byte, with both Nix versions, by both routes
/// (a loaded closure and the walk): `app` gets `lib`'s new path, which only
/// the input-closure rule finds.
#[test]
fn strip_replaces_changes_of_the_whole_input_closure_only() {
    let nonce = format!("t{:x}", std::process::id());
    let expr = format!(
        r#"{{ withMeta ? true }}:
let
  mk = name: attrs: derivation ({{
    inherit name; system = "x86_64-linux"; builder = "/bin/sh";
    nonce = "{nonce}"; __structuredAttrs = true;
  }} // attrs);
  meta = if withMeta then {{ __meta = {{ license = "mit"; }}; requiredSystemFeatures = [ "derivation-meta" ]; }} else {{ }};
  lib = mk "lib" meta;
  lib2 = mk "lib2" {{ }};
  mid = mk "mid" {{ deps = [ lib ]; }};
  app = mk "app" {{ deps = [ mid ]; libPath = builtins.unsafeDiscardStringContext "${{lib}}"; }};
  other = mk "other" {{ deps = [ lib ]; otherPath = builtins.unsafeDiscardStringContext "${{lib2}}"; }};
in [ app other ]"#
    );
    for version in [NixVersion::Old, NixVersion::Modern] {
        // Where this Nix sees it (the modern one runs in its chroot).
        let (dir, seen) = version.tempdir();
        std::fs::write(dir.path().join("closure.nix"), &expr).unwrap();
        let file = seen.join("closure.nix");
        let a = support::instantiate_with(version, &file, true, None, "with meta");
        let b = support::instantiate_with(version, &file, false, None, "without meta");
        let stripped = rewrite_closure(&load_from(version, &a, &[]), Mode::Strip, true).unwrap();
        let mut failures = Vec::new();
        compare(
            &format!("{} strip(A)", version.label()),
            &files_of(&stripped),
            &store_files(&load_from(version, &b, &[])),
            &mut failures,
        );
        // The same on the walk (the path `drvmeta strip` takes).
        let options = {
            let mut options = LoadOptions::default();
            options.drv_dirs.extend(version.load_options().drv_dirs);
            options
        };
        let (_, walked) =
            drvmeta::rewrite::load_and_rewrite(&options, &a, Mode::Strip, true, &mut |_| {})
                .unwrap();
        compare(
            &format!("{} strip(A) on the walk", version.label()),
            &files_of(&walked),
            &files_of(&stripped),
            &mut failures,
        );
        assert!(failures.is_empty(), "{failures:#?}");
        // `app` embeds lib's meta-free path, which only the input closure
        // rule finds.
        let app = walked.iter().find(|r| r.path.name() == "app.drv").unwrap();
        let lib = walked.iter().find(|r| r.path.name() == "lib.drv").unwrap();
        let lib_out = lib.outputs[0].1.as_ref().unwrap().hash_part().to_owned();
        assert!(
            String::from_utf8_lossy(&app.bytes).contains(&lib_out),
            "{}",
            String::from_utf8_lossy(&app.bytes)
        );
    }
}
