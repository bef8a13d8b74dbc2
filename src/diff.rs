//! Why two derivations differ, and whether that rebuilds anything.
//!
//! Like `nix-diff`, input derivations are paired by name and compared
//! recursively. Fields are compared on the *stripped* derivations (the exact
//! meta-free closure, [`crate::rewrite`]), so a meta change shows up once, as
//! a `meta` change, instead of as every output path and embedded path that
//! it moved; `__meta` is compared separately on the derivations as written.
//! The verdict: `identical` (same `.drv` path), `meta-only` (the stripped
//! closures are the same: nothing rebuilds), `same-outputs` (more differs,
//! but a fixed output keeps its path) or `rebuild` (with the outputs that
//! change).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::derivation::{Derivation, StorePath};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::closure::{Closure, drv_name};
use crate::derivation::meta;
use crate::error::{Error, Result};
use crate::rewrite::{Mode, Rewritten, rewrite_closure};

/// The verdict on two derivations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// The same derivation.
    Identical,
    /// Only `__meta` differs (here or in inputs): no output changes.
    MetaOnly,
    /// More than meta differs, but every output keeps its path (a
    /// fixed-output derivation whose inputs changed): nothing that depends
    /// on it rebuilds.
    SameOutputs,
    /// Some output changes: it rebuilds.
    Rebuild,
}

/// Which derivation pair a change is in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pair {
    /// The derivation name.
    pub name: String,
    /// The old derivation's store path.
    pub old: String,
    /// The new derivation's store path.
    pub new: String,
}

/// One difference.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// The derivation pair it is in.
    pub drv: Pair,
    /// What differs: `meta`, `outputs`, `system`, `builder`, `args`, `env`,
    /// `structuredAttrs`, `inputSrcs` or `inputDrvs`.
    pub kind: &'static str,
    /// The environment variable, structured attribute or meta key, or the
    /// input name, where the kind has keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The old value (`null` when added).
    pub old: Value,
    /// The new value (`null` when removed).
    pub new: Value,
}

/// An output whose path changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutputChange {
    /// Output path before (`null` when unknown before building).
    pub old: Option<String>,
    /// Output path after.
    pub new: Option<String>,
}

/// The whole answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiffReport {
    /// The verdict.
    pub verdict: Verdict,
    /// The old derivation.
    pub old: String,
    /// The new derivation.
    pub new: String,
    /// For `rebuild`: the root's outputs whose paths change (modulo meta).
    pub outputs: BTreeMap<String, OutputChange>,
    /// Every difference, the roots' first, inputs after, depth first.
    pub changes: Vec<Change>,
}

/// Compare the first two roots of `closure` (old, then new).
///
/// # Errors
/// Stripping errors (an invalid derivation), or fewer than two roots.
pub fn diff(closure: &Closure) -> Result<DiffReport> {
    if closure.roots().len() != 2 {
        return Err(Error::Rewrite {
            path: String::new(),
            message: "diff compares exactly two derivations".to_owned(),
        });
    }
    let stripped = rewrite_closure(closure, Mode::Strip)?;
    let (old_root, new_root) = (closure.roots()[0], closure.roots()[1]);
    let mut walk = Walk {
        closure,
        stripped: &stripped,
        seen: HashSet::new(),
        changes: Vec::new(),
    };
    walk.pair(old_root, new_root)?;
    let known_and_equal = |a: &Rewritten, b: &Rewritten| {
        a.outputs == b.outputs && a.outputs.iter().all(|(_, path)| path.is_some())
    };
    let verdict = if old_root == new_root {
        Verdict::Identical
    } else if stripped[old_root].path == stripped[new_root].path {
        Verdict::MetaOnly
    } else if known_and_equal(&stripped[old_root], &stripped[new_root]) {
        Verdict::SameOutputs
    } else {
        Verdict::Rebuild
    };
    let mut outputs = BTreeMap::new();
    if verdict == Verdict::Rebuild {
        let old_outputs: BTreeMap<_, _> = stripped[old_root].outputs.iter().cloned().collect();
        let new_outputs: BTreeMap<_, _> = stripped[new_root].outputs.iter().cloned().collect();
        for name in old_outputs
            .keys()
            .chain(new_outputs.keys())
            .collect::<BTreeSet<_>>()
        {
            let render = |o: &BTreeMap<String, Option<StorePath>>| {
                o.get(name).cloned().flatten().map(|p| closure.render(&p))
            };
            let (o, n) = (render(&old_outputs), render(&new_outputs));
            // Unknown (floating) outputs of different derivations change too.
            if o != n || o.is_none() {
                outputs.insert(name.clone(), OutputChange { old: o, new: n });
            }
        }
    }
    Ok(DiffReport {
        verdict,
        old: closure.render(&closure.nodes()[old_root].path),
        new: closure.render(&closure.nodes()[new_root].path),
        outputs,
        changes: walk.changes,
    })
}

struct Walk<'a> {
    closure: &'a Closure,
    stripped: &'a [Rewritten],
    seen: HashSet<(usize, usize)>,
    changes: Vec<Change>,
}

fn env_value(bytes: &[u8]) -> Value {
    Value::String(String::from_utf8_lossy(bytes).into_owned())
}

fn args(drv: &Derivation) -> Value {
    Value::Array(drv.arguments().map(|arg| env_value(&arg)).collect())
}

fn list(items: impl IntoIterator<Item = String>) -> Value {
    Value::Array(items.into_iter().map(Value::String).collect())
}

impl Walk<'_> {
    fn stripped_drv(&self, index: usize) -> Result<Derivation> {
        let node = &self.closure.nodes()[index];
        crate::closure::parse_drv(
            &self.stripped[index].bytes,
            drv_name(&node.path),
            self.closure.store_dir(),
            &node.file,
        )
    }

    fn pair(&mut self, old: usize, new: usize) -> Result<()> {
        if old == new || !self.seen.insert((old, new)) {
            return Ok(());
        }
        let nodes = self.closure.nodes();
        let pair = Pair {
            name: drv_name(&nodes[new].path).to_owned(),
            old: self.closure.render(&nodes[old].path),
            new: self.closure.render(&nodes[new].path),
        };
        let (old_drv, new_drv) = (nodes[old].derivation()?, nodes[new].derivation()?);
        self.keyed(
            &pair,
            "meta",
            &meta::meta_object(&old_drv).unwrap_or_default(),
            &meta::meta_object(&new_drv).unwrap_or_default(),
        );
        if self.stripped[old].path != self.stripped[new].path {
            let (a, b) = (self.stripped_drv(old)?, self.stripped_drv(new)?);
            self.fields(&pair, &a, &b);
        }
        // Inputs paired by name; recurse where the derivations differ.
        let by_name = |index: usize| -> BTreeMap<String, Vec<usize>> {
            let mut map: BTreeMap<String, Vec<usize>> = BTreeMap::new();
            for &input in &nodes[index].inputs {
                map.entry(drv_name(&nodes[input].path).to_owned())
                    .or_default()
                    .push(input);
            }
            map
        };
        let (old_inputs, new_inputs) = (by_name(old), by_name(new));
        for name in old_inputs
            .keys()
            .chain(new_inputs.keys())
            .collect::<BTreeSet<_>>()
        {
            let none = Vec::new();
            let (a, b) = (
                old_inputs.get(name).unwrap_or(&none),
                new_inputs.get(name).unwrap_or(&none),
            );
            let a_only: Vec<usize> = a.iter().copied().filter(|i| !b.contains(i)).collect();
            let b_only: Vec<usize> = b.iter().copied().filter(|i| !a.contains(i)).collect();
            for (&x, &y) in a_only.iter().zip(&b_only) {
                self.pair(x, y)?;
            }
            let render =
                |items: &[usize]| list(items.iter().map(|&i| self.closure.render(&nodes[i].path)));
            let (extra_old, extra_new) = (
                a_only.iter().skip(b_only.len()),
                b_only.iter().skip(a_only.len()),
            );
            let (removed, added): (Vec<usize>, Vec<usize>) =
                (extra_old.copied().collect(), extra_new.copied().collect());
            if !removed.is_empty() || !added.is_empty() {
                self.changes.push(Change {
                    drv: pair.clone(),
                    kind: "inputDrvs",
                    key: Some(name.clone()),
                    old: render(&removed),
                    new: render(&added),
                });
            }
        }
        Ok(())
    }

    fn push(
        &mut self,
        pair: &Pair,
        kind: &'static str,
        key: Option<String>,
        old: Value,
        new: Value,
    ) {
        if old != new {
            self.changes.push(Change {
                drv: pair.clone(),
                kind,
                key,
                old,
                new,
            });
        }
    }

    /// Key-by-key differences of two JSON objects.
    fn keyed(
        &mut self,
        pair: &Pair,
        kind: &'static str,
        old: &Map<String, Value>,
        new: &Map<String, Value>,
    ) {
        for key in old.keys().chain(new.keys()).collect::<BTreeSet<_>>() {
            let (a, b) = (
                old.get(key).cloned().unwrap_or(Value::Null),
                new.get(key).cloned().unwrap_or(Value::Null),
            );
            self.push(pair, kind, Some(key.clone()), a, b);
        }
    }

    /// Differences of everything but meta and the input derivations.
    fn fields(&mut self, pair: &Pair, old: &Derivation, new: &Derivation) {
        let store = self.closure.store_dir();
        let outputs = |drv: &Derivation| -> Value {
            Value::Object(
                crate::hashing::recorded_outputs(drv)
                    .into_iter()
                    .map(|(name, path)| {
                        (
                            name,
                            path.map_or(Value::Null, |p| {
                                Value::String(p.to_absolute_path_in(store))
                            }),
                        )
                    })
                    .collect(),
            )
        };
        self.push(pair, "outputs", None, outputs(old), outputs(new));
        self.push(
            pair,
            "system",
            None,
            env_value(&old.system()),
            env_value(&new.system()),
        );
        self.push(
            pair,
            "builder",
            None,
            env_value(&old.builder()),
            env_value(&new.builder()),
        );
        self.push(pair, "args", None, args(old), args(new));
        let env = |drv: &Derivation| -> BTreeMap<String, Value> {
            drv.environment()
                .filter(|(key, _)| **key != *meta::JSON_KEY)
                .map(|(key, value)| {
                    (
                        String::from_utf8_lossy(&key).into_owned(),
                        env_value(&value),
                    )
                })
                .collect()
        };
        let (old_env, new_env) = (env(old), env(new));
        for key in old_env
            .keys()
            .chain(new_env.keys())
            .collect::<BTreeSet<_>>()
        {
            let value =
                |env: &BTreeMap<String, Value>| env.get(key).cloned().unwrap_or(Value::Null);
            self.push(
                pair,
                "env",
                Some(key.clone()),
                value(&old_env),
                value(&new_env),
            );
        }
        // Structured attributes are compared as values, for display only.
        let attrs = |drv: &Derivation| -> Map<String, Value> {
            drv.structured_attrs()
                .and_then(|json| serde_json::from_slice(&json).ok())
                .unwrap_or_default()
        };
        let (a, b) = (attrs(old), attrs(new));
        self.keyed(pair, "structuredAttrs", &a, &b);
        let srcs = |drv: &Derivation| {
            list(
                drv.input_sources()
                    .iter()
                    .map(|p| p.to_absolute_path_in(store)),
            )
        };
        self.push(pair, "inputSrcs", None, srcs(old), srcs(new));
    }
}

impl DiffReport {
    /// A short human summary: the verdict with its reason, then a tree of
    /// changes by derivation.
    #[must_use]
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let reason = match self.verdict {
            Verdict::Identical => "identical: the same derivation".to_owned(),
            Verdict::MetaOnly => {
                "meta-only: the derivations differ only in __meta; with meta stripped the closures \
                 are the same, so nothing rebuilds"
                    .to_owned()
            }
            Verdict::SameOutputs => {
                "same-outputs: more than meta differs, but every output keeps its \
                 path (fixed output), so nothing that depends on it rebuilds"
                    .to_owned()
            }
            Verdict::Rebuild => {
                let names: Vec<&str> = self.outputs.keys().map(String::as_str).collect();
                format!("rebuild: output(s) {} change", names.join(", "))
            }
        };
        let _ = writeln!(out, "{reason}");
        for (name, change) in &self.outputs {
            let show = |p: &Option<String>| {
                p.clone()
                    .unwrap_or_else(|| "(unknown until built)".to_owned())
            };
            let _ = writeln!(
                out,
                "  {name}: {} -> {}",
                show(&change.old),
                show(&change.new)
            );
        }
        let mut current: Option<&Pair> = None;
        for change in &self.changes {
            if current != Some(&change.drv) {
                let _ = writeln!(
                    out,
                    "{}: {} -> {}",
                    change.drv.name, change.drv.old, change.drv.new
                );
                current = Some(&change.drv);
            }
            let key = change
                .key
                .as_ref()
                .map_or(String::new(), |k| format!(" {k}"));
            let short = |v: &Value| {
                let text = v.to_string();
                if text.chars().count() > 100 {
                    format!("{}…", text.chars().take(100).collect::<String>())
                } else {
                    text
                }
            };
            let _ = writeln!(
                out,
                "  {}{key}: {} -> {}",
                change.kind,
                short(&change.old),
                short(&change.new)
            );
        }
        out
    }
}
