//! drvmeta's kernel-variant check against the real `kernels` package
//! (PyPI; `Metadata.from_bytes` → `Digest.hash_variant` →
//! `Digest.validate`, what `kernels` runs after the Sigstore signature):
//! on every generated variant, drvmeta's verdict must be `kernels`'.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use sha2::Digest as _;

const INIT: &[u8] = b"def gelu(x): return x\n";
const SO: &[u8] = b"binary kernel\n";

fn b64(algorithm: &str, bytes: &[u8]) -> String {
    let engine = base64::engine::general_purpose::STANDARD;
    if algorithm == "sha512" {
        engine.encode(sha2::Sha512::digest(bytes))
    } else {
        engine.encode(sha2::Sha256::digest(bytes))
    }
}

/// A variant's metadata.json listing `files` (relative name → contents).
fn metadata(algorithm: &str, files: &BTreeMap<&str, &[u8]>) -> serde_json::Value {
    let digest: serde_json::Map<String, serde_json::Value> = files
        .iter()
        .map(|(name, bytes)| ((*name).to_owned(), b64(algorithm, bytes).into()))
        .collect();
    serde_json::json!({
        "name": "activation", "id": "activation-1.0.0", "version": 1,
        "license": "Apache-2.0", "python-depends": [], "backend": {"type": "cuda"},
        "digest": {"algorithm": algorithm, "files": digest},
    })
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn symlink(target: &str, link: &Path) {
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, link).unwrap();
}

/// One generated variant: files on disk and a metadata.json.
struct Case {
    name: &'static str,
    dir: PathBuf,
}

fn base_files() -> BTreeMap<&'static str, &'static [u8]> {
    BTreeMap::from([
        ("activation/__init__.py", INIT),
        ("activation/_activation.so", SO),
    ])
}

/// A variant whose metadata.json lists exactly its `files` (sha256).
fn listed_variant(root: &Path, name: &'static str, files: &BTreeMap<&str, &[u8]>) -> Case {
    variant(root, name, files, &metadata("sha256", files))
}

/// A variant with `files` on disk, whose metadata lists `listed`.
fn variant(
    root: &Path,
    name: &'static str,
    files: &BTreeMap<&str, &[u8]>,
    metadata_value: &serde_json::Value,
) -> Case {
    let dir = root.join(name).join("build/torch-cuda");
    for (file, bytes) in files {
        write(&dir.join(file), bytes);
    }
    write(
        &dir.join("metadata.json"),
        &serde_json::to_vec(metadata_value).unwrap(),
    );
    Case { name, dir }
}

fn cases(root: &Path) -> Vec<Case> {
    let base = base_files();
    let listed = metadata("sha256", &base);
    let mut cases = vec![variant(root, "untouched", &base, &listed)];

    let mut changed = base.clone();
    changed.insert("activation/_activation.so", b"evil kernel\n");
    cases.push(variant(root, "file-changed", &changed, &listed));

    let mut added = base.clone();
    added.insert("activation/extra.py", b"x = 1\n");
    cases.push(variant(root, "file-added", &added, &listed));

    let mut removed = base.clone();
    removed.remove("activation/__init__.py");
    cases.push(variant(root, "file-removed", &removed, &listed));

    cases.push(variant(root, "sha512", &base, &metadata("sha512", &base)));

    let mut nested = base.clone();
    nested.insert("a/b/c/deep.txt", b"deep\n");
    cases.push(listed_variant(root, "nested-dirs", &nested));

    let mut unicode = base.clone();
    unicode.insert("caf\u{e9}-nfc.txt", b"nfc\n");
    unicode.insert("cafe\u{301}-nfd.txt", b"nfd\n");
    cases.push(listed_variant(root, "unicode", &unicode));

    // A symlink to a file: hashed through the link, under the link's name.
    let mut linked = base.clone();
    linked.insert("lib/_ext.so", SO);
    linked.insert("lib/_ext.so.1", SO);
    let case = variant(root, "symlink-to-file", &base, &metadata("sha256", &linked));
    write(&case.dir.join("lib/_ext.so.1"), SO);
    symlink("_ext.so.1", &case.dir.join("lib/_ext.so"));
    cases.push(case);

    // A symlink to a directory: neither followed nor hashed.
    let case = variant(root, "symlink-to-directory", &base, &listed);
    symlink("activation", &case.dir.join("linked-dir"));
    cases.push(case);

    // A link to a file outside the variant.
    let mut outside = base.clone();
    outside.insert("outside.txt", b"outside\n");
    let case = variant(
        root,
        "symlink-outside",
        &base,
        &metadata("sha256", &outside),
    );
    write(&root.join("shared/outside.txt"), b"outside\n");
    symlink(
        root.join("shared/outside.txt").to_str().unwrap(),
        &case.dir.join("outside.txt"),
    );
    cases.push(case);

    // The Hub cache layout: every file a link into blobs/, metadata too.
    for (name, change) in [("hub-all-symlinks", false), ("hub-blob-changed", true)] {
        let dir = root.join(name).join("snapshot/build/torch-cuda");
        let blobs = root.join(name).join("blobs");
        let metadata_bytes = serde_json::to_vec(&listed).unwrap();
        let mut all = base.clone();
        all.insert("metadata.json", &metadata_bytes);
        for (i, (file, bytes)) in all.iter().enumerate() {
            let blob = blobs.join(format!("blob{i}"));
            let content: &[u8] = if change && *file == "activation/_activation.so" {
                b"changed blob\n"
            } else {
                bytes
            };
            write(&blob, content);
            symlink(blob.to_str().unwrap(), &dir.join(file));
        }
        cases.push(Case { name, dir });
    }

    let case = variant(root, "dangling-link", &base, &listed);
    symlink("/nonexistent/target", &case.dir.join("activation/gone.so"));
    cases.push(case);

    // A backslash in a file name reads as a directory separator.
    let mut backslashed = base.clone();
    backslashed.insert("dir/file.txt", b"bs\n");
    let case = variant(
        root,
        "backslash-name",
        &base,
        &metadata("sha256", &backslashed),
    );
    write(&case.dir.join("dir\\file.txt"), b"bs\n");
    cases.push(case);

    // A file named `.pyc` has no extension: it is hashed.
    let mut dot_pyc = base.clone();
    dot_pyc.insert(".pyc", b"not bytecode\n");
    cases.push(listed_variant(root, "file-named-.pyc", &dot_pyc));

    // Bytecode and __pycache__ are left out; so is a .sigstore.
    let mut cached = base.clone();
    cached.insert("activation/__pycache__/__init__.cpython-311.pyc", b"cache");
    cached.insert("activation/stray.pyc", b"cache");
    cached.insert("metadata.json.sigstore", b"{}");
    cases.push(variant(
        root,
        "copy-with-pycache-and-sigstore",
        &cached,
        &listed,
    ));

    // A nested metadata.json is an ordinary file.
    let mut nested_meta = base.clone();
    nested_meta.insert("activation/metadata.json", b"{}");
    cases.push(listed_variant(root, "nested-metadata-listed", &nested_meta));
    cases.push(variant(
        root,
        "nested-metadata-unlisted",
        &nested_meta,
        &listed,
    ));

    let mut no_digest = listed.clone();
    no_digest.as_object_mut().unwrap().remove("digest");
    cases.push(variant(root, "no-digest", &base, &no_digest));

    // What drvmeta's own example used to write: kernels cannot load it.
    let old_shape =
        serde_json::json!({"version": 1, "python-depends": [], "digest": listed["digest"]});
    cases.push(variant(root, "metadata-without-name", &base, &old_shape));
    let mut bad_backend = listed.clone();
    bad_backend["backend"]["type"] = "abacus".into();
    cases.push(variant(root, "unknown-backend", &base, &bad_backend));
    let mut bad_name = listed.clone();
    bad_name["name"] = "Activation_Kernel".into();
    cases.push(variant(root, "invalid-name", &base, &bad_name));
    let mut bad_algorithm = listed.clone();
    bad_algorithm["digest"]["algorithm"] = "md5".into();
    cases.push(variant(root, "unknown-algorithm", &base, &bad_algorithm));
    cases
}

/// `kernels`' verdict on each variant directory: ok, invalid (Metadata does
/// not load), missing (no digest) or fail (hashing or validation fails).
fn kernels_verdicts(dirs: &[&Path]) -> Vec<String> {
    let script = r#"
import sys
from kernels._rust import Metadata, Digest
for d in sys.argv[1:]:
    try:
        m = Metadata.from_bytes(open(d + "/metadata.json", "rb").read())
    except Exception:
        print("invalid"); continue
    if m.digest is None:
        print("missing"); continue
    try:
        m.digest.validate(Digest.hash_variant(m.digest.algorithm, d))
        print("ok")
    except Exception:
        print("fail")
"#;
    run_kernels(script, dirs)
}

/// Run a Python `script` that imports `kernels` over `dirs`; its stdout
/// lines, one per directory.
fn run_kernels(script: &str, dirs: &[&Path]) -> Vec<String> {
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(dirs)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "the kernels package is needed (pip install kernels): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn drvmeta_verdict(dir: &Path) -> String {
    match drvmeta::provenance::kernel_digest::check_variant(dir) {
        Ok(_) => "ok".to_owned(),
        Err(problems) if problems[0].contains("kernels cannot load it") => "invalid".to_owned(),
        Err(problems) if problems[0].contains("has no digest") => "missing".to_owned(),
        Err(_) => "fail".to_owned(),
    }
}

#[test]
fn variant_verdicts_equal_the_kernels_package() {
    let root = tempfile::tempdir().unwrap();
    let cases = cases(root.path());
    let dirs: Vec<&Path> = cases.iter().map(|c| c.dir.as_path()).collect();
    let theirs = kernels_verdicts(&dirs);
    assert_eq!(theirs.len(), cases.len());
    let mut table = Vec::new();
    for (case, theirs) in cases.iter().zip(&theirs) {
        table.push((case.name, theirs.clone(), drvmeta_verdict(&case.dir)));
    }
    let disagree: Vec<_> = table.iter().filter(|(_, k, d)| k != d).collect();
    assert!(
        disagree.is_empty(),
        "kernels vs drvmeta differ: {disagree:?}\nall: {table:?}"
    );
    // The cases reach every verdict, so the comparison can fail.
    for verdict in ["ok", "invalid", "missing", "fail"] {
        assert!(
            theirs.iter().any(|t| t == verdict),
            "no {verdict} case: {table:?}"
        );
    }
    eprintln!(
        "{} variants, drvmeta agrees with kernels on all: {table:?}",
        cases.len()
    );
}

#[test]
fn variants_are_found_where_kernels_looks() {
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("out");
    write(&out.join("build/torch-cuda/metadata.json"), b"{}");
    write(&out.join("build/torch-cpu/metadata.json"), b"{}");
    write(&out.join("torch-elsewhere/metadata.json"), b"{}");
    write(
        &out.join("build/torch-cuda/activation/metadata.json"),
        b"{}",
    );
    let found = drvmeta::provenance::kernel_digest::variants(&out);
    assert_eq!(
        found,
        [out.join("build/torch-cpu"), out.join("build/torch-cuda")]
    );
    let flat = root.path().join("flat");
    write(&flat.join("torch-cuda/metadata.json"), b"{}");
    write(&flat.join("notes/readme.txt"), b"");
    assert_eq!(
        drvmeta::provenance::kernel_digest::variants(&flat),
        [flat.join("torch-cuda")]
    );
}

#[test]
fn a_metadata_json_linked_to_dev_zero_is_an_error_not_a_hang() {
    // kernels itself would read it forever; drvmeta names it.
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("build/torch-cuda");
    std::fs::create_dir_all(&dir).unwrap();
    symlink("/dev/zero", &dir.join("metadata.json"));
    let (done, result) = std::sync::mpsc::channel();
    let variant = dir.clone();
    std::thread::spawn(move || {
        let _ = done.send(drvmeta::provenance::kernel_digest::check_variant(&variant));
    });
    let result = result
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("check_variant hung on /dev/zero");
    let problems = result.unwrap_err();
    assert!(
        problems[0].contains("metadata.json") && problems[0].contains("device"),
        "{problems:?}"
    );
}

/// `kernels`' reading of a variant's `provenance` block — `invalid` when
/// `Metadata` does not load it, else `dirty`/`clean` as `DirtyValidator`
/// decides (`provenance.dirty`), with the kernel and builder commits.
fn kernels_provenance(dirs: &[&Path]) -> Vec<String> {
    let script = r#"
import sys
from kernels._rust import Metadata
for d in sys.argv[1:]:
    try:
        m = Metadata.from_bytes(open(d + "/metadata.json", "rb").read())
    except Exception:
        print("invalid"); continue
    p = m.provenance
    if p is None:
        print("clean - -"); continue
    kernel = p.kernel.commit if p.kernel is not None else "-"
    git = p.kernel_builder.git
    builder = git.commit if git is not None else "-"
    print(("dirty" if p.dirty else "clean") + " " + str(kernel) + " " + str(builder))
"#;
    run_kernels(script, dirs)
}

fn drvmeta_provenance(dir: &Path) -> String {
    if let Err(problems) = drvmeta::provenance::kernel_digest::check_variant(dir) {
        assert!(
            problems[0].contains("kernels cannot load it"),
            "{problems:?}"
        );
        return "invalid".to_owned();
    }
    let Some(p) = drvmeta::provenance::kernel_digest::metadata_provenance(dir) else {
        return "clean - -".to_owned();
    };
    let commit = |r: &Option<drvmeta::provenance::kernel::Revision>| {
        r.as_ref()
            .and_then(|r| r.git.as_ref())
            .map_or("-".to_owned(), |g| g.commit.clone())
    };
    format!(
        "{} {} {}",
        if p.dirty() { "dirty" } else { "clean" },
        commit(&p.kernel),
        commit(&p.builder)
    )
}

#[test]
fn provenance_blocks_read_as_the_kernels_dirty_validator_reads_them() {
    let root = tempfile::tempdir().unwrap();
    let (a, b) = ("a".repeat(40), "b".repeat(40));
    let upper = "C".repeat(40);
    let blocks: Vec<(&'static str, serde_json::Value)> = vec![
        ("none", serde_json::Value::Null),
        (
            "clean, builder version only",
            serde_json::json!({"kernel-builder": {"version": "0.17.0"}, "kernel": {"commit": a, "dirty": false}}),
        ),
        (
            "kernel dirty",
            serde_json::json!({"kernel-builder": {"version": "0.17.0"}, "kernel": {"commit": a, "dirty": true}}),
        ),
        (
            "builder dirty",
            serde_json::json!({"kernel-builder": {"version": "0.17.0", "commit": b, "dirty": true}, "kernel": {"commit": a, "dirty": false}}),
        ),
        (
            "both clean with git",
            serde_json::json!({"kernel-builder": {"version": "0.17.0", "commit": b, "dirty": false}, "kernel": {"commit": a, "dirty": false}}),
        ),
        (
            "legacy sha",
            serde_json::json!({"kernel-builder": {"version": "0.17.0", "sha": b, "dirty": false}, "kernel": {"sha": a, "dirty": true}}),
        ),
        (
            "uppercase commit",
            serde_json::json!({"kernel-builder": {"version": "0.17.0"}, "kernel": {"commit": upper, "dirty": false}}),
        ),
        (
            "no kernel (not from git)",
            serde_json::json!({"kernel-builder": {"version": "0.17.0", "commit": b, "dirty": true}}),
        ),
        (
            "builder without version",
            serde_json::json!({"kernel-builder": {"commit": b, "dirty": false}, "kernel": {"commit": a, "dirty": false}}),
        ),
        (
            "kernel commit without dirty",
            serde_json::json!({"kernel-builder": {"version": "0.17.0"}, "kernel": {"commit": a}}),
        ),
        (
            "short commit",
            serde_json::json!({"kernel-builder": {"version": "0.17.0"}, "kernel": {"commit": "abc123", "dirty": false}}),
        ),
        (
            "dirty not a boolean",
            serde_json::json!({"kernel-builder": {"version": "0.17.0"}, "kernel": {"commit": a, "dirty": "yes"}}),
        ),
        ("not an object", serde_json::json!("dirty")),
        (
            "commit and sha both",
            serde_json::json!({"kernel-builder": {"version": "0.17.0"}, "kernel": {"commit": a, "sha": a, "dirty": false}}),
        ),
        (
            "builder commit null",
            serde_json::json!({"kernel-builder": {"version": "0.17.0", "commit": null, "dirty": false}}),
        ),
        (
            "builder commit without dirty",
            serde_json::json!({"kernel-builder": {"version": "0.17.0", "commit": b}}),
        ),
        (
            "kernel null, unknown fields",
            serde_json::json!({"kernel-builder": {"version": "0.17.0", "x": 1}, "kernel": null, "y": true}),
        ),
        (
            "sha-256 commit",
            serde_json::json!({"kernel-builder": {"version": "0.17.0"}, "kernel": {"commit": "d".repeat(64), "dirty": true}}),
        ),
    ];
    let mut cases = Vec::new();
    for (name, block) in &blocks {
        let mut value = metadata("sha256", &base_files());
        if !block.is_null() {
            value["provenance"] = block.clone();
        }
        cases.push(variant(root.path(), name, &base_files(), &value));
    }
    let dirs: Vec<&Path> = cases.iter().map(|c| c.dir.as_path()).collect();
    let theirs = kernels_provenance(&dirs);
    assert_eq!(theirs.len(), cases.len());
    let table: Vec<_> = cases
        .iter()
        .zip(&theirs)
        .map(|(case, theirs)| (case.name, theirs.clone(), drvmeta_provenance(&case.dir)))
        .collect();
    let disagree: Vec<_> = table.iter().filter(|(_, k, d)| k != d).collect();
    assert!(
        disagree.is_empty(),
        "kernels vs drvmeta differ: {disagree:?}\nall: {table:?}"
    );
    for verdict in ["clean", "dirty", "invalid"] {
        assert!(
            theirs.iter().any(|t| t.starts_with(verdict)),
            "no {verdict} case: {table:?}"
        );
    }
}

#[test]
fn the_variant_digest_survives_what_a_copy_goes_through_and_nothing_else() {
    use drvmeta::provenance::kernel_digest::variant_digest;
    let root = tempfile::tempdir().unwrap();
    let files = base_files();
    let value = metadata("sha256", &files);
    let built = variant(root.path(), "built", &files, &value);
    let digest = variant_digest(&built.dir).unwrap();
    assert_eq!(digest.len(), 64);

    // The copy: provenance written in, the JSON re-serialised by another
    // tool (keys reordered, indented), .sigstore and bytecode added.
    let mut filled = value.clone();
    filled["provenance"] = serde_json::json!({"kernel-builder": {"version": "0.17.0"}});
    let copy = variant(root.path(), "copy", &files, &serde_json::json!({}));
    let mut text = String::from("{\n");
    let object = filled.as_object().unwrap();
    let mut keys: Vec<&String> = object.keys().collect();
    keys.reverse();
    for (i, key) in keys.iter().enumerate() {
        let comma = if i + 1 < keys.len() { "," } else { "" };
        text.push_str(&format!(
            "  {}: {}{comma}\n",
            serde_json::to_string(key).unwrap(),
            serde_json::to_string_pretty(&object[*key]).unwrap()
        ));
    }
    text.push('}');
    write(&copy.dir.join("metadata.json"), text.as_bytes());
    write(&copy.dir.join("metadata.json.sigstore"), b"{}");
    write(
        &copy.dir.join("activation/__pycache__/x.cpython-311.pyc"),
        b"b",
    );
    assert_eq!(variant_digest(&copy.dir).unwrap(), digest);

    // Different content: another digest, or no digest when the check fails.
    let mut other_files = files.clone();
    other_files.insert("activation/extra.py", b"x = 1\n");
    let other = listed_variant(root.path(), "other", &other_files);
    assert_ne!(variant_digest(&other.dir).unwrap(), digest);
    let sha512 = variant(root.path(), "sha512", &files, &metadata("sha512", &files));
    assert_ne!(variant_digest(&sha512.dir).unwrap(), digest);
    write(&copy.dir.join("activation/_activation.so"), b"evil\n");
    assert!(variant_digest(&copy.dir).is_err());
}
