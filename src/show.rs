//! Nix's derivation JSON (format version 4) with the PR #16285 `meta`
//! extension (DESIGN.md §5).
//!
//! Each derivation is rendered from drvmeta's own parse
//! ([`derivation_json`]); for an opted-in derivation `structuredAttrs` is
//! shown stripped and the meta object moves to a top-level `"meta"` field
//! (`null` for derivations that are not opted in).

use std::io::Write;

use crate::derivation::{Derivation, StorePath};
use serde_json::{Map, Value};

use crate::batch::{EntryArena, EntryRef};
use crate::closure::{Closure, DrvNode, LoadOptions};
use crate::derivation::meta;
use crate::error::{Error, Result};

/// The JSON version this module writes.
pub const VERSION: u64 = 4;

/// One derivation as Nix's JSON object plus `"meta"`, as a value (for a
/// few derivations and tests; [`derivation_json`] is what `show` prints).
///
/// # Errors
/// [`Error::Json`] when the derivation cannot be represented (an environment
/// value that is not UTF-8, which Nix's JSON cannot hold either).
pub fn derivation_value(closure: &Closure, node: &DrvNode) -> Result<Value> {
    let json = derivation_json(&*node.derivation()?).map_err(|message| Error::Json {
        path: closure.render(&node.path),
        message,
    })?;
    Ok(serde_json::from_str(&json).expect("derivation_json writes JSON"))
}

fn output_json(output: &crate::derivation::Output<'_>) -> Value {
    use crate::derivation::OutputKind;
    use crate::derivation::hash::split_method_algo;
    let mut object = Map::new();
    let method_algo = || {
        let (method, algo) =
            split_method_algo(output.hash_algo).expect("the parser checked the algorithm");
        (method.as_str(), algo)
    };
    match output.kind {
        OutputKind::InputAddressed(path) => {
            object.insert("path".to_owned(), Value::from(path.to_basename()));
        }
        OutputKind::Deferred => {}
        OutputKind::Fixed(_) => {
            use base64::Engine as _;
            let (method, algo) = method_algo();
            let digest = crate::derivation::hash::decode_hex(output.hash)
                .expect("the parser checked the hash");
            let sri = format!(
                "{algo}-{}",
                base64::engine::general_purpose::STANDARD.encode(digest)
            );
            object.insert("hash".to_owned(), Value::from(sri));
            object.insert("method".to_owned(), Value::from(method));
        }
        OutputKind::Floating | OutputKind::Impure => {
            let (method, algo) = method_algo();
            object.insert("hashAlgo".to_owned(), Value::from(algo));
            if matches!(output.kind, OutputKind::Impure) {
                object.insert("impure".to_owned(), Value::Bool(true));
            }
            object.insert("method".to_owned(), Value::from(method));
        }
    }
    Value::Object(object)
}

fn node_json(node: &crate::derivation::InputNode) -> Value {
    let mut object = Map::new();
    let dynamic: Map<String, Value> = node
        .dynamic
        .iter()
        .map(|(name, child)| (name.clone(), node_json(child)))
        .collect();
    object.insert("dynamicOutputs".to_owned(), Value::Object(dynamic));
    object.insert(
        "outputs".to_owned(),
        Value::Array(node.outputs.iter().cloned().map(Value::from).collect()),
    );
    Value::Object(object)
}

/// One derivation as compact JSON: Nix's derivation JSON (format version
/// 4) with PR #16285's `"meta"` (the meta object when opted in, `null`
/// otherwise). `structuredAttrs` (stripped when opted in) and `meta` are
/// the `__json` text as the writing Nix left it, never re-serialised.
///
/// Written straight into one string, keys in the order serde writes a
/// sorted map (the derivation's lists are sorted as parsed); only outputs
/// and input nodes go through values. The parser checked that `__json` is
/// a JSON object.
///
/// # Errors
/// A message when a string is not UTF-8.
pub fn derivation_json(drv: &Derivation) -> std::result::Result<String, String> {
    let mut out = Vec::with_capacity(drv.bytes().len() + drv.bytes().len() / 4);
    let string = |out: &mut Vec<u8>, bytes: &[u8], what: &dyn Fn() -> String| {
        let text = std::str::from_utf8(bytes).map_err(|_| {
            format!(
                "{} is not UTF-8, which Nix's derivation JSON cannot hold",
                what()
            )
        })?;
        serde_json::to_writer(&mut *out, text).expect("writing to memory cannot fail");
        Ok::<(), String>(())
    };
    let value = |out: &mut Vec<u8>, value: &Value| {
        serde_json::to_writer(&mut *out, value).expect("writing to memory cannot fail");
    };
    out.extend_from_slice(b"{\"args\":[");
    for (i, arg) in drv.arguments().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(&mut out, &arg, &|| "an argument".to_owned())?;
    }
    out.extend_from_slice(b"],\"builder\":");
    string(&mut out, &drv.builder(), &|| "the builder".to_owned())?;
    out.extend_from_slice(b",\"env\":{");
    let mut first = true;
    for (key, val) in drv.environment() {
        if *key == *meta::JSON_KEY {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        string(&mut out, &key, &|| {
            "an environment variable name".to_owned()
        })?;
        out.push(b':');
        string(&mut out, &val, &|| {
            format!(
                "environment variable {:?}",
                String::from_utf8_lossy(&key).into_owned()
            )
        })?;
    }
    out.extend_from_slice(b"},\"inputs\":{\"drvs\":{");
    for (i, input) in drv.input_derivations().iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(&mut out, input.path.to_basename().as_bytes(), &String::new)?;
        out.push(b':');
        value(&mut out, &node_json(&input.node));
    }
    out.extend_from_slice(b"},\"srcs\":[");
    for (i, src) in drv.input_sources().iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(&mut out, src.to_basename().as_bytes(), &String::new)?;
    }
    out.extend_from_slice(b"]},\"meta\":");
    match meta::meta_text(drv) {
        Some(text) => raw(&mut out, &text)?,
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"name\":");
    string(&mut out, drv.name().as_bytes(), &String::new)?;
    out.extend_from_slice(b",\"outputs\":{");
    for (i, output) in drv.outputs().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(&mut out, output.name.as_bytes(), &String::new)?;
        out.push(b':');
        value(&mut out, &output_json(&output));
    }
    out.push(b'}');
    // The system's error comes before a bad `__json`'s, as Nix's fields go.
    let mut system = Vec::new();
    string(&mut system, &drv.system(), &|| "the system".to_owned())?;
    let attrs = match meta::stripped_json(drv) {
        Some(stripped) => Some(std::borrow::Cow::Owned(stripped)),
        None => drv.structured_attrs(),
    };
    if let Some(attrs) = &attrs {
        out.extend_from_slice(b",\"structuredAttrs\":");
        raw(&mut out, attrs)?;
    }
    out.extend_from_slice(b",\"system\":");
    out.extend_from_slice(&system);
    out.extend_from_slice(b",\"version\":");
    out.extend_from_slice(VERSION.to_string().as_bytes());
    out.push(b'}');
    Ok(String::from_utf8(out).expect("every piece is UTF-8"))
}

/// JSON text from the `__json` Nix wrote, as it is (UTF-8 checked: the
/// parser checked it is JSON).
fn raw(out: &mut Vec<u8>, json: &[u8]) -> std::result::Result<(), String> {
    std::str::from_utf8(json).map_err(|_| "__json is not UTF-8".to_owned())?;
    out.extend_from_slice(json);
    Ok(())
}

/// Positions sorted by base name, duplicates removed: the document's order.
fn sorted(closure: &Closure, positions: &[usize]) -> Vec<(String, usize)> {
    closure.keyed(positions, StorePath::to_basename)
}

/// The document `{"derivations": {"<base>.drv": {…}}, "version": 4}` for the
/// derivations at `positions`, as a value (fine for a few derivations; use
/// [`Shown`] for closures).
///
/// # Errors
/// As [`derivation_value`].
pub fn document(closure: &Closure, positions: &[usize]) -> Result<Value> {
    let mut derivations = Map::new();
    for (base, position) in sorted(closure, positions) {
        derivations.insert(base, derivation_value(closure, &closure.nodes()[position])?);
    }
    let mut top = Map::new();
    top.insert("derivations".to_owned(), Value::Object(derivations));
    top.insert("version".to_owned(), Value::from(VERSION));
    Ok(Value::Object(top))
}

/// The derivations a `show` prints, rendered while their closure was
/// loaded (each `.drv` parsed once), sorted and ready to write.
#[derive(Debug)]
pub struct Shown {
    arena: EntryArena,
    /// Base name and compact JSON of each derivation, sorted by base name.
    entries: Vec<(String, EntryRef)>,
    /// What makes a shown derivation invalid or inconsistent, with the
    /// messages `drvmeta hash` gives ([`Closure::problems`]).
    pub problems: Vec<String>,
}

impl Shown {
    /// Load the closures of `roots` ([`Closure::load_mapped`]) and render
    /// the roots, or with `recursive` every derivation of the closures, as
    /// compact JSON kept in an [`EntryArena`].
    ///
    /// # Errors
    /// As [`Closure::load`]; [`Error::Json`] for the first derivation (by
    /// base name) that Nix's JSON cannot hold: nothing is shown then.
    pub fn load(
        options: &LoadOptions,
        roots: &[String],
        recursive: bool,
        progress: &mut (dyn FnMut(usize) + Send),
    ) -> Result<Self> {
        if !recursive {
            return Self::load_roots(options, roots);
        }
        // Entries go into the arena as they are rendered, on the walk's
        // threads (one short lock per derivation).
        let arena = std::sync::Mutex::new(EntryArena::default());
        let meta_problems = std::sync::Mutex::new(Vec::new());
        let (closure, rendered) =
            Closure::load_mapped(options, roots, progress, |path, drv, _is_root| {
                let rendered_path = path.to_absolute_path_in(drv.store_dir());
                let problems = meta::inspect(drv).problems;
                if !problems.is_empty() {
                    meta_problems
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .extend(
                            problems
                                .into_iter()
                                .map(|p| format!("{rendered_path}: invalid: {p}")),
                        );
                }
                Some(
                    derivation_json(drv)
                        .map_err(|message| Error::Json {
                            path: rendered_path,
                            message,
                        })
                        .map(|json| {
                            arena
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .push(json.as_bytes())
                        }),
                )
            })?;
        let arena = arena
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let positions: Vec<usize> = (0..closure.nodes().len()).collect();
        let mut rendered = rendered;
        let entries = sorted(&closure, &positions)
            .into_iter()
            .map(|(base, position)| {
                let entry = rendered[position]
                    .take()
                    .expect("every derivation shown was rendered, and is shown once")?;
                Ok((base, entry))
            })
            .collect::<Result<_>>()?;
        let mut problems: Vec<String> = closure
            .nodes()
            .iter()
            .filter(|node| !node.path_matches)
            .map(|node| {
                format!(
                    "{}: {}",
                    closure.render(&node.path),
                    crate::closure::INCONSISTENT
                )
            })
            .collect();
        problems.extend(
            meta_problems
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        problems.sort();
        Ok(Self {
            arena,
            entries,
            problems,
        })
    }

    /// The roots alone: each `.drv` is read by itself, its inputs are not
    /// needed (as for Nix's `nix derivation show` without `-r`).
    fn load_roots(options: &LoadOptions, roots: &[String]) -> Result<Self> {
        let mut arena = EntryArena::default();
        let mut entries: Vec<(String, EntryRef)> = Vec::new();
        let mut problems = Vec::new();
        for root in roots {
            let node = crate::closure::read_one(options, root)?;
            let base = node.path.to_basename();
            if entries.iter().any(|(b, _)| *b == base) {
                continue;
            }
            let path = node.path.to_absolute_path_in(&options.store_dir);
            let drv = node.derivation()?;
            problems.extend(node.problems()?);
            let json = derivation_json(&drv).map_err(|message| Error::Json {
                path: path.clone(),
                message,
            })?;
            entries.push((base, arena.push(json.as_bytes())));
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Self {
            arena,
            entries,
            problems,
        })
    }

    /// Write the document `{"derivations": {…}, "version": 4}`, compact or
    /// pretty (two-space indentation, like `serde_json`'s), re-indenting
    /// entries in parallel batches.
    ///
    /// # Errors
    /// [`Error::Write`] when `writer` fails.
    pub fn write(&self, pretty: bool, writer: &mut impl Write) -> Result<()> {
        let mut document = DocumentWriter::new(pretty);
        crate::batch::for_each_ordered(
            &self.entries,
            |(base, entry)| entry_of_json(base, self.arena.get(*entry), pretty),
            |_, text| document.entry(writer, &text),
        )?;
        document.finish(writer)
    }
}

/// One entry of the document, `"<base name>":{…}` (pretty: indented to sit
/// two levels deep), from the derivation's JSON as `serde_json` renders it
/// compactly (what [`EntryArena`] keeps: a third smaller than pretty).
///
#[must_use]
pub fn entry_of_json(base: &str, json: &[u8], pretty: bool) -> Vec<u8> {
    let key = serde_json::to_string(base).expect("a string serialises");
    if pretty {
        let body = crate::derivation::json_text::pretty(json);
        // JSON strings never hold a raw newline: indenting every line nests
        // the object two levels deeper.
        let mut entry = Vec::with_capacity(body.len() + body.len() / 4 + key.len() + 8);
        entry.extend_from_slice(b"\n    ");
        entry.extend_from_slice(key.as_bytes());
        entry.extend_from_slice(b": ");
        let mut from = 0;
        for newline in memchr::memchr_iter(b'\n', &body) {
            entry.extend_from_slice(&body[from..=newline]);
            entry.extend_from_slice(b"    ");
            from = newline + 1;
        }
        entry.extend_from_slice(&body[from..]);
        entry
    } else {
        let mut entry = Vec::with_capacity(key.len() + 1 + json.len());
        entry.extend_from_slice(key.as_bytes());
        entry.push(b':');
        entry.extend_from_slice(json);
        entry
    }
}

/// Writes `{"derivations":{…},"version":4}` entry by entry.
#[derive(Debug)]
pub struct DocumentWriter {
    pretty: bool,
    started: bool,
}

impl DocumentWriter {
    /// A writer for a pretty or a compact document.
    #[must_use]
    pub fn new(pretty: bool) -> Self {
        Self {
            pretty,
            started: false,
        }
    }

    /// Write one entry made by [`entry_of_json`] (the document's opening
    /// before the first).
    ///
    /// # Errors
    /// [`Error::Write`].
    pub fn entry(&mut self, writer: &mut impl Write, entry: &[u8]) -> Result<()> {
        let lead: &[u8] = match (self.started, self.pretty) {
            (true, _) => b",",
            (false, true) => b"{\n  \"derivations\": {",
            (false, false) => b"{\"derivations\":{",
        };
        self.started = true;
        write_all(writer, lead)?;
        write_all(writer, entry)
    }

    /// Close the document (opening it first when it has no entry).
    ///
    /// # Errors
    /// [`Error::Write`].
    pub fn finish(self, writer: &mut impl Write) -> Result<()> {
        let close: &[u8] = match (self.started, self.pretty) {
            (true, true) => b"\n  },\n  \"version\": 4\n}\n",
            (false, true) => b"{\n  \"derivations\": {\n  },\n  \"version\": 4\n}\n",
            (true, false) => b"},\"version\":4}\n",
            (false, false) => b"{\"derivations\":{},\"version\":4}\n",
        };
        write_all(writer, close)
    }
}

fn write_all(writer: &mut impl Write, bytes: &[u8]) -> Result<()> {
    writer
        .write_all(bytes)
        .map_err(|source| Error::Write { source })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRUCTURED_ATTRS: &str = "\u{0}drvmeta:structuredAttrs\u{0}";
    const META: &str = "\u{0}drvmeta:meta\u{0}";

    fn text(bytes: &[u8], what: &str) -> std::result::Result<String, String> {
        String::from_utf8(bytes.to_vec())
            .map_err(|_| format!("{what} is not UTF-8, which Nix's derivation JSON cannot hold"))
    }

    /// The renderer before the direct one (a value, serialised, raw parts
    /// spliced in): the reference [`derivation_json`] is compared with.
    fn derivation_json_reference(drv: &Derivation) -> std::result::Result<String, String> {
        let mut top = Map::new();
        let args: Vec<Value> = drv
            .arguments()
            .map(|arg| text(&arg, "an argument").map(Value::from))
            .collect::<std::result::Result<_, _>>()?;
        top.insert("args".to_owned(), Value::Array(args));
        top.insert(
            "builder".to_owned(),
            Value::from(text(&drv.builder(), "the builder")?),
        );
        let mut env = Map::new();
        for (key, value) in drv.environment() {
            if *key == *meta::JSON_KEY {
                continue;
            }
            let key = text(&key, "an environment variable name")?;
            let value = text(&value, &format!("environment variable {key:?}"))?;
            env.insert(key, Value::from(value));
        }
        top.insert("env".to_owned(), Value::Object(env));
        let drvs: Map<String, Value> = drv
            .input_derivations()
            .iter()
            .map(|input| (input.path.to_basename(), node_json(&input.node)))
            .collect();
        let srcs: Vec<Value> = drv
            .input_sources()
            .iter()
            .map(|src| Value::from(src.to_basename()))
            .collect();
        let mut inputs = Map::new();
        inputs.insert("drvs".to_owned(), Value::Object(drvs));
        inputs.insert("srcs".to_owned(), Value::Array(srcs));
        top.insert("inputs".to_owned(), Value::Object(inputs));
        top.insert("name".to_owned(), Value::from(drv.name()));
        let outputs: Map<String, Value> = drv
            .outputs()
            .map(|o| (o.name.to_owned(), output_json(&o)))
            .collect();
        top.insert("outputs".to_owned(), Value::Object(outputs));
        top.insert(
            "system".to_owned(),
            Value::from(text(&drv.system(), "the system")?),
        );
        top.insert("version".to_owned(), Value::from(VERSION));

        // Raw parts, spliced in after serialisation.
        let attrs = match meta::stripped_json(drv) {
            Some(stripped) => Some(stripped),
            None => drv.structured_attrs().map(std::borrow::Cow::into_owned),
        };
        let meta_text = meta::meta_text(drv);
        if let Some(attrs) = &attrs {
            check_object(attrs, "__json")?;
            top.insert("structuredAttrs".to_owned(), Value::from(STRUCTURED_ATTRS));
        }
        top.insert("meta".to_owned(), Value::from(META));
        let mut json = Value::Object(top).to_string();
        splice_raw(&mut json, STRUCTURED_ATTRS, attrs.as_deref())?;
        splice_raw(
            &mut json,
            META,
            Some(meta_text.as_deref().unwrap_or(b"null")),
        )?;
        Ok(json)
    }

    fn check_object(json: &[u8], what: &str) -> std::result::Result<(), String> {
        let value: serde::de::IgnoredAny =
            serde_json::from_slice(json).map_err(|error| format!("{what} is not JSON: {error}"))?;
        let _ = value;
        if json.iter().find(|c| !c.is_ascii_whitespace()) != Some(&b'{') {
            return Err(format!("{what} is not a JSON object"));
        }
        Ok(())
    }

    fn splice_raw(
        json: &mut String,
        placeholder: &str,
        raw: Option<&[u8]>,
    ) -> std::result::Result<(), String> {
        let Some(raw) = raw else { return Ok(()) };
        let quoted = serde_json::to_string(placeholder).expect("a string serialises");
        let raw = std::str::from_utf8(raw).map_err(|_| "__json is not UTF-8".to_owned())?;
        if let Some(at) = json.find(&quoted) {
            json.replace_range(at..at + quoted.len(), raw);
        }
        Ok(())
    }

    /// The direct renderer gives what the value-based one gave, byte for
    /// byte, or the same error: on the example closures, snix's vectors
    /// (valid ones: unicode, latin1, structured attributes, fixed and
    /// floating outputs), Nix's own vectors (firefox, hello, dynamic
    /// inputs), and opted-in derivations (stripped `structuredAttrs`,
    /// `meta`).
    #[test]
    fn direct_rendering_is_the_value_rendering() {
        let mut compared = 0;
        let mut errors = 0;
        for (file, drv) in crate::derivation::test_corpus::corpus() {
            let direct = derivation_json(&drv);
            assert_eq!(
                direct,
                derivation_json_reference(&drv),
                "{}",
                file.display()
            );
            compared += 1;
            errors += usize::from(direct.is_err());
        }
        assert!(compared >= 30, "{compared} derivations compared");
        assert!(errors >= 1, "a non-UTF-8 derivation is among them");
    }
}
