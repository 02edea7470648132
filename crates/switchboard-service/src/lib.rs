//! Switchboard's application services: every operation a person or a program can ask for,
//! with its permission check, validation, sealing and audit record.
//!
//! API boundary: callers (the HTTP server, the CLI's admin commands) pass plain inputs and get
//! domain values or an [`Error`]. This crate knows the store and the key ring, but no HTTP:
//! mapping errors to status codes is the server's job.

mod access;
mod accounts;
mod audit;
mod chat;
mod connectors;
mod error;
mod limiter;
mod mcp;
mod oauth;
mod orgs;
pub mod secrets;

use std::sync::Arc;
use std::time::Duration;

pub use access::{Actor, AdminAccess, Credential, OrgAccess};
pub use accounts::{IssuedToken, NewSession, OwnerInput, SetupState};
pub use audit::AuditQuery;
pub use chat::{
    Attachment, ChatConfig, ChatEvents, ConversationInput, ConversationView, ModelInfo,
    ModelSettings, TurnView,
};
pub use connectors::{ConnectorInput, ConnectorUpdate, FunctionInfo};
pub use error::{Error, Result};
pub use mcp::{CallOutcome, FieldChange, FunctionDiff, Probe, Validation, diff_json, rule_words};
pub use oauth::{AuthorizationStart, AuthorizationStatus, Completion, Connected, OAuthClientInput};
pub use orgs::NewMemberInput;
pub use secrets::CredentialInput;
pub use switchboard_chat::Answer;
pub use switchboard_connect::ElicitationAnswer;
pub use switchboard_connect::{ProbeReport, Progress, ToolResult};
pub use switchboard_store::{Page, PageRequest, Store};

use switchboard_domain::{HttpAllowance, Timestamp, ValidationError};
use switchboard_seal::KeyRing;

/// Settings the services need from the operator's configuration.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The URL Switchboard is reached at: OAuth redirects and the client ID metadata document
    /// live under it.
    pub public_url: url::Url,
    /// Where plain `http` connector URLs are allowed.
    pub http: HttpAllowance,
    /// How long a browser session lasts.
    pub session_ttl: Duration,
    /// Longest lifetime a personal API token may be given, in days.
    pub max_token_days: u32,
    /// Failed sign-ins allowed per account, and per client address, in `login_window`.
    pub login_failures: usize,
    /// The window over which failed sign-ins are counted.
    pub login_window: Duration,
    /// Longest wait for a function's result.
    pub call_timeout: Duration,
    /// Results larger than this are cut (and the cut reported).
    pub max_result_bytes: usize,
    /// Upstream sessions unused this long are closed.
    pub session_idle: Duration,
    /// The assistant's settings.
    pub chat: chat::ChatConfig,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            public_url: url::Url::parse("http://127.0.0.1:8080").expect("a valid URL"),
            http: HttpAllowance::default(),
            session_ttl: Duration::from_secs(12 * 3600),
            max_token_days: 365,
            login_failures: 10,
            login_window: Duration::from_secs(15 * 60),
            call_timeout: Duration::from_secs(60),
            max_result_bytes: 4 * 1024 * 1024,
            session_idle: Duration::from_secs(300),
            chat: chat::ChatConfig::default(),
        }
    }
}

/// The application: the store, the key ring and the settings, shared by every request.
pub struct App {
    store: Arc<dyn Store>,
    engine: switchboard_connect::Engine,
    client: switchboard_net::SafeClient,
    chat: chat::ChatState,
    oauth: oauth::OAuthState,
    keys: KeyRing,
    config: ServiceConfig,
    login_by_account: limiter::Limiter,
    login_by_client: limiter::Limiter,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("backend", &self.store.backend())
            .finish_non_exhaustive()
    }
}

impl App {
    /// Builds the application over an opened, migrated store. Fails when the outbound
    /// allowlist in `config.http` does not parse.
    pub fn new(store: Arc<dyn Store>, keys: KeyRing, config: ServiceConfig) -> Result<Self> {
        let login_by_account = limiter::Limiter::new(config.login_failures, config.login_window);
        // A shared office address makes many honest attempts, so clients get more room than
        // single accounts do.
        let login_by_client = limiter::Limiter::new(config.login_failures * 3, config.login_window);
        // The hosts an operator lets connectors reach over plain http are the same ones the
        // outbound client may reach although they are private: one allowlist, one decision.
        let destinations =
            switchboard_net::Destinations::from_config(config.http.loopback, &config.http.hosts)
                .map_err(|e| {
                    Error::Validation(ValidationError::new(
                        "security.allow_http_hosts",
                        e.to_string(),
                    ))
                })?;
        let options = switchboard_net::ClientOptions {
            // Long-lived event streams must not be cut by a total deadline; calls have their own.
            total_timeout: None,
            idle_timeout: Some(config.call_timeout),
            ..switchboard_net::ClientOptions::default()
        };
        let client = switchboard_net::SafeClient::new(destinations, options)
            .map_err(|e| Error::Internal(format!("cannot build the outbound client: {e}")))?;
        let pool = switchboard_connect::PoolConfig {
            idle_timeout: config.session_idle,
            ..Default::default()
        };
        let handler = Arc::new(chat::NoMemberPresent);
        let mut oauth_config = switchboard_oauth::ClientConfig::new(
            "Switchboard",
            oauth::callback_url(&config.public_url),
        );
        oauth_config.metadata_document_url = oauth::metadata_document_url(&config.public_url);
        oauth_config.http = config.http.clone();
        let oauth_client = switchboard_oauth::AuthClient::new(&client, oauth_config)
            .map_err(|e| Error::Internal(format!("cannot build the OAuth client: {e}")))?;
        let engine = switchboard_connect::Engine::new(client.clone(), pool, handler);
        Ok(Self {
            store,
            engine,
            client,
            chat: chat::ChatState::default(),
            oauth: oauth::OAuthState::new(oauth_client),
            keys,
            config,
            login_by_account,
            login_by_client,
        })
    }

    /// The store, for the few callers that need it directly (health checks, maintenance).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The settings.
    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    /// Checks that the database answers.
    pub async fn ready(&self) -> Result<()> {
        self.store.ping().await.map_err(Error::from)
    }

    fn now(&self) -> Timestamp {
        switchboard_store::now()
    }
}
