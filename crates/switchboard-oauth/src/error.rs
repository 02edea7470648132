//! `OAuthError`: why detection, discovery, registration or a token request failed, keeping
//! passing failures (try again later) apart from final ones (a person must act).
//!
//! Messages name hosts and OAuth error codes, never a token, a client secret, an authorization
//! code or a full URL with its query string.

use switchboard_net::NetError;

/// Why an OAuth operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OAuthError {
    /// The outbound client refused or failed the request: the SSRF rules, DNS, connecting,
    /// timeouts. Whether it passes is [`NetError::is_retryable`]'s call.
    #[error("{0}")]
    Net(#[from] NetError),

    /// A server that should answer is unavailable for now: HTTP 5xx, 429, 408, or an OAuth
    /// `temporarily_unavailable` / `server_error`. Trying again later may succeed.
    #[error("{what} is unavailable for now: {reason}")]
    Unavailable {
        /// Which endpoint, such as `the token endpoint at auth.example.com`.
        what: String,
        /// What it answered.
        reason: String,
    },

    /// The authorization server refused the request with an OAuth error (RFC 6749 §5.2,
    /// RFC 7591 §3.2.2, RFC 7009 §2.2.1), such as `invalid_grant` or `invalid_client`.
    /// Final: the same request will be refused again.
    #[error("{what} refused the request: {error}{}", describe(.description))]
    Rejected {
        /// Which endpoint.
        what: String,
        /// The OAuth error code, or `HTTP <status>` when the answer carried none.
        error: String,
        /// The server's `error_description`, shortened.
        description: Option<String>,
    },

    /// No protected-resource metadata or authorization-server metadata could be found.
    #[error("no OAuth metadata found: {0}")]
    NoMetadata(String),

    /// A metadata document is malformed or lacks a required member.
    #[error("invalid {document}: {reason}")]
    InvalidMetadata {
        /// Which document.
        document: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The protected-resource metadata describes another resource than the server asked for
    /// (RFC 9728 §3.3). Using it would send the user's grant to whoever wrote it.
    #[error("the protected-resource metadata is for {published}, not for this server ({expected})")]
    ResourceMismatch {
        /// The resource the metadata names.
        published: String,
        /// The server's URL.
        expected: String,
    },

    /// The authorization-server metadata names another issuer than the one it was fetched for
    /// (RFC 8414 §3.3).
    #[error(
        "the authorization-server metadata claims issuer {found}, but was fetched for {expected}"
    )]
    IssuerMismatch {
        /// The issuer the metadata was fetched for.
        expected: String,
        /// The issuer the metadata claims.
        found: String,
    },

    /// The authorization server does not offer PKCE with S256, which OAuth 2.1 and MCP require.
    #[error("the authorization server {issuer} does not offer PKCE with S256")]
    PkceUnsupported {
        /// The issuer.
        issuer: String,
    },

    /// An endpoint uses plain `http` where the operator does not allow it, or another scheme.
    #[error("refusing the {which} at {host}: it must use https")]
    InsecureEndpoint {
        /// Which endpoint, such as `token endpoint`.
        which: String,
        /// Its host.
        host: String,
    },

    /// No way to obtain a client identity at this authorization server: no pre-registered
    /// client, no client ID metadata document support, no dynamic registration.
    #[error("cannot register with {issuer}: {reason}")]
    NoRegistration {
        /// The issuer.
        issuer: String,
        /// What is missing.
        reason: String,
    },

    /// A client registration or pending authorization belongs to another authorization server
    /// or client than the one it is used with.
    #[error("the client registration is for {registered}, not for {expected}")]
    ClientMismatch {
        /// The issuer (or client) the operation needs.
        expected: String,
        /// The one the registration is bound to.
        registered: String,
    },

    /// The callback's `state` does not match the pending authorization: a forged or replayed
    /// callback.
    #[error(
        "the authorization response does not belong to this authorization request (state mismatch)"
    )]
    StateMismatch,

    /// The callback lacks the `iss` parameter although the server promised it (RFC 9207 §2.4).
    #[error("the authorization response has no iss parameter, but {issuer} promised one")]
    IssMissing {
        /// The recorded issuer.
        issuer: String,
    },

    /// The callback's `iss` is not the recorded issuer: a mix-up attack (RFC 9207 §2.4).
    #[error("the authorization response comes from {found}, not from {expected}")]
    IssMismatch {
        /// The recorded issuer.
        expected: String,
        /// The `iss` received.
        found: String,
    },

    /// The pending authorization is older than its lifetime; the person must start again.
    #[error("the authorization request has expired; start again")]
    PendingExpired,

    /// The person or the authorization server declined the authorization request.
    #[error("authorization was not granted: {error}{}", describe(.description))]
    Denied {
        /// The OAuth error code from the callback, such as `access_denied`.
        error: String,
        /// The server's `error_description`, shortened.
        description: Option<String>,
    },

    /// A server's answer is not what the protocol says it must be.
    #[error("unexpected answer from {what}: {reason}")]
    InvalidResponse {
        /// Which endpoint.
        what: String,
        /// What was wrong, without quoting secrets.
        reason: String,
    },

    /// A redirect was refused: OAuth endpoints are not followed to another origin, and POSTs
    /// are not turned into GETs.
    #[error("{what} answered with a redirect (HTTP {status}); refusing to follow it")]
    Redirect {
        /// Which endpoint.
        what: String,
        /// The status.
        status: u16,
    },

    /// The caller's input is unusable (an unparsable URL, a malformed configuration).
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// What was wrong.
        field: String,
        /// Why.
        reason: String,
    },
}

fn describe(description: &Option<String>) -> String {
    match description {
        Some(d) => format!(" ({d})"),
        None => String::new(),
    }
}

/// OAuth error codes after which a grant is gone for good: the holder must authorize again.
const GRANT_LOST: &[&str] = &[
    "invalid_grant",
    "invalid_client",
    "unauthorized_client",
    "invalid_scope",
    "unsupported_grant_type",
];

impl OAuthError {
    /// Whether the same operation may succeed if tried again later: network trouble,
    /// timeouts, 5xx, 429. Everything else is final.
    pub fn is_retryable(&self) -> bool {
        match self {
            OAuthError::Net(e) => e.is_retryable(),
            OAuthError::Unavailable { .. } => true,
            _ => false,
        }
    }

    /// Whether a refresh (or another token request) failed because the grant or the client
    /// is no longer accepted: the holder must go through authorization again. A passing
    /// failure is never a lost grant.
    pub fn is_grant_lost(&self) -> bool {
        match self {
            OAuthError::Rejected { error, .. } => GRANT_LOST.contains(&error.as_str()),
            _ => false,
        }
    }

    /// Whether the SSRF rules refused a destination.
    pub fn is_blocked(&self) -> bool {
        matches!(self, OAuthError::Net(e) if e.is_blocked())
    }
}

/// Result of an OAuth operation.
pub type Result<T, E = OAuthError> = std::result::Result<T, E>;

/// Shortens text a remote server chose (an `error_description`) to something fit for a log
/// line or an API answer: printable characters only, at most 200 of them.
pub(crate) fn shorten(text: &str) -> String {
    const MAX: usize = 200;
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let clean = clean.trim();
    if clean.chars().count() <= MAX {
        clean.to_owned()
    } else {
        let cut: String = clean.chars().take(MAX).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passing_and_final_failures_are_apart() {
        let passing = [
            OAuthError::Net(NetError::Timeout { host: "h".into() }),
            OAuthError::Unavailable {
                what: "the token endpoint".into(),
                reason: "HTTP 503".into(),
            },
        ];
        for e in passing {
            assert!(e.is_retryable(), "{e}");
            assert!(!e.is_grant_lost(), "{e}");
        }
        let lost = OAuthError::Rejected {
            what: "the token endpoint".into(),
            error: "invalid_grant".into(),
            description: Some("refresh token revoked".into()),
        };
        assert!(!lost.is_retryable());
        assert!(lost.is_grant_lost());
        assert_eq!(
            lost.to_string(),
            "the token endpoint refused the request: invalid_grant (refresh token revoked)"
        );
        let refused = OAuthError::Rejected {
            what: "the token endpoint".into(),
            error: "invalid_request".into(),
            description: None,
        };
        assert!(!refused.is_retryable() && !refused.is_grant_lost());
        assert!(!OAuthError::StateMismatch.is_retryable());
    }

    #[test]
    fn remote_text_is_shortened_and_cleaned() {
        assert_eq!(shorten("  bad\ncode \t "), "bad code");
        let long = "x".repeat(500);
        assert_eq!(shorten(&long).chars().count(), 201);
    }
}
