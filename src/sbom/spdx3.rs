//! SPDX 3.0.1 JSON-LD (profiles core, software, simpleLicensing): the form
//! of SPDX that the BSI TR-03183-2 profile of `ntia-conformance-checker`
//! evaluates (it reads creators, SBOM types and dependency completeness
//! from SPDX 3 objects only).
//!
//! The same facts as the SPDX 2.3 document ([`super::spdx`]), in SPDX 3's
//! element graph:
//!
//! - one shared `CreationInfo`; `createdBy` the `--author`s (persons, an
//!   email as an `ExternalIdentifier`), else drvmeta itself as a
//!   `SoftwareAgent`; `createdUsing` the drvmeta `Tool`;
//! - an `SpdxDocument` whose root is a `software_Sbom` of type `build`
//!   (the build-time closure) or `deployed` (the runtime closure), whose
//!   roots are the root packages;
//! - a `software_Package` per component: version, purl (also as an
//!   `ExternalIdentifier`), CPE, download location, homepage,
//!   `suppliedBy` (absent where meta and `--supplier` say nothing, never
//!   invented), `originatedBy` the maintainers, the fixed-output hash in
//!   `verifiedUsing`, purpose `source` for fixed-output downloads, the
//!   `nix:` facts in the comment;
//! - `dependsOn` relationships marked `complete` (every input derivation,
//!   or every reference Nix records), the build-only part as a
//!   `LifecycleScopedRelationship` of scope `build`; `generates` from a
//!   fixed-output source to the packages built from it;
//! - `hasDeclaredLicense` to a `simplelicensing_LicenseExpression` (meta's
//!   licenses are what the package declares; drvmeta concludes none, so
//!   there is no `hasConcludedLicense`);
//! - in a runtime SBOM, each shipped output as a `software_File`
//!   (`hasDistributionArtifact`) with its NAR's SHA-256 from the Nix
//!   database, and its SHA-512 when computed (`sbom --nar-sha512`).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::parties::Party;
use super::spdx::{declared, is_download_location, nix_comment, sanitize, spdx_id};
use super::{Package, Sbom, serial_number};

/// The JSON-LD context every SPDX 3.0.1 document names.
pub const CONTEXT: &str = "https://spdx.org/rdf/3.0.1/spdx-context.jsonld";
/// The one `CreationInfo` every element shares (a blank node).
const CREATION: &str = "_:creationinfo";

/// Ids and shared elements, computed before the graph is written.
struct Ids {
    /// The document's namespace (its own `spdxId`).
    namespace: String,
    /// Agent id by party (document authors, suppliers, maintainers).
    agents: BTreeMap<AgentKey, String>,
    /// License expression element id by expression.
    licenses: BTreeMap<String, String>,
    /// `LicenseRef-` id to the license's name, for every named license.
    named: BTreeMap<String, String>,
    /// Packages built directly from each fixed-output package.
    generates: BTreeMap<String, Vec<String>>,
    /// The bom-refs of packages needed to build only.
    build_only: BTreeSet<String>,
}

type AgentKey = (bool, String, Option<String>);

fn key(party: &Party) -> AgentKey {
    (party.person, party.name.clone(), party.email.clone())
}

impl Ids {
    fn new(sbom: &Sbom) -> Self {
        let namespace = format!(
            "https://github.com/drvmeta/drvmeta/spdx3/{}",
            serial_number(&sbom.roots, sbom.runtime).trim_start_matches("urn:uuid:")
        );
        let mut parties: BTreeSet<AgentKey> = sbom.authors.iter().map(key).collect();
        let mut named = BTreeMap::new();
        let mut expressions = BTreeSet::new();
        let mut generates: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let fixed: BTreeSet<&str> = sbom
            .packages
            .iter()
            .filter(|p| p.fixed.is_some())
            .map(|p| p.bom_ref.as_str())
            .collect();
        for p in &sbom.packages {
            parties.extend(p.supplier.iter().chain(&p.authors).map(key));
            if !p.licenses.is_empty() {
                expressions.insert(declared(&p.licenses, &mut named));
            }
            for dependency in &p.depends_on {
                if fixed.contains(dependency.as_str()) {
                    generates
                        .entry(dependency.clone())
                        .or_default()
                        .push(p.bom_ref.clone());
                }
            }
        }
        let agents = parties
            .into_iter()
            .enumerate()
            .map(|(i, party)| (party, format!("{namespace}#agent-{}", i + 1)))
            .collect();
        let licenses = expressions
            .into_iter()
            .enumerate()
            .map(|(i, e)| (e, format!("{namespace}#license-{}", i + 1)))
            .collect();
        let build_only = sbom
            .packages
            .iter()
            .filter(|p| p.build_only)
            .map(|p| p.bom_ref.clone())
            .collect();
        Self {
            namespace,
            agents,
            licenses,
            named,
            generates,
            build_only,
        }
    }

    /// The element id of a package (by bom-ref).
    fn package(&self, bom_ref: &str) -> String {
        format!("{}#{}", self.namespace, spdx_id(bom_ref))
    }

    fn agent(&self, party: &Party) -> &str {
        &self.agents[&key(party)]
    }

    fn license_text(&self, license_ref: &str) -> String {
        format!("{}#text-{license_ref}", self.namespace)
    }

    fn tool(&self) -> String {
        format!("{}#tool-drvmeta", self.namespace)
    }

    fn software_agent(&self) -> String {
        format!("{}#agent-drvmeta", self.namespace)
    }

    fn sbom(&self) -> String {
        format!("{}#sbom", self.namespace)
    }
}

/// An element: its type, id and the shared creation info, then `fields`.
fn element(kind: &str, id: &str, fields: Value) -> Value {
    let mut out = Map::new();
    out.insert("type".into(), kind.into());
    out.insert("spdxId".into(), id.into());
    out.insert("creationInfo".into(), CREATION.into());
    if let Value::Object(fields) = fields {
        out.extend(fields);
    }
    Value::Object(out)
}

fn identifier(kind: &str, value: &str) -> Value {
    json!({ "type": "ExternalIdentifier", "externalIdentifierType": kind, "identifier": value })
}

fn agent_element(party: &Party, id: &str) -> Value {
    let kind = if party.person {
        "Person"
    } else {
        "Organization"
    };
    let mut fields = json!({ "name": party.name });
    if let Some(email) = &party.email {
        fields["externalIdentifier"] = json!([identifier("email", email)]);
    }
    element(kind, id, fields)
}

/// SPDX 3's name of a hash algorithm Nix uses.
fn algorithm(nix: &str) -> Option<&'static str> {
    Some(match nix {
        "md5" => "md5",
        "sha1" => "sha1",
        "sha256" => "sha256",
        "sha512" => "sha512",
        "blake3" => "blake3",
        _ => return None,
    })
}

fn relationship(id: String, from: &str, kind: &str, to: Vec<String>, extra: Value) -> Value {
    let mut fields = json!({ "from": from, "relationshipType": kind, "to": to });
    if let (Value::Object(fields), Value::Object(extra)) = (&mut fields, extra) {
        fields.extend(extra);
    }
    let kind = if fields.get("scope").is_some() {
        "LifecycleScopedRelationship"
    } else {
        "Relationship"
    };
    element(kind, &id, fields)
}

fn package(p: &Package, ids: &Ids) -> Value {
    let mut fields = json!({ "name": p.name });
    let f = fields.as_object_mut().expect("an object");
    if let Some(version) = &p.version {
        f.insert("software_packageVersion".into(), version.clone().into());
    }
    if let Some(description) = &p.description {
        f.insert("description".into(), description.clone().into());
    }
    if let Some(homepage) = &p.homepage {
        f.insert("software_homePage".into(), homepage.clone().into());
    }
    f.insert("software_packageUrl".into(), p.purl.clone().into());
    let mut identifiers = vec![identifier("packageUrl", &p.purl)];
    if let Some(cpe) = &p.cpe {
        let kind = if cpe.starts_with("cpe:2.3:") {
            "cpe23"
        } else {
            "cpe22"
        };
        identifiers.push(identifier(kind, cpe));
    }
    f.insert("externalIdentifier".into(), identifiers.into());
    if let Some(supplier) = &p.supplier {
        f.insert("suppliedBy".into(), ids.agent(supplier).into());
    }
    if !p.authors.is_empty() {
        let authors: Vec<&str> = p.authors.iter().map(|a| ids.agent(a)).collect();
        f.insert("originatedBy".into(), authors.into());
    }
    // A fixed-output derivation is a download: a source, not the package
    // built from it.
    let purpose = if p.fixed.is_some() {
        "source"
    } else {
        "library"
    };
    f.insert("software_primaryPurpose".into(), purpose.into());
    if let Some(fixed) = &p.fixed {
        if let Some(url) = fixed.urls.iter().find(|u| is_download_location(u)) {
            f.insert("software_downloadLocation".into(), url.clone().into());
        }
        if !fixed.urls.is_empty() {
            f.insert(
                "externalRef".into(),
                json!([{ "type": "ExternalRef", "externalRefType": "sourceArtifact", "locator": fixed.urls }]),
            );
        }
        // Only a flat hash is the file's; a recursive one is its NAR's.
        if let (true, Some(algorithm)) = (fixed.method == "flat", algorithm(&fixed.algorithm)) {
            f.insert(
                "verifiedUsing".into(),
                json!([{ "type": "Hash", "algorithm": algorithm, "hashValue": fixed.hex }]),
            );
        }
    }
    if !p.source_provenance.is_empty() {
        f.insert(
            "software_sourceInfo".into(),
            format!(
                "nixpkgs sourceProvenance: {}",
                p.source_provenance.join(", ")
            )
            .into(),
        );
    }
    f.insert("comment".into(), nix_comment(p).join("\n").into());
    element("software_Package", &ids.package(&p.bom_ref), fields)
}

/// A runtime package's shipped output, with its NAR's SHA-256.
fn files(p: &Package, ids: &Ids) -> Vec<Value> {
    p.narinfo
        .iter()
        .map(|info| {
            let mut fields = json!({ "name": info.path });
            let mut hashes = Vec::new();
            if let Some(digest) = info.nar_sha256() {
                hashes.push(json!({
                    "type": "Hash",
                    "algorithm": "sha256",
                    "hashValue": crate::derivation::store_path::hex(&digest),
                    "comment": "of the store path's NAR serialisation (nix-store --dump), as the Nix database records it",
                }));
            }
            if let Some(sha512) = &info.nar_sha512 {
                hashes.push(json!({
                    "type": "Hash",
                    "algorithm": "sha512",
                    "hashValue": sha512,
                    "comment": "of the store path's NAR serialisation (nix-store --dump), computed by drvmeta",
                }));
            }
            if !hashes.is_empty() {
                fields["verifiedUsing"] = hashes.into();
            }
            element("software_File", &file_id(ids, &info.path), fields)
        })
        .collect()
}

fn file_id(ids: &Ids, path: &str) -> String {
    format!(
        "{}#file-{}",
        ids.namespace,
        sanitize(path.rsplit('/').next().unwrap_or(path))
    )
}

/// The relationships of one package.
fn relationships(p: &Package, ids: &Ids) -> Vec<Value> {
    let from = ids.package(&p.bom_ref);
    let id = |what: &str| format!("{from}-{what}");
    let mut out = Vec::new();
    let (build, other): (Vec<&String>, Vec<&String>) = p
        .depends_on
        .iter()
        .partition(|d| ids.build_only.contains(d.as_str()));
    let complete = json!({ "completeness": "complete" });
    if !other.is_empty() {
        let to = other.iter().map(|d| ids.package(d)).collect();
        out.push(relationship(
            id("dependsOn"),
            &from,
            "dependsOn",
            to,
            complete.clone(),
        ));
    }
    if !build.is_empty() {
        let to = build.iter().map(|d| ids.package(d)).collect();
        out.push(relationship(
            id("dependsOn-build"),
            &from,
            "dependsOn",
            to,
            json!({ "completeness": "complete", "scope": "build" }),
        ));
    }
    if let Some(built) = ids.generates.get(&p.bom_ref) {
        let to = built.iter().map(|b| ids.package(b)).collect();
        out.push(relationship(
            id("generates"),
            &from,
            "generates",
            to,
            Value::Null,
        ));
    }
    if !p.licenses.is_empty() {
        let expression = declared(&p.licenses, &mut BTreeMap::new());
        out.push(relationship(
            id("hasDeclaredLicense"),
            &from,
            "hasDeclaredLicense",
            vec![ids.licenses[&expression].clone()],
            Value::Null,
        ));
    }
    if !p.narinfo.is_empty() {
        let to = p.narinfo.iter().map(|i| file_id(ids, &i.path)).collect();
        out.push(relationship(
            id("hasDistributionArtifact"),
            &from,
            "hasDistributionArtifact",
            to,
            Value::Null,
        ));
    }
    out
}

/// The `@graph`, serialised one element at a time.
struct Graph<'a> {
    sbom: &'a Sbom,
    ids: Ids,
}

impl Graph<'_> {
    fn head(&self) -> Vec<Value> {
        let ids = &self.ids;
        let sbom = self.sbom;
        let kind = if sbom.runtime {
            "runtime"
        } else {
            "build-time"
        };
        let created_by: Vec<String> = if sbom.authors.is_empty() {
            vec![ids.software_agent()]
        } else {
            sbom.authors
                .iter()
                .map(|a| ids.agent(a).to_owned())
                .collect()
        };
        let mut head = vec![
            json!({
                "type": "CreationInfo",
                "@id": CREATION,
                "specVersion": "3.0.1",
                "created": sbom.timestamp,
                "createdBy": created_by,
                "createdUsing": [ids.tool()],
            }),
            element(
                "Tool",
                &ids.tool(),
                json!({ "name": format!("drvmeta {}", env!("CARGO_PKG_VERSION")) }),
            ),
            element(
                "SpdxDocument",
                &ids.namespace,
                json!({
                    "name": format!("{kind} closure of {}", sbom.roots.join(", ")),
                    "profileConformance": ["core", "software", "simpleLicensing"],
                    "rootElement": [ids.sbom()],
                }),
            ),
            element(
                "software_Sbom",
                &ids.sbom(),
                json!({
                    "name": format!("{kind} closure of {}", sbom.roots.join(", ")),
                    "software_sbomType": [if sbom.runtime { "deployed" } else { "build" }],
                    "rootElement": sbom.roots.iter().map(|r| ids.package(r)).collect::<Vec<_>>(),
                    "comment": "drvmeta read the derivations, no evaluation.",
                }),
            ),
        ];
        if sbom.authors.is_empty() {
            head.push(element(
                "SoftwareAgent",
                &ids.software_agent(),
                json!({
                    "name": format!("drvmeta {}", env!("CARGO_PKG_VERSION")),
                    "comment": "No person or organization was named as the document's author (drvmeta sbom --author).",
                }),
            ));
        }
        let parties = sbom.authors.iter().chain(
            sbom.packages
                .iter()
                .flat_map(|p| p.supplier.iter().chain(&p.authors)),
        );
        let mut seen = BTreeSet::new();
        for party in parties {
            if seen.insert(key(party)) {
                head.push(agent_element(party, ids.agent(party)));
            }
        }
        for (expression, id) in &ids.licenses {
            let mut fields = json!({ "simplelicensing_licenseExpression": expression });
            let custom: Vec<Value> = ids
                .named
                .keys()
                .filter(|r| expression.split(' ').any(|word| word == r.as_str()))
                .map(|r| json!({ "type": "DictionaryEntry", "key": r, "value": ids.license_text(r) }))
                .collect();
            if !custom.is_empty() {
                fields["simplelicensing_customIdToUri"] = custom.into();
            }
            head.push(element("simplelicensing_LicenseExpression", id, fields));
        }
        for (license_ref, name) in &ids.named {
            head.push(element(
                "simplelicensing_SimpleLicensingText",
                &ids.license_text(license_ref),
                json!({
                    "name": name,
                    "simplelicensing_licenseText": format!("License named {name:?} in the derivation's meta; no SPDX id."),
                }),
            ));
        }
        head
    }
}

impl Serialize for Graph<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let ids = &self.ids;
        let packages = self.sbom.packages.iter().flat_map(move |p| {
            std::iter::once(package(p, ids))
                .chain(files(p, ids))
                .chain(relationships(p, ids))
        });
        serializer.collect_seq(self.head().into_iter().chain(packages))
    }
}

/// An SPDX 3.0.1 JSON-LD document, serialised without building it in
/// memory.
#[derive(Serialize)]
pub struct Document<'a> {
    #[serde(rename = "@context")]
    context: &'static str,
    #[serde(rename = "@graph")]
    graph: Graph<'a>,
}

/// The SPDX 3.0.1 document for `sbom` (serialise it with `serde_json`).
#[must_use]
pub fn document(sbom: &Sbom) -> Document<'_> {
    Document {
        context: CONTEXT,
        graph: Graph {
            sbom,
            ids: Ids::new(sbom),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relationships_carry_scope_and_completeness() {
        let build = relationship(
            "x#r".into(),
            "x#a",
            "dependsOn",
            vec!["x#b".into()],
            json!({ "completeness": "complete", "scope": "build" }),
        );
        assert_eq!(build["type"], "LifecycleScopedRelationship");
        assert_eq!(build["creationInfo"], CREATION);
        let plain = relationship(
            "x#r".into(),
            "x#a",
            "generates",
            vec!["x#b".into()],
            Value::Null,
        );
        assert_eq!(plain["type"], "Relationship");
        assert!(plain.get("completeness").is_none());
    }
}
