//! The HTTP+SSE transport (MCP 2024-11-05) against real servers (server-everything and the
//! Python SDK in `sse` mode) and against small in-test servers that break its rules in one
//! chosen way each.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use futures::channel::mpsc;
use rmcp::RoleClient;
use rmcp::model::{CallToolRequestParams, ClientJsonRpcMessage, JsonRpcMessage};
use rmcp::service::{ClientLifecycleMode, QuitReason, serve_client_with_lifecycle};
use rmcp::transport::Transport;
use serde_json::{Value, json};
use switchboard_connect::legacy_sse::{self, LegacySseError, LegacySseOptions, RequestKind};
use switchboard_net::{ClientOptions, Destinations, SafeClient};
use switchboard_testkit::{BASIC_SERVER, Everything, Mode, PyTransport, PythonServer};
use tokio::task::JoinHandle;
use url::Url;

/// Bounds every wait, so a broken transport fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(30);

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen within {PATIENCE:?}"))
}

fn loopback_client() -> SafeClient {
    SafeClient::new(
        Destinations::public_only().with_loopback(true),
        ClientOptions::default(),
    )
    .expect("a client")
}

fn url(text: &str) -> Url {
    Url::parse(text).expect("a URL")
}

fn arguments(value: Value) -> serde_json::Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

/// The text of a tool result's first content block.
fn first_text(result: &rmcp::model::CallToolResult) -> String {
    let value = serde_json::to_value(result).expect("a serializable result");
    value["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text content in {value}"))
        .to_owned()
}

fn ping(id: u64) -> ClientJsonRpcMessage {
    serde_json::from_value(json!({ "jsonrpc": "2.0", "id": id, "method": "ping" }))
        .expect("a ping request")
}

// ---- Real servers ----------------------------------------------------------------------------

#[tokio::test]
async fn server_everything_lists_tools_and_echoes() {
    let server = Everything::start(Mode::Sse).await;
    let transport = legacy_sse::connect(
        &loopback_client(),
        &url(server.url()),
        LegacySseOptions::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("connect: {e}\n{}", server.output()));
    let client = serve_client_with_lifecycle((), transport, ClientLifecycleMode::Initialize)
        .await
        .unwrap_or_else(|e| panic!("initialize: {e}\n{}", server.output()));
    assert!(client.peer_info().is_some());

    let tools = within("tools/list", client.list_all_tools())
        .await
        .expect("tools/list");
    assert!(tools.iter().any(|tool| tool.name == "echo"), "{tools:?}");

    let call = CallToolRequestParams::new("echo")
        .with_arguments(arguments(json!({ "message": "hello over HTTP+SSE" })));
    let result = within("tools/call", client.call_tool(call))
        .await
        .expect("tools/call");
    assert_eq!(first_text(&result), "Echo: hello over HTTP+SSE");

    // Closing the service closes the transport, which ends the GET stream.
    let reason = within("cancel", client.cancel())
        .await
        .expect("a clean stop");
    assert!(matches!(reason, QuitReason::Cancelled), "{reason:?}");
}

#[tokio::test]
async fn python_sdk_server_lists_tools_and_echoes() {
    let server = PythonServer::start(BASIC_SERVER, PyTransport::Sse).await;
    let transport = legacy_sse::connect(
        &loopback_client(),
        &url(server.url()),
        LegacySseOptions::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("connect: {e}\n{}", server.output()));
    let client = serve_client_with_lifecycle((), transport, ClientLifecycleMode::Initialize)
        .await
        .unwrap_or_else(|e| panic!("initialize: {e}\n{}", server.output()));
    let info = client.peer_info().expect("server info");
    assert_eq!(
        info.server_info.as_ref().map(|s| s.name.as_str()),
        Some("switchboard-basic")
    );

    let mut names: Vec<String> = within("tools/list", client.list_all_tools())
        .await
        .expect("tools/list")
        .into_iter()
        .map(|tool| tool.name.into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["add", "echo", "slow", "weather"]);

    let call = CallToolRequestParams::new("echo")
        .with_arguments(arguments(json!({ "text": "hello from Rust" })));
    let result = within("tools/call", client.call_tool(call))
        .await
        .expect("tools/call");
    assert_eq!(first_text(&result), "hello from Rust");

    within("cancel", client.cancel())
        .await
        .expect("a clean stop");
}

#[tokio::test]
async fn a_server_that_dies_ends_the_service() {
    let server = PythonServer::start(BASIC_SERVER, PyTransport::Sse).await;
    let transport = legacy_sse::connect(
        &loopback_client(),
        &url(server.url()),
        LegacySseOptions::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("connect: {e}\n{}", server.output()));
    let client = serve_client_with_lifecycle((), transport, ClientLifecycleMode::Initialize)
        .await
        .unwrap_or_else(|e| panic!("initialize: {e}\n{}", server.output()));

    // Kills the process group: the GET stream breaks off without a clean end.
    drop(server);
    let reason = within("the service to end", client.waiting())
        .await
        .expect("the service task");
    assert!(matches!(reason, QuitReason::Closed), "{reason:?}");
}

#[tokio::test]
async fn a_streamable_http_server_is_not_taken_for_an_sse_server() {
    let server = Everything::start(Mode::StreamableHttp).await;
    let options = LegacySseOptions {
        endpoint_timeout: Duration::from_secs(5),
        ..LegacySseOptions::default()
    };
    let error = legacy_sse::connect(&loopback_client(), &url(server.url()), options)
        .await
        .expect_err("server-everything's /mcp is no HTTP+SSE endpoint");
    // server-everything refuses a GET without a session id with 400; a server that opened a
    // stream instead would never name an endpoint. Neither may count as an HTTP+SSE server,
    // and neither is worth retrying.
    assert!(
        matches!(
            error,
            LegacySseError::NotSse { .. }
                | LegacySseError::Status {
                    status: 400..=499,
                    request: RequestKind::Stream
                }
                | LegacySseError::EndpointTimeout { .. }
        ),
        "{error:?}"
    );
    if !matches!(error, LegacySseError::EndpointTimeout { .. }) {
        assert!(!error.is_retryable(), "{error:?}");
    }
}

// ---- In-test servers -------------------------------------------------------------------------

/// What an in-test server answers to the GET.
#[derive(Clone)]
enum GetAnswer {
    /// An event stream whose first event is `endpoint` with this data (`{origin}` and `{port}`
    /// are replaced with the server's own), or no endpoint event at all.
    Stream { endpoint: Option<String> },
    /// This status and these headers, no stream.
    Status(StatusCode, Vec<(&'static str, &'static str)>),
    /// A 200 with this content type and a body that looks like an event stream.
    ContentType(&'static str),
}

/// A request the in-test server received.
#[derive(Debug, Clone)]
struct Seen {
    method: &'static str,
    query: Option<String>,
    headers: HeaderMap,
}

struct Shared {
    origin: String,
    port: u16,
    get: GetAnswer,
    /// The status of POST answers; messages are only answered with 202.
    post_status: StatusCode,
    events: Mutex<Option<mpsc::UnboundedSender<Bytes>>>,
    seen: Mutex<Vec<Seen>>,
    stream_dropped: AtomicBool,
}

/// A small HTTP+SSE MCP server: answers `initialize`, `tools/list` and `ping` on the stream,
/// records every request, and lets the test write to or end the stream.
struct FakeServer {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sets a flag when the response body of the GET is dropped: the client went away.
struct DropFlag(Arc<Shared>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.stream_dropped.store(true, Ordering::SeqCst);
    }
}

impl FakeServer {
    async fn start(answer: GetAnswer) -> FakeServer {
        FakeServer::start_with(answer, StatusCode::ACCEPTED).await
    }

    async fn start_with(answer: GetAnswer, post_status: StatusCode) -> FakeServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let port = listener.local_addr().expect("its address").port();
        let shared = Arc::new(Shared {
            origin: format!("http://127.0.0.1:{port}"),
            port,
            get: answer,
            post_status,
            events: Mutex::new(None),
            seen: Mutex::new(Vec::new()),
            stream_dropped: AtomicBool::new(false),
        });
        let router = Router::new()
            .route("/sse", get(fake_get))
            .route("/message", post(fake_post))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .await
                .expect("the in-test server");
        });
        FakeServer { shared, task }
    }

    fn url(&self) -> Url {
        url(&format!("{}/sse", self.shared.origin))
    }

    fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().expect("seen").clone()
    }

    /// Writes raw bytes to the open event stream.
    fn push(&self, bytes: impl Into<Bytes>) {
        let events = self.shared.events.lock().expect("events");
        let sender = events.as_ref().expect("an open event stream");
        sender
            .unbounded_send(bytes.into())
            .expect("the stream is open");
    }

    /// Ends the event stream cleanly.
    fn end_stream(&self) {
        self.shared.events.lock().expect("events").take();
    }

    /// Waits until the client has dropped the GET stream. Keep-alive comments make the server
    /// write, which is how it notices a closed connection.
    async fn wait_stream_dropped(&self) {
        within("the GET stream to be dropped", async {
            while !self.shared.stream_dropped.load(Ordering::SeqCst) {
                if let Some(sender) = self.shared.events.lock().expect("events").as_ref() {
                    let _ = sender.unbounded_send(Bytes::from_static(b": ping\n\n"));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }
}

async fn fake_get(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    shared.seen.lock().expect("seen").push(Seen {
        method: "GET",
        query: None,
        headers,
    });
    match &shared.get {
        GetAnswer::Status(status, headers) => {
            let mut response = (*status, "no").into_response();
            for (name, value) in headers {
                response.headers_mut().append(
                    *name,
                    value.parse().expect("a valid header value in the test"),
                );
            }
            response
        }
        GetAnswer::ContentType(content_type) => (
            [(header::CONTENT_TYPE, *content_type)],
            "event: endpoint\ndata: /message\n\n",
        )
            .into_response(),
        GetAnswer::Stream { endpoint } => {
            let (sender, receiver) = mpsc::unbounded();
            let first = match endpoint {
                Some(data) => format!(
                    "event: endpoint\ndata: {}\n\n",
                    data.replace("{origin}", &shared.origin)
                        .replace("{port}", &shared.port.to_string())
                ),
                None => ": no endpoint here\n\n".to_owned(),
            };
            sender
                .unbounded_send(Bytes::from(first))
                .expect("a fresh channel");
            *shared.events.lock().expect("events") = Some(sender);
            let flag = DropFlag(shared.clone());
            let body = receiver.map(move |bytes| {
                let _alive = &flag;
                Ok::<_, Infallible>(bytes)
            });
            (
                [
                    (header::CONTENT_TYPE, "text/event-stream"),
                    (header::CACHE_CONTROL, "no-cache"),
                ],
                Body::from_stream(body),
            )
                .into_response()
        }
    }
}

async fn fake_post(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.seen.lock().expect("seen").push(Seen {
        method: "POST",
        query,
        headers,
    });
    if shared.post_status != StatusCode::ACCEPTED {
        return (shared.post_status, "no").into_response();
    }
    let Ok(message) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON").into_response();
    };
    if let (Some(id), Some(method)) = (message.get("id"), message["method"].as_str()) {
        let answer = match method {
            "initialize" => json!({ "jsonrpc": "2.0", "id": id, "result": {
                "protocolVersion": "2024-11-05",
                "capabilities": { "tools": {} },
                "serverInfo": { "name": "fake", "version": "0" },
            }}),
            "tools/list" => json!({ "jsonrpc": "2.0", "id": id, "result": { "tools": [] } }),
            "ping" => json!({ "jsonrpc": "2.0", "id": id, "result": {} }),
            _ => json!({ "jsonrpc": "2.0", "id": id,
                "error": { "code": -32601, "message": "method not found" } }),
        };
        if let Some(sender) = shared.events.lock().expect("events").as_ref() {
            let _ =
                sender.unbounded_send(Bytes::from(format!("event: message\ndata: {answer}\n\n")));
        }
    }
    (StatusCode::ACCEPTED, "Accepted").into_response()
}

fn stream_with_endpoint(endpoint: &str) -> GetAnswer {
    GetAnswer::Stream {
        endpoint: Some(endpoint.to_owned()),
    }
}

#[tokio::test]
async fn an_endpoint_on_another_origin_is_refused() {
    // The other origin is a live server, to show that nothing at all reaches it.
    let elsewhere = FakeServer::start(stream_with_endpoint("/message")).await;
    let other_origin = elsewhere.shared.origin.clone();
    let other_port = elsewhere.url().port().expect("a port");
    for endpoint in [
        format!("{other_origin}/message?sessionId=abc"),
        format!("//127.0.0.1:{other_port}/message"),
        // Same port, another host name (even one that resolves to the same address).
        "http://localhost:{port}/message".to_owned(),
        // Same host and port, another scheme.
        "https://127.0.0.1:{port}/message".to_owned(),
    ] {
        let server = FakeServer::start(stream_with_endpoint(&endpoint)).await;
        let error = legacy_sse::connect(
            &loopback_client(),
            &server.url(),
            LegacySseOptions::default(),
        )
        .await
        .expect_err("another origin must be refused");
        match &error {
            LegacySseError::EndpointOrigin { origin } => {
                assert!(!origin.contains("sessionId"), "{origin}");
            }
            other => panic!("{endpoint}: {other:?}"),
        }
        assert!(!error.is_retryable());
        assert!(!error.to_string().contains("sessionId"), "{error}");
        let methods: Vec<_> = server.seen().iter().map(|s| s.method).collect();
        assert_eq!(methods, ["GET"], "{endpoint}");
    }
    assert!(elsewhere.seen().is_empty(), "{:?}", elsewhere.seen());
}

#[tokio::test]
async fn unauthorized_is_reported_with_its_challenge() {
    const CHALLENGE: &str = r#"Bearer resource_metadata="http://127.0.0.1:9/.well-known/oauth-protected-resource", scope="mcp""#;
    for status in [StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN] {
        let server = FakeServer::start(GetAnswer::Status(
            status,
            vec![("www-authenticate", CHALLENGE)],
        ))
        .await;
        let error = legacy_sse::connect(
            &loopback_client(),
            &server.url(),
            LegacySseOptions::default(),
        )
        .await
        .expect_err("unauthorized");
        match &error {
            LegacySseError::Unauthorized {
                status: got,
                www_authenticate,
            } => {
                assert_eq!(*got, status.as_u16());
                assert_eq!(www_authenticate.as_deref(), Some(CHALLENGE));
            }
            other => panic!("{other:?}"),
        }
        assert!(!error.to_string().contains("resource_metadata"), "{error}");
        assert!(!error.is_retryable());
    }

    let bare = FakeServer::start(GetAnswer::Status(StatusCode::UNAUTHORIZED, vec![])).await;
    let error = legacy_sse::connect(&loopback_client(), &bare.url(), LegacySseOptions::default())
        .await
        .expect_err("unauthorized");
    assert!(
        matches!(
            error,
            LegacySseError::Unauthorized {
                status: 401,
                www_authenticate: None
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_stream_that_ends_ends_the_transport_and_the_service() {
    // The bare transport: receive yields None once the stream is over.
    let server = FakeServer::start(stream_with_endpoint("/message")).await;
    let mut transport = legacy_sse::connect(
        &loopback_client(),
        &server.url(),
        LegacySseOptions::default(),
    )
    .await
    .expect("connect");
    server.end_stream();
    let next = within("receive", Transport::<RoleClient>::receive(&mut transport)).await;
    assert!(next.is_none(), "{next:?}");
    let sent = Transport::<RoleClient>::send(&mut transport, ping(1)).await;
    assert!(matches!(sent, Err(LegacySseError::Closed)), "{sent:?}");

    // Under rmcp: the service that was running ends with the stream.
    let server = FakeServer::start(stream_with_endpoint("/message")).await;
    let transport = legacy_sse::connect(
        &loopback_client(),
        &server.url(),
        LegacySseOptions::default(),
    )
    .await
    .expect("connect");
    let client = within(
        "initialize",
        serve_client_with_lifecycle((), transport, ClientLifecycleMode::Initialize),
    )
    .await
    .expect("initialize against the in-test server");
    within("tools/list", client.list_all_tools())
        .await
        .expect("tools/list");
    server.end_stream();
    let reason = within("the service to end", client.waiting())
        .await
        .expect("the service task");
    assert!(matches!(reason, QuitReason::Closed), "{reason:?}");
}

#[tokio::test]
async fn the_default_client_refuses_loopback() {
    let server = FakeServer::start(stream_with_endpoint("/message")).await;
    let public_only =
        SafeClient::new(Destinations::public_only(), ClientOptions::default()).expect("a client");
    let error = legacy_sse::connect(&public_only, &server.url(), LegacySseOptions::default())
        .await
        .expect_err("loopback is not allowed by default");
    match &error {
        LegacySseError::Net(net) => assert!(net.is_blocked(), "{net:?}"),
        other => panic!("{other:?}"),
    }
    assert!(!error.is_retryable());
    assert!(server.seen().is_empty(), "{:?}", server.seen());
}

#[tokio::test]
async fn answers_that_are_not_event_streams() {
    for (answer, status) in [
        (GetAnswer::Status(StatusCode::NOT_FOUND, vec![]), 404),
        (
            GetAnswer::Status(StatusCode::METHOD_NOT_ALLOWED, vec![]),
            405,
        ),
        (GetAnswer::ContentType("application/json"), 200),
    ] {
        let server = FakeServer::start(answer).await;
        let error = legacy_sse::connect(
            &loopback_client(),
            &server.url(),
            LegacySseOptions::default(),
        )
        .await
        .expect_err("not an event stream");
        match error {
            LegacySseError::NotSse { status: got, .. } => assert_eq!(got, status),
            other => panic!("{status}: {other:?}"),
        }
    }

    let failing =
        FakeServer::start(GetAnswer::Status(StatusCode::SERVICE_UNAVAILABLE, vec![])).await;
    let error = legacy_sse::connect(
        &loopback_client(),
        &failing.url(),
        LegacySseOptions::default(),
    )
    .await
    .expect_err("503");
    assert!(
        matches!(
            error,
            LegacySseError::Status {
                status: 503,
                request: RequestKind::Stream
            }
        ),
        "{error:?}"
    );
    assert!(error.is_retryable());
}

#[tokio::test]
async fn a_stream_without_an_endpoint_event_times_out() {
    let server = FakeServer::start(GetAnswer::Stream { endpoint: None }).await;
    let options = LegacySseOptions {
        endpoint_timeout: Duration::from_millis(300),
        ..LegacySseOptions::default()
    };
    let error = legacy_sse::connect(&loopback_client(), &server.url(), options)
        .await
        .expect_err("no endpoint event");
    assert!(
        matches!(error, LegacySseError::EndpointTimeout { .. }),
        "{error:?}"
    );
    // The abandoned GET is not left open.
    server.wait_stream_dropped().await;
}

/// Collects everything logged at any level while it is installed on this thread (tokio tests
/// run on one thread, so the spawned reader task logs here too).
#[derive(Clone, Default)]
struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogCapture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let writer = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }
}

#[tokio::test]
async fn headers_go_on_the_get_and_every_post_to_the_given_endpoint() {
    const API_KEY: &str = "key-1f0c9a";
    const TOKEN: &str = "Bearer token-7d2e4b";
    const SESSION: &str = "sessionId=session-5a8c31";
    let logs = LogCapture::default();
    let _logging = logs.install();

    let server = FakeServer::start(stream_with_endpoint(&format!("/message?{SESSION}"))).await;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-api-key", API_KEY.parse().expect("a header value"));
    headers.insert(
        reqwest::header::AUTHORIZATION,
        TOKEN.parse().expect("a header value"),
    );
    let options = LegacySseOptions {
        headers,
        ..LegacySseOptions::default()
    };
    let transport = legacy_sse::connect(&loopback_client(), &server.url(), options.clone())
        .await
        .expect("connect");
    let shown = format!("{transport:?} {options:?}");
    for secret in [API_KEY, TOKEN, SESSION] {
        assert!(!shown.contains(secret), "{shown}");
    }
    let client = within(
        "initialize",
        serve_client_with_lifecycle((), transport, ClientLifecycleMode::Initialize),
    )
    .await
    .expect("initialize");
    within("tools/list", client.list_all_tools())
        .await
        .expect("tools/list");
    within("cancel", client.cancel())
        .await
        .expect("a clean stop");

    let seen = server.seen();
    // The GET, then initialize, notifications/initialized and tools/list.
    assert!(seen.len() >= 4, "{seen:?}");
    for request in &seen {
        assert_eq!(request.headers["x-api-key"], API_KEY, "{}", request.method);
        assert_eq!(request.headers["authorization"], TOKEN);
    }
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].headers["accept"], "text/event-stream");
    for post in &seen[1..] {
        assert_eq!(post.method, "POST");
        assert_eq!(post.query.as_deref(), Some(SESSION));
        assert_eq!(post.headers["content-type"], "application/json");
    }

    let logs = logs.text();
    assert!(logs.contains("HTTP+SSE session opened"), "{logs}");
    for secret in [API_KEY, TOKEN, SESSION] {
        assert!(!logs.contains(secret), "{secret} is in the logs:\n{logs}");
    }
}

#[tokio::test]
async fn malformed_messages_are_skipped_and_oversized_events_end_the_transport() {
    let server = FakeServer::start(stream_with_endpoint("/message")).await;
    let options = LegacySseOptions {
        max_event_bytes: 1024,
        ..LegacySseOptions::default()
    };
    let mut transport = legacy_sse::connect(&loopback_client(), &server.url(), options)
        .await
        .expect("connect");
    server.push(": keep-alive\n\nevent: message\ndata: {not json\n\n");
    server.push("event: ping\ndata: ignored\n\n");
    server.push("event: endpoint\ndata: http://elsewhere.example/steal\n\n");
    server.push(
        "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n",
    );
    let next = within("receive", Transport::<RoleClient>::receive(&mut transport))
        .await
        .expect("the valid notification");
    assert!(matches!(next, JsonRpcMessage::Notification(_)), "{next:?}");

    // A repeated endpoint event did not move the POSTs: a ping still reaches this server.
    Transport::<RoleClient>::send(&mut transport, ping(7))
        .await
        .expect("the ping POST");
    let answer = within("receive", Transport::<RoleClient>::receive(&mut transport))
        .await
        .expect("the ping answer");
    assert!(matches!(answer, JsonRpcMessage::Response(_)), "{answer:?}");

    server.push(format!("data: \"{}\"\n\n", "x".repeat(2048)));
    let next = within("receive", Transport::<RoleClient>::receive(&mut transport)).await;
    assert!(next.is_none(), "{next:?}");
    assert!(transport.is_closed());
}

#[tokio::test]
async fn dropping_the_transport_closes_the_stream() {
    let server = FakeServer::start(stream_with_endpoint("/message")).await;
    let transport = legacy_sse::connect(
        &loopback_client(),
        &server.url(),
        LegacySseOptions::default(),
    )
    .await
    .expect("connect");
    drop(transport);
    server.wait_stream_dropped().await;
}

#[tokio::test]
async fn a_post_answered_404_means_the_session_is_gone() {
    let server =
        FakeServer::start_with(stream_with_endpoint("/message"), StatusCode::NOT_FOUND).await;
    let mut transport = legacy_sse::connect(
        &loopback_client(),
        &server.url(),
        LegacySseOptions::default(),
    )
    .await
    .expect("connect");
    let error = Transport::<RoleClient>::send(&mut transport, ping(1))
        .await
        .expect_err("404");
    assert!(
        matches!(error, LegacySseError::SessionGone { status: 404 }),
        "{error:?}"
    );
    assert!(error.is_retryable());
    let next = within("receive", Transport::<RoleClient>::receive(&mut transport)).await;
    assert!(next.is_none(), "{next:?}");
    server.wait_stream_dropped().await;
}

#[tokio::test]
async fn a_post_answered_401_carries_the_challenge() {
    let server =
        FakeServer::start_with(stream_with_endpoint("/message"), StatusCode::UNAUTHORIZED).await;
    let mut transport = legacy_sse::connect(
        &loopback_client(),
        &server.url(),
        LegacySseOptions::default(),
    )
    .await
    .expect("connect");
    let error = Transport::<RoleClient>::send(&mut transport, ping(1))
        .await
        .expect_err("401");
    assert!(
        matches!(error, LegacySseError::Unauthorized { status: 401, .. }),
        "{error:?}"
    );
}

/// Regression: the GET stream must not be cut off by the client's total request timeout,
/// which is meant for single requests, not for a session-long stream.
#[tokio::test]
async fn the_stream_outlives_the_client_total_timeout() {
    let server = FakeServer::start(stream_with_endpoint("/message")).await;
    let client = SafeClient::new(
        Destinations::public_only().with_loopback(true),
        ClientOptions {
            total_timeout: Some(Duration::from_millis(300)),
            ..ClientOptions::default()
        },
    )
    .expect("a client");
    let transport = legacy_sse::connect(&client, &server.url(), LegacySseOptions::default())
        .await
        .expect("connect");
    let service = within(
        "initialize",
        serve_client_with_lifecycle((), transport, ClientLifecycleMode::Initialize),
    )
    .await
    .expect("initialize");
    tokio::time::sleep(Duration::from_millis(900)).await;
    within("tools/list", service.list_all_tools())
        .await
        .expect("the stream is still open");
}
