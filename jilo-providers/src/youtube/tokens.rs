//! OAuth tokens at rest (feature `youtube`): AES-256-GCM with a random 96-bit nonce per write,
//! the key given by the host, the key's id stored with each token so keys can rotate, and the
//! ciphertext bound to its user and channel (as associated data), so a token copied onto
//! another row does not open.
//!
//! ```
//! use jilo_providers::tokens::TokenCipher;
//! use secrecy::{ExposeSecret, SecretString};
//!
//! let cipher = TokenCipher::new("k2026", &[7u8; 32])?;
//! let sealed = cipher.seal(&SecretString::from("ya29.a0Af…"), "user-1/UCabc")?;
//! let stored = sealed.to_string(); // "v1:k2026:<nonce>:<ciphertext>"
//! let opened = cipher.open(&stored.parse()?, "user-1/UCabc")?;
//! assert_eq!(opened.expose_secret(), "ya29.a0Af…");
//! # Ok::<(), jilo_core::Error>(())
//! ```

use std::fmt;
use std::str::FromStr;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use jilo_core::{Error, Result};
use secrecy::{ExposeSecret, SecretString};

const B64: base64::engine::general_purpose::GeneralPurpose =
    base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A token as stored: which key sealed it, its nonce and its ciphertext (with the tag).
#[derive(Clone, PartialEq, Eq)]
pub struct SealedToken {
    /// The id of the key that sealed it.
    pub key_id: String,
    nonce: Vec<u8>,
    ciphertext: Vec<u8>,
}

impl fmt::Debug for SealedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedToken")
            .field("key_id", &self.key_id)
            .field("bytes", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

impl fmt::Display for SealedToken {
    /// `v1:{key_id}:{nonce}:{ciphertext}`, base64url: what a store keeps.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "v1:{}:{}:{}",
            self.key_id,
            B64.encode(&self.nonce),
            B64.encode(&self.ciphertext)
        )
    }
}

impl FromStr for SealedToken {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::invalid("token", "not a sealed token (`v1:key:nonce:ciphertext`)");
        let mut parts = s.trim().split(':');
        if parts.next() != Some("v1") {
            return Err(bad());
        }
        let key_id = parts.next().filter(|k| !k.is_empty()).ok_or_else(bad)?;
        let nonce = parts
            .next()
            .and_then(|n| B64.decode(n).ok())
            .ok_or_else(bad)?;
        let ciphertext = parts
            .next()
            .and_then(|c| B64.decode(c).ok())
            .ok_or_else(bad)?;
        if nonce.len() != 12 || parts.next().is_some() {
            return Err(bad());
        }
        Ok(Self {
            key_id: key_id.to_owned(),
            nonce,
            ciphertext,
        })
    }
}

struct TokenKey {
    id: String,
    cipher: Aes256Gcm,
}

/// Seals tokens with the current key and opens them with it or a previous one (rotation).
pub struct TokenCipher {
    current: TokenKey,
    previous: Vec<TokenKey>,
}

impl fmt::Debug for TokenCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCipher")
            .field("key_id", &self.current.id)
            .field(
                "previous",
                &self.previous.iter().map(|k| &k.id).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

fn key_from_base64(what: &str, b64: &str) -> Result<[u8; 32]> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .or_else(|_| B64.decode(b64.trim()))
        .map_err(|_| Error::invalid(what, "not base64"))?;
    bytes
        .try_into()
        .map_err(|_| Error::invalid(what, "an AES-256 key is 32 bytes"))
}

/// A key id as it is kept beside each sealed token: not empty, no `:` (it would split the
/// sealed form), no whitespace or control characters; else [`Error::InvalidInput`] on
/// `field`. Anything else an existing deployment used still opens its tokens.
fn check_key_id(field: &str, id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::invalid(field, "a key id is empty"));
    }
    if id.contains(':') || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid(
            field,
            format!(
                "the key id `{}` holds a `:`, whitespace or a control character",
                id.escape_debug()
            ),
        ));
    }
    Ok(())
}

/// The reason of an input error, its text otherwise.
fn reason_of(e: Error) -> String {
    match e {
        Error::InvalidInput { reason, .. } => reason,
        other => other.to_string(),
    }
}

impl TokenCipher {
    /// A cipher sealing with this key, named `id` (kept beside each token). An empty id, or
    /// one with a `:`, whitespace or a control character, is [`Error::InvalidInput`] on
    /// `JILO_TOKEN_KEY_ID` (it is never rewritten: tokens sealed under it must find it again).
    pub fn new(id: impl Into<String>, key: &[u8; 32]) -> Result<Self> {
        let id = id.into();
        check_key_id("JILO_TOKEN_KEY_ID", &id)?;
        Ok(Self {
            current: TokenKey {
                id,
                cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key)),
            },
            previous: Vec::new(),
        })
    }

    /// An older key that still opens the tokens it sealed (until they are sealed again: a
    /// channel's tokens at their next refresh) and the upload session URIs it sealed (kept
    /// until the upload ends; a YouTube session lives about a week). Keep a retired key here
    /// at least that long. An id that is malformed, the current key's or another older key's
    /// is [`Error::InvalidInput`] on `JILO_TOKEN_KEYS_PREVIOUS`: two keys under one id would
    /// leave tokens that open with neither.
    pub fn with_previous(mut self, id: impl Into<String>, key: &[u8; 32]) -> Result<Self> {
        let id = id.into();
        let field = "JILO_TOKEN_KEYS_PREVIOUS";
        check_key_id(field, &id)?;
        if id == self.current.id || self.previous.iter().any(|k| k.id == id) {
            return Err(Error::invalid(
                field,
                format!("the key id `{id}` is given twice (an older key needs an id of its own)"),
            ));
        }
        self.previous.push(TokenKey {
            id,
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key)),
        });
        Ok(self)
    }

    /// `JILO_TOKEN_KEY` (32 bytes, base64; required), `JILO_TOKEN_KEY_ID` (default `k1`), and
    /// `JILO_TOKEN_KEYS_PREVIOUS` (`id=base64,id=base64`) for rotation. An entry that is not
    /// `id=base64` of 32 bytes, or whose id is empty, malformed or taken, is refused naming the
    /// entry by its place and id (never its key).
    pub fn from_env() -> Result<Self> {
        let var = |n: &str| std::env::var(n).ok().filter(|v| !v.trim().is_empty());
        let key = var("JILO_TOKEN_KEY")
            .ok_or_else(|| Error::invalid("JILO_TOKEN_KEY", "set it to 32 random bytes, base64"))?;
        let id = var("JILO_TOKEN_KEY_ID").unwrap_or_else(|| "k1".to_owned());
        let mut cipher = Self::new(id.trim(), &key_from_base64("JILO_TOKEN_KEY", &key)?)?;
        let previous = var("JILO_TOKEN_KEYS_PREVIOUS").unwrap_or_default();
        let field = "JILO_TOKEN_KEYS_PREVIOUS";
        for (n, entry) in previous
            .split(',')
            .enumerate()
            .map(|(i, e)| (i + 1, e.trim()))
        {
            if entry.is_empty() {
                continue;
            }
            let Some((id, b64)) = entry.split_once('=') else {
                return Err(Error::invalid(
                    field,
                    format!("entry {n} is not `id=base64-key`"),
                ));
            };
            let id = id.trim();
            let key = key_from_base64(field, b64).map_err(|e| {
                Error::invalid(field, format!("entry {n} (`{id}`): {}", reason_of(e)))
            })?;
            cipher = cipher.with_previous(id, &key).map_err(|e| {
                Error::invalid(field, format!("entry {n} (`{id}`): {}", reason_of(e)))
            })?;
        }
        Ok(cipher)
    }

    /// Seals a token for one owner (e.g. `user/channel`), with a fresh random nonce.
    pub fn seal(&self, token: &SecretString, owner: &str) -> Result<SealedToken> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ciphertext = self
            .current
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: token.expose_secret().as_bytes(),
                    aad: owner.as_bytes(),
                },
            )
            .map_err(|_| Error::invalid("token", "could not be sealed"))?;
        Ok(SealedToken {
            key_id: self.current.id.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
        })
    }

    /// Opens a token sealed for `owner`. A key this cipher lacks, a wrong key, an altered
    /// ciphertext or another owner is [`Error::InvalidInput`] on `token`, never garbage.
    pub fn open(&self, sealed: &SealedToken, owner: &str) -> Result<SecretString> {
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == sealed.key_id)
            .ok_or_else(|| {
                Error::invalid(
                    "token",
                    format!(
                        "sealed with key `{}`, which is not configured",
                        sealed.key_id
                    ),
                )
            })?;
        let plain = key
            .cipher
            .decrypt(
                Nonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: owner.as_bytes(),
                },
            )
            .map_err(|_| {
                Error::invalid(
                    "token",
                    format!(
                        "does not open with key `{}`: a wrong key, an altered token or another owner",
                        sealed.key_id
                    ),
                )
            })?;
        String::from_utf8(plain)
            .map(SecretString::from)
            .map_err(|_| Error::invalid("token", "the opened token is not text"))
    }

    /// Whether a token was sealed with an older key (seal it again to finish a rotation).
    pub fn needs_rotation(&self, sealed: &SealedToken) -> bool {
        sealed.key_id != self.current.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER: &str = "user-1/UCabc";

    fn token() -> SecretString {
        SecretString::from("1//0gRefreshTokenSecretValue")
    }

    #[test]
    fn round_trip_and_a_fresh_nonce_each_time() {
        let c = TokenCipher::new("k1", &[1; 32]).unwrap();
        let a = c.seal(&token(), OWNER).unwrap();
        let b = c.seal(&token(), OWNER).unwrap();
        assert_ne!(a.to_string(), b.to_string(), "a random nonce per write");
        let parsed: SealedToken = a.to_string().parse().unwrap();
        assert_eq!(parsed, a);
        assert_eq!(
            c.open(&parsed, OWNER).unwrap().expose_secret(),
            token().expose_secret()
        );
        assert!(!a.to_string().contains("RefreshToken"));
    }

    #[test]
    fn wrong_key_tampering_and_another_owner_are_clear_errors() {
        let c = TokenCipher::new("k1", &[1; 32]).unwrap();
        let sealed = c.seal(&token(), OWNER).unwrap();
        let wrong = TokenCipher::new("k1", &[2; 32]).unwrap();
        let kind = |r: Result<SecretString>| r.map(|_| ()).map_err(|e| e.kind());
        assert_eq!(
            kind(wrong.open(&sealed, OWNER)),
            Err(jilo_core::ErrorKind::InvalidInput)
        );
        let mut tampered = sealed.clone();
        tampered.ciphertext[0] ^= 1;
        assert_eq!(
            kind(c.open(&tampered, OWNER)),
            Err(jilo_core::ErrorKind::InvalidInput)
        );
        assert_eq!(
            kind(c.open(&sealed, "user-2/UCabc")),
            Err(jilo_core::ErrorKind::InvalidInput)
        );
        let other_id = TokenCipher::new("k9", &[1; 32]).unwrap();
        let err = other_id.open(&sealed, OWNER).unwrap_err();
        assert!(err.to_string().contains("`k1`"), "{err}");
        assert!("v2:k1:x:y".parse::<SealedToken>().is_err());
        assert!("v1:k1:!!:y".parse::<SealedToken>().is_err());
    }

    #[test]
    fn keys_rotate() {
        let old = TokenCipher::new("k1", &[1; 32]).unwrap();
        let sealed = old.seal(&token(), OWNER).unwrap();
        let new = TokenCipher::new("k2", &[2; 32])
            .unwrap()
            .with_previous("k1", &[1; 32])
            .unwrap();
        assert!(new.needs_rotation(&sealed));
        let opened = new.open(&sealed, OWNER).unwrap();
        let resealed = new.seal(&opened, OWNER).unwrap();
        assert_eq!(resealed.key_id, "k2");
        assert!(!new.needs_rotation(&resealed));
    }

    #[test]
    fn no_key_or_token_in_debug() {
        let c = TokenCipher::new("k1", &[42; 32]).unwrap();
        let sealed = c.seal(&token(), OWNER).unwrap();
        let shown = format!("{c:?} {sealed:?}");
        assert!(
            !shown.contains("42") && !shown.contains("Refresh"),
            "{shown}"
        );
    }

    #[test]
    fn key_ids_are_checked_never_rewritten() {
        let field = |r: Result<TokenCipher>| match r {
            Err(Error::InvalidInput { field, reason }) => {
                assert!(!reason.contains("AAAA"), "no key shows: {reason}");
                (field, reason)
            }
            other => panic!("expected an input error, got {other:?}"),
        };
        assert_eq!(
            field(TokenCipher::new("k:1", &[1; 32])).0,
            "JILO_TOKEN_KEY_ID"
        );
        assert_eq!(field(TokenCipher::new("", &[1; 32])).0, "JILO_TOKEN_KEY_ID");
        let current = || TokenCipher::new("k2", &[2; 32]).unwrap();
        for (bad, why) in [
            ("", "an empty id"),
            ("k:1", "a colon"),
            ("k2", "the current id"),
        ] {
            let (f, _) = field(current().with_previous(bad, &[1; 32]));
            assert_eq!(f, "JILO_TOKEN_KEYS_PREVIOUS", "{why}");
        }
        let twice = current().with_previous("k1", &[1; 32]).unwrap();
        assert_eq!(
            field(twice.with_previous("k1", &[3; 32])).0,
            "JILO_TOKEN_KEYS_PREVIOUS"
        );
    }
}
