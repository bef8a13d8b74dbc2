//! The `drvmeta hash` report: stable, documented JSON field names
//! (`docs/hash-json.md`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::closure::{Closure, drv_name};
use crate::hashing::{Hashes, NodeHashes, RecordedMatches};
use crate::provenance::nar::hex;

/// The whole report: one entry per derivation, keyed by store path.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct HashReport {
    /// Reports keyed by the derivation's store path.
    pub derivations: BTreeMap<String, DrvReport>,
}

/// Hashes of one derivation under one scheme, rendered.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HashesReport {
    /// Output-form hash (hex), null when not input-addressed or deferred.
    pub output_hash: Option<String>,
    /// Input-form hash (hex), null when deferred.
    pub input_hash: Option<String>,
    /// Output paths, null where unknown before building.
    pub outputs: BTreeMap<String, Option<String>>,
}

/// The report on one derivation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DrvReport {
    /// The derivation name (store path name without `.drv`).
    pub name: String,
    /// Whether the derivation is opted in to hash modulo meta.
    pub meta_opt_in: bool,
    /// The `__meta` object when opted in, null otherwise.
    pub meta: Option<Value>,
    /// Lints (see `docs/lints.md`).
    pub warnings: Vec<String>,
    /// Why the derivation is invalid; empty when it is valid.
    pub errors: Vec<String>,
    /// Whether the file's bytes hash to its own store path.
    pub drv_path_matches: bool,
    /// Output paths as written in the file.
    pub recorded_outputs: BTreeMap<String, Option<String>>,
    /// Classic hashes (what Nix computes).
    pub classic: HashesReport,
    /// Hashes modulo meta.
    pub modulo_meta: HashesReport,
    /// Which computed outputs equal the recorded ones.
    pub recorded_matches: RecordedMatches,
}

impl DrvReport {
    /// Whether the derivation is inconsistent or invalid (exit status 1).
    #[must_use]
    pub fn is_problem(&self) -> bool {
        !self.errors.is_empty()
            || !self.drv_path_matches
            || self.recorded_matches == RecordedMatches::Neither
    }

    /// Whether meta changes any output path.
    #[must_use]
    pub fn meta_changes_outputs(&self) -> bool {
        self.classic.outputs != self.modulo_meta.outputs
    }
}

fn render_hashes(
    closure: &Closure,
    hashes: &Result<Hashes, String>,
    names: &[&String],
) -> HashesReport {
    match hashes {
        Ok(hashes) => HashesReport {
            output_hash: hashes.output_hash.map(|h| hex(h.as_ref())),
            input_hash: hashes.input_hash.value().map(|h| hex(h)),
            outputs: hashes
                .outputs
                .iter()
                .map(|(name, path)| (name.clone(), path.as_ref().map(|p| closure.render(p))))
                .collect(),
        },
        Err(_) => HashesReport {
            output_hash: None,
            input_hash: None,
            outputs: names.iter().map(|name| ((*name).clone(), None)).collect(),
        },
    }
}

/// The report on the derivation at `position` of `closure`.
#[must_use]
pub fn drv_report(closure: &Closure, hashes: &[NodeHashes], position: usize) -> DrvReport {
    let node = &closure.nodes()[position];
    let result = &hashes[position];
    let recorded = &result.recorded;
    let names: Vec<&String> = recorded.iter().map(|(name, _)| name).collect();
    let recorded_matches = RecordedMatches::compare(
        recorded,
        result.classic.as_ref().ok(),
        result.modulo_meta.as_ref().ok(),
    );
    DrvReport {
        name: drv_name(&node.path).to_owned(),
        meta_opt_in: result.meta.opt_in,
        meta: result.meta_object.clone().map(Value::Object),
        warnings: result.meta.lints.iter().map(ToString::to_string).collect(),
        errors: result.errors(),
        drv_path_matches: node.path_matches,
        recorded_outputs: recorded
            .iter()
            .map(|(name, path)| (name.clone(), path.as_ref().map(|p| closure.render(p))))
            .collect(),
        classic: render_hashes(closure, &result.classic, &names),
        modulo_meta: render_hashes(closure, &result.modulo_meta, &names),
        recorded_matches,
    }
}

/// The store paths of the derivations at `positions`, sorted, duplicates
/// removed: the report's order.
#[must_use]
pub fn sorted_paths(closure: &Closure, positions: &[usize]) -> Vec<(String, usize)> {
    closure.keyed(positions, |path| closure.render(path))
}

/// Call `visit` with the report on each of `keyed` (from [`sorted_paths`]),
/// in order, building reports in parallel batches so that only one batch is
/// in memory at a time.
///
/// # Errors
/// The first error `visit` returns.
pub fn for_each<E>(
    closure: &Closure,
    hashes: &[NodeHashes],
    keyed: &[(String, usize)],
    mut visit: impl FnMut(&str, DrvReport) -> Result<(), E>,
) -> Result<(), E> {
    crate::batch::for_each_ordered(
        keyed,
        |(_, position)| drv_report(closure, hashes, *position),
        |(path, _), report| visit(path, report),
    )
}

/// Build the report for the derivations at `positions` of `closure`.
#[must_use]
pub fn build(closure: &Closure, hashes: &[NodeHashes], positions: &[usize]) -> HashReport {
    let mut report = HashReport::default();
    let keyed = sorted_paths(closure, positions);
    let _ = for_each(closure, hashes, &keyed, |path, drv| {
        report.derivations.insert(path.to_owned(), drv);
        Ok::<(), std::convert::Infallible>(())
    });
    report
}

/// Streams `{"derivations": {…}}` one entry at a time.
#[derive(Debug, Default)]
pub struct JsonWriter {
    started: bool,
}

impl JsonWriter {
    /// One entry, `"<path>":{…}`, as [`Self::write_rendered`] takes it:
    /// entries can be rendered in parallel and written in order.
    ///
    /// # Errors
    /// When the report cannot be serialised (it always can).
    pub fn render_entry(path: &str, report: &DrvReport) -> std::io::Result<Vec<u8>> {
        let mut entry = Vec::with_capacity(1024);
        serde_json::to_writer(&mut entry, path)?;
        entry.push(b':');
        serde_json::to_writer(&mut entry, report)?;
        Ok(entry)
    }

    /// Write an entry made by [`Self::render_entry`] (the opening brace
    /// before the first).
    ///
    /// # Errors
    /// Errors of `writer`.
    pub fn write_rendered(
        &mut self,
        writer: &mut impl std::io::Write,
        entry: &[u8],
    ) -> std::io::Result<()> {
        writer.write_all(if self.started {
            b","
        } else {
            b"{\"derivations\":{"
        })?;
        self.started = true;
        writer.write_all(entry)
    }

    /// Close the document.
    ///
    /// # Errors
    /// Errors of `writer`.
    pub fn finish(self, writer: &mut impl std::io::Write) -> std::io::Result<()> {
        if !self.started {
            writer.write_all(b"{\"derivations\":{")?;
        }
        writer.write_all(b"}}\n")
    }
}
