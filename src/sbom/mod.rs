//! SBOMs from derivation closures, without evaluation (DESIGN.md §4).
//!
//! [`build`] reads every derivation of a closure once and makes a
//! [`Package`] of it: name and version (from `__meta`, else the structured
//! attributes `pname`/`version`, else the derivation name split at the first
//! `-<digit>`), metadata from `__meta` (or a JSON `nixMeta` variable), the
//! fixed-output source it downloads, its outputs and its inputs. The
//! [`cyclonedx`] and [`spdx`] writers render the same model.

pub mod cyclonedx;
pub mod fetchers;
pub mod license;
mod nixpkgs_licenses;
pub mod parties;
pub mod spdx;
pub mod spdx3;
mod spdx_ids;

use std::collections::{BTreeMap, BTreeSet};

use crate::derivation::{Derivation, OutputKind};
use rayon::prelude::*;
use serde_json::{Map, Value};

use crate::closure::{Closure, drv_name};
use crate::derivation::meta;
use crate::error::Result;
use crate::provenance::kernel::KernelProvenance;
use license::License;

/// What a fixed-output derivation downloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedSource {
    /// How the output is hashed: `flat`, `nar`, `text` or `git`.
    pub method: String,
    /// The nixpkgs fetcher function (`fetchurl`, `fetchzip`, `fetchgit`),
    /// when it can be told ([`fetchers::fetcher_function`]).
    pub function: Option<String>,
    /// A git revision (40 hex digits) it fetched.
    pub rev: Option<String>,
    /// A git ref (a branch or tag name) it fetched.
    pub git_ref: Option<String>,
    /// The purl its first recognised URL gives ([`fetchers::purl_from_url`]).
    pub purl: Option<String>,
    /// `sha1`, `sha256`, `sha512`, `md5`, `blake3`.
    pub algorithm: String,
    /// The expected hash, lowercase hex.
    pub hex: String,
    /// `url` and `urls`.
    pub urls: Vec<String>,
}

/// One component: a derivation.
#[derive(Debug, Clone, PartialEq)]
pub struct Package {
    /// The derivation's store path.
    pub drv_path: String,
    /// Its reference in the document: the derivation's store path, or in a
    /// runtime SBOM the output's (one component per shipped output).
    pub bom_ref: String,
    /// Package name.
    pub name: String,
    /// Version, when known.
    pub version: Option<String>,
    /// `meta.description`.
    pub description: Option<String>,
    /// `meta.homepage` (the first, if a list).
    pub homepage: Option<String>,
    /// Licenses, all applying.
    pub licenses: Vec<License>,
    /// `meta.identifiers.cpe`.
    pub cpe: Option<String>,
    /// `meta.identifiers.purl`, else `pkg:nix/<name>@<version>`.
    pub purl: String,
    /// `meta.sourceProvenance` (nixpkgs source types).
    pub source_provenance: Vec<String>,
    /// Output paths (`None`: floating content-addressed, known after the
    /// build): the realised ones when the derivation was realised modulo
    /// meta ([`Realised`]), else those the derivation records.
    pub outputs: Vec<(String, Option<String>)>,
    /// When the derivation was realised modulo meta (`drvmeta realise`):
    /// the classic output paths it records, which were never built.
    pub classic_outputs: Option<Vec<(String, Option<String>)>>,
    /// For fixed-output derivations, the download.
    pub fixed: Option<FixedSource>,
    /// Kernel and builder revisions from `__meta.provenance`.
    pub provenance: KernelProvenance,
    /// Whether the derivation is opted in to hash modulo meta.
    pub opted_in: bool,
    /// The `bom-ref`s this package depends on.
    pub depends_on: Vec<String>,
    /// Who supplies it ([`parties::supplier`]; `None`: NOASSERTION).
    pub supplier: Option<parties::Party>,
    /// Its maintainers (`meta.maintainers`).
    pub authors: Vec<parties::Party>,
    /// In a runtime SBOM: what the Nix database records about each of its
    /// outputs in the runtime closure.
    pub narinfo: Vec<crate::nix_store::PathInfo>,
    /// In a build-time SBOM of built roots: none of its outputs is in the
    /// roots' runtime closure (needed to build only).
    pub build_only: bool,
}

/// A whole SBOM.
#[derive(Debug, Clone)]
pub struct Sbom {
    /// Packages, sorted by drv path.
    pub packages: Vec<Package>,
    /// The roots' drv paths, in the order given.
    pub roots: Vec<String>,
    /// What could not be said (unknown license shapes, non-UTF-8 values, …).
    pub warnings: Vec<String>,
    /// Whether this is a runtime SBOM.
    pub runtime: bool,
    /// The document's creation time ([`timestamp`]).
    pub timestamp: String,
    /// Who wrote the document, besides drvmeta (`sbom --author`).
    pub authors: Vec<parties::Party>,
}

/// Split `name-1.2.3` at the first `-` followed by a digit.
#[must_use]
pub fn split_name(name: &str) -> (String, Option<String>) {
    let bytes = name.as_bytes();
    for (i, window) in bytes.windows(2).enumerate() {
        if window[0] == b'-' && window[1].is_ascii_digit() {
            return (name[..i].to_owned(), Some(name[i + 1..].to_owned()));
        }
    }
    (name.to_owned(), None)
}

/// The structured attributes as values (read for metadata only; never
/// written back), `None` without structured attributes.
fn attrs_of(drv: &Derivation) -> Option<Map<String, Value>> {
    serde_json::from_slice(&drv.structured_attrs()?).ok()
}

fn attr(drv: &Derivation, attrs: Option<&Map<String, Value>>, key: &str) -> Option<String> {
    if let Some(attrs) = attrs {
        return attrs.get(key).and_then(Value::as_str).map(str::to_owned);
    }
    drv.env(key.as_bytes())
        .map(|v| String::from_utf8_lossy(&v).into_owned())
}

/// The metadata object: `__meta` (opted in or not), else `nixMeta` JSON.
fn meta_of(
    drv: &Derivation,
    attrs: Option<&Map<String, Value>>,
    warnings: &mut Vec<String>,
    path: &str,
) -> Option<Map<String, Value>> {
    if let Some(meta) = meta::meta_object(drv) {
        return Some(meta);
    }
    if let Some(Value::Object(meta)) = attrs.and_then(|a| a.get(meta::META_KEY)) {
        return Some(meta.clone());
    }
    let raw = match attrs {
        Some(attrs) => attrs
            .get("nixMeta")
            .and_then(Value::as_str)
            .map(|s| s.as_bytes().to_vec()),
        None => drv.env(b"nixMeta").map(std::borrow::Cow::into_owned),
    }?;
    match serde_json::from_slice::<Value>(&raw) {
        Ok(Value::Object(meta)) => Some(meta),
        _ => {
            warnings.push(format!("{path}: nixMeta is not a JSON object; ignored"));
            None
        }
    }
}

fn text(meta: Option<&Map<String, Value>>, key: &str) -> Option<String> {
    match meta?.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Array(items) => items.iter().find_map(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

fn fixed_source(drv: &Derivation, attrs: Option<&Map<String, Value>>) -> Option<FixedSource> {
    let out = drv.output("out")?;
    if !matches!(out.kind, OutputKind::Fixed(_)) {
        return None;
    }
    let (method, algorithm) = crate::derivation::hash::split_method_algo(out.hash_algo).ok()?;
    let mut urls = Vec::new();
    if let Some(url) = attr(drv, attrs, "url") {
        urls.push(url);
    }
    match attrs {
        Some(attrs) => {
            if let Some(Value::Array(list)) = attrs.get("urls") {
                urls.extend(list.iter().filter_map(Value::as_str).map(str::to_owned));
            }
        }
        None => {
            if let Some(list) = drv.env(b"urls") {
                urls.extend(
                    String::from_utf8_lossy(&list)
                        .split_whitespace()
                        .map(str::to_owned),
                );
            }
        }
    }
    let mut seen = BTreeSet::new();
    urls.retain(|u| !u.is_empty() && seen.insert(u.clone()));
    let rev = attr(drv, attrs, "rev").filter(|r| !r.is_empty());
    let function = fetchers::fetcher_function(
        method.as_str(),
        !urls.is_empty(),
        rev.is_some() && method.as_str() == "nar",
    );
    let (rev, git_ref) = match rev {
        Some(r) if r.len() == 40 && r.bytes().all(|b| b.is_ascii_hexdigit()) => (Some(r), None),
        Some(r) => (None, Some(r)),
        None => (None, None),
    };
    let purl = urls.iter().find_map(|u| fetchers::purl_from_url(u));
    Some(FixedSource {
        function: function.map(str::to_owned),
        rev,
        git_ref,
        purl,
        method: method.as_str().to_owned(),
        algorithm: algorithm.to_owned(),
        hex: out.hash.to_owned(),
        urls,
    })
}

/// The package of derivation `index`, depending on its input derivations
/// (build-time; a runtime SBOM replaces them with the references).
fn package(closure: &Closure, index: usize) -> Result<(Package, Vec<String>)> {
    let node = &closure.nodes()[index];
    let path = closure.render(&node.path);
    let drv = node.derivation()?;
    let mut warnings = Vec::new();
    let attrs = attrs_of(&drv);
    let attrs = attrs.as_ref();
    let meta = meta_of(&drv, attrs, &mut warnings, &path);
    let meta = meta.as_ref();
    let (split, split_version) = split_name(drv_name(&node.path));
    let name = text(meta, "name")
        .filter(|_| text(meta, "version").is_some())
        .or_else(|| attr(&drv, attrs, "pname"))
        .unwrap_or(split);
    let fixed = fixed_source(&drv, attrs);
    let version = text(meta, "version")
        .or_else(|| attr(&drv, attrs, "version"))
        .or(split_version)
        .map(|v| {
            if fixed.is_some() {
                fetchers::clean_version(&v).to_owned()
            } else {
                v
            }
        });
    let identifiers = meta
        .and_then(|m| m.get("identifiers"))
        .and_then(Value::as_object);
    let cpe = identifiers
        .and_then(|i| i.get("cpe"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    // An identity from meta first, then one derived from a download URL,
    // and pkg:nix (not a registered purl type) only as the fallback.
    let purl = identifiers
        .and_then(|i| i.get("purl"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| fixed.as_ref().and_then(|f| f.purl.clone()))
        .unwrap_or_else(|| purl_of(&name, version.as_deref()));
    let licenses = meta
        .and_then(|m| m.get("license"))
        .map(|l| {
            let mut found = Vec::new();
            let result = license::licenses(l, &mut found);
            warnings.extend(found.into_iter().map(|w| format!("{path}: {w}")));
            result
        })
        .unwrap_or_default();
    let source_provenance = match meta.and_then(|m| m.get("sourceProvenance")) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|i| {
                i.as_str()
                    .or_else(|| i.get("shortName").and_then(Value::as_str))
            })
            .map(str::to_owned)
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    };
    if drv
        .environment()
        .any(|(_, v)| std::str::from_utf8(v.as_ref()).is_err())
    {
        warnings.push(format!(
            "{path}: environment values that are not UTF-8 are shown lossily"
        ));
    }
    let outputs = crate::hashing::recorded_outputs(&drv)
        .into_iter()
        .map(|(name, p)| (name, p.map(|p| closure.render(&p))))
        .collect();
    let mut depends_on: Vec<String> = node
        .inputs
        .iter()
        .map(|&i| closure.render(&closure.nodes()[i].path))
        .collect();
    depends_on.sort();
    depends_on.dedup();
    let package = Package {
        bom_ref: path.clone(),
        drv_path: path,
        name,
        version,
        description: text(meta, "description"),
        homepage: text(meta, "homepage"),
        licenses,
        cpe,
        purl,
        source_provenance,
        outputs,
        classic_outputs: None,
        fixed,
        provenance: meta.map(KernelProvenance::from_meta).unwrap_or_default(),
        opted_in: meta::inspect(&drv).opt_in,
        depends_on,
        supplier: parties::supplier(meta, text(meta, "homepage").as_deref()),
        authors: parties::maintainers(meta),
        narinfo: Vec::new(),
        build_only: false,
    };
    Ok((package, warnings))
}

impl Sbom {
    /// Give `supplier` to every component whose meta names none, and
    /// `authors` to the document; returns how many components still have
    /// no supplier (written as NOASSERTION).
    pub fn with_parties(
        &mut self,
        supplier: Option<&parties::Party>,
        authors: &[parties::Party],
    ) -> usize {
        self.authors = authors.to_vec();
        let mut missing = 0;
        for package in &mut self.packages {
            if package.supplier.is_none() {
                package.supplier = supplier.cloned();
            }
            missing += usize::from(package.supplier.is_none());
        }
        missing
    }

    /// Hash every shipped output's NAR with SHA-512 as well (BSI
    /// TR-03183-2 asks for a SHA-512 of each deployable component; Nix
    /// records SHA-256 only), on all cores, checking on the way that its
    /// SHA-256 is the one the Nix database records. Returns the bytes
    /// hashed. A runtime SBOM only (elsewhere there is nothing shipped).
    ///
    /// # Errors
    /// When an output cannot be read, or its contents no longer match the
    /// Nix database (a modified store path).
    pub fn hash_nars_sha512(&mut self) -> Result<u64> {
        let infos: Vec<&mut crate::nix_store::PathInfo> = self
            .packages
            .iter_mut()
            .flat_map(|p| p.narinfo.iter_mut())
            .collect();
        let sizes: Vec<u64> = infos
            .into_par_iter()
            .map(|info| -> Result<u64> {
                let path = std::path::Path::new(&info.path);
                let (sha256, sha512, size) = crate::provenance::nar::nar_digests(path, true)?;
                if info.nar_sha256() != Some(sha256) {
                    return Err(crate::error::Error::Output {
                        file: path.to_owned(),
                        message: format!(
                            "its NAR hashes to sha256:{} but the Nix database records {}: the \
                             store path was modified (nix-store --verify --check-contents)",
                            crate::derivation::nixbase32::encode(&sha256),
                            info.nar_hash
                        ),
                    });
                }
                info.nar_sha512 = sha512.map(|d| crate::derivation::store_path::hex(&d));
                Ok(size)
            })
            .collect::<Result<_>>()?;
        Ok(sizes.iter().sum())
    }
}

impl Package {
    /// The derivation's name (its store path's, without hash and `.drv`).
    #[must_use]
    pub fn derivation_name(&self) -> &str {
        let base = self.drv_path.rsplit('/').next().unwrap_or(&self.drv_path);
        let name = base.split_once('-').map_or(base, |(_, name)| name);
        name.strip_suffix(".drv").unwrap_or(name)
    }
}

/// `pkg:nix/<name>@<version>` with the name and version percent-encoded.
#[must_use]
pub fn purl_of(name: &str, version: Option<&str>) -> String {
    let encode = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'_' | b'~' | b'+' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    match version {
        Some(v) => format!("pkg:nix/{}@{}", encode(name), encode(v)),
        None => format!("pkg:nix/{}", encode(name)),
    }
}

/// Which derivations of a closure were realised modulo meta (`drvmeta
/// realise`, or a derivation-meta Nix): those whose meta-free outputs
/// differ from the classic ones they record, and are all valid in the
/// store while a classic one is not there. By closure node: the realised
/// outputs. Nothing is looked for when the roots' classic outputs exist
/// or nothing is opted in (stripping a large closure costs about as much
/// as hashing it).
#[derive(Debug, Clone, Default)]
pub struct Realised {
    outputs: Vec<Option<RenderedOutputs>>,
}

/// Output names and rendered store paths (`None`: unknown before building).
type RenderedOutputs = Vec<(String, Option<String>)>;

impl Realised {
    /// Nothing realised modulo meta (a closure read without a Nix store).
    #[must_use]
    pub fn none() -> Self {
        Self::default()
    }

    /// Ask the Nix store which meta-free outputs of `closure` exist.
    ///
    /// # Errors
    /// Stripping errors, or when `nix-store` fails.
    pub fn query(closure: &Closure) -> Result<Self> {
        let nodes = closure.nodes();
        let mut outputs = vec![None; nodes.len()];
        let on_disk = |path: &str| std::fs::symlink_metadata(path).is_ok();
        let rendered = |set: &crate::derivation::OutputPaths| -> RenderedOutputs {
            set.iter()
                .map(|(n, p)| (n.clone(), p.as_ref().map(|p| closure.render(p))))
                .collect()
        };
        let all_on_disk =
            |set: &RenderedOutputs| set.iter().all(|(_, p)| p.as_deref().is_some_and(on_disk));
        // Cheap answers first (stripping a large closure is not): roots
        // built classically, or nothing opted in, leave nothing to find.
        let mut roots_built = true;
        for &root in closure.roots() {
            let drv = nodes[root].derivation()?;
            roots_built &= all_on_disk(&rendered(&crate::hashing::recorded_outputs(&drv)));
        }
        if roots_built {
            return Ok(Self { outputs });
        }
        // Stop at the first opted-in derivation.
        let mut opted_in = false;
        for node in nodes {
            if meta::inspect(&*node.derivation()?).opt_in {
                opted_in = true;
                break;
            }
        }
        if !opted_in {
            return Ok(Self { outputs });
        }
        let stripped =
            crate::rewrite::rewrite_closure(closure, crate::rewrite::Mode::Strip, false)?;
        // Candidates by what is on disk; the store's database confirms.
        let mut candidates = Vec::new();
        for (index, node) in nodes.iter().enumerate() {
            let classic = rendered(&crate::hashing::recorded_outputs(&*node.derivation()?));
            let meta_free = rendered(&stripped[index].outputs);
            if meta_free != classic && all_on_disk(&meta_free) && !all_on_disk(&classic) {
                candidates.push((index, meta_free));
            }
        }
        if candidates.is_empty() {
            return Ok(Self { outputs });
        }
        let paths: Vec<String> = candidates
            .iter()
            .flat_map(|(_, set)| set.iter().filter_map(|(_, p)| p.clone()))
            .collect();
        let invalid: BTreeSet<String> = crate::nix_store::invalid_paths(&paths)?
            .into_iter()
            .collect();
        for (index, meta_free) in candidates {
            if meta_free
                .iter()
                .all(|(_, p)| p.as_ref().is_some_and(|p| !invalid.contains(p)))
            {
                outputs[index] = Some(meta_free);
            }
        }
        Ok(Self { outputs })
    }

    /// The realised outputs of closure node `index`, if it was realised
    /// modulo meta.
    #[must_use]
    pub fn of(&self, index: usize) -> Option<&[(String, Option<String>)]> {
        self.outputs.get(index)?.as_deref()
    }

    /// How many derivations were realised modulo meta.
    #[must_use]
    pub fn count(&self) -> usize {
        self.outputs.iter().filter(|o| o.is_some()).count()
    }
}

/// Build the SBOM of `closure`. With `runtime` (the store paths the
/// roots' outputs reference, transitively, and the edges between them),
/// only derivations with an output among those paths are included and
/// dependencies follow the references; otherwise the whole build-time
/// closure is, with dependencies following the input derivations.
///
/// # Errors
/// A derivation that cannot be read again.
pub fn build(
    closure: &Closure,
    runtime: Option<&RuntimeGraph>,
    realised: &Realised,
    shipped: Option<&BTreeSet<String>>,
) -> Result<Sbom> {
    let nodes = closure.nodes();
    // Every derivation is read once, in parallel.
    let results: Vec<Result<(Package, Vec<String>)>> = (0..nodes.len())
        .into_par_iter()
        .map(|i| package(closure, i))
        .collect();
    let mut built = Vec::with_capacity(results.len());
    for (index, result) in results.into_iter().enumerate() {
        let (mut package, warnings) = result?;
        if let Some(outputs) = realised.of(index) {
            package.classic_outputs =
                Some(std::mem::replace(&mut package.outputs, outputs.to_vec()));
        }
        built.push((package, warnings));
    }
    let mut roots: Vec<String> = closure
        .roots()
        .iter()
        .map(|&r| closure.render(&nodes[r].path))
        .collect();
    if let (None, Some(shipped)) = (runtime, shipped) {
        // A build-time SBOM of built roots: what is not shipped is needed
        // to build only.
        for (package, _) in &mut built {
            package.build_only = !package
                .outputs
                .iter()
                .chain(package.classic_outputs.iter().flatten())
                .any(|(_, path)| path.as_ref().is_some_and(|p| shipped.contains(p)));
        }
    }
    if let Some(graph) = runtime {
        // One component per output of the runtime closure, tied to its
        // derivation (nix:drv_path); dependencies follow the references
        // between the outputs.
        let mut shipped: Vec<(Package, Vec<String>)> = Vec::new();
        for (package, warnings) in &built {
            for (output, path) in &package.outputs {
                let Some(path) = path.as_ref().filter(|p| graph.paths.contains(*p)) else {
                    continue;
                };
                let mut one = package.clone();
                one.bom_ref = path.clone();
                if output != "out" {
                    one.name = format!("{}-{output}", package.name);
                }
                one.outputs = vec![(output.clone(), Some(path.clone()))];
                one.narinfo = graph.info.get(path).cloned().into_iter().collect();
                shipped.push((one, warnings.clone()));
            }
        }
        let components: BTreeSet<&str> = shipped.iter().map(|(p, _)| p.bom_ref.as_str()).collect();
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (referrer, reference) in &graph.edges {
            if referrer != reference
                && components.contains(referrer.as_str())
                && components.contains(reference.as_str())
            {
                edges
                    .entry(referrer.clone())
                    .or_default()
                    .insert(reference.clone());
            }
        }
        for (package, _) in &mut shipped {
            package.depends_on = edges
                .remove(&package.bom_ref)
                .map(|s| s.into_iter().collect())
                .unwrap_or_default();
        }
        // The roots are their shipped outputs.
        roots = roots
            .iter()
            .flat_map(|root| {
                shipped
                    .iter()
                    .filter(move |(p, _)| &p.drv_path == root)
                    .map(|(p, _)| p.bom_ref.clone())
            })
            .collect();
        built = shipped;
    }
    let mut packages = Vec::with_capacity(built.len());
    let mut warnings = Vec::new();
    let mut seen_warnings = BTreeSet::new();
    for (package, found) in built {
        packages.push(package);
        // A derivation shipping several outputs warned once.
        warnings.extend(
            found
                .into_iter()
                .filter(|w| seen_warnings.insert(w.clone())),
        );
    }
    // A source is named apart from the package built from it.
    let built_names: BTreeSet<String> = packages
        .iter()
        .filter(|p| p.fixed.is_none())
        .map(|p| p.name.clone())
        .collect();
    for package in &mut packages {
        if package.fixed.is_some() && built_names.contains(&package.name) {
            package.name.push_str("-source");
        }
    }
    packages.sort_by(|a, b| a.bom_ref.cmp(&b.bom_ref));
    let mut seen = BTreeSet::new();
    roots.retain(|r| seen.insert(r.clone()));
    Ok(Sbom {
        packages,
        roots,
        warnings,
        runtime: runtime.is_some(),
        timestamp: timestamp()?,
        authors: Vec::new(),
    })
}

/// The runtime closure of some outputs: its paths and its reference edges
/// (`(referrer, reference)`).
#[derive(Debug, Clone, Default)]
pub struct RuntimeGraph {
    /// Every path of the closure.
    pub paths: BTreeSet<String>,
    /// Who references whom.
    pub edges: Vec<(String, String)>,
    /// What the Nix database records about each path (narinfo).
    pub info: BTreeMap<String, crate::nix_store::PathInfo>,
}

impl RuntimeGraph {
    /// The runtime closure of `closure`'s roots' outputs — the realised ones
    /// for roots realised modulo meta — from `nix-store --query --graph`.
    ///
    /// # Errors
    /// [`Error::Store`](crate::error::Error::Store) when a root's output is not valid (it must be
    /// built) or `nix-store` fails.
    pub fn of_roots(closure: &Closure, realised: &Realised) -> Result<Self> {
        match Self::of_built_roots(closure, realised)? {
            Ok(graph) => Ok(graph),
            Err(missing) => Err(crate::error::Error::Store(format!(
                "--runtime needs the roots built: {missing} is not valid in the Nix store\nhint: \
                 nix-store --realise the roots, or drvmeta realise them, first"
            ))),
        }
    }

    /// [`Self::of_roots`], or the first root output that is not built.
    ///
    /// # Errors
    /// When `nix-store` or `nix` fails.
    pub fn of_built_roots(
        closure: &Closure,
        realised: &Realised,
    ) -> Result<std::result::Result<Self, String>> {
        let mut outputs = Vec::new();
        for &root in closure.roots() {
            if let Some(realised) = realised.of(root) {
                outputs.extend(realised.iter().filter_map(|(_, p)| p.clone()));
                continue;
            }
            let node = &closure.nodes()[root];
            let recorded = crate::hashing::recorded_outputs(&*node.derivation()?);
            if recorded.iter().all(|(_, p)| p.is_some()) {
                outputs.extend(
                    recorded
                        .into_iter()
                        .filter_map(|(_, p)| p)
                        .map(|p| closure.render(&p)),
                );
            } else {
                // Floating outputs are known once built, and Nix says so
                // only for a derivation in its store.
                let drv = closure.render(&node.path);
                match crate::nix_store::outputs_of(&drv) {
                    Ok(known) => outputs.extend(known),
                    Err(_) => return Ok(Err(format!("the outputs of {drv}"))),
                }
            }
        }
        let invalid: BTreeSet<String> = crate::nix_store::invalid_paths(&outputs)?
            .into_iter()
            .collect();
        if let Some(missing) = outputs.iter().find(|o| invalid.contains(*o)) {
            return Ok(Err(missing.clone()));
        }
        let dot = crate::nix_store::graph(&outputs)?;
        let mut graph = Self::from_dot(&dot, closure.store_dir().as_str());
        graph.paths.extend(outputs);
        let paths: Vec<String> = graph.paths.iter().cloned().collect();
        graph.info = crate::nix_store::path_infos(&paths)?
            .into_iter()
            .map(|info| (info.path.clone(), info))
            .collect();
        Ok(Ok(graph))
    }

    /// Parse `nix-store --query --graph` output (edges go from a reference
    /// to its referrer).
    #[must_use]
    pub fn from_dot(dot: &str, store_dir: &str) -> Self {
        let mut graph = Self::default();
        let full = |base: &str| format!("{store_dir}/{base}");
        for line in dot.lines() {
            let quoted: Vec<&str> = line.split('"').collect();
            if line.contains(" -> ") && quoted.len() >= 4 {
                let (reference, referrer) = (full(quoted[1]), full(quoted[3]));
                graph.paths.insert(reference.clone());
                graph.paths.insert(referrer.clone());
                graph.edges.push((referrer, reference));
            } else if line.contains("[label") && quoted.len() >= 2 {
                graph.paths.insert(full(quoted[1]));
            }
        }
        graph
    }
}

/// A stable `urn:uuid:` for a set of roots (SHA-256 based, version 8).
#[must_use]
pub fn serial_number(roots: &[String], runtime: bool) -> String {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    hasher.update(if runtime {
        b"drvmeta-sbom-runtime\n".as_slice()
    } else {
        b"drvmeta-sbom\n".as_slice()
    });
    for root in roots {
        hasher.update(root.as_bytes());
        hasher.update(b"\n");
    }
    let bytes: [u8; 16] = hasher.finalize()[..16].try_into().expect("16 bytes");
    crate::provenance::record::uuid(bytes, 8)
}

/// The document's timestamp: `SOURCE_DATE_EPOCH` when set, else now; RFC
/// 3339 UTC without fraction.
///
/// # Errors
/// `SOURCE_DATE_EPOCH` set to anything but a number of seconds (as
/// reproducible-build tools refuse it, rather than silently using now).
pub fn timestamp() -> Result<String> {
    let epoch = match std::env::var_os("SOURCE_DATE_EPOCH") {
        None => None,
        Some(value) => {
            let text = value.to_string_lossy();
            let seconds = text
                .parse::<u64>()
                .ok()
                .filter(|_| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| crate::error::Error::SourceDateEpoch {
                    value: text.clone().into_owned(),
                })?;
            Some(seconds)
        }
    };
    let time = epoch.map_or_else(std::time::SystemTime::now, |s| {
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(s)
    });
    Ok(humantime::format_rfc3339_seconds(time).to_string())
}
