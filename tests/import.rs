//! Importing post-processed closures into real Nix stores: the export stream
//! against `nix-store --export`, the references Nix registers, and no
//! rebuild for a meta-only change.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use drvmeta::closure::{Closure, LoadOptions};
use drvmeta::rewrite::{Mode, rewrite_closure};
use support::generator::{Options, generate};

/// A Nix tool working on the chroot store at `store`.
fn nix_in(store: &Path, tool: &str) -> Command {
    let mut command = support::nix(tool);
    command.arg("--store").arg(store);
    command
}

/// Instantiate `expr` with `withMeta` into the chroot store at `store`.
fn instantiate_in(store: &Path, expr: &str, with_meta: bool) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("expr.nix");
    std::fs::write(&file, expr).unwrap();
    let out = support::run(
        nix_in(store, "nix-instantiate").arg(&file).args([
            "--arg",
            "withMeta",
            if with_meta { "true" } else { "false" },
        ]),
        "instantiate",
    );
    out.lines()
        .map(|l| l.split('!').next().unwrap().to_owned())
        .collect()
}

fn references_in(store: &Path, path: &str) -> Vec<String> {
    let out = support::run(
        nix_in(store, "nix-store").args(["--query", "--references", path]),
        "references",
    );
    let mut refs: Vec<String> = out.lines().map(str::to_owned).collect();
    refs.sort();
    refs
}

fn drvmeta_in(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_drvmeta"))
        .args(args)
        .env(
            "NIX_CONFIG",
            format!("{}\nstore = {}", support::NIX_CONFIG, store.display()),
        )
        .output()
        .unwrap()
}

#[test]
fn export_stream_is_byte_for_byte_nix_store_export() {
    let store = tempfile::tempdir().unwrap();
    let generated = generate(77, &Options::default());
    let roots = instantiate_in(store.path(), &generated.expr, false);
    let options = LoadOptions {
        drv_dirs: vec![store.path().join("nix/store")],
        ..LoadOptions::default()
    };
    let closure = Closure::load(&options, &roots).unwrap();
    // B strips to itself: the results are exactly the files in the store.
    let results = rewrite_closure(&closure, Mode::Strip, true).unwrap();
    assert!(results.iter().all(|r| !r.changed));
    let items = drvmeta::import::export_items(&closure, &results);
    assert_eq!(items.len(), closure.nodes().len());
    // `nix-store --export` puts several paths in its own topological order,
    // so compare path by path: each one-path stream must be Nix's.
    for item in &items {
        let mut ours = Vec::new();
        drvmeta::export::write_export([item], &mut ours).unwrap();
        let output = nix_in(store.path(), "nix-store")
            .args(["--export", &item.path])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            ours == output.stdout,
            "{}: export streams differ ({} vs {} bytes)",
            item.path,
            ours.len(),
            output.stdout.len()
        );
    }
    // And the whole stream imports into a fresh store, where every path is
    // then valid with the same references.
    let fresh = tempfile::tempdir().unwrap();
    let srcs: Vec<String> = closure
        .nodes()
        .iter()
        .flat_map(|node| {
            node.derivation()
                .unwrap()
                .input_sources()
                .iter()
                .map(|p| closure.render(p))
                .collect::<Vec<_>>()
        })
        .collect();
    if !srcs.is_empty() {
        // Input sources first, exported by Nix itself.
        let exported = nix_in(store.path(), "nix-store")
            .arg("--export")
            .args(&srcs)
            .output()
            .unwrap();
        let mut import = nix_in(fresh.path(), "nix-store");
        import
            .arg("--import")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null());
        let mut child = import.spawn().unwrap();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), &exported.stdout).unwrap();
        drop(child.stdin.take());
        assert!(child.wait().unwrap().success());
    }
    let mut stream = Vec::new();
    drvmeta::export::write_export(&items, &mut stream).unwrap();
    let mut import = nix_in(fresh.path(), "nix-store");
    import
        .arg("--import")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = import.spawn().unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), &stream).unwrap();
    drop(child.stdin.take());
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for item in &items {
        assert_eq!(
            references_in(fresh.path(), &item.path),
            references_in(store.path(), &item.path),
            "{}",
            item.path
        );
    }
}

#[test]
fn strip_import_registers_what_nix_registers_for_the_twin() {
    let generated = generate(78, &Options::default());
    // Nix's own registration of the meta-free twin B.
    let nix_store = tempfile::tempdir().unwrap();
    let b_roots = instantiate_in(nix_store.path(), &generated.expr, false);
    // A elsewhere, then stripped and imported by drvmeta.
    let ours = tempfile::tempdir().unwrap();
    let a_roots = instantiate_in(ours.path(), &generated.expr, true);
    let drv_dir = ours.path().join("nix/store");
    let mut args = vec!["strip", "--import", "--drv-dir", drv_dir.to_str().unwrap()];
    args.extend(a_roots.iter().map(String::as_str));
    let output = drvmeta_in(ours.path(), &args);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // It prints the imported roots: B's.
    let printed: Vec<&str> = stdout.lines().collect();
    let mut expected: Vec<&str> = b_roots.iter().map(String::as_str).collect();
    expected.dedup();
    assert_eq!(printed, expected);

    let closure = Closure::load(
        &LoadOptions {
            drv_dirs: vec![nix_store.path().join("nix/store")],
            ..LoadOptions::default()
        },
        &b_roots,
    )
    .unwrap();
    assert!(closure.nodes().len() >= generated.specs.len());
    for node in closure.nodes() {
        let path = closure.render(&node.path);
        assert_eq!(
            references_in(ours.path(), &path),
            references_in(nix_store.path(), &path),
            "{path}"
        );
    }
    // Importing again is a no-op.
    let again = drvmeta_in(ours.path(), &args);
    assert_eq!(
        again.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

#[test]
fn realising_a_stripped_root_whose_twin_was_built_builds_nothing() {
    let kernel = support::project_dir().join("fixtures/kernel/kernel.nix");
    // A commit no other test uses, so that the with-meta closure is new.
    let nonce = format!(
        "{:040x}",
        std::process::id() as u128 * 0x9e37_79b9_7f4a_7c15
    );
    let build = support::run(
        support::nix("nix-build").arg(&kernel).args([
            "--arg",
            "withMeta",
            "false",
            "--no-out-link",
            "--option",
            "sandbox",
            "false",
        ]),
        "build the meta-free twin",
    );
    let built = build.trim().to_owned();
    let a_root = support::run(
        support::nix("nix-instantiate").arg(&kernel).args([
            "--arg",
            "withMeta",
            "true",
            "--argstr",
            "kernelCommit",
            &nonce,
        ]),
        "instantiate with meta",
    );
    let a_root = a_root.trim();
    // Realising A as it is would build (its classic outputs are new).
    let dry = support::nix("nix-store")
        .args(["--realise", "--dry-run", a_root])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&dry.stderr).contains("will be built"),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );

    let stripped = Command::new(env!("CARGO_BIN_EXE_drvmeta"))
        .args(["strip", "--import", a_root])
        .env("NIX_CONFIG", support::NIX_CONFIG)
        .output()
        .unwrap();
    assert_eq!(
        stripped.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&stripped.stderr)
    );
    let root = String::from_utf8(stripped.stdout)
        .unwrap()
        .trim()
        .to_owned();
    let realised = support::nix("nix-store")
        .args(["--realise", &root, "--option", "sandbox", "false"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&realised.stderr);
    assert!(realised.status.success(), "{log}");
    assert!(
        !log.contains("will be built") && !log.contains("building"),
        "something was built:\n{log}"
    );
    assert_eq!(String::from_utf8_lossy(&realised.stdout).trim(), built);
}
