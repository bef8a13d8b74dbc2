//! The `.drv` files the unit tests compare renderings and hash forms on:
//! the example closures and `../shared/nix-vectors`.

use std::path::{Path, PathBuf};

use super::{Derivation, StoreDir};

/// The `.drv` files in `dir`, sorted.
pub(crate) fn drv_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "drv"))
        .collect();
    files.sort();
    files
}

/// Every `.drv` of the example closures and the conformance vectors that
/// parses (snix's valid vectors: unicode, latin1, structured attributes,
/// fixed and floating outputs; Nix's own: firefox, hello, dynamic inputs;
/// the PR #16285 derivation-meta ones), with its file.
pub(crate) fn corpus() -> Vec<(PathBuf, Derivation)> {
    let project = Path::new(env!("CARGO_MANIFEST_DIR"));
    let vectors = project.join("../shared/nix-vectors");
    assert!(
        vectors.is_dir(),
        "the conformance vectors are missing at {}",
        vectors.display()
    );
    [
        project.join("fixtures/kernel/drvs"),
        project.join("fixtures/kernel/drvs-nometa"),
        project.join("fixtures/dynamic"),
        vectors.join("snix/ok"),
        vectors.clone(),
        vectors.join("unmerged-pr-16285-derivation-meta"),
        vectors.join("ca"),
        vectors.join("ia"),
        vectors.join("invariants"),
        vectors.join("hash-modulo"),
        vectors.join("try-resolve"),
    ]
    .iter()
    .flat_map(|dir| drv_files(dir))
    .filter_map(|file| {
        let bytes = std::fs::read(&file).unwrap();
        let drv = Derivation::parse(bytes, "x", &StoreDir::default()).ok()?;
        Some((file, drv))
    })
    .collect()
}
