//! Adding a post-processed closure to the local Nix store.

use std::collections::HashSet;

use crate::closure::Closure;
use crate::error::Result;
use crate::export::{ExportItem, write_export};
use crate::nix_store;
use crate::rewrite::Rewritten;

/// Export items for `results` (in closure order: dependencies first), each
/// referencing its input derivations and input sources.
#[must_use]
pub fn export_items<'a>(closure: &Closure, results: &'a [Rewritten]) -> Vec<ExportItem<'a>> {
    results
        .iter()
        .map(|result| {
            let mut references: Vec<String> = result
                .references
                .iter()
                .map(|p| closure.render(p))
                .collect();
            references.sort();
            ExportItem {
                path: closure.render(&result.path),
                contents: &result.bytes,
                references,
            }
        })
        .collect()
}

/// Import the paths of `results` that the store does not have yet,
/// dependencies first, through `nix-store --import`; returns the paths
/// imported.
///
/// # Errors
/// When Nix is missing or rejects the stream (e.g. an input source that is
/// not in the store).
pub fn import_closure(closure: &Closure, results: &[Rewritten]) -> Result<Vec<String>> {
    let items = export_items(closure, results);
    let paths: Vec<String> = items.iter().map(|item| item.path.clone()).collect();
    let invalid: HashSet<String> = nix_store::invalid_paths(&paths)?.into_iter().collect();
    let missing: Vec<&ExportItem<'_>> = items
        .iter()
        .filter(|item| invalid.contains(&item.path))
        .collect();
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    let mut stream = Vec::new();
    write_export(missing, &mut stream).map_err(|source| crate::Error::Write { source })?;
    nix_store::import(stream)
}
