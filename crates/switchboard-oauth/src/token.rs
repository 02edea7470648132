//! Tokens: the token endpoint (authorization code and refresh grants, RFC 6749 §4.1.3 and
//! §6, with `resource` per RFC 8707), client authentication there, and revocation (RFC 7009).

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::Method;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchboard_domain::Timestamp;
use url::Url;

use crate::challenge::split_scopes;
use crate::client::{AuthClient, endpoint_name, error_answer};
use crate::discovery::AuthServer;
use crate::error::{OAuthError, Result};
use crate::registration::{ClientRegistration, TokenEndpointAuth};
use crate::secret::Secret;

/// The tokens of one grant: stored sealed, presented as `Authorization: Bearer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenSet {
    /// The access token.
    pub access_token: Secret,
    /// The token type; always `Bearer` here (other types are refused).
    pub token_type: String,
    /// The refresh token, if the server issued one. After a refresh that issued none, the
    /// previous one is kept (RFC 6749 §6: the server may keep it valid).
    pub refresh_token: Option<Secret>,
    /// When the access token expires, if the server said (`expires_in`).
    pub expires_at: Option<Timestamp>,
    /// The scopes granted: the server's `scope`, or the scopes asked for when it sent none
    /// (RFC 6749 §5.1: then they are the same).
    pub scopes: Vec<String>,
    /// When the tokens were obtained.
    pub obtained_at: Timestamp,
}

impl TokenSet {
    /// The `Authorization` header value: `Bearer <access token>`. A secret: send it, never
    /// log it.
    pub fn authorization(&self) -> String {
        format!("Bearer {}", self.access_token.expose())
    }

    /// Whether the access token has expired or will within `leeway_seconds` of `now`.
    /// Without an expiry the token is taken to be valid until a server refuses it.
    pub fn expires_within(&self, now: Timestamp, leeway_seconds: i64) -> bool {
        self.expires_at
            .is_some_and(|at| at <= now.plus_seconds(leeway_seconds))
    }
}

/// Which token a revocation concerns (RFC 7009 §2.1 `token_type_hint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// An access token.
    AccessToken,
    /// A refresh token (revoking it usually ends the whole grant).
    RefreshToken,
}

impl TokenKind {
    fn as_str(self) -> &'static str {
        match self {
            TokenKind::AccessToken => "access_token",
            TokenKind::RefreshToken => "refresh_token",
        }
    }
}

/// A successful token answer (RFC 6749 §5.1).
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Secret,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<Value>,
    #[serde(default)]
    refresh_token: Option<Secret>,
    #[serde(default)]
    scope: Option<String>,
}

pub(crate) fn now() -> Timestamp {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    Timestamp::from_millis(i64::try_from(millis).unwrap_or(i64::MAX))
}

impl AuthClient {
    /// Exchanges a refresh token for new tokens (RFC 6749 §6), with `resource` (RFC 8707
    /// §2.2). The scopes are not sent, so the server keeps those of the grant.
    ///
    /// A passing failure ([`OAuthError::is_retryable`]: network trouble, 5xx, 429) leaves the
    /// grant as it was: try again later. A final one ([`OAuthError::is_grant_lost`]:
    /// `invalid_grant`, `invalid_client`…) means the holder must authorize again.
    pub async fn refresh(
        &self,
        server: &AuthServer,
        client: &ClientRegistration,
        tokens: &TokenSet,
    ) -> Result<TokenSet> {
        let Some(refresh_token) = &tokens.refresh_token else {
            return Err(OAuthError::Rejected {
                what: "the grant".into(),
                error: "invalid_grant".into(),
                description: Some("no refresh token was issued; authorize again".into()),
            });
        };
        if !client.is_for(server) {
            return Err(OAuthError::ClientMismatch {
                expected: server.issuer.clone(),
                registered: client.issuer.clone(),
            });
        }
        let endpoint = self.endpoint(
            server
                .metadata
                .token_endpoint
                .as_deref()
                .unwrap_or_default(),
            "token endpoint",
        )?;
        let params = vec![
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", refresh_token.expose().to_owned()),
            ("resource", server.resource.clone()),
        ];
        let mut fresh = self
            .token_request(&endpoint, client, params, &tokens.scopes)
            .await?;
        if fresh.refresh_token.is_none() {
            fresh.refresh_token = tokens.refresh_token.clone();
        }
        Ok(fresh)
    }

    /// The client credentials grant (OAuth 2.1 §4.2): a token for the client itself, with no
    /// person involved, for servers that authorize machine clients (the MCP
    /// `oauth-client-credentials` extension). Needs a confidential client (a secret); sends
    /// `scopes` (left out when empty) and `resource`.
    pub async fn client_credentials(
        &self,
        server: &AuthServer,
        client: &ClientRegistration,
        scopes: &[String],
    ) -> Result<TokenSet> {
        if !client.is_for(server) {
            return Err(OAuthError::ClientMismatch {
                expected: server.issuer.clone(),
                registered: client.issuer.clone(),
            });
        }
        if !client.auth_method.needs_secret() {
            return Err(OAuthError::Invalid {
                field: "client".into(),
                reason: "the client credentials grant needs a confidential client".into(),
            });
        }
        let endpoint = self.endpoint(
            server
                .metadata
                .token_endpoint
                .as_deref()
                .unwrap_or_default(),
            "token endpoint",
        )?;
        let mut params = vec![("grant_type", "client_credentials".to_owned())];
        if !scopes.is_empty() {
            params.push(("scope", scopes.join(" ")));
        }
        params.push(("resource", server.resource.clone()));
        self.token_request(&endpoint, client, params, scopes).await
    }

    /// Revokes `token` at the authorization server (RFC 7009). `Ok(false)` when the server
    /// offers no revocation endpoint; then the grant can only be forgotten locally.
    pub async fn revoke(
        &self,
        server: &AuthServer,
        client: &ClientRegistration,
        token: &Secret,
        kind: TokenKind,
    ) -> Result<bool> {
        let Some(raw) = server.metadata.revocation_endpoint.as_deref() else {
            return Ok(false);
        };
        let endpoint = self.endpoint(raw, "revocation endpoint")?;
        let what = endpoint_name("revocation endpoint", &endpoint);
        let mut params = vec![
            ("token", token.expose().to_owned()),
            ("token_type_hint", kind.as_str().to_owned()),
        ];
        let request =
            self.authenticated(self.request(Method::POST, &endpoint)?, client, &mut params)?;
        let response = self.http.send(request.form(&params)).await?;
        let status = response.status();
        if status.is_redirection() {
            return Err(OAuthError::Redirect {
                what,
                status: status.as_u16(),
            });
        }
        // RFC 7009 §2.2: 200 whether or not the token was valid; the body is ignored.
        if status.is_success() {
            return Ok(true);
        }
        let body = self.http.read_body(response).await.unwrap_or_default();
        Err(error_answer(&what, status, &body))
    }

    /// Sends a token request with the client's authentication and reads the answer.
    pub(crate) async fn token_request(
        &self,
        endpoint: &Url,
        client: &ClientRegistration,
        mut params: Vec<(&'static str, String)>,
        asked: &[String],
    ) -> Result<TokenSet> {
        let what = endpoint_name("token endpoint", endpoint);
        let request =
            self.authenticated(self.request(Method::POST, endpoint)?, client, &mut params)?;
        let answer: TokenAnswer = self.exchange(&what, request.form(&params)).await?;
        let token_type = answer.token_type.unwrap_or_else(|| "Bearer".into());
        if !token_type.eq_ignore_ascii_case("bearer") {
            return Err(OAuthError::InvalidResponse {
                what,
                reason: format!("it issued a {token_type} token; only Bearer tokens are supported"),
            });
        }
        if answer.access_token.expose().is_empty() {
            return Err(OAuthError::InvalidResponse {
                what,
                reason: "it issued an empty access token".into(),
            });
        }
        let obtained_at = now();
        let expires_at = answer
            .expires_in
            .as_ref()
            .and_then(seconds)
            .map(|s| obtained_at.plus_seconds(s));
        let scopes = match answer.scope.as_deref() {
            Some(granted) => split_scopes(granted),
            None => asked.to_vec(),
        };
        Ok(TokenSet {
            access_token: answer.access_token,
            token_type: "Bearer".into(),
            refresh_token: answer.refresh_token.filter(|t| !t.expose().is_empty()),
            expires_at,
            scopes,
            obtained_at,
        })
    }

    /// Adds the client's authentication to a token or revocation request (RFC 6749 §2.3.1):
    /// HTTP Basic, or `client_id` (and `client_secret`) in the body.
    pub(crate) fn authenticated(
        &self,
        request: reqwest::RequestBuilder,
        client: &ClientRegistration,
        params: &mut Vec<(&'static str, String)>,
    ) -> Result<reqwest::RequestBuilder> {
        let secret = || {
            client
                .client_secret
                .as_ref()
                .map(|s| s.expose().to_owned())
                .ok_or_else(|| OAuthError::Invalid {
                    field: "client_secret".into(),
                    reason: format!("{} needs a client secret", client.auth_method),
                })
        };
        Ok(match client.auth_method {
            TokenEndpointAuth::None => {
                params.push(("client_id", client.client_id.clone()));
                request
            }
            TokenEndpointAuth::ClientSecretPost => {
                params.push(("client_id", client.client_id.clone()));
                params.push(("client_secret", secret()?));
                request
            }
            TokenEndpointAuth::ClientSecretBasic => {
                let mut value =
                    HeaderValue::from_str(&basic_credentials(&client.client_id, &secret()?))
                        .map_err(|_| OAuthError::Invalid {
                            field: "client_id".into(),
                            reason: "cannot be sent in a header".into(),
                        })?;
                value.set_sensitive(true);
                request.header(AUTHORIZATION, value)
            }
        })
    }
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))`: RFC 6749 §2.3.1 encodes both parts
/// with the form encoding first, so a `:` in the id cannot split the pair wrongly.
pub(crate) fn basic_credentials(client_id: &str, secret: &str) -> String {
    let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", encode(client_id), encode(secret));
    format!("Basic {}", STANDARD.encode(pair))
}

/// `expires_in` as seconds: a JSON number, or a numeric string from sloppy servers.
fn seconds(value: &Value) -> Option<i64> {
    let n = match value {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }?;
    (n >= 0).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_encoded_first() {
        assert_eq!(
            basic_credentials("pre-registered-client", "pre-registered-secret"),
            format!(
                "Basic {}",
                STANDARD.encode("pre-registered-client:pre-registered-secret")
            )
        );
        assert_eq!(
            basic_credentials("a:b", "p w&"),
            format!("Basic {}", STANDARD.encode("a%3Ab:p+w%26"))
        );
    }

    #[test]
    fn expires_in_is_read_leniently() {
        assert_eq!(seconds(&serde_json::json!(3600)), Some(3600));
        assert_eq!(seconds(&serde_json::json!("60")), Some(60));
        assert_eq!(seconds(&serde_json::json!(1.5)), Some(1));
        assert_eq!(seconds(&serde_json::json!(-5)), None);
        assert_eq!(seconds(&serde_json::json!("soon")), None);
    }

    #[test]
    fn token_sets_hide_their_secrets_and_know_their_expiry() {
        let t = TokenSet {
            access_token: Secret::new("at-123"),
            token_type: "Bearer".into(),
            refresh_token: Some(Secret::new("rt-456")),
            expires_at: Some(Timestamp::from_millis(100_000)),
            scopes: vec!["mcp".into()],
            obtained_at: Timestamp::from_millis(0),
        };
        let shown = format!("{t:?}");
        assert!(
            !shown.contains("at-123") && !shown.contains("rt-456"),
            "{shown}"
        );
        assert_eq!(t.authorization(), "Bearer at-123");
        assert!(!t.expires_within(Timestamp::from_millis(0), 60));
        assert!(t.expires_within(Timestamp::from_millis(50_000), 60));
        let back: TokenSet = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        assert_eq!(back, t);
    }
}
