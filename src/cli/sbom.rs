//! `drvmeta sbom`: CycloneDX 1.6 or SPDX 2.3 from a derivation closure.

use std::collections::HashSet;
use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use drvmeta::closure::Closure;
use drvmeta::sbom::{Realised, RuntimeGraph};

use super::{EXIT_OK, LoadArgs};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    /// CycloneDX 1.6 JSON.
    Cyclonedx,
    /// SPDX 2.3 JSON.
    Spdx,
}

#[derive(Debug, Args)]
pub struct SbomArgs {
    /// Document format.
    #[arg(long, value_enum, default_value = "cyclonedx")]
    format: Format,
    /// Write the document to FILE (atomically) instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Only what the roots' built outputs reference (they must be built);
    /// the default is the whole build-time closure.
    #[arg(long)]
    runtime: bool,
    #[command(flatten)]
    load: LoadArgs,
}

fn runtime_graph(closure: &Closure, realised: &Realised) -> Result<RuntimeGraph> {
    let mut outputs = Vec::new();
    for &root in closure.roots() {
        if let Some(realised) = realised.of(root) {
            outputs.extend(realised.iter().filter_map(|(_, p)| p.clone()));
            continue;
        }
        let node = &closure.nodes()[root];
        let drv = node.derivation()?;
        let recorded = drvmeta::hashing::recorded_outputs(&drv);
        if recorded.iter().all(|(_, p)| p.is_some()) {
            outputs.extend(
                recorded
                    .into_iter()
                    .filter_map(|(_, p)| p)
                    .map(|p| closure.render(&p)),
            );
        } else {
            outputs.extend(drvmeta::nix_store::outputs_of(&closure.render(&node.path))?);
        }
    }
    let invalid: HashSet<String> = drvmeta::nix_store::invalid_paths(&outputs)?
        .into_iter()
        .collect();
    if let Some(missing) = outputs.iter().find(|o| invalid.contains(*o)) {
        bail!(
            "--runtime needs the roots built: {missing} is not valid in the Nix store (nix-store --realise the roots, or drvmeta realise them, first)"
        );
    }
    let dot = drvmeta::nix_store::graph(&outputs)?;
    let mut graph = RuntimeGraph::from_dot(&dot, closure.store_dir().as_str());
    graph.paths.extend(outputs);
    Ok(graph)
}

pub fn run(args: &SbomArgs) -> Result<u8> {
    let closure = args.load.load()?;
    let realised = if drvmeta::nix_store::available() {
        Realised::query(&closure)?
    } else {
        Realised::none()
    };
    if realised.count() > 0 {
        super::ui::note(&format!(
            "{} derivation(s) were realised modulo meta (drvmeta realise): their components \
             name the outputs that were built; the classic ones, never built, are marked \
             nix:classic_store_path",
            realised.count()
        ));
    }
    let graph = if args.runtime {
        Some(runtime_graph(&closure, &realised)?)
    } else {
        None
    };
    let sbom = drvmeta::sbom::build(&closure, graph.as_ref(), &realised)?;
    for warning in &sbom.warnings {
        super::ui::warning(warning);
    }
    let write = |writer: &mut dyn Write| -> Result<()> {
        let mut writer = io::BufWriter::new(writer);
        match args.format {
            Format::Cyclonedx => serde_json::to_writer_pretty(
                &mut writer,
                &drvmeta::sbom::cyclonedx::document(&sbom),
            )?,
            Format::Spdx => {
                serde_json::to_writer_pretty(&mut writer, &drvmeta::sbom::spdx::document(&sbom))?
            }
        }
        writer.write_all(b"\n")?;
        writer.flush()?;
        Ok(())
    };
    match &args.output {
        Some(file) => {
            // Written whole, then moved into place with the usual mode.
            let mut bytes = Vec::new();
            write(&mut bytes)?;
            drvmeta::out_dir::write_file(file, &bytes)?;
        }
        None => write(&mut io::stdout().lock())?,
    }
    Ok(EXIT_OK)
}
