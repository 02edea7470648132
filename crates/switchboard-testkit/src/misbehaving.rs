//! A deliberately broken MCP server, for testing how clients cope with failing upstreams.
//!
//! It speaks just enough of the session-based Streamable HTTP transport (MCP 2025-11-25,
//! "Basic › Transports › Streamable HTTP") to reach `tools/call`: `initialize` answers with an
//! `Mcp-Session-Id`, `notifications/initialized` with 202, `tools/list` with one tool, and
//! requests without a session id with 400 (which also makes a client that first probes with
//! the stateless `server/discover` fall back to `initialize`). Then `tools/call` misbehaves in
//! the chosen [`Behaviour`]. Counters in [`MisbehavingStats`] tell what the client did.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::rmcp_server::big_text;

const SESSION_HEADER: &str = "mcp-session-id";
const LAST_EVENT_ID_HEADER: &str = "last-event-id";
const PROTOCOL_VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
/// The only tool the server lists; calling any name triggers the behaviour.
pub const TOOL_NAME: &str = "work";

/// How the server misbehaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// Answers `tools/call` with a 200 and part of a JSON body, then drops the connection.
    DieMidCall,
    /// Never answers `tools/call` (until the server is dropped, which drops the connection).
    Hang,
    /// Answers `tools/call` with a body that is not valid JSON.
    MalformedJson,
    /// Answers `tools/call` with a valid result whose text is this many bytes long.
    Oversized(usize),
    /// Answers 404 to the second POST that carries a session id, forgetting the session
    /// (the spec's "session expired"); a fresh `initialize` then works, and so does everything
    /// after it.
    ExpireSession,
    /// Answers `tools/call` with an SSE stream: a priming event (an event id, empty data and a
    /// `retry:` field of `retry`), then ends the response before the result. A GET with
    /// `Last-Event-ID` set to that event id resumes the stream and delivers the result.
    CutSseStream {
        /// The reconnection delay announced in the `retry:` field, which the client must wait
        /// before resuming (see [`MisbehavingStats::resume_delay`]).
        retry: Duration,
        /// `false`: the response ends cleanly, as a server does that closes the connection to
        /// make the client poll (2025-11-25 §"Sending Messages to the Server", SEP-1699).
        /// `true`: the connection breaks off mid-response, as in a network failure.
        abrupt: bool,
    },
}

impl Behaviour {
    /// [`Behaviour::CutSseStream`] that ends the response cleanly and announces a 200 ms
    /// reconnection delay.
    pub fn cut_sse_stream() -> Behaviour {
        Behaviour::CutSseStream {
            retry: Duration::from_millis(200),
            abrupt: false,
        }
    }
}

/// What the server saw, for assertions on the client's behaviour.
#[derive(Debug, Default)]
pub struct MisbehavingStats {
    initializes: AtomicU64,
    tool_calls: AtomicU64,
    gets: AtomicU64,
    deletes: AtomicU64,
    expired: AtomicU64,
    resumed: AtomicU64,
    methods: Mutex<Vec<String>>,
    last_event_id: Mutex<Option<String>>,
    cut_at: Mutex<Option<Instant>>,
    resume_delay: Mutex<Option<Duration>>,
}

impl MisbehavingStats {
    /// How many `initialize` requests arrived.
    pub fn initializes(&self) -> u64 {
        self.initializes.load(Ordering::SeqCst)
    }

    /// How many `tools/call` requests arrived.
    pub fn tool_calls(&self) -> u64 {
        self.tool_calls.load(Ordering::SeqCst)
    }

    /// How many GET requests arrived (standalone streams and resumptions).
    pub fn gets(&self) -> u64 {
        self.gets.load(Ordering::SeqCst)
    }

    /// How many DELETE requests (session terminations) arrived.
    pub fn deletes(&self) -> u64 {
        self.deletes.load(Ordering::SeqCst)
    }

    /// Whether a DELETE (session termination) arrived.
    pub fn delete_received(&self) -> bool {
        self.deletes() > 0
    }

    /// How many requests were answered 404 because their session had expired.
    pub fn expired(&self) -> u64 {
        self.expired.load(Ordering::SeqCst)
    }

    /// How many cut SSE streams were resumed with the right `Last-Event-ID`.
    pub fn resumed(&self) -> u64 {
        self.resumed.load(Ordering::SeqCst)
    }

    /// The JSON-RPC methods of every POSTed request and notification, in arrival order.
    pub fn methods(&self) -> Vec<String> {
        self.methods.lock().expect("stats lock").clone()
    }

    /// The last `Last-Event-ID` header seen on any request.
    pub fn last_event_id(&self) -> Option<String> {
        self.last_event_id.lock().expect("stats lock").clone()
    }

    /// For [`Behaviour::CutSseStream`]: the time from ending the stream to the client's
    /// resuming GET, which the `retry:` field asks to be at least that long.
    pub fn resume_delay(&self) -> Option<Duration> {
        *self.resume_delay.lock().expect("stats lock")
    }
}

/// A running misbehaving server at `http://127.0.0.1:PORT/mcp`; dropping it stops the server
/// and drops its connections.
#[derive(Debug)]
pub struct Misbehaving {
    url: String,
    stats: Arc<MisbehavingStats>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Misbehaving {
    /// Starts a server that misbehaves as `behaviour` says.
    ///
    /// # Panics
    ///
    /// When no loopback port can be bound.
    pub async fn start(behaviour: Behaviour) -> Misbehaving {
        let stats = Arc::new(MisbehavingStats::default());
        let shutdown = CancellationToken::new();
        let state = Arc::new(ServerState {
            behaviour,
            stats: stats.clone(),
            shutdown: shutdown.clone(),
            sessions: Mutex::new(Sessions::default()),
        });
        let router = axum::Router::new()
            .route(
                "/mcp",
                axum::routing::post(post_message)
                    .get(get_stream)
                    .delete(delete_session),
            )
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding 127.0.0.1:0 for the misbehaving server");
        let addr = listener.local_addr().expect("the listener's address");
        let task = tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                let _ = axum::serve(listener, router)
                    .with_graceful_shutdown(shutdown.cancelled_owned())
                    .await;
            }
        });
        Misbehaving {
            url: format!("http://{addr}/mcp"),
            stats,
            shutdown,
            task,
        }
    }

    /// The MCP URL, `http://127.0.0.1:PORT/mcp`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// What the server saw so far.
    pub fn stats(&self) -> &MisbehavingStats {
        &self.stats
    }
}

impl Drop for Misbehaving {
    fn drop(&mut self) {
        // Hanging handlers watch the token and then drop their connections.
        self.shutdown.cancel();
        self.task.abort();
    }
}

struct ServerState {
    behaviour: Behaviour,
    stats: Arc<MisbehavingStats>,
    shutdown: CancellationToken,
    sessions: Mutex<Sessions>,
}

#[derive(Default)]
struct Sessions {
    live: HashSet<String>,
    created: u64,
    /// POSTs that carried a session id, counted for [`Behaviour::ExpireSession`].
    posts_with_session: u64,
    expired_once: bool,
    /// How many SSE streams were opened, for unique stream ids.
    streams_opened: u64,
    /// Cut SSE streams waiting to be resumed: priming event id → (session, the result message).
    cut_streams: HashMap<String, (String, Value)>,
}

type Shared = State<Arc<ServerState>>;

/// POST: one JSON-RPC message per request, as the transport requires.
async fn post_message(State(state): Shared, headers: HeaderMap, body: Bytes) -> Response {
    note_last_event_id(&state, &headers);
    let Ok(message) = serde_json::from_slice::<Value>(&body) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            error_message(Value::Null, -32700, "parse error"),
        );
    };
    let method = message
        .get("method")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let id = message.get("id").cloned();
    if let Some(method) = &method {
        state
            .stats
            .methods
            .lock()
            .expect("stats lock")
            .push(method.clone());
    }
    let Some(method) = method else {
        // A response to a server request; this server sends none, so there is nothing to do.
        return StatusCode::ACCEPTED.into_response();
    };

    if method == "initialize" {
        return initialize(&state, id.unwrap_or(Value::Null), &message);
    }
    let session = match check_session(&state, &headers, true) {
        Ok(session) => session,
        Err(response) => return *response,
    };
    let Some(id) = id else {
        // Notifications (`notifications/initialized`, `notifications/cancelled`, …).
        return StatusCode::ACCEPTED.into_response();
    };
    match method.as_str() {
        "ping" => json_response(StatusCode::OK, result_message(id, json!({}))),
        "tools/list" => json_response(
            StatusCode::OK,
            result_message(
                id,
                json!({ "tools": [{
                    "name": TOOL_NAME,
                    "description": "Does some work (and then misbehaves).",
                    "inputSchema": { "type": "object", "properties": {} },
                }]}),
            ),
        ),
        "tools/call" => {
            state.stats.tool_calls.fetch_add(1, Ordering::SeqCst);
            call_tool(&state, id, session).await
        }
        _ => json_response(
            StatusCode::OK,
            error_message(id, -32601, &format!("method not found: {method}")),
        ),
    }
}

fn initialize(state: &ServerState, id: Value, message: &Value) -> Response {
    state.stats.initializes.fetch_add(1, Ordering::SeqCst);
    let requested = message
        .pointer("/params/protocolVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let version = if PROTOCOL_VERSIONS.contains(&requested) {
        requested
    } else {
        PROTOCOL_VERSIONS[0]
    };
    let session = {
        let mut sessions = state.sessions.lock().expect("sessions lock");
        sessions.created += 1;
        // Visible ASCII only, as the spec requires; guessable, which is fine for a test server.
        let session = format!("misbehaving-{}", sessions.created);
        sessions.live.insert(session.clone());
        session
    };
    let result = json!({
        "protocolVersion": version,
        "capabilities": { "tools": {} },
        "serverInfo": { "name": "switchboard-misbehaving", "version": "1.0.0" },
    });
    let mut response = json_response(StatusCode::OK, result_message(id, result));
    response.headers_mut().insert(
        SESSION_HEADER,
        HeaderValue::from_str(&session).expect("session ids are visible ASCII"),
    );
    response
}

/// The session named by the request, or the answer the spec prescribes: 400 without one, 404
/// for an unknown (or, with [`Behaviour::ExpireSession`], just expired) one.
///
/// Only POSTs count towards the expiry, so a client's concurrent GET cannot change which request
/// meets it.
fn check_session(
    state: &ServerState,
    headers: &HeaderMap,
    is_post: bool,
) -> Result<String, Box<Response>> {
    let Some(session) = headers
        .get(SESSION_HEADER)
        .and_then(|value| value.to_str().ok())
    else {
        return Err(Box::new(json_response(
            StatusCode::BAD_REQUEST,
            error_message(Value::Null, -32600, "missing Mcp-Session-Id"),
        )));
    };
    let mut sessions = state.sessions.lock().expect("sessions lock");
    if is_post {
        sessions.posts_with_session += 1;
    }
    let expire_now = state.behaviour == Behaviour::ExpireSession
        && !sessions.expired_once
        && sessions.posts_with_session == 2;
    if expire_now {
        sessions.expired_once = true;
        sessions.live.remove(session);
    }
    if !sessions.live.contains(session) {
        state.stats.expired.fetch_add(1, Ordering::SeqCst);
        return Err(Box::new(
            (StatusCode::NOT_FOUND, "session not found").into_response(),
        ));
    }
    Ok(session.to_owned())
}

async fn call_tool(state: &ServerState, id: Value, session: String) -> Response {
    match &state.behaviour {
        Behaviour::DieMidCall => {
            let partial = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"content":[{{"#);
            let chunks = futures::stream::iter([Ok(Bytes::from(partial))]).chain(
                futures::stream::once(async {
                    // Lets the first chunk leave before the connection is dropped.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "the server died mid-call",
                    ))
                }),
            );
            streaming_response(HeaderValue::from_static("application/json"), chunks)
        }
        Behaviour::Hang => {
            state.shutdown.cancelled().await;
            // The server is going away: drop the connection rather than answer.
            let aborted = futures::stream::once(async {
                Err::<Bytes, _>(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "the server stopped",
                ))
            });
            streaming_response(HeaderValue::from_static("application/json"), aborted)
        }
        Behaviour::MalformedJson => {
            let broken = format!(
                r#"{{"jsonrpc":"2.0","id":{id},"result":{{"content":[{{"type":"text","text":"unterminated"#
            );
            ([(header::CONTENT_TYPE, "application/json")], broken).into_response()
        }
        Behaviour::Oversized(bytes) => json_response(
            StatusCode::OK,
            result_message(id, text_result(&big_text(*bytes))),
        ),
        Behaviour::ExpireSession => {
            json_response(StatusCode::OK, result_message(id, text_result("ok")))
        }
        Behaviour::CutSseStream { retry, abrupt } => {
            let stream_id = {
                let mut sessions = state.sessions.lock().expect("sessions lock");
                // Event ids must be unique across the session's streams, so never reuse one.
                sessions.streams_opened += 1;
                let stream_id = format!("stream-{}", sessions.streams_opened);
                let priming_id = format!("{stream_id}/0");
                let result = result_message(id, text_result("resumed result"));
                sessions.cut_streams.insert(priming_id, (session, result));
                stream_id
            };
            // The priming event of the spec: an event id and empty data, here with the
            // reconnection delay. Then the response ends without the result.
            let priming = format!(
                "id: {stream_id}/0\nretry: {}\ndata: \n\n",
                retry.as_millis()
            );
            let stats = state.stats.clone();
            let abrupt = *abrupt;
            let end = futures::stream::once(async move {
                // Lets the priming event leave before the end.
                tokio::time::sleep(Duration::from_millis(20)).await;
                *stats.cut_at.lock().expect("stats lock") = Some(Instant::now());
                abrupt.then(|| {
                    Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "the SSE stream was cut",
                    ))
                })
            })
            .filter_map(std::future::ready);
            let chunks = futures::stream::iter([Ok(Bytes::from(priming))]).chain(end);
            streaming_response(HeaderValue::from_static("text/event-stream"), chunks)
        }
    }
}

/// GET: resumes a cut stream when `Last-Event-ID` names one; offers no standalone stream.
async fn get_stream(State(state): Shared, headers: HeaderMap) -> Response {
    state.stats.gets.fetch_add(1, Ordering::SeqCst);
    note_last_event_id(&state, &headers);
    let session = match check_session(&state, &headers, false) {
        Ok(session) => session,
        Err(response) => return *response,
    };
    let Some(last_event_id) = headers
        .get(LAST_EVENT_ID_HEADER)
        .and_then(|value| value.to_str().ok())
    else {
        // The spec lets a server decline the standalone stream with 405.
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    };
    let pending = {
        let mut sessions = state.sessions.lock().expect("sessions lock");
        match sessions.cut_streams.get(last_event_id) {
            Some((owner, _)) if *owner == session => sessions.cut_streams.remove(last_event_id),
            _ => None,
        }
    };
    let Some((_, result)) = pending else {
        return (StatusCode::BAD_REQUEST, "unknown Last-Event-ID").into_response();
    };
    state.stats.resumed.fetch_add(1, Ordering::SeqCst);
    if let Some(cut_at) = *state.stats.cut_at.lock().expect("stats lock") {
        *state.stats.resume_delay.lock().expect("stats lock") = Some(cut_at.elapsed());
    }
    let stream_id = last_event_id
        .split_once('/')
        .map_or(last_event_id, |(stream, _)| stream);
    // The resumed stream carries the rest of the original one, the result, and then ends.
    let event = format!("id: {stream_id}/1\ndata: {result}\n\n");
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        event,
    )
        .into_response()
}

/// DELETE: ends the session, as a client should when it is done.
async fn delete_session(State(state): Shared, headers: HeaderMap) -> Response {
    state.stats.deletes.fetch_add(1, Ordering::SeqCst);
    let session = match check_session(&state, &headers, false) {
        Ok(session) => session,
        Err(response) => return *response,
    };
    state
        .sessions
        .lock()
        .expect("sessions lock")
        .live
        .remove(&session);
    StatusCode::OK.into_response()
}

fn note_last_event_id(state: &ServerState, headers: &HeaderMap) {
    if let Some(id) = headers
        .get(LAST_EVENT_ID_HEADER)
        .and_then(|value| value.to_str().ok())
    {
        *state.stats.last_event_id.lock().expect("stats lock") = Some(id.to_owned());
    }
}

fn streaming_response<S>(content_type: HeaderValue, chunks: S) -> Response
where
    S: futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
{
    // hyper ends the connection when a body stream fails, which is the point here.
    let mut response = Response::new(Body::from_stream(chunks));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    response
}

fn json_response(status: StatusCode, message: Value) -> Response {
    (status, axum::Json(message)).into_response()
}

fn result_message(id: Value, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

fn error_message(id: Value, code: i64, message: &str) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } })
}

fn text_result(text: &str) -> Value {
    json!({ "content": [{ "type": "text", "text": text }], "isError": false })
}
