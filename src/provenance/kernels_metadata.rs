//! Writing kernels' own provenance: the `provenance` block of each
//! variant's `metadata.json` in a *copy* of a built kernel (kernel-builder's
//! `build-and-copy` directory, what is uploaded to the Hub), filled from the
//! verified record of the output — so the `kernels` loader, the Hub card and
//! the upload warnings see the facts the record proves, and the build itself
//! never carries them (a commit inside the build rebuilds it).
//!
//! `metadata.json` is outside the digest, so `kernels`' own check still
//! passes on the copy afterwards.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::kernel::{KernelProvenance, Revision};
use super::kernel_digest::{check_variant, variants};
use super::sign::PublicKey;
use super::store::Sources;
use super::verify::verify;
use crate::error::{Error, Result};

/// One variant whose `metadata.json` was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filled {
    /// The variant directory in the copy.
    pub variant: PathBuf,
    /// The provenance block written.
    pub provenance: Value,
}

fn failure(path: &Path, message: String) -> Error {
    Error::Output {
        file: path.to_owned(),
        message,
    }
}

/// kernels' `provenance` block for `provenance` (which must name the
/// builder's version: kernels requires `kernel-builder`).
fn block(provenance: &KernelProvenance) -> Option<Value> {
    let entry = |revision: &Revision| {
        let mut entry = Map::new();
        if let Some(version) = &revision.version {
            entry.insert("version".into(), version.clone().into());
        }
        if let Some(git) = &revision.git {
            entry.insert("commit".into(), git.commit.clone().into());
            entry.insert("dirty".into(), git.dirty.into());
        }
        Value::Object(entry)
    };
    let builder = provenance.builder.as_ref()?;
    let mut out = Map::new();
    out.insert("kernel-builder".into(), entry(builder));
    if let Some(kernel) = &provenance.kernel {
        out.insert("kernel".into(), entry(kernel));
    }
    Some(Value::Object(out))
}

/// Fill the `provenance` block of every variant of `copy` from the records
/// of `output`, which must verify against `trusted` (or with
/// `allow_unsigned`). When the counted records name different provenance
/// (a meta-only rebuild gives one output two records), `derivation` picks
/// the record of that (meta-carrying) derivation.
///
/// Each variant of the copy must be a variant of the output and pass
/// `kernels`' digest check; nothing is written unless every one does.
///
/// # Errors
/// The output does not verify, the records disagree and no derivation was
/// given, the records name no kernel-builder version, a variant of the copy
/// is not the output's or fails its digest check, or a file cannot be
/// written.
pub fn fill_metadata(
    store: &Sources,
    output: &str,
    copy: &Path,
    trusted: &[PublicKey],
    allow_unsigned: bool,
    derivation: Option<&str>,
) -> Result<Vec<Filled>> {
    let verification = verify(store, output, trusted, allow_unsigned)?;
    if !verification.problems.is_empty() {
        return Err(failure(
            Path::new(output),
            format!(
                "does not verify, nothing was written: {}",
                verification.problems.join("; ")
            ),
        ));
    }
    // The provenance of each matching record, from its __meta.
    let records = super::verify::records_of(store, output, trusted)?;
    let mut candidates: Vec<(String, KernelProvenance)> = Vec::new();
    for file in &verification.matching {
        let record = records
            .iter()
            .find(|r| &r.file == file)
            .expect("a matching record was read");
        let statement = record.statement.as_ref().expect("matching records parse");
        let external = &statement["predicate"]["buildDefinition"]["externalParameters"];
        let keyed = external["originalDerivation"]
            .as_str()
            .or_else(|| external["derivation"].as_str())
            .unwrap_or_default()
            .to_owned();
        let provenance = external["meta"]
            .as_object()
            .map(KernelProvenance::from_meta)
            .unwrap_or_default();
        candidates.push((keyed, provenance));
    }
    if let Some(drv) = derivation {
        candidates.retain(|(keyed, _)| keyed == drv);
        if candidates.is_empty() {
            return Err(failure(
                Path::new(output),
                format!("no verified record of it names {drv}"),
            ));
        }
    }
    let blocks: Vec<(String, Option<Value>)> = candidates
        .iter()
        .map(|(keyed, p)| (keyed.clone(), block(p)))
        .collect();
    let first = blocks[0].1.clone();
    if blocks.iter().any(|(_, b)| *b != first) {
        let names: Vec<&str> = blocks.iter().map(|(k, _)| k.as_str()).collect();
        return Err(failure(
            Path::new(output),
            format!(
                "its records name different provenance ({}): say which with --derivation",
                names.join(", ")
            ),
        ));
    }
    let Some(provenance) = first else {
        return Err(failure(
            Path::new(output),
            "its record names no kernel-builder version in __meta.provenance, which kernels \
             requires"
                .to_owned(),
        ));
    };

    // Every variant of the copy: the output's, intact.
    let ours = variants(Path::new(output));
    let copied = variants(copy);
    if copied.is_empty() {
        return Err(failure(copy, "holds no kernel variant".to_owned()));
    }
    let mut updates = Vec::new();
    for variant in &copied {
        let name = variant.file_name().expect("a variant has a name");
        if !ours.iter().any(|o| o.file_name() == Some(name)) {
            return Err(failure(variant, format!("is not a variant of {output}")));
        }
        check_variant(variant).map_err(|problems| {
            failure(
                variant,
                format!(
                    "fails its digest check, nothing was written: {}",
                    problems.join("; ")
                ),
            )
        })?;
        let file = variant.join("metadata.json");
        let mut metadata: Map<String, Value> =
            crate::safe_read::read_regular(&file, true, 16 << 20)
                .map_err(|e| failure(&file, format!("cannot read: {e}")))
                .and_then(|bytes| {
                    serde_json::from_slice(&bytes)
                        .map_err(|e| failure(&file, format!("not a JSON object: {e}")))
                })?;
        metadata.insert("provenance".into(), provenance.clone());
        let mut bytes =
            serde_json::to_vec_pretty(&Value::Object(metadata)).expect("JSON serialises");
        bytes.push(b'\n');
        updates.push((file, bytes, variant.clone()));
    }
    let mut filled = Vec::new();
    for (file, bytes, variant) in updates {
        // A link (the Hub layout) is replaced by the file, not written through.
        crate::out_dir::write_file(&file, &bytes)?;
        filled.push(Filled {
            variant,
            provenance: provenance.clone(),
        });
    }
    Ok(filled)
}
