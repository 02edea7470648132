//! Accounts: users, their browser sessions and their personal API tokens.

use serde::{Deserialize, Serialize};

use crate::{ApiTokenId, Timestamp, UserId, ValidationError};

/// An email address, trimmed and lowercased so that lookups ignore case.
///
/// The check is deliberately modest (one `@`, a non-empty local part, a dotted or `localhost`
/// domain, no spaces): the address is a login name here, never a mail destination.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, format = Email)]
pub struct Email(String);

impl Email {
    /// Validates and normalizes an address.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let s = raw.trim().to_ascii_lowercase();
        let err = |m: &str| ValidationError::new("email", m.to_owned());
        if s.is_empty() {
            return Err(err("must not be empty"));
        }
        if s.len() > 254 {
            return Err(err("must be at most 254 characters"));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(err("must not contain spaces or control characters"));
        }
        let Some((local, domain)) = s.split_once('@') else {
            return Err(err("must contain an @"));
        };
        if local.is_empty() || domain.is_empty() || domain.contains('@') {
            return Err(err("must look like name@example.org"));
        }
        if !(domain.contains('.') || domain == "localhost")
            || domain.starts_with('.')
            || domain.ends_with('.')
        {
            return Err(err("must have a domain such as example.org"));
        }
        Ok(Self(s))
    }

    /// The normalized address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Email {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Email> for String {
    fn from(e: Email) -> Self {
        e.0
    }
}

impl std::fmt::Display for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A password a person chose, checked against the length rules and never printed.
///
/// Length is the rule that matters (NIST SP 800-63B §5.1.1): at least 12 characters, at most
/// 1024 so that hashing cannot be used to exhaust the server. No composition rules.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    /// Shortest accepted password, in characters.
    pub const MIN_CHARS: usize = 12;
    /// Longest accepted password, in bytes.
    pub const MAX_BYTES: usize = 1024;

    /// Checks a new password against the rules.
    pub fn new(raw: String) -> Result<Self, ValidationError> {
        if raw.chars().count() < Self::MIN_CHARS {
            return Err(ValidationError::new(
                "password",
                format!("must be at least {} characters", Self::MIN_CHARS),
            ));
        }
        if raw.len() > Self::MAX_BYTES {
            return Err(ValidationError::new(
                "password",
                format!("must be at most {} bytes", Self::MAX_BYTES),
            ));
        }
        Ok(Self(raw))
    }

    /// The secret text, for hashing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password([redacted])")
    }
}

/// A user account. The password hash is kept apart, in the store's credential lookups only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct User {
    /// The account's id.
    pub id: UserId,
    /// Login name.
    pub email: Email,
    /// Name shown to other members.
    pub display_name: String,
    /// When the account was created.
    pub created_at: Timestamp,
}

/// A browser session. The cookie carries a random secret; only its SHA-256 is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// SHA-256 of the cookie's secret, hex encoded.
    pub token_hash: String,
    /// Whose session it is.
    pub user_id: UserId,
    /// The CSRF token bound to this session; state-changing requests must echo it.
    pub csrf_token: String,
    /// When the session was opened.
    pub created_at: Timestamp,
    /// When it stops being accepted.
    pub expires_at: Timestamp,
}

/// A personal API token as the API shows it: never the secret, only a short prefix to
/// recognize it by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApiToken {
    /// The token's id.
    pub id: ApiTokenId,
    /// Whose token it is.
    pub user_id: UserId,
    /// A label chosen by the owner, such as `laptop-cli`.
    pub name: String,
    /// The first characters of the secret, enough to tell tokens apart.
    pub prefix: String,
    /// When it was issued.
    pub created_at: Timestamp,
    /// When it stops being accepted.
    pub expires_at: Timestamp,
    /// When it was last used, if ever.
    pub last_used_at: Option<Timestamp>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<Timestamp>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_normalized_and_checked() {
        assert_eq!(
            Email::parse("  Ada@Example.ORG ").unwrap().as_str(),
            "ada@example.org"
        );
        for bad in [
            "",
            "ada",
            "@example.org",
            "ada@",
            "ada@example",
            "a da@example.org",
        ] {
            let e = Email::parse(bad).unwrap_err();
            assert_eq!(e.field, "email", "{bad}");
        }
        assert!(Email::parse("root@localhost").is_ok());
    }

    #[test]
    fn password_length_rules() {
        assert!(Password::new("short".into()).is_err());
        assert!(Password::new("correct horse".into()).is_ok());
        assert!(Password::new("x".repeat(1025)).is_err());
        assert_eq!(
            format!("{:?}", Password::new("correct horse".into()).unwrap()),
            "Password([redacted])"
        );
    }
}
