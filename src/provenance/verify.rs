//! Checking outputs against their records and kernels' `metadata.json`
//! digests (DESIGN.md §3.5).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::Value;
use sha2::Digest as _;

use super::nar::nar_sha256;
use super::store::RecordStore;
use crate::error::Result;

/// A record file read from the store, or why it could not be.
#[derive(Debug, Clone)]
pub struct RecordFile {
    /// The file.
    pub file: PathBuf,
    /// The statement, or the reason it is unusable.
    pub statement: std::result::Result<Value, String>,
}

/// Every record of output `output_path`, each parsed and checked for shape.
///
/// # Errors
/// When the records directory cannot be read.
pub fn records_of(store: &RecordStore, output_path: &str) -> Result<Vec<RecordFile>> {
    Ok(store
        .records_for(super::hash_part(output_path))?
        .into_iter()
        .map(|file| {
            let statement = std::fs::read(&file)
                .map_err(|e| format!("cannot read: {e}"))
                .and_then(|bytes| {
                    serde_json::from_slice::<Value>(&bytes).map_err(|e| format!("not JSON: {e}"))
                })
                .and_then(|value| {
                    if value["_type"] != super::record::STATEMENT_TYPE
                        || value["predicateType"] != super::record::PREDICATE_TYPE
                    {
                        Err("not an in-toto statement with SLSA provenance".to_owned())
                    } else if subject_digest(&value, output_path).is_none() {
                        Err(format!("has no subject for {output_path}"))
                    } else {
                        Ok(value)
                    }
                });
            RecordFile { file, statement }
        })
        .collect())
}

fn base_name(path: &str) -> &str {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(path)
}

/// The sha256 digest a statement records for `output_path`, matched by
/// base name (`<hash>-<name>`), so that a copy of an output outside the
/// store is checked against the same record.
#[must_use]
pub fn subject_digest<'a>(statement: &'a Value, output_path: &str) -> Option<&'a str> {
    let base = base_name(output_path);
    statement["subject"].as_array()?.iter().find(|s| {
        s["name"]
            .as_str()
            .is_some_and(|name| base_name(name) == base)
    })?["digest"]["sha256"]
        .as_str()
}

/// Files a kernels digest covers: every regular file below the variant
/// directory except its top-level `metadata.json`, `metadata.json.sigstore`,
/// anything in `__pycache__` and `*.pyc`.
fn covered_files(variant: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let mut files = BTreeMap::new();
    let walker = walkdir::WalkDir::new(variant)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.file_name() != "__pycache__");
    for entry in walker {
        let entry = entry.map_err(|e| crate::Error::Output {
            file: variant.to_owned(),
            message: format!("cannot walk: {e}"),
        })?;
        if !entry.file_type().is_file() {
            continue;
        }
        let relative = entry
            .path()
            .strip_prefix(variant)
            .expect("walkdir stays below its root")
            .to_string_lossy()
            .into_owned();
        if relative == "metadata.json"
            || relative == "metadata.json.sigstore"
            || relative.ends_with(".pyc")
        {
            continue;
        }
        files.insert(relative, entry.path().to_owned());
    }
    Ok(files)
}

/// Check one variant directory's `metadata.json` digest. Returns the number
/// of files checked, or the problems found (each naming the file).
fn check_variant(variant: &Path, digest: &Value) -> std::result::Result<usize, Vec<String>> {
    let name = variant.display();
    let algorithm = digest["algorithm"].as_str().unwrap_or("");
    let Some(expected) = digest["files"].as_object() else {
        return Err(vec![format!(
            "{name}/metadata.json: digest.files is not an object"
        )]);
    };
    if !matches!(algorithm, "sha256" | "sha512") {
        return Err(vec![format!(
            "{name}/metadata.json: unknown digest algorithm {algorithm:?}"
        )]);
    }
    let actual = covered_files(variant).map_err(|e| vec![e.to_string()])?;
    let mut problems = Vec::new();
    for (relative, path) in &actual {
        let Some(want) = expected.get(relative).and_then(Value::as_str) else {
            problems.push(format!(
                "{name}/{relative}: not listed in metadata.json's digest"
            ));
            continue;
        };
        let got = match std::fs::read(path) {
            Ok(bytes) if algorithm == "sha256" => {
                base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&bytes))
            }
            Ok(bytes) => {
                base64::engine::general_purpose::STANDARD.encode(sha2::Sha512::digest(&bytes))
            }
            Err(e) => {
                problems.push(format!("{name}/{relative}: cannot read: {e}"));
                continue;
            }
        };
        if got != want {
            problems.push(format!(
                "{name}/{relative}: {algorithm} is {got}, metadata.json says {want}"
            ));
        }
    }
    for relative in expected.keys() {
        if !actual.contains_key(relative) {
            problems.push(format!(
                "{name}/{relative}: listed in metadata.json's digest but missing"
            ));
        }
    }
    if problems.is_empty() {
        Ok(actual.len())
    } else {
        Err(problems)
    }
}

/// Check every kernels `metadata.json` with a `digest` inside `output`.
/// Returns the number of files checked and the problems found.
///
/// # Errors
/// When the output cannot be walked.
pub fn check_kernel_digests(output: &Path) -> Result<(usize, Vec<String>)> {
    let mut checked = 0;
    let mut problems = Vec::new();
    if !output.is_dir() {
        return Ok((0, problems));
    }
    for entry in walkdir::WalkDir::new(output).sort_by_file_name() {
        let entry = entry.map_err(|e| crate::Error::Output {
            file: output.to_owned(),
            message: format!("cannot walk: {e}"),
        })?;
        if entry.file_name() != "metadata.json" || !entry.file_type().is_file() {
            continue;
        }
        let Ok(metadata) = std::fs::read(entry.path())
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<Value>(&b).map_err(|e| e.to_string()))
        else {
            problems.push(format!("{}: not valid JSON", entry.path().display()));
            continue;
        };
        let Some(digest) = metadata.get("digest") else {
            continue;
        };
        let variant = entry.path().parent().expect("a file has a parent");
        match check_variant(variant, digest) {
            Ok(n) => checked += n,
            Err(found) => problems.extend(found),
        }
    }
    Ok((checked, problems))
}

/// The result of verifying one output.
#[derive(Debug, Clone)]
pub struct Verification {
    /// The output path.
    pub output: String,
    /// sha256 (hex) of its NAR, as re-hashed now.
    pub nar_sha256: String,
    /// Records that agree.
    pub matching: Vec<PathBuf>,
    /// Problems: records that disagree or are unusable, digest mismatches.
    pub problems: Vec<String>,
    /// Kernel files whose digests were checked.
    pub kernel_files: usize,
    /// Records that say the kernel or builder tree was dirty.
    pub dirty: Vec<PathBuf>,
}

/// Verify `output` against every record of it and its kernels digests.
///
/// # Errors
/// When the output cannot be read or the records directory cannot be read.
pub fn verify(store: &RecordStore, output: &str) -> Result<Verification> {
    let (nar, _) = nar_sha256(Path::new(output))?;
    let mut result = Verification {
        output: output.to_owned(),
        nar_sha256: nar.clone(),
        matching: Vec::new(),
        problems: Vec::new(),
        kernel_files: 0,
        dirty: Vec::new(),
    };
    let records = records_of(store, output)?;
    if records.is_empty() {
        result.problems.push(format!(
            "{output}: no provenance record in {}",
            store.root().display()
        ));
    }
    for record in records {
        match &record.statement {
            Err(problem) => result
                .problems
                .push(format!("{}: {problem}", record.file.display())),
            Ok(statement) => {
                let digest = subject_digest(statement, output).unwrap_or_default();
                if digest == nar {
                    result.matching.push(record.file.clone());
                } else {
                    result.problems.push(format!(
                        "{}: records NAR sha256 {digest}, but {output} hashes to {nar}",
                        record.file.display()
                    ));
                }
                if is_dirty(statement) {
                    result.dirty.push(record.file.clone());
                }
            }
        }
    }
    let (files, problems) = check_kernel_digests(Path::new(output))?;
    result.kernel_files = files;
    result.problems.extend(problems);
    Ok(result)
}

/// Whether a statement records a dirty kernel or builder tree.
#[must_use]
pub fn is_dirty(statement: &Value) -> bool {
    statement["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .is_some_and(|deps| deps.iter().any(|d| d["annotations"]["dirty"] == true))
}
