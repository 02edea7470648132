//! An in-process MCP server built on rmcp 3.9 and served by axum on loopback.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, Implementation, ListToolsResult, PaginatedRequestParams,
    ProgressNotificationParam, RequestMetaObject, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, Peer, RoleServer, ServerHandler, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How the rmcp server handles sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RmcpMode {
    /// `LocalSessionManager`: clients of 2025-11-25 and older get `Mcp-Session-Id` sessions
    /// (GET stream, resumption, DELETE), while 2026-07-28 requests are served statelessly.
    #[default]
    Sessions,
    /// No sessions at all (`legacy_session_mode = false`): every request is answered on its
    /// own, whatever protocol version it carries; `initialize` still works but yields no
    /// session id.
    Stateless,
}

/// Options for [`RmcpServer::start_with`].
#[derive(Debug, Clone, Default)]
pub struct RmcpOptions {
    /// Session handling.
    pub mode: RmcpMode,
    /// When set, `tools/list` answers in pages of this many tools, with a `nextCursor`.
    pub tools_page_size: Option<usize>,
    /// More tools, `(name, description)`, each taking no arguments and answering
    /// `"<name> ran"`: a large catalog for tests of many functions.
    pub catalog: Vec<(String, String)>,
}

/// What the server observed, for tests to assert on.
#[derive(Debug, Default)]
pub struct RmcpStats {
    tool_calls: AtomicU64,
    cancelled: AtomicU64,
}

impl RmcpStats {
    /// How many `tools/call` requests reached a tool.
    pub fn tool_calls(&self) -> u64 {
        self.tool_calls.load(Ordering::SeqCst)
    }

    /// How many `slow` calls stopped because the request was cancelled.
    pub fn cancelled(&self) -> u64 {
        self.cancelled.load(Ordering::SeqCst)
    }
}

/// A running rmcp server at `http://127.0.0.1:PORT/mcp`; dropping it shuts it down.
///
/// Tools: `echo(text)`, `add(a, b)`, `slow(steps = 5, delay_ms = 100)` (reports progress when
/// the call carries a progress token, stops when cancelled, waits while
/// [held](RmcpServer::hold_slow_calls)) and `big(bytes)` (that many bytes of text).
#[derive(Debug)]
pub struct RmcpServer {
    url: String,
    stats: Arc<RmcpStats>,
    held: watch::Sender<bool>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl RmcpServer {
    /// Starts the server with sessions ([`RmcpMode::Sessions`]), which serves both protocol
    /// generations.
    pub async fn start() -> RmcpServer {
        RmcpServer::start_with(RmcpOptions::default()).await
    }

    /// Starts the server with `options`.
    ///
    /// # Panics
    ///
    /// When no loopback port can be bound.
    pub async fn start_with(options: RmcpOptions) -> RmcpServer {
        let stats = Arc::new(RmcpStats::default());
        let (held, _) = watch::channel(false);
        let shutdown = CancellationToken::new();
        let config = StreamableHttpServerConfig::default()
            .with_cancellation_token(shutdown.child_token())
            .with_legacy_session_mode(options.mode == RmcpMode::Sessions);
        let factory = {
            let stats = stats.clone();
            let held = held.clone();
            let page_size = options.tools_page_size;
            let catalog = Arc::new(options.catalog);
            move || {
                Ok(TestTools::new(stats.clone(), held.subscribe(), page_size)
                    .with_catalog(&catalog))
            }
        };
        let router = match options.mode {
            RmcpMode::Sessions => axum::Router::new().nest_service(
                "/mcp",
                StreamableHttpService::new(
                    factory,
                    Arc::new(LocalSessionManager::default()),
                    config,
                ),
            ),
            RmcpMode::Stateless => axum::Router::new().nest_service(
                "/mcp",
                StreamableHttpService::new(
                    factory,
                    Arc::new(NeverSessionManager::default()),
                    config,
                ),
            ),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding 127.0.0.1:0 for the rmcp server");
        let addr = listener.local_addr().expect("the listener's address");
        let task = tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                let _ = axum::serve(listener, router)
                    .with_graceful_shutdown(shutdown.cancelled_owned())
                    .await;
            }
        });
        RmcpServer {
            url: format!("http://{addr}/mcp"),
            stats,
            held,
            shutdown,
            task: Some(task),
        }
    }

    /// The MCP URL, `http://127.0.0.1:PORT/mcp`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// What the server observed so far.
    pub fn stats(&self) -> &RmcpStats {
        &self.stats
    }

    /// Makes `slow` calls wait, before their first step, until
    /// [`release_slow_calls`](Self::release_slow_calls). A test keeps a call in flight this way
    /// for exactly as long as it needs, without guessing a duration; [`RmcpStats::tool_calls`]
    /// counts a held call as soon as it arrives, so the test knows when it is in flight.
    pub fn hold_slow_calls(&self) {
        self.held.send_replace(true);
    }

    /// Lets held `slow` calls (and later ones) go on.
    pub fn release_slow_calls(&self) {
        self.held.send_replace(false);
    }

    /// Stops accepting, ends every session and waits (bounded) for the server to finish.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            // Graceful shutdown waits for open connections; a client that keeps one open must
            // not hold the test up.
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                eprintln!("switchboard-testkit: the rmcp server did not stop within 5 s");
            }
        }
    }
}

impl Drop for RmcpServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct EchoArgs {
    /// The text to send back.
    text: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct AddArgs {
    /// The first addend.
    a: i64,
    /// The second addend.
    b: i64,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct SlowArgs {
    /// How many steps to work (progress is reported after each).
    #[serde(default = "default_steps")]
    steps: u32,
    /// How long each step takes, in milliseconds.
    #[serde(default = "default_delay_ms")]
    delay_ms: u64,
}

fn default_steps() -> u32 {
    5
}

fn default_delay_ms() -> u64 {
    100
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct BigArgs {
    /// How many bytes of text to return.
    bytes: usize,
}

/// The tools; one instance per session (or per request when stateless).
#[derive(Debug, Clone)]
struct TestTools {
    tool_router: ToolRouter<TestTools>,
    stats: Arc<RmcpStats>,
    /// Whether `slow` calls wait before they start (see [`RmcpServer::hold_slow_calls`]).
    held: watch::Receiver<bool>,
    page_size: Option<usize>,
}

impl TestTools {
    /// Adds the generated catalog tools to the router.
    fn with_catalog(mut self, catalog: &[(String, String)]) -> Self {
        for (name, description) in catalog {
            let mut schema = serde_json::Map::new();
            schema.insert("type".into(), "object".into());
            schema.insert("properties".into(), serde_json::json!({}));
            let tool = rmcp::model::Tool::new(name.clone(), description.clone(), schema);
            let answer = format!("{name} ran");
            self.tool_router
                .add_route(rmcp::handler::server::router::tool::ToolRoute::new_dyn(
                    tool,
                    move |ctx: rmcp::handler::server::tool::ToolCallContext<'_, TestTools>| {
                        ctx.service.stats.tool_calls.fetch_add(1, Ordering::SeqCst);
                        let text = answer.clone();
                        Box::pin(async move {
                            Ok(CallToolResult::success(vec![ContentBlock::text(text)]).into())
                        })
                    },
                ));
        }
        self
    }
}

#[tool_router]
impl TestTools {
    fn new(stats: Arc<RmcpStats>, held: watch::Receiver<bool>, page_size: Option<usize>) -> Self {
        TestTools {
            tool_router: Self::tool_router(),
            stats,
            held,
            page_size,
        }
    }

    #[tool(description = "Returns the given text unchanged.")]
    fn echo(&self, Parameters(args): Parameters<EchoArgs>) -> String {
        self.stats.tool_calls.fetch_add(1, Ordering::SeqCst);
        args.text
    }

    #[tool(description = "Adds two integers and returns the sum as text.")]
    fn add(&self, Parameters(args): Parameters<AddArgs>) -> Result<String, ErrorData> {
        self.stats.tool_calls.fetch_add(1, Ordering::SeqCst);
        args.a
            .checked_add(args.b)
            .map(|sum| sum.to_string())
            .ok_or_else(|| ErrorData::invalid_params("the sum overflows a 64-bit integer", None))
    }

    #[tool(
        description = "Works for `steps` steps of `delay_ms` each, reporting progress after \
                       every step; stops early when the call is cancelled."
    )]
    async fn slow(
        &self,
        Parameters(args): Parameters<SlowArgs>,
        meta: RequestMetaObject,
        peer: Peer<RoleServer>,
        cancelled: CancellationToken,
    ) -> Result<CallToolResult, ErrorData> {
        self.stats.tool_calls.fetch_add(1, Ordering::SeqCst);
        let mut held = self.held.clone();
        tokio::select! {
            () = cancelled.cancelled() => {
                self.stats.cancelled.fetch_add(1, Ordering::SeqCst);
                return Err(ErrorData::internal_error("cancelled", None));
            }
            // An error means the server is being dropped; the call then simply goes on.
            _ = held.wait_for(|held| !held) => {}
        }
        let progress_token = meta.get_progress_token();
        for step in 1..=args.steps {
            tokio::select! {
                () = cancelled.cancelled() => {
                    self.stats.cancelled.fetch_add(1, Ordering::SeqCst);
                    return Err(ErrorData::internal_error("cancelled", None));
                }
                () = tokio::time::sleep(Duration::from_millis(args.delay_ms)) => {}
            }
            if let Some(token) = &progress_token {
                let progress = ProgressNotificationParam::new(token.clone(), f64::from(step))
                    .with_total(f64::from(args.steps))
                    .with_message(format!("step {step} of {}", args.steps));
                // A client that went away cannot be told; the work goes on until cancelled.
                let _ = peer.notify_progress(progress).await;
            }
        }
        Ok(CallToolResult::success(vec![ContentBlock::text(format!(
            "done after {} steps",
            args.steps
        ))]))
    }

    #[tool(description = "Returns `bytes` bytes of text.")]
    fn big(&self, Parameters(args): Parameters<BigArgs>) -> String {
        self.stats.tool_calls.fetch_add(1, Ordering::SeqCst);
        big_text(args.bytes)
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for TestTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("switchboard-testkit-rmcp", "1.0.0"))
            .with_instructions("A test server: echo, add, slow (progress) and big.")
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let mut tools = self.tool_router.list_all();
        tools.sort_by(|a, b| a.name.cmp(&b.name));
        let Some(page_size) = self.page_size else {
            return Ok(ListToolsResult::with_all_items(tools));
        };
        // The cursor is the index of the first tool on the page; opaque to clients.
        let start = match request.and_then(|params| params.cursor) {
            None => 0,
            Some(cursor) => cursor
                .parse::<usize>()
                .ok()
                .filter(|start| *start < tools.len())
                .ok_or_else(|| ErrorData::invalid_params("unknown cursor", None))?,
        };
        let end = (start + page_size.max(1)).min(tools.len());
        let mut page = ListToolsResult::with_all_items(tools[start..end].to_vec());
        if end < tools.len() {
            page.next_cursor = Some(end.to_string());
        }
        Ok(page)
    }
}

/// `bytes` bytes of readable ASCII text (a repeating alphabet, so truncation is visible).
pub(crate) fn big_text(bytes: usize) -> String {
    (b'a'..=b'z').cycle().take(bytes).map(char::from).collect()
}
