//! Calling the local Nix store through its command-line interface.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

fn nix_store() -> Command {
    Command::new("nix-store")
}

fn spawn_error(error: &std::io::Error) -> Error {
    if error.kind() == std::io::ErrorKind::NotFound {
        Error::Store(
            "nix-store was not found on PATH: this needs Nix (e.g. apt-get install nix-bin)"
                .to_owned(),
        )
    } else {
        Error::Store(format!("cannot run nix-store: {error}"))
    }
}

/// The paths among `paths` that are not valid in the store.
///
/// # Errors
/// When `nix-store` cannot be run or fails.
pub fn invalid_paths(paths: &[String]) -> Result<Vec<String>> {
    let mut invalid = Vec::new();
    // Nix 2.8's --check-validity takes paths as arguments only.
    for chunk in paths.chunks(1000) {
        let output = nix_store()
            .args(["--check-validity", "--print-invalid"])
            .args(chunk)
            .output()
            .map_err(|e| spawn_error(&e))?;
        if !output.status.success() {
            return Err(Error::Store(format!(
                "nix-store --check-validity failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        invalid.extend(
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .map(str::to_owned),
        );
    }
    Ok(invalid)
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
