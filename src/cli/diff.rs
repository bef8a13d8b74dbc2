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
    /// Print {"verdict", "old", "new", "outputs", "changes"} (docs/diff.md).
    #[arg(long)]
    json: bool,
    /// Exit with status 3 when the verdict is "rebuild" (0 otherwise).
    #[arg(long)]
    exit_code: bool,
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
    Ok(if args.exit_code && report.verdict == Verdict::Rebuild {
        EXIT_REBUILD
    } else {
        EXIT_OK
    })
}
