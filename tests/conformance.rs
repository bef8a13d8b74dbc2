//! Conformance on the upstream vectors in `../shared/nix-vectors` (Nix's own
//! libstore test data, snix's, and the PR #16285 golden vector).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use drvmeta::closure::{Closure, LoadOptions, parse_drv, read_one};
use drvmeta::derivation::{Derivation, StoreDir};
use serde_json::Value;

fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().ends_with(suffix) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn is_bad(path: &Path) -> bool {
    path.file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("bad-")
}

/// The derivation name of a vector: from its JSON twin when there is one,
/// else from a store-path-like file name, else the file stem.
fn vector_name(path: &Path) -> String {
    let json = path.with_extension("json");
    if let Ok(text) = std::fs::read_to_string(&json)
        && let Ok(value) = serde_json::from_str::<Value>(&text)
        && let Some(name) = value.get("name").and_then(Value::as_str)
    {
        return name.to_owned();
    }
    let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
    match stem.split_once('-') {
        Some((hash, name)) if hash.len() == 32 => name.to_owned(),
        _ => stem,
    }
}

fn parse(path: &Path) -> Derivation {
    let bytes = std::fs::read(path).unwrap();
    parse_drv(&bytes, &vector_name(path), &StoreDir::default(), path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// `hello.drv` and `firefox.drv` are real nixpkgs ATerms whose store hashes
/// were replaced by `aaaa…`: their input derivations are no longer in
/// sorted order, so no printer (Nix's included) reproduces their bytes. The
/// parser accepts them as Nix does (sorting) and says they are not
/// canonical.
const PLACEHOLDER_HASHES: &[&str] = &["hello.drv", "firefox.drv"];

#[test]
fn every_good_drv_round_trips_byte_for_byte() {
    let vectors = support::nix_vectors();
    let mut exact = 0;
    for path in files(&vectors, ".drv") {
        let masked = path.to_string_lossy().ends_with("-modulo.drv");
        if is_bad(&path) || path.ends_with("snix/duplicate.drv") || masked {
            continue; // rejected, duplicate-key, or a masked hash input
        }
        let bytes = std::fs::read(&path).unwrap();
        let drv = parse(&path);
        let printed = drv.to_aterm_bytes();
        let file_name = path.file_name().unwrap().to_string_lossy();
        if PLACEHOLDER_HASHES.contains(&file_name.as_ref()) && path.parent() == Some(&vectors) {
            // Same bytes in canonical order, and printing is stable.
            let mut sorted_file = bytes.clone();
            let mut sorted_printed = printed.clone();
            sorted_file.sort_unstable();
            sorted_printed.sort_unstable();
            assert_eq!(sorted_file, sorted_printed, "{}", path.display());
            assert!(!drv.is_canonical(), "{}", path.display());
            let reparsed =
                Derivation::parse(printed.clone(), drv.name(), &StoreDir::default()).unwrap();
            assert!(reparsed.is_canonical(), "{}", path.display());
            assert_eq!(reparsed.to_aterm_bytes(), printed, "{}", path.display());
            continue;
        }
        assert!(drv.is_canonical(), "{}", path.display());
        assert!(
            printed == bytes,
            "{}: printing the parsed derivation does not give the file's bytes",
            path.display()
        );
        exact += 1;
    }
    assert_eq!(exact, 27, "vectors round-tripped byte for byte");
}

#[test]
fn duplicate_env_key_is_read_like_nix_2_8() {
    // The vectors' README says Nix keeps the first of duplicate env keys;
    // Nix 2.8 keeps the last. Ask it: importing the derivation makes Nix
    // check its output path against the one it computes from its own parse.
    let vectors = support::nix_vectors();
    let path = vectors.join("snix/duplicate.drv");
    let bar = "0hm2f1psjpcwg8fijsmr4wwxrx59s092-bar.drv";
    let bar_bytes = std::fs::read(vectors.join("snix/ok").join(bar)).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let bar_path = format!("/nix/store/{bar}");
    let dup_path = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-foo.drv";
    let (ok, stderr) = support::nix_import(&support::export_stream(&[
        (&bar_path, &bar_bytes, &[]),
        (dup_path, &bytes, &[&bar_path]),
    ]));
    assert!(
        !ok,
        "Nix accepted the duplicate-key derivation's recorded output"
    );
    let nix_says = stderr
        .split("should be '")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .unwrap_or_else(|| panic!("unexpected Nix error: {stderr}"));

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(bar), &bar_bytes).unwrap();
    let file = dir.path().join("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-foo.drv");
    std::fs::write(&file, &bytes).unwrap();
    let options = LoadOptions {
        drv_dirs: vec![dir.path().to_owned()],
        ..LoadOptions::default()
    };
    let closure = Closure::load(&options, &[file.to_string_lossy().into_owned()]).unwrap();
    let hashes = drvmeta::hashing::hash_closure(&closure);
    let classic = hashes[closure.roots()[0]].classic.as_ref().unwrap();
    assert_eq!(
        closure.render(classic.outputs[0].1.as_ref().unwrap()),
        nix_says
    );
    assert_eq!(
        closure.nodes()[closure.roots()[0]]
            .derivation()
            .unwrap()
            .env(b"name")
            .unwrap()
            .as_ref(),
        b"bar"
    );
}

/// `show`'s JSON for one derivation, without a `"meta": null` (which the
/// upstream vectors, written before the extension, do not have).
fn shown(drv: &Derivation) -> Value {
    let mut value: Value =
        serde_json::from_str(&drvmeta::show::derivation_json(drv).unwrap()).unwrap();
    if value["meta"].is_null() {
        value.as_object_mut().unwrap().remove("meta");
    }
    value
}

#[test]
fn show_equals_each_vector_json() {
    let vectors = support::nix_vectors();
    let mut count = 0;
    for json in files(&vectors, ".json") {
        let drv_file = json.with_extension("drv");
        if !drv_file.is_file() || json.to_string_lossy().ends_with(".drv.json") {
            continue;
        }
        let expected: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        let actual = shown(&parse(&drv_file));
        assert_eq!(actual, expected, "{}", json.display());
        count += 1;
    }
    assert_eq!(count, 17, ".drv/.json pairs compared");
}

#[test]
fn show_of_the_pr_16285_vector_has_meta_and_stripped_attrs() {
    let dir = support::nix_vectors().join("unmerged-pr-16285-derivation-meta");
    let drv = parse(&dir.join("meta-derivation.drv"));
    let expected: Value =
        serde_json::from_slice(&std::fs::read(dir.join("meta-derivation.json")).unwrap()).unwrap();
    let actual: Value =
        serde_json::from_str(&drvmeta::show::derivation_json(&drv).unwrap()).unwrap();
    assert_eq!(actual, expected);
    assert_eq!(actual["structuredAttrs"], serde_json::json!({}));
    assert_eq!(actual["meta"]["version"], "1.0");
    assert!(drvmeta::derivation::meta::inspect(&drv).opt_in);
}

#[test]
fn json_only_vectors_round_trip_through_show() {
    // Derivations given only as JSON: parse them as Nix's JSON, show them,
    // and compare as values.
    let vectors = support::nix_vectors();
    let mut count = 0;
    for json in files(&vectors, ".json") {
        if json.with_extension("drv").is_file() || json.to_string_lossy().ends_with(".drv.json") {
            continue;
        }
        let bytes = std::fs::read(&json).unwrap();
        let expected: Value = serde_json::from_slice(&bytes).unwrap();
        if expected.get("version") != Some(&Value::from(4)) || expected.get("name").is_none() {
            continue; // an output or options fragment, not a derivation
        }
        let name = json.file_name().unwrap().to_string_lossy().into_owned();
        if json.parent().unwrap().ends_with("try-resolve")
            && (name.ends_with("-after.json") || name.ends_with("-resolved.json"))
        {
            // Resolved basic derivations: inputs as a flat list of paths, a
            // different schema from derivation JSON.
            continue;
        }
        if expected["env"].get("__json").is_some() && expected.get("structuredAttrs").is_some() {
            // Both an env `__json` and structured attributes: one ATerm
            // environment cannot hold the two, so no `.drv` is shown as this.
            continue;
        }
        // nix-derivation (the dev-dependency oracle) reads Nix's JSON; the
        // core reads the ATerm it prints.
        let oracle = nix_derivation::Derivation::from_json_bytes(&bytes)
            .unwrap_or_else(|error| panic!("{}: {error}", json.display()));
        let drv = Derivation::parse(oracle.to_aterm_bytes(), oracle.name(), &StoreDir::default())
            .unwrap_or_else(|error| panic!("{}: {error}", json.display()));
        assert_eq!(shown(&drv), expected, "{}", json.display());
        count += 1;
    }
    assert!(count >= 10, "only {count} JSON-only vectors compared");
}

#[test]
fn bad_vectors_are_rejected_with_file_and_offset() {
    let vectors = support::nix_vectors();
    let bad: Vec<PathBuf> = files(&vectors, ".drv")
        .into_iter()
        .filter(|p| is_bad(p))
        .collect();
    assert_eq!(bad.len(), 3, "{bad:?}");
    let dir = tempfile::tempdir().unwrap();
    for path in bad {
        // As a store-path-named file, through the command line.
        let name = format!(
            "c015dhfh5l0lp6wxyvdn7bmwhbbr6hr9-{}",
            path.file_name().unwrap().to_string_lossy()
        );
        let copy = dir.path().join(&name);
        std::fs::copy(&path, &copy).unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_drvmeta"))
            .arg("hash")
            .arg(&copy)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{name}: {stderr}");
        assert!(
            stderr.contains(&name),
            "{name}: the error names the file: {stderr}"
        );
        assert!(
            stderr.contains("at byte "),
            "{name}: the error gives the offset: {stderr}"
        );
        assert!(output.stdout.is_empty(), "{name}: no partial output");
    }
}

#[test]
fn snix_derivations_parse_and_their_paths_match_their_names() {
    let dir = support::nix_vectors().join("snix/ok");
    let options = LoadOptions::default();
    let mut count = 0;
    for path in files(&dir, ".drv") {
        let node = read_one(&options, path.to_str().unwrap())
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        assert!(
            node.path_matches,
            "{}: its bytes do not hash to its name",
            path.display()
        );
        assert_eq!(
            node.derivation().unwrap().to_aterm_bytes(),
            std::fs::read(&path).unwrap()
        );
        count += 1;
    }
    assert_eq!(count, 10);
    // The non-UTF-8 ones keep their bytes.
    let latin1 = read_one(
        &options,
        dir.join("x6p0hg79i3wg0kkv7699935f7rrj9jf3-latin1.drv")
            .to_str()
            .unwrap(),
    )
    .unwrap();
    assert!(
        latin1
            .derivation()
            .unwrap()
            .environment()
            .any(|(_, v)| std::str::from_utf8(&v).is_err())
    );
}

#[test]
fn snix_hash_modulo_oracles() {
    // From snix's tests (PROVENANCE.txt): the hash modulo of the two `bar`
    // derivations, whose only input is a fixed-output `foo`.
    let dir = support::nix_vectors().join("snix/ok");
    let options = LoadOptions {
        drv_dirs: vec![dir.clone()],
        ..LoadOptions::default()
    };
    for (file, expected) in [
        (
            "0hm2f1psjpcwg8fijsmr4wwxrx59s092-bar.drv",
            "724f3e3634fce4cbbbd3483287b8798588e80280660b9a63fd13a1bc90485b33",
        ),
        (
            "ss2p4wmxijn652haqyd7dckxwl4c7hxx-bar.drv",
            "c79aebd0ce3269393d4a1fde2cbd1d975d879b40f0bf40a48f550edc107fd5df",
        ),
    ] {
        let closure =
            Closure::load(&options, &[dir.join(file).to_string_lossy().into_owned()]).unwrap();
        let hashes = drvmeta::hashing::hash_closure(&closure);
        let root = closure.roots()[0];
        let classic = hashes[root].classic.as_ref().unwrap();
        assert_eq!(hex(classic.input_hash.value().unwrap()), expected, "{file}");
    }
}

#[test]
fn hash_modulo_vectors_match_the_masked_aterm() {
    // Nix's hash-modulo vectors: each `X-modulo.drv` is the masked ATerm Nix
    // hashes for X's output paths. Put the derivations in a drv-dir under
    // their own drv paths so that inputs resolve, then compare.
    let src = support::nix_vectors().join("hash-modulo");
    let dir = tempfile::tempdir().unwrap();
    let mut stored = std::collections::BTreeMap::new();
    for path in files(&src, ".drv") {
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        if stem.ends_with("-modulo") {
            continue;
        }
        let drv = parse(&path);
        let drv_path = drv.drv_path().unwrap();
        std::fs::copy(&path, dir.path().join(drv_path.to_basename())).unwrap();
        stored.insert(stem, drv_path.to_absolute_path_in(&StoreDir::default()));
    }
    let options = LoadOptions {
        drv_dirs: vec![dir.path().to_owned()],
        ..LoadOptions::default()
    };
    let mut compared = 0;
    for (stem, drv_path) in &stored {
        let modulo = src.join(format!("{stem}-modulo.drv"));
        if !modulo.is_file() {
            continue;
        }
        use sha2::Digest as _;
        let expected = hex(&sha2::Sha256::digest(std::fs::read(&modulo).unwrap()));
        let closure = Closure::load(&options, std::slice::from_ref(drv_path)).unwrap();
        let hashes = drvmeta::hashing::hash_closure(&closure);
        let root = &hashes[closure.roots()[0]];
        let classic = root.classic.as_ref().unwrap();
        assert_eq!(hex(&classic.output_hash.unwrap()), expected, "{stem}");
        // Byte for byte, not only its hash: the core writes the very ATerm
        // Nix's vector holds.
        let node = &closure.nodes()[closure.roots()[0]];
        let input_hash = |path: &drvmeta::derivation::StorePath| {
            let position = closure.position(path)?;
            hashes[position].classic.as_ref().ok().map(|h| h.input_hash)
        };
        let masked =
            drvmeta::derivation::hash::masked_aterm(&node.derivation().unwrap(), input_hash)
                .unwrap()
                .unwrap();
        assert!(
            masked == std::fs::read(&modulo).unwrap(),
            "{stem}: the masked ATerm differs from {}",
            modulo.display()
        );
        // Nothing is opted in: modulo meta is the classic hash.
        assert_eq!(root.modulo_meta.as_ref().unwrap(), classic, "{stem}");
        compared += 1;
    }
    assert_eq!(compared, 4);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
