//! `provenance push`: copy records from a local store to another store
//! (HTTP(S) or a directory), as `nix copy --to` copies store paths.
//!
//! Only records whose name matches their content are pushed (a damaged or
//! planted file stays behind, reported); a record already at the
//! destination is not uploaded again. The records of an output go with
//! the `v-<variant digest>/` copies of the kernel records among them, so
//! that a copy of a kernel verifies against the remote store too.

use super::sign::Envelope;
use super::store::{LEGACY_SUFFIX, Location, RecordStore, SUFFIX, content_name, variant_dir};
use crate::error::Result;

/// One record file pushed (or found there already).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Pushed {
    /// Its directory: an output hash part or `v-<variant digest>`.
    pub dir: String,
    /// Its file name.
    pub name: String,
    /// Whether it was uploaded (`false`: the destination had it).
    pub new: bool,
}

/// What a push did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PushReport {
    /// The records now at the destination.
    pub pushed: Vec<Pushed>,
    /// Files left behind, with the reason (`<file>: <reason>`).
    pub skipped: Vec<String>,
}

/// The variant directories a record files copies under (its kernel variant
/// subjects), read from its payload; none when it cannot be read.
fn variant_dirs_of(bytes: &[u8]) -> Vec<String> {
    let Ok(envelope) = serde_json::from_slice::<Envelope>(bytes) else {
        return Vec::new();
    };
    let Ok(payload) = envelope.payload() else {
        return Vec::new();
    };
    let Ok(statement) = serde_json::from_slice::<serde_json::Value>(&payload) else {
        return Vec::new();
    };
    statement["subject"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["annotations"]["kernelVariant"].is_string())
        .filter_map(|s| s["digest"]["sha256"].as_str())
        .filter(|d| d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(variant_dir)
        .collect()
}

/// Push the records of `outputs` (store paths; `None`: every record) from
/// `from` to `to`. `progress` is called after each record with the number
/// done so far.
///
/// # Errors
/// When `from` cannot be read or an upload fails (after retries); records
/// pushed before the failure stay pushed.
pub fn push(
    from: &RecordStore,
    to: &Location,
    outputs: Option<&[String]>,
    progress: &mut dyn FnMut(usize),
) -> Result<PushReport> {
    let source = Location::Dir(from.clone());
    let mut dirs: Vec<String> = match outputs {
        None => from.dirs()?,
        Some(outputs) => outputs
            .iter()
            .map(|o| super::hash_part(o).to_owned())
            .collect(),
    };
    let mut report = PushReport::default();
    let mut done = std::collections::HashSet::new();
    let mut next = 0;
    while next < dirs.len() {
        let dir = dirs[next].clone();
        next += 1;
        if !done.insert(dir.clone()) {
            continue;
        }
        for name in source.list(&dir)? {
            let found = source.read(&dir, &name);
            let bytes = match found.bytes {
                Ok(bytes) => bytes,
                Err(reason) => {
                    report.skipped.push(format!("{}: {reason}", found.location));
                    continue;
                }
            };
            if let Some(stem) = name.strip_suffix(SUFFIX) {
                let content = stem.split_once('.').map_or("", |(_, c)| c);
                if content != content_name(&bytes) {
                    report.skipped.push(format!(
                        "{}: its name does not match its content (renamed or edited)",
                        found.location
                    ));
                    continue;
                }
                if outputs.is_some() {
                    dirs.extend(variant_dirs_of(&bytes));
                }
            } else {
                debug_assert!(name.ends_with(LEGACY_SUFFIX));
            }
            let new = to.put(&dir, &name, &bytes)?;
            report.pushed.push(Pushed {
                dir: dir.clone(),
                name,
                new,
            });
            progress(report.pushed.len());
        }
    }
    Ok(report)
}

/// Start `drvmeta provenance push --to <to> --records <from> <outputs>` as a
/// detached process (its own process group, no inherited pipes, so the
/// caller — Nix running its post-build hook — does not wait for it) and
/// return the log file its output is appended to (`.push.log` in `from`).
/// The destination is parsed first, so a bad one fails here.
///
/// # Errors
/// A bad destination, or when the log or the process cannot be started.
pub fn push_detached(
    to: &str,
    from: &RecordStore,
    outputs: &[String],
) -> Result<std::path::PathBuf> {
    use std::os::unix::process::CommandExt as _;
    Location::parse(to)?;
    let log = from.root().join(".push.log");
    let output_error = |message: String| crate::error::Error::Output {
        file: log.clone(),
        message,
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|e| output_error(format!("cannot open the push log: {e}")))?;
    let stderr = file
        .try_clone()
        .map_err(|e| output_error(format!("cannot open the push log: {e}")))?;
    let exe = std::env::current_exe()
        .map_err(|e| output_error(format!("cannot find drvmeta's own executable: {e}")))?;
    std::process::Command::new(exe)
        .args(["provenance", "push", "--to", to, "--records"])
        .arg(from.root())
        .args(outputs)
        .stdin(std::process::Stdio::null())
        .stdout(file)
        .stderr(stderr)
        .process_group(0)
        .spawn()
        .map_err(|e| output_error(format!("cannot start the background push: {e}")))?;
    Ok(log)
}
