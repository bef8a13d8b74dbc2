//! Nix's derivation JSON (format version 4) with the PR #16285 `meta`
//! extension (DESIGN.md §5).
//!
//! Each derivation is rendered by `nix-derivation`; for an opted-in
//! derivation `structuredAttrs` is shown stripped and the meta object moves to
//! a top-level `"meta"` field (`null` for derivations that are not opted in).

use nix_derivation::Derivation;
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
    derivation_json(&node.drv).map_err(|source| Error::Json {
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

/// The document `{"version": 4, "derivations": {"<base>.drv": {…}}}` for the
/// derivations at `positions`.
///
/// # Errors
/// As [`derivation_value`].
pub fn document(closure: &Closure, positions: &[usize]) -> Result<Value> {
    let mut derivations = Map::new();
    for &position in positions {
        let node = &closure.nodes()[position];
        derivations.insert(node.path.to_basename(), derivation_value(closure, node)?);
    }
    let mut top = Map::new();
    top.insert("derivations".to_owned(), Value::Object(derivations));
    top.insert("version".to_owned(), Value::from(VERSION));
    Ok(Value::Object(top))
}
