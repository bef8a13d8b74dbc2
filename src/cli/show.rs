//! `drvmeta show`: Nix's derivation JSON plus the `meta` extension.

use std::io::{self, IsTerminal, Write};

use anyhow::Result;
use clap::Args;

use drvmeta::show::Shown;

use super::{EXIT_OK, EXIT_PROBLEM, LoadArgs};

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
    let drvs = args.load.resolved()?;
    let shown = args
        .load
        .with_progress(|options, progress| Shown::load(options, &drvs, args.recursive, progress))?;
    let mut out = io::BufWriter::new(io::stdout().lock());
    shown.write(pretty, &mut out)?;
    out.flush()?;
    // Shown as written, judged as `hash` judges it.
    for problem in &shown.problems {
        super::ui::problem(problem);
    }
    Ok(if shown.problems.is_empty() {
        EXIT_OK
    } else {
        EXIT_PROBLEM
    })
}
