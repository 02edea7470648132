//! Switchboard's HTTP surface: the REST API under `/api/v1`, its OpenAPI document, health,
//! readiness and metrics.
//!
//! Architecture invariant: this is the only crate that knows HTTP status codes, cookies and
//! headers. Handlers stay thin: extract, call one service function, convert. Every error
//! becomes an [`error::ApiError`] with a stable code.

mod api;
mod auth;
mod error;
mod extract;
mod metrics;
mod openapi;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use switchboard_service::App;

pub use api::escape_html;
pub use error::ApiError;
pub use openapi::openapi_json;

/// HTTP settings from the operator's configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Mark cookies `Secure` (keep on unless serving plain http to a non-loopback host in a
    /// test lab; browsers treat `localhost` as secure anyway).
    pub cookie_secure: bool,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Take the client address from `X-Forwarded-For` (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
    /// Longest time a request may take before it is answered with 503.
    pub request_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            cookie_secure: true,
            max_body_bytes: 1024 * 1024,
            trust_forwarded_for: false,
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// Shared state of every handler.
#[derive(Clone)]
pub(crate) struct State {
    pub app: Arc<App>,
    pub config: Arc<ServerConfig>,
    pub metrics: Arc<metrics::Metrics>,
}

/// Builds the complete router.
pub fn router(app: Arc<App>, config: ServerConfig) -> Router {
    let state = State {
        app,
        config: Arc::new(config),
        metrics: Arc::new(metrics::Metrics::new()),
    };
    api::routes(state)
}

/// The paths mounted under `/api/v1`, prefix included, as axum sees them (`{name}` for a path
/// parameter, as in the OpenAPI document). A test checks each against that document, since
/// axum cannot list a router's routes.
pub fn mounted_api_paths() -> Vec<String> {
    api::api_routes()
        .paths()
        .iter()
        .map(|path| format!("/api/v1{path}"))
        .collect()
}

/// Serves until `shutdown` completes, then stops accepting connections and lets requests in
/// flight finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = router(app, config);
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
