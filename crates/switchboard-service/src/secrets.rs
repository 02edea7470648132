//! Secrets the service makes or checks: password hashes, random tokens, sealed credentials.

use std::collections::BTreeMap;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use switchboard_domain::{CredentialKind, ValidationError};

use crate::{Error, Result};

/// Argon2id with OWASP's recommended minimum (19 MiB, 2 passes, 1 lane): about 20 ms a hash
/// on a small server, which is what a sign-in can afford and a guesser cannot.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("constant argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password to a PHC string, off the async executor (hashing takes milliseconds of
/// CPU on purpose).
pub async fn hash_password(password: &str) -> Result<String> {
    let password = zeroize::Zeroizing::new(password.to_owned());
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        argon2()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| Error::Internal(format!("password hashing failed: {e}")))
    })
    .await
    .map_err(|e| Error::Internal(format!("password hashing task failed: {e}")))?
}

/// Checks a password against a stored PHC string. With no stored hash (an unknown user or an
/// account without a password) a dummy hash is checked instead, so the answer takes as long
/// either way and timing does not tell which accounts exist.
pub async fn verify_password(password: &str, stored: Option<String>) -> Result<bool> {
    const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c3dpdGNoYm9hcmRkdW1teQ$7Pq6lkmD0xPfdGq3g3Z1qvG3nSx2lTP8bxpO3HHmG2Q";
    let password = zeroize::Zeroizing::new(password.to_owned());
    tokio::task::spawn_blocking(move || {
        let real = stored.is_some();
        let text = stored.unwrap_or_else(|| DUMMY.to_owned());
        let parsed = PasswordHash::new(&text)
            .map_err(|e| Error::Internal(format!("stored password hash is malformed: {e}")))?;
        let ok = argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        Ok(real && ok)
    })
    .await
    .map_err(|e| Error::Internal(format!("password check task failed: {e}")))?
}

/// 256 random bits, base64url without padding (43 characters).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// SHA-256, hex encoded. Tokens are 256-bit random values, so a fast hash is enough to make a
/// stolen database useless for signing in; passwords use Argon2id instead.
pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// A static credential as an admin gives it. Never printed: `Debug` shows only the kind.
#[derive(Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum CredentialInput {
    /// Sent as `Authorization: Bearer <token>`.
    Bearer {
        /// The token.
        token: String,
    },
    /// Sent as HTTP Basic.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// Sent as the given headers, for servers that want an API key header.
    Headers {
        /// Header names and values.
        headers: BTreeMap<String, String>,
    },
}

impl std::fmt::Debug for CredentialInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CredentialInput({}, [redacted])", self.kind())
    }
}

/// Headers a credential may not set, because the connector engine owns them.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "accept",
    "mcp-session-id",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
    "last-event-id",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-authorization",
    "cookie",
];

impl CredentialInput {
    /// What kind of credential this is.
    pub fn kind(&self) -> CredentialKind {
        match self {
            CredentialInput::Bearer { .. } => CredentialKind::Bearer,
            CredentialInput::Basic { .. } => CredentialKind::Basic,
            CredentialInput::Headers { .. } => CredentialKind::Headers,
        }
    }

    /// Checks the credential's fields. Messages name the field but never echo a secret value.
    pub fn check(&self) -> Result<(), ValidationError> {
        let visible = |s: &str| !s.is_empty() && s.bytes().all(|b| (0x20..0x7f).contains(&b));
        match self {
            CredentialInput::Bearer { token } => {
                if !visible(token) || token.len() > 8192 || token.contains(' ') {
                    return Err(ValidationError::new(
                        "credential.token",
                        "must be 1 to 8192 visible ASCII characters without spaces",
                    ));
                }
            }
            CredentialInput::Basic { username, password } => {
                if !visible(username) || username.contains(':') || username.len() > 256 {
                    return Err(ValidationError::new(
                        "credential.username",
                        "must be 1 to 256 visible ASCII characters without a colon",
                    ));
                }
                if password.is_empty()
                    || password.len() > 1024
                    || password.chars().any(char::is_control)
                {
                    return Err(ValidationError::new(
                        "credential.password",
                        "must be 1 to 1024 characters without control characters",
                    ));
                }
            }
            CredentialInput::Headers { headers } => {
                if headers.is_empty() || headers.len() > 16 {
                    return Err(ValidationError::new(
                        "credential.headers",
                        "must hold 1 to 16 headers",
                    ));
                }
                for (name, value) in headers {
                    let token_char =
                        |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
                    if name.is_empty() || name.len() > 128 || !name.bytes().all(token_char) {
                        return Err(ValidationError::new(
                            "credential.headers",
                            format!("header name {name:?} is not a valid HTTP header name"),
                        ));
                    }
                    if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                        return Err(ValidationError::new(
                            "credential.headers",
                            format!(
                                "header {name:?} is set by Switchboard and cannot be overridden"
                            ),
                        ));
                    }
                    if value.len() > 8192
                        || value.bytes().any(|b| b < 0x20 && b != b'\t' || b == 0x7f)
                    {
                        return Err(ValidationError::new(
                            "credential.headers",
                            format!(
                                "the value of header {name:?} must be at most 8192 characters without control characters"
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// The plaintext that gets sealed.
    pub fn to_plaintext(&self) -> zeroize::Zeroizing<Vec<u8>> {
        zeroize::Zeroizing::new(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Reads back a credential from its opened plaintext.
    pub fn from_plaintext(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes)
            .map_err(|_| Error::Internal("sealed credential does not parse".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn password_hash_round_trip() {
        let h = hash_password("correct horse battery").await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(
            verify_password("correct horse battery", Some(h.clone()))
                .await
                .unwrap()
        );
        assert!(
            !verify_password("wrong horse battery", Some(h))
                .await
                .unwrap()
        );
        assert!(!verify_password("anything at all", None).await.unwrap());
    }

    #[test]
    fn credential_checks_and_redaction() {
        let bearer = CredentialInput::Bearer {
            token: "s3cr3t-token".into(),
        };
        assert!(bearer.check().is_ok());
        assert!(!format!("{bearer:?}").contains("s3cr3t"));
        assert!(
            CredentialInput::Bearer {
                token: "a b".into()
            }
            .check()
            .is_err()
        );
        let basic = CredentialInput::Basic {
            username: "a:b".into(),
            password: "p".into(),
        };
        assert_eq!(basic.check().unwrap_err().field, "credential.username");
        let mut headers = BTreeMap::new();
        headers.insert("X-Api-Key".to_owned(), "k".to_owned());
        assert!(
            CredentialInput::Headers {
                headers: headers.clone()
            }
            .check()
            .is_ok()
        );
        headers.insert("Mcp-Session-Id".to_owned(), "x".to_owned());
        let e = CredentialInput::Headers {
            headers: headers.clone(),
        }
        .check()
        .unwrap_err();
        assert!(e.message.contains("Mcp-Session-Id"));
        headers.clear();
        headers.insert("Bad Name".to_owned(), "x".to_owned());
        assert!(CredentialInput::Headers { headers }.check().is_err());
        let back = CredentialInput::from_plaintext(&bearer.to_plaintext()).unwrap();
        assert_eq!(back.kind(), CredentialKind::Bearer);
    }
}
