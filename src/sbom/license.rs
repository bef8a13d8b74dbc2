//! Licenses from `meta.license`, normalised to SPDX ids where possible.
//!
//! nixpkgs writes a license as an SPDX id or short name (`"mit"`), as a
//! license attribute set (`{ spdxId; shortName; fullName; free; … }`), or as
//! a list of either (the package is covered by all of them). Known ones
//! become SPDX ids; the others keep their name.

use serde_json::Value;

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

/// nixpkgs short names (`lib.licenses.<name>`) of common licenses.
const NIXPKGS: &[(&str, &str)] = &[
    ("afl3", "AFL-3.0"),
    ("agpl3Only", "AGPL-3.0-only"),
    ("agpl3Plus", "AGPL-3.0-or-later"),
    ("apsl20", "APSL-2.0"),
    ("artistic1", "Artistic-1.0"),
    ("artistic2", "Artistic-2.0"),
    ("asl20", "Apache-2.0"),
    ("boost", "BSL-1.0"),
    ("bsd0", "0BSD"),
    ("bsd1", "BSD-1-Clause"),
    ("bsd2", "BSD-2-Clause"),
    ("bsd3", "BSD-3-Clause"),
    ("bsdOriginal", "BSD-4-Clause"),
    ("bsl11", "BUSL-1.1"),
    ("cc-by-30", "CC-BY-3.0"),
    ("cc-by-40", "CC-BY-4.0"),
    ("cc-by-sa-40", "CC-BY-SA-4.0"),
    ("cc0", "CC0-1.0"),
    ("cddl", "CDDL-1.0"),
    ("curl", "curl"),
    ("epl10", "EPL-1.0"),
    ("epl20", "EPL-2.0"),
    ("fdl13Only", "GFDL-1.3-only"),
    ("fdl13Plus", "GFDL-1.3-or-later"),
    ("gpl1Only", "GPL-1.0-only"),
    ("gpl1Plus", "GPL-1.0-or-later"),
    ("gpl2", "GPL-2.0-only"),
    ("gpl2Only", "GPL-2.0-only"),
    ("gpl2Plus", "GPL-2.0-or-later"),
    ("gpl3", "GPL-3.0-only"),
    ("gpl3Only", "GPL-3.0-only"),
    ("gpl3Plus", "GPL-3.0-or-later"),
    ("hpnd", "HPND"),
    ("ipl10", "IPL-1.0"),
    ("isc", "ISC"),
    ("lgpl2", "LGPL-2.0-only"),
    ("lgpl21", "LGPL-2.1-only"),
    ("lgpl21Only", "LGPL-2.1-only"),
    ("lgpl21Plus", "LGPL-2.1-or-later"),
    ("lgpl2Plus", "LGPL-2.0-or-later"),
    ("lgpl3", "LGPL-3.0-only"),
    ("lgpl3Only", "LGPL-3.0-only"),
    ("lgpl3Plus", "LGPL-3.0-or-later"),
    ("libpng", "Libpng"),
    ("mit", "MIT"),
    ("mit0", "MIT-0"),
    ("mpl11", "MPL-1.1"),
    ("mpl20", "MPL-2.0"),
    ("ncsa", "NCSA"),
    ("ofl", "OFL-1.1"),
    ("openssl", "OpenSSL"),
    ("php301", "PHP-3.01"),
    ("postgresql", "PostgreSQL"),
    ("psfl", "Python-2.0"),
    ("publicDomain", "LicenseRef-publicDomain"),
    ("sleepycat", "Sleepycat"),
    ("unicode-dfs-2016", "Unicode-DFS-2016"),
    ("unlicense", "Unlicense"),
    ("upl", "UPL-1.0"),
    ("vim", "Vim"),
    ("w3c", "W3C"),
    ("wtfpl", "WTFPL"),
    ("x11", "X11"),
    ("zlib", "Zlib"),
    ("zpl21", "ZPL-2.1"),
];

fn from_name(name: &str) -> License {
    if is_spdx_id(name) {
        return License::Id(name.to_owned());
    }
    match NIXPKGS.iter().find(|(short, _)| *short == name) {
        Some((_, id)) if is_spdx_id(id) => License::Id((*id).to_owned()),
        _ => License::Named(name.to_owned()),
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
                License::Named("unfree".into()),
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
