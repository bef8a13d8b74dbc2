//! `drvmeta sbom`: CycloneDX 1.6, SPDX 2.3 or SPDX 3.0.1 from a derivation
//! closure.

use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};
use drvmeta::sbom::parties::Party;
use drvmeta::sbom::{Realised, RuntimeGraph};

use super::{EXIT_OK, LoadArgs, UsageError};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    /// CycloneDX 1.6 JSON.
    Cyclonedx,
    /// SPDX 2.3 JSON.
    Spdx,
    /// SPDX 3.0.1 JSON-LD (what the BSI TR-03183-2 checks read).
    Spdx3,
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
    /// With --runtime: hash every shipped output's NAR with SHA-512 as
    /// well (BSI TR-03183-2 asks for it; Nix records SHA-256 only). Reads
    /// the whole runtime closure, checking it against the Nix database.
    #[arg(long, requires = "runtime")]
    nar_sha512: bool,
    /// The supplier of every component whose __meta names none (vendor,
    /// maintainers, a GitHub/GitLab homepage): "Name" or "Name <email>", an
    /// organization. Without it such components say NOASSERTION.
    #[arg(long, value_name = "NAME")]
    supplier: Option<String>,
    /// An author of the document, besides drvmeta (repeatable): "Name" or
    /// "Name <email>", a person.
    #[arg(long, value_name = "NAME")]
    author: Vec<String>,
    #[command(flatten)]
    load: LoadArgs,
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
        Some(RuntimeGraph::of_roots(&closure, &realised)?)
    } else {
        None
    };
    let party = |text: &str, person: bool, flag: &str| {
        Party::parse(text, person).ok_or_else(|| {
            UsageError(format!(
                "{flag} {text:?}: give \"Name\" or \"Name <email>\""
            ))
        })
    };
    let supplier = args
        .supplier
        .as_deref()
        .map(|s| party(s, false, "--supplier"))
        .transpose()?;
    let authors = args
        .author
        .iter()
        .map(|a| party(a, true, "--author"))
        .collect::<Result<Vec<_>, _>>()?;
    // A build-time SBOM of built roots tells what is needed to build only.
    let shipped = if args.runtime || !drvmeta::nix_store::available() {
        None
    } else {
        RuntimeGraph::of_built_roots(&closure, &realised)?.ok()
    };
    let mut sbom = drvmeta::sbom::build(
        &closure,
        graph.as_ref(),
        &realised,
        shipped.as_ref().map(|g| &g.paths),
    )?;
    if args.nar_sha512 {
        let bytes = sbom.hash_nars_sha512()?;
        super::ui::verbose(&format!("hashed {bytes} bytes of NARs with SHA-512"));
    }
    let missing = sbom.with_parties(supplier.as_ref(), &authors);
    if missing > 0 {
        super::ui::warning(&format!(
            "{missing} of {} component(s) have no supplier (no __meta vendor, maintainers or \
             GitHub/GitLab homepage): written as NOASSERTION, which NTIA's minimum elements do \
             not accept\nhint: --supplier \"Name <email>\" for what meta does not say",
            sbom.packages.len()
        ));
    }
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
            Format::Spdx3 => {
                serde_json::to_writer_pretty(&mut writer, &drvmeta::sbom::spdx3::document(&sbom))?
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
