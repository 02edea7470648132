//! What the engine answers when a server talks first: progress, list changes, and the server's
//! own requests (elicitation, sampling, roots), which go to a handler the caller supplies.

// Sampling, roots and logging are deprecated by SEP-2577 in the newest protocol, but servers of
// the older generations still send them, and answering them is part of the job.
#![allow(deprecated)]

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rmcp::ClientHandler;
use rmcp::model::{
    ClientCapabilities, ClientConfig, ClientJsonRpcMessage, CreateMessageRequestParams,
    CreateMessageResult, ElicitRequestParams, ElicitResult, ElicitationCapability, ErrorCode,
    FormElicitationCapability, Implementation, JsonRpcMessage, ListRootsResult,
    LoggingMessageNotificationParam, ProgressNotificationParam, ProtocolVersion, RootsCapabilities,
    SamplingCapability, ServerJsonRpcMessage, ServerNotification,
};
use rmcp::service::{NotificationContext, RequestContext, RoleClient};
use rmcp::transport::Transport;
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
    /// are the protocol's JSON. `Err` declines with a reason. Servers are told they may ask
    /// only when the engine's default handler [offers it](ServerRequests::offers_sampling).
    async fn sample(&self, request: Value) -> Result<Value, String>;
    /// The roots to tell a server about (`roots/list`). Switchboard exposes no filesystem, so
    /// the default is none, and servers are told of roots only when the engine's default
    /// handler [offers them](ServerRequests::offers_roots).
    async fn roots(&self) -> Vec<Value> {
        Vec::new()
    }
    /// Whether servers are told this handler answers sampling requests (the `sampling` client
    /// capability). A server that is not told does not ask, so a handler that would decline
    /// every request keeps the default, `false`. The engine's default handler decides for
    /// every session of the engine.
    fn offers_sampling(&self) -> bool {
        false
    }
    /// Whether servers are told this handler has roots (the `roots` client capability); true
    /// for a handler whose [`ServerRequests::roots`] can return any. Decided like
    /// [`ServerRequests::offers_sampling`].
    fn offers_roots(&self) -> bool {
        false
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
    /// Where progress updates go, by progress token.
    pub progress: Mutex<ProgressRoutes>,
    pub on_list_changed: OnListChanged,
    /// The client's self-description, shared by every session of an engine (see
    /// [`client_config`]).
    pub info: Arc<ClientConfig>,
}

/// The rmcp client handler of one session.
#[derive(Clone)]
pub(crate) struct Handler(pub Arc<HandlerState>);

/// The client's self-description: name, version and what it can answer.
///
/// rmcp sends it in `initialize`, and under the stateless protocol (2026-07-28) it copies it
/// into the `_meta` of every request, where it is cloned, turned into JSON and parsed again by
/// the server on each call. So it is built once per engine and kept small: no title, and only
/// the capabilities `handler` can use. Elicitation is always declared, since every handler
/// answers it (declining is an answer, and a server told nothing may fail the tool instead).
pub(crate) fn client_config(handler: &dyn ServerRequests) -> Arc<ClientConfig> {
    let mut capabilities = ClientCapabilities::default();
    capabilities.elicitation =
        Some(ElicitationCapability::new().with_form(FormElicitationCapability::new()));
    if handler.offers_sampling() {
        capabilities.sampling = Some(SamplingCapability::default());
    }
    if handler.offers_roots() {
        capabilities.roots = Some(RootsCapabilities::default());
    }
    let me = Implementation::new("switchboard", env!("CARGO_PKG_VERSION"));
    // The version `initialize` offers; the stateless protocol is negotiated by the lifecycle
    // (`session::open`), not by this field.
    Arc::new(
        ClientConfig::new(capabilities, me).with_protocol_version(ProtocolVersion::V_2025_11_25),
    )
}

impl Handler {
    /// A session's handler. `info` is the engine's one description of itself
    /// ([`client_config`]).
    pub(crate) fn new(
        default: Arc<dyn ServerRequests>,
        on_list_changed: OnListChanged,
        info: Arc<ClientConfig>,
    ) -> Self {
        Handler(Arc::new(HandlerState {
            default,
            calls: Mutex::new(Vec::new()),
            progress: Mutex::new(ProgressRoutes::default()),
            on_list_changed,
            info,
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
    /// Whether the call brought a handler of its own; most calls do not, and then there is
    /// nothing to take out again.
    has_handler: bool,
    token: Option<String>,
}

impl CallRegistration {
    pub(crate) fn new(
        state: &Arc<HandlerState>,
        id: u64,
        handler: Option<Arc<dyn ServerRequests>>,
    ) -> Self {
        let has_handler = handler.is_some();
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
            has_handler,
            token: None,
        }
    }

    pub(crate) fn progress(&mut self, token: String, tx: mpsc::UnboundedSender<Progress>) {
        self.state
            .progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .register(token.clone(), tx);
        self.token = Some(token);
    }
}

impl Drop for CallRegistration {
    fn drop(&mut self) {
        if self.has_handler {
            self.state
                .calls
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|(id, _)| *id != self.id);
        }
        if let Some(token) = &self.token {
            self.state
                .progress
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .routes
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

    /// rmcp asks once, when the session starts.
    fn get_info(&self) -> ClientConfig {
        ClientConfig::clone(&self.0.info)
    }
}

/// Progress channels by token, fed in the order messages arrive.
///
/// rmcp hands notifications to the client handler on tasks of their own, so a progress
/// notification the server sent just before its result could reach the handler after the
/// caller has the result and has stopped listening. The engine therefore routes progress where
/// messages are read off the transport ([`Tapped`]), before rmcp sees the result that follows.
#[derive(Default)]
pub(crate) struct ProgressRoutes {
    routes: HashMap<String, mpsc::UnboundedSender<Progress>>,
    /// Updates for tokens nobody registered yet: a fast server may report progress before the
    /// caller has learned its token. Bounded; the oldest go first.
    early: VecDeque<(String, Progress)>,
}

/// How many unclaimed progress updates a session keeps for callers about to register.
const EARLY_PROGRESS: usize = 32;

impl ProgressRoutes {
    fn register(&mut self, token: String, tx: mpsc::UnboundedSender<Progress>) {
        for (t, update) in std::mem::take(&mut self.early) {
            if t == token {
                let _ = tx.send(update);
            } else {
                self.early.push_back((t, update));
            }
        }
        self.routes.insert(token, tx);
    }

    fn route(&mut self, params: &ProgressNotificationParam) {
        let token = progress_token_key(
            &serde_json::to_value(&params.progress_token).unwrap_or(Value::Null),
        );
        let update = Progress {
            progress: params.progress,
            total: params.total,
            message: params.message.clone(),
        };
        match self.routes.get(&token) {
            Some(tx) => {
                let _ = tx.send(update);
            }
            None => {
                if self.early.len() == EARLY_PROGRESS {
                    self.early.pop_front();
                }
                self.early.push_back((token, update));
            }
        }
    }
}

/// A transport whose incoming progress notifications are routed as they are read, in wire
/// order (see [`ProgressRoutes`]).
pub(crate) struct Tapped<T> {
    inner: T,
    state: Arc<HandlerState>,
}

impl<T> Tapped<T> {
    pub(crate) fn new(inner: T, handler: &Handler) -> Self {
        Self {
            inner,
            state: handler.0.clone(),
        }
    }
}

impl<T: Transport<RoleClient>> Transport<RoleClient> for Tapped<T> {
    type Error = T::Error;

    fn name() -> Cow<'static, str> {
        T::name()
    }

    fn send(
        &mut self,
        item: ClientJsonRpcMessage,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<ServerJsonRpcMessage> {
        let message = self.inner.receive().await;
        if let Some(JsonRpcMessage::Notification(n)) = &message
            && let ServerNotification::ProgressNotification(p) = &n.notification
        {
            self.state
                .progress
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .route(&p.params);
        }
        message
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}

/// A progress token as a map key: tokens are strings or numbers on the wire.
pub(crate) fn progress_token_key(token: &Value) -> String {
    match token {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(token: u32, progress: f64) -> ProgressNotificationParam {
        serde_json::from_value(json!({ "progressToken": token, "progress": progress }))
            .expect("a valid progress notification")
    }

    #[test]
    fn progress_that_arrives_before_its_caller_registers_is_handed_over() {
        let mut routes = ProgressRoutes::default();
        routes.route(&update(7, 1.0));
        routes.route(&update(8, 1.0));
        let (tx, mut rx) = mpsc::unbounded_channel();
        routes.register("7".into(), tx);
        routes.route(&update(7, 2.0));
        let seen: Vec<f64> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|p| p.progress)
            .collect();
        assert_eq!(seen, [1.0, 2.0]);
        assert_eq!(routes.early.len(), 1, "another call's update stays waiting");
    }

    #[test]
    fn the_client_declares_only_what_its_handler_answers() {
        let decline = DeclineAll {
            reason: "no".into(),
        };
        let described = serde_json::to_value(&*client_config(&decline)).unwrap();
        assert_eq!(
            described,
            json!({
                "protocolVersion": "2025-11-25",
                "capabilities": { "elicitation": { "form": {} } },
                "clientInfo": { "name": "switchboard", "version": env!("CARGO_PKG_VERSION") }
            })
        );

        struct Sampler;
        #[async_trait]
        impl ServerRequests for Sampler {
            async fn elicit(&self, _request: ElicitationRequest) -> ElicitationAnswer {
                ElicitationAnswer::Cancel
            }
            async fn sample(&self, request: Value) -> Result<Value, String> {
                Ok(request)
            }
            fn offers_sampling(&self) -> bool {
                true
            }
            fn offers_roots(&self) -> bool {
                true
            }
        }
        let described = serde_json::to_value(&*client_config(&Sampler)).unwrap();
        assert_eq!(
            described["capabilities"],
            json!({ "elicitation": { "form": {} }, "sampling": {}, "roots": {} })
        );
    }

    #[test]
    fn unclaimed_progress_is_bounded() {
        let mut routes = ProgressRoutes::default();
        for token in 0..100 {
            routes.route(&update(token, 1.0));
        }
        assert_eq!(routes.early.len(), EARLY_PROGRESS);
        assert_eq!(routes.early.front().map(|(t, _)| t.as_str()), Some("68"));
    }
}
