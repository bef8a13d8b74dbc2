//! Nix's `post-build-hook`: record what Nix just built.
//!
//! Nix runs the hook after each build with `DRV_PATH` (the derivation) and
//! `OUT_PATHS` (its outputs, space-separated) in the environment, and waits
//! for it. [`HookEnv::from_env`] reads and checks those; [`record`] gathers
//! the facts (closure hashes through the persistent cache, so the cost does
//! not grow with the closure), writes the records and, if asked, starts a
//! detached push to a shared store.

use super::Recording;
use super::record::Facts;
use super::store::Written;
use crate::closure::LoadOptions;
use crate::closure::cache::HashCache;
use crate::error::{Error, Result};

/// What Nix tells the hook.
#[derive(Debug, Clone)]
pub struct HookEnv {
    /// `DRV_PATH`: the derivation built.
    pub drv: String,
    /// `OUT_PATHS`: its outputs (empty when Nix gave none).
    pub outs: Vec<String>,
}

fn hook_error(message: String) -> Error {
    Error::Store(message)
}

impl HookEnv {
    /// Read `DRV_PATH` and `OUT_PATHS`, refusing a derivation outside the
    /// store (a copy is never recorded under a store path) and outputs that
    /// are not UTF-8.
    ///
    /// # Errors
    /// When `DRV_PATH` is unset or outside `options`' store, or `OUT_PATHS`
    /// is not UTF-8.
    pub fn from_env(options: &LoadOptions) -> Result<Self> {
        let drv = std::env::var("DRV_PATH")
            .ok()
            .filter(|d| !d.is_empty())
            .ok_or_else(|| {
                hook_error(
                    "DRV_PATH is not set: run drvmeta hook as Nix's post-build-hook".to_owned(),
                )
            })?;
        if !drv.starts_with(&format!("{}/", options.store_dir)) {
            return Err(hook_error(format!(
                "DRV_PATH {drv} is not in the store {}: refusing to record a copy",
                options.store_dir
            )));
        }
        let outs = match std::env::var("OUT_PATHS") {
            Ok(outs) => outs.split_whitespace().map(str::to_owned).collect(),
            Err(std::env::VarError::NotPresent) => Vec::new(),
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(hook_error(
                    "OUT_PATHS is not UTF-8: refusing to guess which outputs were built".to_owned(),
                ));
            }
        };
        Ok(Self { drv, outs })
    }
}

/// Where the hook's records go, how they are signed, and where shared.
#[derive(Debug, Clone, Copy)]
pub struct HookOptions<'a> {
    /// The local record store, the run and the key.
    pub recording: Recording<'a>,
    /// A shared store to push to in the background.
    pub push_to: Option<&'a str>,
}

/// What the hook did.
#[derive(Debug)]
pub enum Hooked {
    /// Records written; the push's log when one was started.
    Recorded {
        /// What the records say.
        facts: Box<Facts>,
        /// The record files.
        written: Vec<(std::path::PathBuf, Written)>,
        /// The background push's log file.
        push_log: Option<std::path::PathBuf>,
    },
    /// Nothing recorded, and why: Nix gave no `OUT_PATHS` and the outputs
    /// are content-addressed (known only after the build), which Nix
    /// cannot tell afterwards either.
    Unknowable(String),
}

/// Record the build Nix reported in `env`.
///
/// # Errors
/// When the facts cannot be gathered (naming the derivation), a record
/// cannot be written, or the push cannot be started.
pub fn record(load: &LoadOptions, env: &HookEnv, options: HookOptions<'_>) -> Result<Hooked> {
    if env.outs.is_empty() {
        // Nix 2.8 with ca-derivations enabled sometimes sets no OUT_PATHS.
        // Input-addressed and fixed outputs are known from the .drv (the
        // facts ask the store); floating content-addressed ones are not.
        let node = crate::closure::read_one(load, &env.drv)?;
        if node.derivation()?.outputs().any(|o| o.path().is_none()) {
            return Ok(Hooked::Unknowable(format!(
                "{}: Nix gave no OUT_PATHS and the outputs are content-addressed (known only \
                 after the build): no provenance record for this build",
                env.drv
            )));
        }
    }
    let mut cache = HashCache::default_dir().map(|dir| HashCache::open(&dir, &load.store_dir));
    let facts = super::facts_with_cache(load, &env.drv, &env.outs, None, cache.as_mut())
        .map_err(|e| hook_error(format!("cannot gather the provenance of {}: {e}", env.drv)))?;
    let written = options.recording.write(&facts)?;
    let push_log = match options.push_to {
        Some(to) => {
            let outputs: Vec<String> = facts.outputs.iter().map(|o| o.path.clone()).collect();
            Some(super::push::push_detached(
                to,
                options.recording.store,
                &outputs,
            )?)
        }
        None => None,
    };
    Ok(Hooked::Recorded {
        facts: Box::new(facts),
        written,
        push_log,
    })
}
