//! Calling the local Nix store through its command-line interface.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

fn nix_store() -> Command {
    Command::new("nix-store")
}

/// Whether `nix-store` can be run at all (a closure can be read from `.drv`
/// files on a machine without Nix). Asked once per process: each run of
/// `nix-store` costs 20-30 ms.
#[must_use]
pub fn available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        nix_store()
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    })
}

fn spawn_error(error: &std::io::Error) -> Error {
    spawn_error_of("nix-store", error)
}

/// The paths among `paths` that are not valid in the store.
///
/// # Errors
/// When `nix-store` cannot be run or fails.
pub fn invalid_paths(paths: &[String]) -> Result<Vec<String>> {
    // Nix 2.8's --check-validity takes paths as arguments only.
    run_chunked(&["--check-validity", "--print-invalid"], paths)
}

/// Run `command` (the Nix tool `tool`) to its end; its stdout. `what`
/// names the call in the error when it fails, with Nix's message.
fn run_tool(command: &mut Command, tool: &str, what: &str) -> Result<Vec<u8>> {
    let output = command.output().map_err(|e| spawn_error_of(tool, &e))?;
    if !output.status.success() {
        return Err(Error::Store(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(output.stdout)
}

/// The lines of a tool's output (non-UTF-8 bytes replaced), owned.
fn lines_of(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Run `nix-store ARGS PATHS…` in chunks of 1,000 paths; the output lines.
fn run_chunked(args: &[&str], paths: &[String]) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    let what = format!("nix-store {}", args.join(" "));
    for chunk in paths.chunks(1000) {
        let stdout = run_tool(nix_store().args(args).args(chunk), "nix-store", &what)?;
        lines.extend(lines_of(&stdout));
    }
    Ok(lines)
}

/// Feed an export stream to `nix-store --import`; returns the imported paths.
///
/// # Errors
/// When `nix-store` cannot be run or rejects the stream (its message is kept).
pub fn import(stream: Vec<u8>) -> Result<Vec<String>> {
    let mut child = nix_store()
        .arg("--import")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| spawn_error(&e))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let writer = std::thread::spawn(move || stdin.write_all(&stream));
    let output = child.wait_with_output().map_err(|e| spawn_error(&e))?;
    let _ = writer.join();
    if !output.status.success() {
        return Err(Error::Store(format!(
            "nix-store --import failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect())
}

fn query(args: &[&str], paths: &[String]) -> Result<Vec<String>> {
    let mut full = vec!["--query"];
    full.extend_from_slice(args);
    run_chunked(&full, paths)
}

/// The NAR hash (sha256, lowercase hex) Nix recorded for each of `paths`,
/// which must all be valid (one `nix-store` call per 1,000 paths).
///
/// # Errors
/// When `nix-store` fails (e.g. a path is not valid).
pub fn nar_hashes(paths: &[String]) -> Result<Vec<String>> {
    let hashes = query(&["--hash"], paths)?;
    if hashes.len() != paths.len() {
        return Err(Error::Store(
            "nix-store --query --hash gave an unexpected number of lines".to_owned(),
        ));
    }
    hashes
        .iter()
        .map(|hash| {
            let base32 = hash
                .strip_prefix("sha256:")
                .ok_or_else(|| Error::Store(format!("unexpected NAR hash {hash:?}")))?;
            let digest = crate::derivation::nixbase32::decode::<32>(base32.as_bytes())
                .ok_or_else(|| Error::Store(format!("unexpected NAR hash {hash:?}")))?;
            Ok(crate::provenance::nar::hex(&digest))
        })
        .collect()
}

/// The NAR sizes Nix recorded for `paths`, which must all be valid.
///
/// # Errors
/// When `nix-store` fails (e.g. a path is not valid).
pub fn nar_sizes(paths: &[String]) -> Result<Vec<u64>> {
    let sizes = query(&["--size"], paths)?;
    if sizes.len() != paths.len() {
        return Err(Error::Store(
            "nix-store --query --size gave an unexpected number of lines".to_owned(),
        ));
    }
    sizes
        .iter()
        .map(|size| {
            size.parse()
                .map_err(|_| Error::Store(format!("unexpected NAR size {size:?}")))
        })
        .collect()
}

/// The output paths Nix knows for derivation `drv`.
///
/// # Errors
/// When `nix-store` fails.
pub fn outputs_of(drv: &str) -> Result<Vec<String>> {
    query(&["--outputs"], &[drv.to_owned()])
}

/// The derivation Nix registered as the deriver of each of `paths`
/// (`None` where it has none).
///
/// # Errors
/// When `nix-store` fails (a path is not valid).
pub fn derivers(paths: &[String]) -> Result<Vec<Option<String>>> {
    Ok(query(&["--deriver"], paths)?
        .into_iter()
        .map(|d| (d != "unknown-deriver").then_some(d))
        .collect())
}

/// The warning `nix-store --realise` prints without `--add-root`: noise
/// for a caller that roots its results itself (or asked for no root).
const NO_ROOT_WARNING: &str = "warning: you did not specify '--add-root'; the result might be removed by the garbage collector";

/// `nix-store --realise` the derivations; returns their output paths. The
/// build log on stderr is passed through as it comes, without Nix's
/// `--add-root` warning. With `root`, each output gets an indirect GC root
/// there as `nix-build --out-link` makes them (`result`, `result-dev`,
/// `result-2`, …).
///
/// # Errors
/// When the build fails.
pub fn realise(drvs: &[String], root: Option<&std::path::Path>) -> Result<Vec<String>> {
    use std::io::{BufRead as _, Write as _};
    let mut command = nix_store();
    command.arg("--realise");
    if let Some(root) = root {
        command.arg("--add-root").arg(root).arg("--indirect");
    }
    let mut child = command
        .args(drvs)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| spawn_error(&e))?;
    let log = child.stderr.take().expect("piped");
    let forward = std::thread::spawn(move || {
        let mut log = std::io::BufReader::new(log);
        let mut line = Vec::new();
        let stderr = std::io::stderr();
        while log.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
            let text = String::from_utf8_lossy(&line);
            let kept = text.replace(NO_ROOT_WARNING, "");
            if !kept.is_empty() && kept != "\n" {
                let _ = stderr.lock().write_all(kept.as_bytes());
            }
            line.clear();
        }
    });
    let output = child.wait_with_output().map_err(|e| spawn_error(&e))?;
    let _ = forward.join();
    if !output.status.success() {
        return Err(Error::Store(format!(
            "nix-store --realise failed ({})",
            output.status
        )));
    }
    let printed = String::from_utf8_lossy(&output.stdout);
    printed
        .lines()
        .map(|line| {
            if root.is_none() {
                return Ok(line.to_owned());
            }
            // With --add-root, Nix prints the roots: the outputs are what
            // they point to.
            std::fs::read_link(line)
                .map(|target| target.to_string_lossy().into_owned())
                .map_err(|e| Error::Store(format!("{line}: cannot read the GC root Nix made: {e}")))
        })
        .collect()
}

/// `nix-store --query --graph` of `paths`: their runtime closure in dot form.
///
/// # Errors
/// When `nix-store` fails (e.g. a path is not valid).
pub fn graph(paths: &[String]) -> Result<String> {
    Ok(query(&["--graph"], paths)?.join("\n"))
}

/// Instantiate `file` (a `.nix` file or a directory with `default.nix`)
/// with `nix-instantiate`; the derivation paths it prints (without Nix's
/// `!output` suffix).
///
/// # Errors
/// When `nix-instantiate` cannot be run or fails (its message is kept).
pub fn instantiate(file: &str) -> Result<Vec<String>> {
    let stdout = run_tool(
        Command::new("nix-instantiate").arg(file),
        "nix-instantiate",
        &format!("nix-instantiate {file}"),
    )?;
    Ok(lines_of(&stdout)
        .into_iter()
        .map(|line| line.split('!').next().unwrap_or(&line).to_owned())
        .collect())
}

/// The derivation of flake installable `installable` (`.#pkg`,
/// `nixpkgs#hello`), from `nix path-info --derivation`.
///
/// # Errors
/// When `nix` cannot be run or fails (its message is kept).
pub fn flake_derivation(installable: &str) -> Result<Vec<String>> {
    let stdout = run_tool(
        Command::new("nix").args([
            "--extra-experimental-features",
            "nix-command flakes",
            "path-info",
            "--derivation",
            installable,
        ]),
        "nix",
        &format!("nix path-info --derivation {installable}"),
    )?;
    Ok(lines_of(&stdout))
}

fn spawn_error_of(tool: &str, error: &std::io::Error) -> Error {
    if error.kind() == std::io::ErrorKind::NotFound {
        Error::Store(format!(
            "{tool} was not found on PATH: this needs Nix (e.g. apt-get install nix-bin)"
        ))
    } else {
        Error::Store(format!("cannot run {tool}: {error}"))
    }
}

/// What the Nix database records about a valid store path (a narinfo).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PathInfo {
    /// The path.
    pub path: String,
    /// The NAR hash as Nix prints it in JSON (SRI: `sha256-<base64>`).
    pub nar_hash: String,
    /// The NAR size in bytes.
    pub nar_size: u64,
    /// The store paths it references.
    #[serde(default)]
    pub references: Vec<String>,
    /// The derivation that produced it, when known.
    #[serde(default)]
    pub deriver: Option<String>,
    /// Signatures (`key-name:base64`).
    #[serde(default)]
    pub signatures: Vec<String>,
    /// Its content address, for content-addressed paths.
    #[serde(default)]
    pub ca: Option<String>,
    /// The NAR's SHA-512 (lowercase hex), when computed
    /// (`drvmeta sbom --nar-sha512`); Nix records none.
    #[serde(skip)]
    pub nar_sha512: Option<String>,
}

impl PathInfo {
    /// The NAR's SHA-256 digest (decoded from [`Self::nar_hash`]).
    #[must_use]
    pub fn nar_sha256(&self) -> Option<[u8; 32]> {
        use base64::Engine as _;
        let encoded = self.nar_hash.strip_prefix("sha256-")?;
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()?
            .try_into()
            .ok()
    }
}

/// `nix path-info --json` of `paths` (valid paths; one call per 1,000).
///
/// # Errors
/// When `nix` cannot be run or fails, or prints something else.
pub fn path_infos(paths: &[String]) -> Result<Vec<PathInfo>> {
    let mut infos = Vec::with_capacity(paths.len());
    for chunk in paths.chunks(1000) {
        let stdout = run_tool(
            Command::new("nix")
                .args([
                    "--extra-experimental-features",
                    "nix-command",
                    "path-info",
                    "--json",
                ])
                .args(chunk),
            "nix",
            "nix path-info --json",
        )?;
        let parsed: Vec<PathInfo> = serde_json::from_slice(&stdout)
            .map_err(|e| Error::Store(format!("nix path-info --json printed no path list: {e}")))?;
        infos.extend(parsed);
    }
    Ok(infos)
}
