//! An OAuth authorization server (`oidc-provider`, `tests/peers/npm/oidc_server.mjs`) and an MCP
//! server protected by it (`tests/peers/python/protected_server.py`), both on loopback.

use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::process::Command;

use crate::peers::Peers;
use crate::process::{PeerProcess, spawn_announced};

/// How long a test-control request to a peer may take.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

/// Options for [`OidcProvider::start`]; [`OidcOptions::default`] suits most tests.
#[derive(Debug, Clone)]
pub struct OidcOptions {
    /// How long an access token lives (whole seconds, at least one). Default: one hour; a few
    /// seconds make a client refresh.
    pub access_token_ttl: Duration,
    /// How long a refresh token (and the grant behind it) lives. Default: 14 days.
    pub refresh_token_ttl: Duration,
    /// The scopes every resource server offers; an authorization request must ask for at least
    /// one of them (or `openid`), or oidc-provider refuses it with `access_denied`. Default:
    /// `["mcp"]`.
    pub resource_scopes: Vec<String>,
    /// When set, the only resource indicators (RFC 8707) accepted; by default any http(s) URL
    /// is, and becomes the audience of the access token.
    pub resources: Option<Vec<String>>,
    /// Pre-registered clients, as oidc-provider client metadata, for example
    /// `{"client_id": "app", "client_secret": "s3cret", "redirect_uris": ["http://127.0.0.1:9/cb"]}`.
    /// Clients that leave `grant_types` out may use `authorization_code` and `refresh_token`.
    pub clients: Vec<Value>,
}

impl Default for OidcOptions {
    fn default() -> Self {
        OidcOptions {
            access_token_ttl: Duration::from_secs(60 * 60),
            refresh_token_ttl: Duration::from_secs(14 * 24 * 60 * 60),
            resource_scopes: vec!["mcp".to_owned()],
            resources: None,
            clients: Vec::new(),
        }
    }
}

impl OidcOptions {
    /// The configuration that `oidc_server.mjs --config` reads.
    fn to_json(&self) -> Value {
        let seconds = |ttl: Duration| ttl.as_secs().max(1);
        let mut config = json!({
            "accessTokenTtl": seconds(self.access_token_ttl),
            "refreshTokenTtl": seconds(self.refresh_token_ttl),
            "resourceScopes": self.resource_scopes,
            "clients": self.clients,
        });
        if let Some(resources) = &self.resources {
            config["resources"] = json!(resources);
        }
        config
    }
}

/// A running oidc-provider on loopback; dropping it stops the server.
///
/// It offers open dynamic client registration (RFC 7591), resource indicators (RFC 8707; the
/// access token for a resource is a JWT, RFC 9068, whose `aud` is the resource), PKCE with S256
/// required of every client, refresh tokens rotated on every use, revocation (RFC 7009),
/// introspection (RFC 7662), and the library's development login and consent pages (any login
/// and password; the login becomes the token's subject). Its metadata is served at both
/// `/.well-known/oauth-authorization-server` and `/.well-known/openid-configuration`.
///
/// For tests it also counts token-endpoint requests, can switch the token endpoint off (503),
/// and can forget every grant; see the methods below.
#[derive(Debug)]
pub struct OidcProvider {
    process: PeerProcess,
    issuer: String,
    options: OidcOptions,
    http: reqwest::Client,
}

impl OidcProvider {
    /// Starts oidc-provider with `options`.
    ///
    /// # Panics
    ///
    /// When the peers are not installed (the message names `bash scripts/peers`) or the server
    /// does not start (the message carries its output).
    pub async fn start(options: OidcOptions) -> OidcProvider {
        match OidcProvider::try_start(options).await {
            Ok(server) => server,
            Err(error) => panic!("oidc-provider did not start: {error:#}"),
        }
    }

    /// Like [`OidcProvider::start`], but returns start failures as errors.
    pub async fn try_start(options: OidcOptions) -> anyhow::Result<OidcProvider> {
        let peers = Peers::locate();
        let node = peers.node();
        let script = peers.oidc_server_script();
        let mut command = Command::new(&node);
        command
            .arg(&script)
            .args(["--port", "0", "--config"])
            .arg(options.to_json().to_string())
            .env("PEER_NPM_DIR", peers.npm_dir())
            .current_dir(peers.workspace_root());
        let (process, issuer) = spawn_announced("oidc-provider", command).await?;
        Ok(OidcProvider {
            process,
            issuer,
            options,
            http: control_client(),
        })
    }

    /// The issuer: `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The RFC 8414 metadata document: `ISSUER/.well-known/oauth-authorization-server`.
    pub fn metadata_url(&self) -> String {
        format!("{}/.well-known/oauth-authorization-server", self.issuer)
    }

    /// `ISSUER/auth`, as the metadata says.
    pub fn authorization_endpoint(&self) -> String {
        format!("{}/auth", self.issuer)
    }

    /// `ISSUER/token`, as the metadata says.
    pub fn token_endpoint(&self) -> String {
        format!("{}/token", self.issuer)
    }

    /// `ISSUER/reg` (open dynamic client registration), as the metadata says.
    pub fn registration_endpoint(&self) -> String {
        format!("{}/reg", self.issuer)
    }

    /// The options it was started with, pre-registered clients included.
    pub fn options(&self) -> &OidcOptions {
        &self.options
    }

    /// The pre-registered clients it was started with.
    pub fn clients(&self) -> &[Value] {
        &self.options.clients
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.process.port()
    }

    /// What the server wrote so far (one line per request, `METHOD path -> status`), for
    /// failure messages.
    pub fn output(&self) -> String {
        self.process.output()
    }

    /// How many POSTs reached the token endpoint so far, those refused by
    /// [`OidcProvider::set_token_outage`] included.
    pub async fn token_requests(&self) -> anyhow::Result<u64> {
        #[derive(Deserialize)]
        struct Count {
            count: u64,
        }
        let count: Count = self.control_get("token-requests").await?;
        Ok(count.count)
    }

    /// While `enabled`, the token endpoint answers every request with 503 and
    /// `{"error": "temporarily_unavailable"}` before oidc-provider sees it, so codes, refresh
    /// tokens and grants stay as they were: the outage passes and the grant survives.
    pub async fn set_token_outage(&self, enabled: bool) -> anyhow::Result<()> {
        #[derive(Deserialize)]
        struct Outage {
            enabled: bool,
        }
        let now: Outage = self
            .control_post("token-outage", json!({ "enabled": enabled }))
            .await?;
        anyhow::ensure!(
            now.enabled == enabled,
            "the token outage is {} after asking for {enabled}",
            now.enabled
        );
        Ok(())
    }

    /// Forgets every grant and every code and token issued under one, as an administrator
    /// revoking all access would: the next refresh gets `invalid_grant`. Access tokens already
    /// handed out are JWTs and stay valid at resource servers until they expire. Returns how many
    /// grants there were.
    pub async fn revoke_all_grants(&self) -> anyhow::Result<u64> {
        #[derive(Deserialize)]
        struct Revoked {
            revoked: u64,
        }
        let revoked: Revoked = self.control_post("revoke-grants", json!({})).await?;
        Ok(revoked.revoked)
    }

    async fn control_get<T: for<'de> Deserialize<'de>>(&self, name: &str) -> anyhow::Result<T> {
        let url = format!("{}/_test/{name}", self.issuer);
        let response = self.http.get(&url).send().await?.error_for_status()?;
        response.json().await.with_context(|| format!("GET {url}"))
    }

    async fn control_post<T: for<'de> Deserialize<'de>>(
        &self,
        name: &str,
        body: Value,
    ) -> anyhow::Result<T> {
        let url = format!("{}/_test/{name}", self.issuer);
        let response = self
            .http
            .post(&url)
            .json(&body)
            .send()
            .await?
            .error_for_status()?;
        response.json().await.with_context(|| format!("POST {url}"))
    }
}

/// A running MCP server (the Python SDK's resource-server mode) that only answers requests
/// carrying an access token from a given issuer; dropping it stops the server.
///
/// - Without a valid token `/mcp` answers 401 with `WWW-Authenticate: Bearer ...,
///   resource_metadata="<origin>/.well-known/oauth-protected-resource/mcp"`.
/// - That address serves the RFC 9728 protected-resource metadata: `resource` is
///   [`ProtectedMcpServer::url`], `authorization_servers` the issuer, `scopes_supported` the
///   required scopes.
/// - A token must be a JWT access token signed with one of the issuer's keys (its JWKS), issued
///   by the issuer, unexpired, with [`ProtectedMcpServer::url`] as audience and every required
///   scope.
/// - Tools: `whoami` (the token's subject), `token_info` (its `sub`, `client_id`, `scopes` and
///   `aud` as JSON text) and `echo`.
///
/// [`ProtectedMcpServer::start_static`] starts it as a plain bearer-protected server instead:
/// it accepts only the static tokens it was given (an API-token server), `whoami` names the
/// subject each token stands for, and the 401 challenge points at no OAuth metadata.
#[derive(Debug)]
pub struct ProtectedMcpServer {
    process: PeerProcess,
    url: String,
}

impl ProtectedMcpServer {
    /// Starts the server for tokens from `issuer` that carry the scope `mcp` (what
    /// [`OidcOptions::default`] offers).
    ///
    /// # Panics
    ///
    /// When the peers are not installed (the message names `bash scripts/peers`) or the server
    /// does not start (the message carries its output).
    pub async fn start(issuer: &str) -> ProtectedMcpServer {
        ProtectedMcpServer::start_with_scopes(issuer, &["mcp"]).await
    }

    /// Starts the server for tokens from `issuer` that carry every one of `scopes`.
    ///
    /// # Panics
    ///
    /// As [`ProtectedMcpServer::start`].
    pub async fn start_with_scopes(issuer: &str, scopes: &[&str]) -> ProtectedMcpServer {
        match ProtectedMcpServer::try_start(issuer, scopes).await {
            Ok(server) => server,
            Err(error) => panic!("protected_server.py did not start: {error:#}"),
        }
    }

    /// Like [`ProtectedMcpServer::start_with_scopes`], but returns start failures as errors.
    pub async fn try_start(issuer: &str, scopes: &[&str]) -> anyhow::Result<ProtectedMcpServer> {
        let mut args = vec!["--issuer".to_owned(), issuer.to_owned()];
        for scope in scopes {
            args.extend(["--scope".to_owned(), (*scope).to_owned()]);
        }
        ProtectedMcpServer::spawn(&args).await
    }

    /// Starts the server protected by static bearer tokens instead of OAuth: `tokens` pairs a
    /// subject (what `whoami` answers) with the exact token that stands for it. Any other
    /// request gets a 401 whose `Bearer` challenge names no resource metadata, and no OAuth
    /// document is served.
    ///
    /// # Panics
    ///
    /// As [`ProtectedMcpServer::start`], and when `tokens` is empty or a subject holds `=`.
    pub async fn start_static(tokens: &[(&str, &str)]) -> ProtectedMcpServer {
        match ProtectedMcpServer::try_start_static(tokens).await {
            Ok(server) => server,
            Err(error) => panic!("protected_server.py did not start: {error:#}"),
        }
    }

    /// Like [`ProtectedMcpServer::start_static`], but returns start failures as errors.
    pub async fn try_start_static(tokens: &[(&str, &str)]) -> anyhow::Result<ProtectedMcpServer> {
        anyhow::ensure!(!tokens.is_empty(), "a static-token server needs a token");
        let mut args = Vec::new();
        for (subject, token) in tokens {
            anyhow::ensure!(
                !subject.is_empty() && !subject.contains('=') && !token.is_empty(),
                "a static token needs a subject without '=' and a value"
            );
            args.extend(["--static-token".to_owned(), format!("{subject}={token}")]);
        }
        ProtectedMcpServer::spawn(&args).await
    }

    async fn spawn(args: &[String]) -> anyhow::Result<ProtectedMcpServer> {
        let peers = Peers::locate();
        let python = peers.python();
        let script = peers.python_scripts().join("protected_server.py");
        anyhow::ensure!(
            script.is_file(),
            "no Python peer script at {}",
            script.display()
        );
        let mut command = Command::new(&python.program);
        command
            .arg(&script)
            .args(args)
            .args(["--port", "0"])
            .env("PYTHONUNBUFFERED", "1")
            // Keeps __pycache__ out of the source tree.
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .current_dir(peers.python_scripts());
        if let Some(pythonpath) = &python.pythonpath {
            command.env("PYTHONPATH", pythonpath);
        }
        let (process, url) = spawn_announced("protected_server.py", command).await?;
        Ok(ProtectedMcpServer { process, url })
    }

    /// The MCP URL, `http://127.0.0.1:PORT/mcp`: also the resource indicator (RFC 8707) that
    /// tokens must be issued for.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `http://127.0.0.1:PORT`.
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.process.port())
    }

    /// Where the protected-resource metadata is served, as named in the 401 challenge:
    /// `http://127.0.0.1:PORT/.well-known/oauth-protected-resource/mcp`.
    pub fn resource_metadata_url(&self) -> String {
        format!("{}/.well-known/oauth-protected-resource/mcp", self.origin())
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.process.port()
    }

    /// What the server wrote so far (refused tokens are logged with the reason), for failure
    /// messages.
    pub fn output(&self) -> String {
        self.process.output()
    }
}

/// A client for test-control requests: bounded, and never through a proxy.
fn control_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(CONTROL_TIMEOUT)
        .no_proxy()
        .build()
        .expect("building an HTTP client")
}
