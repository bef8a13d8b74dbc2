//! `drvmeta rewrite` / `drvmeta strip` on the command line: output shapes,
//! the output directory's rules, and errors.

mod support;

use std::path::Path;
use std::process::{Command, Output};

fn drvmeta(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_drvmeta"))
        .args(args)
        .current_dir(support::project_dir())
        .output()
        .unwrap()
}

fn root() -> String {
    std::fs::read_to_string(support::project_dir().join("fixtures/kernel/root"))
        .unwrap()
        .trim()
        .to_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `drvmeta strip --out OUT` of the bundled example.
fn strip_example(out: &Path) -> Output {
    drvmeta(&[
        "strip",
        "--out",
        out.to_str().unwrap(),
        "--drv-dir",
        "fixtures/kernel/drvs",
        &root(),
    ])
}

#[test]
fn strip_of_the_example_is_the_meta_free_fixture() {
    let out = tempfile::tempdir().unwrap();
    let output = strip_example(out.path());
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    insta::assert_snapshot!(
        "strip_kernel_summary",
        String::from_utf8_lossy(&output.stdout)
    );
    let expected = support::project_dir().join("fixtures/kernel/drvs-nometa");
    assert_eq!(listing(out.path()), listing(&expected));
    for name in listing(&expected) {
        assert_eq!(
            std::fs::read(out.path().join(&name)).unwrap(),
            std::fs::read(expected.join(&name)).unwrap(),
            "{name}"
        );
    }
    // Running again into the same directory is fine: same contents.
    let again = strip_example(out.path());
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
}

#[test]
fn rewrite_json_lists_every_derivation_of_the_closure() {
    let out = tempfile::tempdir().unwrap();
    let output = drvmeta(&[
        "rewrite",
        "--json",
        "--out",
        out.path().to_str().unwrap(),
        "--drv-dir",
        "fixtures/kernel/drvs",
        &root(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let derivations = value["derivations"].as_object().unwrap();
    assert_eq!(
        derivations.len(),
        listing(&support::project_dir().join("fixtures/kernel/drvs")).len()
    );
    let kernel = &derivations[&root()];
    let new_path = kernel["drvPath"].as_str().unwrap();
    assert_ne!(new_path, root());
    assert!(
        out.path()
            .join(new_path.rsplit('/').next().unwrap())
            .is_file()
    );
    // The rewritten kernel's output is its meta-free twin's.
    let nometa =
        std::fs::read_to_string(support::project_dir().join("fixtures/kernel/root-nometa"))
            .unwrap();
    let hash = drvmeta(&[
        "hash",
        "--json",
        "--drv-dir",
        "fixtures/kernel/drvs-nometa",
        nometa.trim(),
    ]);
    let hash: serde_json::Value = serde_json::from_slice(&hash.stdout).unwrap();
    assert_eq!(
        kernel["outputs"],
        hash["derivations"][nometa.trim()]["classic"]["outputs"]
    );
    // `hash` of the rewritten closure: consistent, recorded modulo meta.
    let check = drvmeta(&[
        "hash",
        "--json",
        "--drv-dir",
        out.path().to_str().unwrap(),
        new_path,
    ]);
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    let check: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(
        check["derivations"][new_path]["recordedMatches"],
        "modulo-meta"
    );
}

#[test]
fn a_different_file_in_the_output_directory_is_never_replaced() {
    let out = tempfile::tempdir().unwrap();
    let first = strip_example(out.path());
    assert_eq!(first.status.code(), Some(0));
    let names = listing(out.path());
    let victim = out.path().join(&names[0]);
    std::fs::write(&victim, b"something else").unwrap();
    let other = out.path().join(&names[1]);
    std::fs::remove_file(&other).unwrap();
    let output = strip_example(out.path());
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains(&names[0]), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("nothing was written"),
        "{}",
        stderr(&output)
    );
    assert_eq!(std::fs::read(&victim).unwrap(), b"something else");
    assert!(!other.exists(), "a file was written despite the conflict");
}

#[test]
fn an_unwritable_output_directory_is_a_clear_error() {
    let output = strip_example(Path::new("/proc/drvmeta-out"));
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("/proc/drvmeta-out"),
        "{}",
        stderr(&output)
    );
    assert!(
        stderr(&output).contains("output directory"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn strip_needs_out_or_import() {
    let output = drvmeta(&["strip", "--drv-dir", "fixtures/kernel/drvs", &root()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--out"), "{}", stderr(&output));
}

#[test]
fn import_without_nix_says_so() {
    let output = Command::new(env!("CARGO_BIN_EXE_drvmeta"))
        .args([
            "strip",
            "--import",
            "--drv-dir",
            "fixtures/kernel/drvs",
            &root(),
        ])
        .current_dir(support::project_dir())
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("nix-store was not found"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn rewrite_import_of_opted_in_derivations_points_to_strip() {
    let output = drvmeta(&[
        "rewrite",
        "--import",
        "--drv-dir",
        "fixtures/kernel/drvs",
        &root(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("drvmeta strip --import"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_missing_input_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = "/nix/store/11111111111111111111111111111111-gone.drv";
    let bytes = format!(
        "Derive([(\"out\",\"\",\"\",\"\")],[(\"{missing}\",[\"out\"])],[],\"x86_64-linux\",\"/bin/sh\",[],[(\"out\",\"\")])"
    );
    let file = dir
        .path()
        .join("00000000000000000000000000000000-needs-gone.drv");
    std::fs::write(&file, bytes).unwrap();
    let out = tempfile::tempdir().unwrap();
    let output = drvmeta(&[
        "strip",
        "--out",
        out.path().to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.contains(missing) && err.contains("needed by"), "{err}");
    assert!(
        listing(out.path()).is_empty(),
        "nothing is written for an incomplete closure"
    );
}

#[test]
fn diff_of_the_example_and_its_meta_free_twin_is_meta_only() {
    let nometa =
        std::fs::read_to_string(support::project_dir().join("fixtures/kernel/root-nometa"))
            .unwrap();
    let args = [
        "diff",
        "--drv-dir",
        "fixtures/kernel/drvs",
        "--drv-dir",
        "fixtures/kernel/drvs-nometa",
        &root(),
        nometa.trim(),
    ];
    let output = drvmeta(&args);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    insta::assert_snapshot!(
        "diff_kernel_meta_only",
        String::from_utf8_lossy(&output.stdout)
    );
    let mut json_args = args.to_vec();
    json_args.insert(1, "--json");
    let json: serde_json::Value = serde_json::from_slice(&drvmeta(&json_args).stdout).unwrap();
    assert_eq!(json["verdict"], "meta-only");
    assert_eq!(json["old"], root());
    assert!(
        json["changes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["kind"] == "meta")
    );
    assert!(json["outputs"].as_object().unwrap().is_empty());
}

#[test]
fn diff_exit_code_and_usage() {
    let nometa =
        std::fs::read_to_string(support::project_dir().join("fixtures/kernel/root-nometa"))
            .unwrap();
    let dir = support::project_dir().join("fixtures/kernel/drvs-nometa");
    let builder = listing(&dir)
        .into_iter()
        .find(|n| n.contains("kernel-builder"))
        .unwrap();
    let builder = format!("/nix/store/{builder}");
    // The kernel against the kernel-builder tool: unrelated, rebuild.
    let args = [
        "diff",
        "--exit-code",
        "--drv-dir",
        "fixtures/kernel/drvs-nometa",
        nometa.trim(),
        &builder,
    ];
    let output = drvmeta(&args);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).starts_with(
        "with drvmeta realise or a derivation-meta Nix: rebuild: output(s) out change"
    ));
    let without = drvmeta(
        &args
            .iter()
            .filter(|a| **a != "--exit-code")
            .copied()
            .collect::<Vec<_>>(),
    );
    assert_eq!(without.status.code(), Some(0));
    let one = drvmeta(&[
        "diff",
        "--drv-dir",
        "fixtures/kernel/drvs-nometa",
        nometa.trim(),
    ]);
    assert_eq!(one.status.code(), Some(2));
    assert!(
        stderr(&one).contains("2 values required for '<OLD> <NEW>'"),
        "{}",
        stderr(&one)
    );
}

#[test]
fn a_full_disk_or_a_dangling_symlink_under_out_leaves_nothing_behind() {
    // A full disk: a 8 KiB tmpfs holds two of the five files (root mounts
    // it; CI runs as root, and without the mount this test fails).
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("small");
    std::fs::create_dir(&mount).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8k", "tmpfs"])
        .arg(&mount)
        .status()
        .unwrap();
    assert!(mounted.success(), "mounting a small tmpfs needs root");
    let out = mount.join("out");
    let full = strip_example(&out);
    let listed = listing(&out);
    let _ = Command::new("umount").arg(&mount).status();
    assert_eq!(full.status.code(), Some(1), "{}", stderr(&full));
    assert!(stderr(&full).contains("No space left"), "{}", stderr(&full));
    assert!(listed.is_empty(), "a full disk left {listed:?}");

    // A dangling symlink where one of the files goes.
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let name = "dnqq6acv3bgwmxl8prj5sj6g9sl2bqzp-kernel-builder-0.17.0.drv";
    std::os::unix::fs::symlink("/nonexistent/target", out.join(name)).unwrap();
    let dangling = strip_example(&out);
    assert_eq!(dangling.status.code(), Some(1), "{}", stderr(&dangling));
    assert!(stderr(&dangling).contains(name), "{}", stderr(&dangling));
    assert_eq!(listing(&out), [name], "only the symlink that was there");
}

/// A library, a tool and an app using both; `__meta` carries the commit,
/// `libVersion` the library's version.
fn world_expr(nonce: &str) -> String {
    format!(
        r#"{{ commit, libVersion ? "1.0" }}:
let
  mk = name: deps: derivation {{
    inherit name deps;
    system = "x86_64-linux";
    builder = "/bin/bash";
    args = [ "-euc" ''
      . ./.attrs.sh
      echo "${{name}} ${{toString deps}}" > ''${{outputs[out]}}
    '' ];
    __structuredAttrs = true;
    __meta.provenance.kernel = {{ inherit commit; dirty = false; }};
    requiredSystemFeatures = [ "derivation-meta" ];
  }};
  lib = mk "world-lib-{nonce}-${{libVersion}}" [ ];
  tool = derivation {{
    name = "world-tool-{nonce}";
    system = "x86_64-linux";
    builder = "/bin/sh";
    args = [ "-c" "echo tool > $out" ];
  }};
in mk "world-app-{nonce}" [ lib tool ]
"#
    )
}

/// The derivations `nix-store --realise --dry-run` says it would build.
fn nix_would_build(drv: &str) -> std::collections::BTreeSet<String> {
    let output = support::nix("nix-store")
        .args(["--realise", "--dry-run", drv])
        .args(support::META_BUILD_OPTIONS)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let log = stderr(&output);
    let mut built = std::collections::BTreeSet::new();
    let mut in_list = false;
    for line in log.lines() {
        if line.contains("will be built:") {
            in_list = true;
        } else if let Some(path) = line.strip_prefix("  ").filter(|_| in_list) {
            built.insert(path.trim().to_owned());
        } else {
            in_list = false;
        }
    }
    built
}

/// diff speaks of both worlds: a meta-only change rebuilds nothing with
/// drvmeta realise, but stock Nix rebuilds what `nix-store --realise
/// --dry-run` lists — the same set; a version bump is paired with its
/// predecessor; --exit-code --stock-nix answers for stock Nix.
#[test]
fn diff_verdicts_for_stock_nix_agree_with_what_nix_would_build() {
    let dir = tempfile::tempdir().unwrap();
    let nonce = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let file = dir.path().join("world.nix");
    std::fs::write(&file, world_expr(&nonce)).unwrap();
    let instantiate = |commit: &str, version: &str| {
        support::run(
            support::nix("nix-instantiate").arg(&file).args([
                "--argstr",
                "commit",
                commit,
                "--argstr",
                "libVersion",
                version,
            ]),
            "instantiate",
        )
        .trim()
        .to_owned()
    };
    let old = instantiate(&"a".repeat(40), "1.0");
    let meta_only = instantiate(&"b".repeat(40), "1.0");
    let bumped = instantiate(&"a".repeat(40), "1.1");
    support::run(
        support::nix("nix-store")
            .args(["--realise", &old])
            .args(support::META_BUILD_OPTIONS),
        "build the old closure",
    );

    for new in [&meta_only, &bumped] {
        let output = drvmeta(&["diff", "--json", &old, new]);
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let ours: std::collections::BTreeSet<String> = report["stockNix"]["rebuilds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap().to_owned())
            .collect();
        let nix = nix_would_build(new);
        assert_eq!(ours, nix, "{report}");
        assert_eq!(ours.len(), 2, "the library and the app, not the tool");
        assert_eq!(report["stockNix"]["verdict"], "rebuild");
    }

    // The meta-only change: nothing rebuilds with drvmeta realise; the text
    // names both worlds; exit codes per world.
    let text = drvmeta(&["diff", &old, &meta_only]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.starts_with("with drvmeta realise or a derivation-meta Nix: meta-only"),
        "{text}"
    );
    assert!(
        text.contains("with stock Nix (nix-store --realise NEW): rebuild: 2 derivation(s) build"),
        "{text}"
    );
    assert_eq!(
        drvmeta(&["diff", "--exit-code", &old, &meta_only])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        drvmeta(&["diff", "--exit-code", "--stock-nix", &old, &meta_only])
            .status
            .code(),
        Some(3)
    );
    assert_eq!(
        drvmeta(&["diff", "--stock-nix", &old, &meta_only])
            .status
            .code(),
        Some(2)
    );

    // The version bump: the library pair is compared, not removed + added.
    let output = drvmeta(&["diff", "--json", &old, &bumped]);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["verdict"], "rebuild");
    let changes = report["changes"].as_array().unwrap();
    assert!(
        changes.iter().all(|c| c["kind"] != "inputDrvs"),
        "a version bump is a pair: {report}"
    );
    assert!(
        changes
            .iter()
            .any(|c| c["drv"]["name"].as_str().unwrap().ends_with("-1.1")
                && c["kind"] == "structuredAttrs"),
        "{report}"
    );
}
