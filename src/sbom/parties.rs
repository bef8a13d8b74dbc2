//! Who supplies a component and who wrote the document: the NTIA minimum
//! elements "supplier" and "author".
//!
//! A component's supplier comes from its `__meta`: `vendor` (an
//! organization), else the first of `maintainers` (a person, as nixpkgs
//! writes them: `{ name, email, github }` or a string), else the owner of a
//! GitHub or GitLab `homepage` (an organization). What meta does not say
//! can be given for the whole document (`sbom --supplier`); otherwise the
//! supplier is `NOASSERTION` — never invented.

use serde_json::{Map, Value};

/// A person or an organization, with an optional email address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    /// A person (a maintainer) or an organization (a vendor, a homepage's
    /// owner, or given on the command line).
    pub person: bool,
    /// The name.
    pub name: String,
    /// The email address, when known.
    pub email: Option<String>,
}

impl Party {
    /// Parse `Name <email>` or `Name`, as given on the command line.
    #[must_use]
    pub fn parse(text: &str, person: bool) -> Option<Self> {
        let text = text.trim();
        let (name, email) = match text.split_once('<') {
            Some((name, rest)) => (
                name.trim(),
                rest.strip_suffix('>').map(|e| e.trim().to_owned()),
            ),
            None => (text, None),
        };
        (!name.is_empty()).then(|| Self {
            person,
            name: name.to_owned(),
            email: email.filter(|e| !e.is_empty()),
        })
    }

    /// SPDX's form: `Person: Name (email)` / `Organization: Name (email)`.
    #[must_use]
    pub fn spdx(&self) -> String {
        let kind = if self.person {
            "Person"
        } else {
            "Organization"
        };
        match &self.email {
            Some(email) => format!("{kind}: {} ({email})", self.name),
            None => format!("{kind}: {}", self.name),
        }
    }
}

fn maintainer(value: &Value) -> Option<Party> {
    match value {
        Value::String(name) => Party::parse(name, true),
        Value::Object(m) => {
            let name = m
                .get("name")
                .and_then(Value::as_str)
                .or_else(|| m.get("github").and_then(Value::as_str))?;
            Some(Party {
                person: true,
                name: name.to_owned(),
                email: m.get("email").and_then(Value::as_str).map(str::to_owned),
            })
        }
        _ => None,
    }
}

/// Every maintainer `meta.maintainers` names (the component's authors).
#[must_use]
pub fn maintainers(meta: Option<&Map<String, Value>>) -> Vec<Party> {
    meta.and_then(|m| m.get("maintainers"))
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(maintainer).collect())
        .unwrap_or_default()
}

/// The owner of a `https://github.com/<owner>/…` or GitLab homepage.
fn homepage_owner(homepage: &str) -> Option<Party> {
    let rest = homepage
        .strip_prefix("https://")
        .or_else(|| homepage.strip_prefix("http://"))?;
    let mut parts = rest.split('/');
    let host = parts.next()?;
    let owner = parts.next().filter(|o| !o.is_empty())?;
    matches!(host, "github.com" | "gitlab.com").then(|| Party {
        person: false,
        name: owner.to_owned(),
        email: None,
    })
}

/// The supplier meta names: `vendor`, the first maintainer, or the owner
/// of a GitHub/GitLab homepage.
#[must_use]
pub fn supplier(meta: Option<&Map<String, Value>>, homepage: Option<&str>) -> Option<Party> {
    let vendor = meta
        .and_then(|m| m.get("vendor"))
        .and_then(Value::as_str)
        .and_then(|v| Party::parse(v, false));
    vendor
        .or_else(|| maintainers(meta).into_iter().next())
        .or_else(|| homepage.and_then(homepage_owner))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suppliers_come_from_vendor_maintainers_or_the_homepage_never_invented() {
        let meta = |v: Value| v.as_object().cloned();
        let vendor =
            meta(serde_json::json!({"vendor": "NVIDIA <oss@nvidia.com>", "maintainers": ["x"]}));
        assert_eq!(
            supplier(vendor.as_ref(), None).unwrap().spdx(),
            "Organization: NVIDIA (oss@nvidia.com)"
        );
        let maintained = meta(serde_json::json!({"maintainers": [
            {"name": "Ada", "email": "ada@example.org", "github": "ada"}, "Bob"]}));
        assert_eq!(
            supplier(maintained.as_ref(), None).unwrap().spdx(),
            "Person: Ada (ada@example.org)"
        );
        assert_eq!(maintainers(maintained.as_ref()).len(), 2);
        assert_eq!(
            supplier(None, Some("https://github.com/huggingface/kernels"))
                .unwrap()
                .spdx(),
            "Organization: huggingface"
        );
        assert_eq!(supplier(None, Some("https://pytorch.org")), None);
        assert_eq!(supplier(None, None), None);
        assert_eq!(Party::parse("  ", false), None);
        assert_eq!(
            Party::parse("Release Team <rel@example.org>", true)
                .unwrap()
                .spdx(),
            "Person: Release Team (rel@example.org)"
        );
    }
}
