//! Auth detection and OAuth discovery, each step written down with its evidence.
//!
//! Detection (what a connector's server wants) starts with an unauthenticated request:
//!
//! - a 2xx means no credentials are needed;
//! - a 401 or 403 with a `Basic` challenge and no `Bearer` one means HTTP Basic;
//! - otherwise OAuth discovery runs: protected-resource metadata (RFC 9728: the
//!   `resource_metadata` URL of the challenge, then the path-aware well-known URL, then the
//!   root one), then the authorization-server metadata of the issuer it names (RFC 8414 and
//!   OpenID Connect Discovery, in MCP's order), whose `issuer` must match. Found: OAuth. No
//!   metadata anywhere: a token is needed (bearer).
//!
//! Discovery alone ([`AuthClient::discover`]) is what the OAuth flow needs after a 401; it
//! also knows the 2025-03-26 revision's fallbacks for servers without protected-resource
//! metadata.

use std::time::Instant;

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use switchboard_domain::AuthMethod;
use url::Url;

use crate::challenge::{self, Challenge};
use crate::client::AuthClient;
use crate::error::{OAuthError, Result};
use crate::metadata::{
    AuthServerMetadata, MetadataKind, ProtectedResourceMetadata, authorization_server_urls,
    canonical_resource, display_url, issuer_matches, origin_string, protected_resource_urls,
    resource_covers,
};
use crate::scope;

/// How one step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The step found what it looked for, or its answer decided the method.
    Found,
    /// Nothing there (404 and the like); the next place is tried.
    NotFound,
    /// An answer came, but it is unusable or fails a required check.
    Invalid,
    /// The safety rules refused the request (SSRF rules, plain http).
    Refused,
    /// The request failed: network trouble, timeouts, 5xx.
    Failed,
}

/// A response header that decided a step, for the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisiveHeader {
    /// The header name, lowercase.
    pub name: String,
    /// Its value.
    pub value: String,
}

/// One step of detection or discovery, written so a person can follow it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// What the step was, such as `protected_resource_metadata`.
    pub name: String,
    /// The URL requested, without query string or credentials.
    pub url: Option<String>,
    /// The HTTP status of the answer, if one came.
    pub status: Option<u16>,
    /// The header that decided the step, such as the `WWW-Authenticate` challenge.
    pub header: Option<DecisiveHeader>,
    /// How it ended.
    pub outcome: Outcome,
    /// How long it took, in milliseconds.
    pub millis: u64,
    /// What happened, in plain words.
    pub reason: String,
}

/// How the authorization server was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscoverySource {
    /// Protected-resource metadata named it (the current revisions).
    ProtectedResource,
    /// No protected-resource metadata; authorization-server metadata at the MCP server's
    /// origin (the 2025-03-26 revision).
    LegacyMetadata,
    /// No metadata at all; the default endpoints at the MCP server's origin (the 2025-03-26
    /// revision's last fallback).
    LegacyDefaults,
}

/// How a client can obtain an identity at the authorization server. A pre-registered client
/// (entered by an admin) is always possible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationOptions {
    /// The server accepts client ID metadata documents (URL-formatted client ids).
    pub metadata_document: bool,
    /// The server offers dynamic client registration (RFC 7591).
    pub dynamic: bool,
}

impl RegistrationOptions {
    /// Neither: only a pre-registered client will do.
    pub fn pre_registered_only(&self) -> bool {
        !self.metadata_document && !self.dynamic
    }
}

/// Everything discovery learned about a connector's authorization: stored (as JSON) with the
/// connector, used to register and to authorize.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthServer {
    /// The canonical resource identifier: sent as `resource` (RFC 8707) in every
    /// authorization, token and refresh request, exactly as the metadata publishes it.
    pub resource: String,
    /// Where the protected-resource metadata was found.
    pub resource_metadata_url: Option<String>,
    /// The protected-resource metadata, when the server publishes it.
    pub resource_metadata: Option<ProtectedResourceMetadata>,
    /// The authorization server's issuer identifier, as its metadata states it: the value
    /// an authorization response's `iss` must equal.
    pub issuer: String,
    /// Where the authorization-server metadata was found (`None` for the default endpoints).
    pub metadata_url: Option<String>,
    /// Which well-known document that was.
    pub metadata_kind: Option<MetadataKind>,
    /// The authorization-server metadata (for the default endpoints, the defaults).
    pub metadata: AuthServerMetadata,
    /// How the authorization server was found.
    pub source: DiscoverySource,
    /// The scopes to ask for in a first authorization (empty: no `scope` parameter).
    pub scopes: Vec<String>,
    /// What registration the authorization server offers.
    pub registration: RegistrationOptions,
}

impl AuthServer {
    /// Whether the authorization server promised `iss` in authorization responses.
    pub fn iss_parameter_supported(&self) -> bool {
        self.metadata
            .authorization_response_iss_parameter_supported
            .unwrap_or(false)
    }
}

/// What detection found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// The recommended method: `none`, `bearer`, `basic`, `oauth`, or `unknown` when the
    /// server could not be asked (see `problem`).
    pub method: AuthMethod,
    /// Every step taken, in order.
    pub steps: Vec<Evidence>,
    /// The OAuth details, when discovery succeeded.
    pub oauth: Option<AuthServer>,
    /// The challenges of the 401 or 403, if one came.
    pub challenges: Vec<Challenge>,
    /// Why detection is incomplete or why the advertised OAuth setup cannot be used.
    pub problem: Option<String>,
}

/// The body of the unauthenticated request: an `initialize` request, which every
/// session-based server answers and which needs credentials wherever anything does. A
/// stateless server that does not know it still has to check credentials first.
fn probe_body() -> serde_json::Value {
    serde_json::json!({
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "switchboard-auth-detection", "version": env!("CARGO_PKG_VERSION")}
        }
    })
}

/// A fetched document, sorted.
enum Fetched<T> {
    Found(T),
    Missing,
    Unusable(String),
    Failed(OAuthError),
}

impl AuthClient {
    /// Finds out how `server` wants to be authenticated, sending `headers` with the first
    /// request (credentials to test, or none). Never fails: what could not be learned is in
    /// [`Detection::problem`], and every request made is in [`Detection::steps`].
    pub async fn detect(&self, server: &Url, headers: &[(String, String)]) -> Detection {
        let mut steps = Vec::new();
        let mut detection = Detection {
            method: AuthMethod::Unknown,
            steps: Vec::new(),
            oauth: None,
            challenges: Vec::new(),
            problem: None,
        };
        let mut answer = self
            .probe_request(server, headers, Method::POST, &mut steps)
            .await;
        // A status other than 2xx, 401 or 403 may be a server of the old HTTP+SSE transport,
        // which is reached with a GET.
        if matches!(answer, Ok((status, _)) if !decisive(status)) {
            answer = self
                .probe_request(server, headers, Method::GET, &mut steps)
                .await;
        }
        match answer {
            Err(e) => detection.problem = Some(e.to_string()),
            Ok((status, _)) if status.is_success() => detection.method = AuthMethod::None,
            Ok((status, challenge)) if decisive(status) => {
                let challenges = challenge
                    .as_deref()
                    .map(challenge::parse)
                    .unwrap_or_default();
                let bearer = challenge::bearer(&challenges).is_some();
                let basic = challenges.iter().any(|c| c.is_scheme("Basic"));
                detection.challenges = challenges;
                if basic && !bearer {
                    detection.method = AuthMethod::Basic;
                } else {
                    match self
                        .discover_inner(server, challenge.as_deref(), &mut steps, false)
                        .await
                    {
                        Ok(found) => {
                            detection.method = AuthMethod::Oauth;
                            detection.oauth = Some(found);
                        }
                        Err(OAuthError::NoMetadata(_)) => {
                            detection.method = if basic {
                                AuthMethod::Basic
                            } else {
                                AuthMethod::Bearer
                            };
                        }
                        Err(e) if e.is_retryable() => detection.problem = Some(e.to_string()),
                        Err(e) => {
                            // The server advertises OAuth, but its setup cannot be used
                            // safely; say why rather than fall back to something else.
                            detection.method = AuthMethod::Oauth;
                            detection.problem = Some(e.to_string());
                        }
                    }
                }
            }
            Ok((status, _)) => {
                detection.problem = Some(format!(
                    "the server answered HTTP {} without asking for credentials or accepting the \
                     request, so the method could not be told",
                    status.as_u16()
                ));
            }
        }
        detection.steps = steps;
        detection
    }

    /// OAuth discovery for `server` after it answered 401 or 403 with `challenge` (the
    /// `WWW-Authenticate` value, if any): the protected-resource metadata, the
    /// authorization-server metadata and its checks, the scopes to ask for, the registration
    /// offered. Falls back to the 2025-03-26 discovery when configured.
    pub async fn discover(&self, server: &Url, challenge: Option<&str>) -> Result<AuthServer> {
        let mut steps = Vec::new();
        self.discover_recorded(server, challenge, &mut steps).await
    }

    /// [`AuthClient::discover`], appending each step to `steps`.
    pub async fn discover_recorded(
        &self,
        server: &Url,
        challenge: Option<&str>,
        steps: &mut Vec<Evidence>,
    ) -> Result<AuthServer> {
        self.discover_inner(server, challenge, steps, true).await
    }

    /// Sends the unauthenticated request; `Ok((status, www-authenticate))` when an answer
    /// came.
    async fn probe_request(
        &self,
        server: &Url,
        headers: &[(String, String)],
        method: Method,
        steps: &mut Vec<Evidence>,
    ) -> Result<(StatusCode, Option<String>)> {
        let started = Instant::now();
        let name = if method == Method::POST {
            "mcp_request"
        } else {
            "event_stream_request"
        };
        let mut evidence = Evidence {
            name: name.into(),
            url: Some(display_url(server)),
            status: None,
            header: None,
            outcome: Outcome::Failed,
            millis: 0,
            reason: String::new(),
        };
        let result = self.send_probe(server, headers, &method).await;
        evidence.millis = elapsed(started);
        let (status, response_headers) = match result {
            Ok(answer) => answer,
            Err(e) => {
                evidence.outcome = if e.is_blocked() {
                    Outcome::Refused
                } else {
                    Outcome::Failed
                };
                evidence.reason = e.to_string();
                steps.push(evidence);
                return Err(e);
            }
        };
        evidence.status = Some(status.as_u16());
        let challenge = joined(&response_headers, WWW_AUTHENTICATE.as_str());
        if let Some(value) = &challenge {
            evidence.header = Some(DecisiveHeader {
                name: "www-authenticate".into(),
                value: value.clone(),
            });
        }
        (evidence.outcome, evidence.reason) = if status.is_success() {
            (
                Outcome::Found,
                "the server answered without asking for credentials".into(),
            )
        } else if decisive(status) {
            let reason = match &challenge {
                Some(_) => format!("HTTP {}: the server asks for credentials", status.as_u16()),
                None => format!(
                    "HTTP {}: the server asks for credentials but sent no WWW-Authenticate \
                     challenge",
                    status.as_u16()
                ),
            };
            (Outcome::Found, reason)
        } else {
            (
                Outcome::Invalid,
                format!(
                    "HTTP {}: neither an answer nor a challenge",
                    status.as_u16()
                ),
            )
        };
        steps.push(evidence);
        if status.is_success()
            && let Some(session) = response_headers.get("mcp-session-id")
        {
            // The request opened a session on a session-based server; end it, as a client
            // should (best effort: the server reaps idle sessions anyway).
            if let Ok(mut request) = self.http.request(Method::DELETE, server) {
                request = with_headers(request, headers).header("mcp-session-id", session.clone());
                let _ = self.http.send(request).await;
            }
        }
        Ok((status, challenge))
    }

    async fn send_probe(
        &self,
        server: &Url,
        headers: &[(String, String)],
        method: &Method,
    ) -> Result<(StatusCode, HeaderMap)> {
        let mut request = self.http.request(method.clone(), server)?;
        request = if *method == Method::POST {
            request
                .header(
                    ACCEPT,
                    HeaderValue::from_static("application/json, text/event-stream"),
                )
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(probe_body().to_string())
        } else {
            request.header(ACCEPT, HeaderValue::from_static("text/event-stream"))
        };
        request = with_headers(request, headers);
        let response = self.http.send(request).await?;
        // Only the status and headers matter; dropping the response closes an event stream.
        Ok((response.status(), response.headers().clone()))
    }

    /// Discovery proper. `defaults` allows the last 2025-03-26 fallback (guessing the
    /// endpoints), which only an explicit OAuth attempt should use: detection must not call a
    /// server that publishes no metadata an OAuth server.
    async fn discover_inner(
        &self,
        server: &Url,
        challenge: Option<&str>,
        steps: &mut Vec<Evidence>,
        defaults: bool,
    ) -> Result<AuthServer> {
        let challenges = challenge.map(challenge::parse).unwrap_or_default();
        let bearer = challenge::bearer(&challenges);
        let found = self.protected_resource(server, bearer, steps).await?;
        let (resource, prm_url, prm, (metadata, metadata_url, metadata_kind), source) = match found
        {
            Some((url, prm)) => {
                let found = self.first_usable_issuer(&prm, steps).await?;
                (
                    prm.resource.clone(),
                    Some(display_url(&url)),
                    Some(prm),
                    found,
                    DiscoverySource::ProtectedResource,
                )
            }
            None if !self.config.legacy_discovery => {
                return Err(OAuthError::NoMetadata(
                    "the server publishes no protected-resource metadata".into(),
                ));
            }
            None => {
                let origin = origin_string(server);
                match self.legacy_metadata(&origin, steps, defaults).await? {
                    Some(doc) => (
                        canonical_resource(server),
                        None,
                        None,
                        doc,
                        DiscoverySource::LegacyMetadata,
                    ),
                    None => {
                        let metadata = AuthServerMetadata::defaults_at(&origin);
                        steps.push(Evidence {
                            name: "legacy_default_endpoints".into(),
                            url: None,
                            status: None,
                            header: None,
                            outcome: Outcome::Found,
                            millis: 0,
                            reason: format!(
                                "no metadata anywhere; using the default endpoints /authorize, \
                                 /token and /register at {origin} (MCP 2025-03-26)"
                            ),
                        });
                        (
                            canonical_resource(server),
                            None,
                            None,
                            (metadata, None, None),
                            DiscoverySource::LegacyDefaults,
                        )
                    }
                }
            }
        };
        self.check_usable(&metadata)?;
        let scopes = scope::select(bearer, prm.as_ref(), &metadata, self.config.offline_access);
        let registration = RegistrationOptions {
            metadata_document: metadata.client_id_metadata_document_supported == Some(true),
            dynamic: metadata.registration_endpoint.is_some(),
        };
        Ok(AuthServer {
            resource,
            resource_metadata_url: prm_url,
            resource_metadata: prm,
            issuer: metadata.issuer.clone(),
            metadata_url,
            metadata_kind,
            metadata,
            source,
            scopes,
            registration,
        })
    }

    /// Finds the protected-resource metadata: the challenge's URL, the path-aware well-known
    /// URL, the root one. `Ok(None)` when none is published; an error when one is found but
    /// names another resource, or when nothing answered for network reasons.
    async fn protected_resource(
        &self,
        server: &Url,
        bearer: Option<&Challenge>,
        steps: &mut Vec<Evidence>,
    ) -> Result<Option<(Url, ProtectedResourceMetadata)>> {
        let mut candidates: Vec<(Url, &str)> = Vec::new();
        if let Some(raw) = bearer.and_then(Challenge::resource_metadata) {
            match server.join(raw) {
                Ok(url) => candidates.push((url, "named by the challenge")),
                Err(e) => steps.push(Evidence {
                    name: "protected_resource_metadata".into(),
                    url: None,
                    status: None,
                    header: None,
                    outcome: Outcome::Invalid,
                    millis: 0,
                    reason: format!("the challenge's resource_metadata is not a URL ({e})"),
                }),
            }
        }
        let well_known = protected_resource_urls(server);
        let labels = ["path-aware well-known URL", "root well-known URL"];
        for (url, label) in well_known.into_iter().zip(labels) {
            if !candidates.iter().any(|(u, _)| *u == url) {
                candidates.push((url, label));
            }
        }
        let mut passing: Option<OAuthError> = None;
        let mut unusable: Option<String> = None;
        for (url, label) in candidates {
            let fetched = self
                .fetch_document::<ProtectedResourceMetadata>(
                    &url,
                    "protected_resource_metadata",
                    "protected-resource metadata URL",
                    label,
                    steps,
                )
                .await;
            match fetched {
                Fetched::Found(prm) => {
                    if !resource_covers(&prm.resource, server) {
                        let last = steps.last_mut().expect("fetch_document records a step");
                        last.outcome = Outcome::Invalid;
                        last.reason = format!(
                            "names the resource {}, which is not this server; refusing it \
                             (RFC 9728 §3.3)",
                            prm.resource
                        );
                        return Err(OAuthError::ResourceMismatch {
                            published: prm.resource,
                            expected: display_url(server),
                        });
                    }
                    return Ok(Some((url, prm)));
                }
                Fetched::Failed(e) if e.is_retryable() => passing = Some(e),
                Fetched::Unusable(reason) => unusable = unusable.or(Some(reason)),
                Fetched::Failed(_) | Fetched::Missing => {}
            }
        }
        // A document that is there but broken is reported rather than taken for the absence
        // of one, which would lead to the 2025-03-26 guesses.
        match (passing, unusable) {
            (Some(e), _) => Err(e),
            (None, Some(reason)) => Err(OAuthError::InvalidMetadata {
                document: "protected-resource metadata".into(),
                reason,
            }),
            (None, None) => Ok(None),
        }
    }

    /// The metadata of the first authorization server of `prm` that has usable metadata.
    async fn first_usable_issuer(
        &self,
        prm: &ProtectedResourceMetadata,
        steps: &mut Vec<Evidence>,
    ) -> Result<(AuthServerMetadata, Option<String>, Option<MetadataKind>)> {
        if prm.authorization_servers.is_empty() {
            return Err(OAuthError::InvalidMetadata {
                document: "protected-resource metadata".into(),
                reason: "it lists no authorization server".into(),
            });
        }
        let mut last_error = None;
        // RFC 9728 §7.6 leaves the choice to the client: the first that works, of a few.
        for issuer in prm.authorization_servers.iter().take(4) {
            match self.authorization_server(issuer, steps).await {
                Ok((metadata, url, kind)) => {
                    return Ok((metadata, Some(display_url(&url)), Some(kind)));
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.expect("at least one authorization server was tried"))
    }

    /// Fetches and checks the metadata of the authorization server `issuer`.
    async fn authorization_server(
        &self,
        issuer: &str,
        steps: &mut Vec<Evidence>,
    ) -> Result<(AuthServerMetadata, Url, MetadataKind)> {
        let candidates =
            authorization_server_urls(issuer).map_err(|reason| OAuthError::InvalidMetadata {
                document: "protected-resource metadata".into(),
                reason,
            })?;
        let mut mismatch = None;
        let mut passing = None;
        for (url, kind) in candidates {
            let label = match kind {
                MetadataKind::OAuth => "RFC 8414",
                MetadataKind::OpenId => "OpenID Connect Discovery",
            };
            let fetched = self
                .fetch_document::<AuthServerMetadata>(
                    &url,
                    "authorization_server_metadata",
                    "authorization-server metadata URL",
                    label,
                    steps,
                )
                .await;
            match fetched {
                Fetched::Found(metadata) if issuer_matches(issuer, &metadata.issuer) => {
                    return Ok((metadata, url, kind));
                }
                Fetched::Found(metadata) => {
                    let last = steps.last_mut().expect("fetch_document records a step");
                    last.outcome = Outcome::Invalid;
                    last.reason = format!(
                        "claims the issuer {}, not {issuer}; not used (RFC 8414 §3.3)",
                        metadata.issuer
                    );
                    mismatch = Some(OAuthError::IssuerMismatch {
                        expected: issuer.to_owned(),
                        found: metadata.issuer,
                    });
                }
                Fetched::Failed(e) if e.is_retryable() => passing = Some(e),
                Fetched::Failed(e) if refused(&e) => return Err(e),
                Fetched::Failed(_) | Fetched::Missing | Fetched::Unusable(_) => {}
            }
        }
        Err(mismatch.or(passing).unwrap_or_else(|| {
            OAuthError::NoMetadata(format!(
                "the authorization server {issuer} publishes no metadata"
            ))
        }))
    }

    /// The 2025-03-26 discovery: authorization-server metadata at the MCP server's origin,
    /// which is then the issuer. `Ok(None)` when there is none and `defaults` allows the
    /// default endpoints; without `defaults`, that is [`OAuthError::NoMetadata`].
    async fn legacy_metadata(
        &self,
        origin: &str,
        steps: &mut Vec<Evidence>,
        defaults: bool,
    ) -> Result<Option<(AuthServerMetadata, Option<String>, Option<MetadataKind>)>> {
        let url = Url::parse(&format!("{origin}/.well-known/oauth-authorization-server")).map_err(
            |e| OAuthError::Invalid {
                field: "server URL".into(),
                reason: e.to_string(),
            },
        )?;
        let fetched = self
            .fetch_document::<AuthServerMetadata>(
                &url,
                "legacy_authorization_server_metadata",
                "authorization-server metadata URL",
                "at the MCP server's origin (MCP 2025-03-26)",
                steps,
            )
            .await;
        match fetched {
            Fetched::Found(metadata) if issuer_matches(origin, &metadata.issuer) => Ok(Some((
                metadata,
                Some(display_url(&url)),
                Some(MetadataKind::OAuth),
            ))),
            Fetched::Found(metadata) => {
                let last = steps.last_mut().expect("fetch_document records a step");
                last.outcome = Outcome::Invalid;
                last.reason = format!(
                    "claims the issuer {}, not {origin}; not used (RFC 8414 §3.3)",
                    metadata.issuer
                );
                Err(OAuthError::IssuerMismatch {
                    expected: origin.to_owned(),
                    found: metadata.issuer,
                })
            }
            Fetched::Failed(e) if e.is_retryable() || refused(&e) => Err(e),
            _ if defaults => Ok(None),
            _ => Err(OAuthError::NoMetadata(
                "the server publishes no protected-resource or authorization-server metadata"
                    .into(),
            )),
        }
    }

    /// Checks what the flow needs of an authorization server before anyone is sent to it.
    fn check_usable(&self, metadata: &AuthServerMetadata) -> Result<()> {
        let missing = |member: &str| OAuthError::InvalidMetadata {
            document: "authorization-server metadata".into(),
            reason: format!("it has no {member}"),
        };
        let authorization = metadata
            .authorization_endpoint
            .as_deref()
            .ok_or_else(|| missing("authorization_endpoint"))?;
        let token = metadata
            .token_endpoint
            .as_deref()
            .ok_or_else(|| missing("token_endpoint"))?;
        if let Some(types) = &metadata.response_types_supported
            && !types.iter().any(|t| t == "code")
        {
            return Err(OAuthError::InvalidMetadata {
                document: "authorization-server metadata".into(),
                reason: "it does not offer the authorization code flow (response type code)".into(),
            });
        }
        if !metadata.offers_s256() {
            return Err(OAuthError::PkceUnsupported {
                issuer: metadata.issuer.clone(),
            });
        }
        self.endpoint(authorization, "authorization endpoint")?;
        self.endpoint(token, "token endpoint")?;
        Ok(())
    }

    /// GETs a metadata document, records the step, sorts the outcome.
    async fn fetch_document<T: DeserializeOwned>(
        &self,
        url: &Url,
        name: &str,
        which: &str,
        label: &str,
        steps: &mut Vec<Evidence>,
    ) -> Fetched<T> {
        let started = Instant::now();
        let mut evidence = Evidence {
            name: name.to_owned(),
            url: Some(display_url(url)),
            status: None,
            header: None,
            outcome: Outcome::Failed,
            millis: 0,
            reason: String::new(),
        };
        let result = self.get_document::<T>(url, which).await;
        evidence.millis = elapsed(started);
        let unavailable = |reason: String| OAuthError::Unavailable {
            what: format!("the {which} at {}", url.host_str().unwrap_or("the server")),
            reason,
        };
        let (outcome, reason, fetched) = match result {
            Ok(answer) => {
                evidence.status = Some(answer.status);
                match answer.body {
                    Body::Document(doc) => (Outcome::Found, "found".into(), Fetched::Found(doc)),
                    // A page that is not JSON at all (an HTML catch-all, say) is no document.
                    Body::NotJson => (
                        Outcome::NotFound,
                        "no JSON document there".into(),
                        Fetched::Missing,
                    ),
                    Body::WrongShape(why) => {
                        (Outcome::Invalid, why.clone(), Fetched::Unusable(why))
                    }
                    Body::Redirect => {
                        let why = format!(
                            "HTTP {}: a redirect this client does not follow",
                            answer.status
                        );
                        (Outcome::Invalid, why.clone(), Fetched::Unusable(why))
                    }
                    Body::Status if is_passing(answer.status) => {
                        let why = format!("HTTP {}", answer.status);
                        (
                            Outcome::Failed,
                            why.clone(),
                            Fetched::Failed(unavailable(why)),
                        )
                    }
                    Body::Status => (Outcome::NotFound, "nothing there".into(), Fetched::Missing),
                }
            }
            Err(e) => {
                let outcome = if refused(&e) {
                    Outcome::Refused
                } else {
                    Outcome::Failed
                };
                (outcome, e.to_string(), Fetched::Failed(e))
            }
        };
        evidence.outcome = outcome;
        evidence.reason = format!("{reason} ({label})");
        steps.push(evidence);
        fetched
    }

    /// GETs `url`; `Err` only when no answer came.
    async fn get_document<T: DeserializeOwned>(&self, url: &Url, which: &str) -> Result<Answer<T>> {
        self.check_endpoint(url, which)?;
        let request = self.request(Method::GET, url)?;
        let response = self.http.send(request).await?;
        let status = response.status();
        let body = if status.is_redirection() {
            Body::Redirect
        } else if !status.is_success() {
            Body::Status
        } else {
            let bytes = self.http.read_body(response).await?;
            match serde_json::from_slice::<T>(&bytes) {
                Ok(doc) => Body::Document(doc),
                Err(e) if e.is_data() => Body::WrongShape(format!(
                    "not a valid metadata document (line {}, column {}: a required member is \
                     missing or has the wrong type)",
                    e.line(),
                    e.column()
                )),
                Err(_) => Body::NotJson,
            }
        };
        Ok(Answer {
            status: status.as_u16(),
            body,
        })
    }
}

/// An answer to a metadata GET.
struct Answer<T> {
    status: u16,
    body: Body<T>,
}

enum Body<T> {
    /// 2xx with a document of the expected shape.
    Document(T),
    /// 2xx, JSON, but not the document expected.
    WrongShape(String),
    /// 2xx, not JSON.
    NotJson,
    /// 3xx that came back (another origin, or not 307/308).
    Redirect,
    /// Any other status.
    Status,
}

/// Whether the safety rules (SSRF, https) refused the request: asking elsewhere on the same
/// host would be refused too, and the reason must reach the person.
fn refused(e: &OAuthError) -> bool {
    e.is_blocked() || matches!(e, OAuthError::InsecureEndpoint { .. })
}

/// Statuses after which the same GET may work later.
fn is_passing(status: u16) -> bool {
    status >= 500 || matches!(status, 408 | 425 | 429)
}

/// Whether a probe answer decides the method by itself (401 and 403 ask for credentials).
fn decisive(status: StatusCode) -> bool {
    status.is_success() || matches!(status.as_u16(), 401 | 403)
}

/// Every value of header `name`, joined with `", "` (RFC 9110 §5.3).
fn joined(headers: &HeaderMap, name: &str) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

fn with_headers(
    mut request: reqwest::RequestBuilder,
    headers: &[(String, String)],
) -> reqwest::RequestBuilder {
    for (name, value) in headers {
        if let Ok(mut value) = HeaderValue::from_str(value) {
            value.set_sensitive(true);
            request = request.header(name.as_str(), value);
        }
    }
    request
}

fn elapsed(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}
