//! SBOMs: every document the suite makes is validated with the reference
//! validators (cyclonedx-python-lib's strict 1.6 JSON validator, pyspdxtools),
//! plus drvmeta's own checks against the closure and `__meta`.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use support::cdx_property as property;
use support::generator::{Options, generate};

fn drvmeta(args: &[&str]) -> Output {
    drvmeta_at(args, Some("1767225600"))
}

/// drvmeta with `SOURCE_DATE_EPOCH` set to `epoch`, or unset.
fn drvmeta_at(args: &[&str], epoch: Option<&str>) -> Output {
    drvmeta_with(args, epoch, true)
}

/// [`drvmeta_at`]; without `nix` on PATH (a machine without Nix), the
/// documents of the bundled fixtures do not depend on what other tests
/// realised in this machine's store.
fn drvmeta_with(args: &[&str], epoch: Option<&str>, nix: bool) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_drvmeta"));
    command
        .args(args)
        .current_dir(support::project_dir())
        .env("NIX_CONFIG", support::NIX_CONFIG);
    if !nix {
        command.env("PATH", "/nonexistent");
    }
    match epoch {
        Some(epoch) => command.env("SOURCE_DATE_EPOCH", epoch),
        None => command.env_remove("SOURCE_DATE_EPOCH"),
    };
    command.output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The SPDX 3 document [`both`] writes beside SPDX 2.3 document `spdx`.
fn spdx3_of(spdx: &Path) -> PathBuf {
    spdx.with_extension("").with_extension("spdx3.json")
}

/// Make the documents for `args` into `dir` (CycloneDX, SPDX 2.3 and,
/// beside it, SPDX 3 — [`spdx3_of`]); returns the first two.
fn both(dir: &Path, label: &str, args: &[&str]) -> (PathBuf, PathBuf) {
    both_with(dir, label, args, true)
}

/// [`both`], with or without `nix` on PATH ([`drvmeta_with`]).
fn both_with(dir: &Path, label: &str, args: &[&str], nix: bool) -> (PathBuf, PathBuf) {
    let cdx = dir.join(format!("{label}.cdx.json"));
    let spdx = dir.join(format!("{label}.spdx.json"));
    let spdx3 = spdx3_of(&spdx);
    for (format, file) in [("cyclonedx", &cdx), ("spdx", &spdx), ("spdx3", &spdx3)] {
        let mut full = vec![
            "sbom",
            "--format",
            format,
            "--output",
            file.to_str().unwrap(),
        ];
        full.extend_from_slice(args);
        let output = drvmeta_with(&full, Some("1767225600"), nix);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{label} {format}: {}",
            stderr(&output)
        );
    }
    (cdx, spdx)
}

/// Validate SPDX 3 JSON-LD documents with the SPDX project's generated
/// model (`spdx-python-model`, which `ntia-conformance-checker` reads
/// them with): every type, property and enumeration value known, every
/// required property present (checked by serialising again), and every
/// element the document refers to defined in it.
fn validate_spdx3(files: &[PathBuf]) {
    let script = r##"
import io, json, sys
from spdx_python_model.bindings import v3_0_1 as spdx3
bad = 0
for f in sys.argv[1:]:
    objects = spdx3.SHACLObjectSet()
    with open(f, "rb") as fh:
        spdx3.JSONLDDeserializer().read(fh, objects)
    spdx3.JSONLDSerializer().write(objects, io.BytesIO())
    graph = json.load(open(f))["@graph"]
    document = [o for o in graph if o["type"] == "SpdxDocument"]
    assert len(document) == 1, f
    prefix = document[0]["spdxId"] + "#"
    ids = {o.get("spdxId") or o.get("@id") for o in graph}
    def refs(value):
        if isinstance(value, str):
            if value.startswith(prefix) or value.startswith("_:"):
                yield value
        elif isinstance(value, list):
            for v in value:
                yield from refs(v)
        elif isinstance(value, dict):
            for k, v in value.items():
                if k not in ("spdxId", "@id"):
                    yield from refs(v)
    dangling = sorted(set(refs(graph)) - ids)
    if dangling:
        print(f, "refers to undefined elements:", dangling[:5])
        bad += 1
sys.exit(1 if bad else 0)
"##;
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(files)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "SPDX 3 validation failed (pip install ntia-conformance-checker, which brings spdx-python-model):\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Validate every document with the reference validators, in one Python run
/// for the CycloneDX ones, one pyspdxtools run per SPDX 2.3 one, and one
/// run for the SPDX 3 documents beside them ([`validate_spdx3`]).
fn validate(cdx: &[PathBuf], spdx: &[PathBuf]) {
    let spdx3: Vec<PathBuf> = spdx.iter().map(|f| spdx3_of(f)).collect();
    for file in &spdx3 {
        assert!(file.exists(), "{} was written", file.display());
    }
    validate_spdx3(&spdx3);
    let script = r#"
import sys
from cyclonedx.validation.json import JsonStrictValidator
from cyclonedx.schema import SchemaVersion
validator = JsonStrictValidator(SchemaVersion.V1_6)
bad = 0
for f in sys.argv[1:]:
    error = validator.validate_str(open(f).read())
    if error is not None:
        print(f, error)
        bad += 1
sys.exit(1 if bad else 0)
"#;
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(cdx)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "CycloneDX validation failed (pip install 'cyclonedx-python-lib[json-validation]' if missing):\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    for file in spdx {
        let output = Command::new("pyspdxtools")
            .arg("-i")
            .arg(file)
            .output()
            .expect("pyspdxtools runs (pip install spdx-tools)");
        assert!(
            output.status.success(),
            "{}: SPDX validation failed:\n{}{}",
            file.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

fn read(file: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap()
}

/// drvmeta's own checks: one component per derivation, no dangling refs,
/// every component with a dependency entry, roots described.
fn check_structure(cdx: &Value, spdx: &Value, expected_drvs: &BTreeSet<String>, roots: &[String]) {
    let components: BTreeSet<String> = cdx["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["bom-ref"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(&components, expected_drvs, "one component per derivation");
    assert_eq!(
        components.len(),
        cdx["components"].as_array().unwrap().len(),
        "no duplicates"
    );
    let mut refs = components.clone();
    refs.insert(
        cdx["metadata"]["component"]["bom-ref"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    let dependencies = cdx["dependencies"].as_array().unwrap();
    let entries: BTreeSet<&str> = dependencies
        .iter()
        .map(|d| d["ref"].as_str().unwrap())
        .collect();
    assert_eq!(
        entries.len(),
        refs.len(),
        "every component has a dependency entry"
    );
    for dependency in dependencies {
        for target in dependency["dependsOn"].as_array().unwrap() {
            assert!(
                refs.contains(target.as_str().unwrap()),
                "dangling ref {target}"
            );
        }
    }
    let described: BTreeSet<&str> = dependencies
        .iter()
        .find(|d| d["ref"] == cdx["metadata"]["component"]["bom-ref"])
        .unwrap()["dependsOn"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        described,
        roots.iter().map(String::as_str).collect(),
        "roots described"
    );

    let packages = spdx["packages"].as_array().unwrap();
    assert_eq!(packages.len(), expected_drvs.len());
    let ids: BTreeSet<&str> = packages
        .iter()
        .map(|p| p["SPDXID"].as_str().unwrap())
        .collect();
    let relationships = spdx["relationships"].as_array().unwrap();
    for relationship in relationships {
        assert!(ids.contains(relationship["relatedSpdxElement"].as_str().unwrap()));
    }
    assert_eq!(
        relationships
            .iter()
            .filter(|r| r["relationshipType"] == "DESCRIBES")
            .count(),
        roots.len()
    );
}

#[test]
fn random_closures_give_valid_documents_with_their_meta() {
    let dir = tempfile::tempdir().unwrap();
    let (mut cdx_files, mut spdx_files) = (Vec::new(), Vec::new());
    for seed in 500..500 + support::seed_count(8).div_ceil(2) {
        let generated = generate(seed, &Options::default());
        let (a, b) = support::instantiate_twins(&generated);
        for (label, roots) in [("A", &a), ("B", &b)] {
            let mut roots = roots.clone();
            roots.dedup();
            let mut args: Vec<&str> = Vec::new();
            args.extend(roots.iter().map(String::as_str));
            let (cdx_file, spdx_file) = both(dir.path(), &format!("{seed}-{label}"), &args);
            let (cdx, spdx) = (read(&cdx_file), read(&spdx_file));
            // The closure, as drvmeta loads it.
            let closure = drvmeta::closure::Closure::load(&Default::default(), &roots).unwrap();
            let drvs: BTreeSet<String> = closure
                .nodes()
                .iter()
                .map(|n| closure.render(&n.path))
                .collect();
            let mut unique_roots: Vec<String> = Vec::new();
            for r in &roots {
                if !unique_roots.contains(r) {
                    unique_roots.push(r.clone());
                }
            }
            check_structure(&cdx, &spdx, &drvs, &unique_roots);
            // Meta of opted-in derivations shows up.
            if label == "A" {
                for (spec, root) in generated.specs.iter().zip(&a) {
                    if !spec.opted_in {
                        continue;
                    }
                    let component = cdx["components"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|c| c["bom-ref"] == root.as_str())
                        .unwrap();
                    assert!(
                        component["licenses"].is_array(),
                        "{}: licenses missing",
                        spec.name
                    );
                    let drv = drvmeta::closure::read_one(&Default::default(), root)
                        .unwrap()
                        .derivation()
                        .unwrap();
                    let meta = drvmeta::derivation::meta::meta_object(&drv).unwrap();
                    let description = meta["description"].as_str().filter(|d| !d.is_empty());
                    assert_eq!(
                        component["description"].as_str(),
                        description,
                        "{}",
                        spec.name
                    );
                    if let Some(commit) = meta
                        .get("provenance")
                        .and_then(|p| p["kernel"]["commit"].as_str())
                    {
                        assert_eq!(
                            property(component, "nix:provenance:kernel:commit"),
                            vec![commit]
                        );
                    }
                }
            }
            cdx_files.push(cdx_file);
            spdx_files.push(spdx_file);
        }
    }
    validate(&cdx_files, &spdx_files);
}

#[test]
fn the_kernel_example_in_both_formats() {
    let dir = tempfile::tempdir().unwrap();
    let root =
        std::fs::read_to_string(support::project_dir().join("fixtures/kernel/root")).unwrap();
    let root = root.trim();
    let (cdx_file, spdx_file) = both_with(
        dir.path(),
        "kernel",
        &["--drv-dir", "fixtures/kernel/drvs", root],
        false,
    );
    validate(
        std::slice::from_ref(&cdx_file),
        std::slice::from_ref(&spdx_file),
    );
    let (cdx, spdx) = (read(&cdx_file), read(&spdx_file));
    insta::assert_json_snapshot!("sbom_kernel_cyclonedx", cdx);
    insta::assert_json_snapshot!("sbom_kernel_spdx", spdx);
    insta::assert_json_snapshot!("sbom_kernel_spdx3", read(&spdx3_of(&spdx_file)));
    let components = cdx["components"].as_array().unwrap();
    let find = |name: &str| components.iter().find(|c| c["name"] == name).unwrap();
    // Versions from pname/version, licenses normalised, unfree kept by name.
    assert_eq!(find("torch")["version"], "2.5.1");
    // A CPE guessed from the name is evidence, never the identity.
    assert!(find("torch")["cpe"].is_null());
    assert_eq!(
        find("torch")["evidence"]["identity"][0]["concludedValue"],
        "cpe:2.3:a:torch:torch:2.5.1:*:*:*:*:*:*:*"
    );
    assert!(
        find("activation-src")["evidence"].is_null(),
        "not for sources"
    );
    assert_eq!(
        find("torch")["licenses"][0]["license"]["id"],
        "BSD-3-Clause"
    );
    assert_eq!(find("torch")["purl"], "pkg:pypi/torch@2.5.1");
    assert_eq!(
        find("activation-kernel")["licenses"][0]["license"]["id"],
        "Apache-2.0"
    );
    assert_eq!(
        find("cuda-toolkit")["licenses"][0]["license"]["name"],
        "CUDA EULA"
    );
    assert_eq!(
        property(find("cuda-toolkit"), "nix:source_provenance"),
        vec!["binaryNativeCode"]
    );
    // The fixed-output source: hash in hex, download URLs.
    let source = find("activation-src");
    assert_eq!(source["hashes"][0]["alg"], "SHA-256");
    assert_eq!(source["hashes"][0]["content"].as_str().unwrap().len(), 64);
    assert_eq!(property(source, "nix:fod:url").len(), 2);
    // Provenance as properties.
    let kernel = find("activation-kernel");
    assert_eq!(
        property(kernel, "nix:provenance:kernel:commit"),
        vec!["0123456789abcdef0123456789abcdef01234567"]
    );
    assert_eq!(
        property(kernel, "nix:provenance:kernel-builder:version"),
        vec!["0.17.0"]
    );
    assert_eq!(spdx["packages"].as_array().unwrap().len(), 5);
    // Deterministic with SOURCE_DATE_EPOCH.
    let again = drvmeta_with(
        &["sbom", "--drv-dir", "fixtures/kernel/drvs", root],
        Some("1767225600"),
        false,
    );
    assert_eq!(serde_json::from_slice::<Value>(&again.stdout).unwrap(), cdx);
    assert_eq!(cdx["metadata"]["timestamp"], "2026-01-01T00:00:00Z");
}

/// Write derivation `text` into `dir` under its real store path's name, so
/// that it is consistent (its bytes hash to its name).
fn write_drv(dir: &Path, name: &str, text: &str) -> PathBuf {
    let store = drvmeta::derivation::StoreDir::new("/nix/store").unwrap();
    let drv = drvmeta::closure::parse_drv(text.as_bytes(), name, &store, Path::new(name))
        .expect("a valid derivation");
    let path = dir.join(drv.drv_path().unwrap().to_basename());
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn odd_metadata_gives_a_valid_document_with_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let json = r#"{"__meta":{"license":[42,{"free":false}],"description":"odd","version":"1"},"requiredSystemFeatures":["derivation-meta"]}"#;
    let escaped = json.replace('\\', "\\\\").replace('"', "\\\"");
    let odd = write_drv(
        dir.path(),
        "odd-1",
        &format!(
            "Derive([(\"out\",\"\",\"\",\"\")],[],[],\"x86_64-linux\",\"/bin/sh\",[],[(\"__json\",\"{escaped}\"),(\"out\",\"\")])"
        ),
    );
    let output = drvmeta(&["sbom", odd.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("unknown shape"),
        "{}",
        stderr(&output)
    );
    // A non-UTF-8 environment value (snix's latin1 vector).
    let latin1 = support::nix_vectors().join("snix/ok/x6p0hg79i3wg0kkv7699935f7rrj9jf3-latin1.drv");
    let (cdx_a, spdx_a) = both(dir.path(), "odd", &[odd.to_str().unwrap()]);
    let (cdx_b, spdx_b) = both(dir.path(), "latin1", &[latin1.to_str().unwrap()]);
    validate(&[cdx_a, cdx_b], &[spdx_a, spdx_b]);
    let latin = drvmeta(&["sbom", latin1.to_str().unwrap()]);
    assert!(stderr(&latin).contains("not UTF-8"), "{}", stderr(&latin));
}

#[test]
fn a_missing_input_is_an_error_not_a_document() {
    let dir = tempfile::tempdir().unwrap();
    let needs = write_drv(
        dir.path(),
        "needs-gone",
        "Derive([(\"out\",\"\",\"\",\"\")],[(\"/nix/store/11111111111111111111111111111111-gone.drv\",[\"out\"])],[],\"x86_64-linux\",\"/bin/sh\",[],[(\"out\",\"\")])",
    );
    let file = dir.path().join("out.json");
    let output = drvmeta(&[
        "sbom",
        "--output",
        file.to_str().unwrap(),
        needs.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("11111111111111111111111111111111-gone.drv"),
        "{}",
        stderr(&output)
    );
    assert!(!file.exists(), "no document is written");
}

#[test]
fn runtime_sboms_follow_references() {
    let dir = tempfile::tempdir().unwrap();
    let nonce = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let expr = format!(
        r#"let
  mk = name: script: derivation {{ inherit name; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" script ]; nonce = "{nonce}"; }};
  lib = derivation {{ name = "runtime-lib-1.0"; system = "x86_64-linux"; builder = "/bin/sh"; outputs = [ "out" "dev" ]; args = [ "-c" "echo lib > $out; echo headers > $dev" ]; nonce = "{nonce}"; }};
  tool = mk "build-tool-2.0" "echo tool > $out";
in mk "app-3.0" "echo ${{lib}} > $out; echo ${{tool}} > /dev/null"
"#
    );
    let file = dir.path().join("app.nix");
    std::fs::write(&file, expr).unwrap();
    let drv = support::instantiate_file(&file);
    let drv = drv.as_str();
    // Not built yet: a clear error.
    let unbuilt = drvmeta(&["sbom", "--runtime", drv]);
    assert_eq!(unbuilt.status.code(), Some(1));
    assert!(
        stderr(&unbuilt).contains("needs the roots built"),
        "{}",
        stderr(&unbuilt)
    );
    support::run(
        support::nix("nix-store").args(["--realise", drv, "--option", "sandbox", "false"]),
        "build",
    );
    let (cdx_file, spdx_file) = both(dir.path(), "runtime", &["--runtime", drv]);
    validate(std::slice::from_ref(&cdx_file), &[spdx_file]);
    let cdx = read(&cdx_file);
    // narinfo as Nix records it: the paths are exactly the runtime closure
    // (nix-store -qR), each NAR hash nix-store --query --hash's.
    let outputs = support::run(
        support::nix("nix-store").args(["--query", "--outputs", drv]),
        "outputs",
    );
    let closure: BTreeSet<String> = support::run(
        support::nix("nix-store").arg("-qR").args(outputs.lines()),
        "closure",
    )
    .lines()
    .map(str::to_owned)
    .collect();
    let mut narinfo = BTreeSet::new();
    for component in cdx["components"].as_array().unwrap() {
        let values = |name: &str| property(component, name);
        let (paths, hashes) = (
            values("nix:narinfo:store_path"),
            values("nix:narinfo:nar_hash"),
        );
        assert_eq!(paths.len(), hashes.len());
        for (path, hash) in paths.iter().zip(&hashes) {
            let nix = support::run(
                support::nix("nix-store").args(["--query", "--hash", path]),
                "hash",
            );
            assert_eq!(*hash, nix.trim(), "{path}");
            narinfo.insert((*path).to_owned());
        }
        assert_eq!(component["hashes"][0]["alg"], "SHA-256", "{component}");
        // One component per shipped output: its bom-ref is the output,
        // tied to the derivation that built it.
        assert_eq!(paths, [component["bom-ref"].as_str().unwrap()]);
        assert_eq!(values("nix:store_path"), paths);
        assert_eq!(values("nix:narinfo:deriver"), values("nix:drv_path"));
    }
    assert_eq!(narinfo, closure);
    // SPDX 3: each shipped output is a software_File of its package
    // (hasDistributionArtifact), with the NAR hash Nix records.
    let doc = read(&spdx3_of(&dir.path().join("runtime.spdx.json")));
    assert_eq!(
        graph_of(&doc, "software_Sbom")[0]["software_sbomType"][0],
        "deployed"
    );
    let files = graph_of(&doc, "software_File");
    let names: BTreeSet<String> = files
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, closure);
    for file in &files {
        let path = file["name"].as_str().unwrap();
        let nix = support::run(
            support::nix("nix-store").args(["--query", "--hash", path]),
            "hash",
        );
        let base16 = support::run(
            support::nix("nix").args(["hash", "to-base16", nix.trim()]),
            "to-base16",
        );
        assert_eq!(file["verifiedUsing"][0]["algorithm"], "sha256");
        assert_eq!(
            file["verifiedUsing"][0]["hashValue"],
            base16.trim(),
            "{path}"
        );
    }
    let artifacts = graph_of(&doc, "Relationship")
        .into_iter()
        .filter(|r| r["relationshipType"] == "hasDistributionArtifact")
        .count();
    assert_eq!(artifacts, closure.len());
    let table = bsi(&spdx3_of(&dir.path().join("runtime.spdx.json")));
    assert!(table["Distribution Filenames"], "{table:?}");
    // The NAR's SHA-256 is what Nix records; BSI asks for SHA-512, which
    // --nar-sha512 computes (nix-store --dump | sha512sum agrees).
    assert!(!table["Deployable Component Hashes"], "{table:?}");
    let long = dir.path().join("sha512.spdx3.json");
    let output = drvmeta(&[
        "sbom",
        "--runtime",
        "--nar-sha512",
        "--format",
        "spdx3",
        "-o",
        long.to_str().unwrap(),
        drv,
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    validate_spdx3(std::slice::from_ref(&long));
    assert!(bsi(&long)["Deployable Component Hashes"]);
    let doc = read(&long);
    for file in graph_of(&doc, "software_File") {
        let path = file["name"].as_str().unwrap();
        let dump = support::run(
            Command::new("sh").args([
                "-c",
                &format!("nix-store --dump {path} | sha512sum | cut -d' ' -f1"),
            ]),
            "dump",
        );
        assert_eq!(file["verifiedUsing"][1]["algorithm"], "sha512");
        assert_eq!(file["verifiedUsing"][1]["hashValue"], dump.trim(), "{path}");
    }
    let without = drvmeta(&["sbom", "--nar-sha512", drv]);
    assert_eq!(without.status.code(), Some(2), "{}", stderr(&without));
    assert!(
        stderr(&without).contains("--runtime"),
        "{}",
        stderr(&without)
    );
    let names: BTreeSet<&str> = cdx["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["app", "runtime-lib"]),
        "the build tool is not referenced at runtime, nor the library's dev output"
    );
    assert!(
        !closure.iter().any(|p| p.ends_with("-dev")),
        "the dev output is not shipped"
    );
    let app = cdx["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["ref"] == outputs.trim())
        .unwrap();
    assert_eq!(app["dependsOn"].as_array().unwrap().len(), 1);
    assert!(
        closure.contains(app["dependsOn"][0].as_str().unwrap()),
        "dependencies are outputs: {app}"
    );
    // Build-time: all three; the roots are built, so what is not shipped
    // (the tool) is marked needed to build only — CycloneDX scope
    // excluded, SPDX BUILD_DEPENDENCY_OF — and both documents validate.
    let (cdx_file, spdx_file) = both(dir.path(), "build-time", &[drv]);
    validate(
        std::slice::from_ref(&cdx_file),
        std::slice::from_ref(&spdx_file),
    );
    let build = read(&cdx_file);
    let components = build["components"].as_array().unwrap();
    assert_eq!(components.len(), 3);
    for component in components {
        let excluded = component["scope"] == "excluded";
        assert_eq!(excluded, component["name"] == "build-tool", "{component}");
    }
    // SPDX 3: the tool is a build-scoped dependency.
    let doc = read(&spdx3_of(&spdx_file));
    let scoped = graph_of(&doc, "LifecycleScopedRelationship");
    assert_eq!(scoped.len(), 1, "{scoped:?}");
    assert_eq!(scoped[0]["scope"], "build");
    assert_eq!(scoped[0]["completeness"], "complete");
    let tool = graph_of(&doc, "software_Package")
        .into_iter()
        .find(|p| p["name"] == "build-tool")
        .unwrap();
    assert_eq!(scoped[0]["to"], serde_json::json!([tool["spdxId"]]));
    let spdx = read(&spdx_file);
    let kinds: Vec<(&str, &str)> = spdx["relationships"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["relationshipType"].as_str().unwrap(),
                r["spdxElementId"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(
        kinds
            .iter()
            .any(|(kind, from)| *kind == "BUILD_DEPENDENCY_OF" && from.contains("build-tool")),
        "{kinds:?}"
    );
    assert_eq!(
        kinds
            .iter()
            .filter(|(kind, _)| *kind == "BUILD_DEPENDENCY_OF")
            .count(),
        1,
        "{kinds:?}"
    );
    // The build-only component stays reachable from the roots for the
    // reference checker (DEPENDS_ON is kept beside BUILD_DEPENDENCY_OF).
    let report = ntia(&spdx_file, &[]);
    assert_eq!(
        report["graphValidation"]["floatingComponents"]["floatingComponentCount"], 0,
        "{report}"
    );
    // A shipped output changed behind Nix's back (this test's own path):
    // --nar-sha512 refuses to vouch for it, naming the path.
    let lib = closure.iter().find(|p| p.contains("runtime-lib")).unwrap();
    support::run(
        Command::new("sh").args(["-c", &format!("chmod u+w {lib} && echo tampered >> {lib}")]),
        "tamper",
    );
    let output = drvmeta(&["sbom", "--runtime", "--nar-sha512", drv]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(lib.as_str()) && stderr(&output).contains("was modified"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_bad_source_date_epoch_is_an_error_not_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let root =
        std::fs::read_to_string(support::project_dir().join("fixtures/kernel/root")).unwrap();
    let root = root.trim();
    for bad in ["abc", "", "-1", "+5", "1.5", "99999999999999999999999"] {
        let file = dir.path().join("out.json");
        let output = drvmeta_at(
            &[
                "sbom",
                "--drv-dir",
                "fixtures/kernel/drvs",
                "--output",
                file.to_str().unwrap(),
                root,
            ],
            Some(bad),
        );
        assert_eq!(
            output.status.code(),
            Some(1),
            "{bad:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains("SOURCE_DATE_EPOCH"),
            "{bad:?}: {}",
            stderr(&output)
        );
        assert!(!file.exists(), "{bad:?}: no document is written");
    }
    // Unset: now, a valid document.
    let output = drvmeta_at(&["sbom", "--drv-dir", "fixtures/kernel/drvs", root], None);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

/// Sources instantiated by real Nix from download URLs of well-known hosts
/// get purls of registered types (checked with packageurl-python), type
/// `file`, versions without archive extensions, names apart from the
/// package built from them, and the nixpkgs `nix:fod:*` taxonomy; both
/// documents still pass the validators.
#[test]
fn sources_get_matchable_identities_and_the_nixpkgs_taxonomy() {
    let dir = tempfile::tempdir().unwrap();
    // A letter first: a digit after `-` would start the version.
    let nonce = format!("n{:x}", std::process::id());
    let sources = [
        (
            "github",
            "https://github.com/NixOS/nix/archive/2.34.0.tar.gz",
            "recursive",
            "pkg:github/nixos/nix@2.34.0",
        ),
        (
            "pypi",
            "https://files.pythonhosted.org/packages/source/r/requests/requests-2.31.0.tar.gz",
            "flat",
            "pkg:pypi/requests@2.31.0",
        ),
        (
            "crate",
            "https://static.crates.io/crates/serde/serde-1.0.210.crate",
            "flat",
            "pkg:cargo/serde@1.0.210",
        ),
        (
            "npm",
            "https://registry.npmjs.org/left-pad/-/left-pad-1.3.0.tgz",
            "flat",
            "pkg:npm/left-pad@1.3.0",
        ),
        (
            "scoped",
            "https://registry.npmjs.org/@babel/core/-/core-7.25.2.tgz",
            "flat",
            "pkg:npm/%40babel/core@7.25.2",
        ),
        (
            "release",
            "https://github.com/owner/tool/releases/download/v1.2.3/tool-1.2.3-linux.tar.gz",
            "flat",
            "pkg:github/owner/tool@v1.2.3",
        ),
        (
            "crates-api",
            "https://crates.io/api/v1/crates/serde/1.0.210/download",
            "flat",
            "pkg:cargo/serde@1.0.210",
        ),
        (
            "gnu",
            "mirror://gnu/hello/hello-2.12.1.tar.gz",
            "flat",
            "pkg:generic/hello@2.12.1?download_url=mirror://gnu/hello/hello-2.12.1.tar.gz",
        ),
    ];
    let fods: Vec<String> = sources
        .iter()
        .enumerate()
        .map(|(i, (label, url, mode, _))| {
            let hash = format!("{:064x}", i + 1);
            format!(
                r#"(derivation {{ name = "{label}-{nonce}-1.0.tar.gz"; system = "x86_64-linux"; builder = "builtin:fetchurl"; url = "{url}"; outputHash = "{hash}"; outputHashAlgo = "sha256"; outputHashMode = "{mode}"; }})"#
            )
        })
        .collect();
    let expr = format!(
        r#"derivation {{ name = "github-{nonce}-1.0"; system = "x86_64-linux"; builder = "/bin/sh"; srcs = [ {} ]; }}"#,
        fods.join(" ")
    );
    let file = dir.path().join("sources.nix");
    std::fs::write(&file, expr).unwrap();
    let root = support::instantiate_file(&file);
    let (cdx_file, spdx_file) = both(dir.path(), "sources", &[&root]);
    validate(
        std::slice::from_ref(&cdx_file),
        std::slice::from_ref(&spdx_file),
    );
    let cdx = read(&cdx_file);
    let components = cdx["components"].as_array().unwrap();
    for (label, url, mode, purl) in sources {
        let source = components
            .iter()
            .find(|c| property(c, "nix:fod:url") == [url])
            .unwrap_or_else(|| panic!("{label}: {cdx}"));
        assert_eq!(source["purl"], purl, "{label}");
        assert_eq!(source["type"], "file", "{label}");
        assert_eq!(source["version"], "1.0", "{label}: no archive extension");
        let method = if mode == "recursive" {
            "fetchzip"
        } else {
            "fetchurl"
        };
        assert_eq!(property(source, "nix:fod:method"), [method], "{label}");
        assert_eq!(property(source, "nix:fod:sha256").len(), 1, "{label}");
    }
    // The GitHub source shares its name with the package built from it.
    let names: Vec<&str> = components
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&format!("github-{nonce}").as_str()),
        "{names:?}"
    );
    assert!(
        names.contains(&format!("github-{nonce}-source").as_str()),
        "{names:?}"
    );

    // Every purl parses, and its type is registered — but for the
    // documented pkg:nix fallback of what has no better identity.
    let purls: Vec<&str> = components
        .iter()
        .map(|c| c["purl"].as_str().unwrap())
        .collect();
    let script = r#"
import sys
from packageurl import PackageURL
registered = {"alpm", "apk", "bitbucket", "bitnami", "cargo", "cocoapods", "composer", "conan",
    "conda", "cpan", "cran", "deb", "docker", "gem", "generic", "github", "golang", "hackage",
    "hex", "huggingface", "luarocks", "maven", "mlflow", "npm", "nuget", "oci", "pub", "pypi",
    "qpm", "rpm", "swid", "swift"}
for text in sys.argv[1:]:
    purl = PackageURL.from_string(text)
    if purl.to_string() != text:
        sys.exit(f"{text} re-serialises as {purl.to_string()}")
    if purl.type not in registered and purl.type != "nix":
        sys.exit(f"{text}: unregistered type {purl.type}")
    print(purl.type)
"#;
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(&purls)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let types = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        types.lines().filter(|t| *t == "nix").count(),
        1,
        "only the built package: {types}"
    );
}

/// `ntia-conformance-checker` (the reference tool) on drvmeta's SPDX: with
/// maintainers in `__meta` it conforms; without, drvmeta writes
/// NOASSERTION, says what is missing, and `--supplier` fills it.
#[test]
fn ntia_minimum_elements_from_meta_or_the_command_line() {
    let ntia = |file: &Path| ntia(file, &[]);
    let dir = tempfile::tempdir().unwrap();
    let root =
        std::fs::read_to_string(support::project_dir().join("fixtures/kernel/root")).unwrap();
    let root = root.trim();
    // The kernel example names no maintainer: NOASSERTION, and a warning.
    // (Without nix on PATH: the document does not depend on what other
    // tests realised of the fixture in this store.)
    let drvmeta = |args: &[&str]| drvmeta_with(args, Some("1767225600"), false);
    let file = dir.path().join("kernel.spdx.json");
    let output = drvmeta(&[
        "sbom",
        "--format",
        "spdx",
        "--drv-dir",
        "fixtures/kernel/drvs",
        "-o",
        file.to_str().unwrap(),
        root,
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("5 of 5 component(s) have no supplier"),
        "{}",
        stderr(&output)
    );
    let report = ntia(&file);
    assert_eq!(report["isNtiaConformant"], false, "{report}");
    assert_eq!(
        report["componentSuppliers"]["nonconformantComponents"]
            .as_array()
            .unwrap()
            .len(),
        5,
        "{report}"
    );
    let spdx = read(&file);
    assert!(
        spdx["packages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["supplier"] == "NOASSERTION")
    );
    // --supplier for what meta does not say, --author for the document.
    let file = dir.path().join("supplied.spdx.json");
    let output = drvmeta(&[
        "sbom",
        "--format",
        "spdx",
        "--supplier",
        "Kernel Team <kernels@example.org>",
        "--author",
        "Ada <ada@example.org>",
        "--drv-dir",
        "fixtures/kernel/drvs",
        "-o",
        file.to_str().unwrap(),
        root,
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        !stderr(&output).contains("no supplier"),
        "{}",
        stderr(&output)
    );
    assert_eq!(ntia(&file)["isNtiaConformant"], true);
    let spdx = read(&file);
    assert!(
        spdx["creationInfo"]["creators"]
            .as_array()
            .unwrap()
            .contains(&Value::from("Person: Ada (ada@example.org)"))
    );

    // A closure whose __meta carries maintainers, instantiated by Nix:
    // conformant as it is, in both formats, both valid.
    let nonce = format!("n{:x}", std::process::id());
    let expr = format!(
        r#"let mk = name: maintainers: deps: derivation {{
      inherit name deps; system = "x86_64-linux"; builder = "/bin/sh";
      __structuredAttrs = true;
      __meta = {{ inherit maintainers; description = name; }};
    }};
    lib = mk "ntia-lib-{nonce}-1.0" [ {{ name = "Ada"; email = "ada@example.org"; github = "ada"; }} ] [ ];
in mk "ntia-app-{nonce}-2.0" [ "Bob <bob@example.org>" ] [ lib ]"#
    );
    let nix_file = dir.path().join("ntia.nix");
    std::fs::write(&nix_file, expr).unwrap();
    let app = support::instantiate_file(&nix_file);
    let (cdx_file, spdx_file) = both(dir.path(), "maintained", &[&app]);
    validate(
        std::slice::from_ref(&cdx_file),
        std::slice::from_ref(&spdx_file),
    );
    let report = ntia(&spdx_file);
    assert_eq!(report["isNtiaConformant"], true, "{report}");
    let spdx = read(&spdx_file);
    let suppliers: BTreeSet<&str> = spdx["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["supplier"].as_str().unwrap())
        .collect();
    assert_eq!(
        suppliers,
        BTreeSet::from([
            "Person: Ada (ada@example.org)",
            "Person: Bob (bob@example.org)"
        ])
    );
    let cdx = read(&cdx_file);
    assert_eq!(
        cdx["metadata"]["component"]["name"],
        format!("ntia-app-{nonce}")
    );
    assert_eq!(cdx["metadata"]["component"]["version"], "2.0");
    assert_eq!(cdx["compositions"][0]["aggregate"], "complete");
    let lib = cdx["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == format!("ntia-lib-{nonce}"))
        .unwrap();
    assert_eq!(lib["supplier"]["name"], "Ada");
    assert_eq!(lib["authors"][0]["email"], "ada@example.org");
}

/// Every license of nixpkgs' own license set (`../shared/nixpkgs-lib`,
/// evaluated by Nix), given as a short name, an attribute name, the
/// attribute set or a list of it, maps to its spdxId — or, where it has
/// none (or one newer than the SPDX list drvmeta validates against), to a
/// named license written as LicenseRef-.
#[test]
fn every_nixpkgs_license_maps_to_its_spdx_id() {
    use drvmeta::sbom::license::{License, is_spdx_id, licenses};
    let lib = support::nixpkgs_lib();
    let expr = format!(
        r#"let l = (import {}).licenses;
in builtins.listToAttrs (map (n: {{ name = n; value = l.${{n}}; }})
   (builtins.filter (n: builtins.isAttrs l.${{n}}) (builtins.attrNames l)))"#,
        lib.display()
    );
    let json = support::run(
        support::nix("nix-instantiate").args(["--eval", "--strict", "--json", "-E", &expr]),
        "evaluate lib.licenses",
    );
    let set: serde_json::Map<String, Value> = serde_json::from_str(&json).unwrap();
    assert!(set.len() > 250, "{} licenses", set.len());
    let mut newer_than_the_list = Vec::new();
    for (attr, license) in &set {
        let spdx_id = license["spdxId"].as_str().unwrap_or_default();
        let expected = if is_spdx_id(spdx_id) {
            License::Id(spdx_id.to_owned())
        } else {
            if !spdx_id.is_empty() {
                newer_than_the_list.push(spdx_id.to_owned());
            }
            License::Named(license["fullName"].as_str().unwrap_or(attr).to_owned())
        };
        let short = license["shortName"].as_str().unwrap_or(attr);
        for form in [
            Value::from(short),
            Value::from(attr.as_str()),
            license.clone(),
            Value::Array(vec![license.clone()]),
        ] {
            let mut warnings = Vec::new();
            let got = licenses(&form, &mut warnings);
            assert_eq!(got, std::slice::from_ref(&expected), "{attr} as {form}");
            assert!(warnings.is_empty(), "{attr}: {warnings:?}");
        }
    }
    // Only ids the SPDX list drvmeta ships does not have yet.
    assert!(newer_than_the_list.len() <= 3, "{newer_than_the_list:?}");
}

/// The BSI TR-03183-2 table of `ntia-checker -c bsi` on an SPDX 3
/// document: requirement → met.
fn bsi(file: &Path) -> std::collections::BTreeMap<String, bool> {
    let output = Command::new("ntia-checker")
        .args(["-s", "spdx3", "-c", "bsi"])
        .arg(file)
        .output()
        .expect("ntia-checker runs (pip install ntia-conformance-checker)");
    let text = String::from_utf8_lossy(&output.stdout);
    let table: std::collections::BTreeMap<String, bool> = text
        .lines()
        .filter_map(|line| {
            let (name, status) = line.split_once('|')?;
            match status.trim() {
                "True" => Some((name.trim().to_owned(), true)),
                "False" => Some((name.trim().to_owned(), false)),
                _ => None,
            }
        })
        .collect();
    assert!(table.len() > 10, "ntia-checker -c bsi: {text}");
    table
}

/// The JSON report of `ntia-checker` (NTIA minimum elements) on `file`,
/// with `args` before it (`-s spdx3` for SPDX 3).
fn ntia(file: &Path, args: &[&str]) -> Value {
    let output = Command::new("ntia-checker")
        .args(args)
        .args(["-r", "json"])
        .arg(file)
        .output()
        .expect("ntia-checker runs (pip install ntia-conformance-checker)");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
        panic!(
            "ntia-checker: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn ntia_spdx3(file: &Path) -> Value {
    ntia(file, &["-s", "spdx3"])
}

fn graph_of<'a>(doc: &'a Value, kind: &str) -> Vec<&'a Value> {
    doc["@graph"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["type"] == kind)
        .collect()
}

/// SPDX 3 for the BSI profile: every BSI element drvmeta has data for is
/// met (`ntia-checker -c bsi`), and what it has no data for stays unmet
/// rather than invented: the creator needs `--author` with an email,
/// component creators need maintainers in `__meta`, and licenses are
/// declared, never concluded.
#[test]
fn spdx3_meets_the_bsi_elements_it_has_data_for() {
    let dir = tempfile::tempdir().unwrap();
    let root =
        std::fs::read_to_string(support::project_dir().join("fixtures/kernel/root")).unwrap();
    let root = root.trim();
    let drvmeta = |args: &[&str]| drvmeta_with(args, Some("1767225600"), false);
    let spdx3 = |label: &str, extra: &[&str], roots: &[&str]| -> PathBuf {
        let file = dir.path().join(format!("{label}.spdx3.json"));
        let mut args = vec!["sbom", "--format", "spdx3", "-o", file.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.extend_from_slice(roots);
        let output = drvmeta(&args);
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        file
    };
    let kernel = ["--drv-dir", "fixtures/kernel/drvs"];
    // No author given: drvmeta is the creator, as a SoftwareAgent, which
    // BSI does not accept; the rest of the document is as complete.
    let anonymous = spdx3("anonymous", &kernel, &[root]);
    let supplied = spdx3(
        "supplied",
        &[
            kernel[0],
            kernel[1],
            "--supplier",
            "Kernel Team <kernels@example.org>",
            "--author",
            "Ada <ada@example.org>",
        ],
        &[root],
    );
    validate_spdx3(&[anonymous.clone(), supplied.clone()]);
    let doc = read(&anonymous);
    let creation = graph_of(&doc, "CreationInfo");
    assert_eq!(creation[0]["specVersion"], "3.0.1");
    let agent = graph_of(&doc, "SoftwareAgent");
    assert_eq!(
        creation[0]["createdBy"],
        serde_json::json!([agent[0]["spdxId"]])
    );
    assert_eq!(
        graph_of(&doc, "software_Sbom")[0]["software_sbomType"][0],
        "build"
    );
    let table = bsi(&anonymous);
    assert!(!table["Creator of the SBOM"], "{table:?}");
    assert_eq!(ntia_spdx3(&anonymous)["isNtiaConformant"], false);

    let table = bsi(&supplied);
    for met in [
        "Creator of the SBOM",
        "Timestamp",
        "Dependency Completeness",
        "Component Names",
        "Component Versions",
        "Other Unique Identifiers (Warning)",
    ] {
        assert!(table[met], "{met}: {table:?}");
    }
    // No maintainers in the example; no concluded licenses; a build-time
    // SBOM ships no files.
    for unmet in [
        "Component Creators",
        "Distribution Licenses",
        "Distribution Filenames",
    ] {
        assert!(!table[unmet], "{unmet}: {table:?}");
    }
    assert_eq!(ntia_spdx3(&supplied)["isNtiaConformant"], true);
    let doc = read(&supplied);
    let packages = graph_of(&doc, "software_Package");
    assert_eq!(packages.len(), 5);
    let source = packages
        .iter()
        .find(|p| p["name"] == "activation-src")
        .unwrap();
    assert_eq!(source["software_primaryPurpose"], "source");
    let generates = graph_of(&doc, "Relationship")
        .into_iter()
        .find(|r| r["relationshipType"] == "generates")
        .unwrap();
    assert_eq!(generates["from"], source["spdxId"]);
    let licenses: BTreeSet<&str> = graph_of(&doc, "simplelicensing_LicenseExpression")
        .iter()
        .map(|l| l["simplelicensing_licenseExpression"].as_str().unwrap())
        .collect();
    assert!(licenses.contains("BSD-3-Clause"), "{licenses:?}");
    assert!(licenses.contains("LicenseRef-CUDA-EULA"), "{licenses:?}");
    assert_eq!(
        graph_of(&doc, "simplelicensing_SimpleLicensingText").len(),
        1
    );

    // Maintainers with emails in __meta: the component creators are met.
    let nonce = format!("b{:x}", std::process::id());
    let expr = format!(
        r#"let mk = name: maintainers: deps: derivation {{
      inherit name deps; system = "x86_64-linux"; builder = "/bin/sh";
      __structuredAttrs = true;
      __meta = {{ inherit maintainers; license = {{ spdxId = "MIT"; }}; }};
    }};
    lib = mk "bsi-lib-{nonce}-1.0" [ {{ name = "Ada"; email = "ada@example.org"; github = "ada"; }} ] [ ];
in mk "bsi-app-{nonce}-2.0" [ "Bob <bob@example.org>" ] [ lib ]"#
    );
    let nix_file = dir.path().join("bsi.nix");
    std::fs::write(&nix_file, expr).unwrap();
    let app = support::instantiate_file(&nix_file);
    let maintained = spdx3(
        "maintained",
        &["--author", "Ada <ada@example.org>"],
        &[&app],
    );
    validate_spdx3(std::slice::from_ref(&maintained));
    let table = bsi(&maintained);
    assert!(table["Component Creators"], "{table:?}");
    assert!(table["Original Licenses (Warning)"], "{table:?}");
    assert!(!table["Distribution Licenses"], "{table:?}");
    assert_eq!(ntia_spdx3(&maintained)["isNtiaConformant"], true);
    let doc = read(&maintained);
    let persons: BTreeSet<&str> = graph_of(&doc, "Person")
        .iter()
        .map(|p| p["externalIdentifier"][0]["identifier"].as_str().unwrap())
        .collect();
    assert_eq!(
        persons,
        BTreeSet::from(["ada@example.org", "bob@example.org"])
    );
}
