//! Connectors: a remote MCP server registered in an organization, and the rules for its fields.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use url::{Host, Url};

use crate::{ConnectorId, OrgId, Timestamp, ValidationError};

/// A connector's name: ASCII letters and digits only, 1 to 64 characters.
///
/// Names are unique in an organization ignoring case; [`ConnectorName::folded`] is the key the
/// store enforces that on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, pattern = "^[A-Za-z0-9]{1,64}$")]
pub struct ConnectorName(String);

impl ConnectorName {
    /// Longest accepted name.
    pub const MAX_LEN: usize = 64;

    /// Validates a name.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        if raw.is_empty() {
            return Err(ValidationError::new("name", "must not be empty"));
        }
        if raw.len() > Self::MAX_LEN {
            return Err(ValidationError::new(
                "name",
                format!("must be at most {} characters", Self::MAX_LEN),
            ));
        }
        if let Some(c) = raw.chars().find(|c| !c.is_ascii_alphanumeric()) {
            return Err(ValidationError::new(
                "name",
                format!("must contain only ASCII letters and digits, found {c:?}"),
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The name as the admin typed it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name lowercased: the uniqueness key.
    pub fn folded(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

impl TryFrom<String> for ConnectorName {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<ConnectorName> for String {
    fn from(n: ConnectorName) -> Self {
        n.0
    }
}

impl std::fmt::Display for ConnectorName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An optional human description of a connector: at most 500 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String)]
pub struct Description(String);

impl Description {
    /// Longest accepted description, in characters.
    pub const MAX_CHARS: usize = 500;

    /// Validates a description; surrounding white space is trimmed.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let s = raw.trim();
        if s.chars().count() > Self::MAX_CHARS {
            return Err(ValidationError::new(
                "description",
                format!("must be at most {} characters", Self::MAX_CHARS),
            ));
        }
        if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
            return Err(ValidationError::new(
                "description",
                "must not contain control characters",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Description {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Description> for String {
    fn from(d: Description) -> Self {
        d.0
    }
}

/// Where the operator allows plain `http` connector URLs. Everything else must be `https`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpAllowance {
    /// Allow `http` to loopback hosts (`localhost`, 127.0.0.0/8, `::1`): for development.
    pub loopback: bool,
    /// Further hosts: exact host names, IP addresses, or CIDR blocks such as `10.0.0.0/8`.
    pub hosts: Vec<String>,
}

impl HttpAllowance {
    /// Whether plain `http` may be used to reach `host`.
    pub fn permits(&self, host: &Host<&str>) -> bool {
        let ip = match host {
            Host::Domain(d) => {
                let d = d.trim_end_matches('.').to_ascii_lowercase();
                if self.loopback && (d == "localhost" || d.ends_with(".localhost")) {
                    return true;
                }
                if self.hosts.iter().any(|h| h.eq_ignore_ascii_case(&d)) {
                    return true;
                }
                return false;
            }
            Host::Ipv4(v4) => IpAddr::V4(*v4),
            Host::Ipv6(v6) => IpAddr::V6(*v6),
        };
        if self.loopback && ip.is_loopback() {
            return true;
        }
        self.hosts.iter().any(|entry| cidr_contains(entry, ip))
    }
}

/// Whether `entry` (an address or a CIDR block) contains `ip`. Malformed entries match nothing;
/// the configuration loader rejects them before they get here.
pub(crate) fn cidr_contains(entry: &str, ip: IpAddr) -> bool {
    let (addr, bits) = match entry.split_once('/') {
        Some((a, b)) => (a, b.parse::<u8>().ok()),
        None => (entry, None),
    };
    let Ok(net) = addr.parse::<IpAddr>() else {
        return false;
    };
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => {
            let bits = bits.unwrap_or(32).min(32);
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(n) & mask == u32::from(i) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(i)) => {
            let bits = bits.unwrap_or(128).min(128);
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(n) & mask == u128::from(i) & mask
        }
        _ => false,
    }
}

/// A connector's server URL: absolute, `https` (or `http` where the operator allows it), with
/// no user name or password in it and no fragment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(into = "String")]
#[schema(value_type = String)]
pub struct ConnectorUrl(Url);

impl ConnectorUrl {
    /// Longest accepted URL, in bytes.
    pub const MAX_LEN: usize = 2048;

    /// Validates a URL against the operator's `http` allowance.
    pub fn parse(raw: &str, http: &HttpAllowance) -> Result<Self, ValidationError> {
        let err = |m: String| ValidationError::new("url", m);
        let raw = raw.trim();
        if raw.len() > Self::MAX_LEN {
            return Err(err(format!("must be at most {} characters", Self::MAX_LEN)));
        }
        let url = Url::parse(raw).map_err(|e| err(format!("is not an absolute URL ({e})")))?;
        let Some(host) = url.host() else {
            return Err(err("must name a host".into()));
        };
        match url.scheme() {
            "https" => {}
            "http" if http.permits(&host) => {}
            "http" => {
                return Err(err(format!(
                    "must use https; plain http to {host} is not allowed by the server's configuration"
                )));
            }
            other => return Err(err(format!("must use https, not {other}"))),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(err(
                "must not contain a user name or password; add credentials separately".into(),
            ));
        }
        if url.fragment().is_some() {
            return Err(err("must not contain a fragment (#...)".into()));
        }
        Ok(Self(url))
    }

    /// Rebuilds a URL that was validated before (read back from the store).
    pub fn from_trusted(url: Url) -> Self {
        Self(url)
    }

    /// The URL.
    pub fn as_url(&self) -> &Url {
        &self.0
    }

    /// The URL as text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl From<ConnectorUrl> for String {
    fn from(u: ConnectorUrl) -> Self {
        u.0.into()
    }
}

macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident, $field:literal { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name stored in the database and used on the wire.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::str::FromStr for $name {
            type Err = ValidationError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(ValidationError::new(
                        $field,
                        format!("must be one of {}", [$($text),+].join(", ")),
                    )),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use string_enum;

string_enum!(
    /// Where a connector stands.
    ConnectorStatus, "status" {
        /// Registered or re-enabled; not validated yet.
        Connecting = "connecting",
        /// Validated and usable.
        Active = "active",
        /// The server wants credentials that are missing or were rejected.
        NeedsAuth = "needs_auth",
        /// The last attempt failed; `last_error` says why.
        Error = "error",
        /// Switched off by an admin.
        Disabled = "disabled",
    }
);

string_enum!(
    /// How Switchboard authenticates to a connector's server.
    AuthMethod, "auth_method" {
        /// Not detected yet.
        Unknown = "unknown",
        /// The server is open.
        None = "none",
        /// `Authorization: Bearer <token>`.
        Bearer = "bearer",
        /// HTTP Basic.
        Basic = "basic",
        /// Custom headers, such as an API key header.
        Headers = "headers",
        /// OAuth 2.1 authorization code flow.
        Oauth = "oauth",
    }
);

string_enum!(
    /// The MCP transport that answered when the connector was validated.
    Transport, "transport" {
        /// Streamable HTTP, stateless (protocol 2026-07-28).
        StreamableHttpStateless = "streamable_http_stateless",
        /// Streamable HTTP with sessions (2025-11-25 and older).
        StreamableHttp = "streamable_http",
        /// The old HTTP+SSE transport (2024-11-05).
        Sse = "sse",
    }
);

string_enum!(
    /// The kind of a sealed static credential.
    CredentialKind, "credential.kind" {
        /// A bearer token.
        Bearer = "bearer",
        /// A user name and password.
        Basic = "basic",
        /// Custom headers.
        Headers = "headers",
    }
);

string_enum!(
    /// Who holds a connector's credential.
    CredentialScope, "credential_scope" {
        /// One credential shared by the whole organization.
        Shared = "shared",
        /// Every member brings their own credential (or connects their own OAuth account).
        Member = "member",
    }
);

string_enum!(
    /// Where an OAuth grant stands.
    GrantStatus, "grant.status" {
        /// Usable; refreshed when it nears expiry.
        Active = "active",
        /// Refused for good by the authorization server; the holder must authorize again.
        Revoked = "revoked",
    }
);

string_enum!(
    /// How Switchboard got its OAuth client identity at an authorization server.
    ClientSource, "client.source" {
        /// Entered by an admin, registered out of band.
        Preregistered = "preregistered",
        /// A client ID metadata document Switchboard serves at its own URL.
        MetadataDocument = "metadata_document",
        /// Dynamic client registration (RFC 7591).
        Dynamic = "dynamic",
    }
);

/// The associated data an OAuth grant's tokens are sealed with: its connector, holder and
/// issuer, so sealed tokens cannot be moved to another row or replayed at another server.
pub fn grant_seal_context(
    connector: ConnectorId,
    holder: Option<crate::UserId>,
    issuer: &str,
) -> String {
    match holder {
        Some(user) => format!("oauth-grant:{connector}:user:{user}:{issuer}"),
        None => format!("oauth-grant:{connector}:org:{issuer}"),
    }
}

/// The associated data an OAuth client registration (its secret) is sealed with.
pub fn client_seal_context(connector: ConnectorId, issuer: &str) -> String {
    format!("oauth-client:{connector}:{issuer}")
}

/// The associated data a pending authorization (its PKCE verifier) is sealed with.
pub fn pending_seal_context(state_hash: &str) -> String {
    format!("oauth-pending:{state_hash}")
}

/// The associated data a connector credential is sealed with, binding the sealed value to its
/// connector and holder so it cannot be moved to another row.
pub fn credential_seal_context(connector: ConnectorId, holder: Option<crate::UserId>) -> String {
    match holder {
        Some(user) => format!("connector-credential:{connector}:user:{user}"),
        None => format!("connector-credential:{connector}:org"),
    }
}

/// A registered connector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Connector {
    /// Its id.
    pub id: ConnectorId,
    /// The organization it belongs to.
    pub org_id: OrgId,
    /// Its name, unique in the organization ignoring case.
    pub name: ConnectorName,
    /// The MCP server's URL.
    pub url: ConnectorUrl,
    /// What it is for, if the admin said.
    pub description: Option<Description>,
    /// Where it stands.
    pub status: ConnectorStatus,
    /// Why the last attempt failed, when `status` is `error` or `needs_auth`.
    pub last_error: Option<String>,
    /// How Switchboard authenticates to it.
    pub auth_method: AuthMethod,
    /// Whether a shared static credential is stored for it (the secret itself never leaves the
    /// server).
    pub has_credential: bool,
    /// Who holds its credential: the organization, or each member.
    pub credential_scope: CredentialScope,
    /// What auth detection found, as shown to admins: the authorization server and the
    /// metadata it published (public documents, never secrets).
    #[schema(value_type = Option<Object>)]
    pub auth_detail: Option<serde_json::Value>,
    /// The transport that answered at the last validation.
    pub transport: Option<Transport>,
    /// The protocol version negotiated at the last validation.
    pub protocol_version: Option<String>,
    /// When it was registered.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> HttpAllowance {
        HttpAllowance {
            loopback: true,
            hosts: vec!["10.1.0.0/16".into(), "mcp.internal".into()],
        }
    }

    #[test]
    fn names() {
        assert!(ConnectorName::parse("GitHub2").is_ok());
        assert_eq!(ConnectorName::parse("GitHub2").unwrap().folded(), "github2");
        assert!(ConnectorName::parse(&"a".repeat(64)).is_ok());
        for bad in ["", "git hub", "git-hub", "café", &"a".repeat(65)] {
            let e = ConnectorName::parse(bad).unwrap_err();
            assert_eq!(e.field, "name", "{bad}");
        }
    }

    #[test]
    fn descriptions() {
        assert!(Description::parse(&"é".repeat(500)).is_ok());
        assert!(Description::parse(&"é".repeat(501)).is_err());
    }

    #[test]
    fn urls() {
        let none = HttpAllowance::default();
        assert!(ConnectorUrl::parse("https://mcp.example.org/mcp", &none).is_ok());
        let cases = [
            ("mcp.example.org", "absolute"),
            ("ftp://mcp.example.org/", "not ftp"),
            ("http://mcp.example.org/", "must use https"),
            ("https://u:p@mcp.example.org/", "user name"),
            ("https://mcp.example.org/#x", "fragment"),
            ("http://127.0.0.1:9/mcp", "must use https"),
        ];
        for (raw, expect) in cases {
            let e = ConnectorUrl::parse(raw, &none).unwrap_err();
            assert!(e.message.contains(expect), "{raw}: {}", e.message);
        }
        let dev = dev();
        for ok in [
            "http://127.0.0.1:9/mcp",
            "http://localhost:8080/",
            "http://[::1]/",
            "http://10.1.2.3/",
            "http://MCP.internal/x",
        ] {
            assert!(ConnectorUrl::parse(ok, &dev).is_ok(), "{ok}");
        }
        assert!(ConnectorUrl::parse("http://10.2.0.1/", &dev).is_err());
    }

    #[test]
    fn status_round_trip() {
        for s in ConnectorStatus::ALL {
            assert_eq!(s.as_str().parse::<ConnectorStatus>().unwrap(), *s);
        }
        assert!(
            "asleep"
                .parse::<ConnectorStatus>()
                .unwrap_err()
                .message
                .contains("active")
        );
    }
}
