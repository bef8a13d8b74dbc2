//! What a fixed-output derivation fetched, in the words scanners and the
//! nixpkgs CycloneDX taxonomy use (doc/interoperability/cyclonedx.md):
//!
//! - the nixpkgs fetcher function (`nix:fod:method`): `fetchgit` when the
//!   derivation carries a git revision, `fetchzip` for a download unpacked
//!   into a directory (recursive hash), `fetchurl` for a file (flat hash);
//! - a package URL derived from the download URL of a well-known host or
//!   registry — GitHub archives and releases, PyPI, crates.io, npm, GNU and
//!   kernel.org mirrors — as nixpkgs derives purls from its fetchers. A
//!   purl is never guessed from a derivation's name: an unknown URL gives
//!   none.
//! - a version without the archive extension a source's name carries.

/// Archive and package extensions stripped from versions, longest first.
const EXTENSIONS: [&str; 13] = [
    ".tar.gz", ".tar.bz2", ".tar.xz", ".tar.zst", ".tar.lz", ".tgz", ".tbz2", ".txz", ".tar",
    ".zip", ".crate", ".gem", ".jar",
];

/// `version` without a trailing archive extension (`1.0.0.tar.gz` →
/// `1.0.0`).
#[must_use]
pub fn clean_version(version: &str) -> &str {
    EXTENSIONS
        .iter()
        .find_map(|ext| version.strip_suffix(ext))
        .filter(|v| !v.is_empty())
        .unwrap_or(version)
}

/// The nixpkgs fetcher function for a fixed-output derivation: `fetchgit`
/// with a git revision, else `fetchzip` (a NAR hash of a download, hash
/// method `nar`), else `fetchurl` (a flat hash of a download); `None`
/// without a URL.
#[must_use]
pub fn fetcher_function(hash_method: &str, has_url: bool, git_rev: bool) -> Option<&'static str> {
    if git_rev {
        return Some("fetchgit");
    }
    if !has_url {
        return None;
    }
    Some(if hash_method == "nar" {
        "fetchzip"
    } else {
        "fetchurl"
    })
}

/// A CPE 2.3 candidate from a package's name and version
/// (`cpe:2.3:a:<name>:<name>:<version>:*:…`), for CycloneDX `evidence`
/// only — a guess from a name is never an identity. `None` when either has
/// characters a CPE would need escaped.
#[must_use]
pub fn cpe_candidate(name: &str, version: &str) -> Option<String> {
    let plain = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    };
    let product = name.to_ascii_lowercase();
    (plain(&product) && plain(version))
        .then(|| format!("cpe:2.3:a:{product}:{product}:{version}:*:*:*:*:*:*:*"))
}

/// Percent-encode a purl name, namespace segment or version.
fn encode(text: &str) -> String {
    encode_keeping(text, b"")
}

/// Percent-encode everything but unreserved characters and `keep`.
fn encode_keeping(text: &str, keep: &[u8]) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'_' | b'~' | b'+' => {
                (b as char).to_string()
            }
            _ if keep.contains(&b) => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `name` and version from a file name `<name>-<version><ext>`.
fn name_version(file: &str) -> Option<(&str, &str)> {
    let bytes = file.as_bytes();
    let split = (0..bytes.len())
        .rev()
        .find(|&i| bytes[i] == b'-' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit))?;
    let version = clean_version(&file[split + 1..]);
    Some((&file[..split], version))
}

/// The package URL of a download, for the hosts and registries above.
#[must_use]
pub fn purl_from_url(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let rest = rest.split(['?', '#']).next()?;
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    if scheme == "mirror" {
        return match parts.as_slice() {
            ["pypi", _, name, file] => pypi(name, file),
            ["gnu", name, .., file] | ["savannah", name, .., file] => generic(name, file, url),
            ["kernel", .., file] => {
                let (name, _) = name_version(file)?;
                generic(name, file, url)
            }
            _ => None,
        };
    }
    if scheme != "https" && scheme != "http" {
        return None;
    }
    match parts.as_slice() {
        // github.com/<owner>/<repo>/archive/<ref>.tar.gz, also refs/tags/<tag>.
        ["github.com", owner, repo, "archive", "refs", "tags", file]
        | ["github.com", owner, repo, "archive", file] => {
            let version = clean_version(file);
            Some(format!(
                "pkg:github/{}/{}@{}",
                encode(&owner.to_lowercase()),
                encode(&repo.to_lowercase()),
                encode(version)
            ))
        }
        ["github.com", owner, repo, "releases", "download", tag, _] => Some(format!(
            "pkg:github/{}/{}@{}",
            encode(&owner.to_lowercase()),
            encode(&repo.to_lowercase()),
            encode(tag)
        )),
        [
            "files.pythonhosted.org" | "pypi.org" | "pypi.python.org",
            "packages",
            "source",
            _,
            name,
            file,
        ] => pypi(name, file),
        [
            "crates.io",
            "api",
            "v1",
            "crates",
            name,
            version,
            "download",
        ] => Some(format!("pkg:cargo/{}@{}", encode(name), encode(version))),
        ["static.crates.io", "crates", name, file] => {
            let version = clean_version(file.strip_prefix(&format!("{name}-"))?);
            Some(format!("pkg:cargo/{}@{}", encode(name), encode(version)))
        }
        ["registry.npmjs.org", scope, name, "-", file] if scope.starts_with('@') => {
            let version = clean_version(file.strip_prefix(&format!("{name}-"))?);
            Some(format!(
                "pkg:npm/{}/{}@{}",
                encode(scope),
                encode(name),
                encode(version)
            ))
        }
        ["registry.npmjs.org", name, "-", file] => {
            let version = clean_version(file.strip_prefix(&format!("{name}-"))?);
            Some(format!("pkg:npm/{}@{}", encode(name), encode(version)))
        }
        ["ftp.gnu.org" | "ftpmirror.gnu.org", "gnu", name, .., file] => generic(name, file, url),
        [
            "cdn.kernel.org" | "www.kernel.org" | "mirrors.kernel.org",
            "pub",
            ..,
            file,
        ] => {
            let (name, _) = name_version(file)?;
            generic(name, file, url)
        }
        _ => None,
    }
}

/// `pkg:pypi/<normalised name>@<version>` from an sdist file name.
fn pypi(name: &str, file: &str) -> Option<String> {
    let (_, version) = name_version(file)?;
    let normalised = name.to_lowercase().replace(['_', '.'], "-");
    Some(format!(
        "pkg:pypi/{}@{}",
        encode(&normalised),
        encode(version)
    ))
}

/// `pkg:generic/<name>@<version>?download_url=<url>` for a release tarball
/// of a host without a purl type of its own (GNU, kernel.org).
fn generic(name: &str, file: &str, url: &str) -> Option<String> {
    let (file_name, version) = name_version(file)?;
    if file_name != name {
        return None;
    }
    // A qualifier value keeps `:` and `/` as the canonical form does
    // (packageurl-python's).
    Some(format!(
        "pkg:generic/{}@{}?download_url={}",
        encode(name),
        encode(version),
        encode_keeping(url, b":/")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purls_from_the_urls_of_well_known_hosts() {
        for (url, purl) in [
            (
                "https://github.com/NixOS/nix/archive/2.34.0.tar.gz",
                Some("pkg:github/nixos/nix@2.34.0"),
            ),
            (
                "https://github.com/huggingface/kernels/archive/refs/tags/v0.17.2.tar.gz",
                Some("pkg:github/huggingface/kernels@v0.17.2"),
            ),
            (
                "https://github.com/owner/tool/releases/download/v1.2.3/tool-1.2.3-linux.tar.gz",
                Some("pkg:github/owner/tool@v1.2.3"),
            ),
            (
                "https://files.pythonhosted.org/packages/source/r/requests/requests-2.31.0.tar.gz",
                Some("pkg:pypi/requests@2.31.0"),
            ),
            (
                "mirror://pypi/t/typing_extensions/typing_extensions-4.12.2.tar.gz",
                Some("pkg:pypi/typing-extensions@4.12.2"),
            ),
            (
                "https://crates.io/api/v1/crates/serde/1.0.210/download",
                Some("pkg:cargo/serde@1.0.210"),
            ),
            (
                "https://static.crates.io/crates/serde_json/serde_json-1.0.128.crate",
                Some("pkg:cargo/serde_json@1.0.128"),
            ),
            (
                "https://registry.npmjs.org/left-pad/-/left-pad-1.3.0.tgz",
                Some("pkg:npm/left-pad@1.3.0"),
            ),
            (
                "https://registry.npmjs.org/@babel/core/-/core-7.25.2.tgz",
                Some("pkg:npm/%40babel/core@7.25.2"),
            ),
            (
                "mirror://gnu/hello/hello-2.12.1.tar.gz",
                Some(
                    "pkg:generic/hello@2.12.1?download_url=mirror://gnu/hello/hello-2.12.1.tar.gz",
                ),
            ),
            (
                "https://ftp.gnu.org/gnu/bash/bash-5.2.tar.gz",
                Some(
                    "pkg:generic/bash@5.2?download_url=https://ftp.gnu.org/gnu/bash/bash-5.2.tar.gz",
                ),
            ),
            (
                "mirror://kernel/linux/kernel/v6.x/linux-6.6.52.tar.xz",
                Some(
                    "pkg:generic/linux@6.6.52?download_url=mirror://kernel/linux/kernel/v6.x/linux-6.6.52.tar.xz",
                ),
            ),
            // Not a known host: no purl, never one guessed from a name.
            ("https://example.org/activation/activation-1.0.0.tar", None),
            ("https://github.com/owner/repo", None),
            ("file:///tmp/x.tar.gz", None),
        ] {
            assert_eq!(purl_from_url(url).as_deref(), purl, "{url}");
        }
    }

    #[test]
    fn cpe_candidates_only_for_plain_names() {
        assert_eq!(
            cpe_candidate("Zlib", "1.3.1").as_deref(),
            Some("cpe:2.3:a:zlib:zlib:1.3.1:*:*:*:*:*:*:*")
        );
        assert_eq!(cpe_candidate("g++", "12"), None);
        assert_eq!(cpe_candidate("x", "1:2"), None);
        assert_eq!(cpe_candidate("", "1"), None);
    }

    #[test]
    fn versions_lose_their_archive_extension() {
        assert_eq!(clean_version("1.0.0.tar"), "1.0.0");
        assert_eq!(clean_version("1.3.1.tar.gz"), "1.3.1");
        assert_eq!(clean_version("2.5.1"), "2.5.1");
        assert_eq!(clean_version(".tar.gz"), ".tar.gz");
    }

    #[test]
    fn the_fetcher_function_follows_the_hash_and_the_revision() {
        assert_eq!(fetcher_function("flat", true, false), Some("fetchurl"));
        assert_eq!(fetcher_function("nar", true, false), Some("fetchzip"));
        assert_eq!(fetcher_function("nar", true, true), Some("fetchgit"));
        assert_eq!(fetcher_function("flat", false, false), None);
    }
}
