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

/// What stock Nix does with the new derivation when the old one is built
/// (`nix-store --realise NEW`): meta is hashed like everything else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StockNix {
    /// `identical`, `rebuild`, or `same-outputs` when nothing of the new
    /// closure builds although the derivations differ (never `meta-only`).
    pub verdict: Verdict,
    /// The derivations of the new closure stock Nix builds — those with an
    /// output that no derivation of the old closure has (outputs unknown
    /// before building count) — inputs first.
    pub rebuilds: Vec<String>,
}

/// The whole answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiffReport {
    /// The verdict for a derivation-meta Nix or `drvmeta realise` (the
    /// closures compared with meta stripped).
    pub verdict: Verdict,
    /// The verdict for stock Nix.
    pub stock_nix: StockNix,
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
    let stripped = rewrite_closure(closure, Mode::Strip, true)?;
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
        stock_nix: stock_nix(closure, old_root, new_root)?,
        old: closure.render(&closure.nodes()[old_root].path),
        new: closure.render(&closure.nodes()[new_root].path),
        outputs,
        changes: walk.changes,
    })
}

/// Characters of context kept on each side of the changed part of a long
/// string.
const CONTEXT: usize = 24;

/// Two values as shown to people: in full, except that of two long strings
/// only the changed part is shown whole, with some context, the common
/// start and end elided as `…`.
fn focused(old: &Value, new: &Value) -> (String, String) {
    let (Value::String(a), Value::String(b)) = (old, new) else {
        return (old.to_string(), new.to_string());
    };
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().max(b.len()) <= 100 {
        return (old.to_string(), new.to_string());
    }
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let max_suffix = a.len().min(b.len()) - prefix;
    let suffix = a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take(max_suffix)
        .take_while(|(x, y)| x == y)
        .count();
    let show = |s: &[char]| {
        let start = prefix.saturating_sub(CONTEXT);
        let end = (s.len() - suffix + CONTEXT).min(s.len());
        let middle: String = s[start..end].iter().collect();
        let quoted = Value::String(middle).to_string();
        let inner = &quoted[1..quoted.len() - 1];
        format!(
            "\"{}{inner}{}\"",
            if start > 0 { "…" } else { "" },
            if end < s.len() { "…" } else { "" }
        )
    };
    (show(&a), show(&b))
}

/// The derivations reachable from `root` (itself included), inputs first.
fn closure_of(closure: &Closure, root: usize) -> Vec<usize> {
    fn visit(closure: &Closure, index: usize, seen: &mut HashSet<usize>, order: &mut Vec<usize>) {
        if !seen.insert(index) {
            return;
        }
        for &input in &closure.nodes()[index].inputs {
            visit(closure, input, seen, order);
        }
        order.push(index);
    }
    let (mut seen, mut order) = (HashSet::new(), Vec::new());
    visit(closure, root, &mut seen, &mut order);
    order
}

/// [`StockNix`] for `new` when `old` is built.
fn stock_nix(closure: &Closure, old: usize, new: usize) -> Result<StockNix> {
    if old == new {
        return Ok(StockNix {
            verdict: Verdict::Identical,
            rebuilds: Vec::new(),
        });
    }
    let old_closure: HashSet<usize> = closure_of(closure, old).into_iter().collect();
    let mut built: HashSet<StorePath> = HashSet::new();
    for &index in &old_closure {
        let drv = closure.nodes()[index].derivation()?;
        built.extend(drv.outputs().filter_map(|o| o.path().cloned()));
    }
    let mut rebuilds = Vec::new();
    for index in closure_of(closure, new) {
        if old_closure.contains(&index) {
            continue;
        }
        let drv = closure.nodes()[index].derivation()?;
        let builds = drv
            .outputs()
            .any(|o| o.path().is_none_or(|path| !built.contains(path)));
        if builds {
            rebuilds.push(closure.render(&closure.nodes()[index].path));
        }
    }
    let verdict = if rebuilds.is_empty() {
        Verdict::SameOutputs
    } else {
        Verdict::Rebuild
    };
    Ok(StockNix { verdict, rebuilds })
}

/// The name without its version, as Nix's `parseDrvName` splits it: up to
/// the first `-` followed by something other than a letter.
fn pname(name: &str) -> &str {
    let bytes = name.as_bytes();
    (0..bytes.len())
        .find(|&i| bytes[i] == b'-' && bytes.get(i + 1).is_some_and(|b| !b.is_ascii_alphabetic()))
        .map_or(name, |i| &name[..i])
}

/// Pairs (old, new) among inputs left unpaired by name: by [`pname`], one
/// with one; then, if exactly one old and one new input are left, those.
fn pair_renamed(
    leftovers: &[(String, Vec<usize>, Vec<usize>)],
    name_of: impl Fn(usize) -> String,
) -> Vec<(usize, usize)> {
    let mut removed: Vec<usize> = leftovers.iter().flat_map(|(_, r, _)| r.clone()).collect();
    let mut added: Vec<usize> = leftovers.iter().flat_map(|(_, _, a)| a.clone()).collect();
    let mut pairs = Vec::new();
    let mut by_pname: BTreeMap<String, (Vec<usize>, Vec<usize>)> = BTreeMap::new();
    for &i in &removed {
        by_pname
            .entry(pname(&name_of(i)).to_owned())
            .or_default()
            .0
            .push(i);
    }
    for &i in &added {
        by_pname
            .entry(pname(&name_of(i)).to_owned())
            .or_default()
            .1
            .push(i);
    }
    for (old, new) in by_pname.values() {
        if old.len() == 1 && new.len() == 1 {
            pairs.push((old[0], new[0]));
        }
    }
    removed.retain(|i| !pairs.iter().any(|&(x, _)| x == *i));
    added.retain(|i| !pairs.iter().any(|&(_, y)| y == *i));
    if removed.len() == 1 && added.len() == 1 {
        pairs.push((removed[0], added[0]));
    }
    pairs
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
        // Unpaired inputs by name: (name, only old, only new).
        let mut leftovers: Vec<(String, Vec<usize>, Vec<usize>)> = Vec::new();
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
            let removed: Vec<usize> = a_only.iter().skip(b_only.len()).copied().collect();
            let added: Vec<usize> = b_only.iter().skip(a_only.len()).copied().collect();
            if !removed.is_empty() || !added.is_empty() {
                leftovers.push((name.clone(), removed, added));
            }
        }
        // A renamed or re-versioned input is paired with its predecessor
        // (as nix-diff does): the same name without its version, or the
        // only input removed with the only one added.
        let paired = pair_renamed(&leftovers, |i| drv_name(&nodes[i].path).to_owned());
        for &(x, y) in &paired {
            self.pair(x, y)?;
        }
        let is_paired = |i: usize| paired.iter().any(|&(x, y)| x == i || y == i);
        for (name, removed, added) in leftovers {
            let render = |items: &[usize]| {
                list(
                    items
                        .iter()
                        .filter(|&&i| !is_paired(i))
                        .map(|&i| self.closure.render(&nodes[i].path)),
                )
            };
            let (old_value, new_value) = (render(&removed), render(&added));
            if old_value != Value::Array(Vec::new()) || new_value != Value::Array(Vec::new()) {
                self.changes.push(Change {
                    drv: pair.clone(),
                    kind: "inputDrvs",
                    key: Some(name),
                    old: old_value,
                    new: new_value,
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
        let _ = writeln!(
            out,
            "with drvmeta realise or a derivation-meta Nix: {reason}"
        );
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
        let rebuilds = &self.stock_nix.rebuilds;
        let _ = match self.stock_nix.verdict {
            Verdict::Identical => writeln!(out, "with stock Nix: identical"),
            Verdict::Rebuild => writeln!(
                out,
                "with stock Nix (nix-store --realise NEW): rebuild: {} derivation(s) build, meta \
                 is hashed like everything else",
                rebuilds.len()
            ),
            _ => writeln!(
                out,
                "with stock Nix (nix-store --realise NEW): nothing rebuilds"
            ),
        };
        for drv in rebuilds {
            let _ = writeln!(out, "  {drv}");
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
            let (a, b) = focused(&change.old, &change.new);
            let _ = writeln!(out, "  {}{key}: {a} -> {b}", change.kind);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_their_version_as_parse_drv_name_splits_them() {
        assert_eq!(pname("zlib-1.3.1"), "zlib");
        assert_eq!(pname("python3.11-torch-2.5.0"), "python3.11-torch");
        assert_eq!(pname("activation-kernel-1.0.0"), "activation-kernel");
        assert_eq!(pname("hello"), "hello");
        assert_eq!(pname("foo-bar-"), "foo-bar-");
    }

    #[test]
    fn renamed_inputs_pair_by_name_then_alone() {
        let names = [
            "zlib-1.3",
            "zlib-1.3.1",
            "openssl-3.0",
            "libressl-3.9",
            "a-1",
            "b-1",
            "c-1",
        ];
        let name_of = |i: usize| names[i].to_owned();
        // A version bump pairs by name.
        let leftovers = vec![
            ("zlib-1.3".to_owned(), vec![0], vec![]),
            ("zlib-1.3.1".to_owned(), vec![], vec![1]),
        ];
        assert_eq!(pair_renamed(&leftovers, name_of), vec![(0, 1)]);
        // The only input removed and the only one added pair too.
        let leftovers = vec![
            ("openssl-3.0".to_owned(), vec![2], vec![]),
            ("libressl-3.9".to_owned(), vec![], vec![3]),
        ];
        assert_eq!(pair_renamed(&leftovers, name_of), vec![(2, 3)]);
        // Two removed, one added, no common name: nothing is guessed.
        let leftovers = vec![
            ("a-1".to_owned(), vec![4], vec![]),
            ("b-1".to_owned(), vec![5], vec![]),
            ("c-1".to_owned(), vec![], vec![6]),
        ];
        assert!(pair_renamed(&leftovers, name_of).is_empty());
    }

    #[test]
    fn long_strings_show_the_changed_part_whole() {
        let old = format!("{}OLD-COMMIT{}", "x".repeat(200), "y".repeat(200));
        let new = format!("{}NEW-COMMIT-LONGER{}", "x".repeat(200), "y".repeat(200));
        let (a, b) = focused(&Value::String(old), &Value::String(new));
        assert_eq!(
            a,
            format!("\"…{}OLD-COMMIT{}…\"", "x".repeat(24), "y".repeat(24))
        );
        assert_eq!(
            b,
            format!(
                "\"…{}NEW-COMMIT-LONGER{}…\"",
                "x".repeat(24),
                "y".repeat(24)
            )
        );
        // Short values and non-strings: in full.
        let (a, b) = focused(&Value::from("a"), &serde_json::json!({"k": [1, 2]}));
        assert_eq!((a.as_str(), b.as_str()), ("\"a\"", "{\"k\":[1,2]}"));
        let long = "z".repeat(300);
        let (a, _) = focused(&serde_json::json!([long.clone()]), &Value::Null);
        assert!(a.contains(&long), "no cut: {a}");
    }
}
