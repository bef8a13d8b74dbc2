//! Kernel variants checked exactly as Hugging Face's `kernels` package
//! checks them (PyPI 0.17.x: `Metadata.from_bytes` → `Digest.hash_variant` →
//! `Digest.validate`, DESIGN.md §3.5), so that drvmeta's verdict on a
//! kernel output, a copy of it or a Hub download is `kernels`' verdict.
//!
//! - Variants: `<output>/build/<variant>/` when the output has a `build`
//!   directory, else the output's top-level directories; a variant is a
//!   directory holding `metadata.json`.
//! - `metadata.json` must load as `kernels`' `Metadata` (required fields and
//!   their types, the kernel name's rule, a known backend); its `digest`
//!   must be present.
//! - The files hashed: every entry below the variant whose target is a
//!   regular file (a symlink to a file is hashed through the link; a symlink
//!   to a directory is neither followed nor hashed), except the variant's
//!   top-level `metadata.json` and `metadata.json.sigstore`, anything with a
//!   `__pycache__` component, and files with extension `pyc` (a file named
//!   `.pyc` has none). A dangling link or an unreadable file is a failure.
//!   Names are relative paths with `\` read as `/`.
//! - Missing, unknown or different files, or another algorithm, fail.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::Value;
use sha2::Digest as _;

/// The largest `metadata.json` read (a digest of every file of a variant).
const METADATA_LIMIT: u64 = 16 << 20;

/// The digest algorithms `kernels` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `sha256`.
    Sha256,
    /// `sha512`.
    Sha512,
}

impl Algorithm {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "sha256" => Some(Self::Sha256),
            "sha512" => Some(Self::Sha512),
            _ => None,
        }
    }

    /// Hash a file by streaming it (kernels' `.so` files can be large).
    fn hash_file(self, path: &Path) -> std::io::Result<String> {
        let engine = base64::engine::general_purpose::STANDARD;
        let mut file = std::fs::File::open(path)?;
        Ok(match self {
            Self::Sha256 => {
                let mut hasher = sha2::Sha256::new();
                std::io::copy(&mut file, &mut hasher)?;
                engine.encode(hasher.finalize())
            }
            Self::Sha512 => {
                let mut hasher = sha2::Sha512::new();
                std::io::copy(&mut file, &mut hasher)?;
                engine.encode(hasher.finalize())
            }
        })
    }
}

/// The kernel variants of `output` (see the module docs), sorted.
#[must_use]
pub fn variants(output: &Path) -> Vec<PathBuf> {
    let build = output.join("build");
    let base = if build.is_dir() {
        build
    } else {
        output.to_owned()
    };
    let mut found: Vec<PathBuf> = std::fs::read_dir(&base)
        .map(|entries| {
            entries
                .filter_map(std::result::Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_dir() && p.join("metadata.json").is_file())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// Why `metadata.json` would not load in `kernels`, if it would not.
fn schema_problem(metadata: &Value) -> Option<String> {
    const BACKENDS: &[&str] = &[
        "cann", "cpu", "cuda", "metal", "neuron", "rocm", "tpu", "xpu",
    ];
    let Some(object) = metadata.as_object() else {
        return Some("is not a JSON object".to_owned());
    };
    for field in [
        "name",
        "id",
        "version",
        "license",
        "python-depends",
        "backend",
    ] {
        if !object.contains_key(field) {
            return Some(format!("missing field `{field}`"));
        }
    }
    let name = object["name"].as_str().unwrap_or_default();
    let name_ok = name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !name_ok {
        return Some(format!("invalid kernel name {:?}", object["name"]));
    }
    if !object["id"].is_string() || !object["license"].is_string() {
        return Some("`id` and `license` must be strings".to_owned());
    }
    if !object["version"].is_u64() {
        return Some("`version` must be a non-negative integer".to_owned());
    }
    if !object["python-depends"]
        .as_array()
        .is_some_and(|deps| deps.iter().all(Value::is_string))
    {
        return Some("`python-depends` must be a list of strings".to_owned());
    }
    let backend = object["backend"]["type"].as_str().unwrap_or_default();
    if !BACKENDS.contains(&backend) {
        return Some(format!("unknown backend type {backend:?}"));
    }
    if let Some(digest) = object.get("digest").filter(|d| !d.is_null()) {
        let algorithm_ok = digest["algorithm"]
            .as_str()
            .and_then(Algorithm::parse)
            .is_some();
        let files_ok = digest["files"]
            .as_object()
            .is_some_and(|files| files.values().all(Value::is_string));
        if !algorithm_ok || !files_ok {
            return Some("`digest` needs a known `algorithm` and `files` of strings".to_owned());
        }
    }
    match object.get("provenance") {
        None | Some(Value::Null) => None,
        Some(provenance) => provenance_problem(provenance),
    }
}

/// What `kernels`' `Provenance` rejects: a `kernel-builder` without a string
/// `version`; a commit (`commit` or its alias `sha`, not both) that is not a
/// full 40- or 64-hex id; `dirty` not a boolean; a builder with only one of
/// commit and dirty; a `kernel` without both. Unknown fields are ignored, as
/// there.
fn provenance_problem(provenance: &Value) -> Option<String> {
    let Some(provenance) = provenance.as_object() else {
        return Some("`provenance` must be an object".to_owned());
    };
    let git = |entry: &serde_json::Map<String, Value>, key: &str| -> Result<bool, String> {
        let commit = match (entry.get("commit"), entry.get("sha")) {
            (Some(_), Some(_)) => {
                return Err(format!("`provenance.{key}` has both `commit` and `sha`"));
            }
            (commit, sha) => commit.or(sha),
        };
        if let Some(commit) = commit {
            let ok = commit.as_str().is_some_and(|c| {
                matches!(c.len(), 40 | 64) && c.bytes().all(|b| b.is_ascii_hexdigit())
            });
            if !ok {
                return Err(format!(
                    "`provenance.{key}.commit` {commit} is not a full 40- or 64-hex git id"
                ));
            }
        }
        let dirty = entry.get("dirty");
        if dirty.is_some_and(|d| !d.is_boolean()) {
            return Err(format!("`provenance.{key}.dirty` must be a boolean"));
        }
        match (commit.is_some(), dirty.is_some()) {
            (true, true) => Ok(true),
            (false, false) => Ok(false),
            _ => Err(format!(
                "`provenance.{key}` needs its commit and `dirty` together"
            )),
        }
    };
    let Some(builder) = provenance.get("kernel-builder").and_then(Value::as_object) else {
        return Some("`provenance` needs a `kernel-builder` object".to_owned());
    };
    if !builder.get("version").is_some_and(Value::is_string) {
        return Some("`provenance.kernel-builder` needs a string `version`".to_owned());
    }
    if let Err(problem) = git(builder, "kernel-builder") {
        return Some(problem);
    }
    match provenance.get("kernel") {
        None | Some(Value::Null) => None,
        Some(Value::Object(kernel)) => match git(kernel, "kernel") {
            Err(problem) => Some(problem),
            Ok(false) => Some("`provenance.kernel` needs `commit` and `dirty`".to_owned()),
            Ok(true) => None,
        },
        Some(_) => Some("`provenance.kernel` must be an object".to_owned()),
    }
}

/// The digest `kernels` computes for `variant` with `algorithm`: relative
/// path → base64 hash.
///
/// # Errors
/// A message naming the entry when a link dangles or a file cannot be read
/// (`kernels` fails the same way).
pub fn hash_variant(
    variant: &Path,
    algorithm: Algorithm,
) -> std::result::Result<BTreeMap<String, String>, String> {
    let mut files = BTreeMap::new();
    for entry in walkdir::WalkDir::new(variant) {
        let entry = entry.map_err(|e| format!("cannot walk: {e}"))?;
        let path = entry.path();
        let target = std::fs::canonicalize(path)
            .map_err(|e| format!("{}: {e} (a dangling link?)", path.display()))?;
        let top_level_metadata = entry.depth() == 1
            && matches!(
                path.file_name().and_then(|f| f.to_str()),
                Some("metadata.json" | "metadata.json.sigstore")
            );
        if !target.is_file()
            || top_level_metadata
            || path.components().any(|c| c.as_os_str() == "__pycache__")
            || path.extension().and_then(|e| e.to_str()) == Some("pyc")
        {
            continue;
        }
        let hash = algorithm
            .hash_file(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        let relative = path
            .strip_prefix(variant)
            .expect("walkdir stays below its root")
            .to_string_lossy()
            .replace('\\', "/");
        files.insert(relative, hash);
    }
    Ok(files)
}

/// Check one variant as `kernels` does. Returns the number of files
/// checked, or every problem found, each naming the file.
///
/// # Errors
/// The problems, as messages.
pub fn check_variant(variant: &Path) -> std::result::Result<usize, Vec<String>> {
    checked_digest(variant).map(|(files, _)| files)
}

/// [`check_variant`], also returning the `digest` object it checked the
/// files against (read once, so it is the one the check passed on).
fn checked_digest(variant: &Path) -> std::result::Result<(usize, Value), Vec<String>> {
    let name = variant.display();
    let metadata_file = variant.join("metadata.json");
    // Followed like kernels follows it (a Hub snapshot links it), but read
    // as a regular file of bounded size: never a FIFO or /dev/zero.
    let metadata: Value = crate::safe_read::read_regular(&metadata_file, true, METADATA_LIMIT)
        .map_err(|e| e.to_string())
        .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
        .map_err(|e| vec![format!("{name}/metadata.json: cannot read: {e}")])?;
    if let Some(problem) = schema_problem(&metadata) {
        return Err(vec![format!(
            "{name}/metadata.json: kernels cannot load it: {problem}"
        )]);
    }
    let Some(digest) = metadata.get("digest").filter(|d| !d.is_null()) else {
        return Err(vec![format!(
            "{name}/metadata.json: has no digest (kernels: DigestMissing)"
        )]);
    };
    let algorithm = digest["algorithm"]
        .as_str()
        .and_then(Algorithm::parse)
        .expect("checked by the schema");
    let expected = digest["files"].as_object().expect("checked by the schema");
    let actual = hash_variant(variant, algorithm).map_err(|e| vec![e])?;
    let mut problems = Vec::new();
    for (relative, want) in expected {
        match actual.get(relative) {
            None => problems.push(format!(
                "{name}/{relative}: listed in metadata.json's digest but missing"
            )),
            Some(got) if Some(got.as_str()) != want.as_str() => problems.push(format!(
                "{name}/{relative}: {} is {got}, metadata.json says {}",
                digest["algorithm"].as_str().unwrap_or_default(),
                want.as_str().unwrap_or_default()
            )),
            Some(_) => {}
        }
    }
    for relative in actual.keys() {
        if !expected.contains_key(relative) {
            problems.push(format!(
                "{name}/{relative}: not listed in metadata.json's digest"
            ));
        }
    }
    if problems.is_empty() {
        Ok((actual.len(), digest.clone()))
    } else {
        Err(problems)
    }
}

/// What a variant's `metadata.json` says of its provenance (its
/// `provenance` block, or the legacy `build-info`), read with the same
/// vocabulary as `__meta.provenance`; `None` when it says nothing.
#[must_use]
pub fn metadata_provenance(variant: &Path) -> Option<super::kernel::KernelProvenance> {
    let metadata: Value =
        crate::safe_read::read_regular(&variant.join("metadata.json"), true, METADATA_LIMIT)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())?;
    let block = metadata
        .get("provenance")
        .or_else(|| metadata.get("build-info"))?
        .clone();
    let mut meta = serde_json::Map::new();
    meta.insert("provenance".to_owned(), block);
    Some(super::kernel::KernelProvenance::from_meta(&meta))
}

/// The identity of a variant that survives what a copy goes through
/// (`metadata.json.sigstore` and `__pycache__` added, the `provenance` block
/// written into `metadata.json`): the SHA-256 (hex) of its digest set,
/// `{"algorithm", "files"}` serialised compactly with sorted keys — after
/// the variant passed `kernels`' digest check, so the set is its content.
///
/// # Errors
/// The variant's problems ([`check_variant`]).
pub fn variant_digest(variant: &Path) -> std::result::Result<String, Vec<String>> {
    let (_, digest) = checked_digest(variant)?;
    let canonical = serde_json::json!({
        "algorithm": digest["algorithm"],
        "files": digest["files"],
    });
    let bytes = serde_json::to_vec(&canonical).expect("JSON serialises");
    Ok(crate::derivation::store_path::hex(&sha2::Sha256::digest(
        &bytes,
    )))
}
