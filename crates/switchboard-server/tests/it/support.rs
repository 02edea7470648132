//! Test support: a real server on a loopback port over a temporary SQLite database, and a small
//! JSON client.

use std::sync::{Arc, Mutex, OnceLock};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use switchboard_domain::HttpAllowance;
use switchboard_seal::KeyRing;
use switchboard_server::ServerConfig;
use switchboard_service::{App, ServiceConfig};
use switchboard_store_sqlite::SqliteStore;

/// Everything the whole test binary logged, at trace level, for the leak test.
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&log_buffer().lock().unwrap()).into_owned()
}

fn log_buffer() -> &'static Arc<Mutex<Vec<u8>>> {
    static BUF: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUF.get_or_init(|| Arc::new(Mutex::new(Vec::new())))
}

struct BufWriter;

impl std::io::Write for BufWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        log_buffer().lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs one trace-level subscriber for the whole binary, writing into memory.
pub fn init_tracing() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(|| BufWriter)
            .with_ansi(false)
            .init();
    });
}

/// A running server.
pub struct TestServer {
    pub base: String,
    pub app: Arc<App>,
    /// The store under `app`, for tests that close its pool.
    pub sqlite: SqliteStore,
    _dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

pub const OWNER_EMAIL: &str = "owner@example.org";
pub const OWNER_PASSWORD: &str = "owner password 1";

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(ServerConfig {
            cookie_secure: true,
            ..ServerConfig::default()
        })
        .await
    }

    pub async fn start_with(config: ServerConfig) -> Self {
        init_tracing();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("sb.db").display());
        let store = SqliteStore::open(&url).await.unwrap();
        switchboard_store::Store::migrate(&store).await.unwrap();
        let service = ServiceConfig {
            http: HttpAllowance {
                loopback: true,
                hosts: vec![],
            },
            login_failures: 5,
            ..ServiceConfig::default()
        };
        let app =
            Arc::new(App::new(Arc::new(store.clone()), KeyRing::generate(), service).unwrap());
        let _watch = app.watch_list_changes();
        let _turns = app.watch_turns();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(switchboard_server::serve(
            listener,
            app.clone(),
            config,
            async {
                let _ = rx.await;
            },
        ));
        Self {
            base,
            app,
            sqlite: store,
            _dir: dir,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Stops accepting and waits for requests in flight to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    pub fn anonymous(&self) -> Client {
        Client::new(&self.base, None)
    }

    /// Completes setup through the API with the setup token; returns the owner's client.
    pub async fn setup(&self, slug: &str) -> (Client, Value) {
        let (owner, org, _) = self.setup_with_token(slug).await;
        (owner, org)
    }

    /// [`TestServer::setup`], also returning the one-time setup token it used.
    pub async fn setup_with_token(&self, slug: &str) -> (Client, Value, String) {
        let token = self
            .app
            .ensure_setup_token()
            .await
            .unwrap()
            .expect("setup is needed");
        let (status, body) = self
            .anonymous()
            .call(
                Method::POST,
                "/api/v1/setup",
                Some(json!({
                    "token": &token, "email": OWNER_EMAIL, "password": OWNER_PASSWORD,
                    "display_name": "Olive Owner", "org_slug": slug, "org_name": "Acme",
                })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let client = self.login(OWNER_EMAIL, OWNER_PASSWORD).await;
        (client, body["organization"].clone(), token)
    }

    /// Signs in for an API token.
    pub async fn login(&self, email: &str, password: &str) -> Client {
        let (status, body) = self
            .anonymous()
            .call(
                Method::POST,
                "/api/v1/auth/token",
                Some(json!({"email": email, "password": password, "name": "test"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        Client::new(
            &self.base,
            Some(body["secret"].as_str().unwrap().to_owned()),
        )
    }
}

/// A JSON client with an optional bearer token.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    pub fn new(base: &str, token: Option<String>) -> Self {
        Self {
            base: base.to_owned(),
            token,
            http: reqwest::Client::new(),
        }
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, value) = self.call(method.clone(), path, body).await;
        assert!(status.is_success(), "{method} {path}: {status} {value}");
        value
    }
}

/// Adds a member with a fresh account and returns their client.
pub async fn add_member(
    server: &TestServer,
    owner: &Client,
    org_id: &str,
    email: &str,
    role: &str,
) -> (Client, String) {
    let password = format!("{email} password");
    let member = owner
        .ok(
            Method::POST,
            &format!("/api/v1/orgs/{org_id}/members"),
            Some(json!({"email": email, "role": role, "password": password})),
        )
        .await;
    (
        server.login(email, &password).await,
        member["user_id"].as_str().unwrap().to_owned(),
    )
}

/// Registers a connector; returns its id.
pub async fn connector(owner: &Client, org: &str, name: &str, url: &str) -> String {
    let c = owner
        .ok(
            Method::POST,
            &format!("/api/v1/orgs/{org}/connectors"),
            Some(json!({"name": name, "url": url})),
        )
        .await;
    c["id"].as_str().unwrap().to_owned()
}

/// Registers a connector and validates it, which must make it active; returns its id.
pub async fn active_connector(owner: &Client, org: &str, name: &str, url: &str) -> String {
    let id = connector(owner, org, name, url).await;
    let v = owner
        .ok(
            Method::POST,
            &format!("/api/v1/connectors/{id}/validate"),
            None,
        )
        .await;
    assert_eq!(v["connector"]["status"], "active", "{v}");
    id
}
