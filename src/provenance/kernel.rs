//! The kernels `metadata.json` provenance vocabulary at `__meta.provenance`
//! (DESIGN.md §3.1).
//!
//! ```json
//! { "kernel-builder": { "version": "0.17.0", "commit": "<40|64 hex>", "dirty": false },
//!   "kernel":         { "commit": "<40|64 hex>", "dirty": true, "source": "git+https://…" } }
//! ```
//!
//! `commit` is a full SHA-1 or SHA-256 object id, kept lowercase (the legacy
//! key `sha` is read too); `commit` and `dirty` come together or not at all.
//! The kernel needs them; kernel-builder needs its `version`, with or without
//! them (a builder used from a non-git source), as in `kernels`' schema.
//! Unknown provenance is left out, never defaulted.

use serde_json::{Map, Value};

/// A git state: commit and whether the tree was dirty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Git {
    /// The full commit id (lowercase hex, 40 or 64 characters).
    pub commit: String,
    /// Whether the tree had uncommitted changes.
    pub dirty: bool,
}

/// A source revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    /// The git state, when known (always, for the kernel).
    pub git: Option<Git>,
    /// The tool's version (kernel-builder; required there).
    pub version: Option<String>,
    /// Where the source came from (a flake-style URL).
    pub source: Option<String>,
}

/// What `__meta.provenance` says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelProvenance {
    /// The kernel source revision.
    pub kernel: Option<Revision>,
    /// The kernel-builder revision.
    pub builder: Option<Revision>,
    /// What was malformed and ignored.
    pub warnings: Vec<String>,
}

impl KernelProvenance {
    /// Whether the kernel or the builder tree was dirty.
    #[must_use]
    pub fn dirty(&self) -> bool {
        self.kernel
            .iter()
            .chain(&self.builder)
            .any(|r| r.git.as_ref().is_some_and(|g| g.dirty))
    }

    /// Read `meta.provenance`, if any.
    #[must_use]
    pub fn from_meta(meta: &Map<String, Value>) -> Self {
        let mut result = Self::default();
        let Some(provenance) = meta.get("provenance") else {
            return result;
        };
        let Some(provenance) = provenance.as_object() else {
            result
                .warnings
                .push("__meta.provenance is not an object".to_owned());
            return result;
        };
        result.kernel = revision(provenance, "kernel", &mut result.warnings);
        result.builder = revision(provenance, "kernel-builder", &mut result.warnings);
        result
    }
}

fn is_commit(id: &str) -> bool {
    matches!(id.len(), 40 | 64) && id.bytes().all(|b| b.is_ascii_hexdigit())
}

fn revision(
    provenance: &Map<String, Value>,
    key: &str,
    warnings: &mut Vec<String>,
) -> Option<Revision> {
    let entry = provenance.get(key)?;
    let Some(entry) = entry.as_object() else {
        warnings.push(format!("__meta.provenance.{key} is not an object"));
        return None;
    };
    let commit = entry.get("commit").or_else(|| entry.get("sha"));
    let dirty = entry.get("dirty");
    let text = |name: &str| entry.get(name).and_then(Value::as_str).map(str::to_owned);
    let git = match (commit, dirty) {
        (None, None) => None,
        (Some(Value::String(commit)), Some(Value::Bool(dirty))) if is_commit(commit) => Some(Git {
            commit: commit.to_ascii_lowercase(),
            dirty: *dirty,
        }),
        (Some(Value::String(commit)), Some(Value::Bool(_))) => {
            warnings.push(format!(
                "__meta.provenance.{key}.commit {commit:?} is not a full SHA-1 or SHA-256 id"
            ));
            return None;
        }
        _ => {
            warnings.push(format!(
                "__meta.provenance.{key} needs both \"commit\" (a string) and \"dirty\" (a boolean)"
            ));
            return None;
        }
    };
    let version = text("version");
    match (key, &git, &version) {
        ("kernel", None, _) => None,
        ("kernel-builder", _, None) => {
            warnings.push(format!(
                "__meta.provenance.{key} needs its \"version\" (kernels requires it)"
            ));
            None
        }
        _ => Some(Revision {
            git,
            version,
            source: text("source"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn reads_kernel_and_builder() {
        let p = KernelProvenance::from_meta(&meta(
            r#"{"provenance":{"kernel-builder":{"version":"0.17.0","commit":"89abcdef0123456789abcdef0123456789abcdef","dirty":false},
               "kernel":{"sha":"0123456789abcdef0123456789abcdef01234567","dirty":true,"source":"git+https://x"}}}"#,
        ));
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        assert_eq!(
            p.builder.as_ref().unwrap().version.as_deref(),
            Some("0.17.0")
        );
        assert_eq!(
            p.kernel.as_ref().unwrap().git.as_ref().unwrap().commit,
            "0123456789abcdef0123456789abcdef01234567"
        );
        assert!(p.dirty());
    }

    #[test]
    fn a_builder_may_stand_on_its_version_and_commits_are_lowercased() {
        let p = KernelProvenance::from_meta(&meta(
            r#"{"provenance":{"kernel-builder":{"version":"0.17.0"},
               "kernel":{"commit":"0123456789ABCDEF0123456789ABCDEF01234567","dirty":false}}}"#,
        ));
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        let builder = p.builder.unwrap();
        assert_eq!(builder.version.as_deref(), Some("0.17.0"));
        assert!(builder.git.is_none());
        assert_eq!(
            p.kernel.unwrap().git.unwrap().commit,
            "0123456789abcdef0123456789abcdef01234567"
        );
        // A builder without its version is left out, with a warning.
        let p = KernelProvenance::from_meta(&meta(
            r#"{"provenance":{"kernel-builder":{"commit":"0123456789abcdef0123456789abcdef01234567","dirty":false}}}"#,
        ));
        assert!(p.builder.is_none());
        assert!(p.warnings[0].contains("version"), "{:?}", p.warnings);
    }

    #[test]
    fn malformed_entries_are_left_out_with_a_warning() {
        let p = KernelProvenance::from_meta(&meta(
            r#"{"provenance":{"kernel":{"commit":"ABC","dirty":false},"kernel-builder":{"version":"1","commit":"89abcdef0123456789abcdef0123456789abcdef"}}}"#,
        ));
        assert!(p.kernel.is_none() && p.builder.is_none());
        assert_eq!(p.warnings.len(), 2);
        assert!(!p.dirty());
        assert_eq!(
            KernelProvenance::from_meta(&meta("{}")),
            KernelProvenance::default()
        );
    }
}
