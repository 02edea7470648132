//! The two metadata documents of MCP authorization and where to find them:
//! protected-resource metadata (RFC 9728) and authorization-server metadata (RFC 8414, or
//! OpenID Connect Discovery 1.0), with the identity checks each requires.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::Url;

/// Protected-resource metadata (RFC 9728 §2), as an MCP server publishes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProtectedResourceMetadata {
    /// The resource identifier. Sent back verbatim as the `resource` parameter (RFC 8707).
    pub resource: String,
    /// Issuer identifiers of the authorization servers that issue tokens for it.
    #[serde(default)]
    pub authorization_servers: Vec<String>,
    /// Scopes the resource uses; MCP reads it as the minimal set for basic use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes_supported: Option<Vec<String>>,
    /// How tokens may be presented (`header`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_methods_supported: Option<Vec<String>>,
    /// A name for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
    /// Documentation for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_documentation: Option<String>,
    /// Every other member, kept for the probe report.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// Authorization-server metadata (RFC 8414 §2; OpenID Connect Discovery shares these names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthServerMetadata {
    /// The issuer identifier; must equal the one the document was fetched for.
    pub issuer: String,
    /// Where the person is sent to authorize.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_endpoint: Option<String>,
    /// Where codes and refresh tokens are exchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
    /// Dynamic client registration (RFC 7591), if offered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_endpoint: Option<String>,
    /// Token revocation (RFC 7009), if offered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_endpoint: Option<String>,
    /// Scopes the server knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes_supported: Option<Vec<String>>,
    /// Response types; `code` is the one used here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_types_supported: Option<Vec<String>>,
    /// Grant types; absent means `authorization_code` and `implicit` (RFC 8414 §2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_types_supported: Option<Vec<String>>,
    /// PKCE methods; must contain `S256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_challenge_methods_supported: Option<Vec<String>>,
    /// Client authentication methods at the token endpoint; absent means
    /// `client_secret_basic` (RFC 8414 §2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
    /// Client authentication methods at the revocation endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_endpoint_auth_methods_supported: Option<Vec<String>>,
    /// Whether authorization responses carry `iss` (RFC 9207 §3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_response_iss_parameter_supported: Option<bool>,
    /// Whether URL-formatted client ids (client ID metadata documents) are accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id_metadata_document_supported: Option<bool>,
    /// Every other member, kept for the probe report.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl AuthServerMetadata {
    /// Metadata for a server that publishes none (the 2025-03-26 fallback): the default
    /// endpoints at the root of `origin`, which also stands as the issuer.
    pub(crate) fn defaults_at(origin: &str) -> Self {
        Self {
            issuer: origin.to_owned(),
            authorization_endpoint: Some(format!("{origin}/authorize")),
            token_endpoint: Some(format!("{origin}/token")),
            registration_endpoint: Some(format!("{origin}/register")),
            revocation_endpoint: None,
            scopes_supported: None,
            response_types_supported: None,
            grant_types_supported: None,
            // That revision required PKCE with S256 of every server.
            code_challenge_methods_supported: Some(vec!["S256".into()]),
            token_endpoint_auth_methods_supported: None,
            revocation_endpoint_auth_methods_supported: None,
            authorization_response_iss_parameter_supported: None,
            client_id_metadata_document_supported: None,
            other: Map::new(),
        }
    }

    /// Whether PKCE with S256 is offered. An absent list means no PKCE support (MCP
    /// 2025-11-25, "Authorization Code Protection").
    pub fn offers_s256(&self) -> bool {
        self.code_challenge_methods_supported
            .as_ref()
            .is_some_and(|m| m.iter().any(|m| m == "S256"))
    }

    /// Whether `scope` is listed in `scopes_supported`.
    pub fn lists_scope(&self, scope: &str) -> bool {
        self.scopes_supported
            .as_ref()
            .is_some_and(|s| s.iter().any(|s| s == scope))
    }

    /// The token endpoint authentication methods offered, with RFC 8414's default.
    pub fn token_auth_methods(&self) -> Vec<String> {
        self.token_endpoint_auth_methods_supported
            .clone()
            .unwrap_or_else(|| vec!["client_secret_basic".into()])
    }
}

/// Which well-known document a metadata URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetadataKind {
    /// `/.well-known/oauth-authorization-server` (RFC 8414).
    OAuth,
    /// `/.well-known/openid-configuration` (OpenID Connect Discovery 1.0).
    OpenId,
}

/// The well-known URLs of `server`'s protected-resource metadata, in the order MCP tries them
/// when the challenge names none: the path-aware one (RFC 9728 §3.1: the well-known segment
/// goes between the host and the path), then the root one. A server at the root has only one.
pub fn protected_resource_urls(server: &Url) -> Vec<Url> {
    const SUFFIX: &str = "/.well-known/oauth-protected-resource";
    let path = server.path().trim_end_matches('/');
    let mut out = Vec::with_capacity(2);
    let mut with_path = origin_url(server);
    with_path.set_path(&format!("{SUFFIX}{path}"));
    with_path.set_query(server.query());
    out.push(with_path);
    if !path.is_empty() || server.query().is_some() {
        let mut root = origin_url(server);
        root.set_path(SUFFIX);
        out.push(root);
    }
    out
}

/// The URLs where the metadata of the authorization server `issuer` may be, in the priority
/// order of MCP's "Authorization Server Metadata Discovery": for an issuer with a path, the
/// OAuth and OpenID documents with the path inserted after the well-known segment, then the
/// OpenID document appended to the path; for one without, the OAuth then the OpenID document
/// at the root. A terminating `/` of the issuer is dropped first (RFC 8414 §3.1).
pub fn authorization_server_urls(issuer: &str) -> Result<Vec<(Url, MetadataKind)>, String> {
    let url = Url::parse(issuer).map_err(|e| format!("the issuer {issuer:?} is not a URL: {e}"))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "the issuer {issuer:?} has a query or fragment, which RFC 8414 forbids"
        ));
    }
    if url.host_str().is_none() {
        return Err(format!("the issuer {issuer:?} has no host"));
    }
    let path = url.path().trim_end_matches('/');
    let at = |p: String| {
        let mut u = origin_url(&url);
        u.set_path(&p);
        u
    };
    const OAUTH: &str = "/.well-known/oauth-authorization-server";
    const OPENID: &str = "/.well-known/openid-configuration";
    Ok(if path.is_empty() {
        vec![
            (at(OAUTH.into()), MetadataKind::OAuth),
            (at(OPENID.into()), MetadataKind::OpenId),
        ]
    } else {
        vec![
            (at(format!("{OAUTH}{path}")), MetadataKind::OAuth),
            (at(format!("{OPENID}{path}")), MetadataKind::OpenId),
            (at(format!("{path}{OPENID}")), MetadataKind::OpenId),
        ]
    })
}

/// Whether the issuer a metadata document claims is the one it was fetched for. RFC 8414
/// §3.3 asks for identical strings; the one difference allowed here is a terminating `/`,
/// which §3.1 itself drops when building the URL, so both spellings name the same document.
/// (The `iss` of an authorization response is compared strictly; see
/// [`crate::PendingAuthorization`].)
pub fn issuer_matches(expected: &str, found: &str) -> bool {
    expected == found || expected.trim_end_matches('/') == found.trim_end_matches('/')
}

/// The server URL as the canonical resource identifier MCP sends when no protected-resource
/// metadata names one: scheme and host in lowercase, default port left out, no fragment, and
/// no terminating `/` ("Canonical Server URI").
pub fn canonical_resource(server: &Url) -> String {
    let mut out = format!("{}://", server.scheme());
    if let Some(host) = server.host_str() {
        out.push_str(host);
    }
    if let Some(port) = server.port() {
        out.push_str(&format!(":{port}"));
    }
    out.push_str(server.path().trim_end_matches('/'));
    if let Some(q) = server.query() {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Whether the resource identifier a protected-resource metadata document publishes covers
/// `server`: same scheme, host and port (compared in canonical form, so `HTTPS://Host:443` is
/// `https://host`), no fragment, and a path that is the server's path or a parent of it on a
/// segment boundary. A document fetched for one server that names another resource is refused
/// (RFC 9728 §3.3), or a hostile document could collect tokens meant for someone else.
pub fn resource_covers(resource: &str, server: &Url) -> bool {
    let Ok(published) = Url::parse(resource) else {
        return false;
    };
    if published.fragment().is_some() || published.cannot_be_a_base() {
        return false;
    }
    let same_origin = published.scheme() == server.scheme()
        && published.host_str() == server.host_str()
        && published.port_or_known_default() == server.port_or_known_default();
    if !same_origin {
        return false;
    }
    let want = published.path().trim_end_matches('/');
    let have = server.path().trim_end_matches('/');
    want.is_empty()
        || have == want
        || (have.starts_with(want) && have.as_bytes().get(want.len()) == Some(&b'/'))
}

/// The origin of `url` (`scheme://host[:port]`), without a terminating `/`.
pub(crate) fn origin_string(url: &Url) -> String {
    let mut out = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
    if let Some(port) = url.port() {
        out.push_str(&format!(":{port}"));
    }
    out
}

fn origin_url(url: &Url) -> Url {
    let mut out = url.clone();
    out.set_fragment(None);
    out.set_query(None);
    out.set_path("/");
    let _ = out.set_username("");
    let _ = out.set_password(None);
    out
}

/// `url` for showing to a person: no query, fragment or credentials, which may carry secrets.
pub(crate) fn display_url(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn strings(urls: &[Url]) -> Vec<String> {
        urls.iter().map(Url::to_string).collect()
    }

    #[test]
    fn protected_resource_urls_are_path_aware_then_root() {
        assert_eq!(
            strings(&protected_resource_urls(&url(
                "https://mcp.example.com/public/mcp"
            ))),
            [
                "https://mcp.example.com/.well-known/oauth-protected-resource/public/mcp",
                "https://mcp.example.com/.well-known/oauth-protected-resource",
            ]
        );
        assert_eq!(
            strings(&protected_resource_urls(&url(
                "https://mcp.example.com/mcp/"
            ))),
            [
                "https://mcp.example.com/.well-known/oauth-protected-resource/mcp",
                "https://mcp.example.com/.well-known/oauth-protected-resource",
            ]
        );
        assert_eq!(
            strings(&protected_resource_urls(&url("http://127.0.0.1:8080/"))),
            ["http://127.0.0.1:8080/.well-known/oauth-protected-resource"]
        );
    }

    #[test]
    fn authorization_server_urls_follow_the_mcp_order() {
        let with_path: Vec<(String, MetadataKind)> =
            authorization_server_urls("https://auth.example.com/tenant1/")
                .unwrap()
                .into_iter()
                .map(|(u, k)| (u.to_string(), k))
                .collect();
        assert_eq!(
            with_path,
            [
                (
                    "https://auth.example.com/.well-known/oauth-authorization-server/tenant1"
                        .into(),
                    MetadataKind::OAuth
                ),
                (
                    "https://auth.example.com/.well-known/openid-configuration/tenant1".into(),
                    MetadataKind::OpenId
                ),
                (
                    "https://auth.example.com/tenant1/.well-known/openid-configuration".into(),
                    MetadataKind::OpenId
                ),
            ]
        );
        let root: Vec<String> = authorization_server_urls("https://auth.example.com")
            .unwrap()
            .into_iter()
            .map(|(u, _)| u.to_string())
            .collect();
        assert_eq!(
            root,
            [
                "https://auth.example.com/.well-known/oauth-authorization-server",
                "https://auth.example.com/.well-known/openid-configuration",
            ]
        );
        assert!(authorization_server_urls("https://a.example/?x=1").is_err());
        assert!(authorization_server_urls("not a url").is_err());
    }

    #[test]
    fn issuers_compare_exactly_but_for_a_terminating_slash() {
        assert!(issuer_matches("https://a.example", "https://a.example"));
        assert!(issuer_matches("https://a.example/", "https://a.example"));
        assert!(issuer_matches(
            "https://a.example/t1",
            "https://a.example/t1/"
        ));
        assert!(!issuer_matches("https://a.example", "https://A.example"));
        assert!(!issuer_matches(
            "https://a.example",
            "https://a.example:443"
        ));
        assert!(!issuer_matches(
            "https://a.example",
            "https://attacker.example"
        ));
        assert!(!issuer_matches(
            "https://a.example/t1",
            "https://a.example/t2"
        ));
    }

    #[test]
    fn canonical_resource_drops_what_is_not_identity() {
        assert_eq!(
            canonical_resource(&url("HTTPS://MCP.Example.com:443/mcp/#frag")),
            "https://mcp.example.com/mcp"
        );
        assert_eq!(
            canonical_resource(&url("https://mcp.example.com")),
            "https://mcp.example.com"
        );
        assert_eq!(
            canonical_resource(&url("http://localhost:8080/x?tenant=1")),
            "http://localhost:8080/x?tenant=1"
        );
    }

    #[test]
    fn resource_must_cover_the_server() {
        let server = url("https://mcp.example.com/v1/mcp");
        for ok in [
            "https://mcp.example.com/v1/mcp",
            "https://mcp.example.com/v1/mcp/",
            "https://mcp.example.com/v1",
            "https://mcp.example.com",
            "HTTPS://MCP.EXAMPLE.COM:443/v1/mcp",
        ] {
            assert!(resource_covers(ok, &server), "{ok}");
        }
        for bad in [
            "https://evil.example.com/v1/mcp",
            "http://mcp.example.com/v1/mcp",
            "https://mcp.example.com:8443/v1/mcp",
            "https://mcp.example.com/v1/mc",
            "https://mcp.example.com/v2",
            "https://mcp.example.com/v1/mcp/deeper",
            "https://mcp.example.com/v1/mcp#f",
            "mcp.example.com/v1/mcp",
        ] {
            assert!(!resource_covers(bad, &server), "{bad}");
        }
    }

    #[test]
    fn display_urls_lose_secrets() {
        assert_eq!(
            display_url(&url("https://u:p@h.example/p?token=x#f")),
            "https://h.example/p"
        );
    }

    #[test]
    fn metadata_round_trips_and_keeps_unknown_members() {
        let doc = serde_json::json!({
            "issuer": "https://a.example",
            "authorization_endpoint": "https://a.example/authorize",
            "token_endpoint": "https://a.example/token",
            "code_challenge_methods_supported": ["plain", "S256"],
            "scopes_supported": ["mcp", "offline_access"],
            "x_custom": 1
        });
        let m: AuthServerMetadata = serde_json::from_value(doc.clone()).unwrap();
        assert!(m.offers_s256());
        assert!(m.lists_scope("offline_access"));
        assert_eq!(m.token_auth_methods(), ["client_secret_basic"]);
        assert_eq!(serde_json::to_value(&m).unwrap(), doc);
        let plain_only: AuthServerMetadata = serde_json::from_value(
            serde_json::json!({"issuer": "x", "code_challenge_methods_supported": ["plain"]}),
        )
        .unwrap();
        assert!(!plain_only.offers_s256());
        let silent: AuthServerMetadata =
            serde_json::from_value(serde_json::json!({"issuer": "x"})).unwrap();
        assert!(!silent.offers_s256());
    }
}
