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

/// The two oracles: Nix 2.8 (Debian 12's `nix-bin`, on `PATH`) and a
/// modern Nix (Debian trixie's, in the chroot `.ci/modern-nix.sh` makes,
/// with its own store).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NixVersion {
    /// Nix 2.8 on this machine.
    Old,
    /// Modern Nix in its chroot.
    Modern,
}

impl NixVersion {
    /// Both oracles.
    pub const BOTH: [Self; 2] = [Self::Old, Self::Modern];

    /// A short label for messages.
    pub fn label(self) -> &'static str {
        match self {
            Self::Old => "Nix 2.8",
            Self::Modern => "modern Nix",
        }
    }

    /// A `Command` for a Nix tool of this version, with the test
    /// configuration. Paths given to it must be [`Self::visible_path`]s.
    pub fn command(self, tool: &str) -> Command {
        match self {
            Self::Old => nix(tool),
            Self::Modern => {
                let mut command = Command::new("chroot");
                command.arg(modern_nix_root()).args([
                    "env",
                    &format!("NIX_CONFIG={NIX_CONFIG}"),
                    tool,
                ]);
                command
            }
        }
    }

    /// A temporary directory that this Nix sees, and the path it sees it at.
    pub fn tempdir(self) -> (tempfile::TempDir, PathBuf) {
        match self {
            Self::Old => {
                let dir = tempfile::tempdir().unwrap();
                let seen = dir.path().to_owned();
                (dir, seen)
            }
            Self::Modern => {
                let root = modern_nix_root();
                let dir = tempfile::tempdir_in(root.join("tmp")).unwrap();
                let seen = Path::new("/").join(dir.path().strip_prefix(&root).unwrap());
                (dir, seen)
            }
        }
    }

    /// Where drvmeta reads this Nix's derivations: its store directory is
    /// `/nix/store` either way; the modern store is a `--drv-dir`.
    pub fn load_options(self) -> drvmeta::closure::LoadOptions {
        let mut options = drvmeta::closure::LoadOptions::default();
        if self == Self::Modern {
            options.drv_dirs.push(modern_nix_root().join("nix/store"));
        }
        options
    }

    /// The file on this machine holding store path `path` of this Nix.
    pub fn host_path(self, path: &str) -> PathBuf {
        match self {
            Self::Old => PathBuf::from(path),
            Self::Modern => modern_nix_root().join(path.trim_start_matches('/')),
        }
    }
}

/// The modern Nix chroot (`DRVMETA_MODERN_NIX_ROOT`, default
/// `/var/lib/drvmeta/modern-nix`). Panics with what to do when it is missing:
/// these tests never skip.
pub fn modern_nix_root() -> PathBuf {
    let root = std::env::var_os("DRVMETA_MODERN_NIX_ROOT").map_or_else(
        || PathBuf::from("/var/lib/drvmeta/modern-nix"),
        PathBuf::from,
    );
    assert!(
        root.join("usr/bin/nix-instantiate").is_file() && root.join("proc/self").exists(),
        "the modern Nix chroot is missing or has no /proc at {}: run .ci/modern-nix.sh \
         (as root) or set DRVMETA_MODERN_NIX_ROOT",
        root.display()
    );
    root
}

/// Options that let a derivation-meta derivation build here: no sandbox
/// (Nix 2.8 as root in CI) and the `derivation-meta` system feature.
pub const META_BUILD_OPTIONS: [&str; 6] = [
    "--option",
    "sandbox",
    "false",
    "--option",
    "extra-system-features",
    "derivation-meta",
];

/// Write an executable `hook.sh` into `dir` that runs `drvmeta hook
/// --records <records>` (for Nix's `post-build-hook`), signing with the
/// secret key file `key` when given; returns its path.
pub fn write_hook_script(dir: &Path, records: &str, key: Option<&Path>) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let hook = dir.join("hook.sh");
    let sign = key.map_or_else(String::new, |k| format!(" --signing-key {}", k.display()));
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nexec {} hook --records {records}{sign}\n",
            env!("CARGO_BIN_EXE_drvmeta")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    hook
}

/// A signing key made by real Nix (`nix-store --generate-binary-cache-key
/// <name>`) in `dir`: the secret key file and the public key
/// (`name:base64`).
pub fn nix_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let secret = dir.join(format!("{name}.secret"));
    let public = dir.join(format!("{name}.public"));
    run(
        nix("nix-store")
            .arg("--generate-binary-cache-key")
            .arg(name)
            .arg(&secret)
            .arg(&public),
        "generate a signing key",
    );
    let public = std::fs::read_to_string(&public).unwrap().trim().to_owned();
    (secret, public)
}

/// Run `command` with stdout and stderr captured, killing it and failing
/// the test when it runs longer than `seconds`: a hang is a failure, not a
/// stuck suite.
pub fn output_within(command: &mut Command, seconds: u64) -> std::process::Output {
    use std::io::Read as _;
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Drain both pipes while waiting: a child writing more than a pipe
    // holds must not block.
    let drain = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            pipe.read_to_end(&mut bytes).unwrap();
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("{command:?} hung for {seconds} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    std::process::Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
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

/// Instantiate `file` with `--arg withMeta <with_meta>` (and `--argstr
/// tweak <tweak>`); returns the drv paths printed, one per element of the
/// list the expression returns, without Nix's `!output` suffix.
pub fn instantiate(
    file: &Path,
    with_meta: bool,
    tweak: Option<&str>,
    context: &str,
) -> Vec<String> {
    instantiate_with(NixVersion::Old, file, with_meta, tweak, context)
}

/// [`instantiate`] with either Nix; `file` as that Nix sees it.
pub fn instantiate_with(
    version: NixVersion,
    file: &Path,
    with_meta: bool,
    tweak: Option<&str>,
    context: &str,
) -> Vec<String> {
    let mut command = version.command("nix-instantiate");
    command.arg(file).args([
        "--arg",
        "withMeta",
        if with_meta { "true" } else { "false" },
    ]);
    if let Some(tweak) = tweak {
        command.args(["--argstr", "tweak", tweak]);
    }
    run(&mut command, context)
        .lines()
        .map(|p| p.split('!').next().unwrap().to_owned())
        .collect()
}

/// The project's root directory.
pub fn project_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The real nixpkgs `lib` (`../shared/nixpkgs-lib/lib`, or
/// `DRVMETA_NIXPKGS_LIB`). Panics when it is missing.
pub fn nixpkgs_lib() -> PathBuf {
    let dir = std::env::var_os("DRVMETA_NIXPKGS_LIB").map_or_else(
        || project_dir().join("../shared/nixpkgs-lib/lib"),
        PathBuf::from,
    );
    assert!(
        dir.join("default.nix").is_file(),
        "nixpkgs' lib is missing at {} (set DRVMETA_NIXPKGS_LIB)",
        dir.display()
    );
    dir
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

fn put_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(&n.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u64(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
    out.resize(out.len() + (8 - bytes.len() % 8) % 8, 0);
}

/// A `nix-store --import` stream of regular files, written here (from the
/// format in DESIGN.md §2.3) so tests can put arbitrary `.drv` bytes into
/// the store and ask Nix about them.
pub fn export_stream(items: &[(&str, &[u8], &[&str])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (path, contents, references) in items {
        put_u64(&mut out, 1);
        for token in ["nix-archive-1", "(", "type", "regular", "contents"] {
            put_str(&mut out, token.as_bytes());
        }
        put_str(&mut out, contents);
        put_str(&mut out, b")");
        put_u64(&mut out, 0x4558_494e);
        put_str(&mut out, path.as_bytes());
        put_u64(&mut out, references.len() as u64);
        for reference in *references {
            put_str(&mut out, reference.as_bytes());
        }
        put_str(&mut out, b"");
        put_u64(&mut out, 0);
    }
    put_u64(&mut out, 0);
    out
}

/// Feed `stream` to `nix-store --import`; returns (success, stderr).
pub fn nix_import(stream: &[u8]) -> (bool, String) {
    use std::io::Write as _;
    let mut child = nix("nix-store")
        .arg("--import")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("nix-store runs");
    child.stdin.take().unwrap().write_all(stream).unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Write a generated expression to a file that `version` sees (kept while
/// the directory lives); returns the path it sees.
fn expression_file(
    version: NixVersion,
    generated: &generator::Generated,
) -> (tempfile::TempDir, PathBuf) {
    let (dir, seen) = version.tempdir();
    let name = format!("twin-{}.nix", generated.seed);
    std::fs::write(dir.path().join(&name), &generated.expr).unwrap();
    (dir, seen.join(name))
}

/// Instantiate a generated expression both ways: the drv paths of its
/// elements, with meta (A) and without (B).
pub fn instantiate_twins(generated: &generator::Generated) -> (Vec<String>, Vec<String>) {
    instantiate_twins_with(NixVersion::Old, generated)
}

/// [`instantiate_twins`] with either Nix.
pub fn instantiate_twins_with(
    version: NixVersion,
    generated: &generator::Generated,
) -> (Vec<String>, Vec<String>) {
    let (_dir, file) = expression_file(version, generated);
    let context = format!("seed {} ({})", generated.seed, version.label());
    let a = instantiate_with(version, &file, true, None, &context);
    let b = instantiate_with(version, &file, false, None, &context);
    (a, b)
}

/// Instantiate a generated expression with `--argstr tweak <tweak>`.
pub fn instantiate_tweaked(
    generated: &generator::Generated,
    with_meta: bool,
    tweak: &str,
) -> Vec<String> {
    let (_dir, file) = expression_file(NixVersion::Old, generated);
    let context = format!("seed {} tweak {tweak}", generated.seed);
    instantiate(&file, with_meta, Some(tweak), &context)
}

/// A real nginx serving a record store on 127.0.0.1 as Nix's HTTP binary
/// caches are served: static files, WebDAV `PUT` (written to a temporary
/// file, then renamed into place) and JSON directory listings. Installed by
/// `.ci/run` (Debian's `nginx-light`); a missing nginx fails the test.
pub struct Nginx {
    dir: tempfile::TempDir,
    /// The port it listens on.
    pub port: u16,
    child: Option<std::process::Child>,
}

impl Nginx {
    /// Start nginx on a free port, serving an empty directory.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let root = dir.path();
        std::fs::create_dir_all(root.join("www")).unwrap();
        std::fs::create_dir_all(root.join("body")).unwrap();
        let d = root.display();
        let config = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log;\nevents {{ worker_connections 512; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n\
             proxy_temp_path {d}/body; fastcgi_temp_path {d}/body;\n\
             uwsgi_temp_path {d}/body; scgi_temp_path {d}/body;\n\
             server {{\n    listen 127.0.0.1:{port};\n    root {d}/www;\n\
             location / {{\n      dav_methods PUT;\n      create_full_put_path on;\n\
             dav_access user:rw group:r all:r;\n      client_max_body_size 32m;\n\
             autoindex on;\n      autoindex_format json;\n    }}\n  }}\n}}\n"
        );
        std::fs::write(root.join("nginx.conf"), config).unwrap();
        let mut nginx = Self {
            dir,
            port,
            child: None,
        };
        nginx.spawn();
        nginx
    }

    fn spawn(&mut self) {
        let binary = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("nginx is not installed: .ci/run installs it (apt-get install nginx-light)");
        let child = Command::new(binary)
            .arg("-p")
            .arg(self.dir.path())
            .arg("-c")
            .arg(self.dir.path().join("nginx.conf"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "nginx did not start: {}",
                std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Kill nginx (SIGKILL: no graceful end for the requests in flight).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kill nginx and start it again on the same port and files.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// `http://127.0.0.1:<port>/<prefix>`.
    pub fn url(&self, prefix: &str) -> String {
        format!("http://127.0.0.1:{}/{prefix}", self.port)
    }

    /// The directory nginx serves.
    pub fn www(&self) -> PathBuf {
        self.dir.path().join("www")
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.kill();
    }
}

/// drvmeta with Nix 2.8's test configuration and none of drvmeta's own
/// settings from the environment (a developer's DRVMETA_RECORDS or signing
/// key must not leak into a test).
pub fn drvmeta_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_drvmeta"));
    command
        .args(args)
        .env("NIX_CONFIG", NIX_CONFIG)
        .env_remove("DRVMETA_RECORDS")
        .env_remove("DRVMETA_SIGNING_KEY")
        .env_remove("DRVMETA_TRUSTED_KEYS");
    command
}

/// Instantiate `file` (an expression of one derivation) with Nix 2.8; its
/// drv path.
pub fn instantiate_file(file: &Path) -> String {
    run(nix("nix-instantiate").arg(file), "instantiate")
        .trim()
        .to_owned()
}

/// The values of a CycloneDX component's properties named `name`.
pub fn cdx_property<'a>(component: &'a serde_json::Value, name: &str) -> Vec<&'a str> {
    component["properties"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == name)
        .map(|p| p["value"].as_str().unwrap())
        .collect()
}
