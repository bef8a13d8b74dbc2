//! The ATerm writer (one for the file form and the hash-modulo forms) and
//! Nix's string escaping.

use std::borrow::Cow;
use std::io::{self, Write};

use super::store_path::{StoreDir, StorePath};
use super::{Derivation, InputNode};

/// Escape `s` as Nix's `printString` does (`"` `\` newline, carriage
/// return, tab), without the quotes.
#[must_use]
pub fn escape(s: &[u8]) -> Cow<'_, [u8]> {
    if !s
        .iter()
        .any(|c| matches!(c, b'"' | b'\\' | b'\n' | b'\r' | b'\t'))
    {
        return Cow::Borrowed(s);
    }
    let mut out = Vec::with_capacity(s.len() + s.len() / 8 + 2);
    for &c in s {
        match c {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', c]),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Undo [`escape`] on a raw string as the parser accepted it.
#[must_use]
pub fn unescape(raw: &[u8]) -> Cow<'_, [u8]> {
    if !raw.contains(&b'\\') {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len());
    unescape_into(raw, &mut out);
    Cow::Owned(out)
}

/// [`unescape`], appended to `out`: the runs between backslashes are
/// copied whole.
pub(crate) fn unescape_into(raw: &[u8], out: &mut Vec<u8>) {
    let mut rest = raw;
    while let Some(i) = memchr::memchr(b'\\', rest) {
        out.extend_from_slice(&rest[..i]);
        match rest.get(i + 1) {
            Some(b'n') => out.push(b'\n'),
            Some(b'r') => out.push(b'\r'),
            Some(b't') => out.push(b'\t'),
            Some(&other) => out.push(other),
            None => {}
        }
        rest = rest.get(i + 2..).unwrap_or_default();
    }
    out.extend_from_slice(rest);
}

/// What to print instead of the derivation as written.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Form<'a> {
    /// Print every output as `("name","","","")` and every environment
    /// variable named like an output as `""` (the output form of hash
    /// modulo).
    pub mask_outputs: bool,
    /// Set these outputs' paths, and the environment variables named after
    /// them (`None` entries keep what is written).
    pub outputs: Option<&'a [(String, Option<StorePath>)]>,
    /// Input derivations replaced by hashes (printed in hex) with the union
    /// of their requested outputs, sorted by hash (the hash-modulo forms).
    pub inputs: Option<&'a [HashedInput<'a>]>,
    /// Raw (escaped) `__json` text to print instead.
    pub json: Option<&'a [u8]>,
}

/// An input derivation as the hash-modulo forms print it.
#[derive(Debug)]
pub(crate) struct HashedInput<'d> {
    /// Its input-form hash.
    pub hash: [u8; 32],
    /// The outputs requested of it (of every input with this hash).
    pub outputs: HashedOutputs<'d>,
}

/// The requested outputs of a [`HashedInput`], borrowed where they can be.
#[derive(Debug)]
pub(crate) enum HashedOutputs<'d> {
    /// As one input derivation requests them (sorted, as parsed).
    Node(&'d [String]),
    /// `out` alone (a fixed-output input stands for its content).
    Out,
    /// The union of several inputs' outputs, sorted and deduplicated.
    Union(Vec<&'d str>),
}

impl<'d> HashedOutputs<'d> {
    /// The output names, sorted.
    pub fn to_vec(&self) -> Vec<&'d str> {
        match self {
            Self::Node(names) => names.iter().map(String::as_str).collect(),
            Self::Out => vec!["out"],
            Self::Union(names) => names.clone(),
        }
    }

    fn push(&self, out: &mut Vec<u8>) {
        fn names<'n>(out: &mut Vec<u8>, names: impl Iterator<Item = &'n str>) {
            out.push(b'[');
            for (i, name) in names.enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.push(b'"');
                out.extend_from_slice(name.as_bytes());
                out.push(b'"');
            }
            out.push(b']');
        }
        match self {
            Self::Node(list) => names(out, list.iter().map(String::as_str)),
            Self::Out => out.extend_from_slice(b"[\"out\"]"),
            Self::Union(list) => names(out, list.iter().copied()),
        }
    }
}

/// Write `<store dir>/<hash>-<name>` quoted, without building it.
fn quoted_path(w: &mut dyn Write, store_dir: &StoreDir, path: &StorePath) -> io::Result<()> {
    w.write_all(b"\"")?;
    w.write_all(store_dir.as_str().as_bytes())?;
    w.write_all(b"/")?;
    w.write_all(path.hash_part().as_bytes())?;
    w.write_all(b"-")?;
    w.write_all(path.name().as_bytes())?;
    w.write_all(b"\"")
}

fn quoted(w: &mut dyn Write, raw: &[u8]) -> io::Result<()> {
    w.write_all(b"\"")?;
    w.write_all(raw)?;
    w.write_all(b"\"")
}

fn list<T>(
    w: &mut dyn Write,
    items: impl IntoIterator<Item = T>,
    mut item: impl FnMut(&mut dyn Write, T) -> io::Result<()>,
) -> io::Result<()> {
    w.write_all(b"[")?;
    for (i, x) in items.into_iter().enumerate() {
        if i > 0 {
            w.write_all(b",")?;
        }
        item(w, x)?;
    }
    w.write_all(b"]")
}

fn write_node(w: &mut dyn Write, node: &InputNode) -> io::Result<()> {
    let names = |w: &mut dyn Write, names: &[String]| {
        list(w, names, |w, n| {
            w.write_all(b"\"")?;
            w.write_all(n.as_bytes())?;
            w.write_all(b"\"")
        })
    };
    if node.dynamic.is_empty() {
        return names(w, &node.outputs);
    }
    w.write_all(b"(")?;
    names(w, &node.outputs)?;
    w.write_all(b",")?;
    list(w, &node.dynamic, |w, (name, child)| {
        w.write_all(b"(\"")?;
        w.write_all(name.as_bytes())?;
        w.write_all(b"\",")?;
        write_node(w, child)?;
        w.write_all(b")")
    })?;
    w.write_all(b")")
}

/// The path `form` sets for output (or environment variable) `name`.
fn override_for<'f>(form: &Form<'f>, name: &[u8]) -> Option<&'f StorePath> {
    form.outputs?
        .iter()
        .find(|(n, _)| n.as_bytes() == name)
        .and_then(|(_, p)| p.as_ref())
}

/// The output list in `form`.
fn write_outputs(drv: &Derivation, w: &mut dyn Write, form: &Form<'_>) -> io::Result<()> {
    let bytes = &drv.bytes;
    list(w, &drv.outputs, |w, o| {
        let name = o.name.get(bytes);
        w.write_all(b"(")?;
        quoted(w, name)?;
        if form.mask_outputs {
            return w.write_all(b",\"\",\"\",\"\")");
        }
        w.write_all(b",")?;
        match override_for(form, name) {
            Some(path) => {
                quoted_path(w, drv.store_dir(), path)?;
                w.write_all(b",\"\",\"\"")?;
            }
            None => {
                quoted(w, o.path.get(bytes))?;
                w.write_all(b",")?;
                quoted(w, o.algo.get(bytes))?;
                w.write_all(b",")?;
                quoted(w, o.hash.get(bytes))?;
            }
        }
        w.write_all(b")")
    })
}

/// The input derivations replaced by their hashes (the hash-modulo forms),
/// appended to `out`.
fn push_hashed_inputs(out: &mut Vec<u8>, inputs: &[HashedInput<'_>]) {
    out.push(b'[');
    for (i, input) in inputs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let mut hex = [0u8; 64];
        super::store_path::hex_into(&input.hash, &mut hex);
        out.extend_from_slice(b"(\"");
        out.extend_from_slice(&hex);
        out.extend_from_slice(b"\",");
        input.outputs.push(out);
        out.push(b')');
    }
    out.push(b']');
}

/// What `form` prints for environment variable `key` instead of its
/// value, if anything: `""` for an output's variable when masked, a set
/// output path, or the replacement `__json`.
enum EnvEdit<'f> {
    Empty,
    Path(&'f StorePath),
    Json(&'f [u8]),
}

fn env_edit<'f>(drv: &Derivation, form: &Form<'f>, key: &[u8]) -> Option<EnvEdit<'f>> {
    let bytes = &drv.bytes;
    if form.mask_outputs && drv.outputs.iter().any(|o| o.name.get(bytes) == key) {
        Some(EnvEdit::Empty)
    } else if let Some(path) = override_for(form, key) {
        Some(EnvEdit::Path(path))
    } else if let (Some(json), true) = (form.json, key == super::meta::JSON_KEY) {
        Some(EnvEdit::Json(json))
    } else {
        None
    }
}

/// Print `drv` in `form` to `w`.
pub(crate) fn write_aterm(drv: &Derivation, w: &mut impl Write, form: &Form<'_>) -> io::Result<()> {
    let w: &mut dyn Write = w;
    let bytes = &drv.bytes;
    let store_dir = drv.store_dir();
    // The hash-modulo forms keep the version too (Nix 2.34 hashes a
    // derivation with dynamic inputs under its `DrvWithVersion` prefix).
    match drv.version {
        Some(version) => {
            w.write_all(b"DrvWithVersion(")?;
            quoted(w, version.get(bytes))?;
            w.write_all(b",")?;
        }
        None => w.write_all(b"Derive(")?,
    }
    write_outputs(drv, w, form)?;
    w.write_all(b",")?;
    match form.inputs {
        Some(inputs) => {
            let mut printed = Vec::new();
            push_hashed_inputs(&mut printed, inputs);
            w.write_all(&printed)?;
        }
        None => list(w, &drv.input_drvs, |w, input| {
            w.write_all(b"(")?;
            quoted_path(w, store_dir, &input.path)?;
            w.write_all(b",")?;
            write_node(w, &input.node)?;
            w.write_all(b")")
        })?,
    }
    w.write_all(b",")?;
    list(w, &drv.input_srcs, |w, src| quoted_path(w, store_dir, src))?;
    w.write_all(b",")?;
    quoted(w, drv.system.get(bytes))?;
    w.write_all(b",")?;
    quoted(w, drv.builder.get(bytes))?;
    w.write_all(b",")?;
    list(w, &drv.args, |w, arg| quoted(w, arg.get(bytes)))?;
    w.write_all(b",")?;
    list(w, &drv.env, |w, (key, value)| {
        let key = key.get(bytes);
        w.write_all(b"(")?;
        quoted(w, key)?;
        w.write_all(b",")?;
        match env_edit(drv, form, key) {
            Some(EnvEdit::Empty) => w.write_all(b"\"\"")?,
            Some(EnvEdit::Path(path)) => quoted_path(w, store_dir, path)?,
            Some(EnvEdit::Json(json)) => quoted(w, json)?,
            None => quoted(w, value.get(bytes))?,
        }
        w.write_all(b")")
    })?;
    w.write_all(b")")
}

/// [`write_aterm`] for a canonical derivation (one whose bytes are its
/// printed form, [`Derivation::is_canonical`]), as a few slices given to
/// `emit`: everything `form` does not change is passed on straight from the
/// file's bytes, and only the output list, the hashed inputs and the edited
/// environment values are printed (into `scratch`). Hashing a form this way
/// feeds SHA-256 the file's bytes in place instead of copying them piece by
/// piece.
pub(crate) fn emit_canonical_form(
    drv: &Derivation,
    form: &Form<'_>,
    scratch: &mut Vec<u8>,
    emit: &mut impl FnMut(&[u8]),
) {
    debug_assert!(drv.canonical);
    let bytes = &drv.bytes[..];
    let (outputs, inputs) = (drv.outputs_list, drv.input_drvs_list);
    emit(&bytes[..outputs.start as usize]);
    if form.mask_outputs || form.outputs.is_some() {
        scratch.clear();
        write_outputs(drv, scratch, form).expect("writing to memory cannot fail");
        emit(scratch);
    } else {
        emit(outputs.get(bytes));
    }
    emit(&bytes[outputs.end as usize..inputs.start as usize]);
    match form.inputs {
        Some(hashed) => {
            scratch.clear();
            push_hashed_inputs(scratch, hashed);
            emit(scratch);
        }
        None => emit(inputs.get(bytes)),
    }
    let mut at = inputs.end as usize;
    for (key, value) in &drv.env {
        let Some(edit) = env_edit(drv, form, key.get(bytes)) else {
            continue;
        };
        emit(&bytes[at..value.start as usize]);
        match edit {
            EnvEdit::Empty => {}
            EnvEdit::Path(path) => {
                scratch.clear();
                quoted_path(scratch, drv.store_dir(), path).expect("writing to memory cannot fail");
                // Without the quotes: the file's own surround the value.
                emit(&scratch[1..scratch.len() - 1]);
            }
            EnvEdit::Json(json) => emit(json),
        }
        at = value.end as usize;
    }
    emit(&bytes[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `unescape` undoes `escape`, and reads any raw text as the byte-wise
    /// reading does (a backslash takes the next byte; one at the end is
    /// dropped), on random texts over the bytes that matter.
    #[test]
    fn unescape_undoes_escape_and_reads_any_text() {
        fn bytewise(raw: &[u8]) -> Vec<u8> {
            let mut out = Vec::new();
            let mut bytes = raw.iter();
            while let Some(&c) = bytes.next() {
                if c != b'\\' {
                    out.push(c);
                    continue;
                }
                match bytes.next() {
                    Some(b'n') => out.push(b'\n'),
                    Some(b'r') => out.push(b'\r'),
                    Some(b't') => out.push(b'\t'),
                    Some(&other) => out.push(other),
                    None => {}
                }
            }
            out
        }
        const BYTES: &[u8] = b"ab\"\\\n\r\tnrt\xff";
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = usize::try_from(state % 24).unwrap();
            let text: Vec<u8> = (0..len)
                .map(|i| BYTES[usize::try_from((state >> (i % 48)) % 11).unwrap()])
                .collect();
            assert_eq!(*unescape(&escape(&text)), *text);
            assert_eq!(*unescape(&text), *bytewise(&text), "{text:?}");
        }
    }

    /// The slices `emit_canonical_form` passes on are the bytes
    /// `write_aterm` prints, for every form the hashes use (outputs masked
    /// or set, inputs hashed, `__json` replaced), on the example closures
    /// and the conformance vectors.
    #[test]
    fn canonical_forms_are_the_printed_forms() {
        let set = StorePath::from_basename(b"00000000000000000000000000000000-set").unwrap();
        let mut compared = 0;
        let corpus = crate::derivation::test_corpus::corpus();
        for (_, drv) in corpus.iter().filter(|(_, d)| d.is_canonical()) {
            let hashed: Vec<HashedInput<'_>> = drv
                .input_drvs
                .iter()
                .zip(1u8..)
                .map(|(input, i)| HashedInput {
                    hash: [i; 32],
                    outputs: HashedOutputs::Node(&input.node.outputs),
                })
                .collect();
            // Every other output set, the rest kept as written.
            let outputs: Vec<(String, Option<StorePath>)> = drv
                .outputs()
                .enumerate()
                .map(|(i, o)| (o.name.to_owned(), (i % 2 == 0).then(|| set.clone())))
                .collect();
            for mask_outputs in [false, true] {
                for inputs in [None, Some(hashed.as_slice())] {
                    for json in [None, Some(&b"{\\\"a\\\":1}"[..])] {
                        for set_outputs in [None, Some(outputs.as_slice())] {
                            let form = Form {
                                mask_outputs,
                                outputs: set_outputs,
                                inputs,
                                json,
                            };
                            let mut printed = Vec::new();
                            write_aterm(drv, &mut printed, &form).unwrap();
                            let mut emitted = Vec::new();
                            emit_canonical_form(drv, &form, &mut Vec::new(), &mut |piece| {
                                emitted.extend_from_slice(piece);
                            });
                            assert_eq!(
                                String::from_utf8_lossy(&emitted),
                                String::from_utf8_lossy(&printed),
                                "{form:?}"
                            );
                            assert_eq!(emitted, printed);
                            compared += 1;
                        }
                    }
                }
            }
        }
        assert!(compared >= 16 * 30, "{compared} forms compared");
    }
}
