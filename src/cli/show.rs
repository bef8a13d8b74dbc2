//! `drvmeta show`: Nix's derivation JSON plus the `meta` extension.

use std::io::{self, IsTerminal, Write};

use anyhow::Result;
use clap::Args;

use drvmeta::show::{DocumentWriter, EntryArena, derivation_json, entry_of_json};
use nix_derivation::StorePath;

use super::{EXIT_OK, LoadArgs};

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Show every derivation of the closures, not just the arguments.
    #[arg(short, long)]
    recursive: bool,
    /// Pretty-print (the default when stdout is a terminal).
    #[arg(long)]
    pretty: bool,
    #[command(flatten)]
    load: LoadArgs,
}

pub fn run(args: &ShowArgs) -> Result<u8> {
    let pretty = args.pretty || io::stdout().is_terminal();
    // Each derivation shown is rendered (compact) while it is parsed, once,
    // and packed into the arena.
    let mut arena = EntryArena::default();
    let (closure, entries) = args.load.load_mapped(
        |path, drv, is_root| {
            (args.recursive || is_root).then(|| {
                derivation_json(drv)
                    .map(|value| value.to_string())
                    .map_err(|source| drvmeta::Error::Json {
                        path: path.to_absolute_path_in(drv.store_dir()),
                        source,
                    })
            })
        },
        |entry| entry.map(|entry| entry.map(|json| arena.push(&json))),
    )?;
    let positions: Vec<usize> = if args.recursive {
        (0..closure.nodes().len()).collect()
    } else {
        closure.roots().to_vec()
    };
    let keyed = closure.keyed(&positions, StorePath::to_basename);
    // Nothing is written when a derivation cannot be shown.
    let mut shown = Vec::with_capacity(keyed.len());
    let mut entries = entries;
    for (base, position) in keyed {
        let entry = entries[position]
            .take()
            .expect("every derivation shown was rendered, and is shown once")?;
        shown.push((base, entry));
    }
    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut document = DocumentWriter::new(pretty);
    drvmeta::batch::for_each_ordered(
        &shown,
        |(base, entry)| entry_of_json(base, arena.get(*entry), pretty),
        |_, text| document.entry(&mut out, &text),
    )?;
    document.finish(&mut out)?;
    out.flush()?;
    Ok(EXIT_OK)
}
