//! The `drvmeta hash` report: stable, documented JSON field names
//! (`docs/hash-json.md`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::closure::{Closure, drv_name};
use crate::derivation::{StoreDir, StorePath};
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
    store_dir: &StoreDir,
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
                .map(|(name, path)| (name.clone(), path.as_ref().map(|p| store_dir.display(p))))
                .collect(),
        },
        Err(_) => HashesReport {
            output_hash: None,
            input_hash: None,
            outputs: names.iter().map(|name| ((*name).clone(), None)).collect(),
        },
    }
}

/// The derivation a report is about: what the closure knows of it.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The store directory its paths are rendered in.
    pub store_dir: &'a StoreDir,
    /// Its store path.
    pub path: &'a StorePath,
    /// Whether its file's bytes hash to its store path.
    pub path_matches: bool,
}

impl<'a> Subject<'a> {
    /// The derivation at `position` of `closure`.
    #[must_use]
    pub fn of(closure: &'a Closure, position: usize) -> Self {
        let node = &closure.nodes()[position];
        Self {
            store_dir: closure.store_dir(),
            path: &node.path,
            path_matches: node.path_matches,
        }
    }
}

/// The report on the derivation at `position` of `closure`.
#[must_use]
pub fn drv_report(closure: &Closure, hashes: &[NodeHashes], position: usize) -> DrvReport {
    report_of(Subject::of(closure, position), &hashes[position])
}

/// The report on `subject`, whose hashes are `result`.
#[must_use]
pub fn report_of(subject: Subject<'_>, result: &NodeHashes) -> DrvReport {
    let store_dir = subject.store_dir;
    let recorded = result.recorded();
    let names: Vec<&String> = recorded.iter().map(|(name, _)| name).collect();
    let recorded_matches = RecordedMatches::compare(
        recorded,
        result.classic.as_ref().ok(),
        result.modulo_meta.as_ref().ok(),
    );
    DrvReport {
        name: drv_name(subject.path).to_owned(),
        meta_opt_in: result.meta.opt_in,
        meta: result.meta_object.clone().map(Value::Object),
        warnings: result.meta.lints.iter().map(ToString::to_string).collect(),
        errors: result.errors(),
        drv_path_matches: subject.path_matches,
        recorded_outputs: recorded
            .iter()
            .map(|(name, path)| (name.clone(), path.as_ref().map(|p| store_dir.display(p))))
            .collect(),
        classic: render_hashes(store_dir, &result.classic, &names),
        modulo_meta: render_hashes(store_dir, &result.modulo_meta, &names),
        recorded_matches,
    }
}

/// `"<path>":{…}` for the derivation at `position` of `closure`, the bytes
/// [`JsonWriter::render_entry`] gives for its [`drv_report`], written
/// straight from the hashes (no report, maps or hex strings built on the
/// way: `hash --json -r` renders one per derivation of the closure).
///
/// # Errors
/// When a value cannot be serialised (it always can).
pub fn render_entry_of(
    closure: &Closure,
    hashes: &[NodeHashes],
    position: usize,
    path: &str,
) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(1024);
    string(&mut bytes, path)?;
    render_entry_value(
        &mut bytes,
        Subject::of(closure, position),
        &hashes[position],
    )?;
    Ok(bytes)
}

/// [`render_entry_of`] for `subject`, whose hashes are `result`, appended
/// to `out`; the key is the subject's path rendered in its store directory.
///
/// # Errors
/// When a value cannot be serialised (it always can).
pub fn render_entry(
    out: &mut Vec<u8>,
    subject: Subject<'_>,
    result: &NodeHashes,
) -> std::io::Result<()> {
    path_string(out, subject.store_dir, subject.path)?;
    render_entry_value(out, subject, result)
}

/// `:{…}`: the entry after its key.
fn render_entry_value(
    out: &mut Vec<u8>,
    subject: Subject<'_>,
    result: &NodeHashes,
) -> std::io::Result<()> {
    let store_dir = subject.store_dir;
    let recorded = result.recorded();
    out.extend_from_slice(b":{\"name\":");
    string(out, drv_name(subject.path))?;
    out.extend_from_slice(b",\"metaOptIn\":");
    boolean(out, result.meta.opt_in);
    out.extend_from_slice(b",\"meta\":");
    match &result.meta_object {
        Some(meta) => serde_json::to_writer(&mut *out, meta)?,
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"warnings\":");
    strings(out, result.meta.lints.iter().map(ToString::to_string))?;
    out.extend_from_slice(b",\"errors\":");
    strings(out, result.errors())?;
    out.extend_from_slice(b",\"drvPathMatches\":");
    boolean(out, subject.path_matches);
    out.extend_from_slice(b",\"recordedOutputs\":");
    output_map(out, store_dir, recorded, true)?;
    for (key, scheme) in [
        (&b",\"classic\":"[..], &result.classic),
        (&b",\"moduloMeta\":"[..], &result.modulo_meta),
    ] {
        out.extend_from_slice(key);
        out.extend_from_slice(b"{\"outputHash\":");
        let ok = scheme.as_ref().ok();
        digest(out, ok.and_then(|h| h.output_hash.as_ref()));
        out.extend_from_slice(b",\"inputHash\":");
        digest(out, ok.and_then(|h| h.input_hash.value()));
        out.extend_from_slice(b",\"outputs\":");
        match ok {
            Some(hashes) => output_map(out, store_dir, &hashes.outputs, true)?,
            None => output_map(out, store_dir, recorded, false)?,
        }
        out.push(b'}');
    }
    out.extend_from_slice(b",\"recordedMatches\":");
    let matches = RecordedMatches::compare(
        recorded,
        result.classic.as_ref().ok(),
        result.modulo_meta.as_ref().ok(),
    );
    serde_json::to_writer(&mut *out, &matches)?;
    out.push(b'}');
    Ok(())
}

/// [`DrvReport::is_problem`] of the derivation at `position`, without
/// building its report.
#[must_use]
pub fn is_problem(closure: &Closure, hashes: &[NodeHashes], position: usize) -> bool {
    is_problem_of(Subject::of(closure, position), &hashes[position])
}

/// [`DrvReport::is_problem`] of `subject`, whose hashes are `result`.
#[must_use]
pub fn is_problem_of(subject: Subject<'_>, result: &NodeHashes) -> bool {
    !subject.path_matches
        || !result.errors().is_empty()
        || RecordedMatches::compare(
            result.recorded(),
            result.classic.as_ref().ok(),
            result.modulo_meta.as_ref().ok(),
        ) == RecordedMatches::Neither
}

fn string(out: &mut Vec<u8>, text: &str) -> std::io::Result<()> {
    if needs_no_escape(text) {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
        return Ok(());
    }
    serde_json::to_writer(out, text).map_err(std::io::Error::from)
}

/// Whether JSON writes `text` as it is (no quote, backslash or control
/// character): store paths and output names always are.
fn needs_no_escape(text: &str) -> bool {
    text.bytes().all(|c| c >= 0x20 && c != b'"' && c != b'\\')
}

/// A store path as a JSON string, written without building it.
fn path_string(out: &mut Vec<u8>, store_dir: &StoreDir, path: &StorePath) -> std::io::Result<()> {
    let dir = store_dir.as_str();
    if !needs_no_escape(dir) {
        return string(out, &store_dir.display(path));
    }
    out.push(b'"');
    out.extend_from_slice(dir.as_bytes());
    out.push(b'/');
    out.extend_from_slice(path.hash_part().as_bytes());
    out.push(b'-');
    // Store path names need no escaping.
    out.extend_from_slice(path.name().as_bytes());
    out.push(b'"');
    Ok(())
}

fn boolean(out: &mut Vec<u8>, value: bool) {
    out.extend_from_slice(if value { b"true" } else { b"false" });
}

fn strings(out: &mut Vec<u8>, items: impl IntoIterator<Item = String>) -> std::io::Result<()> {
    out.push(b'[');
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, &item)?;
    }
    out.push(b']');
    Ok(())
}

fn digest(out: &mut Vec<u8>, digest: Option<&[u8; 32]>) {
    match digest {
        Some(digest) => {
            let mut text = [0u8; 64];
            crate::derivation::store_path::hex_into(digest, &mut text);
            out.push(b'"');
            out.extend_from_slice(&text);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
}

/// An output map as a `BTreeMap` serialises: sorted by name, the last of a
/// repeated name; `with_paths`: the paths, or `null` for each.
fn output_map(
    out: &mut Vec<u8>,
    store_dir: &StoreDir,
    outputs: &[(String, Option<StorePath>)],
    with_paths: bool,
) -> std::io::Result<()> {
    // Output lists are sorted and unique as the core makes them; any other
    // is put in that order first.
    let sorted: Vec<&(String, Option<StorePath>)>;
    let entries: &mut dyn Iterator<Item = &(String, Option<StorePath>)> =
        if outputs.windows(2).all(|w| w[0].0 < w[1].0) {
            &mut outputs.iter()
        } else {
            let mut all: Vec<_> = outputs.iter().collect();
            // Stable: of equal names the last stays last, and is the one kept.
            all.sort_by(|a, b| a.0.cmp(&b.0));
            sorted = all
                .iter()
                .enumerate()
                .filter(|(i, entry)| all.get(i + 1).is_none_or(|next| next.0 != entry.0))
                .map(|(_, entry)| *entry)
                .collect();
            &mut sorted.iter().copied()
        };
    out.push(b'{');
    for (i, (name, path)) in entries.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, name)?;
        out.push(b':');
        match path.as_ref().filter(|_| with_paths) {
            Some(path) => path_string(out, store_dir, path)?,
            None => out.extend_from_slice(b"null"),
        }
    }
    out.push(b'}');
    Ok(())
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
    /// entries can be rendered in parallel and written in order. `value` is
    /// a [`DrvReport`], or any other entry of a `{"derivations":{…}}`
    /// document (`rewrite --json`'s).
    ///
    /// # Errors
    /// When the value cannot be serialised (a report always can).
    pub fn render_entry(path: &str, value: &impl Serialize) -> std::io::Result<Vec<u8>> {
        let mut entry = Vec::with_capacity(1024);
        serde_json::to_writer(&mut entry, path)?;
        entry.push(b':');
        serde_json::to_writer(&mut entry, value)?;
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

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::closure::LoadOptions;

    /// Every entry of `roots`' closures rendered both ways.
    fn both_ways(dir: &Path, roots: &[String]) -> usize {
        let options = LoadOptions {
            drv_dirs: vec![dir.to_owned()],
            ..LoadOptions::default()
        };
        let (closure, hashes) = crate::hashing::load_and_hash(&options, roots, &mut |_| {})
            .unwrap_or_else(|error| panic!("{roots:?}: {error}"));
        let all: Vec<usize> = (0..closure.nodes().len()).collect();
        for (path, position) in sorted_paths(&closure, &all) {
            let report = drv_report(&closure, &hashes, position);
            assert_eq!(is_problem(&closure, &hashes, position), report.is_problem());
            assert_eq!(
                String::from_utf8(render_entry_of(&closure, &hashes, position, &path).unwrap())
                    .unwrap(),
                String::from_utf8(JsonWriter::render_entry(&path, &report).unwrap()).unwrap(),
                "{path}"
            );
        }
        all.len()
    }

    fn drvs_in(dir: &Path) -> Vec<String> {
        crate::derivation::test_corpus::drv_files(dir)
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect()
    }

    /// The direct renderer writes what serde writes for the report, byte
    /// for byte: for the example closures (meta opted in and not, a
    /// dynamic input), snix's valid vectors (unicode, non-UTF-8, structured
    /// attributes, fixed and floating outputs), and derivations that are
    /// inconsistent or invalid.
    #[test]
    fn rendering_from_the_hashes_is_the_report_serialised() {
        let project = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut rendered = 0;
        for dir in [
            "fixtures/kernel/drvs",
            "fixtures/kernel/drvs-nometa",
            "fixtures/dynamic",
        ] {
            let dir = project.join(dir);
            rendered += both_ways(&dir, &drvs_in(&dir));
        }
        let snix = project.join("../shared/nix-vectors/snix/ok");
        assert!(
            snix.is_dir(),
            "the conformance vectors are missing at {}",
            snix.display()
        );
        for drv in drvs_in(&snix) {
            rendered += both_ways(&snix, &[drv]);
        }
        // Inconsistent (renamed) and invalid (a bad __meta) derivations.
        let odd = tempfile::tempdir().unwrap();
        let kernel = project.join("fixtures/kernel/drvs");
        let source: PathBuf =
            kernel.join("j3y3gyf87l5d0wbwvi8bgl44m3x0xr6a-cuda-toolkit-12.4.1.drv");
        let renamed = odd
            .path()
            .join("0aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-renamed.drv");
        std::fs::copy(&source, &renamed).unwrap();
        let bad_meta = odd
            .path()
            .join("0bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-bad-meta.drv");
        std::fs::write(
            &bad_meta,
            r#"Derive([("out","","","")],[],[],"x86_64-linux","/bin/sh",[],[("__json","{\"__meta\":[1],\"requiredSystemFeatures\":[\"derivation-meta\"]}"),("out","")])"#,
        )
        .unwrap();
        let odd_ones = both_ways(
            odd.path(),
            &[
                renamed.to_string_lossy().into(),
                bad_meta.to_string_lossy().into(),
            ],
        );
        assert_eq!(odd_ones, 2);
        assert!(rendered >= 20, "{rendered} entries compared");
    }
}
