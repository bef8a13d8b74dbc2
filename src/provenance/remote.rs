//! Record stores served over HTTP, like Nix's HTTP binary caches: `GET` to
//! read, `PUT` to upload, and a directory listing to find the records of
//! an output (docs/record-stores.md).
//!
//! The layout is the directory store's ([`super::store`]):
//! `<url>/<output-hash-part>/<drv-hash-part>.<content>.dsse.json` and
//! `<url>/v-<variant digest>/…`. A record's name follows from its bytes, so
//! builders pushing records of the same output at the same time write
//! different names (or the same bytes at the same name) and never lose one;
//! a reader checks every record's bytes against its name, so a half-written
//! or replaced file is reported, never counted. Uploads are checked by
//! reading the record back.
//!
//! Listings: nginx's `autoindex_format json` (an array of `{"name",
//! "type"}`), or any HTML index whose links name the files (nginx's and
//! Apache's default, Python's `http.server`). Transient failures
//! (connection refused or reset, timeouts, 5xx, 408, 429) are retried with
//! a growing delay; anything else is an error naming the URL and status.

use std::time::Duration;

use crate::error::{Error, Result};

/// Attempts per request before a transient failure is an error.
const ATTEMPTS: u32 = 7;
/// The delay before the first retry; it doubles with each retry (0.1 s to
/// 3.2 s: about 6 s in all, enough for a server restart).
const FIRST_RETRY: Duration = Duration::from_millis(100);
/// The largest directory listing read.
const LISTING_LIMIT: u64 = 64 << 20;

/// A record store at an `http://` or `https://` URL.
#[derive(Debug, Clone)]
pub struct HttpStore {
    /// The URL, without a trailing slash.
    base: String,
    agent: ureq::Agent,
}

/// What a failed request says: the message, and whether trying again may
/// help.
struct Failure {
    message: String,
    transient: bool,
}

impl Failure {
    fn of(error: &ureq::Error) -> Self {
        let transient = match error {
            ureq::Error::StatusCode(status) => *status >= 500 || *status == 408 || *status == 429,
            ureq::Error::Io(_)
            | ureq::Error::Timeout(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::HostNotFound
            | ureq::Error::Protocol(_)
            | ureq::Error::BodyStalled => true,
            _ => false,
        };
        let message = match error {
            ureq::Error::StatusCode(status) => format!("HTTP status {status}"),
            other => other.to_string(),
        };
        Self { message, transient }
    }
}

impl HttpStore {
    /// A store at `url` (`http://…` or `https://…`).
    #[must_use]
    pub fn new(url: &str) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_global(Some(Duration::from_secs(120)))
            .user_agent(concat!("drvmeta/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Self {
            base: url.trim_end_matches('/').to_owned(),
            agent,
        }
    }

    /// The store's URL.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.base
    }

    /// The URL of file `name` in directory `dir`.
    #[must_use]
    pub fn url_of(&self, dir: &str, name: &str) -> String {
        format!("{}/{dir}/{name}", self.base)
    }

    /// Run `request` until it succeeds, fails for good, or [`ATTEMPTS`]
    /// transient failures in a row.
    fn with_retries<T>(
        &self,
        url: &str,
        mut request: impl FnMut() -> std::result::Result<T, ureq::Error>,
    ) -> Result<T> {
        let mut delay = FIRST_RETRY;
        let mut attempt = 1;
        loop {
            match request() {
                Ok(value) => return Ok(value),
                Err(error) => {
                    let failure = Failure::of(&error);
                    if !failure.transient || attempt == ATTEMPTS {
                        let tries = if attempt > 1 {
                            format!(" (after {attempt} attempts)")
                        } else {
                            String::new()
                        };
                        return Err(Error::Remote {
                            url: url.to_owned(),
                            message: format!("{}{tries}", failure.message),
                        });
                    }
                    std::thread::sleep(delay);
                    delay *= 2;
                    attempt += 1;
                }
            }
        }
    }

    /// `GET url`: the body (at most `limit` bytes), or `None` for 404/410.
    fn get_url(&self, url: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        self.with_retries(url, || {
            let mut response = self.agent.get(url).call()?;
            match response.status().as_u16() {
                200 => response
                    .body_mut()
                    .with_config()
                    .limit(limit)
                    .read_to_vec()
                    .map(Some),
                404 | 410 => Ok(None),
                status => Err(ureq::Error::StatusCode(status)),
            }
        })
    }

    /// The names of the files in directory `dir` (empty when it does not
    /// exist).
    ///
    /// # Errors
    /// [`Error::Remote`] when the listing cannot be fetched or read.
    pub fn list(&self, dir: &str) -> Result<Vec<String>> {
        let url = format!("{}/{dir}/", self.base);
        let Some(body) = self.get_url(&url, LISTING_LIMIT)? else {
            return Ok(Vec::new());
        };
        parse_listing(&body).map_err(|message| Error::Remote { url, message })
    }

    /// File `name` of directory `dir`, or `None` when there is none.
    ///
    /// # Errors
    /// [`Error::Remote`] when it cannot be fetched.
    pub fn get(&self, dir: &str, name: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        self.get_url(&self.url_of(dir, name), limit)
    }

    /// Upload `bytes` as file `name` of directory `dir`, unless the server
    /// serves these bytes there already; then read it back to check the
    /// server serves what was sent.
    ///
    /// # Errors
    /// [`Error::Remote`] when the upload fails or the server then serves
    /// other bytes.
    pub fn put(&self, dir: &str, name: &str, bytes: &[u8], limit: u64) -> Result<bool> {
        let url = self.url_of(dir, name);
        if self.get_url(&url, limit)?.as_deref() == Some(bytes) {
            return Ok(false);
        }
        self.with_retries(&url, || {
            let response = self
                .agent
                .put(&url)
                .header("Content-Type", "application/json")
                .send(bytes)?;
            match response.status().as_u16() {
                200..=299 => Ok(()),
                status => Err(ureq::Error::StatusCode(status)),
            }
        })?;
        match self.get_url(&url, limit)? {
            Some(served) if served == bytes => Ok(true),
            Some(_) => Err(Error::Remote {
                url,
                message: "the server serves other bytes than were uploaded".to_owned(),
            }),
            None => Err(Error::Remote {
                url,
                message: "the upload was accepted but the server does not serve it".to_owned(),
            }),
        }
    }
}

/// The file names of a directory listing: nginx's JSON format, or the links
/// of an HTML index (parent and sub-directory links left out).
fn parse_listing(body: &[u8]) -> std::result::Result<Vec<String>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the listing is not UTF-8".to_owned())?;
    let trimmed = text.trim_start();
    let mut names: Vec<String> = if trimmed.starts_with('[') {
        let entries: Vec<serde_json::Value> = serde_json::from_str(trimmed)
            .map_err(|e| format!("the JSON listing does not parse: {e}"))?;
        entries
            .iter()
            .filter(|entry| entry["type"].as_str() != Some("directory"))
            .filter_map(|entry| entry["name"].as_str().map(str::to_owned))
            .collect()
    } else if trimmed.starts_with('<') {
        html_links(text)
    } else {
        return Err("not a directory listing (JSON or HTML expected)".to_owned());
    };
    names.retain(|name| !name.is_empty() && !name.contains('/') && name != "." && name != "..");
    names.sort();
    names.dedup();
    Ok(names)
}

/// The targets of `href="…"` links, percent-decoded, `./` dropped.
fn html_links(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("href=") {
        rest = &rest[start + 5..];
        let quote = rest.chars().next();
        let Some(quote @ ('"' | '\'')) = quote else {
            continue;
        };
        let Some(end) = rest[1..].find(quote) else {
            break;
        };
        let target = &rest[1..=end];
        rest = &rest[end + 1..];
        if let Some(name) = percent_decode(target.strip_prefix("./").unwrap_or(target)) {
            names.push(name);
        }
    }
    names
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_of_nginx_json_and_html_indexes() {
        let json = br#"[{"name":"b.x.dsse.json","type":"file","mtime":"","size":3},
            {"name":"sub","type":"directory","mtime":""},{"name":"a.y.dsse.json","type":"file"}]"#;
        assert_eq!(
            parse_listing(json).unwrap(),
            ["a.y.dsse.json", "b.x.dsse.json"]
        );
        let html = br#"<html><body><a href="../">../</a><a href="sub/">sub/</a>
            <a href="a%2Bb.dsse.json">a+b</a><a href='./c.dsse.json'>c</a></body></html>"#;
        assert_eq!(
            parse_listing(html).unwrap(),
            ["a+b.dsse.json", "c.dsse.json"]
        );
        assert!(parse_listing(b"plain text").is_err());
        assert!(parse_listing(b"[{]").is_err());
        assert!(parse_listing(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn a_refused_connection_is_an_error_naming_the_url_after_retries() {
        // Port 9 on loopback: nothing listens (discard is not run here).
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let store = HttpStore::new(&format!("http://127.0.0.1:{port}/records/"));
        let started = std::time::Instant::now();
        let error = store.list("0aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa").unwrap_err();
        let text = error.to_string();
        assert!(
            text.starts_with(&format!(
                "http://127.0.0.1:{port}/records/0aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/: "
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!("after {ATTEMPTS} attempts")),
            "{text}"
        );
        assert!(
            started.elapsed() >= Duration::from_secs(6),
            "retried with delays"
        );
    }
}
