//! CycloneDX 1.6 JSON (valid per the 1.6 JSON schema, strict).

use serde::Serialize;
use serde_json::{Value, json};

use super::license::License;
use super::{Package, Sbom, serial_number};

/// The `bom-ref` of the document's subject: the set of roots.
pub const ROOTS_REF: &str = "drvmeta:roots";

fn hash_alg(algorithm: &str) -> Option<&'static str> {
    Some(match algorithm {
        "md5" => "MD5",
        "sha1" => "SHA-1",
        "sha256" => "SHA-256",
        "sha512" => "SHA-512",
        "blake3" => "BLAKE3",
        _ => return None,
    })
}

fn licenses(licenses: &[License]) -> Option<Value> {
    if licenses.is_empty() {
        return None;
    }
    let ids: Vec<&str> = licenses
        .iter()
        .filter_map(|l| match l {
            License::Id(id) => Some(id.as_str()),
            License::Named(_) => None,
        })
        .collect();
    if ids.len() == licenses.len() && ids.len() > 1 {
        return Some(json!([{ "expression": ids.join(" AND ") }]));
    }
    Some(Value::Array(
        licenses
            .iter()
            .map(|l| match l {
                License::Id(id) => json!({ "license": { "id": id } }),
                License::Named(name) => json!({ "license": { "name": name } }),
            })
            .collect(),
    ))
}

fn property(name: &str, value: impl Into<String>) -> Value {
    json!({ "name": name, "value": value.into() })
}

/// CycloneDX's organizationalContact.
fn contact(party: &crate::sbom::parties::Party) -> Value {
    match &party.email {
        Some(email) => json!({ "name": party.name, "email": email }),
        None => json!({ "name": party.name }),
    }
}

fn component(package: &Package) -> Value {
    let mut c = serde_json::Map::new();
    // A fixed-output derivation is a download: a file, not the library
    // built from it.
    let kind = if package.fixed.is_some() {
        "file"
    } else {
        "library"
    };
    c.insert("type".into(), kind.into());
    if package.build_only {
        // Needed to build, not shipped: CycloneDX's scope for it.
        c.insert("scope".into(), "excluded".into());
    }
    c.insert("bom-ref".into(), package.bom_ref.clone().into());
    c.insert("name".into(), package.name.clone().into());
    if let Some(version) = &package.version {
        c.insert("version".into(), version.clone().into());
    }
    if let Some(description) = &package.description {
        c.insert("description".into(), description.clone().into());
    }
    if let Some(supplier) = &package.supplier {
        c.insert(
            "supplier".into(),
            json!({ "name": supplier.name, "contact": [contact(supplier)] }),
        );
    }
    if !package.authors.is_empty() {
        c.insert(
            "authors".into(),
            package
                .authors
                .iter()
                .map(contact)
                .collect::<Vec<_>>()
                .into(),
        );
    }
    if let Some(licenses) = licenses(&package.licenses) {
        c.insert("licenses".into(), licenses);
    }
    c.insert("purl".into(), package.purl.clone().into());
    if let Some(cpe) = &package.cpe {
        c.insert("cpe".into(), cpe.clone().into());
    } else if let Some(candidate) = package
        .version
        .as_deref()
        .and_then(|v| crate::sbom::fetchers::cpe_candidate(&package.name, v))
        .filter(|_| package.fixed.is_none())
    {
        // A CPE guessed from the name and version: evidence with a low
        // confidence for scanners that want it, never the identity.
        c.insert(
            "evidence".into(),
            json!({ "identity": [{
                "field": "cpe",
                "confidence": 0.1,
                "concludedValue": candidate,
                "methods": [{
                    "technique": "other",
                    "confidence": 0.1,
                    "value": "the derivation's name and version",
                }],
            }] }),
        );
    }
    let mut references = Vec::new();
    if let Some(homepage) = &package.homepage {
        references.push(json!({ "type": "website", "url": homepage }));
    }
    let mut properties = vec![property("nix:drv_path", package.drv_path.clone())];
    for (output, path) in &package.outputs {
        if let Some(path) = path {
            properties.push(property("nix:store_path", path.clone()));
            properties.push(property(&format!("nix:output:{output}"), path.clone()));
        }
    }
    // The nixpkgs taxonomy's narinfo, in runtime SBOMs.
    for info in &package.narinfo {
        properties.push(property("nix:narinfo:store_path", info.path.clone()));
        if let Some(digest) = info.nar_sha256() {
            properties.push(property(
                "nix:narinfo:nar_hash",
                format!("sha256:{}", crate::derivation::nixbase32::encode(&digest)),
            ));
        }
        properties.push(property("nix:narinfo:nar_size", info.nar_size.to_string()));
        if let Some(deriver) = &info.deriver {
            properties.push(property("nix:narinfo:deriver", deriver.clone()));
        }
        properties.push(property(
            "nix:narinfo:references",
            info.references.join(" "),
        ));
        for sig in &info.signatures {
            properties.push(property("nix:narinfo:sig", sig.clone()));
        }
        if let Some(ca) = &info.ca {
            properties.push(property("nix:narinfo:ca", ca.clone()));
        }
    }
    if let Some(classic) = &package.classic_outputs {
        // Realised modulo meta: the classic paths were never built.
        properties.push(property("nix:realised", "modulo-meta".to_owned()));
        for (_, path) in classic {
            if let Some(path) = path {
                properties.push(property("nix:classic_store_path", path.clone()));
            }
        }
    }
    if let Some(fixed) = &package.fixed {
        for url in &fixed.urls {
            references.push(json!({ "type": "distribution", "url": url }));
            properties.push(property("nix:fod:url", url.clone()));
        }
        // The nixpkgs taxonomy (doc/interoperability/cyclonedx.md).
        if let Some(function) = &fixed.function {
            properties.push(property("nix:fod:method", function.clone()));
            if function == "fetchzip" {
                properties.push(property(
                    "nix:fod:name",
                    package.derivation_name().to_owned(),
                ));
            }
        }
        if fixed.algorithm == "sha256" {
            properties.push(property("nix:fod:sha256", fixed.hex.clone()));
        } else {
            properties.push(property(
                "nix:fod:hash",
                format!("{}:{}", fixed.algorithm, fixed.hex),
            ));
        }
        if let Some(rev) = &fixed.rev {
            properties.push(property("nix:fod:rev", rev.clone()));
        }
        if let Some(git_ref) = &fixed.git_ref {
            properties.push(property("nix:fod:ref", git_ref.clone()));
        }
        properties.push(property("nix:fod:hash_mode", fixed.method.clone()));
        // The hash is the file's own only for flat downloads.
        if fixed.method == "flat"
            && let Some(alg) = hash_alg(&fixed.algorithm)
        {
            c.insert(
                "hashes".into(),
                json!([{ "alg": alg, "content": fixed.hex }]),
            );
        }
    }
    for source in &package.source_provenance {
        properties.push(property("nix:source_provenance", source.clone()));
    }
    properties.push(property("nix:meta_opt_in", package.opted_in.to_string()));
    for (name, revision) in [
        ("kernel", &package.provenance.kernel),
        ("kernel-builder", &package.provenance.builder),
    ] {
        if let Some(revision) = revision {
            if let Some(git) = &revision.git {
                properties.push(property(
                    &format!("nix:provenance:{name}:commit"),
                    git.commit.clone(),
                ));
                properties.push(property(
                    &format!("nix:provenance:{name}:dirty"),
                    git.dirty.to_string(),
                ));
            }
            if let Some(version) = &revision.version {
                properties.push(property(
                    &format!("nix:provenance:{name}:version"),
                    version.clone(),
                ));
            }
            if let Some(source) = &revision.source {
                properties.push(property(
                    &format!("nix:provenance:{name}:source"),
                    source.clone(),
                ));
            }
        }
    }
    if !references.is_empty() {
        c.insert("externalReferences".into(), Value::Array(references));
    }
    // A built component's hash is its NAR's, when it ships one output.
    if let (None, [info]) = (&package.fixed, package.narinfo.as_slice())
        && let Some(digest) = info.nar_sha256()
    {
        let mut hashes = vec![
            json!({ "alg": "SHA-256", "content": crate::derivation::store_path::hex(&digest) }),
        ];
        if let Some(sha512) = &info.nar_sha512 {
            hashes.push(json!({ "alg": "SHA-512", "content": sha512 }));
        }
        c.insert("hashes".into(), hashes.into());
    }
    c.insert("properties".into(), Value::Array(properties));
    Value::Object(c)
}

/// The components, serialised one at a time.
struct Components<'a>(&'a Sbom);

impl Serialize for Components<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.packages.iter().map(component))
    }
}

/// The dependency graph: the roots' subject first, then every component.
struct Dependencies<'a>(&'a Sbom);

impl Serialize for Dependencies<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let subject = json!({ "ref": ROOTS_REF, "dependsOn": self.0.roots });
        let rest = self
            .0
            .packages
            .iter()
            .map(|p| json!({ "ref": p.bom_ref, "dependsOn": p.depends_on }));
        serializer.collect_seq(std::iter::once(subject).chain(rest))
    }
}

/// A CycloneDX 1.6 document, serialised without building it in memory.
#[derive(Serialize)]
pub struct Document<'a> {
    #[serde(rename = "$schema")]
    schema: &'static str,
    #[serde(rename = "bomFormat")]
    bom_format: &'static str,
    #[serde(rename = "specVersion")]
    spec_version: &'static str,
    #[serde(rename = "serialNumber")]
    serial_number: String,
    version: u32,
    metadata: Value,
    components: Components<'a>,
    dependencies: Dependencies<'a>,
    compositions: Value,
}

/// The CycloneDX 1.6 document for `sbom` (serialise it with `serde_json`).
#[must_use]
pub fn document(sbom: &Sbom) -> Document<'_> {
    // The real root when there is one (name, version, purl), else a named
    // collection of the roots.
    let root = match sbom.roots.as_slice() {
        [one] => sbom.packages.iter().find(|p| &p.bom_ref == one),
        _ => None,
    };
    let mut subject = json!({
        "type": "application",
        "bom-ref": ROOTS_REF,
        "name": root.map_or_else(
            || format!("closure of {} roots", sbom.roots.len()),
            |p| p.name.clone()
        ),
        "description": format!(
            "{} closure of {}",
            if sbom.runtime { "runtime" } else { "build-time" },
            sbom.roots.join(", ")
        ),
    });
    if let Some(root) = root {
        if let Some(version) = &root.version {
            subject["version"] = version.clone().into();
        }
        subject["purl"] = root.purl.clone().into();
        if let Some(supplier) = &root.supplier {
            subject["supplier"] = json!({ "name": supplier.name, "contact": [contact(supplier)] });
        }
    }
    let mut metadata = json!({
        "timestamp": sbom.timestamp.clone(),
        "lifecycles": [{ "phase": if sbom.runtime { "post-build" } else { "pre-build" } }],
        "tools": { "components": [{
            "type": "application",
            "name": "drvmeta",
            "version": env!("CARGO_PKG_VERSION"),
        }] },
        "component": subject,
    });
    if !sbom.authors.is_empty() {
        metadata["authors"] = sbom.authors.iter().map(contact).collect::<Vec<_>>().into();
    }
    // Every derivation of the closure (or every output the roots reference)
    // is listed with all its dependencies: the inventory is complete.
    let refs: Vec<&str> = std::iter::once(ROOTS_REF)
        .chain(sbom.packages.iter().map(|p| p.bom_ref.as_str()))
        .collect();
    Document {
        schema: "http://cyclonedx.org/schema/bom-1.6.schema.json",
        bom_format: "CycloneDX",
        spec_version: "1.6",
        serial_number: serial_number(&sbom.roots, sbom.runtime),
        version: 1,
        metadata,
        components: Components(sbom),
        dependencies: Dependencies(sbom),
        compositions: json!([{ "aggregate": "complete", "assemblies": refs, "dependencies": refs }]),
    }
}
