//! `AuthClient`: the settings of Switchboard as an OAuth client, and the HTTP plumbing every
//! operation shares (one `SafeClient`, scheme rules, bounded bodies, OAuth error answers).

use std::time::Duration;

use reqwest::header::{ACCEPT, HeaderValue};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use switchboard_domain::HttpAllowance;
use switchboard_net::{ClientOptions, Redirects, SafeClient};
use url::Url;

use crate::error::{OAuthError, Result, shorten};

/// How Switchboard registers itself with OAuth clients' registries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplicationType {
    /// A web application on a non-local host: the platform.
    #[default]
    Web,
    /// A native application or a tool on the local machine.
    Native,
}

impl ApplicationType {
    /// The `application_type` value (OpenID Connect Dynamic Client Registration §2).
    pub fn as_str(self) -> &'static str {
        match self {
            ApplicationType::Web => "web",
            ApplicationType::Native => "native",
        }
    }
}

/// Who Switchboard is, as an OAuth client, and which rules it keeps.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The name shown on consent pages (`client_name`).
    pub client_name: String,
    /// Where authorization servers send the person back: the platform's OAuth callback.
    pub redirect_uri: Url,
    /// The https URL at which the platform serves its client ID metadata document (see
    /// [`AuthClient::metadata_document`]); `None` when it serves none. It is the `client_id`
    /// at authorization servers that accept such documents.
    pub metadata_document_url: Option<Url>,
    /// The platform's home page (`client_uri`), if it has one.
    pub client_uri: Option<Url>,
    /// `application_type` in dynamic registrations.
    pub application_type: ApplicationType,
    /// Where plain `http` may be used for OAuth documents and endpoints; everywhere else
    /// must be https. The same rule as for connector URLs (`security.allow_http_hosts`).
    pub http: HttpAllowance,
    /// Ask for `offline_access` (a refresh token) where the authorization server lists it.
    pub offline_access: bool,
    /// Fall back to the 2025-03-26 revision's discovery for servers without
    /// protected-resource metadata: the authorization-server metadata at the MCP server's
    /// origin, then the default `/authorize`, `/token` and `/register` endpoints there.
    pub legacy_discovery: bool,
    /// Longest one OAuth request may take.
    pub timeout: Duration,
    /// Largest OAuth answer accepted, in bytes.
    pub max_body_bytes: usize,
}

impl ClientConfig {
    /// Settings with the defaults: a web application, https only, refresh tokens wanted,
    /// the 2025-03-26 fallbacks on, 30 s per request, 1 MiB per answer.
    pub fn new(client_name: impl Into<String>, redirect_uri: Url) -> Self {
        Self {
            client_name: client_name.into(),
            redirect_uri,
            metadata_document_url: None,
            client_uri: None,
            application_type: ApplicationType::Web,
            http: HttpAllowance::default(),
            offline_access: true,
            legacy_discovery: true,
            timeout: Duration::from_secs(30),
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// Switchboard's OAuth client: auth detection, discovery, registration, the authorization
/// code flow, refresh and revocation, all through one [`SafeClient`].
///
/// Cheap to clone. Holds no per-connector state: what must survive between calls
/// ([`crate::AuthServer`], [`crate::ClientRegistration`], [`crate::PendingAuthorization`],
/// [`crate::TokenSet`]) is returned to the caller to store.
#[derive(Debug, Clone)]
pub struct AuthClient {
    pub(crate) http: SafeClient,
    pub(crate) config: ClientConfig,
}

impl AuthClient {
    /// A client that reaches servers under the same destination rules as `http` (its
    /// allowlist and user agent), with its own limits: the configured timeout and body limit,
    /// and redirects followed only within the origin requested (307 and 308), so an OAuth
    /// request never lands at another origin and a POST never turns into a GET.
    pub fn new(http: &SafeClient, config: ClientConfig) -> Result<Self> {
        check_config(&config)?;
        let options = ClientOptions {
            connect_timeout: http.options().connect_timeout.min(config.timeout),
            total_timeout: Some(config.timeout),
            idle_timeout: None,
            max_body_bytes: config.max_body_bytes,
            redirects: Redirects::SameOrigin,
            max_redirects: 3,
            user_agent: http.options().user_agent.clone(),
        };
        let http = SafeClient::new(http.destinations().clone(), options)?;
        Ok(Self { http, config })
    }

    /// The settings.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The HTTP client every request goes through.
    pub fn http(&self) -> &SafeClient {
        &self.http
    }

    /// Refuses `url` unless it is https, or plain http to a host the operator allows, and
    /// passes the SSRF checks that need no network (a literal private address, say).
    pub(crate) fn check_endpoint(&self, url: &Url, which: &str) -> Result<()> {
        let host = url.host_str().unwrap_or_default().to_owned();
        match url.scheme() {
            "https" => {}
            "http" if url.host().is_some_and(|h| self.config.http.permits(&h)) => {}
            _ => {
                return Err(OAuthError::InsecureEndpoint {
                    which: which.to_owned(),
                    host,
                });
            }
        }
        self.http.check_url(url)?;
        Ok(())
    }

    /// Parses and checks an endpoint URL taken from metadata.
    pub(crate) fn endpoint(&self, raw: &str, which: &str) -> Result<Url> {
        let url = Url::parse(raw).map_err(|e| OAuthError::InvalidResponse {
            what: "the authorization-server metadata".into(),
            reason: format!("the {which} is not a URL ({e})"),
        })?;
        if url.fragment().is_some() {
            return Err(OAuthError::InvalidResponse {
                what: "the authorization-server metadata".into(),
                reason: format!("the {which} has a fragment"),
            });
        }
        self.check_endpoint(&url, which)?;
        Ok(url)
    }

    pub(crate) fn request(&self, method: Method, url: &Url) -> Result<RequestBuilder> {
        Ok(self
            .http
            .request(method, url)?
            .header(ACCEPT, HeaderValue::from_static("application/json")))
    }

    /// Sends a request to an OAuth endpoint (`what` names it in errors) and decodes a JSON
    /// success answer. Redirects that came back (another origin, or a 301-303) are refused;
    /// error answers are read as OAuth errors.
    pub(crate) async fn exchange<T: DeserializeOwned>(
        &self,
        what: &str,
        request: RequestBuilder,
    ) -> Result<T> {
        let response = self.http.send(request).await?;
        let status = response.status();
        if status.is_redirection() {
            return Err(OAuthError::Redirect {
                what: what.to_owned(),
                status: status.as_u16(),
            });
        }
        let body = self.http.read_body(response).await?;
        if !status.is_success() {
            return Err(error_answer(what, status, &body));
        }
        serde_json::from_slice(&body).map_err(|e| OAuthError::InvalidResponse {
            what: what.to_owned(),
            // serde's message may quote the body, which may hold a token: say where only.
            reason: format!(
                "not the expected JSON (line {}, column {})",
                e.line(),
                e.column()
            ),
        })
    }
}

fn check_config(config: &ClientConfig) -> Result<()> {
    let invalid = |field: &str, reason: &str| OAuthError::Invalid {
        field: field.to_owned(),
        reason: reason.to_owned(),
    };
    if config.client_name.trim().is_empty() {
        return Err(invalid("client_name", "must not be empty"));
    }
    if config.redirect_uri.fragment().is_some() {
        return Err(invalid(
            "redirect_uri",
            "must not have a fragment (RFC 6749 §3.1.2)",
        ));
    }
    if let Some(doc) = &config.metadata_document_url {
        // draft-ietf-oauth-client-id-metadata-document §3: https, with a path, no fragment,
        // no credentials.
        if doc.scheme() != "https"
            || doc.path().trim_matches('/').is_empty()
            || doc.fragment().is_some()
            || !doc.username().is_empty()
            || doc.password().is_some()
        {
            return Err(invalid(
                "metadata_document_url",
                "must be an https URL with a path, without fragment or credentials",
            ));
        }
    }
    Ok(())
}

/// An error answer of an OAuth endpoint, sorted into passing and final.
///
/// RFC 6749 §5.2 answers carry `{"error": "...", "error_description": "..."}`. 5xx, 429 and
/// 408, and the `temporarily_unavailable` and `server_error` codes, pass; anything else is the
/// server's final word on this request.
pub(crate) fn error_answer(what: &str, status: StatusCode, body: &[u8]) -> OAuthError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(name))
            .and_then(Value::as_str)
            .map(shorten)
            .filter(|s| !s.is_empty())
    };
    let error = field("error");
    let description = field("error_description");
    let code = status.as_u16();
    let passing_status = status.is_server_error() || matches!(code, 408 | 425 | 429);
    let passing_code = matches!(
        error.as_deref(),
        Some("temporarily_unavailable" | "server_error")
    );
    if passing_status || passing_code {
        let reason = match (&error, &description) {
            (Some(e), Some(d)) => format!("HTTP {code}, {e} ({d})"),
            (Some(e), None) => format!("HTTP {code}, {e}"),
            _ => format!("HTTP {code}"),
        };
        return OAuthError::Unavailable {
            what: what.to_owned(),
            reason,
        };
    }
    OAuthError::Rejected {
        what: what.to_owned(),
        error: error.unwrap_or_else(|| format!("HTTP {code}")),
        description,
    }
}

/// Names an endpoint in errors: `the token endpoint at auth.example.com`.
pub(crate) fn endpoint_name(which: &str, url: &Url) -> String {
    format!("the {which} at {}", url.host_str().unwrap_or("the server"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauth_error_answers_are_sorted() {
        let final_ = error_answer(
            "the token endpoint",
            StatusCode::BAD_REQUEST,
            br#"{"error":"invalid_grant","error_description":"expired"}"#,
        );
        assert!(final_.is_grant_lost() && !final_.is_retryable(), "{final_}");
        let passing = error_answer(
            "the token endpoint",
            StatusCode::SERVICE_UNAVAILABLE,
            b"<html>down</html>",
        );
        assert!(passing.is_retryable(), "{passing}");
        assert_eq!(
            passing.to_string(),
            "the token endpoint is unavailable for now: HTTP 503"
        );
        let limited = error_answer("x", StatusCode::TOO_MANY_REQUESTS, b"");
        assert!(limited.is_retryable());
        let busy = error_answer(
            "x",
            StatusCode::BAD_REQUEST,
            br#"{"error":"temporarily_unavailable"}"#,
        );
        assert!(busy.is_retryable());
        let bare = error_answer("x", StatusCode::UNAUTHORIZED, b"nope");
        assert_eq!(
            bare,
            OAuthError::Rejected {
                what: "x".into(),
                error: "HTTP 401".into(),
                description: None
            }
        );
    }

    #[test]
    fn configuration_is_checked() {
        let cb = Url::parse("https://sb.example/oauth/callback").unwrap();
        assert!(check_config(&ClientConfig::new("Switchboard", cb.clone())).is_ok());
        let mut bad = ClientConfig::new("Switchboard", cb.clone());
        bad.metadata_document_url =
            Some(Url::parse("http://sb.example/oauth/client.json").unwrap());
        assert!(check_config(&bad).is_err());
        bad.metadata_document_url = Some(Url::parse("https://sb.example/").unwrap());
        assert!(check_config(&bad).is_err());
        bad.metadata_document_url =
            Some(Url::parse("https://sb.example/oauth/client.json").unwrap());
        assert!(check_config(&bad).is_ok());
        assert!(check_config(&ClientConfig::new(" ", cb)).is_err());
    }
}
