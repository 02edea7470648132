//! The authorization code flow with PKCE (OAuth 2.1 §4.1, RFC 7636), split at the redirect:
//! [`AuthClient::begin`] builds the authorization URL and the state to keep until the
//! callback; [`AuthClient::finish`] checks the callback (`state`, then `iss` per RFC 9207
//! §2.4) and exchanges the code.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use switchboard_domain::Timestamp;
use url::Url;

use crate::client::AuthClient;
use crate::discovery::AuthServer;
use crate::error::{OAuthError, Result, shorten};
use crate::registration::ClientRegistration;
use crate::secret::Secret;
use crate::token::{TokenSet, now};

/// How long a person has to come back from the authorization server.
pub const PENDING_LIFETIME_SECONDS: i64 = 15 * 60;

/// What [`AuthClient::begin`] returns: where to send the person, and what to keep.
#[derive(Debug, Clone)]
pub struct AuthorizationRequest {
    /// The authorization URL to redirect the person's browser to.
    pub url: Url,
    /// What to store until the callback (sealed: it holds the PKCE verifier), found again by
    /// its `state`.
    pub pending: PendingAuthorization,
}

/// An authorization in progress, between the redirect and the callback. `Debug` hides the
/// `state` and the verifier.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingAuthorization {
    /// The `state` sent; the callback must bring it back (CSRF protection, RFC 6749 §10.12).
    /// Look the pending authorization up by [`state_digest`] of it rather than by the value.
    pub state: String,
    /// The PKCE code verifier (RFC 7636 §4.1).
    pub code_verifier: Secret,
    /// The redirect URI sent, which the token request repeats.
    pub redirect_uri: String,
    /// The `resource` sent, which the token request repeats (RFC 8707).
    pub resource: String,
    /// The scopes asked for.
    pub scopes: Vec<String>,
    /// The issuer recorded from the validated metadata: the callback's `iss` must equal it.
    pub issuer: String,
    /// Whether the server promised `iss` in its responses (then a missing one is refused).
    pub iss_parameter_supported: bool,
    /// The client id used.
    pub client_id: String,
    /// The token endpoint to exchange the code at.
    pub token_endpoint: String,
    /// When the request was made.
    pub created_at: Timestamp,
    /// After this, the callback is refused.
    pub expires_at: Timestamp,
}

impl fmt::Debug for PendingAuthorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingAuthorization")
            .field("state", &"[redacted]")
            .field("code_verifier", &self.code_verifier)
            .field("redirect_uri", &self.redirect_uri)
            .field("resource", &self.resource)
            .field("scopes", &self.scopes)
            .field("issuer", &self.issuer)
            .field("iss_parameter_supported", &self.iss_parameter_supported)
            .field("client_id", &self.client_id)
            .field("token_endpoint", &self.token_endpoint)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The SHA-256 of a `state` value, hex encoded: a key to store a pending authorization
/// under without storing the value itself in the clear.
pub fn state_digest(state: &str) -> String {
    let digest = Sha256::digest(state.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The query parameters of the redirect back from the authorization server (RFC 6749
/// §4.1.2, §4.1.2.1; RFC 9207 §2).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackParams {
    /// The authorization code.
    pub code: Option<Secret>,
    /// The `state` sent.
    pub state: Option<String>,
    /// The issuer that answered (RFC 9207).
    pub iss: Option<String>,
    /// The error code, when authorization failed.
    pub error: Option<String>,
    /// The error's description.
    pub error_description: Option<String>,
    /// A page about the error.
    pub error_uri: Option<String>,
}

impl fmt::Debug for CallbackParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallbackParams")
            .field("code", &self.code.as_ref().map(|_| "[redacted]"))
            .field("state", &self.state.as_ref().map(|_| "[redacted]"))
            .field("iss", &self.iss)
            .field("error", &self.error)
            .field("error_description", &self.error_description)
            .field("error_uri", &self.error_uri)
            .finish()
    }
}

impl CallbackParams {
    /// Reads the parameters from a query string (without the `?`). Unknown parameters are
    /// ignored; a repeated one keeps its first value.
    pub fn from_query(query: &str) -> Self {
        let mut out = Self::default();
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let value = value.into_owned();
            let slot = match name.as_ref() {
                "code" => {
                    if out.code.is_none() {
                        out.code = Some(Secret::new(value));
                    }
                    continue;
                }
                "state" => &mut out.state,
                "iss" => &mut out.iss,
                "error" => &mut out.error,
                "error_description" => &mut out.error_description,
                "error_uri" => &mut out.error_uri,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(value);
            }
        }
        out
    }

    /// Reads the parameters from the full callback URL.
    pub fn from_url(url: &Url) -> Self {
        Self::from_query(url.query().unwrap_or(""))
    }
}

/// A random URL-safe string of 32 bytes of entropy (43 characters).
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The S256 code challenge of `verifier` (RFC 7636 §4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

impl AuthClient {
    /// Starts an authorization at `server` as `client`, asking for `scopes` (usually
    /// [`AuthServer::scopes`], or their union with a challenge's for a step-up): a fresh PKCE
    /// verifier and `state`, and the authorization URL with `response_type=code`, the S256
    /// challenge, the redirect URI, the scopes (left out when empty) and `resource`.
    pub fn begin(
        &self,
        server: &AuthServer,
        client: &ClientRegistration,
        scopes: &[String],
    ) -> Result<AuthorizationRequest> {
        if !client.is_for(server) {
            return Err(OAuthError::ClientMismatch {
                expected: server.issuer.clone(),
                registered: client.issuer.clone(),
            });
        }
        if !server.metadata.offers_s256() {
            return Err(OAuthError::PkceUnsupported {
                issuer: server.issuer.clone(),
            });
        }
        let authorization = self.endpoint(
            server
                .metadata
                .authorization_endpoint
                .as_deref()
                .unwrap_or_default(),
            "authorization endpoint",
        )?;
        let token = self.endpoint(
            server
                .metadata
                .token_endpoint
                .as_deref()
                .unwrap_or_default(),
            "token endpoint",
        )?;
        let verifier = random_token();
        let state = random_token();
        let mut url = authorization;
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", &client.client_id)
                .append_pair("redirect_uri", &client.redirect_uri)
                .append_pair("code_challenge", &pkce_challenge(&verifier))
                .append_pair("code_challenge_method", "S256")
                .append_pair("state", &state);
            if !scopes.is_empty() {
                query.append_pair("scope", &scopes.join(" "));
            }
            query.append_pair("resource", &server.resource);
        }
        let created_at = now();
        Ok(AuthorizationRequest {
            url,
            pending: PendingAuthorization {
                state,
                code_verifier: Secret::new(verifier),
                redirect_uri: client.redirect_uri.clone(),
                resource: server.resource.clone(),
                scopes: scopes.to_vec(),
                issuer: server.issuer.clone(),
                iss_parameter_supported: server.iss_parameter_supported(),
                client_id: client.client_id.clone(),
                token_endpoint: token.to_string(),
                created_at,
                expires_at: created_at.plus_seconds(PENDING_LIFETIME_SECONDS),
            },
        })
    }

    /// Completes an authorization: checks the callback against `pending` and exchanges the
    /// code at the token endpoint, with the PKCE verifier, the redirect URI and `resource`.
    ///
    /// In order: the pending authorization must not have expired; `state` must match; `iss`
    /// must equal the recorded issuer by simple string comparison when present, and be present
    /// when the server promised it (RFC 9207 §2.4; a mismatched response's error is not acted
    /// on); then an `error` is reported as [`OAuthError::Denied`]. No code reaches a token
    /// endpoint unless every check passed.
    pub async fn finish(
        &self,
        pending: &PendingAuthorization,
        client: &ClientRegistration,
        callback: &CallbackParams,
    ) -> Result<TokenSet> {
        check_callback(pending, callback, now())?;
        if client.client_id != pending.client_id || client.issuer != pending.issuer {
            return Err(OAuthError::ClientMismatch {
                expected: pending.issuer.clone(),
                registered: client.issuer.clone(),
            });
        }
        let code = callback
            .code
            .as_ref()
            .filter(|c| !c.expose().is_empty())
            .ok_or_else(|| OAuthError::InvalidResponse {
                what: "the authorization response".into(),
                reason: "it carries no code".into(),
            })?;
        let endpoint = self.endpoint(&pending.token_endpoint, "token endpoint")?;
        let params = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.expose().to_owned()),
            ("redirect_uri", pending.redirect_uri.clone()),
            ("code_verifier", pending.code_verifier.expose().to_owned()),
            ("resource", pending.resource.clone()),
        ];
        self.token_request(&endpoint, client, params, &pending.scopes)
            .await
    }
}

/// The checks of a callback that need no network, in the order [`AuthClient::finish`]
/// applies them.
pub(crate) fn check_callback(
    pending: &PendingAuthorization,
    callback: &CallbackParams,
    at: Timestamp,
) -> Result<()> {
    if at > pending.expires_at {
        return Err(OAuthError::PendingExpired);
    }
    let state_ok = callback.state.as_deref().is_some_and(|s| {
        s.len() == pending.state.len() && bool::from(s.as_bytes().ct_eq(pending.state.as_bytes()))
    });
    if !state_ok {
        return Err(OAuthError::StateMismatch);
    }
    // RFC 9207 §2.4 and MCP "Authorization Response Validation": a present `iss` is compared
    // whatever the metadata says, as plain strings, with no normalization at all.
    match (&callback.iss, pending.iss_parameter_supported) {
        (Some(iss), _) if *iss != pending.issuer => {
            return Err(OAuthError::IssMismatch {
                expected: pending.issuer.clone(),
                found: shorten(iss),
            });
        }
        (None, true) => {
            return Err(OAuthError::IssMissing {
                issuer: pending.issuer.clone(),
            });
        }
        _ => {}
    }
    if let Some(error) = &callback.error {
        return Err(OAuthError::Denied {
            error: shorten(error),
            description: callback.error_description.as_deref().map(shorten),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(iss_supported: bool) -> PendingAuthorization {
        PendingAuthorization {
            state: "s-1".into(),
            code_verifier: Secret::new("v"),
            redirect_uri: "https://sb.example/oauth/callback".into(),
            resource: "https://mcp.example.com/mcp".into(),
            scopes: vec![],
            issuer: "https://auth.example.com".into(),
            iss_parameter_supported: iss_supported,
            client_id: "c".into(),
            token_endpoint: "https://auth.example.com/token".into(),
            created_at: Timestamp::from_millis(0),
            expires_at: Timestamp::from_millis(1_000),
        }
    }

    fn callback(query: &str) -> CallbackParams {
        CallbackParams::from_query(query)
    }

    const T: Timestamp = Timestamp::from_millis(500);

    #[test]
    fn pkce_matches_the_rfc_7636_example() {
        // RFC 7636 Appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let v = random_token();
        assert_eq!(v.len(), 43);
        assert!(
            v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_ne!(v, random_token());
    }

    #[test]
    fn callbacks_are_parsed_and_hide_the_code() {
        let c = callback("code=abc&state=s-1&iss=https%3A%2F%2Fauth.example.com&extra=1&code=x");
        assert_eq!(c.code.as_ref().map(Secret::expose), Some("abc"));
        assert_eq!(c.iss.as_deref(), Some("https://auth.example.com"));
        let shown = format!("{c:?}");
        assert!(!shown.contains("abc") && !shown.contains("s-1"), "{shown}");
        let url = Url::parse("https://sb.example/cb?error=access_denied&state=s").unwrap();
        assert_eq!(
            CallbackParams::from_url(&url).error.as_deref(),
            Some("access_denied")
        );
    }

    #[test]
    fn the_iss_table_of_rfc_9207() {
        let ok = "code=c&state=s-1&iss=https%3A%2F%2Fauth.example.com";
        let missing = "code=c&state=s-1";
        let wrong = "code=c&state=s-1&iss=https%3A%2F%2Fevil.example.com";
        let slash = "code=c&state=s-1&iss=https%3A%2F%2Fauth.example.com%2F";
        let upper = "code=c&state=s-1&iss=https%3A%2F%2FAUTH.example.com";
        // Advertised: present must match, absent is refused.
        assert!(check_callback(&pending(true), &callback(ok), T).is_ok());
        assert!(matches!(
            check_callback(&pending(true), &callback(missing), T),
            Err(OAuthError::IssMissing { .. })
        ));
        // Not advertised: present is still compared; absent proceeds.
        assert!(check_callback(&pending(false), &callback(missing), T).is_ok());
        assert!(check_callback(&pending(false), &callback(ok), T).is_ok());
        for bad in [wrong, slash, upper] {
            for advertised in [true, false] {
                assert!(
                    matches!(
                        check_callback(&pending(advertised), &callback(bad), T),
                        Err(OAuthError::IssMismatch { .. })
                    ),
                    "{bad} {advertised}"
                );
            }
        }
    }

    #[test]
    fn state_is_checked_first_and_errors_only_after_iss() {
        assert_eq!(
            check_callback(&pending(false), &callback("code=c&state=other"), T),
            Err(OAuthError::StateMismatch)
        );
        assert_eq!(
            check_callback(&pending(false), &callback("code=c"), T),
            Err(OAuthError::StateMismatch)
        );
        // An error from a mismatched issuer is not acted on: the mismatch is reported.
        let forged = "error=access_denied&state=s-1&iss=https%3A%2F%2Fevil.example.com";
        assert!(matches!(
            check_callback(&pending(false), &callback(forged), T),
            Err(OAuthError::IssMismatch { .. })
        ));
        let denied = "error=access_denied&error_description=no&state=s-1";
        assert_eq!(
            check_callback(&pending(false), &callback(denied), T),
            Err(OAuthError::Denied {
                error: "access_denied".into(),
                description: Some("no".into())
            })
        );
        assert_eq!(
            check_callback(
                &pending(false),
                &callback("code=c&state=s-1"),
                Timestamp::from_millis(2_000)
            ),
            Err(OAuthError::PendingExpired)
        );
    }

    fn server(authorization_endpoint: &str, resource: &str) -> AuthServer {
        let metadata = serde_json::from_value(serde_json::json!({
            "issuer": "https://auth.example.com",
            "authorization_endpoint": authorization_endpoint,
            "token_endpoint": "https://auth.example.com/token",
            "code_challenge_methods_supported": ["S256"],
        }))
        .unwrap();
        AuthServer {
            resource: resource.into(),
            resource_metadata_url: None,
            resource_metadata: None,
            issuer: "https://auth.example.com".into(),
            metadata_url: None,
            metadata_kind: None,
            metadata,
            source: crate::DiscoverySource::ProtectedResource,
            scopes: vec![],
            registration: crate::RegistrationOptions {
                metadata_document: false,
                dynamic: false,
            },
        }
    }

    fn oauth() -> AuthClient {
        let http = switchboard_net::SafeClient::new(
            switchboard_net::Destinations::public_only(),
            switchboard_net::ClientOptions::default(),
        )
        .unwrap();
        let redirect = Url::parse("https://sb.example/oauth/callback").unwrap();
        AuthClient::new(&http, crate::ClientConfig::new("Switchboard", redirect)).unwrap()
    }

    fn client() -> ClientRegistration {
        ClientRegistration {
            issuer: "https://auth.example.com".into(),
            client_id: "https://sb.example/oauth/client.json".into(),
            client_secret: None,
            auth_method: crate::TokenEndpointAuth::None,
            source: switchboard_domain::ClientSource::MetadataDocument,
            redirect_uri: "https://sb.example/oauth/callback".into(),
            secret_expires_at: None,
        }
    }

    #[test]
    fn the_authorization_url_keeps_the_endpoint_query_and_the_resource_verbatim() {
        let oauth = oauth();
        // A pathless resource is sent exactly as published: no "/" appended.
        let s = server(
            "https://auth.example.com/authorize?tenant=a",
            "https://mcp.example.com",
        );
        let started = oauth.begin(&s, &client(), &[]).unwrap();
        let pairs: Vec<(String, String)> = started.url.query_pairs().into_owned().collect();
        let names: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "tenant",
                "response_type",
                "client_id",
                "redirect_uri",
                "code_challenge",
                "code_challenge_method",
                "state",
                "resource"
            ],
            "no scope parameter when there are no scopes"
        );
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("resource"), Some("https://mcp.example.com"));
        assert_eq!(
            get("client_id"),
            Some("https://sb.example/oauth/client.json")
        );
        assert_eq!(
            get("code_challenge"),
            Some(pkce_challenge(started.pending.code_verifier.expose()).as_str())
        );
        assert_eq!(started.pending.resource, "https://mcp.example.com");
        assert!(!format!("{:?}", started.pending).contains(&started.pending.state));
        let scoped = oauth
            .begin(&s, &client(), &["a".into(), "b".into()])
            .unwrap();
        assert!(scoped.url.as_str().contains("scope=a+b"), "{}", scoped.url);
    }

    #[test]
    fn begin_refuses_a_client_of_another_server_and_plain_http() {
        let oauth = oauth();
        let s = server("https://auth.example.com/authorize", "https://m.example");
        let mut other = client();
        other.issuer = "https://other.example.com".into();
        assert!(matches!(
            oauth.begin(&s, &other, &[]),
            Err(OAuthError::ClientMismatch { .. })
        ));
        let insecure = server("http://auth.example.com/authorize", "https://m.example");
        assert!(matches!(
            oauth.begin(&insecure, &client(), &[]),
            Err(OAuthError::InsecureEndpoint { .. })
        ));
    }

    #[test]
    fn state_digests_are_stable_hex() {
        assert_eq!(
            state_digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
