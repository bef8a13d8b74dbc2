//! Argument parsing, exit statuses and output plumbing of the binary.

use std::io::{self, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use drvmeta::closure::{Closure, LoadOptions};
use drvmeta::derivation::{StoreDir, StorePath};
use drvmeta::hashing::NodeHashes;

mod build_info;
mod diff;
mod hash;
mod provenance;
mod rewrite;
mod sbom;
mod show;
mod ui;

/// Exit status: everything is fine.
pub const EXIT_OK: u8 = 0;
/// Exit status: a derivation is invalid or inconsistent, or could not be read.
pub const EXIT_PROBLEM: u8 = 1;
/// Exit status: the command line is wrong (also clap's own usage errors).
pub const EXIT_USAGE: u8 = 2;

/// Inspect Nix derivations: classic hash modulo and hash modulo meta
/// (NixOS/nix PR #16285) side by side, Nix's derivation JSON, lints.
#[derive(Debug, Parser)]
#[command(name = "drvmeta", version = build_info::version(), propagate_version = true)]
#[command(
    after_help = "Exit status: 0 all well, 1 a derivation is invalid or inconsistent \
(or could not be read, or an output could not be written), 2 usage error; \
diff --exit-code: 3 when the change rebuilds."
)]
struct Cli {
    /// Print only results, errors and problems: no notes, warnings,
    /// status lines or progress.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Also print how long loading derivations took.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Compute the classic and the modulo-meta hashes and output paths.
    Hash(hash::HashArgs),
    /// Print derivations as Nix's derivation JSON (version 4) plus "meta".
    Show(show::ShowArgs),
    /// Rewrite a closure into what a derivation-meta Nix would have
    /// instantiated (outputs modulo meta, meta kept).
    Rewrite(rewrite::RewriteArgs),
    /// Strip meta from a closure: the exact meta-free closure Nix builds.
    Strip(rewrite::RewriteArgs),
    /// Explain how two derivations differ and whether that rebuilds.
    Diff(diff::DiffArgs),
    /// Nix's post-build-hook: record the provenance of the build in
    /// DRV_PATH/OUT_PATHS.
    Hook(provenance::HookArgs),
    /// Write provenance records for derivations already built.
    Record(provenance::RecordArgs),
    /// Strip, import and build with stock Nix (a meta-only change builds
    /// nothing), then record provenance against the meta-carrying
    /// derivations; prints the output paths.
    Realise(provenance::RealiseArgs),
    /// Write a CycloneDX 1.6, SPDX 2.3 or SPDX 3.0.1 SBOM of a derivation
    /// closure (no evaluation: metadata comes from __meta).
    Sbom(sbom::SbomArgs),
    /// Show or verify provenance records.
    #[command(subcommand)]
    Provenance(provenance::ProvenanceCommand),
    /// Print a shell completion script: `source <(drvmeta completions
    /// bash)`, or install it where the shell looks.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page drvmeta(1), or write it and one page per command
    /// (drvmeta-hash(1), drvmeta-provenance-verify(1), …) into DIR.
    Man {
        /// Write every page into this directory instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// Where derivations are read from; shared by every command.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Directory searched first, by base name, for input derivations
    /// (repeatable; searched in the order given, before the store).
    #[arg(long = "drv-dir", value_name = "DIR")]
    pub drv_dirs: Vec<PathBuf>,
    /// The logical Nix store directory.
    #[arg(
        long,
        value_name = "DIR",
        env = "NIX_STORE_DIR",
        default_value = "/nix/store"
    )]
    pub store_dir: String,
    /// Derivations: `.drv` store paths or files, output paths or `result`
    /// links (their deriver), `.nix` files or directories with default.nix
    /// (instantiated by nix-instantiate), flake installables (`.#pkg`).
    #[arg(value_name = "DRV", required = true)]
    pub drvs: Vec<String>,
}

/// A command-line mistake detected after parsing (exit status 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(String);

impl LoadArgs {
    fn options(&self) -> Result<LoadOptions> {
        let store_dir = StoreDir::new(self.store_dir.clone())
            .map_err(|error| UsageError(format!("--store-dir {}: {error}", self.store_dir)))?;
        Ok(LoadOptions {
            store_dir,
            drv_dirs: self.drv_dirs.clone(),
        })
    }

    /// Load the closures of the arguments, with progress on a terminal,
    /// refusing invalid or inconsistent derivations as `hash` reports them
    /// ([`Closure::problems`]; exit status 1, nothing written).
    pub fn load(&self) -> Result<Closure> {
        let drvs = self.resolved()?;
        let closure = self.with_progress(|options, progress| {
            Closure::load_with_progress(options, &drvs, progress)
        })?;
        let problems = closure.problems()?;
        if !problems.is_empty() {
            return Err(load_error(drvmeta::Error::Problems { problems }));
        }
        Ok(closure)
    }

    /// Load the closures of the arguments and rewrite or strip them in one
    /// walk ([`drvmeta::rewrite::load_and_rewrite`]), refusing a closure
    /// with problems as [`Self::load`] does.
    pub fn load_and_rewrite(
        &self,
        mode: drvmeta::rewrite::Mode,
        keep_bytes: bool,
    ) -> Result<(Closure, Vec<drvmeta::rewrite::Rewritten>)> {
        let drvs = self.resolved()?;
        self.with_progress(|options, progress| {
            drvmeta::rewrite::load_and_rewrite(options, &drvs, mode, keep_bytes, progress)
        })
    }

    /// Load the closures of the arguments and hash them, reading and
    /// parsing each derivation once, with progress on a terminal.
    pub fn load_and_hash(&self) -> Result<(Closure, Vec<NodeHashes>)> {
        let drvs = self.resolved()?;
        self.with_progress(|options, progress| {
            drvmeta::hashing::load_and_hash(options, &drvs, progress)
        })
    }

    /// [`Self::load_and_hash`], keeping what `finish` makes of each
    /// derivation's hashes instead ([`drvmeta::hashing::load_hash_and`]).
    pub fn load_hash_and<R: Send + Sync>(
        &self,
        finish: &(dyn Fn(&StoreDir, &StorePath, bool, NodeHashes) -> R + Sync),
    ) -> Result<(Closure, Vec<R>)> {
        let drvs = self.resolved()?;
        self.with_progress(|options, progress| {
            drvmeta::hashing::load_hash_and(options, &drvs, progress, finish)
        })
    }

    /// The derivations the arguments name ([`drvmeta::closure::inputs`]),
    /// with a note on stderr for each one handed to Nix or resolved.
    pub fn resolved(&self) -> Result<Vec<String>> {
        resolve_inputs(&self.options()?, &self.drvs)
    }

    /// Run `load` with the load options and progress on a terminal; bad
    /// arguments become usage errors.
    pub fn with_progress<T>(
        &self,
        load: impl FnOnce(&LoadOptions, &mut (dyn FnMut(usize) + Send)) -> drvmeta::Result<T>,
    ) -> Result<T> {
        let options = self.options()?;
        let mut progress = Progress::new();
        let started = std::time::Instant::now();
        let mut read = 0;
        let result = load(&options, &mut |n| {
            read = n;
            progress.update(n);
        });
        progress.finish();
        ui::verbose(&format!(
            "loaded in {:.3} s (at least {read} derivations read)",
            started.elapsed().as_secs_f64()
        ));
        result.map_err(load_error)
    }
}

/// [`drvmeta::closure::inputs::resolve`], with its notes on stderr.
pub fn resolve_inputs(options: &LoadOptions, args: &[String]) -> Result<Vec<String>> {
    let resolution = drvmeta::closure::inputs::resolve(options, args).map_err(load_error)?;
    for note in &resolution.notes {
        ui::note(note);
    }
    Ok(resolution.drvs)
}

/// Bad arguments are usage errors (exit status 2); the problems of a
/// closure are listed on stderr, one per line, before the error.
fn load_error(error: drvmeta::Error) -> anyhow::Error {
    match error {
        drvmeta::Error::BadDrvDir { .. } | drvmeta::Error::BadPath { .. } => {
            anyhow::Error::new(UsageError(error.to_string()))
        }
        drvmeta::Error::Problems { ref problems } => {
            for problem in problems {
                ui::problem(problem);
            }
            anyhow::Error::new(error)
        }
        other => anyhow::Error::new(other),
    }
}

/// "loading derivations: N" on stderr, only when it is a terminal and the
/// walk takes long enough to matter.
struct Progress {
    enabled: bool,
    shown: bool,
    started: std::time::Instant,
}

impl Progress {
    fn new() -> Self {
        Self {
            enabled: io::stderr().is_terminal() && !ui::quiet(),
            shown: false,
            started: std::time::Instant::now(),
        }
    }

    fn update(&mut self, loaded: usize) {
        if self.enabled && self.started.elapsed().as_millis() > 200 {
            eprint!("\rloading derivations: {loaded}");
            self.shown = true;
        }
    }

    fn finish(&mut self) {
        if self.shown {
            eprint!("\r\x1b[K");
        }
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
            || cause
                .downcast_ref::<serde_json::Error>()
                .and_then(serde_json::Error::io_error_kind)
                == Some(io::ErrorKind::BrokenPipe)
    })
}

/// The error and its causes, each cause only when the message so far does
/// not already say it (library errors embed their source's text).
pub fn message(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
    }
    text
}

fn completions(shell: clap_complete::Shell) -> Result<u8> {
    use clap::CommandFactory as _;
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "drvmeta", &mut io::stdout().lock());
    Ok(EXIT_OK)
}

fn man(dir: Option<&std::path::Path>) -> Result<u8> {
    use anyhow::Context as _;
    use clap::CommandFactory as _;
    let command = Cli::command();
    match dir {
        None => clap_mangen::Man::new(command).render(&mut io::stdout().lock())?,
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("{}: cannot create the directory", dir.display()))?;
            clap_mangen::generate_to(command, dir)
                .with_context(|| format!("{}: cannot write the man pages", dir.display()))?;
        }
    }
    Ok(EXIT_OK)
}

/// Parse the command line, run the command and map the result to an exit
/// status. A closed stdout (`drvmeta … | head`) is success.
/// `return_freed_memory_after` sets how many milliseconds the allocator
/// keeps freed memory before returning it to the system (see `main.rs`).
pub fn main(return_freed_memory_after: fn(i64)) -> ExitCode {
    let cli = Cli::parse();
    ui::init(cli.quiet, cli.verbose);
    // The walks that are timed against Nix keep freed memory for a moment,
    // for reuse (returning it at once and re-faulting it cost show and
    // strip a fifth of their time): show, rewrite, strip and hash 100 ms
    // (4-7 % less CPU than at 10 ms; hash's peak on the bench 55-57 MiB,
    // under its 1.5 x target of 64.6 MiB since its entries are packed;
    // at 300 ms it reaches 66 MiB). sbom 100 ms too (12 % less CPU and
    // wall than at 0 ms on the bench, peak 177 -> 182 MiB). The others
    // return it at once, which keeps their peak lowest.
    return_freed_memory_after(match cli.command {
        Command::Show(_)
        | Command::Rewrite(_)
        | Command::Strip(_)
        | Command::Sbom(_)
        | Command::Hash(_) => 100,
        _ => 0,
    });
    let result = match &cli.command {
        Command::Hash(args) => hash::run(args),
        Command::Show(args) => show::run(args),
        Command::Rewrite(args) => rewrite::run(args, drvmeta::rewrite::Mode::Rewrite),
        Command::Strip(args) => rewrite::run(args, drvmeta::rewrite::Mode::Strip),
        Command::Diff(args) => diff::run(args),
        Command::Hook(args) => provenance::hook(args),
        Command::Record(args) => provenance::record(args),
        Command::Realise(args) => provenance::realise(args),
        Command::Provenance(command) => provenance::provenance(command),
        Command::Sbom(args) => sbom::run(args),
        Command::Completions { shell } => completions(*shell),
        Command::Man { dir } => man(dir.as_deref()),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) if is_broken_pipe(&error) => ExitCode::from(EXIT_OK),
        Err(error) => {
            ui::error(&message(&error));
            if error.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::from(EXIT_PROBLEM)
            }
        }
    }
}
