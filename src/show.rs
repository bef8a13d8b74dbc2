//! Nix's derivation JSON (format version 4) with the PR #16285 `meta`
//! extension (DESIGN.md §5).
//!
//! Each derivation is rendered by `nix-derivation`; for an opted-in
//! derivation `structuredAttrs` is shown stripped and the meta object moves to
//! a top-level `"meta"` field (`null` for derivations that are not opted in).

use std::io::Write;

use nix_derivation::{Derivation, StorePath};
use serde_json::{Map, Value};

use crate::closure::{Closure, DrvNode};
use crate::error::{Error, Result};
use crate::meta;

/// The JSON version this module writes.
pub const VERSION: u64 = 4;

/// One derivation as Nix's JSON object plus `"meta"`.
///
/// # Errors
/// [`Error::Json`] when the derivation cannot be represented (an environment
/// value that is not UTF-8, which Nix's JSON cannot hold either).
pub fn derivation_value(closure: &Closure, node: &DrvNode) -> Result<Value> {
    derivation_json(&node.derivation()?).map_err(|source| Error::Json {
        path: closure.render(&node.path),
        source,
    })
}

/// [`derivation_value`] for a derivation outside any closure.
///
/// # Errors
/// As `nix_derivation::json::to_value`.
pub fn derivation_json(drv: &Derivation) -> std::result::Result<Value, nix_derivation::Error> {
    let mut value = nix_derivation::json::to_value(drv)?;
    let object = value
        .as_object_mut()
        .expect("nix-derivation renders a derivation as a JSON object");
    let meta = match meta::stripped_attrs_object(drv) {
        Some(stripped) => {
            object.insert("structuredAttrs".to_owned(), Value::Object(stripped));
            meta::meta_object(drv).map(|m| Value::Object(m.clone()))
        }
        None => None,
    };
    object.insert("meta".to_owned(), meta.unwrap_or(Value::Null));
    Ok(value)
}

/// Positions sorted by base name, duplicates removed: the document's order.
fn sorted(closure: &Closure, positions: &[usize]) -> Vec<(String, usize)> {
    closure.keyed(positions, StorePath::to_basename)
}

/// The document `{"derivations": {"<base>.drv": {…}}, "version": 4}` for the
/// derivations at `positions`, as a value (fine for a few derivations; use
/// [`write_document`] for closures).
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

/// Stream the same document as [`document`] to `writer`, compact or pretty
/// (two-space indentation, like `serde_json`'s), rendering derivations in
/// parallel batches so that memory stays bounded.
///
/// # Errors
/// As [`derivation_value`]; [`Error::Write`] when `writer` fails.
pub fn write_document(
    closure: &Closure,
    positions: &[usize],
    pretty: bool,
    writer: &mut impl Write,
) -> Result<()> {
    let (open, separator, close) = if pretty {
        (
            "{\n  \"derivations\": {",
            ",",
            "\n  },\n  \"version\": 4\n}\n",
        )
    } else {
        ("{\"derivations\":{", ",", "},\"version\":4}\n")
    };
    let write = |writer: &mut dyn Write, bytes: &[u8]| {
        writer
            .write_all(bytes)
            .map_err(|source| Error::Write { source })
    };
    write(writer, open.as_bytes())?;
    let keyed = sorted(closure, positions);
    let mut first = true;
    crate::batch::for_each_ordered(
        &keyed,
        |(base, position)| -> Result<String> {
            let value = derivation_value(closure, &closure.nodes()[*position])?;
            let key = serde_json::to_string(base).expect("a string serialises");
            Ok(if pretty {
                let body = serde_json::to_string_pretty(&value).expect("a value serialises");
                // JSON strings never hold a raw newline: indenting every
                // line nests the object two levels deeper.
                format!("\n    {key}: {}", body.replace('\n', "\n    "))
            } else {
                format!("{key}:{value}")
            })
        },
        |_, entry| {
            let entry = entry?;
            if !first {
                write(writer, separator.as_bytes())?;
            }
            first = false;
            write(writer, entry.as_bytes())
        },
    )?;
    write(writer, close.as_bytes())
}
