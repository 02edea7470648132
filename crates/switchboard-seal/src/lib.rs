//! Sealing secrets at rest.
//!
//! Every secret Switchboard stores (connector credentials, OAuth grants, provider keys) is sealed
//! with XChaCha20-Poly1305 under the installation's master key before it reaches the database.
//! A sealed value names the key that sealed it, so a [`KeyRing`] holding an old and a new key
//! can open everything while a rotation is under way, and names the *context* it was sealed
//! for (bound as associated data), so a sealed value copied into another row does not open.
//!
//! Architecture invariant: no IO. Reading and writing key files is the binary's job; this crate
//! turns key text into a ring and plaintext into sealed text.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use rand::rngs::OsRng;
use zeroize::{Zeroize, Zeroizing};

/// Why a key ring or a sealed value was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    /// The key text is not in the expected format.
    #[error("malformed master key: {0}")]
    MalformedKey(String),
    /// The sealed text is not in the expected format.
    #[error("malformed sealed value")]
    MalformedSealed,
    /// The sealed value names a key this ring does not hold.
    #[error("sealed with key {0}, which is not in the key ring")]
    UnknownKey(String),
    /// Authentication failed: wrong key, wrong context, or tampered data.
    #[error("sealed value does not open with its key and context")]
    Tampered,
}

const KEY_PREFIX: &str = "sbk1";
const SEALED_PREFIX: &str = "sb1";
const NONCE_LEN: usize = 24;

/// One 256-bit master key and its short id.
#[derive(Clone)]
struct Key {
    id: String,
    bytes: Zeroizing<[u8; 32]>,
}

impl Key {
    fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(bytes.as_mut());
        let mut id = [0u8; 6];
        OsRng.fill_bytes(&mut id);
        Self {
            id: URL_SAFE_NO_PAD.encode(id),
            bytes,
        }
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.bytes.as_ref().into())
    }
}

/// The master keys of an installation: the current one seals, every one opens.
#[derive(Clone)]
pub struct KeyRing {
    current: Key,
    older: Vec<Key>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("current", &self.current.id)
            .field(
                "older",
                &self.older.iter().map(|k| &k.id).collect::<Vec<_>>(),
            )
            .field("keys", &"[redacted]")
            .finish()
    }
}

/// A sealed secret as stored: `sb1.<key id>.<base64 of nonce and ciphertext>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed(String);

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealed(key {})", self.key_id().unwrap_or("?"))
    }
}

impl Sealed {
    /// Wraps text read back from the store.
    pub fn from_stored(text: String) -> Self {
        Self(text)
    }

    /// The text to store.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id of the key that sealed it.
    pub fn key_id(&self) -> Option<&str> {
        let mut parts = self.0.splitn(3, '.');
        match (parts.next(), parts.next()) {
            (Some(SEALED_PREFIX), Some(id)) => Some(id),
            _ => None,
        }
    }
}

impl KeyRing {
    /// A ring with one fresh random key.
    pub fn generate() -> Self {
        Self {
            current: Key::generate(),
            older: Vec::new(),
        }
    }

    /// Reads a ring from its text form: one key a line, `sbk1:<id>:<base64 key>`, the current
    /// key first. Blank lines and lines starting with `#` are ignored.
    pub fn parse(text: &str) -> Result<Self, SealError> {
        let mut keys = Vec::new();
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let mut parts = line.split(':');
            let (Some(KEY_PREFIX), Some(id), Some(b64), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(SealError::MalformedKey(
                    "expected lines of the form sbk1:<id>:<key>".into(),
                ));
            };
            if id.is_empty()
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(SealError::MalformedKey(
                    "key id must be letters, digits, - or _".into(),
                ));
            }
            let mut raw = STANDARD_NO_PAD
                .decode(b64.trim_end_matches('='))
                .map_err(|_| SealError::MalformedKey(format!("key {id} is not valid base64")))?;
            if raw.len() != 32 {
                raw.zeroize();
                return Err(SealError::MalformedKey(format!(
                    "key {id} must be 32 bytes"
                )));
            }
            let mut bytes = Zeroizing::new([0u8; 32]);
            bytes.copy_from_slice(&raw);
            raw.zeroize();
            if keys.iter().any(|k: &Key| k.id == id) {
                return Err(SealError::MalformedKey(format!(
                    "key id {id} appears twice"
                )));
            }
            keys.push(Key {
                id: id.to_owned(),
                bytes,
            });
        }
        let mut keys = keys.into_iter();
        let current = keys
            .next()
            .ok_or_else(|| SealError::MalformedKey("no key found".into()))?;
        Ok(Self {
            current,
            older: keys.collect(),
        })
    }

    /// The text form, current key first. The result is secret: write it with mode 0600.
    pub fn to_text(&self) -> Zeroizing<String> {
        let mut out =
            String::from("# Switchboard master keys. Keep this file secret and backed up.\n");
        for key in std::iter::once(&self.current).chain(&self.older) {
            out.push_str(&format!(
                "{KEY_PREFIX}:{}:{}\n",
                key.id,
                STANDARD_NO_PAD.encode(key.bytes.as_ref())
            ));
        }
        Zeroizing::new(out)
    }

    /// The id of the key that seals.
    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    /// Ids of every key in the ring, current first.
    pub fn key_ids(&self) -> Vec<&str> {
        std::iter::once(&self.current)
            .chain(&self.older)
            .map(|k| k.id.as_str())
            .collect()
    }

    /// This ring with `next`'s current key in front: it seals with the new key and still opens
    /// what the old keys sealed. The first step of a rotation.
    pub fn with_new_current(&self, next: &KeyRing) -> KeyRing {
        let mut older = vec![self.current.clone()];
        older.extend(self.older.iter().cloned());
        older.retain(|k| k.id != next.current.id);
        KeyRing {
            current: next.current.clone(),
            older,
        }
    }

    /// Only the current key: the last step of a rotation, once nothing is sealed with the others.
    pub fn current_only(&self) -> KeyRing {
        KeyRing {
            current: self.current.clone(),
            older: Vec::new(),
        }
    }

    /// Seals `plaintext` for `context` (for example `connector-credential:<id>`) under the
    /// current key, with a fresh random 192-bit nonce.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> Sealed {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let ciphertext = self
            .current
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory buffers");
        let mut body = nonce.to_vec();
        body.extend_from_slice(&ciphertext);
        Sealed(format!(
            "{SEALED_PREFIX}.{}.{}",
            self.current.id,
            URL_SAFE_NO_PAD.encode(body)
        ))
    }

    /// Opens a sealed value that was sealed for `context`.
    pub fn open(&self, sealed: &Sealed, context: &str) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let mut parts = sealed.0.splitn(3, '.');
        let (Some(SEALED_PREFIX), Some(id), Some(b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(SealError::MalformedSealed);
        };
        let key = std::iter::once(&self.current)
            .chain(&self.older)
            .find(|k| k.id == id)
            .ok_or_else(|| SealError::UnknownKey(id.to_owned()))?;
        let body = URL_SAFE_NO_PAD
            .decode(b64)
            .map_err(|_| SealError::MalformedSealed)?;
        if body.len() < NONCE_LEN + 16 {
            return Err(SealError::MalformedSealed);
        }
        let (nonce, ciphertext) = body.split_at(NONCE_LEN);
        key.cipher()
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| SealError::Tampered)
    }

    /// Opens with this ring and seals again under its current key; a no-op for values that are
    /// already sealed with it.
    pub fn reseal(&self, sealed: &Sealed, context: &str) -> Result<Sealed, SealError> {
        if sealed.key_id() == Some(self.current_id()) {
            return Ok(sealed.clone());
        }
        let plain = self.open(sealed, context)?;
        Ok(self.seal(&plain, context))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_context_binding() {
        let ring = KeyRing::generate();
        let s = ring.seal(b"hunter2-token", "connector-credential:a");
        assert!(!s.as_str().contains("hunter2"));
        assert_eq!(
            &ring.open(&s, "connector-credential:a").unwrap()[..],
            b"hunter2-token"
        );
        assert_eq!(
            ring.open(&s, "connector-credential:b"),
            Err(SealError::Tampered)
        );
        let mut bytes = s.as_str().to_owned();
        let last = bytes.pop().unwrap();
        bytes.push(if last == 'A' { 'B' } else { 'A' });
        assert!(
            ring.open(&Sealed::from_stored(bytes), "connector-credential:a")
                .is_err()
        );
    }

    #[test]
    fn same_plaintext_seals_differently() {
        let ring = KeyRing::generate();
        assert_ne!(ring.seal(b"x", "c"), ring.seal(b"x", "c"));
    }

    #[test]
    fn text_form_round_trips_and_debug_hides_keys() {
        let ring = KeyRing::generate().with_new_current(&KeyRing::generate());
        let text = ring.to_text();
        let back = KeyRing::parse(&text).unwrap();
        assert_eq!(back.key_ids(), ring.key_ids());
        let debug = format!("{ring:?}");
        for line in text.lines().filter(|l| l.starts_with("sbk1")) {
            let secret = line.rsplit(':').next().unwrap();
            assert!(!debug.contains(secret));
        }
        assert!(KeyRing::parse("").is_err());
        assert!(KeyRing::parse("sbk1:a:AAAA").is_err());
        assert!(KeyRing::parse("nope").is_err());
    }

    #[test]
    fn rotation_reseals_with_the_new_key() {
        let old = KeyRing::generate();
        let sealed = old.seal(b"secret", "ctx");
        let during = old.with_new_current(&KeyRing::generate());
        let resealed = during.reseal(&sealed, "ctx").unwrap();
        assert_eq!(resealed.key_id(), Some(during.current_id()));
        let after = during.current_only();
        assert_eq!(&after.open(&resealed, "ctx").unwrap()[..], b"secret");
        assert_eq!(
            after.open(&sealed, "ctx"),
            Err(SealError::UnknownKey(old.current_id().into()))
        );
    }
}
