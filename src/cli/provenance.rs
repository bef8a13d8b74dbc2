//! `drvmeta hook`, `record`, `realise` and `provenance show|verify`.

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::{Context as _, Result, anyhow, bail};
use clap::{Args, Subcommand};
use drvmeta::closure::LoadOptions;
use drvmeta::closure::cache::HashCache;
use drvmeta::derivation::StoreDir;
use drvmeta::provenance::Recording;
use drvmeta::provenance::record::{Run, invocation_id, now_rfc3339};
use drvmeta::provenance::sign::{PublicKey, SecretKey, nix_trusted_public_keys};
use drvmeta::provenance::store::{Location, RecordStore, Sources, Written};
use drvmeta::provenance::verify;
use serde_json::Value;

use super::{EXIT_OK, EXIT_PROBLEM, LoadArgs, UsageError};

/// Where records go, who the builder is, and the key that signs.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The records directory [default: /nix/var/drvmeta/records for root,
    /// else $XDG_STATE_HOME/drvmeta/records].
    #[arg(long, value_name = "DIR", env = "DRVMETA_RECORDS")]
    records: Option<PathBuf>,
    /// Sign records with this Nix secret key file (`nix-store
    /// --generate-binary-cache-key` / `nix key generate-secret` format);
    /// without one, records are written unsigned.
    #[arg(long, value_name = "FILE", env = "DRVMETA_SIGNING_KEY")]
    signing_key: Option<PathBuf>,
    /// `runDetails.builder.id` of unsigned records [default:
    /// urn:drvmeta:builder:<hostname>]; a signed record's is its key's,
    /// urn:drvmeta:nix-key:<key name>.
    #[arg(long, value_name = "URI", env = "DRVMETA_BUILDER_ID")]
    builder_id: Option<String>,
    /// Print what was written as JSON on stdout: {"records": [{"derivation",
    /// "originalDerivation", "output", "narSha256", "file", "new",
    /// "signedBy"}]} (realise adds "outputs").
    #[arg(long)]
    json: bool,
}

/// The JSON entries of records written for `facts`.
fn written_json(
    facts: &drvmeta::provenance::record::Facts,
    written: &[(PathBuf, Written)],
    key: Option<&SecretKey>,
) -> Vec<Value> {
    facts
        .outputs
        .iter()
        .zip(written)
        .map(|(output, (file, w))| {
            serde_json::json!({
                "derivation": facts.derivation,
                "originalDerivation": facts.original_derivation,
                "output": output.path,
                "narSha256": output.nar_sha256,
                "file": file,
                "new": *w == Written::New,
                "signedBy": key.map(SecretKey::name),
            })
        })
        .collect()
}

fn print_json(value: &Value) -> Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

impl StoreArgs {
    fn store(&self) -> RecordStore {
        let store = RecordStore::new(
            self.records
                .clone()
                .unwrap_or_else(RecordStore::default_write_root),
        );
        for warning in store.warnings() {
            super::ui::warning(&warning);
        }
        store
    }

    /// The signing key, read once; says on stderr when there is none.
    fn key(&self) -> Result<Option<SecretKey>> {
        let Some(file) = &self.signing_key else {
            super::ui::note("no --signing-key (DRVMETA_SIGNING_KEY): records are written unsigned");
            return Ok(None);
        };
        if self.builder_id.is_some() {
            bail!(UsageError(
                "--builder-id names unsigned records' builder; a signed record's builder id is \
                 its key's (urn:drvmeta:nix-key:<name>)"
                    .to_owned()
            ));
        }
        Ok(Some(
            SecretKey::read(file).map_err(|e| UsageError(e.to_string()))?,
        ))
    }

    fn run(&self) -> Run {
        let builder_id = self
            .builder_id
            .clone()
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| {
                let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .or_else(|_| std::fs::read_to_string("/etc/hostname"))
                    .map(|h| h.trim().to_owned())
                    .ok()
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| "localhost".to_owned());
                format!("urn:drvmeta:builder:{host}")
            });
        Run {
            builder_id,
            invocation_id: invocation_id(),
            finished_on: now_rfc3339(),
        }
    }
}

/// Where records are read from, and whose signatures count.
#[derive(Debug, Args)]
pub struct TrustArgs {
    /// A record store to read: a directory, file:///…, http://… or
    /// https://… (repeatable; a record in several is read from the first)
    /// [default: DRVMETA_RECORDS (space-separated), else
    /// /nix/var/drvmeta/records whenever it is readable, else
    /// $XDG_STATE_HOME/drvmeta/records].
    #[arg(long, value_name = "STORE")]
    records: Vec<String>,
    /// A trusted public key, NAME:BASE64 as in Nix's trusted-public-keys
    /// (repeatable) [default: DRVMETA_TRUSTED_KEYS (space-separated), else
    /// Nix's own trusted-public-keys].
    #[arg(long = "trusted-key", value_name = "NAME:BASE64")]
    trusted_keys: Vec<String>,
    /// Count unsigned and untrusted records too (the behaviour before
    /// records were signed): anyone who can write the store can then make an
    /// output verify.
    #[arg(long)]
    allow_unsigned: bool,
}

impl TrustArgs {
    fn store(&self) -> Result<Sources> {
        let given: Vec<String> = if self.records.is_empty() {
            std::env::var("DRVMETA_RECORDS")
                .map(|list| list.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default()
        } else {
            self.records.clone()
        };
        if given.is_empty() {
            return Ok(Sources::dir(RecordStore::new(
                RecordStore::default_read_root(),
            )));
        }
        let locations = given
            .iter()
            .map(|text| Location::parse(text).map_err(|e| UsageError(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Sources::new(locations))
    }

    fn trusted(&self) -> Result<Vec<PublicKey>> {
        let parse = |text: &str| {
            PublicKey::parse_list(text).map_err(|e| UsageError(format!("trusted key: {e}")))
        };
        if !self.trusted_keys.is_empty() {
            return Ok(parse(&self.trusted_keys.join(" "))?);
        }
        if let Ok(keys) = std::env::var("DRVMETA_TRUSTED_KEYS") {
            return Ok(parse(&keys)?);
        }
        Ok(nix_trusted_public_keys())
    }
}

fn load_options() -> Result<LoadOptions> {
    let store_dir = std::env::var("NIX_STORE_DIR").unwrap_or_else(|_| "/nix/store".to_owned());
    Ok(LoadOptions {
        store_dir: StoreDir::new(store_dir.clone())
            .map_err(|e| UsageError(format!("NIX_STORE_DIR {store_dir}: {e}")))?,
        drv_dirs: Vec::new(),
    })
}

fn describe(written: &[(PathBuf, Written)]) -> String {
    let new = written.iter().filter(|(_, w)| *w == Written::New).count();
    let dir = written
        .first()
        .and_then(|(p, _)| p.parent().and_then(|d| d.parent()))
        .map_or_else(String::new, |d| d.display().to_string());
    if new == 0 {
        format!("already recorded in {dir}")
    } else {
        format!("recorded {new} output(s) in {dir}")
    }
}

// ------------------------------------------------------------------ hook

#[derive(Debug, Args)]
pub struct HookArgs {
    /// Warn instead of failing when the record cannot be written (Nix then
    /// goes on; provenance for this build is lost).
    #[arg(long)]
    best_effort: bool,
    /// After recording, push the build's records to this record store
    /// (http(s)://…, file:///… or a directory) in a detached background
    /// process, so Nix's build loop never waits on the network; its output
    /// goes to `.push.log` in the records directory.
    #[arg(long, value_name = "STORE", env = "DRVMETA_PUSH_TO")]
    push_to: Option<String>,
    #[command(flatten)]
    store: StoreArgs,
}

/// Nix's `post-build-hook`: `DRV_PATH` and `OUT_PATHS` from the environment.
pub fn hook(args: &HookArgs) -> Result<u8> {
    let result = (|| -> Result<String> {
        use drvmeta::provenance::hook::{HookEnv, HookOptions, Hooked};
        let options = load_options()?;
        let env = HookEnv::from_env(&options)?;
        let key = args.store.key()?;
        let store = args.store.store();
        let run = args.store.run();
        let hooked = drvmeta::provenance::hook::record(
            &options,
            &env,
            HookOptions {
                recording: Recording {
                    store: &store,
                    run: &run,
                    key: key.as_ref(),
                },
                push_to: args.push_to.as_deref(),
            },
        )?;
        let (facts, written, push_log) = match hooked {
            Hooked::Unknowable(why) => return Ok(format!("drvmeta: warning: {why}")),
            Hooked::Recorded {
                facts,
                written,
                push_log,
            } => (facts, written, push_log),
        };
        if args.store.json {
            print_json(&serde_json::json!({
                "records": written_json(&facts, &written, key.as_ref())
            }))?;
        }
        let mut line = format!("drvmeta: {}: {}", env.drv, describe(&written));
        if let (Some(to), Some(log)) = (&args.push_to, push_log) {
            line.push_str(&format!(
                "; pushing to {to} in the background (log: {})",
                log.display()
            ));
        }
        Ok(line)
    })();
    match result {
        Ok(line) => {
            eprintln!("{line}");
            Ok(EXIT_OK)
        }
        Err(error) if args.best_effort => {
            super::ui::warning(&format!(
                "provenance not recorded: {}",
                super::message(&error)
            ));
            Ok(EXIT_OK)
        }
        Err(error) => Err(anyhow!(
            "provenance not recorded: {}\nhint: --best-effort lets Nix go on anyway",
            super::message(&error)
        )),
    }
}

// ---------------------------------------------------------------- record

#[derive(Debug, Args)]
pub struct RecordArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Built derivations (their outputs must be valid in the store).
    #[arg(value_name = "DRV", required = true)]
    drvs: Vec<String>,
}

pub fn record(args: &RecordArgs) -> Result<u8> {
    let options = load_options()?;
    let store = args.store.store();
    let key = args.store.key()?;
    let mut cache = HashCache::default_dir().map(|dir| HashCache::open(&dir, &options.store_dir));
    let mut entries = Vec::new();
    let drvs = super::resolve_inputs(&options, &args.drvs)?;
    // Judged as hash judges them, before anything is recorded.
    let mut problems = Vec::new();
    for arg in &drvs {
        problems.extend(drvmeta::closure::read_one(&options, arg)?.problems()?);
    }
    if !problems.is_empty() {
        for problem in &problems {
            super::ui::problem(problem);
        }
        bail!(
            "{} problem(s) (drvmeta hash reports the same): nothing was recorded",
            problems.len()
        );
    }
    for arg in &drvs {
        let (path, _) = options.resolve_arg(arg)?;
        let drv = path.to_absolute_path_in(&options.store_dir);
        // The file given is the one read: a copy whose bytes do not hash to
        // its store path is refused, never recorded under the real path.
        let (facts, realised) = drvmeta::provenance::facts_of_built(&options, arg, cache.as_mut())?;
        let written =
            drvmeta::provenance::write_records(&store, &facts, &args.store.run(), key.as_ref())?;
        if args.store.json {
            entries.extend(written_json(&facts, &written, key.as_ref()));
        } else if realised {
            println!(
                "{drv}: realised modulo meta as {}: {}",
                facts.derivation,
                describe(&written)
            );
        } else {
            println!("{drv}: {}", describe(&written));
        }
    }
    if args.store.json {
        print_json(&serde_json::json!({ "records": entries }))?;
    }
    Ok(EXIT_OK)
}

// --------------------------------------------------------------- realise

#[derive(Debug, Args)]
pub struct RealiseArgs {
    /// Make GC roots for the outputs here, as `nix-build --out-link` does
    /// (`result`, `result-dev`, `result-2`, …).
    #[arg(short = 'o', long, value_name = "PATH", default_value = "result")]
    out_link: PathBuf,
    /// Make no GC root (the outputs may then be garbage collected).
    #[arg(long, conflicts_with = "out_link")]
    no_out_link: bool,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    load: LoadArgs,
}

/// Strip, import, realise, record every derivation built and every root.
pub fn realise(args: &RealiseArgs) -> Result<u8> {
    let closure = args.load.load()?;
    let load = LoadOptions {
        store_dir: closure.store_dir().clone(),
        drv_dirs: args.load.drv_dirs.clone(),
    };
    let out_link = if args.no_out_link {
        None
    } else {
        Some(absolute(&args.out_link)?)
    };
    let store = args.store.store();
    let key = args.store.key()?;
    let run = args.store.run();
    let realised = drvmeta::provenance::realise::realise(
        &closure,
        &load,
        drvmeta::provenance::realise::RealiseOptions {
            recording: Recording {
                store: &store,
                run: &run,
                key: key.as_ref(),
            },
            out_link: out_link.as_deref(),
        },
    )?;
    let mut entries = Vec::new();
    for recorded in &realised.recorded {
        super::ui::status(&format!(
            "{}: {}",
            recorded.original,
            describe(&recorded.written)
        ));
        entries.extend(written_json(
            &recorded.facts,
            &recorded.written,
            key.as_ref(),
        ));
    }
    if args.store.json {
        return print_json(&serde_json::json!({ "outputs": realised.outputs, "records": entries }))
            .map(|()| EXIT_OK);
    }
    let mut out = io::stdout().lock();
    for path in realised.outputs {
        writeln!(out, "{path}")?;
    }
    Ok(EXIT_OK)
}

/// `path` made absolute against the current directory (Nix roots must be).
fn absolute(path: &std::path::Path) -> Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_owned());
    }
    Ok(std::env::current_dir()
        .context("cannot find the current directory for --out-link")?
        .join(path))
}

// ------------------------------------------------------------ provenance

#[derive(Debug, Subcommand)]
pub enum ProvenanceCommand {
    /// Show the records of outputs or derivations.
    Show(ShowArgs),
    /// Re-hash outputs and check them against their records and kernels
    /// metadata.json digests.
    Verify(VerifyArgs),
    /// Fill the kernels `provenance` block of each variant's metadata.json in
    /// a copy of a built kernel (what is uploaded to the Hub) from the
    /// output's verified record.
    FillMetadata(FillMetadataArgs),
    /// Upload the records of outputs to a shared record store (an
    /// http(s):// server that accepts PUT, or a directory), as `nix copy
    /// --to` uploads store paths (docs/record-stores.md).
    Push(PushArgs),
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Where to: http://…, https://…, file:///… or a directory.
    #[arg(long, value_name = "STORE")]
    to: String,
    /// The local records directory to push from [default: as `provenance
    /// show`].
    #[arg(long, value_name = "DIR")]
    records: Option<PathBuf>,
    /// Print {"to", "pushed": [{"dir", "name", "new"}], "skipped": [...]}.
    #[arg(long)]
    json: bool,
    /// Output paths whose records are pushed [default: every record of the
    /// local store].
    #[arg(value_name = "OUTPUT")]
    paths: Vec<String>,
}

#[derive(Debug, Args)]
pub struct FillMetadataArgs {
    /// Print {"filled": [{"variant", "provenance"}]}.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    trust: TrustArgs,
    /// When the output's records name different provenance (a meta-only
    /// rebuild), take the record of this meta-carrying derivation.
    #[arg(long, value_name = "DRV")]
    derivation: Option<String>,
    /// The built output (a store path) whose records are used.
    #[arg(value_name = "OUTPUT")]
    output: String,
    /// The copy: a directory of the output's variants (`build/<variant>/` or
    /// `<variant>/`), e.g. kernel-builder's build-and-copy directory.
    #[arg(value_name = "COPY")]
    copy: PathBuf,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Print {"records": [{"output", "file", "trust", "keys", "statement"}],
    /// "attestations": [{"output", "narSha256", "keys"}], "problems": […]}.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    trust: TrustArgs,
    /// Output paths, or derivations (all records of their outputs that name
    /// them).
    #[arg(value_name = "PATH", required = true)]
    paths: Vec<String>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Print {"outputs": [{"output", "narSha256", "ok", "matching", "keys",
    /// "ignored", "problems", "kernelFiles", "dirty", "warnings"}]}; a copy
    /// of a kernel gives {"copy", "match": "variant-digest", "ok",
    /// "variants": [{"variant", "variantDigest", "matching", "keys"}],
    /// "ignored", "problems", "warnings"}.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    trust: TrustArgs,
    /// Output paths (or copies named like them), derivations (all their
    /// outputs), or copies of a kernel's variants (a copied `build/`, a Hub
    /// snapshot), found by their variant digests.
    #[arg(value_name = "PATH", required = true)]
    paths: Vec<String>,
}

/// Output paths for a command-line path ([`drvmeta::provenance::outputs_named_by`]).
fn outputs_for(path: &str) -> Result<(Vec<String>, Option<String>)> {
    Ok(drvmeta::provenance::outputs_named_by(
        &load_options()?,
        path,
    )?)
}

fn names_drv(statement: &Value, drv: &str) -> bool {
    let external = &statement["predicate"]["buildDefinition"]["externalParameters"];
    external["derivation"] == drv || external["originalDerivation"] == drv
}

fn revision_line(dependency: &Value) -> String {
    let commit = dependency["digest"]["gitCommit"].as_str().unwrap_or("?");
    let dirty = if dependency["annotations"]["dirty"] == true {
        "dirty"
    } else {
        "clean"
    };
    let version = dependency["annotations"]["version"]
        .as_str()
        .map_or(String::new(), |v| format!("{v} "));
    let source = dependency["uri"]
        .as_str()
        .map_or(String::new(), |u| format!("  {u}"));
    format!("{version}{commit} ({dirty}){source}")
}

fn summary(
    out: &mut String,
    output: &str,
    file: &str,
    trust: &drvmeta::provenance::sign::Trust,
    statement: &Value,
) {
    use std::fmt::Write as _;
    let external = &statement["predicate"]["buildDefinition"]["externalParameters"];
    let run = &statement["predicate"]["runDetails"];
    let base = output.rsplit('/').next().unwrap_or(output);
    let subject = statement["subject"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| {
            s["name"]
                .as_str()
                .is_some_and(|n| n.ends_with(&format!("/{base}")))
        });
    let name = subject
        .and_then(|s| s["annotations"]["output"].as_str())
        .unwrap_or("?");
    let _ = writeln!(out, "{output} ({name})");
    let _ = writeln!(out, "  record          {}", file);
    let _ = writeln!(out, "  trust           {trust}");
    let _ = writeln!(
        out,
        "  derivation      {}",
        external["derivation"].as_str().unwrap_or("?")
    );
    if let Some(original) = external["originalDerivation"].as_str() {
        let _ = writeln!(out, "  with meta from  {original}");
    }
    let deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"].as_array();
    for dependency in deps.into_iter().flatten() {
        match dependency["name"].as_str() {
            Some("kernel") => {
                let _ = writeln!(out, "  kernel          {}", revision_line(dependency));
            }
            Some("kernel-builder") => {
                let _ = writeln!(out, "  kernel-builder  {}", revision_line(dependency));
            }
            _ => {}
        }
    }
    let _ = writeln!(
        out,
        "  built           {} by {}",
        run["metadata"]["finishedOn"].as_str().unwrap_or("?"),
        run["builder"]["id"].as_str().unwrap_or("?")
    );
    if verify::is_dirty(statement) {
        let _ = writeln!(
            out,
            "  warning: built from a dirty tree (uncommitted changes)"
        );
    }
}

pub fn provenance(command: &ProvenanceCommand) -> Result<u8> {
    match command {
        ProvenanceCommand::Show(args) => show(args),
        ProvenanceCommand::Verify(args) => verify_paths(args),
        ProvenanceCommand::FillMetadata(args) => fill_metadata(args),
        ProvenanceCommand::Push(args) => push(args),
    }
}

fn push(args: &PushArgs) -> Result<u8> {
    let to = Location::parse(&args.to).map_err(|e| UsageError(e.to_string()))?;
    let from = RecordStore::new(
        args.records
            .clone()
            .unwrap_or_else(RecordStore::default_read_root),
    );
    for path in &args.paths {
        if !path.starts_with('/') || path.ends_with(".drv") {
            return Err(UsageError(format!(
                "{path}: not an output path (push takes the store paths of built outputs, as \
                 `nix-store --query --outputs DRV` prints them)"
            ))
            .into());
        }
    }
    let outputs = (!args.paths.is_empty()).then_some(args.paths.as_slice());
    let interactive =
        !args.json && !super::ui::quiet() && io::IsTerminal::is_terminal(&io::stderr());
    let report = drvmeta::provenance::push::push(&from, &to, outputs, &mut |done| {
        if interactive && done % 16 == 0 {
            eprint!("\rdrvmeta: pushed {done} record(s)");
        }
    })?;
    if interactive {
        eprint!("\r\x1b[K");
    }
    for skipped in &report.skipped {
        super::ui::warning(&format!("not pushed: {skipped}"));
    }
    let new = report.pushed.iter().filter(|p| p.new).count();
    if args.json {
        print_json(&serde_json::json!({
            "to": to.describe(),
            "pushed": report.pushed,
            "skipped": report.skipped,
        }))?;
    } else {
        println!(
            "pushed {} record(s) to {} ({new} new, {} already there)",
            report.pushed.len(),
            to.describe(),
            report.pushed.len() - new
        );
    }
    if report.pushed.is_empty() && !args.paths.is_empty() {
        super::ui::warning(&format!(
            "{} holds no record of the given outputs",
            from.root().display()
        ));
    }
    Ok(EXIT_OK)
}

fn fill_metadata(args: &FillMetadataArgs) -> Result<u8> {
    let store = args.trust.store()?;
    let trusted = args.trust.trusted()?;
    let filled = drvmeta::provenance::kernels_metadata::fill_metadata(
        &store,
        args.output.trim_end_matches('/'),
        &args.copy,
        &trusted,
        args.trust.allow_unsigned,
        args.derivation.as_deref(),
    )?;
    let mut out = io::stdout().lock();
    if args.json {
        let filled: Vec<Value> = filled
            .iter()
            .map(|f| serde_json::json!({ "variant": f.variant, "provenance": f.provenance }))
            .collect();
        serde_json::to_writer(&mut out, &serde_json::json!({ "filled": filled }))?;
        writeln!(out)?;
    } else {
        for f in &filled {
            writeln!(
                out,
                "{}/metadata.json: provenance filled",
                f.variant.display()
            )?;
        }
    }
    Ok(EXIT_OK)
}

fn show(args: &ShowArgs) -> Result<u8> {
    let store = args.trust.store()?;
    let trusted = args.trust.trusted()?;
    let mut problems = Vec::new();
    let mut records = Vec::new();
    let mut attestations = Vec::new();
    let mut text = String::new();
    for path in &args.paths {
        let (outputs, drv) = outputs_for(path)?;
        let before = records.len();
        for output in outputs {
            // NAR hash -> the trusted keys whose records attest it.
            let mut attested: std::collections::BTreeMap<String, BTreeSet<String>> =
                std::collections::BTreeMap::new();
            for record in verify::records_of(&store, &output, &trusted)? {
                if let (Ok(statement), drvmeta::provenance::sign::Trust::Trusted(keys)) =
                    (&record.statement, &record.trust)
                    && let Some(digest) = verify::subject_digest(statement, &output)
                {
                    attested
                        .entry(digest.to_owned())
                        .or_default()
                        .extend(keys.iter().cloned());
                }
                match &record.statement {
                    Err(problem) => problems.push(format!("{}: {problem}", record.file)),
                    Ok(statement) if drv.as_deref().is_none_or(|d| names_drv(statement, d)) => {
                        summary(&mut text, &output, &record.file, &record.trust, statement);
                        let keys = match &record.trust {
                            drvmeta::provenance::sign::Trust::Trusted(keys)
                            | drvmeta::provenance::sign::Trust::Untrusted(keys) => keys.clone(),
                            drvmeta::provenance::sign::Trust::BadSignature(key) => {
                                vec![key.clone()]
                            }
                            drvmeta::provenance::sign::Trust::Unsigned => Vec::new(),
                        };
                        records.push(serde_json::json!({
                            "output": output, "file": record.file,
                            "trust": record.trust.code(), "keys": keys,
                            "statement": statement,
                        }));
                    }
                    Ok(_) => {}
                }
            }
            for (digest, keys) in attested {
                use std::fmt::Write as _;
                let keys: Vec<String> = keys.into_iter().collect();
                let _ = writeln!(
                    text,
                    "{output}: {} trusted key(s) attest NAR sha256 {digest}: {}",
                    keys.len(),
                    keys.join(", ")
                );
                attestations.push(serde_json::json!({
                    "output": output, "narSha256": digest, "keys": keys,
                }));
            }
        }
        if records.len() == before {
            problems.push(format!(
                "{path}: no provenance record in {}",
                store.describe()
            ));
        }
    }
    let mut out = io::stdout().lock();
    if args.json {
        serde_json::to_writer(
            &mut out,
            &serde_json::json!({
                "records": records,
                "attestations": attestations,
                "problems": problems,
            }),
        )?;
        writeln!(out)?;
    } else {
        out.write_all(text.as_bytes())?;
    }
    for problem in &problems {
        super::ui::problem(problem);
    }
    Ok(if problems.is_empty() {
        EXIT_OK
    } else {
        EXIT_PROBLEM
    })
}

/// A directory that is neither a store path nor a copy named like one (a
/// copied `build/`, a Hub snapshot): verified by its kernel variants.
fn is_kernel_copy(path: &str) -> bool {
    let path = path.trim_end_matches('/');
    let in_store = load_options().is_ok_and(|o| path.starts_with(&format!("{}/", o.store_dir)));
    let base = std::path::Path::new(path)
        .file_name()
        .map(|b| b.to_string_lossy().into_owned())
        .unwrap_or_default();
    !in_store
        && std::path::Path::new(path).is_dir()
        && drvmeta::derivation::StorePath::from_basename(base.as_bytes()).is_err()
}

/// Records not counted, then warnings, on stderr.
fn print_diagnostics(ignored: &[String], warnings: &[String]) {
    for ignored in ignored {
        super::ui::problem(ignored);
    }
    for warning in warnings {
        super::ui::warning(warning);
    }
}

/// `FAILED <what>` on stdout, the problems on stderr.
fn print_failure(out: &mut impl Write, what: &str, problems: &[String]) -> Result<()> {
    writeln!(out, "FAILED {what}")?;
    for problem in problems {
        super::ui::problem(problem);
    }
    Ok(())
}

fn verify_paths(args: &VerifyArgs) -> Result<u8> {
    let store = args.trust.store()?;
    let trusted = args.trust.trusted()?;
    if args.trust.allow_unsigned {
        super::ui::warning(&format!(
            "--allow-unsigned: unsigned and untrusted records count, so anyone who can write {} \
             can make an output verify",
            store.describe()
        ));
    } else if trusted.is_empty() {
        super::ui::warning("no trusted keys: no record can count");
    }
    for warning in store.warnings() {
        super::ui::warning(&warning);
    }
    let mut failed = false;
    let mut reports = Vec::new();
    let mut out = io::stdout().lock();
    for path in &args.paths {
        if is_kernel_copy(path) {
            let result = verify::verify_copy(
                &store,
                std::path::Path::new(path),
                &trusted,
                args.trust.allow_unsigned,
            )?;
            print_diagnostics(&result.ignored, &result.warnings);
            let ok = result.problems.is_empty();
            failed |= !ok;
            if args.json {
                reports.push(serde_json::json!({
                    "copy": path, "match": "variant-digest", "ok": ok,
                    "variants": result.variants, "ignored": result.ignored,
                    "problems": result.problems, "warnings": result.warnings,
                }));
                continue;
            }
            if ok {
                for variant in &result.variants {
                    writeln!(
                        out,
                        "ok {}: kernel variant digest {} matches {} record(s) (matched by variant digest), attested by {} trusted key(s){}",
                        variant.variant.display(),
                        variant.variant_digest.as_deref().unwrap_or("?"),
                        variant.matching.len(),
                        variant.keys.len(),
                        if variant.keys.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", variant.keys.join(", "))
                        }
                    )?;
                }
            } else {
                print_failure(&mut out, path, &result.problems)?;
            }
            continue;
        }
        let (mut outputs, drv) = outputs_for(path)?;
        if outputs.is_empty() {
            bail!(UsageError(format!("{path}: no outputs to verify")));
        }
        if drv.is_some() {
            // A derivation names its classic and its modulo-meta outputs:
            // verify those that were built (after drvmeta realise, the
            // meta-free ones), and say so.
            let (built, never): (Vec<String>, Vec<String>) = outputs
                .into_iter()
                .partition(|o| std::path::Path::new(o).exists());
            if built.is_empty() {
                bail!(
                    "{path}: none of its outputs is built ({}): build or drvmeta realise it first",
                    never.join(", ")
                );
            }
            for output in &never {
                super::ui::note(&format!(
                    "{path}: {output} was never built; verifying the outputs that were"
                ));
            }
            outputs = built;
        }
        for output in outputs {
            let result = verify::verify(&store, &output, &trusted, args.trust.allow_unsigned)?;
            for file in &result.dirty {
                super::ui::warning(&format!(
                    "{file}: built from a dirty tree (uncommitted changes)"
                ));
            }
            print_diagnostics(&result.ignored, &result.warnings);
            let ok = result.problems.is_empty();
            failed |= !ok;
            if args.json {
                reports.push(serde_json::json!({
                    "output": result.output,
                    "narSha256": result.nar_sha256,
                    "ok": ok,
                    "matching": result.matching,
                    "keys": result.keys,
                    "ignored": result.ignored,
                    "problems": result.problems,
                    "kernelFiles": result.kernel_files,
                    "dirty": result.dirty,
                    "warnings": result.warnings,
                }));
                continue;
            }
            if ok {
                let attested = if result.keys.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", attested by {} trusted key(s): {}",
                        result.keys.len(),
                        result.keys.join(", ")
                    )
                };
                writeln!(
                    out,
                    "ok {output}: NAR sha256 {} matches {} record(s){attested}; {} kernel file(s) match metadata.json",
                    result.nar_sha256,
                    result.matching.len(),
                    result.kernel_files
                )?;
            } else {
                print_failure(&mut out, &output, &result.problems)?;
            }
        }
    }
    if args.json {
        serde_json::to_writer(&mut out, &serde_json::json!({ "outputs": reports }))?;
        writeln!(out)?;
    }
    Ok(if failed { EXIT_PROBLEM } else { EXIT_OK })
}
