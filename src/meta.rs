//! `__meta` in derivations: opt-in detection, lints and stripping (DESIGN.md §2.2).
//!
//! A derivation is *opted in* to hash modulo meta (NixOS/nix PR #16285) when it
//! uses structured attributes, `__json.__meta` is a JSON object, and
//! `__json.requiredSystemFeatures` is an array containing `"derivation-meta"`.
//! Stripping such a derivation removes `__meta` and every `"derivation-meta"`
//! feature (and the feature list itself once empty); nothing else changes.

use std::fmt;

use nix_derivation::{Derivation, StructuredAttrs};
use serde_json::{Map, Value};

/// The system feature that opts a derivation in to hash modulo meta.
pub const FEATURE: &str = "derivation-meta";
/// The structured attribute that holds the metadata.
pub const META_KEY: &str = "__meta";
/// The structured attribute that lists required system features.
pub const FEATURES_KEY: &str = "requiredSystemFeatures";

/// A likely mistake in how a derivation carries `__meta`. Reported as a
/// warning: the derivation is still hashed, just not the way its author
/// probably meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Lint {
    /// `__meta` is a structured attribute but `derivation-meta` is not a
    /// required feature: it is hashed, so every meta change rebuilds.
    MetaNotOptedIn,
    /// `__meta` is a structured attribute but not a JSON object.
    MetaNotObject,
    /// `derivation-meta` is required but there is no `__meta` object.
    FeatureWithoutMeta,
    /// `__meta` is an environment variable of a derivation without
    /// structured attributes: an ordinary variable, hashed as usual.
    MetaInPlainEnv,
}

impl Lint {
    /// A stable, kebab-case identifier of the lint.
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Self::MetaNotOptedIn => "meta-not-opted-in",
            Self::MetaNotObject => "meta-not-object",
            Self::FeatureWithoutMeta => "feature-without-meta",
            Self::MetaInPlainEnv => "meta-in-plain-env",
        }
    }
}

impl fmt::Display for Lint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Self::MetaNotOptedIn => {
                "__meta is set but requiredSystemFeatures lacks \"derivation-meta\": \
                 it is hashed, so every meta change rebuilds"
            }
            Self::MetaNotObject => "__meta is not a JSON object, so the derivation is not opted in",
            Self::FeatureWithoutMeta => {
                "\"derivation-meta\" is required but there is no __meta object"
            }
            Self::MetaInPlainEnv => {
                "__meta is an environment variable of a derivation without structured \
                 attributes: an ordinary variable, hashed as usual"
            }
        };
        write!(f, "{}: {text}", self.code())
    }
}

/// What a derivation says about `__meta`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetaInfo {
    /// Whether the derivation is opted in (all three conditions hold).
    pub opt_in: bool,
    /// Likely mistakes, as warnings.
    pub lints: Vec<Lint>,
    /// Reasons a derivation-meta Nix would reject the derivation.
    pub problems: Vec<String>,
}

/// Cheap check whether structured attributes can mention meta at all, so
/// that the JSON of the vast majority of derivations is never materialised.
fn may_mention_meta(raw: &[u8]) -> bool {
    memchr::memmem::find(raw, META_KEY.as_bytes()).is_some()
        || memchr::memmem::find(raw, FEATURE.as_bytes()).is_some()
        // A JSON escape could spell either name; fall back to a full parse.
        || memchr::memmem::find(raw, b"\\u").is_some()
}

fn structured(drv: &Derivation) -> Option<&StructuredAttrs> {
    drv.structured_attrs()
        .filter(|attrs| may_mention_meta(attrs.raw_json()))
}

fn features(attrs: &StructuredAttrs) -> Option<&Vec<Value>> {
    attrs.get(FEATURES_KEY).and_then(Value::as_array)
}

fn requires_feature(attrs: &StructuredAttrs) -> bool {
    features(attrs).is_some_and(|list| list.iter().any(|f| f.as_str() == Some(FEATURE)))
}

/// Inspect a derivation's `__meta`: opt-in state, lints and problems.
#[must_use]
pub fn inspect(drv: &Derivation) -> MetaInfo {
    let mut info = MetaInfo::default();
    let Some(attrs) = drv.structured_attrs() else {
        if drv.environment().contains_key(META_KEY) {
            info.lints.push(Lint::MetaInPlainEnv);
        }
        return info;
    };
    if !may_mention_meta(attrs.raw_json()) {
        return info;
    }
    let meta = attrs.get(META_KEY);
    let required = requires_feature(attrs);
    let is_object = meta.is_some_and(Value::is_object);
    info.opt_in = required && is_object;
    match (meta, required) {
        (Some(value), _) if !value.is_object() => info.lints.push(Lint::MetaNotObject),
        (Some(_), false) => info.lints.push(Lint::MetaNotOptedIn),
        _ => {}
    }
    if required && !is_object {
        info.lints.push(Lint::FeatureWithoutMeta);
    }
    if required {
        check_feature_list(
            features(attrs).map_or(&[][..], Vec::as_slice),
            &mut info.problems,
        );
    }
    info
}

/// Nix (PR #16285) rejects a derivation-meta derivation whose feature list is
/// not sorted or has duplicates.
fn check_feature_list(list: &[Value], problems: &mut Vec<String>) {
    let names: Vec<Option<&str>> = list.iter().map(Value::as_str).collect();
    if names.iter().any(Option::is_none) {
        problems.push("requiredSystemFeatures contains a value that is not a string".to_owned());
        return;
    }
    let names: Vec<&str> = names.into_iter().flatten().collect();
    if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
        problems.push(format!(
            "requiredSystemFeatures lists {:?} twice; a derivation-meta Nix rejects duplicates",
            pair[0]
        ));
    } else if let Some(pair) = names.windows(2).find(|pair| pair[0] > pair[1]) {
        problems.push(format!(
            "requiredSystemFeatures is not sorted ({:?} before {:?}); a derivation-meta Nix \
             rejects unsorted features",
            pair[0], pair[1]
        ));
    }
}

/// The `__meta` object of an opted-in derivation, `None` otherwise.
#[must_use]
pub fn meta_object(drv: &Derivation) -> Option<&Map<String, Value>> {
    let attrs = structured(drv)?;
    if !requires_feature(attrs) {
        return None;
    }
    attrs.get(META_KEY).and_then(Value::as_object)
}

/// The structured attributes of `drv` with meta stripped, as a JSON object.
///
/// Returns `None` when the derivation is not opted in (it is then never
/// stripped: `__meta` is an ordinary attribute).
#[must_use]
pub fn stripped_attrs_object(drv: &Derivation) -> Option<Map<String, Value>> {
    meta_object(drv)?;
    let attrs = drv.structured_attrs()?;
    let mut object: Map<String, Value> = attrs
        .iter()
        .filter(|(key, _)| *key != META_KEY)
        .map(|(key, value)| (key.to_owned(), value.clone()))
        .collect();
    if let Some(Value::Array(list)) = object.get_mut(FEATURES_KEY) {
        list.retain(|feature| feature.as_str() != Some(FEATURE));
        if list.is_empty() {
            object.remove(FEATURES_KEY);
        }
    }
    Some(object)
}

/// The structured attributes of `drv` with meta stripped.
///
/// Returns `None` when the derivation is not opted in. The result serialises
/// canonically (sorted keys, Nix number formatting) like any structured
/// attributes of `nix-derivation`.
#[must_use]
pub fn stripped_attrs(drv: &Derivation) -> Option<StructuredAttrs> {
    let object = stripped_attrs_object(drv)?;
    let bytes = serde_json::to_vec(&Value::Object(object))
        .expect("serialising a JSON value to memory cannot fail");
    Some(
        StructuredAttrs::from_json_bytes(bytes)
            .expect("a JSON object serialised by serde_json is valid structured attributes"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drv_with_json(json: &str) -> Derivation {
        let escaped = json.replace('\\', "\\\\").replace('"', "\\\"");
        let aterm = format!(
            "Derive([(\"out\",\"\",\"\",\"\")],[],[],\"x86_64-linux\",\"/bin/sh\",[],\
             [(\"__json\",\"{escaped}\"),(\"out\",\"\")])"
        );
        Derivation::from_aterm_bytes(aterm.as_bytes(), "t").unwrap()
    }

    #[test]
    fn opted_in_requires_all_three_conditions() {
        let yes =
            drv_with_json(r#"{"__meta":{"a":1},"requiredSystemFeatures":["derivation-meta"]}"#);
        assert!(inspect(&yes).opt_in);
        assert!(inspect(&yes).lints.is_empty());

        let no_feature = drv_with_json(r#"{"__meta":{"a":1}}"#);
        assert!(!inspect(&no_feature).opt_in);
        assert_eq!(inspect(&no_feature).lints, vec![Lint::MetaNotOptedIn]);

        let not_object =
            drv_with_json(r#"{"__meta":"x","requiredSystemFeatures":["derivation-meta"]}"#);
        let info = inspect(&not_object);
        assert!(!info.opt_in);
        assert_eq!(
            info.lints,
            vec![Lint::MetaNotObject, Lint::FeatureWithoutMeta]
        );

        let no_meta = drv_with_json(r#"{"requiredSystemFeatures":["derivation-meta"]}"#);
        assert_eq!(inspect(&no_meta).lints, vec![Lint::FeatureWithoutMeta]);
        assert!(!inspect(&no_meta).opt_in);
    }

    #[test]
    fn escaped_key_is_still_seen() {
        let drv =
            drv_with_json(r#"{"\u005f_meta":{},"requiredSystemFeatures":["derivation-meta"]}"#);
        assert!(inspect(&drv).opt_in);
    }

    #[test]
    fn unsorted_and_duplicate_features_are_problems() {
        let unsorted =
            drv_with_json(r#"{"__meta":{},"requiredSystemFeatures":["kvm","derivation-meta"]}"#);
        let info = inspect(&unsorted);
        assert!(info.opt_in);
        assert_eq!(info.problems.len(), 1, "{info:?}");
        assert!(info.problems[0].contains("not sorted"));

        let dup = drv_with_json(
            r#"{"__meta":{},"requiredSystemFeatures":["derivation-meta","derivation-meta"]}"#,
        );
        assert!(inspect(&dup).problems[0].contains("twice"));
    }

    #[test]
    fn strip_removes_meta_and_feature_only() {
        let drv = drv_with_json(
            r#"{"__meta":{"a":1},"requiredSystemFeatures":["big","derivation-meta"],"x":1.5}"#,
        );
        let stripped = stripped_attrs(&drv).unwrap();
        assert_eq!(
            stripped.canonical_json(),
            br#"{"requiredSystemFeatures":["big"],"x":1.5}"#
        );

        let only =
            drv_with_json(r#"{"__meta":{"a":1},"requiredSystemFeatures":["derivation-meta"]}"#);
        assert_eq!(stripped_attrs(&only).unwrap().canonical_json(), b"{}");

        let not_opted = drv_with_json(r#"{"__meta":{"a":1}}"#);
        assert!(stripped_attrs(&not_opted).is_none());
    }

    #[test]
    fn plain_env_meta_is_linted() {
        let aterm = "Derive([(\"out\",\"\",\"\",\"\")],[],[],\"s\",\"b\",[],[(\"__meta\",\"{}\"),(\"out\",\"\")])";
        let drv = Derivation::from_aterm_bytes(aterm.as_bytes(), "t").unwrap();
        let info = inspect(&drv);
        assert_eq!(info.lints, vec![Lint::MetaInPlainEnv]);
        assert!(!info.opt_in);
    }
}
