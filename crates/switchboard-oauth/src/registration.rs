//! Obtaining a client identity at an authorization server, in MCP's order ("Client
//! Registration"): a pre-registered client the admin entered, then a client ID metadata
//! document the platform serves, then dynamic client registration (RFC 7591).

use std::fmt;

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use switchboard_domain::{ClientSource, Timestamp};

use crate::client::{AuthClient, endpoint_name};
use crate::discovery::AuthServer;
use crate::error::{OAuthError, Result};
use crate::secret::Secret;

/// How the client authenticates at the token endpoint (RFC 7591 §2,
/// `token_endpoint_auth_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TokenEndpointAuth {
    /// A public client: only `client_id` in the request body.
    #[serde(rename = "none")]
    None,
    /// HTTP Basic with the client id and secret (RFC 6749 §2.3.1).
    #[serde(rename = "client_secret_basic")]
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the request body.
    #[serde(rename = "client_secret_post")]
    ClientSecretPost,
}

impl TokenEndpointAuth {
    /// The registered name.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenEndpointAuth::None => "none",
            TokenEndpointAuth::ClientSecretBasic => "client_secret_basic",
            TokenEndpointAuth::ClientSecretPost => "client_secret_post",
        }
    }

    /// The method named `name`, if it is one this client implements.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "none" => Some(TokenEndpointAuth::None),
            "client_secret_basic" => Some(TokenEndpointAuth::ClientSecretBasic),
            "client_secret_post" => Some(TokenEndpointAuth::ClientSecretPost),
            _ => None,
        }
    }

    /// Whether the method needs a client secret.
    pub fn needs_secret(self) -> bool {
        self != TokenEndpointAuth::None
    }
}

impl fmt::Display for TokenEndpointAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A client an admin registered out of band and entered into Switchboard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreRegisteredClient {
    /// The authorization server it was registered with. When set, it must be the server
    /// discovery finds: credentials of one server are never shown to another (MCP
    /// "Authorization Server Binding").
    pub issuer: Option<String>,
    /// The client id.
    pub client_id: String,
    /// The client secret, for a confidential client.
    pub client_secret: Option<Secret>,
    /// The token endpoint authentication method; when absent, chosen from what the server
    /// offers and whether there is a secret.
    pub auth_method: Option<TokenEndpointAuth>,
}

/// A client identity at one authorization server: stored (sealed, it may hold a secret) and
/// used for every authorization, token, refresh and revocation request there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRegistration {
    /// The authorization server's issuer. The registration is valid there only.
    pub issuer: String,
    /// The client id (a URL for a client ID metadata document).
    pub client_id: String,
    /// The client secret, if the client has one.
    pub client_secret: Option<Secret>,
    /// How the client authenticates at the token endpoint.
    pub auth_method: TokenEndpointAuth,
    /// How the identity was obtained.
    pub source: ClientSource,
    /// The redirect URI registered with it.
    pub redirect_uri: String,
    /// When the secret expires, if the server said (RFC 7591 `client_secret_expires_at`).
    pub secret_expires_at: Option<Timestamp>,
}

impl ClientRegistration {
    /// Whether this registration belongs to `server`'s authorization server. When the
    /// protected resource moves to another authorization server, the old registration must
    /// not be used there: register again (MCP "Authorization Server Binding").
    pub fn is_for(&self, server: &AuthServer) -> bool {
        // A metadata-document client id would be portable, but "registering" one costs no
        // request, so every registration is simply bound to its issuer.
        self.issuer == server.issuer
    }
}

impl AuthClient {
    /// Obtains a client identity at `server`'s authorization server: `pre_registered` when
    /// given, else the client ID metadata document when the server accepts one and the
    /// platform serves one, else dynamic registration. Only dynamic registration makes a
    /// request.
    pub async fn register(
        &self,
        server: &AuthServer,
        pre_registered: Option<&PreRegisteredClient>,
    ) -> Result<ClientRegistration> {
        if let Some(pre) = pre_registered {
            return self.use_pre_registered(server, pre);
        }
        if server.registration.metadata_document
            && let Some(url) = &self.config.metadata_document_url
        {
            return Ok(ClientRegistration {
                issuer: server.issuer.clone(),
                client_id: url.to_string(),
                client_secret: None,
                auth_method: TokenEndpointAuth::None,
                source: ClientSource::MetadataDocument,
                redirect_uri: self.config.redirect_uri.to_string(),
                secret_expires_at: None,
            });
        }
        if let Some(endpoint) = &server.metadata.registration_endpoint {
            return self.register_dynamically(server, endpoint).await;
        }
        let reason = if server.registration.metadata_document {
            "it accepts only client ID metadata documents, and none is configured, or a \
             pre-registered client"
        } else {
            "it offers neither client ID metadata documents nor dynamic registration; enter a \
             pre-registered client"
        };
        Err(OAuthError::NoRegistration {
            issuer: server.issuer.clone(),
            reason: reason.into(),
        })
    }

    /// The client ID metadata document the platform serves at
    /// [`crate::ClientConfig::metadata_document_url`]
    /// (draft-ietf-oauth-client-id-metadata-document): `client_id` equal to that URL, the
    /// name, the redirect URI, the grant types, and no client secret (`none`). `None` when no
    /// URL is configured.
    pub fn metadata_document(&self) -> Option<Value> {
        let url = self.config.metadata_document_url.as_ref()?;
        let mut doc = json!({
            "client_id": url.as_str(),
            "client_name": self.config.client_name,
            "redirect_uris": [self.config.redirect_uri.as_str()],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            "application_type": self.config.application_type.as_str(),
        });
        if let Some(home) = &self.config.client_uri {
            doc["client_uri"] = json!(home.as_str());
        }
        Some(doc)
    }

    fn use_pre_registered(
        &self,
        server: &AuthServer,
        pre: &PreRegisteredClient,
    ) -> Result<ClientRegistration> {
        if let Some(issuer) = &pre.issuer
            && issuer.trim_end_matches('/') != server.issuer.trim_end_matches('/')
        {
            return Err(OAuthError::ClientMismatch {
                expected: server.issuer.clone(),
                registered: issuer.clone(),
            });
        }
        if pre.client_id.is_empty() {
            return Err(OAuthError::Invalid {
                field: "client_id".into(),
                reason: "must not be empty".into(),
            });
        }
        let has_secret = pre
            .client_secret
            .as_ref()
            .is_some_and(|s| !s.expose().is_empty());
        let auth_method = match pre.auth_method {
            Some(method) => method,
            None => choose_auth_method(&server.metadata.token_auth_methods(), has_secret),
        };
        if auth_method.needs_secret() && !has_secret {
            return Err(OAuthError::Invalid {
                field: "client_secret".into(),
                reason: format!("{auth_method} needs a client secret"),
            });
        }
        Ok(ClientRegistration {
            issuer: server.issuer.clone(),
            client_id: pre.client_id.clone(),
            client_secret: pre.client_secret.clone().filter(|_| has_secret),
            auth_method,
            source: ClientSource::Preregistered,
            redirect_uri: self.config.redirect_uri.to_string(),
            secret_expires_at: None,
        })
    }

    /// RFC 7591 §3: POSTs the client's metadata to the registration endpoint.
    async fn register_dynamically(
        &self,
        server: &AuthServer,
        endpoint: &str,
    ) -> Result<ClientRegistration> {
        let url = self.endpoint(endpoint, "registration endpoint")?;
        let what = endpoint_name("registration endpoint", &url);
        let wanted = choose_auth_method(&server.metadata.token_auth_methods(), true);
        let mut body = json!({
            "client_name": self.config.client_name,
            "redirect_uris": [self.config.redirect_uri.as_str()],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": wanted.as_str(),
            "application_type": self.config.application_type.as_str(),
        });
        if let Some(home) = &self.config.client_uri {
            body["client_uri"] = json!(home.as_str());
        }
        if !server.scopes.is_empty() {
            body["scope"] = json!(server.scopes.join(" "));
        }
        let request = self.request(Method::POST, &url)?.json(&body);
        let answer: RegistrationAnswer = self.exchange(&what, request).await?;
        if answer.client_id.is_empty() {
            return Err(OAuthError::InvalidResponse {
                what,
                reason: "the answer has an empty client_id".into(),
            });
        }
        let secret = answer.client_secret.filter(|s| !s.expose().is_empty());
        let auth_method = match answer.token_endpoint_auth_method.as_deref() {
            Some(name) => {
                TokenEndpointAuth::from_name(name).ok_or_else(|| OAuthError::InvalidResponse {
                    what: what.clone(),
                    reason: format!("it assigned the unsupported authentication method {name}"),
                })?
            }
            // RFC 7591 §3.2.1: the server returns every registered value, so a missing one
            // means it took what was asked, as far as a secret allows.
            None if secret.is_none() => TokenEndpointAuth::None,
            None => wanted,
        };
        if auth_method.needs_secret() && secret.is_none() {
            return Err(OAuthError::InvalidResponse {
                what,
                reason: format!("it assigned {auth_method} but issued no client secret"),
            });
        }
        Ok(ClientRegistration {
            issuer: server.issuer.clone(),
            client_id: answer.client_id,
            client_secret: secret,
            auth_method,
            source: ClientSource::Dynamic,
            redirect_uri: self.config.redirect_uri.to_string(),
            // 0 means "does not expire" (RFC 7591 §3.2.1).
            secret_expires_at: answer
                .client_secret_expires_at
                .filter(|&at| at > 0)
                .map(|at| Timestamp::from_millis(at.saturating_mul(1000))),
        })
    }
}

#[derive(Deserialize)]
struct RegistrationAnswer {
    client_id: String,
    #[serde(default)]
    client_secret: Option<Secret>,
    #[serde(default)]
    token_endpoint_auth_method: Option<String>,
    #[serde(default)]
    client_secret_expires_at: Option<i64>,
}

/// Picks the token endpoint authentication method: a confidential method the server offers
/// when there is a secret (HTTP Basic first, the method every server must support), else
/// `none`.
fn choose_auth_method(offered: &[String], has_secret: bool) -> TokenEndpointAuth {
    let offers = |m: TokenEndpointAuth| offered.iter().any(|o| o == m.as_str());
    if has_secret {
        for method in [
            TokenEndpointAuth::ClientSecretBasic,
            TokenEndpointAuth::ClientSecretPost,
        ] {
            if offers(method) {
                return method;
            }
        }
    }
    if offers(TokenEndpointAuth::None) || !has_secret {
        return TokenEndpointAuth::None;
    }
    // A secret and no method in common: Basic is the default of RFC 8414 §2.
    TokenEndpointAuth::ClientSecretBasic
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn auth_method_follows_the_server_and_the_secret() {
        use TokenEndpointAuth::*;
        assert_eq!(
            choose_auth_method(&s(&["client_secret_basic"]), true),
            ClientSecretBasic
        );
        assert_eq!(
            choose_auth_method(&s(&["client_secret_post"]), true),
            ClientSecretPost
        );
        assert_eq!(
            choose_auth_method(&s(&["client_secret_post", "client_secret_basic"]), true),
            ClientSecretBasic
        );
        assert_eq!(choose_auth_method(&s(&["none"]), true), None);
        assert_eq!(
            choose_auth_method(&s(&["client_secret_basic"]), false),
            None
        );
        assert_eq!(
            choose_auth_method(&s(&["private_key_jwt"]), true),
            ClientSecretBasic
        );
    }

    #[test]
    fn auth_methods_serialize_by_their_registered_names() {
        for m in [
            TokenEndpointAuth::None,
            TokenEndpointAuth::ClientSecretBasic,
            TokenEndpointAuth::ClientSecretPost,
        ] {
            let json = serde_json::to_value(m).unwrap();
            assert_eq!(json, json!(m.as_str()));
            assert_eq!(TokenEndpointAuth::from_name(m.as_str()), Some(m));
        }
        assert_eq!(
            TokenEndpointAuth::from_name("private_key_jwt"),
            Option::None
        );
    }
}
