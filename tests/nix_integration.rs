//! The Nix side: `nix/lib.nix` unit tests, the flake and its lock, and the
//! `examples/kernel` walkthrough, all with Nix 2.8 offline.

mod support;

use std::path::Path;
use std::process::{Command, Output};

fn eval(expr: &str) -> String {
    let lib = support::project_dir().join("nix/lib.nix");
    let full = format!("let lib = import {}; in {expr}", lib.display());
    support::run(
        support::nix("nix-instantiate").args(["--eval", "--strict", "--json", "--expr", &full]),
        &format!("eval {expr}"),
    )
}

fn eval_json(expr: &str) -> serde_json::Value {
    serde_json::from_str(&eval(expr)).unwrap()
}

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

#[test]
fn flake_provenance_follows_the_kernels_rule() {
    assert_eq!(
        eval_json(&format!(
            r#"lib.flakeProvenance {{ rev = "{COMMIT}"; outPath = "/x"; }}"#
        )),
        serde_json::json!({ "commit": COMMIT, "dirty": false })
    );
    assert_eq!(
        eval_json(&format!(
            r#"lib.flakeProvenance {{ dirtyRev = "{COMMIT}-dirty"; dirtyShortRev = "0123456-dirty"; }}"#
        )),
        serde_json::json!({ "commit": COMMIT, "dirty": true })
    );
    // A path-like self (no git): null, never a made-up default.
    assert_eq!(
        eval_json(r#"lib.flakeProvenance { outPath = "/nix/store/x-source"; lastModified = 0; }"#),
        serde_json::Value::Null
    );
    assert_eq!(
        eval_json("lib.flakeProvenance { }"),
        serde_json::Value::Null
    );
}

#[test]
fn with_meta_opts_in_sorted_and_deduplicated() {
    let plain = eval_json(r#"lib.withMeta { license = "mit"; } { name = "x"; }"#);
    assert_eq!(plain["__structuredAttrs"], true);
    assert_eq!(plain["__meta"], serde_json::json!({ "license": "mit" }));
    assert_eq!(
        plain["requiredSystemFeatures"],
        serde_json::json!(["derivation-meta"])
    );
    let existing = eval_json(
        r#"lib.withMeta { b = 2; nested.y = 2; } { requiredSystemFeatures = [ "kvm" "big-parallel" "kvm" "derivation-meta" ]; __meta = { a = 1; nested.x = 1; }; }"#,
    );
    assert_eq!(
        existing["requiredSystemFeatures"],
        serde_json::json!(["big-parallel", "derivation-meta", "kvm"])
    );
    assert_eq!(
        existing["__meta"],
        serde_json::json!({ "a": 1, "b": 2, "nested": { "x": 1, "y": 2 } })
    );
}

#[test]
fn with_provenance_uses_the_kernels_vocabulary_and_never_makes_things_up() {
    let attrs = eval_json(&format!(
        r#"lib.withProvenance {{ kernel = {{ commit = "{COMMIT}"; dirty = true; source = "git+https://x"; }}; builder = {{ commit = "{COMMIT}"; dirty = false; version = "0.17.0"; }}; }} {{ }}"#
    ));
    assert_eq!(
        attrs["__meta"]["provenance"],
        serde_json::json!({
            "kernel": { "commit": COMMIT, "dirty": true, "source": "git+https://x" },
            "kernel-builder": { "commit": COMMIT, "dirty": false, "version": "0.17.0" },
        })
    );
    let none = eval_json("lib.withProvenance { kernel = null; } { }");
    assert_eq!(none["__meta"]["provenance"], serde_json::json!({}));
    for bad in [
        r#"{ commit = "abc"; dirty = false; }"#,
        &format!(r#"{{ commit = "{COMMIT}"; }}"#),
        r#"{ dirty = false; }"#,
    ] {
        let tried = eval_json(&format!(
            "(builtins.tryEval (builtins.deepSeq (lib.withProvenance {{ kernel = {bad}; }} {{ }}) true)).success"
        ));
        assert_eq!(tried, false, "{bad} was accepted");
    }

    // kernel-builder's own Nix passes { sha; dirty; }; commits come in any
    // case and are kept lowercase; a builder may stand on its version alone
    // (not from git), but never without it.
    let upper = COMMIT.to_uppercase();
    let kernels = eval_json(&format!(
        r#"lib.withProvenance {{ kernel = {{ sha = "{upper}"; dirty = false; }}; builder = {{ version = "0.17.0"; }}; }} {{ }}"#
    ));
    assert_eq!(
        kernels["__meta"]["provenance"],
        serde_json::json!({
            "kernel": { "commit": COMMIT, "dirty": false },
            "kernel-builder": { "version": "0.17.0" },
        })
    );
    for bad_builder in [
        format!(r#"{{ commit = "{COMMIT}"; dirty = false; }}"#),
        r#"{ version = "0.17.0"; dirty = true; }"#.to_owned(),
    ] {
        let tried = eval_json(&format!(
            "(builtins.tryEval (builtins.deepSeq (lib.withProvenance {{ builder = {bad_builder}; }} {{ }}) true)).success"
        ));
        assert_eq!(tried, false, "builder {bad_builder} was accepted");
    }
    // A flake's rev, dirtyRev, or a path (no rev: nothing is made up).
    let flake = eval_json(&format!(
        r#"map (self: lib.withProvenance {{ kernel = lib.flakeProvenance self; builder = {{ version = "1"; }}; }} {{ }}) [ {{ rev = "{COMMIT}"; }} {{ dirtyRev = "{COMMIT}-dirty"; }} {{ outPath = "/x"; }} ]"#
    ));
    let kernels_of: Vec<&serde_json::Value> = flake
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["__meta"]["provenance"]["kernel"])
        .collect();
    assert_eq!(
        kernels_of,
        [
            &serde_json::json!({ "commit": COMMIT, "dirty": false }),
            &serde_json::json!({ "commit": COMMIT, "dirty": true }),
            &serde_json::Value::Null,
        ]
    );
}

fn drvmeta(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_drvmeta"))
        .args(args)
        .current_dir(support::project_dir())
        .env(
            "NIX_CONFIG",
            format!(
                "{}\nsandbox = false\nextra-system-features = derivation-meta",
                support::NIX_CONFIG
            ),
        )
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn instantiate(expr: &str) -> String {
    let out = support::run(
        support::nix("nix-instantiate").args(["--expr", expr]),
        "instantiate",
    );
    out.trim().split('!').next().unwrap().to_owned()
}

#[test]
fn with_provenance_derivations_hash_modulo_meta_to_their_plain_twin() {
    let lib = support::project_dir().join("nix/lib.nix");
    let attrs = r#"{ name = "lib-test"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "echo > $out" ]; __structuredAttrs = true; }"#;
    let with = instantiate(&format!(
        r#"let lib = import {}; in derivation (lib.withProvenance {{ kernel = {{ commit = "{COMMIT}"; dirty = false; }}; }} {attrs})"#,
        lib.display()
    ));
    let plain = instantiate(&format!("derivation {attrs}"));
    let report = |drv: &str| -> serde_json::Value {
        let output = drvmeta(&["hash", "--json", drv]);
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()["derivations"][drv]
            .clone()
    };
    let (with, plain) = (report(&with), report(&plain));
    assert_eq!(with["metaOptIn"], true);
    assert_eq!(with["meta"]["provenance"]["kernel"]["commit"], COMMIT);
    assert_eq!(with["moduloMeta"]["outputs"], plain["classic"]["outputs"]);
    assert_ne!(with["classic"]["outputs"], plain["classic"]["outputs"]);
}

#[test]
fn the_flake_parses_and_its_lock_pins_the_shared_nixpkgs() {
    let dir = support::project_dir();
    support::run(
        support::nix("nix-instantiate")
            .arg("--parse")
            .arg(dir.join("flake.nix")),
        "parse flake.nix",
    );
    support::run(
        support::nix("nix-instantiate")
            .arg("--parse")
            .arg(dir.join("nix/module.nix")),
        "parse nix/module.nix",
    );
    support::run(
        support::nix("nix-instantiate")
            .arg("--parse")
            .arg(dir.join("nix/package.nix")),
        "parse nix/package.nix",
    );
    support::run(
        support::nix("nix-instantiate")
            .arg("--parse")
            .arg(dir.join("examples/kernel/flake.nix")),
        "parse the example flake",
    );
    let lock: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("flake.lock")).unwrap()).unwrap();
    assert_eq!(lock["version"], 7);
    assert_eq!(lock["root"], "root");
    let input = lock["nodes"]["root"]["inputs"]["nixpkgs"].as_str().unwrap();
    let fact: serde_json::Value = serde_json::from_slice(
        &std::fs::read(support::nix_vectors().join("../facts/nixpkgs-lock-node.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(lock["nodes"][input], fact);
    assert_eq!(
        lock["nodes"].as_object().unwrap().len(),
        2,
        "root and nixpkgs only"
    );
}

#[test]
fn the_flakes_lib_evaluates_offline_without_nixpkgs() {
    let dir = support::project_dir();
    // The flake is read from git: its files must be tracked (they are in a
    // checkout). Evaluating `lib` must not fetch nixpkgs (nothing can be).
    let output = support::nix("nix")
        .args(["eval", "--offline", "--json"])
        .arg(format!("git+file://{}#lib", dir.display()))
        .args(["--apply", &format!(r#"l: [ (l.flakeProvenance {{ rev = "{COMMIT}"; }}) (l.withMeta {{ }} {{ }}).requiredSystemFeatures ]"#)])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        value,
        serde_json::json!([{ "commit": COMMIT, "dirty": false }, ["derivation-meta"]])
    );
}

fn example(commit: &str) -> String {
    instantiate(&format!(
        r#"import {} {{ kernel = {{ commit = "{commit}"; dirty = false; source = "git+https://example.org/activation"; }}; }}"#,
        support::project_dir().join("examples/kernel").display()
    ))
}

#[test]
fn the_example_walkthrough() {
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("records");
    let records_arg = records.to_str().unwrap();
    let nonce = format!(
        "{:040x}",
        u128::from(std::process::id()) << 64
            | u128::from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .subsec_nanos()
            )
    );
    let (commit_a, commit_b) = (
        nonce.clone(),
        format!(
            "{:040x}",
            u128::from_str_radix(&nonce[8..], 16).unwrap() + 1
        ),
    );
    let (first, second) = (example(&commit_a), example(&commit_b));

    // 1. Build with the hook, signing with a key Nix made.
    let (secret, public) = support::nix_key(dir.path(), "walkthrough-1");
    let hook = support::write_hook_script(dir.path(), records_arg, Some(&secret));
    let build = support::nix("nix-store")
        .args(["--realise", &first])
        .args(support::META_BUILD_OPTIONS)
        .arg("--option")
        .arg("post-build-hook")
        .arg(&hook)
        .output()
        .unwrap();
    assert!(build.status.success(), "{}", stderr(&build));
    assert!(
        stderr(&build).contains("recorded 1 output(s)"),
        "{}",
        stderr(&build)
    );
    let built = String::from_utf8(build.stdout).unwrap().trim().to_owned();
    // Its metadata.json loads in the kernels package, whose own digest check
    // passes on it.
    let checked = Command::new("python3")
        .arg("-c")
        .arg(
            "import sys, pathlib\n\
             from kernels._rust import Metadata, Digest\n\
             for v in pathlib.Path(sys.argv[1]).iterdir():\n\
             \x20   m = Metadata.read_from_file(str(v / 'metadata.json'))\n\
             \x20   m.digest.validate(Digest.hash_variant(m.digest.algorithm, str(v)))\n\
             \x20   print('ok', m.name)\n",
        )
        .arg(&built)
        .output()
        .unwrap();
    assert!(
        checked.status.success()
            && String::from_utf8_lossy(&checked.stdout).contains("ok activation"),
        "kernels rejects the example's metadata.json: {}",
        stderr(&checked)
    );

    // 2. A new commit: meta-only.
    let diff = drvmeta(&["diff", "--json", &first, &second]);
    let diff: serde_json::Value = serde_json::from_slice(&diff.stdout).unwrap();
    assert_eq!(diff["verdict"], "meta-only", "{diff}");

    // 3. realise both: the second builds nothing.
    let key_arg = secret.to_str().unwrap();
    let one = drvmeta(&[
        "realise",
        "--no-out-link",
        "--records",
        records_arg,
        "--signing-key",
        key_arg,
        &first,
    ]);
    assert_eq!(one.status.code(), Some(0), "{}", stderr(&one));
    let two = drvmeta(&[
        "realise",
        "--no-out-link",
        "--records",
        records_arg,
        "--signing-key",
        key_arg,
        &second,
    ]);
    assert_eq!(two.status.code(), Some(0), "{}", stderr(&two));
    assert!(!stderr(&two).contains("building"), "{}", stderr(&two));
    assert_eq!(one.stdout, two.stdout);
    let realised = String::from_utf8(two.stdout).unwrap().trim().to_owned();

    // 4. Push the records to a shared store (a real nginx on 127.0.0.1).
    let server = support::Nginx::start();
    let url = server.url("kernels");
    let push = drvmeta(&[
        "provenance",
        "push",
        "--records",
        records_arg,
        "--to",
        &url,
        &built,
        &realised,
    ]);
    assert_eq!(push.status.code(), Some(0), "{}", stderr(&push));

    // 5. Elsewhere: an empty record directory and the URL. Both commits'
    // records attest the one realised output against the trusted key, and
    // the hook's build verifies too.
    let clean = dir.path().join("clean");
    std::fs::create_dir(&clean).unwrap();
    let clean_arg = clean.to_str().unwrap();
    for out in [&built, &realised] {
        let verify = drvmeta(&[
            "provenance",
            "verify",
            "--records",
            clean_arg,
            "--records",
            &url,
            "--trusted-key",
            &public,
            out,
        ]);
        assert_eq!(verify.status.code(), Some(0), "{out}: {}", stderr(&verify));
    }
    let verify = drvmeta(&[
        "provenance",
        "verify",
        "--records",
        &url,
        "--trusted-key",
        &public,
        &realised,
    ]);
    assert!(
        String::from_utf8_lossy(&verify.stdout).contains("matches 2 record(s)"),
        "both commits: {}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let show = drvmeta(&["provenance", "show", "--records", &url, &realised]);
    let text = String::from_utf8_lossy(&show.stdout);
    assert_eq!(
        text.matches("kernel          ").count(),
        2,
        "two records, one per commit:\n{text}"
    );
    assert!(
        text.contains(&commit_a) && text.contains(&commit_b),
        "{text}"
    );

    // 6. sbom, of the build and of the realised output at run time.
    let sbom = drvmeta(&["sbom", &second]);
    assert_eq!(sbom.status.code(), Some(0), "{}", stderr(&sbom));
    let sbom: serde_json::Value = serde_json::from_slice(&sbom.stdout).unwrap();
    assert_eq!(sbom["components"].as_array().unwrap().len(), 2);
    let runtime = drvmeta(&["sbom", "--runtime", &second]);
    assert_eq!(runtime.status.code(), Some(0), "{}", stderr(&runtime));
    let runtime: serde_json::Value = serde_json::from_slice(&runtime.stdout).unwrap();
    let paths: Vec<&str> = runtime["components"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["properties"].as_array().unwrap())
        .filter(|p| p["name"] == "nix:store_path")
        .map(|p| p["value"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&realised.as_str()), "{runtime}");
    assert!(Path::new(&realised).exists());
}

#[test]
fn the_module_wires_the_hook_with_its_options() {
    // The module evaluated by the real nixpkgs `lib.evalModules` (from
    // ../shared/nixpkgs-lib), beside a module declaring the few NixOS
    // options it sets; `pkgs` is the two attributes it uses.
    let module = support::project_dir().join("nix/module.nix");
    let lib = support::nixpkgs_lib();
    let eval = |settings: &str, attrs: &str| {
        let expr = format!(
            r#"
let
  lib = import {lib};
  pkgs = {{
    drvmeta = {{ type = "derivation"; name = "drvmeta"; outPath = "/nix/store/00000000000000000000000000000000-drvmeta"; }};
    writeShellScript = name: text: text;
  }};
  nixos = {{ lib, ... }}: {{
    options.nix.settings = lib.mkOption {{ type = lib.types.attrsOf lib.types.anything; default = {{ }}; }};
    options.environment.systemPackages = lib.mkOption {{ type = lib.types.listOf lib.types.package; default = [ ]; }};
    options.environment.variables = lib.mkOption {{ type = lib.types.attrsOf lib.types.str; default = {{ }}; }};
    options.systemd.tmpfiles.rules = lib.mkOption {{ type = lib.types.listOf lib.types.str; default = [ ]; }};
  }};
  eval = cfg: (lib.evalModules {{
    modules = [ nixos {module} {{ _module.args.pkgs = pkgs; services.drvmeta = cfg; }} ];
  }});
  m = eval {{ {settings} }};
in {attrs}"#,
            lib = lib.display(),
            module = module.display(),
        );
        support::nix("nix-instantiate")
            .args(["--eval", "--strict", "--json", "--expr", &expr])
            .output()
            .unwrap()
    };
    let json = |output: std::process::Output| -> serde_json::Value {
        assert!(output.status.success(), "{}", stderr(&output));
        serde_json::from_slice(&output.stdout).unwrap()
    };
    let value = json(eval(
        r#"enable = true; recordsDir = "/var/records"; bestEffort = true;
           builderId = "urn:test:my builder"; pushTo = "https://records.example.org/";
           trustedKeys = [ "a:AAAA" "b:BBBB" ];"#,
        r#"{ hook = m.config.nix.settings.post-build-hook;
             features = m.config.nix.settings.extra-system-features;
             tmpfiles = m.config.systemd.tmpfiles.rules;
             packages = map (p: p.outPath) m.config.environment.systemPackages;
             variables = m.config.environment.variables;
             options = builtins.attrNames m.options.services.drvmeta; }"#,
    ));
    let hook = value["hook"].as_str().unwrap();
    assert!(
        hook.contains("/nix/store/00000000000000000000000000000000-drvmeta/bin/drvmeta hook"),
        "{hook}"
    );
    assert!(
        hook.contains("--records /var/records")
            && hook.contains("--builder-id 'urn:test:my builder'")
            && hook.contains("--push-to https://records.example.org/")
            && hook.contains("--best-effort"),
        "{hook}"
    );
    assert!(!hook.contains("--signing-key"), "{hook}");
    assert_eq!(value["features"], serde_json::json!(["derivation-meta"]));
    assert_eq!(
        value["tmpfiles"],
        serde_json::json!(["d /var/records 0755 root root -"])
    );
    assert_eq!(
        value["variables"],
        serde_json::json!({"DRVMETA_TRUSTED_KEYS": "a:AAAA b:BBBB"})
    );
    assert_eq!(
        value["packages"],
        serde_json::json!(["/nix/store/00000000000000000000000000000000-drvmeta"])
    );
    assert_eq!(
        value["options"],
        serde_json::json!([
            "bestEffort",
            "builderId",
            "enable",
            "package",
            "pushTo",
            "recordsDir",
            "signingKeyFile",
            "trustedKeys"
        ])
    );

    let signed = json(eval(
        r#"enable = true; signingKeyFile = "/etc/nix/builder-1.sec"; builderId = "urn:test:builder";"#,
        "{ hook = m.config.nix.settings.post-build-hook; variables = m.config.environment.variables; }",
    ));
    assert_eq!(
        signed["variables"],
        serde_json::json!({}),
        "no keys, no variable"
    );
    let signed = signed["hook"].as_str().unwrap();
    assert!(
        signed.contains("--signing-key /etc/nix/builder-1.sec")
            && signed.contains("--records /nix/var/drvmeta/records")
            && !signed.contains("--builder-id")
            && !signed.contains("--push-to"),
        "a signed record's builder id is its key's; no push unless asked: {signed}"
    );
    // Disabled: the module sets nothing.
    let off = json(eval("", "m.config.nix.settings"));
    assert_eq!(off, serde_json::json!({}));
    // The real lib checks the option types.
    let wrong = eval("enable = true; pushTo = 5;", "m.config.nix.settings");
    assert!(!wrong.status.success());
    assert!(
        stderr(&wrong).contains("is not of type"),
        "{}",
        stderr(&wrong)
    );
}
