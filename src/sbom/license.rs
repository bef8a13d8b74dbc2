//! Licenses from `meta.license`, normalised to SPDX ids where possible.
//!
//! nixpkgs writes a license as an SPDX id or short name (`"mit"`), as a
//! license attribute set (`{ spdxId; shortName; fullName; free; … }`), or as
//! a list of either (the package is covered by all of them). Known ones
//! become SPDX ids; the others keep their name.

use serde_json::Value;

use super::nixpkgs_licenses::LICENSES;
use super::spdx_ids::IDS;

/// One license.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum License {
    /// An SPDX license id.
    Id(String),
    /// A license with no SPDX id (e.g. `unfree`, a vendor EULA).
    Named(String),
}

/// Whether `id` is on the SPDX license list.
#[must_use]
pub fn is_spdx_id(id: &str) -> bool {
    IDS.binary_search(&id).is_ok()
}

fn from_name(name: &str) -> License {
    if is_spdx_id(name) {
        return License::Id(name.to_owned());
    }
    match LICENSES.binary_search_by(|(short, _, _)| short.as_bytes().cmp(name.as_bytes())) {
        // nixpkgs' spdxId, when the SPDX list drvmeta knows has it (an id
        // newer than that list would make the document invalid).
        Ok(at) if is_spdx_id(LICENSES[at].1) => License::Id(LICENSES[at].1.to_owned()),
        Ok(at) => License::Named(LICENSES[at].2.to_owned()),
        Err(_) => License::Named(name.to_owned()),
    }
}

/// The licenses `value` (a `meta.license`) names; what cannot be read is
/// reported in `warnings` and left out.
pub fn licenses(value: &Value, warnings: &mut Vec<String>) -> Vec<License> {
    let mut out = Vec::new();
    collect(value, warnings, &mut out);
    out.sort();
    out.dedup();
    out
}

fn collect(value: &Value, warnings: &mut Vec<String>, out: &mut Vec<License>) {
    match value {
        Value::String(name) if !name.trim().is_empty() => out.push(from_name(name.trim())),
        Value::Array(items) => items.iter().for_each(|item| collect(item, warnings, out)),
        Value::Object(object) => {
            let text = |key: &str| {
                object
                    .get(key)
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
            };
            if let Some(id) = text("spdxId").filter(|id| is_spdx_id(id)) {
                out.push(License::Id(id.to_owned()));
            } else if let Some(short) = text("shortName") {
                match from_name(short) {
                    License::Id(id) => out.push(License::Id(id)),
                    License::Named(_) => {
                        out.push(License::Named(text("fullName").unwrap_or(short).to_owned()))
                    }
                }
            } else if let Some(name) = text("fullName")
                .or_else(|| text("name"))
                .or_else(|| text("spdxId"))
            {
                out.push(License::Named(name.to_owned()));
            } else {
                warnings.push(format!("a license of unknown shape was left out: {value}"));
            }
        }
        other => warnings.push(format!("a license of unknown shape was left out: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_nixpkgs_forms() {
        let mut warnings = Vec::new();
        let value = serde_json::json!([
            "mit",
            "Apache-2.0",
            { "spdxId": "BSD-3-Clause", "free": true },
            { "shortName": "CUDA EULA", "spdxId": null, "free": false },
            { "shortName": "gpl3Plus" },
            "unfree",
            42
        ]);
        let got = licenses(&value, &mut warnings);
        assert_eq!(
            got,
            vec![
                License::Id("Apache-2.0".into()),
                License::Id("BSD-3-Clause".into()),
                License::Id("GPL-3.0-or-later".into()),
                License::Id("MIT".into()),
                License::Named("CUDA EULA".into()),
                // nixpkgs' fullName of `unfree`.
                License::Named("Unfree".into()),
            ]
        );
        assert_eq!(warnings.len(), 1, "{warnings:?}");
    }

    #[test]
    fn the_id_list_is_sorted() {
        assert!(IDS.windows(2).all(|w| w[0] < w[1]));
        assert!(is_spdx_id("MIT") && !is_spdx_id("mit"));
    }
}
