//! Replacing store-path hash parts and downstream placeholders inside bytes.
//!
//! Dependents embed the output paths of their inputs (and, for floating
//! content-addressed or deferred inputs, Nix's downstream placeholders) in
//! their builder, arguments, environment and structured attributes. When
//! post-processing changes an input's paths, every such occurrence must
//! change with it. Hash parts are 32 Nix-base32 characters and placeholders
//! `/` plus 52; neither contains a character that ATerm or JSON escape, so the
//! replacement works on a derivation's ATerm bytes directly and keeps every
//! offset.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use crate::derivation::store_path::DigestHasher;

/// Length of a store path's hash part.
pub const HASH_LEN: usize = 32;
/// Length of a downstream placeholder after its leading `/`.
pub const PLACEHOLDER_LEN: usize = 52;

/// A 32-character hash part.
pub type HashPart = [u8; HASH_LEN];
/// The 52 characters of a placeholder after its `/`.
pub type PlaceholderBody = [u8; PLACEHOLDER_LEN];

type Map<K> = HashMap<K, K, BuildHasherDefault<DigestHasher>>;

/// Old → new replacements.
#[derive(Debug, Clone, Default)]
pub struct Substitutions {
    /// Hash parts of changed store paths.
    pub hashes: Map<HashPart>,
    /// Bodies of changed downstream placeholders.
    pub placeholders: Map<PlaceholderBody>,
}

/// Replacements kept as lists (for a closure's worth of derivations,
/// each holding what its dependents replace): see
/// [`Substitutions::extend`].
#[derive(Debug, Clone, Default)]
pub struct Changes {
    /// Hash parts of changed store paths: old, new.
    pub hashes: Box<[(HashPart, HashPart)]>,
    /// Bodies of changed downstream placeholders: old, new.
    pub placeholders: Box<[(PlaceholderBody, PlaceholderBody)]>,
}

/// Where [`Substitutions::apply_with`] looks for a replacement its own
/// maps do not hold.
pub trait Fallback {
    /// Whether it can answer nothing (then nothing is scanned).
    fn is_empty(&self) -> bool;
    /// The new hash part for `old`, if it changes.
    fn hash(&self, old: &HashPart) -> Option<HashPart>;
    /// The new placeholder body for `old`, if it changes.
    fn placeholder(&self, old: &PlaceholderBody) -> Option<PlaceholderBody>;
}

/// No fallback.
struct NoFallback;

impl Fallback for NoFallback {
    fn is_empty(&self) -> bool {
        true
    }

    fn hash(&self, _old: &HashPart) -> Option<HashPart> {
        None
    }

    fn placeholder(&self, _old: &PlaceholderBody) -> Option<PlaceholderBody> {
        None
    }
}

/// Whether each byte is a Nix base-32 digit.
const BASE32: [bool; 256] = {
    let mut table = [false; 256];
    let digits = crate::derivation::nixbase32::ALPHABET;
    let mut i = 0;
    while i < digits.len() {
        table[digits[i] as usize] = true;
        i += 1;
    }
    table
};

/// Write `new` over the same number of bytes at `at`, in `out` (a copy of
/// `bytes` made at the first replacement).
fn put(out: &mut Option<Vec<u8>>, bytes: &[u8], at: usize, new: &[u8]) {
    out.get_or_insert_with(|| bytes.to_vec())[at..at + new.len()].copy_from_slice(new);
}

fn is_base32(byte: u8) -> bool {
    BASE32[usize::from(byte)]
}

impl Substitutions {
    /// Whether there is nothing to replace.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty() && self.placeholders.is_empty()
    }

    /// Add every replacement of `other`.
    pub fn extend(&mut self, other: &Changes) {
        self.hashes.extend(other.hashes.iter().copied());
        self.placeholders.extend(other.placeholders.iter().copied());
    }

    /// The replacements as a compact list, to keep.
    #[must_use]
    pub fn to_changes(&self) -> Changes {
        Changes {
            hashes: self.hashes.iter().map(|(a, b)| (*a, *b)).collect(),
            placeholders: self.placeholders.iter().map(|(a, b)| (*a, *b)).collect(),
        }
    }

    /// Record that store path hash part `old` becomes `new`.
    pub fn hash(&mut self, old: &str, new: &str) {
        if let (Ok(old), Ok(new)) = (old.as_bytes().try_into(), new.as_bytes().try_into())
            && old != new
        {
            self.hashes.insert(old, new);
        }
    }

    /// Record that placeholder `old` (with its `/`) becomes `new`.
    pub fn placeholder(&mut self, old: &str, new: &str) {
        let body = |p: &str| -> Option<PlaceholderBody> {
            p.strip_prefix('/')?.as_bytes().try_into().ok()
        };
        if let (Some(old), Some(new)) = (body(old), body(new))
            && old != new
        {
            self.placeholders.insert(old, new);
        }
    }

    /// Apply the replacements to `bytes`; `None` when nothing matched.
    ///
    /// Every maximal run of Nix-base32 characters at least 32 long is
    /// checked: a 52-character run preceded by `/` against the placeholders,
    /// and each 32-character window against the hash parts (a hash part
    /// normally stands alone between `/` and `-`).
    #[must_use]
    pub fn apply(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        self.apply_with(bytes, &NoFallback)
    }

    /// [`Self::apply`], asking `fallback` about what these replacements do
    /// not hold.
    #[must_use]
    pub fn apply_with(&self, bytes: &[u8], fallback: &dyn Fallback) -> Option<Vec<u8>> {
        if self.is_empty() && fallback.is_empty() {
            return None;
        }
        let mut out: Option<Vec<u8>> = None;
        // Runs shorter than a hash part are skipped without reading most
        // of their bytes: from `at` (where no run continues from the left),
        // a run of HASH_LEN or more must cover byte `at + HASH_LEN - 1`;
        // if that byte is not base-32, no such run starts before it.
        let mut at = 0;
        while at + HASH_LEN <= bytes.len() {
            let probe = at + HASH_LEN - 1;
            if !is_base32(bytes[probe]) {
                at = probe + 1;
                continue;
            }
            let mut start = probe;
            while start > at && is_base32(bytes[start - 1]) {
                start -= 1;
            }
            let end = bytes[probe..]
                .iter()
                .position(|&b| !is_base32(b))
                .map_or(bytes.len(), |n| probe + n);
            if end - start >= HASH_LEN {
                self.replace_in_run(bytes, start, end, fallback, &mut out);
            }
            at = end;
        }
        out
    }

    fn replace_in_run(
        &self,
        bytes: &[u8],
        start: usize,
        end: usize,
        fallback: &dyn Fallback,
        out: &mut Option<Vec<u8>>,
    ) {
        let run = end - start;
        if run == PLACEHOLDER_LEN && start > 0 && bytes[start - 1] == b'/' {
            let body: PlaceholderBody = bytes[start..end].try_into().expect("52 bytes");
            let new = self
                .placeholders
                .get(&body)
                .copied()
                .or_else(|| fallback.placeholder(&body));
            if let Some(new) = new {
                put(out, bytes, start, &new);
                return;
            }
        }
        let mut at = start;
        while at + HASH_LEN <= end {
            let window: HashPart = bytes[at..at + HASH_LEN].try_into().expect("32 bytes");
            let new = self
                .hashes
                .get(&window)
                .copied()
                .or_else(|| fallback.hash(&window));
            if let Some(new) = new {
                put(out, bytes, at, &new);
                at += HASH_LEN;
            } else {
                at += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "1n77x7sl82amha97zgxj1dl360a8ss69";
    const NEW: &str = "a1p78cma0hw3a5fiqm8lxnjlm02gy3ra";

    #[test]
    fn replaces_hash_parts_in_paths_and_alone() {
        let mut subs = Substitutions::default();
        subs.hash(OLD, NEW);
        let text = format!("x=/nix/store/{OLD}-dep/bin:{OLD} and {OLD}{OLD}");
        let out = String::from_utf8(subs.apply(text.as_bytes()).unwrap()).unwrap();
        assert_eq!(
            out,
            format!("x=/nix/store/{NEW}-dep/bin:{NEW} and {NEW}{NEW}")
        );
    }

    #[test]
    fn leaves_other_runs_alone() {
        let mut subs = Substitutions::default();
        subs.hash(OLD, NEW);
        let text = "/nix/store/0p7bk5ycrphq41j0aazh5bdiwy6fl7y6-x short abc";
        assert!(subs.apply(text.as_bytes()).is_none());
    }

    /// The scan before it skipped short runs: every byte looked at.
    fn apply_reference(subs: &Substitutions, bytes: &[u8]) -> Option<Vec<u8>> {
        let mut out = None;
        let mut start = 0;
        while start < bytes.len() {
            if !is_base32(bytes[start]) {
                start += 1;
                continue;
            }
            let end = bytes[start..]
                .iter()
                .position(|&b| !is_base32(b))
                .map_or(bytes.len(), |n| start + n);
            if end - start >= HASH_LEN {
                subs.replace_in_run(bytes, start, end, &NoFallback, &mut out);
            }
            start = end;
        }
        out
    }

    /// Random texts of base-32 runs of every length around a hash part's,
    /// with the hash parts and placeholders to replace at random places:
    /// the skipping scan replaces exactly what the full scan does.
    #[test]
    fn skipping_short_runs_changes_nothing() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |bound: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            usize::try_from(seed % bound as u64).expect("small")
        };
        let alphabet = crate::derivation::nixbase32::ALPHABET;
        let placeholder = "/0p7bk5ycrphq41j0aazh5bdiwy6fl7y6vm0mz30k998lgyygws94";
        let mut subs = Substitutions::default();
        subs.hash(OLD, NEW);
        subs.placeholder(
            placeholder,
            "/1rz4g4znpzjwh1xymhjpm42vipw92pr73vdgl6xs1hycac8kf2n9",
        );
        let mut replaced = 0;
        for _ in 0..20_000 {
            let mut text = Vec::new();
            for _ in 0..next(12) {
                match next(6) {
                    0 => text.extend_from_slice(OLD.as_bytes()),
                    1 => text.extend_from_slice(placeholder.as_bytes()),
                    2 => text.push(b"/-. \"e"[next(5)]),
                    _ => {
                        for _ in 0..[1, 5, 31, 32, 33, 51, 52, 53, 64][next(9)] {
                            text.push(alphabet[next(32)]);
                        }
                    }
                }
            }
            let fast = subs.apply(&text);
            assert_eq!(
                fast,
                apply_reference(&subs, &text),
                "{}",
                String::from_utf8_lossy(&text)
            );
            replaced += usize::from(fast.is_some());
        }
        assert!(replaced > 1_000, "{replaced}");
    }

    #[test]
    fn replaces_placeholders() {
        let old = "/0p7bk5ycrphq41j0aazh5bdiwy6fl7y6vm0mz30k998lgyygws94";
        let new = "/1rz4g4znpzjwh1xymhjpm42vipw92pr73vdgl6xs1hycac8kf2n9";
        let mut subs = Substitutions::default();
        subs.placeholder(old, new);
        let text = format!("echo {old}/bin > $out");
        let out = String::from_utf8(subs.apply(text.as_bytes()).unwrap()).unwrap();
        assert_eq!(out, format!("echo {new}/bin > $out"));
    }
}
