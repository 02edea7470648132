//! What the engine answers when a server talks first: progress, list changes, and the server's
//! own requests (elicitation, sampling, roots), which go to a handler the caller supplies.

// Sampling, roots and logging are deprecated by SEP-2577 in the newest protocol, but servers of
// the older generations still send them, and answering them is part of the job.
#![allow(deprecated)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rmcp::ClientHandler;
use rmcp::model::{
    ClientConfig, CreateMessageRequestParams, CreateMessageResult, ElicitRequestParams,
    ElicitResult, ErrorCode, ListRootsResult, LoggingMessageNotificationParam,
    ProgressNotificationParam,
};
use rmcp::service::{NotificationContext, RequestContext, RoleClient};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// A request from a server for input from the person, during a call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ElicitationRequest {
    /// What the server says it needs.
    pub message: String,
    /// The JSON Schema of the answer (a flat object of primitive fields), for a form. `None`
    /// for a URL-mode request, where the person is sent to `url` instead.
    pub schema: Option<Value>,
    /// For URL mode: where to send the person.
    pub url: Option<String>,
}

/// The person's answer to an elicitation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ElicitationAnswer {
    /// The person filled in the form.
    Accept {
        /// The values, matching the schema.
        content: Value,
    },
    /// The person said no.
    Decline,
    /// The person dismissed the request.
    Cancel,
}

/// Answers a server's requests. The engine's caller supplies one: the product's declines until
/// a person can be asked; the conformance client's accepts with the schema's defaults.
#[async_trait]
pub trait ServerRequests: Send + Sync + 'static {
    /// A server asks the person for input.
    async fn elicit(&self, request: ElicitationRequest) -> ElicitationAnswer;
    /// A server asks for a model completion (`sampling/createMessage`): the request and result
    /// are the protocol's JSON. `Err` declines with a reason.
    async fn sample(&self, request: Value) -> Result<Value, String>;
    /// The roots to tell a server about (`roots/list`). Switchboard exposes no filesystem, so
    /// the default is none.
    async fn roots(&self) -> Vec<Value> {
        Vec::new()
    }
}

/// Declines every elicitation and sampling request with a stated reason.
#[derive(Debug, Clone)]
pub struct DeclineAll {
    /// Why, for the log and the server.
    pub reason: String,
}

#[async_trait]
impl ServerRequests for DeclineAll {
    async fn elicit(&self, _request: ElicitationRequest) -> ElicitationAnswer {
        tracing::info!(reason = %self.reason, "declined an elicitation request");
        ElicitationAnswer::Decline
    }

    async fn sample(&self, _request: Value) -> Result<Value, String> {
        Err(self.reason.clone())
    }
}

/// Accepts every form elicitation with the defaults its schema declares.
#[derive(Debug, Clone, Default)]
pub struct AcceptDefaults;

#[async_trait]
impl ServerRequests for AcceptDefaults {
    async fn elicit(&self, request: ElicitationRequest) -> ElicitationAnswer {
        let mut content = serde_json::Map::new();
        if let Some(props) = request
            .schema
            .as_ref()
            .and_then(|s| s.get("properties"))
            .and_then(Value::as_object)
        {
            for (name, prop) in props {
                if let Some(default) = prop.get("default") {
                    content.insert(name.clone(), default.clone());
                }
            }
        }
        ElicitationAnswer::Accept {
            content: Value::Object(content),
        }
    }

    async fn sample(&self, _request: Value) -> Result<Value, String> {
        Err("this client has no model to sample".into())
    }
}

/// A progress update for a call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Work done so far.
    pub progress: f64,
    /// Total work, if known.
    pub total: Option<f64>,
    /// A message from the server.
    pub message: Option<String>,
}

/// Which list a server said changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListKind {
    /// `notifications/tools/list_changed`.
    Tools,
    /// `notifications/resources/list_changed`.
    Resources,
    /// `notifications/prompts/list_changed`.
    Prompts,
}

/// Called when a server says one of its lists changed.
pub(crate) type OnListChanged = Arc<dyn Fn(ListKind) + Send + Sync>;

/// Per-session state the rmcp client handler reads.
pub(crate) struct HandlerState {
    pub default: Arc<dyn ServerRequests>,
    /// Handlers of calls in flight, oldest first: a server request during a call goes to the
    /// call that is waiting (see [`Handler::current`]).
    pub calls: Mutex<Vec<(u64, Arc<dyn ServerRequests>)>>,
    /// Progress channels by progress token.
    pub progress: Mutex<HashMap<String, mpsc::UnboundedSender<Progress>>>,
    pub on_list_changed: OnListChanged,
    pub info: ClientConfig,
}

/// The rmcp client handler of one session.
#[derive(Clone)]
pub(crate) struct Handler(pub Arc<HandlerState>);

/// The client's self-description: name, version and what it can answer.
pub(crate) fn client_config(protocol_version: &str) -> ClientConfig {
    serde_json::from_value(json!({
        "protocolVersion": protocol_version,
        "capabilities": { "elicitation": { "form": {} }, "sampling": {}, "roots": {} },
        "clientInfo": { "name": "switchboard", "title": "Switchboard", "version": env!("CARGO_PKG_VERSION") }
    }))
    .expect("the client description is valid")
}

impl Handler {
    pub(crate) fn new(
        default: Arc<dyn ServerRequests>,
        on_list_changed: OnListChanged,
        protocol_version: &str,
    ) -> Self {
        Handler(Arc::new(HandlerState {
            default,
            calls: Mutex::new(Vec::new()),
            progress: Mutex::new(HashMap::new()),
            on_list_changed,
            info: client_config(protocol_version),
        }))
    }

    /// The handler for a server request that arrives now. Session-based servers send such
    /// requests while one of our calls waits; with several calls in flight on one shared
    /// session the protocol does not say which one asked, so the oldest waiting call is taken,
    /// which is the one most likely to be blocked on it.
    fn current(&self) -> Arc<dyn ServerRequests> {
        let calls = self.0.calls.lock().unwrap_or_else(|p| p.into_inner());
        calls
            .first()
            .map_or_else(|| self.0.default.clone(), |(_, h)| h.clone())
    }
}

/// Keeps a call's handler and progress channel registered while the call runs.
pub(crate) struct CallRegistration {
    state: Arc<HandlerState>,
    id: u64,
    token: Option<String>,
}

impl CallRegistration {
    pub(crate) fn new(
        state: &Arc<HandlerState>,
        id: u64,
        handler: Option<Arc<dyn ServerRequests>>,
    ) -> Self {
        if let Some(h) = handler {
            state
                .calls
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((id, h));
        }
        Self {
            state: state.clone(),
            id,
            token: None,
        }
    }

    pub(crate) fn progress(&mut self, token: String, tx: mpsc::UnboundedSender<Progress>) {
        self.state
            .progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(token.clone(), tx);
        self.token = Some(token);
    }
}

impl Drop for CallRegistration {
    fn drop(&mut self) {
        self.state
            .calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(id, _)| *id != self.id);
        if let Some(token) = &self.token {
            self.state
                .progress
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(token);
        }
    }
}

/// Turns a protocol elicitation request into ours.
pub(crate) fn elicitation_from_protocol(params: &Value) -> ElicitationRequest {
    ElicitationRequest {
        message: params
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        schema: params.get("requestedSchema").cloned(),
        url: params.get("url").and_then(Value::as_str).map(str::to_owned),
    }
}

/// Our answer as the protocol's `ElicitResult` JSON.
pub(crate) fn elicitation_to_protocol(answer: &ElicitationAnswer) -> Value {
    match answer {
        ElicitationAnswer::Accept { content } => json!({ "action": "accept", "content": content }),
        ElicitationAnswer::Decline => json!({ "action": "decline" }),
        ElicitationAnswer::Cancel => json!({ "action": "cancel" }),
    }
}

fn internal(message: impl Into<String>) -> rmcp::ErrorData {
    rmcp::ErrorData::new(ErrorCode::INTERNAL_ERROR, message.into(), None)
}

impl ClientHandler for Handler {
    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, rmcp::ErrorData> {
        let params = serde_json::to_value(&request).map_err(|e| internal(e.to_string()))?;
        let answer = self
            .current()
            .elicit(elicitation_from_protocol(&params))
            .await;
        serde_json::from_value(elicitation_to_protocol(&answer))
            .map_err(|e| internal(e.to_string()))
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, rmcp::ErrorData> {
        let request = serde_json::to_value(&params).map_err(|e| internal(e.to_string()))?;
        match self.current().sample(request).await {
            Ok(result) => serde_json::from_value(result).map_err(|e| internal(e.to_string())),
            Err(reason) => Err(rmcp::ErrorData::new(
                ErrorCode::INVALID_REQUEST,
                reason,
                None,
            )),
        }
    }

    async fn list_roots(
        &self,
        _context: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, rmcp::ErrorData> {
        let roots = self.current().roots().await;
        serde_json::from_value(json!({ "roots": roots })).map_err(|e| internal(e.to_string()))
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let token = progress_token_key(
            &serde_json::to_value(&params.progress_token).unwrap_or(Value::Null),
        );
        let sender = self
            .0
            .progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&token)
            .cloned();
        if let Some(tx) = sender {
            let _ = tx.send(Progress {
                progress: params.progress,
                total: params.total,
                message: params.message,
            });
        }
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        // Server log data is untrusted and may be large; only its level reaches our log.
        tracing::debug!(level = ?params.level, "the server sent a log message");
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        (self.0.on_list_changed)(ListKind::Tools);
    }

    async fn on_resource_list_changed(&self, _context: NotificationContext<RoleClient>) {
        (self.0.on_list_changed)(ListKind::Resources);
    }

    async fn on_prompt_list_changed(&self, _context: NotificationContext<RoleClient>) {
        (self.0.on_list_changed)(ListKind::Prompts);
    }

    fn get_info(&self) -> ClientConfig {
        self.0.info.clone()
    }
}

/// A progress token as a map key: tokens are strings or numbers on the wire.
pub(crate) fn progress_token_key(token: &Value) -> String {
    match token {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
