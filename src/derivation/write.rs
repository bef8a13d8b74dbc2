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
    let mut bytes = raw.iter();
    while let Some(&c) = bytes.next() {
        if c == b'\\' {
            match bytes.next() {
                Some(b'n') => out.push(b'\n'),
                Some(b'r') => out.push(b'\r'),
                Some(b't') => out.push(b'\t'),
                Some(&other) => out.push(other),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
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

    fn write(&self, w: &mut dyn Write) -> io::Result<()> {
        match self {
            Self::Node(names) => list(w, names.iter(), |w, o| quoted(w, o.as_bytes())),
            Self::Out => w.write_all(b"[\"out\"]"),
            Self::Union(names) => list(w, names.iter(), |w, o| quoted(w, o.as_bytes())),
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
    let override_for = |name: &[u8]| -> Option<&StorePath> {
        form.outputs?
            .iter()
            .find(|(n, _)| n.as_bytes() == name)
            .and_then(|(_, p)| p.as_ref())
    };
    list(w, &drv.outputs, |w, o| {
        let name = o.name.get(bytes);
        w.write_all(b"(")?;
        quoted(w, name)?;
        if form.mask_outputs {
            return w.write_all(b",\"\",\"\",\"\")");
        }
        w.write_all(b",")?;
        match override_for(name) {
            Some(path) => {
                quoted_path(w, store_dir, path)?;
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
    })?;
    w.write_all(b",")?;
    match form.inputs {
        Some(inputs) => list(w, inputs, |w, input| {
            let mut hex = [0u8; 64];
            super::store_path::hex_into(&input.hash, &mut hex);
            w.write_all(b"(")?;
            quoted(w, &hex)?;
            w.write_all(b",")?;
            input.outputs.write(w)?;
            w.write_all(b")")
        })?,
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
    let is_output = |key: &[u8]| drv.outputs.iter().any(|o| o.name.get(bytes) == key);
    list(w, &drv.env, |w, (key, value)| {
        let key = key.get(bytes);
        w.write_all(b"(")?;
        quoted(w, key)?;
        w.write_all(b",")?;
        if form.mask_outputs && is_output(key) {
            w.write_all(b"\"\"")?;
        } else if let Some(path) = override_for(key) {
            quoted_path(w, store_dir, path)?;
        } else if let (Some(json), true) = (form.json, key == super::meta::JSON_KEY) {
            quoted(w, json)?;
        } else {
            quoted(w, value.get(bytes))?;
        }
        w.write_all(b")")
    })?;
    w.write_all(b")")
}
