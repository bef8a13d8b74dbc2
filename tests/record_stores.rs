//! Shared record stores over HTTP, against a real nginx (WebDAV PUT, JSON
//! listings) started on 127.0.0.1: builders signing with keys real Nix made
//! push concurrently and a verifier with nothing but the URL finds every
//! record; a server killed and restarted mid-push loses nothing and never
//! serves a half record.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use sha2::Digest as _;
use support::Nginx;

const OUTPUTS: usize = 12;

fn drvmeta(args: &[&str]) -> Output {
    support::output_within(&mut support::drvmeta_command(args), 120)
}

/// `provenance verify` of `outs` against the store at `url`, trusting
/// `keys`.
fn verify(url: &str, keys: &[&str], outs: &[String]) -> Output {
    let mut args = vec!["provenance", "verify", "--records", url];
    for key in keys {
        args.extend(["--trusted-key", key]);
    }
    args.extend(outs.iter().map(String::as_str));
    drvmeta(&args)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Build `OUTPUTS` small derivations with Nix 2.8; returns the drv paths
/// and their output paths.
fn build_outputs(dir: &Path) -> (Vec<String>, Vec<String>) {
    build_outputs_with(dir, "", None)
}

/// [`build_outputs`], the derivations made distinct by `nonce`, with
/// `hook` as Nix's post-build-hook.
fn build_outputs_with(dir: &Path, nonce: &str, hook: Option<&Path>) -> (Vec<String>, Vec<String>) {
    let nonce = format!("{}{nonce}", dir.file_name().unwrap().to_string_lossy());
    let file = dir.join(format!("many{}.nix", nonce.len()));
    std::fs::write(
        &file,
        format!(
            r#"builtins.genList (i: derivation {{
  name = "shared-${{toString i}}";
  system = "x86_64-linux";
  builder = "/bin/sh";
  args = [ "-c" "echo {nonce}-${{toString i}} > $out" ];
}}) {OUTPUTS}
"#
        ),
    )
    .unwrap();
    let drvs: Vec<String> = support::run(support::nix("nix-instantiate").arg(&file), "instantiate")
        .lines()
        .map(str::to_owned)
        .collect();
    let mut build = support::nix("nix-store");
    build.arg("--realise").args(&drvs);
    if let Some(hook) = hook {
        build.arg("--option").arg("post-build-hook").arg(hook);
    }
    let outs: Vec<String> = support::run(&mut build, "build")
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(outs.len(), OUTPUTS);
    (drvs, outs)
}

/// Record every derivation into `records`, signed with `key`.
fn record(records: &Path, key: &Path, drvs: &[String]) {
    let mut args = vec![
        "record",
        "--records",
        records.to_str().unwrap(),
        "--signing-key",
        key.to_str().unwrap(),
    ];
    args.extend(drvs.iter().map(String::as_str));
    let output = drvmeta(&args);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

/// Every record file under `root` (`<dir>/<name>` → bytes).
fn record_files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let Ok(dirs) = std::fs::read_dir(root) else {
        return files;
    };
    for dir in dirs {
        let dir = dir.unwrap();
        if !dir.file_type().unwrap().is_dir() {
            continue; // the background push's log
        }
        for file in std::fs::read_dir(dir.path()).unwrap() {
            let file = file.unwrap();
            let name = file.file_name().into_string().unwrap();
            if name.ends_with(".dsse.json") {
                files.insert(
                    format!("{}/{name}", dir.file_name().to_string_lossy()),
                    std::fs::read(file.path()).unwrap(),
                );
            }
        }
    }
    files
}

/// Whether a record's name (`<drv>.<content>.dsse.json`) names its bytes.
fn name_matches_content(key: &str, bytes: &[u8]) -> bool {
    let name = key.rsplit('/').next().unwrap();
    let content = name.split('.').nth(1).unwrap();
    let digest = sha2::Sha256::digest(bytes);
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    content == hex
}

fn push(from: &Path, to: &str) -> Command {
    let mut command =
        support::drvmeta_command(&["provenance", "push", "--json", "--to", to, "--records"]);
    command.arg(from);
    command
}

#[test]
fn records_pushed_concurrently_over_http_are_all_found_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (drvs, outs) = build_outputs(dir.path());
    let (key_a, public_a) = support::nix_key(dir.path(), "builder-a");
    let (key_b, public_b) = support::nix_key(dir.path(), "builder-b");
    let (records_a, records_b) = (dir.path().join("a"), dir.path().join("b"));
    let server = Nginx::start();
    let url = server.url("records");

    // Three rounds: both builders record every output again (new records:
    // each names its own invocation) and push at the same time.
    for _ in 0..3 {
        record(&records_a, &key_a, &drvs);
        record(&records_b, &key_b, &drvs);
        let pushes: Vec<_> = [&records_a, &records_b]
            .into_iter()
            .map(|from| {
                push(from, &url)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in pushes {
            let output = child.wait_with_output().unwrap();
            assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        }
    }
    let mut local = record_files(&records_a);
    local.extend(record_files(&records_b));
    assert_eq!(local.len(), OUTPUTS * 3 * 2, "six records per output");
    // What nginx serves is exactly the union of both builders' records,
    // byte for byte: none lost, none extra.
    let served = record_files(&server.www().join("records"));
    assert_eq!(
        served.keys().collect::<Vec<_>>(),
        local.keys().collect::<Vec<_>>()
    );
    assert_eq!(served, local);

    // A verifier with an empty record directory and the URL finds them all.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let mut args = vec![
        "provenance",
        "show",
        "--json",
        "--records",
        empty.to_str().unwrap(),
    ];
    args.extend(["--records", &url]);
    args.extend(outs.iter().map(String::as_str));
    let shown = drvmeta(&args);
    assert_eq!(shown.status.code(), Some(0), "{}", stderr(&shown));
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    let shown = shown["records"].as_array().unwrap();
    assert_eq!(shown.len(), local.len());
    assert!(
        shown
            .iter()
            .all(|r| r["file"].as_str().unwrap().starts_with(&format!("{url}/"))),
        "records are named by their URL"
    );

    let both = verify(&url, &[&public_a, &public_b], &outs);
    assert_eq!(both.status.code(), Some(0), "{}", stderr(&both));
    let text = String::from_utf8(both.stdout).unwrap();
    assert_eq!(
        text.lines().filter(|l| l.starts_with("ok ")).count(),
        OUTPUTS,
        "{text}"
    );
    assert!(text.contains("2 trusted key(s)"), "{text}");
    // Trusting neither key, nothing counts.
    let (_, stranger) = support::nix_key(dir.path(), "stranger");
    let none = verify(&url, &[&stranger], &outs);
    assert_eq!(none.status.code(), Some(1), "{}", stderr(&none));
}

#[test]
fn a_server_killed_mid_push_serves_no_half_record_and_a_retry_completes() {
    let dir = tempfile::tempdir().unwrap();
    let (drvs, outs) = build_outputs(dir.path());
    let (key, public) = support::nix_key(dir.path(), "builder");
    let records = dir.path().join("records");
    for _ in 0..5 {
        record(&records, &key, &drvs);
    }
    let local = record_files(&records);
    assert_eq!(local.len(), OUTPUTS * 5);
    let mut server = Nginx::start();
    let url = server.url("shared");

    // Kill the server while the push runs, and start it again 0.5 s
    // later: the push retries through the outage.
    let mut child = push(&records, &url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once some records are up (not all), pull the plug.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while record_files(&server.www().join("shared")).len() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the push uploads nothing"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the push ended before the server went down: the test did not test"
    );
    server.kill();
    let uploaded = record_files(&server.www().join("shared")).len();
    assert!(
        uploaded < local.len(),
        "killed mid-push: {uploaded} of {}",
        local.len()
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    server.restart();
    let output = child.wait_with_output().unwrap();
    // The outage (0.5 s) is shorter than the retries (about 6 s): the push
    // rode it out and every record is served, whole.
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let served = record_files(&server.www().join("shared"));
    for (key, bytes) in &served {
        assert!(
            name_matches_content(key, bytes),
            "half record served: {key}"
        );
    }
    assert_eq!(served, local);
    // Pushing again uploads nothing new.
    let again = push(&records, &url).output().unwrap();
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    let pushed = again["pushed"].as_array().unwrap();
    assert_eq!(pushed.len(), local.len());
    assert!(pushed.iter().all(|p| p["new"] == false), "{again}");
    assert_eq!(record_files(&server.www().join("shared")), local);
    // A half record as a server without atomic uploads could serve it: read,
    // reported, never counted.
    let (first, bytes) = local.iter().next().unwrap();
    let (out_dir, name) = first.split_once('/').unwrap();
    let half = format!(
        "{}.{}.dsse.json",
        name.split('.').next().unwrap(),
        "0".repeat(32)
    );
    std::fs::write(
        server.www().join("shared").join(out_dir).join(&half),
        &bytes[..bytes.len() / 2],
    )
    .unwrap();
    let verified = verify(&url, &[&public], &outs);
    assert_eq!(verified.status.code(), Some(0), "{}", stderr(&verified));
    assert!(
        stderr(&verified).contains(&format!(
            "{url}/{out_dir}/{half}: not counted: its name does not match its content"
        )),
        "{}",
        stderr(&verified)
    );

    // A server that is gone for good: a clear error naming the URL, exit 1.
    server.kill();
    let gone = push(&records, &url).output().unwrap();
    assert_eq!(gone.status.code(), Some(1));
    assert!(
        stderr(&gone).contains(&format!("{url}/")),
        "{}",
        stderr(&gone)
    );
    assert!(stderr(&gone).contains("attempts"), "{}", stderr(&gone));
}

/// A post-build hook recording into `records`, signed with `key`, pushing
/// to `url`.
fn pushing_hook(dir: &Path, records: &Path, key: &Path, url: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let hook = dir.join("push-hook.sh");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nexec {} hook --records {} --signing-key {} --push-to {url}\n",
            env!("CARGO_BIN_EXE_drvmeta"),
            records.display(),
            key.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    hook
}

#[test]
fn the_hook_pushes_in_the_background_without_holding_up_the_build() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = support::nix_key(dir.path(), "builder");
    let records = dir.path().join("records");
    let mut server = Nginx::start();
    let url = server.url("records");
    let hook = pushing_hook(dir.path(), &records, &key, &url);

    // Server up: every build's records reach it, byte for byte.
    let (_, outs) = build_outputs_with(dir.path(), "up", Some(&hook));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let local = record_files(&records);
    assert_eq!(local.len(), OUTPUTS);
    while record_files(&server.www().join("records")) != local {
        assert!(
            std::time::Instant::now() < deadline,
            "the background pushes did not arrive: {}",
            std::fs::read_to_string(records.join(".push.log")).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let verified = verify(&url, &[&public], &outs);
    assert_eq!(verified.status.code(), Some(0), "{}", stderr(&verified));

    // Server down: each push retries for about 6 s, but in the background:
    // twelve builds take far less than one push's retries would add up to.
    server.kill();
    let started = std::time::Instant::now();
    build_outputs_with(dir.path(), "down", Some(&hook));
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_secs(20),
        "the build waited for the pushes: {took:?}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let log = records.join(".push.log");
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("attempts")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no failure was logged"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains(&format!("{url}/"))
    );
}
