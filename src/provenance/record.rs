//! The provenance record: an in-toto Statement v1 with a SLSA Provenance v1
//! predicate (DESIGN.md §3.2, fields in `docs/provenance.md`).

use serde_json::{Map, Value};

use super::kernel::{KernelProvenance, Revision};

/// The in-toto statement type.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The SLSA provenance predicate type.
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// drvmeta's build type: a Nix derivation built by Nix (documented in
/// `docs/provenance.md`; it need not resolve).
pub const BUILD_TYPE: &str =
    "https://github.com/drvmeta/drvmeta/blob/main/docs/provenance.md#nix-derivation-v1";

/// A built output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Output name (`out`, `dev`, …).
    pub name: String,
    /// Its store path.
    pub path: String,
    /// sha256 of its NAR serialisation, lowercase hex.
    pub nar_sha256: String,
    /// Size of the NAR in bytes.
    pub nar_size: u64,
    /// Its kernel variants that passed `kernels`' digest check: relative
    /// path and variant digest ([`super::kernel_digest::variant_digest`]).
    pub variants: Vec<(String, String)>,
}

/// An input of the build: an input derivation's output or an input source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// Its store path (or `<drv>^<output>` when the path is not known).
    pub uri: String,
    /// sha256 of its NAR, lowercase hex, when the path is valid.
    pub nar_sha256: Option<String>,
    /// The derivation and output it comes from, for input derivations.
    pub from: Option<(String, String)>,
}

/// Everything a record says about one build.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The derivation that was built.
    pub derivation: String,
    /// The meta-carrying derivation it was stripped from, when different.
    pub original_derivation: Option<String>,
    /// Its `__meta` object (from the original derivation), if any.
    pub meta: Option<Map<String, Value>>,
    /// Whether the derivation carrying the meta is opted in.
    pub opted_in: bool,
    /// The derivation's system.
    pub system: String,
    /// Classic output-form hash modulo (hex).
    pub classic_output_hash: Option<String>,
    /// Output-form hash modulo meta (hex).
    pub modulo_meta_output_hash: Option<String>,
    /// The built outputs.
    pub outputs: Vec<Output>,
    /// Input derivation outputs and input sources.
    pub inputs: Vec<Input>,
    /// Kernel and builder revisions from `__meta.provenance`.
    pub provenance: KernelProvenance,
}

/// Who built it, when.
#[derive(Debug, Clone)]
pub struct Run {
    /// `runDetails.builder.id`.
    pub builder_id: String,
    /// `runDetails.metadata.invocationId`.
    pub invocation_id: String,
    /// `runDetails.metadata.finishedOn`, RFC 3339 UTC without fraction.
    pub finished_on: String,
}

fn revision_dependency(name: &str, revision: &Revision) -> Value {
    let mut annotations = Map::new();
    if let Some(git) = &revision.git {
        annotations.insert("dirty".into(), git.dirty.into());
    }
    if let Some(version) = &revision.version {
        annotations.insert("version".into(), version.clone().into());
    }
    let mut dependency = Map::new();
    dependency.insert("name".into(), name.into());
    match (
        revision.source.as_ref().filter(|s| !s.is_empty()),
        &revision.version,
    ) {
        (Some(source), _) => {
            dependency.insert("uri".into(), source.clone().into());
        }
        // A builder known by its version alone: a descriptor still needs a
        // uri or a digest.
        (None, Some(version)) if revision.git.is_none() => {
            dependency.insert("uri".into(), format!("pkg:generic/{name}@{version}").into());
        }
        _ => {}
    }
    if let Some(git) = &revision.git {
        dependency.insert(
            "digest".into(),
            serde_json::json!({ "gitCommit": git.commit }),
        );
    }
    dependency.insert("annotations".into(), Value::Object(annotations));
    Value::Object(dependency)
}

/// Build the statement as a JSON value. Deterministic for the same facts
/// and run details; inputs and subjects keep the order given (callers sort
/// them).
#[must_use]
pub fn statement(facts: &Facts, run: &Run) -> Value {
    let mut subject: Vec<Value> = Vec::new();
    for output in &facts.outputs {
        subject.push(serde_json::json!({
            "name": output.path,
            "digest": { "sha256": output.nar_sha256 },
            "annotations": { "output": output.name, "narSize": output.nar_size },
        }));
        // One subject per kernel variant, whose digest survives copies.
        for (relative, digest) in &output.variants {
            subject.push(serde_json::json!({
                "name": format!("{}/{relative}", output.path),
                "digest": { "sha256": digest },
                "annotations": { "output": output.name, "kernelVariant": relative },
            }));
        }
    }
    let mut external = Map::new();
    external.insert("derivation".into(), facts.derivation.clone().into());
    if let Some(original) = &facts.original_derivation {
        external.insert("originalDerivation".into(), original.clone().into());
    }
    external.insert(
        "meta".into(),
        facts.meta.clone().map_or(Value::Null, Value::Object),
    );
    let internal = serde_json::json!({
        "system": facts.system,
        "metaOptIn": facts.opted_in,
        "classicOutputHash": facts.classic_output_hash,
        "moduloMetaOutputHash": facts.modulo_meta_output_hash,
    });
    let mut dependencies: Vec<Value> = facts
        .inputs
        .iter()
        .map(|input| {
            let mut dependency = Map::new();
            dependency.insert("uri".into(), input.uri.clone().into());
            if let Some(digest) = &input.nar_sha256 {
                dependency.insert("digest".into(), serde_json::json!({ "sha256": digest }));
            }
            if let Some((drv, output)) = &input.from {
                dependency.insert(
                    "annotations".into(),
                    serde_json::json!({ "derivation": drv, "output": output }),
                );
            }
            Value::Object(dependency)
        })
        .collect();
    if let Some(kernel) = &facts.provenance.kernel {
        dependencies.push(revision_dependency("kernel", kernel));
    }
    if let Some(builder) = &facts.provenance.builder {
        dependencies.push(revision_dependency("kernel-builder", builder));
    }
    serde_json::json!({
        "_type": STATEMENT_TYPE,
        "subject": subject,
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": external,
                "internalParameters": internal,
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": { "id": run.builder_id },
                "metadata": { "invocationId": run.invocation_id, "finishedOn": run.finished_on },
            },
        },
    })
}

/// A fresh invocation id: `urn:uuid:` and a random (version 4) UUID.
#[must_use]
pub fn invocation_id() -> String {
    use std::io::Read as _;
    let mut bytes = [0_u8; 16];
    let random = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if random.is_err() {
        // No /dev/urandom: the time and the process id still make it unique.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes.copy_from_slice(&(nanos ^ (u128::from(std::process::id()) << 64)).to_le_bytes());
    }
    uuid(bytes, 4)
}

/// `urn:uuid:` with `bytes` as a UUID of `version` (RFC 9562 variant bits).
#[must_use]
pub fn uuid(mut bytes: [u8; 16], version: u8) -> String {
    bytes[6] = (bytes[6] & 0x0f) | (version << 4);
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = super::nar::hex(&bytes);
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Now, RFC 3339 UTC without fraction (`2026-11-21T05:00:00Z`).
#[must_use]
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_builder_known_by_its_version_alone_is_a_descriptor_with_a_uri() {
        let builder = Revision {
            git: None,
            version: Some("0.17.0".to_owned()),
            source: None,
        };
        let dependency = revision_dependency("kernel-builder", &builder);
        assert_eq!(dependency["uri"], "pkg:generic/kernel-builder@0.17.0");
        assert!(dependency.get("digest").is_none());
        assert_eq!(
            dependency["annotations"],
            serde_json::json!({"version": "0.17.0"})
        );
        let with_git = Revision {
            git: Some(super::super::kernel::Git {
                commit: "0123456789abcdef0123456789abcdef01234567".to_owned(),
                dirty: true,
            }),
            ..builder
        };
        let dependency = revision_dependency("kernel-builder", &with_git);
        assert_eq!(
            dependency["digest"]["gitCommit"],
            "0123456789abcdef0123456789abcdef01234567"
        );
        assert_eq!(dependency["annotations"]["dirty"], true);
        assert!(dependency.get("uri").is_none());
    }
}
