//! DSSE envelopes signed with Nix's own ed25519 keys (DESIGN.md §3.3).
//!
//! Keys are in the format `nix-store --generate-binary-cache-key` and `nix
//! key generate-secret` write: `<name>:<base64>`, the secret being NaCl's 64
//! bytes (seed, then public key) and the public key 32 bytes. A record is a
//! DSSE envelope whose payload is the in-toto Statement; each signature is
//! ed25519 over DSSE's pre-authentication encoding (PAE) and names its key
//! as `keyid`, so a builder signs provenance with the key it signs its
//! binary cache with, and a verifier trusts the keys Nix trusts.

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature as EdSignature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The payload type of an in-toto Statement in DSSE.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// The largest key file drvmeta reads.
const KEY_FILE_LIMIT: u64 = 64 << 10;

/// Why a key could not be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyError {
    /// Not `<name>:<base64>`.
    #[error("not a Nix key (<name>:<base64>)")]
    Format,
    /// The name is empty or holds a character Nix does not use in key names.
    #[error("key name {0:?} is empty or has whitespace")]
    Name(String),
    /// The base64 part does not decode, or to the wrong length.
    #[error("key {name:?}: {reason}")]
    Key {
        /// The key's name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The key file could not be read.
    #[error("{file}: cannot read the key: {reason}")]
    File {
        /// The file.
        file: String,
        /// Why.
        reason: String,
    },
}

fn split(text: &str) -> Result<(&str, Vec<u8>), KeyError> {
    let (name, key) = text.trim().split_once(':').ok_or(KeyError::Format)?;
    if name.is_empty() || name.chars().any(char::is_whitespace) {
        return Err(KeyError::Name(name.to_owned()));
    }
    let bytes = STANDARD.decode(key).map_err(|e| KeyError::Key {
        name: name.to_owned(),
        reason: format!("not base64: {e}"),
    })?;
    Ok((name, bytes))
}

/// An ed25519 secret key in Nix's format.
pub struct SecretKey {
    name: String,
    key: SigningKey,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.name)
    }
}

impl SecretKey {
    /// Parse `<name>:<base64 of 64 bytes>`.
    ///
    /// # Errors
    /// [`KeyError`] saying what is wrong (never the key itself).
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let (name, bytes) = split(text)?;
        let bad = |reason: &str| KeyError::Key {
            name: name.to_owned(),
            reason: reason.to_owned(),
        };
        let pair: [u8; 64] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| bad("a secret key is 64 bytes (a public key file was given?)"))?;
        let key = SigningKey::from_keypair_bytes(&pair)
            .map_err(|_| bad("its public half does not match its secret half"))?;
        Ok(Self {
            name: name.to_owned(),
            key,
        })
    }

    /// Read a secret key file (a regular file, at most 64 KiB).
    ///
    /// # Errors
    /// [`KeyError::File`] or the parse error.
    pub fn read(file: &Path) -> Result<Self, KeyError> {
        let bytes = crate::safe_read::read_regular(file, true, KEY_FILE_LIMIT).map_err(|e| {
            KeyError::File {
                file: file.display().to_string(),
                reason: e.to_string(),
            }
        })?;
        let text = String::from_utf8(bytes).map_err(|_| KeyError::Format)?;
        Self::parse(&text).map_err(|e| KeyError::File {
            file: file.display().to_string(),
            reason: e.to_string(),
        })
    }

    /// The key's name (the DSSE `keyid`).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The public half.
    #[must_use]
    pub fn public(&self) -> PublicKey {
        PublicKey {
            name: self.name.clone(),
            key: self.key.verifying_key(),
        }
    }

    fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }
}

/// An ed25519 public key in Nix's format (`trusted-public-keys`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    name: String,
    key: VerifyingKey,
}

impl PublicKey {
    /// Parse `<name>:<base64 of 32 bytes>`.
    ///
    /// # Errors
    /// [`KeyError`] saying what is wrong.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let (name, bytes) = split(text)?;
        let bad = |reason: &str| KeyError::Key {
            name: name.to_owned(),
            reason: reason.to_owned(),
        };
        let bytes: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| bad("a public key is 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| bad("not an ed25519 point"))?;
        Ok(Self {
            name: name.to_owned(),
            key,
        })
    }

    /// Parse a whitespace-separated list, as Nix's `trusted-public-keys`.
    ///
    /// # Errors
    /// The first key that does not parse.
    pub fn parse_list(text: &str) -> Result<Vec<Self>, KeyError> {
        text.split_whitespace().map(Self::parse).collect()
    }

    /// The key's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `<name>:<base64>`.
    #[must_use]
    pub fn to_nix_string(&self) -> String {
        format!("{}:{}", self.name, STANDARD.encode(self.key.as_bytes()))
    }

    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(signature) = <[u8; 64]>::try_from(signature) else {
            return false;
        };
        self.key
            .verify_strict(message, &EdSignature::from_bytes(&signature))
            .is_ok()
    }
}

/// DSSE's pre-authentication encoding: `"DSSEv1" SP len(type) SP type SP
/// len(payload) SP payload`, lengths in ASCII decimal.
#[must_use]
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload_type.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

/// One DSSE signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// The key's name.
    pub keyid: String,
    /// Base64 of the ed25519 signature over the PAE.
    pub sig: String,
}

/// A DSSE envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// Base64 of the payload.
    pub payload: String,
    /// [`PAYLOAD_TYPE`].
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// Signatures over the PAE; empty for an unsigned record.
    pub signatures: Vec<Signature>,
}

/// What the signatures of an envelope prove, given the trusted keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Signed, with a valid signature, by these trusted keys.
    Trusted(Vec<String>),
    /// No signature.
    Unsigned,
    /// Signed only by keys not trusted (their names).
    Untrusted(Vec<String>),
    /// A signature by a trusted key's name does not verify: the payload was
    /// changed, or the signature forged.
    BadSignature(String),
}

impl Trust {
    /// Whether a trusted key signed it.
    #[must_use]
    pub fn is_trusted(&self) -> bool {
        matches!(self, Self::Trusted(_))
    }

    /// A stable, kebab-case name (JSON).
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Trusted(_) => "trusted",
            Self::Unsigned => "unsigned",
            Self::Untrusted(_) => "untrusted",
            Self::BadSignature(_) => "bad-signature",
        }
    }
}

impl fmt::Display for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Trusted(keys) => write!(f, "signed by trusted key {}", keys.join(", ")),
            Self::Unsigned => f.write_str("unsigned"),
            Self::Untrusted(keys) => write!(f, "signed by untrusted key {}", keys.join(", ")),
            Self::BadSignature(key) => write!(
                f,
                "the signature by {key} does not verify (the record was changed or forged)"
            ),
        }
    }
}

impl Envelope {
    /// Wrap `payload` (a Statement), signed with `key` when given.
    #[must_use]
    pub fn new(payload: &[u8], key: Option<&SecretKey>) -> Self {
        let signatures = key
            .map(|key| Signature {
                keyid: key.name().to_owned(),
                sig: STANDARD.encode(key.sign(&pae(PAYLOAD_TYPE, payload))),
            })
            .into_iter()
            .collect();
        Self {
            payload: STANDARD.encode(payload),
            payload_type: PAYLOAD_TYPE.to_owned(),
            signatures,
        }
    }

    /// The payload's bytes.
    ///
    /// # Errors
    /// When it is not base64, or the payload type is not in-toto's.
    pub fn payload(&self) -> Result<Vec<u8>, String> {
        if self.payload_type != PAYLOAD_TYPE {
            return Err(format!(
                "payloadType is {:?}, not {PAYLOAD_TYPE:?}",
                self.payload_type
            ));
        }
        STANDARD
            .decode(&self.payload)
            .map_err(|e| format!("payload is not base64: {e}"))
    }

    /// What the signatures prove against `trusted`: every signature by a
    /// trusted key's name must verify; any one that does makes the
    /// envelope trusted.
    #[must_use]
    pub fn trust(&self, trusted: &[PublicKey]) -> Trust {
        let Ok(payload) = self.payload() else {
            return Trust::BadSignature("(payload)".to_owned());
        };
        if self.signatures.is_empty() {
            return Trust::Unsigned;
        }
        let message = pae(&self.payload_type, &payload);
        let mut good = Vec::new();
        let mut untrusted = Vec::new();
        for signature in &self.signatures {
            let keys: Vec<&PublicKey> = trusted
                .iter()
                .filter(|k| k.name == signature.keyid)
                .collect();
            if keys.is_empty() {
                untrusted.push(signature.keyid.clone());
                continue;
            }
            let bytes = STANDARD.decode(&signature.sig).unwrap_or_default();
            if keys.iter().any(|k| k.verifies(&message, &bytes)) {
                good.push(signature.keyid.clone());
            } else {
                return Trust::BadSignature(signature.keyid.clone());
            }
        }
        if good.is_empty() {
            Trust::Untrusted(untrusted)
        } else {
            good.sort();
            good.dedup();
            Trust::Trusted(good)
        }
    }
}

/// Nix's `trusted-public-keys` (and `extra-trusted-public-keys`) from
/// `$NIX_CONF_DIR/nix.conf` (default `/etc/nix/nix.conf`), or Nix's
/// built-in default when the file sets none.
#[must_use]
pub fn nix_trusted_public_keys() -> Vec<PublicKey> {
    const NIX_DEFAULT: &str = "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=";
    let dir = std::env::var_os("NIX_CONF_DIR").map_or_else(
        || std::path::PathBuf::from("/etc/nix"),
        std::path::PathBuf::from,
    );
    let text = crate::safe_read::read_regular(&dir.join("nix.conf"), true, 1 << 20)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default();
    let mut keys: Option<String> = None;
    let mut extra = String::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        match name.trim() {
            "trusted-public-keys" => keys = Some(value.to_owned()),
            "extra-trusted-public-keys" => {
                extra.push(' ');
                extra.push_str(value);
            }
            _ => {}
        }
    }
    let all = format!("{} {extra}", keys.as_deref().unwrap_or(NIX_DEFAULT));
    all.split_whitespace()
        .filter_map(|k| PublicKey::parse(k).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // A key pair made by `nix-store --generate-binary-cache-key test-1 …`.
    const SECRET: &str = "test-1:ZSCirVd6qRXqiz7ZIBufuC14iJF8pDghF6DTXkya/9IAVKHKGlhqxevo7/o3lLA2jesrsn33kGivFsgAS+8ggw==";
    const PUBLIC: &str = "test-1:AFShyhpYasXr6O/6N5SwNo3rK7J995BorxbIAEvvIIM=";
    // Another pair with the same name.
    const OTHER_SECRET: &str = "test-1:ZUTekyjVdmpO3xgtJU7Sbo/2wg+MtGi54ENVlYjv40cemrLpkVqQMYdvfsA1FruUQQA0ntecpEUWcN+TKlrePg==";

    #[test]
    fn pae_is_dsse_v1() {
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
    }

    #[test]
    fn sign_and_check() {
        let secret = SecretKey::parse(SECRET).unwrap();
        let public = PublicKey::parse(PUBLIC).unwrap();
        assert_eq!(secret.public(), public);
        assert_eq!(public.to_nix_string(), PUBLIC);
        let envelope = Envelope::new(b"{\"a\":1}", Some(&secret));
        assert_eq!(
            envelope.trust(std::slice::from_ref(&public)),
            Trust::Trusted(vec!["test-1".into()])
        );
        assert_eq!(envelope.trust(&[]), Trust::Untrusted(vec!["test-1".into()]));
        assert_eq!(
            Envelope::new(b"{}", None).trust(std::slice::from_ref(&public)),
            Trust::Unsigned
        );
        // A changed payload under the same signature.
        let mut changed = envelope.clone();
        changed.payload = STANDARD.encode(b"{\"a\":2}");
        assert_eq!(
            changed.trust(std::slice::from_ref(&public)),
            Trust::BadSignature("test-1".into())
        );
        // Another key with the trusted key's name.
        let other = SecretKey::parse(OTHER_SECRET).unwrap();
        let forged = Envelope::new(b"{\"a\":1}", Some(&other));
        assert_eq!(
            forged.trust(&[public]),
            Trust::BadSignature("test-1".into())
        );
    }

    #[test]
    fn keys_are_checked() {
        assert_eq!(SecretKey::parse("nocolon").unwrap_err(), KeyError::Format);
        assert!(
            SecretKey::parse(PUBLIC).is_err(),
            "a public key is not a secret key"
        );
        assert!(PublicKey::parse(SECRET).is_err());
        assert!(PublicKey::parse(":AAAA").is_err());
        assert!(matches!(
            PublicKey::parse("x:!!!"),
            Err(KeyError::Key { .. })
        ));
    }
}
