//! Ordered parallel work in bounded batches: render many derivations on all
//! cores while writing them in order and holding one batch at a time.

use rayon::prelude::*;

/// Items rendered per batch.
pub const BATCH: usize = 512;

/// Apply `render` to `items` in parallel, [`BATCH`] at a time, and call
/// `visit` with each item and its result in the order of `items`.
///
/// # Errors
/// The first error `visit` returns; later items are not rendered.
pub fn for_each_ordered<T: Sync, R: Send, E>(
    items: &[T],
    render: impl Fn(&T) -> R + Sync,
    mut visit: impl FnMut(&T, R) -> Result<(), E>,
) -> Result<(), E> {
    for batch in items.chunks(BATCH) {
        let rendered: Vec<R> = batch.par_iter().map(&render).collect();
        for (item, result) in batch.iter().zip(rendered) {
            visit(item, result)?;
        }
    }
    Ok(())
}
