//! `drvmeta hash`: classic and modulo-meta hashes side by side.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::sync::{Mutex, PoisonError};

use anyhow::Result;
use clap::Args;
use drvmeta::batch::EntryArena;
use drvmeta::report::{DrvReport, JsonWriter, Subject};
use rayon::slice::ParallelSliceMut;

use super::{EXIT_OK, EXIT_PROBLEM, LoadArgs};

#[derive(Debug, Args)]
pub struct HashArgs {
    /// Print one JSON document (fields in docs/hash-json.md).
    #[arg(long)]
    json: bool,
    /// Report every derivation of the closures, not just the arguments.
    #[arg(short, long)]
    recursive: bool,
    /// Full store paths in the table even when they do not fit the
    /// terminal (otherwise abbreviated as /nix/store/abcdefgh…-name).
    #[arg(long)]
    long: bool,
    #[command(flatten)]
    load: LoadArgs,
}

pub fn run(args: &HashArgs) -> Result<u8> {
    if args.json && args.recursive {
        return run_json_recursive(args);
    }
    let (closure, hashes) = args.load.load_and_hash()?;
    let positions: Vec<usize> = if args.recursive {
        (0..closure.nodes().len()).collect()
    } else {
        closure.roots().to_vec()
    };
    let keyed = drvmeta::report::sorted_paths(&closure, &positions);
    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut problem_lines = Vec::new();
    let mut json = JsonWriter::default();
    let full = keyed.iter().map(|(path, _)| path.len()).max().unwrap_or(0);
    let abbreviate = !args.json
        && !args.long
        && super::ui::table_width().is_some_and(|w| Table::width_for(full) > w);
    let width = if abbreviate {
        keyed
            .iter()
            .map(|(path, _)| abbreviated(path).chars().count())
            .max()
            .unwrap_or(0)
    } else {
        full
    };
    let table = Table::new(width, abbreviate);
    if !args.json {
        out.write_all(table.header().as_bytes())?;
    }
    // Each entry is rendered (and its problems listed) on all cores, then
    // written in order.
    let render = |(path, position): &(String, usize)| -> io::Result<(Vec<u8>, Vec<String>)> {
        let report = || drvmeta::report::drv_report(&closure, &hashes, *position);
        if args.json {
            // Straight from the hashes; a report only for a problem.
            let text = drvmeta::report::render_entry_of(&closure, &hashes, *position, path)?;
            let problems = if drvmeta::report::is_problem(&closure, &hashes, *position) {
                problems_at(path, &report())
            } else {
                Vec::new()
            };
            return Ok((text, problems));
        }
        let drv = report();
        let problems = if drv.is_problem() {
            problems_at(path, &drv)
        } else {
            Vec::new()
        };
        Ok((table.rows(path, &drv).into_bytes(), problems))
    };
    drvmeta::batch::for_each_ordered(&keyed, render, |_, rendered| -> io::Result<()> {
        let (text, problems) = rendered?;
        if args.json {
            json.write_rendered(&mut out, &text)?;
        } else {
            out.write_all(&text)?;
        }
        problem_lines.extend(problems);
        Ok(())
    })?;
    if args.json {
        json.finish(&mut out)?;
    }
    out.flush()?;
    drop(out);
    // The process ends now: its memory goes back whole, so the closure and
    // its hashes are not freed piece by piece (20,000 derivations: 2% of
    // `hash -r`'s time, all of it after the output is written).
    std::mem::forget((closure, hashes, keyed));
    Ok(report_problems(&problem_lines))
}

/// `hash --json -r`: every derivation of the closures, each entry rendered
/// as soon as its hashes are computed (on the walk's threads, while they
/// are in the cache), then written in path order. The same bytes as
/// rendering after the walk.
fn run_json_recursive(args: &HashArgs) -> Result<u8> {
    // Entries go into the arena as they are rendered, on the walk's
    // threads (one short lock per derivation).
    let arena = Mutex::new(EntryArena::default());
    let (closure, entries) =
        args.load
            .load_hash_and(&|store_dir, path, path_matches, hashes| {
                let subject = Subject {
                    store_dir,
                    path,
                    path_matches,
                };
                // Rendered into a buffer the allocator hands out again for
                // the next entry, and kept packed.
                let mut text = Vec::with_capacity(1024);
                let rendered =
                    drvmeta::report::render_entry(&mut text, subject, &hashes).map(|()| {
                        arena
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(&text)
                    });
                let problems = if drvmeta::report::is_problem_of(subject, &hashes) {
                    problems_at(
                        &store_dir.display(path),
                        &drvmeta::report::report_of(subject, &hashes),
                    )
                } else {
                    Vec::new()
                };
                (rendered, problems)
            })?;
    // Path order: the store directory is the same for all, so the order of
    // the rendered paths is the store paths' (base name) order.
    let arena = arena.into_inner().unwrap_or_else(PoisonError::into_inner);
    let nodes = closure.nodes();
    let mut order: Vec<usize> = (0..nodes.len()).collect();
    order.par_sort_unstable_by(|&a, &b| nodes[a].path.cmp(&nodes[b].path));
    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut json = JsonWriter::default();
    let mut problem_lines = Vec::new();
    for position in order {
        let (text, problems) = &entries[position];
        match text {
            Ok(at) => json.write_rendered(&mut out, arena.get(*at))?,
            Err(error) => return Err(io::Error::new(error.kind(), error.to_string()).into()),
        }
        problem_lines.extend(problems.iter().cloned());
    }
    json.finish(&mut out)?;
    out.flush()?;
    drop(out);
    // The process ends now (see `run`).
    std::mem::forget((closure, entries, arena));
    Ok(report_problems(&problem_lines))
}

/// Print the problem lines on stderr; the exit status they make.
fn report_problems(problem_lines: &[String]) -> u8 {
    for line in problem_lines {
        super::ui::problem(line);
    }
    if problem_lines.is_empty() {
        EXIT_OK
    } else {
        EXIT_PROBLEM
    }
}

/// The problem lines of the derivation at `path`: `<path>: <reason>`.
fn problems_at(path: &str, drv: &DrvReport) -> Vec<String> {
    problems(drv)
        .into_iter()
        .map(|reason| format!("{path}: {reason}"))
        .collect()
}

/// Why a derivation is reported as invalid or inconsistent.
fn problems(drv: &DrvReport) -> Vec<String> {
    let mut reasons: Vec<String> = drv.errors.iter().map(|e| format!("invalid: {e}")).collect();
    if !drv.drv_path_matches {
        reasons.push(drvmeta::closure::INCONSISTENT.to_owned());
    }
    if drv.errors.is_empty() && drv.recorded_matches == drvmeta::hashing::RecordedMatches::Neither {
        reasons.push(
            "inconsistent: the recorded output paths match neither the classic nor the \
             modulo-meta ones"
                .to_owned(),
        );
    }
    reasons
}

fn outputs_column(drv: &DrvReport) -> &'static str {
    if !drv.errors.is_empty() {
        "invalid"
    } else if drv.meta_changes_outputs() {
        "meta changes them"
    } else if drv.classic.outputs.values().all(Option::is_none) {
        "unknown until built"
    } else {
        "unchanged by meta"
    }
}

/// The human table: derivation, opt-in, effect of meta on outputs, then the
/// differing output paths, warnings and problems indented below.
pub struct Table {
    width: usize,
    abbreviate: bool,
}

/// A store path shortened as in nix-diff's tables: the store directory,
/// the first 8 characters of the hash, `…`, then the name.
pub fn abbreviated(path: &str) -> String {
    let (dir, base) = path.rsplit_once('/').unwrap_or(("", path));
    match base.split_once('-') {
        Some((hash, name)) if hash.len() == 32 => format!("{dir}/{}…-{name}", &hash[..8]),
        _ => path.to_owned(),
    }
}

impl Table {
    /// A table whose derivation column is `width` wide; `abbreviate`:
    /// store paths shortened ([`abbreviated`]).
    pub fn new(width: usize, abbreviate: bool) -> Self {
        Self {
            width: width.max("DERIVATION".len()),
            abbreviate,
        }
    }

    /// How wide the table's widest line is with a derivation column `width`
    /// wide (the output lines are narrower than that).
    pub fn width_for(width: usize) -> usize {
        width.max("DERIVATION".len()) + "  OPT-IN  meta changes them".len()
    }

    fn path(&self, path: &str) -> String {
        if self.abbreviate {
            abbreviated(path)
        } else {
            path.to_owned()
        }
    }

    /// The header line.
    pub fn header(&self) -> String {
        format!(
            "{:<width$}  {:<6}  OUTPUTS\n",
            "DERIVATION",
            "OPT-IN",
            width = self.width
        )
    }

    /// The lines of one derivation.
    pub fn rows(&self, path: &str, drv: &DrvReport) -> String {
        let width = self.width;
        let mut out = String::new();
        let opt_in = if drv.meta_opt_in { "yes" } else { "no" };
        let path = self.path(path);
        let _ = writeln!(out, "{path:<width$}  {opt_in:<6}  {}", outputs_column(drv));
        if drv.errors.is_empty() && drv.meta_changes_outputs() {
            let name_width = drv
                .classic
                .outputs
                .keys()
                .map(String::len)
                .max()
                .unwrap_or(0);
            for (name, classic) in &drv.classic.outputs {
                let modulo = drv.modulo_meta.outputs.get(name).cloned().flatten();
                if classic.as_ref() == modulo.as_ref() {
                    continue;
                }
                let show = |p: Option<&String>| p.map_or("(unknown)".to_owned(), |p| self.path(p));
                let _ = writeln!(
                    out,
                    "  {name:<name_width$}  classic      {}",
                    show(classic.as_ref())
                );
                let _ = writeln!(
                    out,
                    "  {:<name_width$}  modulo-meta  {}",
                    "",
                    show(modulo.as_ref())
                );
            }
        }
        for warning in &drv.warnings {
            let _ = writeln!(out, "  warning: {warning}");
        }
        for problem in problems(drv) {
            let _ = writeln!(out, "  {problem}");
        }
        out
    }
}
