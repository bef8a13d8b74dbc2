//! `drvmeta show`: Nix's derivation JSON plus the `meta` extension.

use std::io::{self, IsTerminal, Write};

use anyhow::Result;
use clap::Args;

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
    let closure = args.load.load()?;
    let positions: Vec<usize> = if args.recursive {
        (0..closure.nodes().len()).collect()
    } else {
        closure.roots().to_vec()
    };
    let pretty = args.pretty || io::stdout().is_terminal();
    let mut out = io::BufWriter::new(io::stdout().lock());
    drvmeta::show::write_document(&closure, &positions, pretty, &mut out)?;
    out.flush()?;
    Ok(EXIT_OK)
}
