//! `__meta` in derivations: opt-in detection, lints and stripping
//! (DESIGN.md §2.2), on the `__json` text as the writing Nix left it.
//!
//! A derivation is *opted in* to hash modulo meta (NixOS/nix PR #16285) when it
//! uses structured attributes, `__json.__meta` is a JSON object, and
//! `__json.requiredSystemFeatures` is an array containing `"derivation-meta"`.
//! Stripping such a derivation removes `__meta` and every `"derivation-meta"`
//! feature (and the feature list itself once empty); nothing else changes:
//! the members and elements are cut out of the text, so every other byte
//! (numbers as Nix 2.8 wrote them, `1e+06`, included) stays as written.

use std::fmt;
use std::ops::Range;

use serde_json::{Map, Value};

use super::Derivation;
use super::json_text::{Member, array_elements, decode_string, object_members, splice};
use super::write::{escape, unescape};

/// The environment variable that holds structured attributes.
pub const JSON_KEY: &[u8] = b"__json";
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

/// Cheap check on the raw `__json` whether it can mention meta at all, so
/// that the JSON of most derivations is never scanned.
fn may_mention_meta(raw: &[u8]) -> bool {
    memchr::memmem::find(raw, META_KEY.as_bytes()).is_some()
        || memchr::memmem::find(raw, FEATURE.as_bytes()).is_some()
        // A JSON escape could spell either name.
        || memchr::memmem::find(raw, b"\\u").is_some()
}

/// Where meta lives in a structured-attributes text.
struct Scan {
    text: Vec<u8>,
    members: Vec<Member>,
    meta: Option<usize>,
    features: Option<(usize, Vec<Range<usize>>)>,
}

impl Scan {
    fn of(drv: &Derivation) -> Option<Self> {
        let raw = drv.env_raw(JSON_KEY)?;
        if !may_mention_meta(raw) {
            return None;
        }
        let text = unescape(raw).into_owned();
        let members = object_members(&text).ok()?;
        let key_is =
            |m: &Member, name: &str| decode_string(&text[m.key.clone()]).as_deref() == Some(name);
        // With repeated keys Nix's JSON parser keeps the last.
        let meta = members.iter().rposition(|m| key_is(m, META_KEY));
        let features = members
            .iter()
            .rposition(|m| key_is(m, FEATURES_KEY))
            .map(|i| {
                (
                    i,
                    array_elements(&text, members[i].value.clone()).unwrap_or_default(),
                )
            });
        Some(Self {
            text,
            members,
            meta,
            features,
        })
    }

    fn meta_value(&self) -> Option<&[u8]> {
        self.meta.map(|i| &self.text[self.members[i].value.clone()])
    }

    fn is_feature(&self, element: &Range<usize>) -> bool {
        decode_string(&self.text[element.clone()]).as_deref() == Some(FEATURE)
    }

    fn requires_feature(&self) -> bool {
        self.features
            .as_ref()
            .is_some_and(|(_, elements)| elements.iter().any(|e| self.is_feature(e)))
    }

    fn meta_is_object(&self) -> bool {
        self.meta_value().is_some_and(|v| v.first() == Some(&b'{'))
    }

    fn opt_in(&self) -> bool {
        self.requires_feature() && self.meta_is_object()
    }
}

/// Everything drvmeta needs of a derivation's `__meta`, from one scan of
/// its `__json`.
#[derive(Debug, Clone, Default)]
pub struct Analysis {
    /// Opt-in state, lints and problems.
    pub info: MetaInfo,
    /// The `__meta` object when opted in (and valid JSON).
    pub object: Option<Map<String, Value>>,
    /// The raw (escaped) `__json` with meta stripped, when opted in.
    pub stripped_raw: Option<Vec<u8>>,
}

/// [`inspect`], [`meta_object`] and [`stripped_json_raw`] at once.
#[must_use]
pub fn analyse(drv: &Derivation) -> Analysis {
    let scan = Scan::of(drv);
    let info = inspect_scan(drv, scan.as_ref());
    match scan {
        Some(scan) if scan.opt_in() => Analysis {
            info,
            object: scan
                .meta_value()
                .and_then(|v| serde_json::from_slice(v).ok()),
            stripped_raw: Some(escape(&strip_scan(&scan)).into_owned()),
        },
        _ => Analysis {
            info,
            ..Analysis::default()
        },
    }
}

/// Inspect a derivation's `__meta`: opt-in state, lints and problems.
#[must_use]
pub fn inspect(drv: &Derivation) -> MetaInfo {
    inspect_scan(drv, Scan::of(drv).as_ref())
}

fn inspect_scan(drv: &Derivation, scan: Option<&Scan>) -> MetaInfo {
    let mut info = MetaInfo::default();
    if drv.env_raw(JSON_KEY).is_none() {
        if drv.env_raw(META_KEY.as_bytes()).is_some() {
            info.lints.push(Lint::MetaInPlainEnv);
        }
        return info;
    }
    let Some(scan) = scan else {
        return info;
    };
    let required = scan.requires_feature();
    let is_object = scan.meta_is_object();
    info.opt_in = required && is_object;
    match (scan.meta_value(), required) {
        (Some(_), _) if !is_object => info.lints.push(Lint::MetaNotObject),
        (Some(_), false) => info.lints.push(Lint::MetaNotOptedIn),
        _ => {}
    }
    if required && !is_object {
        info.lints.push(Lint::FeatureWithoutMeta);
    }
    if required && let Some((i, _)) = &scan.features {
        let list: Vec<Value> =
            serde_json::from_slice(&scan.text[scan.members[*i].value.clone()]).unwrap_or_default();
        check_feature_list(&list, &mut info.problems);
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

/// The `__meta` object of an opted-in derivation, `None` otherwise (or when
/// it is not valid JSON).
#[must_use]
pub fn meta_object(drv: &Derivation) -> Option<Map<String, Value>> {
    let scan = Scan::of(drv)?;
    if !scan.opt_in() {
        return None;
    }
    serde_json::from_slice(scan.meta_value()?).ok()
}

/// The `__meta` value's JSON text of an opted-in derivation, as written.
#[must_use]
pub fn meta_text(drv: &Derivation) -> Option<Vec<u8>> {
    let scan = Scan::of(drv)?;
    if !scan.opt_in() {
        return None;
    }
    scan.meta_value().map(<[u8]>::to_vec)
}

/// The structured-attributes text with meta stripped, unescaped (JSON), or
/// `None` when the derivation is not opted in (it is then never stripped:
/// `__meta` is an ordinary attribute).
#[must_use]
pub fn stripped_json(drv: &Derivation) -> Option<Vec<u8>> {
    let scan = Scan::of(drv)?;
    if !scan.opt_in() {
        return None;
    }
    Some(strip_scan(&scan))
}

/// The stripped text of an opted-in derivation's scan.
fn strip_scan(scan: &Scan) -> Vec<u8> {
    let features = scan.features.as_ref().map(|(i, elements)| {
        let value = scan.members[*i].value.clone();
        let local: Vec<Range<usize>> = elements
            .iter()
            .map(|e| e.start - value.start..e.end - value.start)
            .collect();
        let kept: Vec<bool> = elements.iter().map(|e| !scan.is_feature(e)).collect();
        let text = splice(&scan.text[value], &local, |k| kept[k], |_| None);
        (*i, text, kept.iter().any(|&k| k))
    });
    let spans: Vec<Range<usize>> = scan.members.iter().map(Member::span).collect();
    let keep =
        |i: usize| Some(i) != scan.meta && !matches!(&features, Some((f, _, false)) if *f == i);
    let replace = |i: usize| match &features {
        Some((f, value, true)) if *f == i => {
            let member = &scan.members[i];
            let mut out = scan.text[member.key.start..member.value.start].to_vec();
            out.extend_from_slice(value);
            Some(out)
        }
        _ => None,
    };
    splice(&scan.text, &spans, keep, replace)
}

/// [`stripped_json`] escaped for the ATerm (what the `__json` field of the
/// stripped derivation holds, byte for byte).
#[must_use]
pub fn stripped_json_raw(drv: &Derivation) -> Option<Vec<u8>> {
    stripped_json(drv).map(|text| escape(&text).into_owned())
}
#[cfg(test)]
mod tests {
    use super::*;

    fn parse(aterm: &str) -> Derivation {
        Derivation::parse(
            aterm.as_bytes().to_vec(),
            "t",
            &super::super::StoreDir::default(),
        )
        .unwrap()
    }

    fn drv_with_json(json: &str) -> Derivation {
        let escaped = escape(json.as_bytes());
        let escaped = std::str::from_utf8(&escaped).unwrap();
        parse(&format!(
            "Derive([(\"out\",\"\",\"\",\"\")],[],[],\"x86_64-linux\",\"/bin/sh\",[],\
             [(\"__json\",\"{escaped}\"),(\"out\",\"\")])"
        ))
    }

    fn stripped(drv: &Derivation) -> Option<String> {
        stripped_json(drv).map(|b| String::from_utf8(b).unwrap())
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
        assert_eq!(
            stripped(&drv).unwrap(),
            r#"{"requiredSystemFeatures":["big"],"x":1.5}"#
        );

        let only =
            drv_with_json(r#"{"__meta":{"a":1},"requiredSystemFeatures":["derivation-meta"]}"#);
        assert_eq!(stripped(&only).unwrap(), "{}");

        let not_opted = drv_with_json(r#"{"__meta":{"a":1}}"#);
        assert!(stripped(&not_opted).is_none());
    }

    #[test]
    fn plain_env_meta_is_linted() {
        let aterm = "Derive([(\"out\",\"\",\"\",\"\")],[],[],\"s\",\"b\",[],[(\"__meta\",\"{}\"),(\"out\",\"\")])";
        let drv = parse(aterm);
        let info = inspect(&drv);
        assert_eq!(info.lints, vec![Lint::MetaInPlainEnv]);
        assert!(!info.opt_in);
    }

    #[test]
    fn strip_keeps_every_other_byte_as_nix_2_8_wrote_it() {
        // Nix 2.8's float forms, a nested "__meta" key, unicode and escapes.
        let json = r#"{"__meta":{"x":[1e+06]},"a":-0,"b":1.23457e+07,"c":{"__meta":4.94066e-324},"d":"\u00e9\n\"","requiredSystemFeatures":["derivation-meta","kvm"],"z":[]}"#;
        let drv = drv_with_json(json);
        assert!(inspect(&drv).opt_in);
        assert_eq!(
            stripped(&drv).unwrap(),
            r#"{"a":-0,"b":1.23457e+07,"c":{"__meta":4.94066e-324},"d":"\u00e9\n\"","requiredSystemFeatures":["kvm"],"z":[]}"#
        );
        let meta = meta_object(&drv).unwrap();
        assert_eq!(meta["x"][0].as_f64(), Some(1e6));
    }
}
