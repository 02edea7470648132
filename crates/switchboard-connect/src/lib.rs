//! Switchboard's MCP connector engine: reaching remote MCP servers in either protocol
//! generation, probing them, discovering what they offer and calling it.
//!
//! API boundary: rmcp types stay inside this crate. Callers pass a [`Target`] (URL and
//! authentication headers) and get plain values: [`ProbeReport`], [`Catalog`], [`ToolResult`].
//! Every request goes through the one SSRF-aware client from `switchboard-net`.
//!
//! Architecture invariant: the engine knows nothing of language models, stores or HTTP
//! serving; it neither reads configuration nor decides permissions.

mod call;
mod catalog;
mod error;
mod handler;
pub mod legacy_sse;
mod pool;
mod probe;
mod session;
mod target;

use std::sync::Arc;

use serde_json::Value;
use switchboard_domain::ConnectorId;
use switchboard_net::SafeClient;
use tokio::sync::broadcast;

pub use call::{CallOptions, ToolResult, Truncation, check_arguments};
pub use catalog::Catalog;
pub use error::{ConnectError, Result};
pub use handler::{
    AcceptDefaults, DeclineAll, ElicitationAnswer, ElicitationRequest, ListKind, Progress,
    ServerRequests,
};
pub use pool::{ListChanged, PoolConfig};
pub use probe::{AuthEvidence, Counts, Outcome, ProbeReport, Step};
pub use session::{SessionConfig, SessionInfo};
pub use target::{SessionKey, Target};

/// Drops top-level arguments whose value is `null`: a model writes `null` for an optional
/// argument it means to leave out, and MCP treats an absent argument as not given.
fn without_nulls(mut arguments: Value) -> Value {
    if let Value::Object(map) = &mut arguments {
        map.retain(|_, v| !v.is_null());
    }
    arguments
}

/// The engine: one pool of sessions shared by every caller.
#[derive(Clone)]
pub struct Engine {
    pool: Arc<pool::Pool>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine that reaches servers through `client` and answers their requests with
    /// `handler` unless a call brings its own.
    pub fn new(client: SafeClient, config: PoolConfig, handler: Arc<dyn ServerRequests>) -> Self {
        Self {
            pool: pool::Pool::new(client, config, handler),
        }
    }

    /// Probes a target step by step with a fresh connection. The catalog comes back when
    /// every step passed.
    pub async fn probe(&self, target: &Target) -> (ProbeReport, Option<Catalog>) {
        probe::probe(&self.pool, target).await
    }

    /// What the connector's server offers, cached until it says a list changed or the cache
    /// ages out; `refresh` asks the server again now.
    pub async fn catalog(
        &self,
        connector: ConnectorId,
        target: &Target,
        refresh: bool,
    ) -> Result<Arc<Catalog>> {
        self.pool
            .catalog(&SessionKey::new(connector, target), target, refresh)
            .await
    }

    /// Calls a function. The arguments are checked against `input_schema` (the pinned,
    /// approved definition's) before anything is sent.
    pub async fn call_tool(
        &self,
        connector: ConnectorId,
        target: &Target,
        name: &str,
        arguments: Value,
        input_schema: &Value,
        options: CallOptions,
    ) -> Result<ToolResult> {
        let arguments = without_nulls(arguments);
        check_arguments(input_schema, &arguments)?;
        // `check_arguments` refuses anything but an object; this only unwraps it.
        let Value::Object(arguments) = arguments else {
            return Err(ConnectError::InvalidArguments(
                "the arguments must be a JSON object".into(),
            ));
        };
        let key = SessionKey::new(connector, target);
        self.pool
            .with_session(&key, target, |s| async move {
                call::call_tool(&s, name, arguments, options).await
            })
            .await
    }

    /// Reads a resource.
    pub async fn read_resource(
        &self,
        connector: ConnectorId,
        target: &Target,
        uri: &str,
    ) -> Result<Vec<Value>> {
        let key = SessionKey::new(connector, target);
        self.pool
            .with_session(&key, target, |s| async move {
                call::read_resource(&s, uri).await
            })
            .await
    }

    /// Gets a prompt with its arguments.
    pub async fn get_prompt(
        &self,
        connector: ConnectorId,
        target: &Target,
        name: &str,
        arguments: Value,
    ) -> Result<Value> {
        let key = SessionKey::new(connector, target);
        self.pool
            .with_session(&key, target, |s| async move {
                call::get_prompt(&s, name, arguments).await
            })
            .await
    }

    /// Asks the server to complete an argument of a prompt or resource template.
    pub async fn complete(
        &self,
        connector: ConnectorId,
        target: &Target,
        reference: Value,
        argument: &str,
        value: &str,
    ) -> Result<Vec<String>> {
        let key = SessionKey::new(connector, target);
        self.pool
            .with_session(&key, target, |s| async move {
                call::complete(&s, reference, argument, value).await
            })
            .await
    }

    /// List changes reported by servers, for re-discovery and pinning.
    pub fn list_changes(&self) -> broadcast::Receiver<ListChanged> {
        self.pool.subscribe()
    }

    /// Closes a connector's sessions.
    pub async fn forget(&self, connector: ConnectorId) {
        self.pool.forget(connector).await;
    }

    /// How many sessions are open.
    pub async fn open_sessions(&self) -> usize {
        self.pool.open_sessions().await
    }

    /// Closes every session (session-based servers get their DELETE) and refuses new work.
    pub async fn shutdown(&self) {
        self.pool.shutdown().await;
    }
}
