//! Checking outputs against their records and kernels' `metadata.json`
//! digests (DESIGN.md §3.5).

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::nar::nar_sha256;
use super::sign::{Envelope, PublicKey, Trust};
use super::store::{Found, LEGACY_SUFFIX, SUFFIX, Sources, content_name};
use crate::error::Result;

/// A record file read from the store, or why it could not be.
#[derive(Debug, Clone)]
pub struct RecordFile {
    /// Where it is: a path, or a URL in a remote store.
    pub file: String,
    /// What its signatures prove against the trusted keys.
    pub trust: Trust,
    /// The statement, or the reason the record is unusable.
    pub statement: std::result::Result<Value, String>,
}

impl RecordFile {
    /// Whether verification counts this record: well-formed and signed by a
    /// trusted key (or well-formed at all, with `allow_unsigned`).
    #[must_use]
    pub fn counted(&self, allow_unsigned: bool) -> bool {
        self.statement.is_ok()
            && (self.trust.is_trusted()
                || (allow_unsigned && !matches!(self.trust, Trust::BadSignature(_))))
    }

    /// Why verification does not count this record (`<file>: not counted:
    /// <reason>`), or `None` when it does ([`Self::counted`]).
    #[must_use]
    pub fn not_counted(&self, allow_unsigned: bool) -> Option<String> {
        if self.counted(allow_unsigned) {
            return None;
        }
        let reason = match &self.statement {
            Err(problem) => problem.clone(),
            Ok(_) => self.trust.to_string(),
        };
        Some(format!("{}: not counted: {reason}", self.file))
    }
}

/// The builder id a record signed by key `name` carries.
#[must_use]
pub fn builder_id_of_key(name: &str) -> String {
    format!("urn:drvmeta:nix-key:{name}")
}

/// What a record is read for: an output (by path) or a kernel variant (by
/// its variant digest).
#[derive(Debug, Clone, Copy)]
enum Lookup<'a> {
    Output(&'a str),
    Variant(&'a str),
}

impl Lookup<'_> {
    fn has_subject(&self, statement: &Value) -> bool {
        match self {
            Self::Output(path) => subject_digest(statement, path).is_some(),
            Self::Variant(digest) => variant_subject(statement, digest).is_some(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Output(path) => (*path).to_owned(),
            Self::Variant(digest) => format!("kernel variant {digest}"),
        }
    }
}

/// The subject of a statement that attests kernel variant `digest`.
#[must_use]
pub fn variant_subject<'a>(statement: &'a Value, digest: &str) -> Option<&'a Value> {
    statement["subject"]
        .as_array()?
        .iter()
        .find(|s| s["digest"]["sha256"] == digest && s["annotations"]["kernelVariant"].is_string())
}

/// Read and check one record file of output `output_path`.
fn read_record(found: Found, output_path: &str, trusted: &[PublicKey]) -> RecordFile {
    read_record_for(found, Lookup::Output(output_path), trusted)
}

/// Read and check one record file found by `lookup`.
fn read_record_for(found: Found, lookup: Lookup<'_>, trusted: &[PublicKey]) -> RecordFile {
    let Found {
        location,
        name,
        bytes,
    } = found;
    let mut trust = Trust::Unsigned;
    let statement = (|| -> std::result::Result<Value, String> {
        let bytes = bytes?;
        let (drv_hash, payload) = if let Some(stem) = name.strip_suffix(SUFFIX) {
            let (drv_hash, content) = stem.split_once('.').unwrap_or((stem, ""));
            if content != content_name(&bytes) {
                return Err("its name does not match its content (renamed or edited)".to_owned());
            }
            let envelope: Envelope =
                serde_json::from_slice(&bytes).map_err(|e| format!("not a DSSE envelope: {e}"))?;
            let payload = envelope.payload()?;
            trust = envelope.trust(trusted);
            (drv_hash.to_owned(), payload)
        } else {
            let stem = name.strip_suffix(LEGACY_SUFFIX).unwrap_or(&name);
            (stem.to_owned(), bytes)
        };
        let value: Value =
            serde_json::from_slice(&payload).map_err(|e| format!("payload is not JSON: {e}"))?;
        check_shape(&value, lookup)?;
        let external = &value["predicate"]["buildDefinition"]["externalParameters"];
        let keyed = external["originalDerivation"]
            .as_str()
            .or_else(|| external["derivation"].as_str())
            .unwrap_or_default();
        if super::hash_part(keyed) != drv_hash {
            return Err(format!(
                "is filed under derivation {drv_hash} but names {keyed}"
            ));
        }
        check_subjects_against_derivation(&value)?;
        if let Trust::Trusted(keys) = &trust {
            let id = value["predicate"]["runDetails"]["builder"]["id"]
                .as_str()
                .unwrap_or_default();
            if !keys.iter().any(|k| builder_id_of_key(k) == id) {
                return Err(format!(
                    "its builder id {id:?} does not name the key that signed it"
                ));
            }
        }
        Ok(value)
    })();
    RecordFile {
        file: location,
        trust,
        statement,
    }
}

/// When the derivation a record names is at hand (its `.drv` is readable),
/// every subject must be one of the output paths it records. (A derivation
/// with content-addressed outputs records none; it is not checked.)
fn check_subjects_against_derivation(value: &Value) -> std::result::Result<(), String> {
    let Some(drv_path) =
        value["predicate"]["buildDefinition"]["externalParameters"]["derivation"].as_str()
    else {
        return Ok(());
    };
    let path = Path::new(drv_path);
    let (Some(dir), Some(base)) = (path.parent(), path.file_name().and_then(|b| b.to_str())) else {
        return Ok(());
    };
    let Ok(bytes) = crate::safe_read::read_regular(path, false, crate::safe_read::DRV_LIMIT) else {
        return Ok(());
    };
    let Ok(store_dir) = crate::derivation::StoreDir::new(dir.to_string_lossy()) else {
        return Ok(());
    };
    let Some(name) = base.get(33..).and_then(|n| n.strip_suffix(".drv")) else {
        return Ok(());
    };
    let Ok(drv) = crate::derivation::Derivation::parse(bytes, name, &store_dir) else {
        return Err(format!("names {drv_path}, which does not parse"));
    };
    let outputs: Option<Vec<String>> = drv
        .outputs()
        .map(|o| o.path().map(|p| p.to_absolute_path_in(&store_dir)))
        .collect();
    let Some(outputs) = outputs else {
        return Ok(());
    };
    for subject in value["subject"].as_array().into_iter().flatten() {
        let name = subject["name"].as_str().unwrap_or_default();
        let variant_of_output = subject["annotations"]["kernelVariant"].is_string()
            && outputs.iter().any(|o| {
                name.strip_prefix(o.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
            });
        if !variant_of_output && !outputs.iter().any(|o| o == name) {
            return Err(format!(
                "has subject {name}, which is not an output of {drv_path}"
            ));
        }
    }
    Ok(())
}

/// The shape every record must have: an in-toto Statement v1 with SLSA v1
/// provenance, subjects with SHA-256 digests, one of them `output_path`.
fn check_shape(value: &Value, lookup: Lookup<'_>) -> std::result::Result<(), String> {
    if value["_type"] != super::record::STATEMENT_TYPE
        || value["predicateType"] != super::record::PREDICATE_TYPE
        || !value["predicate"].is_object()
    {
        return Err("not an in-toto statement with SLSA provenance".to_owned());
    }
    let subjects = value["subject"]
        .as_array()
        .filter(|s| !s.is_empty())
        .ok_or("has no subjects")?;
    for subject in subjects {
        let digest = subject["digest"]["sha256"].as_str().unwrap_or_default();
        if subject["name"].as_str().is_none()
            || digest.len() != 64
            || !digest.bytes().all(|c| c.is_ascii_hexdigit())
        {
            return Err("has a subject without a name and a SHA-256 digest".to_owned());
        }
    }
    if value["predicate"]["buildDefinition"]["externalParameters"]["derivation"]
        .as_str()
        .is_none()
    {
        return Err("names no derivation".to_owned());
    }
    if !lookup.has_subject(value) {
        return Err(format!("has no subject for {}", lookup.describe()));
    }
    Ok(())
}

/// Every record of output `output_path`, each read safely and checked:
/// shape, name against content, signatures against `trusted`.
///
/// # Errors
/// When the records directory cannot be read.
pub fn records_of(
    store: &Sources,
    output_path: &str,
    trusted: &[PublicKey],
) -> Result<Vec<RecordFile>> {
    Ok(store
        .found(super::hash_part(output_path))?
        .into_iter()
        .map(|found| read_record(found, output_path, trusted))
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

/// Check every kernel variant of `output` exactly as the `kernels` package
/// does ([`super::kernel_digest`]). Returns the number of files checked and
/// the problems found.
///
/// # Errors
/// Never today (problems are returned, not raised); kept fallible for the
/// walk.
pub fn check_kernel_digests(output: &Path) -> Result<(usize, Vec<String>)> {
    let mut checked = 0;
    let mut problems = Vec::new();
    for variant in super::kernel_digest::variants(output) {
        match super::kernel_digest::check_variant(&variant) {
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
    /// Counted records that agree.
    pub matching: Vec<String>,
    /// The distinct trusted keys whose records attest this NAR hash
    /// (independent rebuilds agreeing).
    pub keys: Vec<String>,
    /// Records not counted, with the reason (unsigned, untrusted, badly
    /// signed, malformed): listed, never counted.
    pub ignored: Vec<String>,
    /// Why verification failed: no counted record matches, a counted
    /// record disagrees, digest mismatches.
    pub problems: Vec<String>,
    /// Kernel files whose digests were checked.
    pub kernel_files: usize,
    /// Counted records that say the kernel or builder tree was dirty.
    pub dirty: Vec<String>,
    /// Warnings that do not fail verification (a variant's metadata.json
    /// saying it was built from a dirty tree).
    pub warnings: Vec<String>,
}

/// The git state a statement records for `name` (`kernel`,
/// `kernel-builder`): commit and dirty flag.
fn recorded_git(statement: &Value, name: &str) -> Option<(String, bool)> {
    let dependency = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()?
        .iter()
        .find(|d| d["name"] == name)?;
    Some((
        dependency["digest"]["gitCommit"].as_str()?.to_owned(),
        dependency["annotations"]["dirty"].as_bool()?,
    ))
}

/// Compare each variant's `metadata.json` provenance with the records that
/// matched: a different commit or dirty flag is a problem, a dirty tree a
/// warning.
fn check_metadata_provenance(output: &Path, statements: &[&Value], result: &mut Verification) {
    for variant in super::kernel_digest::variants(output) {
        check_variant_provenance(
            &variant,
            statements,
            &mut result.warnings,
            &mut result.problems,
        );
    }
}

/// Compare what `variant`'s `metadata.json` says of its provenance with
/// the records' `statements`: a dirty tree is a warning, a different commit
/// or dirty flag a problem.
fn check_variant_provenance(
    variant: &Path,
    statements: &[&Value],
    warnings: &mut Vec<String>,
    problems: &mut Vec<String>,
) {
    let Some(said) = super::kernel_digest::metadata_provenance(variant) else {
        return;
    };
    let file = variant.join("metadata.json");
    if said.dirty() {
        warnings.push(format!(
            "{}: says the kernel was built from a dirty tree (uncommitted changes)",
            file.display()
        ));
    }
    for (name, revision) in [("kernel", &said.kernel), ("kernel-builder", &said.builder)] {
        let Some(git) = revision.as_ref().and_then(|r| r.git.as_ref()) else {
            continue;
        };
        for statement in statements {
            if let Some((commit, dirty)) = recorded_git(statement, name)
                && (commit != git.commit || dirty != git.dirty)
            {
                problems.push(format!(
                    "{}: says {name} {} (dirty: {}), but the record says {commit} (dirty: {dirty})",
                    file.display(),
                    git.commit,
                    git.dirty
                ));
            }
        }
    }
}

/// Verify `output` against its records — only those signed by a `trusted`
/// key count, or with `allow_unsigned` every well-formed one — and its
/// kernels digests.
///
/// # Errors
/// When the output cannot be read or the records directory cannot be read.
pub fn verify(
    store: &Sources,
    output: &str,
    trusted: &[PublicKey],
    allow_unsigned: bool,
) -> Result<Verification> {
    let (nar, _) = nar_sha256(Path::new(output))?;
    let mut result = Verification {
        output: output.to_owned(),
        nar_sha256: nar.clone(),
        matching: Vec::new(),
        keys: Vec::new(),
        ignored: Vec::new(),
        problems: Vec::new(),
        kernel_files: 0,
        dirty: Vec::new(),
        warnings: Vec::new(),
    };
    let mut matched_statements = Vec::new();
    for record in records_of(store, output, trusted)? {
        let file = record.file.clone();
        if let Some(ignored) = record.not_counted(allow_unsigned) {
            result.ignored.push(ignored);
            continue;
        }
        let statement = record.statement.as_ref().expect("counted records parse");
        let digest = subject_digest(statement, output).unwrap_or_default();
        if digest == nar {
            result.matching.push(record.file.clone());
            matched_statements.push(statement.clone());
            if let Trust::Trusted(keys) = &record.trust {
                result.keys.extend(keys.iter().cloned());
            }
        } else {
            result.problems.push(format!(
                "{file}: records NAR sha256 {digest}, but {output} hashes to {nar} ({})",
                record.trust
            ));
        }
        if is_dirty(statement) {
            result.dirty.push(record.file.clone());
        }
    }
    result.keys.sort();
    result.keys.dedup();
    if result.matching.is_empty() {
        let what = if allow_unsigned {
            "no provenance record"
        } else {
            "no provenance record signed by a trusted key"
        };
        result
            .problems
            .push(format!("{output}: {what} matches in {}", store.describe()));
    }
    let (files, problems) = check_kernel_digests(Path::new(output))?;
    result.kernel_files = files;
    result.problems.extend(problems);
    let statements: Vec<&Value> = matched_statements.iter().collect();
    check_metadata_provenance(Path::new(output), &statements, &mut result);
    Ok(result)
}

/// The result of verifying a copy of a kernel (a directory outside the
/// store: a copied `build/`, a Hub snapshot) by its variants.
#[derive(Debug, Clone)]
pub struct CopyVerification {
    /// Each variant of the copy, in order.
    pub variants: Vec<VariantVerification>,
    /// Records not counted, with the reason.
    pub ignored: Vec<String>,
    /// Why verification failed: a digest mismatch, no counted record, a
    /// `metadata.json` provenance block the record contradicts.
    pub problems: Vec<String>,
    /// What does not fail it: a dirty kernel or builder tree, in a counted
    /// record or in a variant's `metadata.json`.
    pub warnings: Vec<String>,
}

/// One variant of a copy of a kernel, as [`verify_copy`] found it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VariantVerification {
    /// The variant's directory.
    pub variant: PathBuf,
    /// Its variant digest, when it passed `kernels`' digest check.
    pub variant_digest: Option<String>,
    /// The counted records that attest it.
    pub matching: Vec<String>,
    /// The distinct trusted keys among their signers.
    pub keys: Vec<String>,
}

/// Verify a copy of a kernel that is not a store path: every variant (the
/// directory itself when it holds `metadata.json`, else its `build/<v>/` or
/// top-level variants) must pass `kernels`' digest check, and a record
/// counted as [`verify`] counts them must attest its variant digest
/// ([`super::kernel_digest::variant_digest`]), found under
/// [`super::store::variant_dir`].
///
/// # Errors
/// When a records directory cannot be read.
pub fn verify_copy(
    store: &Sources,
    dir: &Path,
    trusted: &[PublicKey],
    allow_unsigned: bool,
) -> Result<CopyVerification> {
    let mut result = CopyVerification {
        variants: Vec::new(),
        ignored: Vec::new(),
        problems: Vec::new(),
        warnings: Vec::new(),
    };
    let variants = if dir.join("metadata.json").is_file() {
        vec![dir.to_owned()]
    } else {
        super::kernel_digest::variants(dir)
    };
    if variants.is_empty() {
        result
            .problems
            .push(format!("{}: holds no kernel variant", dir.display()));
    }
    for variant in variants {
        let digest = match super::kernel_digest::variant_digest(&variant) {
            Ok(digest) => digest,
            Err(problems) => {
                result.problems.extend(problems);
                result.variants.push(VariantVerification {
                    variant,
                    variant_digest: None,
                    matching: Vec::new(),
                    keys: Vec::new(),
                });
                continue;
            }
        };
        let mut matching = Vec::new();
        let mut keys = Vec::new();
        let mut statements = Vec::new();
        for found in store.found(&super::store::variant_dir(&digest))? {
            let record = read_record_for(found, Lookup::Variant(&digest), trusted);
            if let Some(ignored) = record.not_counted(allow_unsigned) {
                result.ignored.push(ignored);
                continue;
            }
            if let Trust::Trusted(signers) = &record.trust {
                keys.extend(signers.iter().cloned());
            }
            if let Ok(statement) = record.statement {
                if is_dirty(&statement) {
                    result.warnings.push(format!(
                        "{}: records a dirty kernel or builder tree (uncommitted changes)",
                        record.file
                    ));
                }
                statements.push(statement);
            }
            matching.push(record.file);
        }
        keys.sort();
        keys.dedup();
        let counted: Vec<&Value> = statements.iter().collect();
        check_variant_provenance(
            &variant,
            &counted,
            &mut result.warnings,
            &mut result.problems,
        );
        if matching.is_empty() {
            result.problems.push(format!(
                "{}: no provenance record {}attests this variant (digest {digest}) in {}",
                variant.display(),
                if allow_unsigned {
                    ""
                } else {
                    "signed by a trusted key "
                },
                store.describe()
            ));
        }
        result.variants.push(VariantVerification {
            variant,
            variant_digest: Some(digest),
            matching,
            keys,
        });
    }
    Ok(result)
}

/// Whether a statement records a dirty kernel or builder tree.
#[must_use]
pub fn is_dirty(statement: &Value) -> bool {
    statement["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .is_some_and(|deps| deps.iter().any(|d| d["annotations"]["dirty"] == true))
}
