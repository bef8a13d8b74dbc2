//! `drvmeta diff`: why two derivations differ and whether that rebuilds.

use std::io::{self, Write};

use anyhow::Result;
use clap::Args;
use drvmeta::diff::Verdict;

use super::{EXIT_OK, LoadArgs, UsageError};

/// Exit status of `diff --exit-code` when the change rebuilds (1 and 2 keep
/// their meaning: invalid input, usage error).
pub const EXIT_REBUILD: u8 = 3;

#[derive(Debug, Args)]
#[command(mut_arg("drvs", |a| a
    .value_names(["OLD", "NEW"])
    .num_args(2)
    .action(clap::ArgAction::Set)
    .help("The old and the new derivation: store paths or paths of `.drv` files")))]
pub struct DiffArgs {
    /// Print {"verdict", "stockNix", "old", "new", "outputs", "changes"}
    /// (docs/diff.md).
    #[arg(long)]
    json: bool,
    /// Exit with status 3 when the change rebuilds (0 otherwise): with
    /// drvmeta realise or a derivation-meta Nix, unless --stock-nix.
    #[arg(long)]
    exit_code: bool,
    /// Make --exit-code answer for stock Nix (`nix-store --realise NEW`,
    /// meta hashed like everything else) instead.
    #[arg(long, requires = "exit_code")]
    stock_nix: bool,
    #[command(flatten)]
    load: LoadArgs,
}

pub fn run(args: &DiffArgs) -> Result<u8> {
    if args.load.drvs.len() != 2 {
        return Err(UsageError(format!(
            "diff takes exactly two derivations (OLD NEW), got {}",
            args.load.drvs.len()
        ))
        .into());
    }
    let closure = args.load.load()?;
    let report = drvmeta::diff::diff(&closure)?;
    let mut out = io::BufWriter::new(io::stdout().lock());
    if args.json {
        serde_json::to_writer(&mut out, &report)?;
        out.write_all(b"\n")?;
    } else {
        out.write_all(report.to_text().as_bytes())?;
    }
    out.flush()?;
    let verdict = if args.stock_nix {
        report.stock_nix.verdict
    } else {
        report.verdict
    };
    Ok(if args.exit_code && verdict == Verdict::Rebuild {
        EXIT_REBUILD
    } else {
        EXIT_OK
    })
}
