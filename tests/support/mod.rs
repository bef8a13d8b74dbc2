//! Shared test support: a seeded generator of network-free Nix expressions
//! (the twin method of DESIGN.md §6) and helpers to run real Nix.
#![allow(dead_code)]

pub mod generator;

use std::path::{Path, PathBuf};
use std::process::Command;

/// Experimental features every Nix call of the tests needs.
pub const NIX_CONFIG: &str =
    "experimental-features = nix-command flakes ca-derivations impure-derivations";

/// A `Command` for a Nix tool with the test configuration. Panics with a
/// clear message when Nix is not installed: these tests never skip.
pub fn nix(tool: &str) -> Command {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()));
    assert!(
        found,
        "{tool} is not on PATH: the differential tests need real Nix \
         (apt-get install -y nix-bin; .ci/run installs it)"
    );
    let mut command = Command::new(tool);
    command.env("NIX_CONFIG", NIX_CONFIG);
    command
}

/// Run a command, panicking with its stderr on failure; returns stdout.
pub fn run(command: &mut Command, context: &str) -> String {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("{context}: cannot run {command:?}: {error}"));
    assert!(
        output.status.success(),
        "{context}: {command:?} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("Nix prints UTF-8 paths")
}

/// Instantiate `file` with `--arg withMeta <with_meta>`; returns the drv
/// paths printed, one per element of the list the expression returns.
pub fn instantiate(file: &Path, with_meta: bool, context: &str) -> Vec<String> {
    let stdout = run(
        nix("nix-instantiate")
            .arg(file)
            .arg("--arg")
            .arg("withMeta")
            .arg(if with_meta { "true" } else { "false" }),
        context,
    );
    stdout.lines().map(str::to_owned).collect()
}

/// The project's root directory.
pub fn project_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shared conformance vectors (`../shared/nix-vectors`, or
/// `DRVMETA_NIX_VECTORS`). Panics when they are missing.
pub fn nix_vectors() -> PathBuf {
    let dir = std::env::var_os("DRVMETA_NIX_VECTORS").map_or_else(
        || project_dir().join("../shared/nix-vectors"),
        PathBuf::from,
    );
    assert!(
        dir.join("README.md").is_file(),
        "the conformance vectors are missing at {} (set DRVMETA_NIX_VECTORS)",
        dir.display()
    );
    dir
}

/// Number of random seeds a differential test runs (`DRVMETA_DIFF_SEEDS`).
pub fn seed_count(default: u64) -> u64 {
    std::env::var("DRVMETA_DIFF_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}
