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

/// Length of a store path's hash part.
pub const HASH_LEN: usize = 32;
/// Length of a downstream placeholder after its leading `/`.
pub const PLACEHOLDER_LEN: usize = 52;

/// A 32-character hash part.
pub type HashPart = [u8; HASH_LEN];
/// The 52 characters of a placeholder after its `/`.
pub type PlaceholderBody = [u8; PLACEHOLDER_LEN];

/// Old → new replacements.
#[derive(Debug, Clone, Default)]
pub struct Substitutions {
    /// Hash parts of changed store paths.
    pub hashes: HashMap<HashPart, HashPart>,
    /// Bodies of changed downstream placeholders.
    pub placeholders: HashMap<PlaceholderBody, PlaceholderBody>,
}

fn is_base32(byte: u8) -> bool {
    matches!(byte, b'0'..=b'9' | b'a'..=b'd' | b'f'..=b'n' | b'p'..=b's' | b'v'..=b'z')
}

impl Substitutions {
    /// Whether there is nothing to replace.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty() && self.placeholders.is_empty()
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
        if self.is_empty() {
            return None;
        }
        let mut out: Option<Vec<u8>> = None;
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
            let run = end - start;
            if run >= HASH_LEN {
                self.replace_in_run(bytes, start, end, &mut out);
            }
            start = end;
        }
        out
    }

    fn replace_in_run(&self, bytes: &[u8], start: usize, end: usize, out: &mut Option<Vec<u8>>) {
        let run = end - start;
        if run == PLACEHOLDER_LEN && start > 0 && bytes[start - 1] == b'/' {
            let body: PlaceholderBody = bytes[start..end].try_into().expect("52 bytes");
            if let Some(new) = self.placeholders.get(&body) {
                out.get_or_insert_with(|| bytes.to_vec())[start..end].copy_from_slice(new);
                return;
            }
        }
        let mut at = start;
        while at + HASH_LEN <= end {
            let window: HashPart = bytes[at..at + HASH_LEN].try_into().expect("32 bytes");
            if let Some(new) = self.hashes.get(&window) {
                out.get_or_insert_with(|| bytes.to_vec())[at..at + HASH_LEN].copy_from_slice(new);
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
