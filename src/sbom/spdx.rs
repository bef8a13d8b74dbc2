//! SPDX 2.3 JSON (valid per `pyspdxtools`).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Value, json};

use super::license::License;
use super::{Package, Sbom, serial_number};

pub(super) fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The SPDX id of a package: from its drv path's base name.
#[must_use]
pub fn spdx_id(drv_path: &str) -> String {
    format!(
        "SPDXRef-{}",
        sanitize(drv_path.rsplit('/').next().unwrap_or(drv_path))
    )
}

fn license_ref(name: &str) -> String {
    format!("LicenseRef-{}", sanitize(name))
}

/// Whether SPDX accepts `url` as a download location: a URL of a scheme
/// it knows (Nix's `mirror://` is not one; it stays in the comment).
pub(super) fn is_download_location(url: &str) -> bool {
    [
        "https://", "http://", "ftp://", "sftp://", "git+", "git://", "svn+", "hg+", "bzr+",
    ]
    .iter()
    .any(|scheme| url.starts_with(scheme))
}

/// The SPDX license expression of `licenses` (`NOASSERTION` when none),
/// with a `LicenseRef-` for each named license, added to `extracted`.
pub(super) fn declared(licenses: &[License], extracted: &mut BTreeMap<String, String>) -> String {
    if licenses.is_empty() {
        return "NOASSERTION".to_owned();
    }
    licenses
        .iter()
        .map(|l| match l {
            License::Id(id) => id.clone(),
            License::Named(name) => {
                let id = license_ref(name);
                extracted.insert(id.clone(), name.clone());
                id
            }
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// The `nix:` facts SPDX has no field for, one `name=value` per line (the
/// package comment, in both SPDX versions).
pub(super) fn nix_comment(p: &Package) -> Vec<String> {
    let mut comment = vec![format!("nix:drv_path={}", p.drv_path)];
    for (name, path) in &p.outputs {
        if let Some(path) = path {
            comment.push(format!("nix:output:{name}={path}"));
        }
    }
    for info in &p.narinfo {
        if let Some(digest) = info.nar_sha256() {
            comment.push(format!(
                "nix:narinfo:nar_hash:{}=sha256:{}",
                info.path,
                crate::derivation::nixbase32::encode(&digest)
            ));
        }
        comment.push(format!(
            "nix:narinfo:nar_size:{}={}",
            info.path, info.nar_size
        ));
        if let Some(sha512) = &info.nar_sha512 {
            comment.push(format!("nix:nar_sha512:{}={sha512}", info.path));
        }
    }
    if let Some(classic) = &p.classic_outputs {
        comment.push("nix:realised=modulo-meta".to_owned());
        for (name, path) in classic {
            if let Some(path) = path {
                comment.push(format!("nix:classic_output:{name}={path}"));
            }
        }
    }
    if let Some(fixed) = &p.fixed {
        if let Some(function) = &fixed.function {
            comment.push(format!("nix:fod:method={function}"));
        }
        comment.push(format!("nix:fod:hash_mode={}", fixed.method));
        if let Some(rev) = &fixed.rev {
            comment.push(format!("nix:fod:rev={rev}"));
        }
        if let Some(git_ref) = &fixed.git_ref {
            comment.push(format!("nix:fod:ref={git_ref}"));
        }
        comment.push(format!("nix:fod:hash={}:{}", fixed.algorithm, fixed.hex));
    }
    for (name, revision) in [
        ("kernel", &p.provenance.kernel),
        ("kernel-builder", &p.provenance.builder),
    ] {
        if let Some(git) = revision.as_ref().and_then(|r| r.git.as_ref()) {
            comment.push(format!("nix:provenance:{name}:commit={}", git.commit));
            comment.push(format!("nix:provenance:{name}:dirty={}", git.dirty));
        }
    }
    comment
}

fn package(p: &Package, extracted: &mut BTreeMap<String, String>) -> Value {
    let mut out = serde_json::Map::new();
    out.insert("SPDXID".into(), spdx_id(&p.bom_ref).into());
    out.insert("name".into(), p.name.clone().into());
    if let Some(version) = &p.version {
        out.insert("versionInfo".into(), version.clone().into());
    }
    // NTIA's supplier: from meta or --supplier, else NOASSERTION (never
    // invented).
    out.insert(
        "supplier".into(),
        p.supplier
            .as_ref()
            .map_or_else(|| "NOASSERTION".to_owned(), super::parties::Party::spdx)
            .into(),
    );
    let download = p
        .fixed
        .as_ref()
        .and_then(|f| f.urls.iter().find(|u| is_download_location(u)).cloned())
        .unwrap_or_else(|| "NOASSERTION".to_owned());
    out.insert("downloadLocation".into(), download.into());
    out.insert("filesAnalyzed".into(), false.into());
    out.insert("licenseConcluded".into(), "NOASSERTION".into());
    out.insert(
        "licenseDeclared".into(),
        declared(&p.licenses, extracted).into(),
    );
    out.insert("copyrightText".into(), "NOASSERTION".into());
    if let Some(description) = &p.description {
        out.insert("description".into(), description.clone().into());
    }
    if let Some(homepage) = &p.homepage {
        out.insert("homepage".into(), homepage.clone().into());
    }
    let mut refs = vec![json!({
        "referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": p.purl,
    })];
    if let Some(cpe) = &p.cpe {
        let kind = if cpe.starts_with("cpe:2.3:") {
            "cpe23Type"
        } else {
            "cpe22Type"
        };
        refs.push(json!({ "referenceCategory": "SECURITY", "referenceType": kind, "referenceLocator": cpe }));
    }
    out.insert("externalRefs".into(), Value::Array(refs));
    if let Some(fixed) = &p.fixed
        && fixed.method == "flat"
    {
        let algorithm = match fixed.algorithm.as_str() {
            "md5" => Some("MD5"),
            "sha1" => Some("SHA1"),
            "sha256" => Some("SHA256"),
            "sha512" => Some("SHA512"),
            "blake3" => Some("BLAKE3"),
            _ => None,
        };
        if let Some(algorithm) = algorithm {
            out.insert(
                "checksums".into(),
                json!([{ "algorithm": algorithm, "checksumValue": fixed.hex }]),
            );
        }
    }
    let comment = nix_comment(p);
    if !p.source_provenance.is_empty() {
        out.insert(
            "sourceInfo".into(),
            format!(
                "nixpkgs sourceProvenance: {}",
                p.source_provenance.join(", ")
            )
            .into(),
        );
    }
    out.insert("comment".into(), comment.join("\n").into());
    Value::Object(out)
}

/// The packages, serialised one at a time.
struct Packages<'a>(&'a Sbom);

impl Serialize for Packages<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Extracted licenses are collected separately (`extracted_licenses`).
        let mut ignored = BTreeMap::new();
        serializer.collect_seq(self.0.packages.iter().map(|p| package(p, &mut ignored)))
    }
}

/// DESCRIBES for every root, DEPENDS_ON for every dependency.
struct Relationships<'a>(&'a Sbom);

impl Serialize for Relationships<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let describes = self.0.roots.iter().map(|root| {
            json!({
                "spdxElementId": "SPDXRef-DOCUMENT",
                "relationshipType": "DESCRIBES",
                "relatedSpdxElement": spdx_id(root),
            })
        });
        let build_only: BTreeSet<&str> = self
            .0
            .packages
            .iter()
            .filter(|p| p.build_only)
            .map(|p| p.bom_ref.as_str())
            .collect();
        let depends = self.0.packages.iter().flat_map(move |p| {
            let build_only = build_only.clone();
            p.depends_on.iter().flat_map(move |dependency| {
                let depends = json!({
                    "spdxElementId": spdx_id(&p.bom_ref),
                    "relationshipType": "DEPENDS_ON",
                    "relatedSpdxElement": spdx_id(dependency),
                });
                // Needed to build the dependent only: said as well, beside
                // DEPENDS_ON, which keeps the dependency reachable from
                // the roots for tools that walk the graph from DESCRIBES
                // (ntia-conformance-checker calls it floating otherwise).
                let build = build_only.contains(dependency.as_str()).then(|| {
                    json!({
                        "spdxElementId": spdx_id(dependency),
                        "relationshipType": "BUILD_DEPENDENCY_OF",
                        "relatedSpdxElement": spdx_id(&p.bom_ref),
                    })
                });
                std::iter::once(depends).chain(build)
            })
        });
        serializer.collect_seq(describes.chain(depends))
    }
}

/// An SPDX 2.3 document, serialised without building it in memory.
#[derive(Serialize)]
pub struct Document<'a> {
    #[serde(rename = "spdxVersion")]
    spdx_version: &'static str,
    #[serde(rename = "dataLicense")]
    data_license: &'static str,
    #[serde(rename = "SPDXID")]
    spdx_id: &'static str,
    name: String,
    #[serde(rename = "documentNamespace")]
    namespace: String,
    #[serde(rename = "creationInfo")]
    creation_info: Value,
    comment: String,
    packages: Packages<'a>,
    relationships: Relationships<'a>,
    #[serde(
        rename = "hasExtractedLicensingInfos",
        skip_serializing_if = "Vec::is_empty"
    )]
    extracted: Vec<Value>,
}

/// The SPDX 2.3 document for `sbom` (serialise it with `serde_json`).
#[must_use]
pub fn document(sbom: &Sbom) -> Document<'_> {
    let mut extracted = BTreeMap::new();
    for p in &sbom.packages {
        declared(&p.licenses, &mut extracted);
    }
    let uuid = serial_number(&sbom.roots, sbom.runtime);
    let kind = if sbom.runtime {
        "runtime"
    } else {
        "build-time"
    };
    Document {
        spdx_version: "SPDX-2.3",
        data_license: "CC0-1.0",
        spdx_id: "SPDXRef-DOCUMENT",
        name: format!("{kind} closure of {}", sbom.roots.join(", ")),
        namespace: format!(
            "https://github.com/drvmeta/drvmeta/spdx/{}",
            uuid.trim_start_matches("urn:uuid:")
        ),
        creation_info: json!({
            "created": sbom.timestamp.clone(),
            "creators": std::iter::once(format!("Tool: drvmeta-{}", env!("CARGO_PKG_VERSION")))
                .chain(sbom.authors.iter().map(super::parties::Party::spdx))
                .collect::<Vec<_>>(),
        }),
        // SPDX 2.3 has no field for it: the SBOM type (CISA's terms) goes
        // in the document comment.
        comment: format!(
            "SBOM type: {} (CISA). drvmeta read the derivations, no evaluation.",
            if sbom.runtime {
                "Deployed — the runtime closure of built outputs"
            } else {
                "Build — the build-time closure of derivations"
            }
        ),
        packages: Packages(sbom),
        relationships: Relationships(sbom),
        extracted: extracted
            .into_iter()
            .map(|(id, name)| {
                json!({
                    "licenseId": id,
                    "name": name,
                    "extractedText": format!("License named {name:?} in the derivation's meta; no SPDX id."),
                })
            })
            .collect(),
    }
}
