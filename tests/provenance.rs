//! Provenance end to end with real Nix 2.8: a kernel-like build with the
//! post-build hook signing with a key Nix made, DSSE envelopes checked with
//! Python's `cryptography` and the Statement with in-toto-attestation,
//! verify against trusted keys, the attacks of the trust issue, realise
//! without rebuild, concurrency and crashes, bad input.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine as _;
use sha2::Digest as _;

const BUILDER_COMMIT: &str = "89abcdef0123456789abcdef0123456789abcdef";
const VARIANT: &str = "torch25-cxx11-cu124-x86_64-linux";
const INIT_PY: &str = "def gelu(x): return x\n";
const SO: &str = "binary kernel\n";

fn b64_sha256(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(text.as_bytes()))
}

/// A kernel-builder-shaped expression: outputs `out` (a variant directory
/// with `metadata.json` holding the digests computed here) and `dev`,
/// provenance in `__meta`, a nonce so that every test builds anew.
fn kernel_expr(nonce: &str) -> String {
    let metadata = format!(
        r#"{{"name":"activation","id":"activation-1.0.0","version":1,"license":"Apache-2.0","python-depends":[],"backend":{{"type":"cuda"}},"digest":{{"algorithm":"sha256","files":{{"activation/__init__.py":"{}","activation/_activation.so":"{}"}}}}}}"#,
        b64_sha256(INIT_PY),
        b64_sha256(SO)
    );
    format!(
        r#"{{ kernelCommit, kernelDirty ? false, metadataCommit ? null }}:
derivation {{
  name = "activation-kernel-1.0.0";
  system = "x86_64-linux";
  builder = "/bin/bash";
  nonce = "{nonce}";
  outputs = [ "dev" "out" ];
  __structuredAttrs = true;
  # kernels' metadata.json; with metadataCommit, also its own provenance
  # block (outside the digest) as kernel-builder writes it — which bakes the
  # commit into the output, so only the test of that block sets it.
  metadata = builtins.toJSON ((builtins.fromJSON ''{metadata}'')
    // (if metadataCommit == null then {{ }} else {{
      provenance = {{
        kernel-builder = {{ version = "0.17.0"; commit = "{BUILDER_COMMIT}"; dirty = false; }};
        kernel = {{ commit = metadataCommit; dirty = kernelDirty; }};
      }};
    }}));
  args = [ "-euc" ''
    . ./.attrs.sh
    out=''${{outputs[out]}}; dev=''${{outputs[dev]}}
    v=$out/{VARIANT}
    /bin/mkdir -p $v/activation/__pycache__ $dev
    printf "%s" "$metadata" > $v/metadata.json
    printf 'def gelu(x): return x\n' > $v/activation/__init__.py
    printf 'binary kernel\n' > $v/activation/_activation.so
    printf 'cached' > $v/activation/__pycache__/__init__.cpython-311.pyc
    echo headers > $dev/activation.h
  '' ];
  __meta = {{
    description = "Activation kernels";
    license = "asl20";
    provenance = {{
      kernel-builder = {{ version = "0.17.0"; commit = "{BUILDER_COMMIT}"; dirty = false; }};
      kernel = {{ commit = kernelCommit; dirty = kernelDirty; source = "git+https://example.org/activation"; }};
    }};
  }};
  requiredSystemFeatures = [ "derivation-meta" ];
}}
"#
    )
}

fn nonce() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}-{nanos}", std::process::id())
}

fn commit(n: u8) -> String {
    format!("{n:x}").repeat(40)
}

fn drvmeta(args: &[&str]) -> Output {
    drvmeta_env(args, &[])
}

fn drvmeta_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = support::drvmeta_command(args);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

/// `provenance verify` trusting exactly `keys` (within a deadline: a
/// planted FIFO must not hang it).
fn verify_trusting(records: &str, keys: &[&str], path: &str) -> Output {
    let mut args = vec!["provenance", "verify", "--records", records];
    for key in keys {
        args.extend(["--trusted-key", key]);
    }
    args.push(path);
    drvmeta_within(&args, 60)
}

/// The Statement inside a record file (a DSSE envelope).
fn statement_of(file: &Path) -> serde_json::Value {
    let envelope: serde_json::Value =
        serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    let payload = base64::engine::general_purpose::STANDARD
        .decode(envelope["payload"].as_str().unwrap())
        .unwrap();
    serde_json::from_slice(&payload).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Build `expr` with `drvmeta hook` as Nix's post-build-hook writing into
/// `records`; returns the output paths and the build log.
fn build_with_hook(
    dir: &Path,
    expr: &str,
    records: &Path,
    key: Option<&Path>,
    args: &[&str],
) -> (Vec<String>, String) {
    let file = dir.join("kernel.nix");
    std::fs::write(&file, expr).unwrap();
    let hook = support::write_hook_script(dir, records.to_str().unwrap(), key);
    let output = support::nix("nix-build")
        .arg(&file)
        .args(args)
        .arg("--no-out-link")
        .args(support::META_BUILD_OPTIONS)
        .arg("--option")
        .arg("post-build-hook")
        .arg(&hook)
        .output()
        .unwrap();
    let log = stderr(&output);
    assert!(output.status.success(), "nix-build failed:\n{log}");
    // nix-build prints the default output only: ask for all of them.
    let printed = String::from_utf8(output.stdout).unwrap();
    let drv = support::run(
        support::nix("nix-store").args(["--query", "--deriver", printed.trim()]),
        "deriver",
    );
    let outs = support::run(
        support::nix("nix-store").args(["--query", "--outputs", drv.trim()]),
        "outputs",
    );
    (outs.lines().map(str::to_owned).collect(), log)
}

/// The records filed under output paths; the copies a kernel record also
/// gets under `v-<variant digest>/` are left out (see `variant_record_files`).
fn record_files(records: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = walk(records)
        .into_iter()
        .filter(|p| {
            let name = p.to_string_lossy();
            let in_variant_index = p
                .strip_prefix(records)
                .ok()
                .and_then(|rel| rel.components().next())
                .is_some_and(|c| c.as_os_str().to_string_lossy().starts_with("v-"));
            !in_variant_index && (name.ends_with(".dsse.json") || name.ends_with(".intoto.json"))
        })
        .collect();
    files.sort();
    files
}

/// The copies of kernel records filed under `v-<variant digest>/`.
fn variant_record_files(records: &Path) -> Vec<PathBuf> {
    let all = walk(records);
    let by_output = record_files(records);
    let mut files: Vec<PathBuf> = all
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".dsse.json") && !by_output.contains(p))
        .collect();
    files.sort();
    files
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

fn nix_nar_hash_hex(path: &str) -> String {
    let out = support::run(
        support::nix("nix-store").args(["--query", "--hash", path]),
        "query hash",
    );
    let base32 = out.trim().strip_prefix("sha256:").unwrap();
    let bytes = nix_derivation::nixbase32::decode(base32.as_bytes()).unwrap();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Check records with independent implementations: each file is a DSSE
/// envelope whose signatures verify with Python's `cryptography` (ed25519
/// over DSSE's PAE, written out here) against the public keys Nix wrote
/// (`name:base64`), and whose payload passes in-toto-attestation's
/// Statement.validate() and parses into the SLSA v1 Provenance protobuf.
/// Returns the number of signatures verified.
fn validate_records(files: &[PathBuf], public_keys: &[&str]) -> usize {
    let script = r#"
import base64, json, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from google.protobuf import json_format
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
keys = {}
for k in json.loads(sys.argv[1]):
    name, b64 = k.split(":", 1)
    keys[name] = Ed25519PublicKey.from_public_bytes(base64.b64decode(b64))
def pae(t, body):
    t = t.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(body), body)
signed = 0
for f in sys.argv[2:]:
    envelope = json.load(open(f))
    assert envelope["payloadType"] == "application/vnd.in-toto+json", f
    payload = base64.b64decode(envelope["payload"])
    for s in envelope["signatures"]:
        keys[s["keyid"]].verify(base64.b64decode(s["sig"]), pae(envelope["payloadType"], payload))
        signed += 1
    text = payload.decode()
    Statement.copy_from_pb(json_format.Parse(text, statement_pb2.Statement())).validate()
    json_format.ParseDict(json.loads(text)["predicate"], provenance_pb2.Provenance())
print("valid", len(sys.argv) - 2, "signatures", signed)
"#;
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(serde_json::to_string(public_keys).unwrap())
        .args(files)
        .output()
        .expect("python3 runs (pip install in-toto-attestation cryptography)");
    assert!(
        output.status.success(),
        "a record does not check out (pip install in-toto-attestation cryptography if missing):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let words: Vec<&str> = stdout.split_whitespace().collect();
    assert_eq!(
        words[..2],
        ["valid", &files.len().to_string()[..]],
        "{stdout}"
    );
    words[3].parse().unwrap()
}

#[test]
fn hook_records_verify_and_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("records");
    let kernel_commit = commit(1);
    let (secret, public) = support::nix_key(dir.path(), "builder-1");
    let (outs, log) = build_with_hook(
        dir.path(),
        &kernel_expr(&nonce()),
        &records,
        Some(&secret),
        &["--argstr", "kernelCommit", &kernel_commit],
    );
    assert!(log.contains("running post-build-hook"), "{log}");
    assert!(log.contains("recorded 2 output(s)"), "{log}");
    assert_eq!(outs.len(), 2, "{outs:?}");

    // A record for every output, whose digest is Nix's narHash.
    let files = record_files(&records);
    assert_eq!(files.len(), 2, "{files:?}");
    for out in &outs {
        let hash_part = &out["/nix/store/".len()..][..32];
        let file = files
            .iter()
            .find(|f| f.parent().unwrap().ends_with(hash_part))
            .unwrap_or_else(|| panic!("no record for {out}"));
        let statement = statement_of(file);
        let subject = statement["subject"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == out.as_str())
            .unwrap();
        assert_eq!(subject["digest"]["sha256"], nix_nar_hash_hex(out), "{out}");
        assert!(subject["annotations"]["narSize"].as_u64().unwrap() > 0);
        let deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
            .as_array()
            .unwrap();
        let kernel = deps.iter().find(|d| d["name"] == "kernel").unwrap();
        assert_eq!(kernel["digest"]["gitCommit"], kernel_commit.as_str());
        assert_eq!(kernel["annotations"]["dirty"], false);
        let builder = deps.iter().find(|d| d["name"] == "kernel-builder").unwrap();
        assert_eq!(builder["digest"]["gitCommit"], BUILDER_COMMIT);
        assert_eq!(builder["annotations"]["version"], "0.17.0");
        assert_eq!(
            statement["predicate"]["buildDefinition"]["internalParameters"]["metaOptIn"],
            true
        );
        let finished = statement["predicate"]["runDetails"]["metadata"]["finishedOn"]
            .as_str()
            .unwrap();
        assert!(
            finished.ends_with('Z') && !finished.contains('.'),
            "{finished}"
        );
        assert_eq!(
            statement["predicate"]["runDetails"]["builder"]["id"], "urn:drvmeta:nix-key:builder-1",
            "a signed record's builder id names its key"
        );
    }
    assert_eq!(
        validate_records(&files, &[&public]),
        2,
        "both records signed"
    );

    let out = outs.iter().find(|o| !o.ends_with("-dev")).unwrap();
    let records_arg = records.to_str().unwrap();
    let ok = verify_trusting(records_arg, &[&public], out);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(text.contains("2 kernel file(s) match"), "{text}");
    assert!(
        text.contains("attested by 1 trusted key(s): builder-1"),
        "{text}"
    );
    // Trusted through the environment too, as Nix's trusted-public-keys.
    let (_, stranger) = support::nix_key(dir.path(), "stranger-1");
    let by_env = drvmeta_env(
        &["provenance", "verify", "--records", records_arg, out],
        &[("DRVMETA_TRUSTED_KEYS", &format!("{stranger} {public}"))],
    );
    assert_eq!(by_env.status.code(), Some(0), "{}", stderr(&by_env));
    // Not trusted: the same record does not count.
    let untrusted = verify_trusting(records_arg, &[&stranger], out);
    assert_eq!(untrusted.status.code(), Some(1), "{}", stderr(&untrusted));
    assert!(
        stderr(&untrusted).contains("signed by untrusted key builder-1"),
        "{}",
        stderr(&untrusted)
    );

    let show = drvmeta(&[
        "provenance",
        "show",
        "--records",
        records_arg,
        "--trusted-key",
        &public,
        out,
    ]);
    assert_eq!(show.status.code(), Some(0), "{}", stderr(&show));
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(
        text.contains(&kernel_commit) && text.contains("(clean)") && text.contains("0.17.0"),
        "{text}"
    );
    assert!(text.contains("signed by trusted key builder-1"), "{text}");

    // Tamper with a copy of the output: a changed file fails verify.
    let copy = dir
        .path()
        .join("copy")
        .join(out.rsplit('/').next().unwrap());
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    assert!(
        Command::new("cp")
            .arg("-r")
            .arg(out)
            .arg(&copy)
            .status()
            .unwrap()
            .success()
    );
    let copy_str = copy.to_str().unwrap();
    let pristine = verify_trusting(records_arg, &[&public], copy_str);
    assert_eq!(
        pristine.status.code(),
        Some(0),
        "an exact copy verifies: {}",
        stderr(&pristine)
    );
    let so = copy.join(VARIANT).join("activation/_activation.so");
    make_writable(&copy);
    std::fs::write(&so, "evil kernel\n").unwrap();
    let tampered = verify_trusting(records_arg, &[&public], copy_str);
    assert_eq!(tampered.status.code(), Some(1));
    let err = stderr(&tampered);
    assert!(
        err.contains("hashes to") && err.contains("_activation.so"),
        "{err}"
    );

    // Restore the file but edit the metadata.json digest instead.
    std::fs::write(&so, SO).unwrap();
    let metadata = copy.join(VARIANT).join("metadata.json");
    let edited = std::fs::read_to_string(&metadata)
        .unwrap()
        .replace(&b64_sha256(INIT_PY), &b64_sha256("other"));
    std::fs::write(&metadata, edited).unwrap();
    let digest = verify_trusting(records_arg, &[&public], copy_str);
    assert_eq!(digest.status.code(), Some(1));
    assert!(
        stderr(&digest).contains("activation/__init__.py"),
        "{}",
        stderr(&digest)
    );
}

fn make_writable(dir: &Path) {
    assert!(
        Command::new("chmod")
            .args(["-R", "u+w"])
            .arg(dir)
            .status()
            .unwrap()
            .success()
    );
}

#[test]
fn realise_twice_with_a_new_commit_builds_nothing_the_second_time() {
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("records");
    let file = dir.path().join("kernel.nix");
    std::fs::write(&file, kernel_expr(&nonce())).unwrap();
    let (first, second) = (
        instantiate_kernel_file(&file, &commit(2)),
        instantiate_kernel_file(&file, &commit(3)),
    );
    assert_ne!(first, second, "the commit is in the derivation");
    let (secret, public) = support::nix_key(dir.path(), "realiser-1");
    let realise = |drv: &str| {
        Command::new(env!("CARGO_BIN_EXE_drvmeta"))
            .args([
                "realise",
                "--no-out-link",
                "--records",
                records.to_str().unwrap(),
                drv,
            ])
            .env("DRVMETA_SIGNING_KEY", &secret)
            .env(
                "NIX_CONFIG",
                format!("{}\nsandbox = false", support::NIX_CONFIG),
            )
            .output()
            .unwrap()
    };
    let one = realise(&first);
    assert_eq!(one.status.code(), Some(0), "{}", stderr(&one));
    assert!(
        stderr(&one).contains("building"),
        "the first realise builds: {}",
        stderr(&one)
    );
    let two = realise(&second);
    assert_eq!(two.status.code(), Some(0), "{}", stderr(&two));
    assert!(
        !stderr(&two).contains("building"),
        "the second realise built something:\n{}",
        stderr(&two)
    );
    assert_eq!(one.stdout, two.stdout, "same output paths");

    // Both records exist for the output, each with its own commit.
    let out = String::from_utf8(two.stdout)
        .unwrap()
        .lines()
        .find(|l| !l.ends_with("-dev"))
        .unwrap()
        .to_owned();
    let show = drvmeta(&[
        "provenance",
        "show",
        "--json",
        "--records",
        records.to_str().unwrap(),
        &out,
    ]);
    assert_eq!(show.status.code(), Some(0), "{}", stderr(&show));
    let value: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    let commits: Vec<&str> = value["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let deps = r["statement"]["predicate"]["buildDefinition"]["resolvedDependencies"]
                .as_array()
                .unwrap();
            deps.iter().find(|d| d["name"] == "kernel").unwrap()["digest"]["gitCommit"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(commits.len(), 2, "{value}");
    assert!(
        commits.contains(&commit(2).as_str()) && commits.contains(&commit(3).as_str()),
        "{commits:?}"
    );
    for record in value["records"].as_array().unwrap() {
        let external = &record["statement"]["predicate"]["buildDefinition"]["externalParameters"];
        assert!(
            external["originalDerivation"] == first.as_str()
                || external["originalDerivation"] == second.as_str()
        );
        assert_ne!(external["derivation"], external["originalDerivation"]);
    }
    let files = record_files(&records);
    assert_eq!(
        validate_records(&files, &[&public]),
        files.len(),
        "all signed"
    );
    let verify = verify_trusting(records.to_str().unwrap(), &[&public], &out);
    assert_eq!(verify.status.code(), Some(0), "{}", stderr(&verify));
    assert!(
        String::from_utf8_lossy(&verify.stdout).contains("matches 2 record(s)"),
        "both commits' records attest the one output: {}",
        String::from_utf8_lossy(&verify.stdout)
    );
    // show by derivation finds its own record only.
    let by_drv = drvmeta(&[
        "provenance",
        "show",
        "--json",
        "--records",
        records.to_str().unwrap(),
        &first,
    ]);
    let by_drv: serde_json::Value = serde_json::from_slice(&by_drv.stdout).unwrap();
    assert_eq!(
        by_drv["records"].as_array().unwrap().len(),
        2,
        "one per output: {by_drv}"
    );
}

/// Instantiate a fresh kernel expression with `commit`; its drv path.
fn instantiate_kernel(dir: &Path, kernel_commit: &str) -> String {
    let file = dir.join("kernel.nix");
    std::fs::write(&file, kernel_expr(&nonce())).unwrap();
    instantiate_kernel_file(&file, kernel_commit)
}

/// Instantiate the kernel expression in `file` with `commit`; its drv path.
fn instantiate_kernel_file(file: &Path, kernel_commit: &str) -> String {
    let drv = support::run(
        support::nix("nix-instantiate")
            .arg(file)
            .args(["--argstr", "kernelCommit", kernel_commit]),
        "instantiate",
    );
    drv.lines()
        .next()
        .unwrap()
        .split('!')
        .next()
        .unwrap()
        .to_owned()
}

/// Build the kernel once (no hook) and return its drv path.
fn built_kernel(dir: &Path) -> String {
    let drv = instantiate_kernel(dir, &commit(4));
    support::run(
        support::nix("nix-store")
            .args(["--realise", &drv])
            .args(support::META_BUILD_OPTIONS),
        "realise",
    );
    drv
}

#[test]
fn concurrent_writers_and_killed_writers_never_leave_bad_records() {
    let dir = tempfile::tempdir().unwrap();
    let drv = built_kernel(dir.path());
    let records = dir.path().join("records");
    // Sixteen processes record the same derivation at once.
    let children: Vec<_> = (0..16)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_drvmeta"))
                .args([
                    "record",
                    "--records",
                    records.to_str().unwrap(),
                    "--builder-id",
                ])
                .arg(format!("urn:test:{i}"))
                .arg(&drv)
                .env("NIX_CONFIG", support::NIX_CONFIG)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    // Every writer's record is kept (each its own builder id), none lost.
    let files = record_files(&records);
    assert_eq!(files.len(), 32, "16 records per output: {files:?}");
    validate_records(&files, &[]);

    // Signing writers killed at random moments leave no partial record.
    let (secret, public) = support::nix_key(dir.path(), "killed-1");
    let killed = dir.path().join("killed");
    for i in 0..30_u64 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_drvmeta"))
            .args(["record", "--records", killed.to_str().unwrap(), &drv])
            .arg("--signing-key")
            .arg(&secret)
            .env("NIX_CONFIG", support::NIX_CONFIG)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(i * 3 % 40));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        for file in record_files(&killed) {
            let bytes = std::fs::read(&file).unwrap();
            assert!(
                serde_json::from_slice::<drvmeta::provenance::sign::Envelope>(&bytes).is_ok(),
                "partial record {}",
                file.display()
            );
        }
    }
    // Whatever was interrupted, a later run completes the set, and every
    // record left is whole and validly signed.
    let done = drvmeta(&[
        "record",
        "--records",
        killed.to_str().unwrap(),
        "--signing-key",
        secret.to_str().unwrap(),
        &drv,
    ]);
    assert_eq!(done.status.code(), Some(0), "{}", stderr(&done));
    let files = record_files(&killed);
    assert_eq!(validate_records(&files, &[&public]), files.len());
}

#[test]
fn bad_input_gives_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("records");
    let records_arg = records.to_str().unwrap();

    // The hook outside Nix.
    let no_drv = drvmeta(&["hook", "--records", records_arg]);
    assert_eq!(no_drv.status.code(), Some(1));
    assert!(
        stderr(&no_drv).contains("DRV_PATH is not set"),
        "{}",
        stderr(&no_drv)
    );
    let best = drvmeta(&["hook", "--best-effort", "--records", records_arg]);
    assert_eq!(best.status.code(), Some(0));
    assert!(
        stderr(&best).contains("warning: provenance not recorded"),
        "{}",
        stderr(&best)
    );

    // A derivation that was never built.
    let drv = instantiate_kernel(dir.path(), &commit(5));
    let unbuilt = drvmeta(&["record", "--records", records_arg, &drv]);
    assert_eq!(unbuilt.status.code(), Some(1));
    assert!(
        stderr(&unbuilt).contains("not valid in the Nix store"),
        "{}",
        stderr(&unbuilt)
    );

    // An unusable records directory (a file).
    let built = built_kernel(dir.path());
    let not_dir = dir.path().join("not-a-dir");
    std::fs::write(&not_dir, "x").unwrap();
    let unwritable = drvmeta(&["record", "--records", not_dir.to_str().unwrap(), &built]);
    assert_eq!(unwritable.status.code(), Some(1));
    assert!(
        stderr(&unwritable).contains("not-a-dir"),
        "{}",
        stderr(&unwritable)
    );

    // A corrupt record is named, and the others still count.
    let good = drvmeta(&["record", "--records", records_arg, &built]);
    assert_eq!(good.status.code(), Some(0), "{}", stderr(&good));
    let files = record_files(&records);
    let victim = files[0].clone();
    let sibling = victim.with_file_name("0000000000000000000000000000000a.intoto.json");
    std::fs::write(&sibling, b"{ not json").unwrap();
    let output_dir = victim
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let outs = support::run(
        support::nix("nix-store").args(["--query", "--outputs", &built]),
        "outputs",
    );
    let out = outs
        .lines()
        .find(|o| o.contains(&output_dir))
        .unwrap()
        .to_owned();
    let show = drvmeta(&["provenance", "show", "--records", records_arg, &out]);
    assert_eq!(show.status.code(), Some(1));
    assert!(
        stderr(&show).contains(&sibling.display().to_string()),
        "{}",
        stderr(&show)
    );
    assert!(
        String::from_utf8_lossy(&show.stdout).contains(&commit(4)),
        "the good record is still shown"
    );
    let verify = drvmeta(&["provenance", "verify", "--records", records_arg, &out]);
    assert_eq!(verify.status.code(), Some(1));
    assert!(stderr(&verify).contains("not JSON"), "{}", stderr(&verify));

    // An output with no records at all.
    let none = drvmeta(&[
        "provenance",
        "verify",
        "--records",
        dir.path().join("empty").to_str().unwrap(),
        &out,
    ]);
    assert_eq!(none.status.code(), Some(1));
    assert!(
        stderr(&none).contains("no provenance record"),
        "{}",
        stderr(&none)
    );
}

#[test]
fn the_nixos_hook_snippet_parses() {
    let snippet = support::project_dir().join("nix/post-build-hook.nix");
    support::run(
        support::nix("nix-instantiate").arg("--parse").arg(&snippet),
        "parse nix/post-build-hook.nix",
    );
    // It wires drvmeta hook with the records directory.
    let text = std::fs::read_to_string(&snippet).unwrap();
    assert!(
        text.contains("drvmeta hook")
            && text.contains("--records")
            && text.contains("post-build-hook")
    );
}

#[test]
fn the_hook_handles_content_addressed_and_multi_output_builds() {
    // Floating content-addressed derivations, their (deferred) dependents,
    // a multi-output derivation and a fixed output, built with the hook:
    // the build must never fail because of the hook, and every build Nix
    // names outputs for gets a record.
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("records");
    let n = nonce();
    let expr = format!(
        r#"let
  dep = derivation {{ name = "dep"; system = "x86_64-linux"; builder = "/bin/sh"; args = ["-c" "echo {n} > $out"]; }};
  ca = derivation {{ name = "ca"; system = "x86_64-linux"; builder = "/bin/sh"; args = ["-c" "echo ${{dep}} > $out"]; __contentAddressed = true; outputHashMode = "recursive"; outputHashAlgo = "sha256"; }};
  fod = derivation {{ name = "fod-{n}"; system = "x86_64-linux"; builder = "/bin/sh"; args = ["-c" "/usr/bin/printf hello > $out"]; outputHashMode = "flat"; outputHashAlgo = "sha256"; outputHash = builtins.hashString "sha256" "hello"; }};
  multi = derivation {{ name = "multi"; outputs = ["out" "lib"]; system = "x86_64-linux"; builder = "/bin/sh"; args = ["-c" "echo ${{ca}} ${{fod}} > $out; echo x > $lib"]; }};
in derivation {{ name = "top"; system = "x86_64-linux"; builder = "/bin/sh"; args = ["-c" "echo ${{ca}} ${{multi.lib}} > $out"]; }}
"#
    );
    let (secret, public) = support::nix_key(dir.path(), "ca-builder-1");
    let (outs, log) = build_with_hook(dir.path(), &expr, &records, Some(&secret), &[]);
    assert!(!log.contains("failed with exit code"), "{log}");
    let hook_runs = log.matches("running post-build-hook").count();
    let recorded = log.matches(": recorded ").count();
    let warned = log.matches("no provenance record for this build").count();
    assert_eq!(
        recorded + warned,
        hook_runs,
        "every hook run records or says why not:\n{log}"
    );
    assert!(recorded >= 4, "{log}");
    let files = record_files(&records);
    assert_eq!(validate_records(&files, &[&public]), files.len());
    // The top-level output has a record that verifies.
    let out = &outs[0];
    let verify = verify_trusting(records.to_str().unwrap(), &[&public], out);
    assert_eq!(verify.status.code(), Some(0), "{}", stderr(&verify));
}

/// Run `drvmeta hook` by hand with Nix's environment.
fn hook_with(records: &str, key: &Path, drv: &str, out_paths: &std::ffi::OsStr) -> Output {
    Command::new(env!("CARGO_BIN_EXE_drvmeta"))
        .args(["hook", "--records", records, "--signing-key"])
        .arg(key)
        .env("DRV_PATH", drv)
        .env("OUT_PATHS", out_paths)
        .env("NIX_CONFIG", support::NIX_CONFIG)
        .output()
        .unwrap()
}

/// Run drvmeta with a deadline: a hang is a failure.
fn drvmeta_within(args: &[&str], seconds: u64) -> Output {
    support::output_within(
        Command::new(env!("CARGO_BIN_EXE_drvmeta"))
            .args(args)
            .env("NIX_CONFIG", support::NIX_CONFIG),
        seconds,
    )
}

#[test]
fn forged_changed_untrusted_and_planted_records_never_count() {
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("records");
    let records_arg = records.to_str().unwrap();
    let (secret, public) = support::nix_key(dir.path(), "builder-1");
    let (stranger_secret, stranger) = support::nix_key(dir.path(), "stranger-1");
    let drv = instantiate_kernel(dir.path(), &commit(6));
    let drv_hash = &drv["/nix/store/".len()..][..32];
    let outs = support::run(
        support::nix("nix-store").args(["--query", "--outputs", &drv]),
        "outputs",
    );
    let out = outs
        .lines()
        .find(|o| !o.ends_with("-dev"))
        .unwrap()
        .to_owned();
    let out_hash = &out["/nix/store/".len()..][..32];

    // Files planted before the build where a record could be expected: an
    // empty file, a symlink to /dev/zero and a FIFO at the old predictable
    // names. None blocks the genuine record; none hangs a reader.
    let out_dir = records.join(out_hash);
    std::fs::create_dir_all(&out_dir).unwrap();
    std::fs::write(out_dir.join(format!("{drv_hash}.intoto.json")), b"").unwrap();
    std::os::unix::fs::symlink("/dev/zero", out_dir.join(format!("{drv_hash}.dsse.json"))).unwrap();
    assert!(
        Command::new("mkfifo")
            .arg(out_dir.join(format!("{drv_hash}.fifo.dsse.json")))
            .status()
            .unwrap()
            .success()
    );
    support::run(
        support::nix("nix-store")
            .args(["--realise", &drv])
            .args(support::META_BUILD_OPTIONS),
        "realise",
    );
    // The hook, under umask 000.
    let hooked = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 000; exec {} hook --records {records_arg} --signing-key {}",
            env!("CARGO_BIN_EXE_drvmeta"),
            secret.display()
        ))
        .env("DRV_PATH", &drv)
        .env(
            "OUT_PATHS",
            outs.split_whitespace().collect::<Vec<_>>().join(" "),
        )
        .env("NIX_CONFIG", support::NIX_CONFIG)
        .output()
        .unwrap();
    assert_eq!(hooked.status.code(), Some(0), "{}", stderr(&hooked));
    let genuine: Vec<PathBuf> = record_files(&records)
        .into_iter()
        .filter(|f| statement_is_readable(f))
        .collect();
    assert_eq!(
        genuine.len(),
        2,
        "one genuine record per output: {genuine:?}"
    );
    use std::os::unix::fs::PermissionsExt as _;
    for file in &genuine {
        assert_eq!(
            std::fs::metadata(file).unwrap().permissions().mode() & 0o777,
            0o644
        );
        let parent = file.parent().unwrap();
        assert_eq!(
            std::fs::metadata(parent).unwrap().permissions().mode() & 0o777,
            0o755
        );
    }
    let ok = verify_trusting(records_arg, &[&public], &out);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    let err = stderr(&ok);
    assert!(
        err.contains("a FIFO") && err.contains("a symlink"),
        "planted files are named: {err}"
    );

    // A forged record: valid shape, unsigned, naming another derivation,
    // an evil kernel source and builder.
    let genuine_out = genuine
        .iter()
        .find(|f| f.parent().unwrap().ends_with(out_hash))
        .unwrap()
        .clone();
    let mut forged = statement_of(&genuine_out);
    let evil_drv = "/nix/store/ffffffffffffffffffffffffffffffff-totally-legit.drv";
    forged["predicate"]["buildDefinition"]["externalParameters"]["derivation"] = evil_drv.into();
    forged["predicate"]["buildDefinition"]["externalParameters"]
        .as_object_mut()
        .unwrap()
        .remove("originalDerivation");
    forged["predicate"]["runDetails"]["builder"]["id"] = "trusted-ci".into();
    let write_envelope = |statement: &serde_json::Value,
                          key: Option<&Path>,
                          drv_hash: &str,
                          sig_from: Option<&Path>| {
        let payload = serde_json::to_vec(statement).unwrap();
        let key = key.map(|k| drvmeta::provenance::sign::SecretKey::read(k).unwrap());
        let mut envelope = drvmeta::provenance::sign::Envelope::new(&payload, key.as_ref());
        if let Some(file) = sig_from {
            let original: drvmeta::provenance::sign::Envelope =
                serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
            envelope.signatures = original.signatures;
        }
        let bytes = serde_json::to_vec(&envelope).unwrap();
        let store = drvmeta::provenance::store::RecordStore::new(&records);
        store.write(out_hash, drv_hash, &bytes).unwrap().0
    };
    let forged_file = write_envelope(&forged, None, "ffffffffffffffffffffffffffffffff", None);
    // A changed payload under the genuine signature.
    let mut changed = statement_of(&genuine_out);
    changed["predicate"]["buildDefinition"]["resolvedDependencies"][0]["uri"] =
        "git+https://evil.example/backdoor".into();
    let changed_file = write_envelope(&changed, None, drv_hash, Some(&genuine_out));
    // A record signed by a key that is not trusted.
    let stranger_file = {
        let mut statement = statement_of(&genuine_out);
        statement["predicate"]["runDetails"]["builder"]["id"] =
            "urn:drvmeta:nix-key:stranger-1".into();
        write_envelope(&statement, Some(&stranger_secret), drv_hash, None)
    };
    // Signed by the trusted key, but claiming an output the derivation does
    // not have: the .drv is at hand, so that does not count either.
    let extra_file = {
        let mut statement = statement_of(&genuine_out);
        let mut evil = statement["subject"][0].clone();
        evil["name"] = "/nix/store/dddddddddddddddddddddddddddddddd-evil".into();
        statement["subject"].as_array_mut().unwrap().push(evil);
        write_envelope(&statement, Some(&secret), drv_hash, None)
    };
    let verify = drvmeta_within(
        &[
            "provenance",
            "verify",
            "--records",
            records_arg,
            "--trusted-key",
            &public,
            "--json",
            &out,
        ],
        30,
    );
    assert_eq!(
        verify.status.code(),
        Some(0),
        "the genuine record still verifies: {}",
        stderr(&verify)
    );
    let report: serde_json::Value = serde_json::from_slice(&verify.stdout).unwrap();
    let report = &report["outputs"][0];
    assert_eq!(report["matching"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(report["keys"], serde_json::json!(["builder-1"]));
    let ignored = report["ignored"].to_string();
    for (file, reason) in [
        (&forged_file, "unsigned"),
        (&changed_file, "does not verify"),
        (&stranger_file, "untrusted key stranger-1"),
        (&extra_file, "which is not an output of"),
    ] {
        assert!(
            ignored.contains(&format!("{}: not counted", file.display()))
                && ignored.contains(reason),
            "{} ({reason}) in {ignored}",
            file.display()
        );
    }
    // show marks each record's trust.
    let show = drvmeta_within(
        &[
            "provenance",
            "show",
            "--json",
            "--records",
            records_arg,
            "--trusted-key",
            &public,
            &out,
        ],
        30,
    );
    let show: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    let trust: std::collections::BTreeMap<String, String> = show["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["file"].as_str().unwrap().to_owned(),
                r["trust"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(trust[forged_file.to_str().unwrap()], "unsigned");
    assert_eq!(trust[changed_file.to_str().unwrap()], "bad-signature");
    assert_eq!(trust[stranger_file.to_str().unwrap()], "untrusted");
    assert_eq!(trust[genuine_out.to_str().unwrap()], "trusted");
    assert_eq!(
        show["attestations"],
        serde_json::json!([{
            "output": out,
            "narSha256": statement_of(&genuine_out)["subject"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["name"] == out.as_str())
                .unwrap()["digest"]["sha256"],
            "keys": ["builder-1"],
        }]),
        "only the trusted record attests"
    );

    // Without the genuine record nothing counts: the forged, changed and
    // untrusted ones never make the output verify.
    std::fs::remove_file(&genuine_out).unwrap();
    let alone = verify_trusting(records_arg, &[&public], &out);
    assert_eq!(alone.status.code(), Some(1), "{}", stderr(&alone));
    assert!(
        stderr(&alone).contains("no provenance record signed by a trusted key"),
        "{}",
        stderr(&alone)
    );
    // ... unless asked for, loudly.
    let loud = drvmeta_within(
        &[
            "provenance",
            "verify",
            "--records",
            records_arg,
            "--allow-unsigned",
            &out,
        ],
        30,
    );
    assert!(
        stderr(&loud).contains("--allow-unsigned"),
        "{}",
        stderr(&loud)
    );

    // Two builders, two keys: independent attestations of one NAR hash.
    let both = dir.path().join("both");
    let both_arg = both.to_str().unwrap();
    for (key, name) in [(&secret, "builder-1"), (&stranger_secret, "stranger-1")] {
        let recorded = drvmeta(&[
            "record",
            "--json",
            "--records",
            both_arg,
            "--signing-key",
            key.to_str().unwrap(),
            &drv,
        ]);
        assert_eq!(recorded.status.code(), Some(0), "{}", stderr(&recorded));
        let report: serde_json::Value = serde_json::from_slice(&recorded.stdout).unwrap();
        let entries = report["records"].as_array().unwrap();
        assert_eq!(entries.len(), 2, "{report}");
        for entry in entries {
            assert_eq!(entry["signedBy"], name);
            assert_eq!(entry["new"], true);
            assert_eq!(entry["derivation"], drv.as_str());
            assert!(Path::new(entry["file"].as_str().unwrap()).is_file());
        }
    }
    let two = verify_trusting(both_arg, &[&public, &stranger], &out);
    assert!(
        String::from_utf8_lossy(&two.stdout)
            .contains("attested by 2 trusted key(s): builder-1, stranger-1"),
        "{}",
        String::from_utf8_lossy(&two.stdout)
    );
    let one = verify_trusting(both_arg, &[&public], &out);
    assert!(
        String::from_utf8_lossy(&one.stdout).contains("attested by 1 trusted key(s): builder-1"),
        "{}",
        String::from_utf8_lossy(&one.stdout)
    );
}

fn statement_is_readable(file: &Path) -> bool {
    std::fs::symlink_metadata(file).is_ok_and(|m| m.is_file())
        && std::fs::read(file)
            .ok()
            .and_then(|b| serde_json::from_slice::<drvmeta::provenance::sign::Envelope>(&b).ok())
            .is_some()
}

#[test]
fn the_hook_records_only_what_it_is_given_truthfully() {
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("records");
    let records_arg = records.to_str().unwrap();
    let (secret, _) = support::nix_key(dir.path(), "builder-1");
    let first = built_kernel(dir.path());
    let second = built_kernel(dir.path());
    let outputs = |drv: &str| -> Vec<String> {
        support::run(
            support::nix("nix-store").args(["--query", "--outputs", drv]),
            "outputs",
        )
        .lines()
        .map(str::to_owned)
        .collect()
    };
    let (first_outs, second_outs) = (outputs(&first), outputs(&second));
    let os = |s: &str| std::ffi::OsString::from(s);

    // Another derivation's output with the same name.
    let other = second_outs.iter().find(|o| !o.ends_with("-dev")).unwrap();
    let refused = hook_with(records_arg, &secret, &first, &os(other));
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("but that output is"),
        "{}",
        stderr(&refused)
    );

    // Duplicates.
    let out = first_outs.iter().find(|o| !o.ends_with("-dev")).unwrap();
    let twice = hook_with(records_arg, &secret, &first, &os(&format!("{out} {out}")));
    assert_eq!(twice.status.code(), Some(1), "{}", stderr(&twice));
    assert!(stderr(&twice).contains("given twice"), "{}", stderr(&twice));

    // Not UTF-8.
    use std::os::unix::ffi::OsStrExt as _;
    let bad = hook_with(
        records_arg,
        &secret,
        &first,
        std::ffi::OsStr::from_bytes(b"/nix/store/\xff"),
    );
    assert_eq!(bad.status.code(), Some(1), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("not UTF-8"), "{}", stderr(&bad));

    // A tampered copy of the .drv outside the store.
    let copy_dir = dir.path().join("copy");
    std::fs::create_dir_all(&copy_dir).unwrap();
    let copy = copy_dir.join(first.rsplit('/').next().unwrap());
    let text = std::fs::read_to_string(&first)
        .unwrap()
        .replace(&commit(4), &commit(9));
    std::fs::write(&copy, text).unwrap();
    let outside = hook_with(records_arg, &secret, copy.to_str().unwrap(), &os(out));
    assert_eq!(outside.status.code(), Some(1), "{}", stderr(&outside));
    assert!(
        stderr(&outside).contains("not in the store"),
        "{}",
        stderr(&outside)
    );
    let recorded = drvmeta(&["record", "--records", records_arg, copy.to_str().unwrap()]);
    assert_eq!(recorded.status.code(), Some(1), "{}", stderr(&recorded));
    assert!(
        stderr(&recorded).contains("do not hash to its store path"),
        "{}",
        stderr(&recorded)
    );
    assert!(record_files(&records).is_empty(), "nothing was recorded");

    // --best-effort turns a refusal into a warning, and records nothing.
    let best = Command::new(env!("CARGO_BIN_EXE_drvmeta"))
        .args(["hook", "--best-effort", "--records", records_arg])
        .env("DRV_PATH", &first)
        .env("OUT_PATHS", other)
        .env("NIX_CONFIG", support::NIX_CONFIG)
        .output()
        .unwrap();
    assert_eq!(best.status.code(), Some(0));
    assert!(
        stderr(&best).contains("warning: provenance not recorded"),
        "{}",
        stderr(&best)
    );
    assert!(record_files(&records).is_empty());
}

#[test]
fn metadata_json_provenance_must_agree_with_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, public) = support::nix_key(dir.path(), "builder-1");
    let build = |name: &str, args: &[&str]| {
        let sub = dir.path().join(name);
        std::fs::create_dir_all(&sub).unwrap();
        let records = sub.join("records");
        let (outs, _) =
            build_with_hook(&sub, &kernel_expr(&nonce()), &records, Some(&secret), args);
        let out = outs.into_iter().find(|o| !o.ends_with("-dev")).unwrap();
        let verify = drvmeta_within(
            &[
                "provenance",
                "verify",
                "--json",
                "--records",
                records.to_str().unwrap(),
                "--trusted-key",
                &public,
                &out,
            ],
            60,
        );
        let report: serde_json::Value = serde_json::from_slice(&verify.stdout).unwrap();
        (verify.status.code(), report["outputs"][0].clone())
    };
    // Agreeing: verifies, no warning.
    let (code, report) = build(
        "agree",
        &[
            "--argstr",
            "kernelCommit",
            &commit(7),
            "--argstr",
            "metadataCommit",
            &commit(7),
        ],
    );
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["warnings"], serde_json::json!([]));
    // Dirty in both: verifies, with a warning from metadata.json.
    let (code, report) = build(
        "dirty",
        &[
            "--argstr",
            "kernelCommit",
            &commit(7),
            "--argstr",
            "metadataCommit",
            &commit(7),
            "--arg",
            "kernelDirty",
            "true",
        ],
    );
    assert_eq!(code, Some(0), "{report}");
    assert!(
        report["warnings"].to_string().contains("dirty tree"),
        "{report}"
    );
    // metadata.json names another commit than __meta: a contradiction.
    let (code, report) = build(
        "contradiction",
        &[
            "--argstr",
            "kernelCommit",
            &commit(7),
            "--argstr",
            "metadataCommit",
            &commit(8),
        ],
    );
    assert_eq!(code, Some(1), "{report}");
    let problems = report["problems"].to_string();
    assert!(
        problems.contains(&format!("says kernel {}", commit(8))) && problems.contains(&commit(7)),
        "{problems}"
    );
}

#[test]
fn a_floating_output_must_be_registered_as_built_from_the_derivation() {
    // Two floating content-addressed derivations of the same name, built;
    // the hook for the first, given the second's output, refuses.
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("records");
    let (secret, _) = support::nix_key(dir.path(), "builder-1");
    let n = nonce();
    let build = |tag: &str| -> (String, String) {
        let file = dir.path().join(format!("ca-{tag}.nix"));
        std::fs::write(
            &file,
            format!(
                r#"let dep = derivation {{ name = "dep-{tag}-{n}"; system = "x86_64-linux"; builder = "/bin/sh"; args = ["-c" "echo {tag} > $out"]; }};
in derivation {{ name = "ca-same-name"; system = "x86_64-linux"; builder = "/bin/sh"; args = ["-c" "echo ${{dep}} > $out"]; __contentAddressed = true; outputHashMode = "recursive"; outputHashAlgo = "sha256"; }}"#
            ),
        )
        .unwrap();
        let drv = support::instantiate_file(&file);
        let out = support::run(
            support::nix("nix-store")
                .args(["--realise", &drv])
                .args(support::META_BUILD_OPTIONS),
            "realise",
        )
        .trim()
        .to_owned();
        (drv, out)
    };
    let (first_drv, first_out) = build("a");
    let (_, second_out) = build("b");
    let os = std::ffi::OsStr::new;
    let records_arg = records.to_str().unwrap();
    let genuine = hook_with(records_arg, &secret, &first_drv, os(&first_out));
    assert_eq!(genuine.status.code(), Some(0), "{}", stderr(&genuine));
    let other = hook_with(records_arg, &secret, &first_drv, os(&second_out));
    assert_eq!(other.status.code(), Some(1), "{}", stderr(&other));
    assert!(
        stderr(&other).contains("not this derivation's resolved form"),
        "{}",
        stderr(&other)
    );
}

#[test]
fn fill_metadata_writes_kernels_provenance_into_a_copy_from_the_verified_record() {
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("records");
    let records_arg = records.to_str().unwrap();
    let (secret, public) = support::nix_key(dir.path(), "builder-1");
    let kernel_commit = commit(0xa);
    let (outs, _) = build_with_hook(
        dir.path(),
        &kernel_expr(&nonce()),
        &records,
        Some(&secret),
        &["--argstr", "kernelCommit", &kernel_commit],
    );
    let out = outs.into_iter().find(|o| !o.ends_with("-dev")).unwrap();
    // The kernel output's record is also filed under its variant's digest,
    // byte for byte the record filed under the output.
    let indexed = variant_record_files(&records);
    assert_eq!(indexed.len(), 1, "{indexed:?}");
    let indexed_bytes = std::fs::read(&indexed[0]).unwrap();
    assert!(
        record_files(&records)
            .iter()
            .any(|p| std::fs::read(p).unwrap() == indexed_bytes),
        "the variant index holds a record filed under no output"
    );
    // The copy kernel-builder uploads: build/<variant>/.
    let copy = dir.path().join("upload");
    let variant = copy.join("build").join(VARIANT);
    std::fs::create_dir_all(variant.parent().unwrap()).unwrap();
    assert!(
        Command::new("cp")
            .arg("-r")
            .arg(format!("{out}/{VARIANT}"))
            .arg(&variant)
            .status()
            .unwrap()
            .success()
    );
    make_writable(&copy);
    let metadata = variant.join("metadata.json");
    let before = std::fs::read(&metadata).unwrap();
    let fill = |trust: &str, copy: &Path| {
        drvmeta(&[
            "provenance",
            "fill-metadata",
            "--json",
            "--records",
            records_arg,
            "--trusted-key",
            trust,
            &out,
            copy.to_str().unwrap(),
        ])
    };

    // Not trusted, or a tampered copy: refused, nothing written.
    let (_, stranger) = support::nix_key(dir.path(), "stranger-1");
    let untrusted = fill(&stranger, &copy);
    assert_eq!(untrusted.status.code(), Some(1), "{}", stderr(&untrusted));
    let so = variant.join("activation/_activation.so");
    std::fs::write(&so, "evil kernel\n").unwrap();
    let tampered = fill(&public, &copy);
    assert_eq!(tampered.status.code(), Some(1), "{}", stderr(&tampered));
    assert!(
        stderr(&tampered).contains("digest check"),
        "{}",
        stderr(&tampered)
    );
    assert_eq!(
        std::fs::read(&metadata).unwrap(),
        before,
        "nothing was written"
    );
    std::fs::write(&so, SO).unwrap();

    let filled = fill(&public, &copy);
    assert_eq!(filled.status.code(), Some(0), "{}", stderr(&filled));
    let report: serde_json::Value = serde_json::from_slice(&filled.stdout).unwrap();
    assert_eq!(
        report["filled"][0]["provenance"],
        serde_json::json!({
            "kernel-builder": { "version": "0.17.0", "commit": BUILDER_COMMIT, "dirty": false },
            "kernel": { "commit": kernel_commit, "dirty": false },
        })
    );
    // kernels loads it, reads the provenance, and its digest check passes.
    let checked = Command::new("python3")
        .arg("-c")
        .arg(
            "import sys\n\
             from kernels._rust import Metadata, Digest\n\
             m = Metadata.read_from_file(sys.argv[1] + '/metadata.json')\n\
             m.digest.validate(Digest.hash_variant(m.digest.algorithm, sys.argv[1]))\n\
             print(m.provenance.kernel.commit, m.provenance.kernel_builder.version, m.provenance.dirty)\n",
        )
        .arg(&variant)
        .output()
        .unwrap();
    assert!(checked.status.success(), "{}", stderr(&checked));
    assert_eq!(
        String::from_utf8_lossy(&checked.stdout).trim(),
        format!("{kernel_commit} 0.17.0 False")
    );

    // The copy, with the provenance block, a signature bundle and bytecode
    // added, still verifies: by its variant's digest, a subject of the record.
    std::fs::write(variant.join("metadata.json.sigstore"), "{}").unwrap();
    std::fs::create_dir_all(variant.join("activation/__pycache__")).unwrap();
    std::fs::write(
        variant.join("activation/__pycache__/x.cpython-311.pyc"),
        "b",
    )
    .unwrap();
    let copy_ok = verify_trusting(records_arg, &[&public], copy.to_str().unwrap());
    assert_eq!(copy_ok.status.code(), Some(0), "{}", stderr(&copy_ok));
    let text = String::from_utf8_lossy(&copy_ok.stdout);
    assert!(
        text.contains("matched by variant digest") && text.contains("builder-1"),
        "{text}"
    );
    // The copy's metadata.json naming another kernel commit (outside the
    // digest, so the variant still matches): the record contradicts it.
    let filled_bytes = std::fs::read(&metadata).unwrap();
    let mut claimed: serde_json::Value = serde_json::from_slice(&filled_bytes).unwrap();
    claimed["provenance"]["kernel"]["commit"] = commit(0xb).into();
    std::fs::write(&metadata, serde_json::to_vec(&claimed).unwrap()).unwrap();
    let contradicted = verify_trusting(records_arg, &[&public], copy.to_str().unwrap());
    assert_eq!(
        contradicted.status.code(),
        Some(1),
        "{}",
        stderr(&contradicted)
    );
    assert!(
        stderr(&contradicted).contains("but the record says"),
        "{}",
        stderr(&contradicted)
    );
    std::fs::write(&metadata, &filled_bytes).unwrap();
    // A Hub-style snapshot: every file a link into blobs/.
    let snapshot = dir.path().join("hub/snapshot/build").join(VARIANT);
    let blobs = dir.path().join("hub/blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    for (i, relative) in [
        "metadata.json",
        "activation/__init__.py",
        "activation/_activation.so",
    ]
    .iter()
    .enumerate()
    {
        let blob = blobs.join(format!("blob{i}"));
        std::fs::copy(variant.join(relative), &blob).unwrap();
        let link = snapshot.join(relative);
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&blob, &link).unwrap();
    }
    let hub = verify_trusting(
        records_arg,
        &[&public],
        dir.path().join("hub/snapshot").to_str().unwrap(),
    );
    assert_eq!(hub.status.code(), Some(0), "{}", stderr(&hub));
    // --json names the match and the variant digest, the record's subject.
    let hub_json = drvmeta(&[
        "provenance",
        "verify",
        "--json",
        "--records",
        records_arg,
        "--trusted-key",
        &public,
        dir.path().join("hub/snapshot").to_str().unwrap(),
    ]);
    assert_eq!(hub_json.status.code(), Some(0), "{}", stderr(&hub_json));
    let report: serde_json::Value = serde_json::from_slice(&hub_json.stdout).unwrap();
    let entry = &report["outputs"][0];
    assert!(entry["copy"].is_string(), "{report}");
    assert_eq!(entry["match"], "variant-digest", "{report}");
    let digest = entry["variants"][0]["variantDigest"].as_str().unwrap();
    let statement = statement_of(&indexed[0]);
    assert!(
        statement["subject"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["digest"]["sha256"] == digest),
        "{statement}"
    );
    // A changed file in the copy: no record attests it.
    std::fs::write(&so, "evil kernel\n").unwrap();
    let changed = verify_trusting(records_arg, &[&public], copy.to_str().unwrap());
    assert_eq!(changed.status.code(), Some(1), "{}", stderr(&changed));
    assert!(
        stderr(&changed).contains("_activation.so"),
        "{}",
        stderr(&changed)
    );
}

/// A two-derivation chain (a library and an app using it), both carrying
/// the kernel commit in `__meta`.
fn chain_expr(nonce: &str) -> String {
    format!(
        r#"{{ kernelCommit }}:
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
    __meta.provenance.kernel = {{ commit = kernelCommit; dirty = false; }};
    requiredSystemFeatures = [ "derivation-meta" ];
  }};
  lib = mk "chain-lib-{nonce}" [ ];
in mk "chain-app-{nonce}" [ lib ]
"#
    )
}

#[test]
fn realise_records_every_derivation_it_builds_and_roots_its_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("records");
    let file = dir.path().join("chain.nix");
    std::fs::write(&file, chain_expr(&nonce())).unwrap();
    let first = instantiate_kernel_file(&file, &commit(5));
    let second = instantiate_kernel_file(&file, &commit(6));
    let (secret, public) = support::nix_key(dir.path(), "realiser-2");
    let link = dir.path().join("result");
    let realise = |drv: &str, link: Option<&Path>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_drvmeta"));
        command
            .args(["realise", "--json", "--records", records.to_str().unwrap()])
            .arg("--signing-key")
            .arg(&secret)
            .env(
                "NIX_CONFIG",
                format!("{}\nsandbox = false", support::NIX_CONFIG),
            )
            .current_dir(dir.path());
        match link {
            Some(link) => command.arg("--out-link").arg(link),
            None => command.arg("--no-out-link"),
        };
        command.arg(drv).output().unwrap()
    };

    // First commit: the library and the app are built, and both recorded.
    let one = realise(&first, Some(&link));
    assert_eq!(one.status.code(), Some(0), "{}", stderr(&one));
    assert!(
        !stderr(&one).contains("--add-root"),
        "no stray Nix warning: {}",
        stderr(&one)
    );
    let report: serde_json::Value = serde_json::from_slice(&one.stdout).unwrap();
    let out = report["outputs"][0].as_str().unwrap().to_owned();
    let recorded: Vec<&serde_json::Value> = report["records"].as_array().unwrap().iter().collect();
    let names: BTreeSet<String> = recorded
        .iter()
        .map(|r| r["originalDerivation"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names.len(), 2, "the library and the app: {report}");
    assert!(names.contains(&first), "{names:?}");
    for record in &recorded {
        let original = record["originalDerivation"].as_str().unwrap();
        let built = record["derivation"].as_str().unwrap();
        assert_ne!(original, built, "the built derivation is the meta-free one");
        assert_eq!(record["signedBy"], "realiser-2", "{record}");
    }
    let files = record_files(&records);
    assert_eq!(validate_records(&files, &[&public]), 2);
    // The library's record verifies from its output path alone.
    for record in &recorded {
        let output = record["output"].as_str().unwrap();
        let verify = verify_trusting(records.to_str().unwrap(), &[&public], output);
        assert_eq!(
            verify.status.code(),
            Some(0),
            "{output}: {}",
            stderr(&verify)
        );
    }

    // The out-link is a GC root: Nix refuses to delete the output.
    assert_eq!(std::fs::read_link(&link).unwrap().to_str().unwrap(), out);
    let delete = || {
        support::nix("nix-store")
            .args(["--delete", &out])
            .output()
            .unwrap()
    };
    let kept = delete();
    assert!(!kept.status.success(), "a rooted output was deleted");
    assert!(stderr(&kept).contains("alive"), "{}", stderr(&kept));

    // Every command speaks of what was built: record, sbom and sbom
    // --runtime of the meta-carrying derivation use the realised outputs.
    let again = dir.path().join("again");
    let recorded = drvmeta(&[
        "record",
        "--records",
        again.to_str().unwrap(),
        "--signing-key",
        secret.to_str().unwrap(),
        &first,
    ]);
    assert_eq!(recorded.status.code(), Some(0), "{}", stderr(&recorded));
    let text = String::from_utf8_lossy(&recorded.stdout);
    assert!(text.contains("realised modulo meta as"), "{text}");
    let verify = verify_trusting(again.to_str().unwrap(), &[&public], &out);
    assert_eq!(verify.status.code(), Some(0), "{}", stderr(&verify));
    // verify of the meta-carrying derivation itself: its realised output.
    let verify = verify_trusting(records.to_str().unwrap(), &[&public], &first);
    assert_eq!(verify.status.code(), Some(0), "{}", stderr(&verify));
    assert!(
        String::from_utf8_lossy(&verify.stdout).contains(&format!("ok {out}:")),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    assert!(
        stderr(&verify).contains("was never built"),
        "{}",
        stderr(&verify)
    );
    for runtime in [false, true] {
        let mut args = vec!["sbom"];
        if runtime {
            args.push("--runtime");
        }
        args.push(&first);
        let sbom = drvmeta(&args);
        assert_eq!(
            sbom.status.code(),
            Some(0),
            "runtime {runtime}: {}",
            stderr(&sbom)
        );
        assert!(
            stderr(&sbom).contains("2 derivation(s) were realised modulo meta"),
            "{}",
            stderr(&sbom)
        );
        let sbom: serde_json::Value = serde_json::from_slice(&sbom.stdout).unwrap();
        let components = sbom["components"].as_array().unwrap();
        assert_eq!(components.len(), 2, "{sbom}");
        let property = support::cdx_property;
        let app = components
            .iter()
            .find(|c| property(c, "nix:drv_path") == [first.as_str()])
            .unwrap_or_else(|| panic!("the app: {sbom}"));
        assert_eq!(property(app, "nix:store_path"), [out.as_str()]);
        assert_eq!(property(app, "nix:realised"), ["modulo-meta"]);
        let classic = property(app, "nix:classic_store_path");
        assert_eq!(classic.len(), 1);
        assert_ne!(classic[0], out, "the classic path is the other one");
        for component in components {
            for path in property(component, "nix:store_path") {
                assert!(Path::new(&path).exists(), "{path} was built");
            }
        }
    }

    // Second commit: nothing is built; only the root is recorded again.
    let two = realise(&second, None);
    assert_eq!(two.status.code(), Some(0), "{}", stderr(&two));
    assert!(!stderr(&two).contains("building"), "{}", stderr(&two));
    assert!(!stderr(&two).contains("--add-root"), "{}", stderr(&two));
    let report: serde_json::Value = serde_json::from_slice(&two.stdout).unwrap();
    assert_eq!(report["outputs"][0], out.as_str());
    let recorded = report["records"].as_array().unwrap();
    assert_eq!(recorded.len(), 1, "{report}");
    assert_eq!(recorded[0]["originalDerivation"], second.as_str());

    // Without the root, the output can go.
    std::fs::remove_file(&link).unwrap();
    let gone = delete();
    assert!(gone.status.success(), "{}", stderr(&gone));
}
