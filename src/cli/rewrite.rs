//! `drvmeta rewrite` and `drvmeta strip`: post-process a closure.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use drvmeta::closure::Closure;
use drvmeta::report::JsonWriter;
use drvmeta::rewrite::{Mode, Rewritten};
use serde::Serialize;

use super::{EXIT_OK, LoadArgs, UsageError};

#[derive(Debug, Args)]
pub struct RewriteArgs {
    /// Write every derivation of the resulting closure into DIR as
    /// `<hash>-<name>.drv` (created if missing; existing files with other
    /// contents are an error and nothing is written).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Add the resulting closure to the local Nix store (nix-store --import)
    /// and print the roots' store paths.
    #[arg(long)]
    import: bool,
    /// Print {"derivations": {"<input drv>": {"drvPath", "outputs"}}}; alone,
    /// compute and print the result without writing anything.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    drv_path: String,
    outputs: BTreeMap<String, Option<String>>,
}

pub fn run(args: &RewriteArgs, mode: Mode) -> Result<u8> {
    if args.out.is_none() && !args.import && !args.json {
        return Err(UsageError(
            "give --out DIR and/or --import (or --json alone to see the result without writing it)"
                .to_owned(),
        )
        .into());
    }
    // The new derivations' bytes are kept only to be written or imported.
    let (closure, results) = args
        .load
        .load_and_rewrite(mode, args.out.is_some() || args.import)?;
    if args.import && mode == Mode::Rewrite && results.iter().any(|r| r.opted_in) {
        bail!(
            "the rewritten closure has derivation-meta derivations whose outputs are computed \
             modulo meta; a stock Nix rejects them on import. Use `drvmeta strip --import`."
        );
    }
    if let Some(dir) = &args.out {
        drvmeta::out_dir::write_files(
            dir,
            results
                .iter()
                .map(|r| (r.path.to_basename(), r.bytes.as_slice())),
        )?;
    }
    let imported = if args.import {
        drvmeta::import::import_closure(&closure, &results)?
    } else {
        Vec::new()
    };
    let mut out = io::BufWriter::new(io::stdout().lock());
    if args.json {
        // `{"derivations":{…}}` as serde writes a `BTreeMap` of entries:
        // each entry rendered on all cores, then written in key order.
        let positions: Vec<usize> = (0..closure.nodes().len()).collect();
        let keyed = closure.keyed(&positions, |path| closure.render(path));
        let render = |(key, position): &(String, usize)| {
            let result = &results[*position];
            let entry = Entry {
                drv_path: closure.render(&result.path),
                outputs: result
                    .outputs
                    .iter()
                    .map(|(name, path)| (name.clone(), path.as_ref().map(|p| closure.render(p))))
                    .collect(),
            };
            JsonWriter::render_entry(key, &entry)
        };
        let mut json = JsonWriter::default();
        drvmeta::batch::for_each_ordered(&keyed, render, |_, text| -> Result<()> {
            json.write_rendered(&mut out, &text?)?;
            Ok(())
        })?;
        json.finish(&mut out)?;
    } else if args.import {
        for root in roots(&closure, &results) {
            writeln!(out, "{root}")?;
        }
    } else {
        summary(&mut out, &closure, &results, mode, &imported)?;
    }
    out.flush()?;
    // The process ends now: its memory goes back whole (see `hash`).
    std::mem::forget((closure, results));
    Ok(EXIT_OK)
}

fn roots(closure: &Closure, results: &[Rewritten]) -> Vec<String> {
    let mut roots: Vec<String> = closure
        .roots()
        .iter()
        .map(|&r| closure.render(&results[r].path))
        .collect();
    roots.dedup();
    roots
}

fn summary(
    out: &mut impl Write,
    closure: &Closure,
    results: &[Rewritten],
    mode: Mode,
    imported: &[String],
) -> io::Result<()> {
    let changed = results.iter().filter(|r| r.changed).count();
    let verb = match mode {
        Mode::Rewrite => "rewrote",
        Mode::Strip => "stripped",
    };
    writeln!(
        out,
        "{verb} {} derivations, {changed} changed",
        results.len()
    )?;
    if !imported.is_empty() {
        writeln!(out, "imported {} new store paths", imported.len())?;
    }
    for &root in closure.roots() {
        let node = &closure.nodes()[root];
        writeln!(
            out,
            "{} -> {}",
            closure.render(&node.path),
            closure.render(&results[root].path)
        )?;
    }
    Ok(())
}
