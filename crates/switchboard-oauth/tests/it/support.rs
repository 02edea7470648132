//! Test support: small servers on loopback that play an MCP server and its authorization
//! server, each test wiring the routes (and the misbehaviour) it needs, and recording what
//! the client sent.
//!
//! They stand in for real servers only where a real one cannot be made to misbehave on
//! demand (a metadata document naming another issuer, a token endpoint that redirects) or
//! where the test must see the exact request; the suite's own mock authorization server covers
//! the well-behaved flows through `scripts/conformance`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::HeaderMap;
use serde_json::{Value, json};
use switchboard_domain::HttpAllowance;
use switchboard_net::{ClientOptions, Destinations, SafeClient};
use switchboard_oauth::{AuthClient, ClientConfig};
use tokio::task::JoinHandle;
use url::Url;

/// A server on 127.0.0.1; stops when dropped.
pub struct Server {
    /// `http://127.0.0.1:<port>`, without a terminating `/`.
    pub base: String,
    task: JoinHandle<()>,
}

impl Server {
    /// `base` joined with `path`.
    pub fn url(&self, path: &str) -> Url {
        Url::parse(&format!("{}{path}", self.base)).expect("a valid URL")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the router `build` makes from the server's base URL, on a free loopback port.
pub async fn serve(build: impl FnOnce(&str) -> Router) -> Server {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("a loopback port");
    let base = format!("http://{}", listener.local_addr().expect("an address"));
    let app = build(&base);
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .await
            .expect("the test server runs");
    });
    Server { base, task }
}

/// One request a test server received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `METHOD /path`.
    pub line: String,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// The body as text.
    pub body: String,
}

impl Seen {
    /// The body's form fields.
    pub fn form(&self) -> Vec<(String, String)> {
        url::form_urlencoded::parse(self.body.as_bytes())
            .into_owned()
            .collect()
    }

    /// The form field `name`.
    pub fn field(&self, name: &str) -> Option<String> {
        self.form()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }
}

/// What a test server received, in order.
#[derive(Debug, Clone, Default)]
pub struct Log(Arc<Mutex<Vec<Seen>>>);

impl Log {
    /// Records a request.
    pub fn note(&self, line: String, headers: &HeaderMap, body: String) {
        let authorization = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        self.0.lock().unwrap().push(Seen {
            line,
            authorization,
            body,
        });
    }

    /// Every request so far.
    pub fn all(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }

    /// The requests whose line starts with `prefix` (`POST /token`).
    pub fn matching(&self, prefix: &str) -> Vec<Seen> {
        self.all()
            .into_iter()
            .filter(|s| s.line.starts_with(prefix))
            .collect()
    }
}

/// A router that records every request in `log` before it is routed.
pub fn recorded(router: Router, log: &Log) -> Router {
    let log = log.clone();
    router.layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let log = log.clone();
            async move {
                let (parts, body) = request.into_parts();
                let bytes = axum::body::to_bytes(body, 1 << 20)
                    .await
                    .unwrap_or_default();
                log.note(
                    format!("{} {}", parts.method, parts.uri.path()),
                    &parts.headers,
                    String::from_utf8_lossy(&bytes).into_owned(),
                );
                let request =
                    axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes));
                next.run(request).await
            }
        },
    ))
}

/// Authorization-server metadata for an issuer at `base` with the usual endpoints, PKCE S256,
/// dynamic registration and revocation; `extra` members replace or add to them.
pub fn as_metadata(base: &str, extra: Value) -> Value {
    let mut doc = json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "registration_endpoint": format!("{base}/register"),
        "revocation_endpoint": format!("{base}/revoke"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        "authorization_response_iss_parameter_supported": true,
        "scopes_supported": ["mcp:read", "offline_access"],
    });
    if let (Some(doc), Some(extra)) = (doc.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            doc.insert(k.clone(), v.clone());
        }
    }
    doc
}

/// An OAuth client like the platform's, allowed to reach loopback over plain http.
pub fn auth_client() -> AuthClient {
    auth_client_with(Destinations::public_only().with_loopback(true))
}

/// An OAuth client under `destinations`, allowing plain http to loopback.
pub fn auth_client_with(destinations: Destinations) -> AuthClient {
    let http = SafeClient::new(destinations, ClientOptions::default()).expect("a client");
    let mut config = ClientConfig::new(
        "Switchboard tests",
        Url::parse("https://switchboard.example/oauth/callback").unwrap(),
    );
    config.http = HttpAllowance {
        loopback: true,
        hosts: Vec::new(),
    };
    AuthClient::new(&http, config).expect("an OAuth client")
}
