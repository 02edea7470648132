//! A language-model provider double that speaks OpenAI's or Mistral's chat-completions wire
//! format for real, over HTTP on loopback, answering as a test scripts it.
//!
//! No real provider can be reached from the tests, so this is the one place where Switchboard
//! talks to a double (CONVENTIONS.md, rule 8). It behaves as the providers' public API
//! references describe: `POST /v1/chat/completions` with `stream: true` answers with
//! `text/event-stream` chunks (`chat.completion.chunk`) and `data: [DONE]`. OpenAI streams a
//! tool call's id and name first and its arguments in fragments, and sends usage in a last
//! chunk with empty `choices` when `stream_options.include_usage` asks for it; Mistral sends
//! each tool call whole in one delta, ids of nine letters and digits, and usage on the last
//! chunk. Errors come in each provider's JSON error shape, and Mistral refuses unknown request
//! fields with 422, as the real API does.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use switchboard_domain::ProviderKind;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use url::Url;

/// How the double answers one request.
#[derive(Debug, Clone)]
pub struct Scripted {
    answer: Answer,
    chunk_delay: Duration,
    usage: Option<(u64, u64)>,
    cut_off: bool,
}

#[derive(Debug, Clone)]
enum Answer {
    Reply {
        text: String,
        calls: Vec<(String, Value)>,
    },
    Hang,
    Status {
        code: u16,
        body: String,
    },
    Raw(String),
}

impl Scripted {
    fn new(answer: Answer) -> Self {
        Self {
            answer,
            chunk_delay: Duration::ZERO,
            usage: None,
            cut_off: false,
        }
    }

    /// A text reply, streamed a word at a time, finishing with `stop`.
    pub fn text(text: impl Into<String>) -> Self {
        Self::new(Answer::Reply {
            text: text.into(),
            calls: Vec::new(),
        })
    }

    /// A reply that calls tools, `(name, arguments)`, in order, finishing with `tool_calls`.
    /// Ids are generated in the provider's style: `call_` and 24 letters and digits for
    /// OpenAI, nine letters and digits for Mistral.
    pub fn tool_calls<I, N>(calls: I) -> Self
    where
        I: IntoIterator<Item = (N, Value)>,
        N: Into<String>,
    {
        Self::text_then_tools("", calls)
    }

    /// Some text, then tool calls, in one reply.
    pub fn text_then_tools<I, N>(text: impl Into<String>, calls: I) -> Self
    where
        I: IntoIterator<Item = (N, Value)>,
        N: Into<String>,
    {
        Self::new(Answer::Reply {
            text: text.into(),
            calls: calls.into_iter().map(|(n, a)| (n.into(), a)).collect(),
        })
    }

    /// Status 200 and the event-stream headers, then nothing until the double is dropped.
    pub fn hang() -> Self {
        Self::new(Answer::Hang)
    }

    /// An answer with `code` and `body`, for error mapping. The body is sent as JSON when it
    /// parses as JSON, as HTML when it starts with `<`, else as plain text.
    pub fn status(code: u16, body: impl Into<String>) -> Self {
        Self::new(Answer::Status {
            code,
            body: body.into(),
        })
    }

    /// This exact event-stream body (a recorded fixture), sent one event at a time.
    pub fn sse(body: impl Into<String>) -> Self {
        Self::new(Answer::Raw(body.into()))
    }

    /// Waits `delay` before every chunk after the first, so a test can drop the stream while
    /// the reply is still coming.
    pub fn with_chunk_delay(mut self, delay: Duration) -> Self {
        self.chunk_delay = delay;
        self
    }

    /// The usage to report (prompt and completion tokens) instead of an estimate from the
    /// lengths of the request and the reply.
    pub fn with_usage(mut self, prompt_tokens: u64, completion_tokens: u64) -> Self {
        self.usage = Some((prompt_tokens, completion_tokens));
        self
    }

    /// Sends everything but the finish, then breaks the connection off, as a provider that
    /// fails mid-reply.
    pub fn cut_off(mut self) -> Self {
        self.cut_off = true;
        self
    }
}

/// The role and text of the last message of a request body; the text is empty when the
/// message has none (an assistant message with only tool calls).
pub fn last_message(body: &Value) -> (&str, &str) {
    let last = body
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.last());
    let field = |name: &str| {
        last.and_then(|m| m.get(name))
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    (field("role"), field("content"))
}

/// A responder for the usual two-step exchange: when the last message is not a tool result,
/// call `tool` with `arguments`; once it is, answer `answer`.
pub fn call_then_answer(
    tool: impl Into<String>,
    arguments: Value,
    answer: impl Into<String>,
) -> impl Fn(&Value) -> Scripted + Send + Sync + 'static {
    let tool = tool.into();
    let answer = answer.into();
    move |body| match last_message(body) {
        ("tool", _) => Scripted::text(answer.clone()),
        _ => Scripted::tool_calls([(tool.clone(), arguments.clone())]),
    }
}

type Responder = Box<dyn Fn(&Value) -> Scripted + Send + Sync>;

/// A running provider double at `http://127.0.0.1:PORT/v1`; dropping it stops the server and
/// drops its connections.
pub struct LlmDouble {
    base_url: Url,
    state: Arc<DoubleState>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for LlmDouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmDouble")
            .field("kind", &self.state.kind)
            .field("base_url", &self.base_url.as_str())
            .finish_non_exhaustive()
    }
}

struct DoubleState {
    kind: ProviderKind,
    responder: Responder,
    received: Mutex<Vec<Received>>,
    key: Mutex<Option<String>>,
    ids: AtomicU64,
    completed: AtomicU64,
    cancelled: AtomicU64,
    /// The client addresses requests came from: one per connection.
    peers: Mutex<HashSet<SocketAddr>>,
    shutdown: CancellationToken,
}

#[derive(Debug, Clone)]
struct Received {
    body: Value,
    authorization: Option<String>,
}

impl LlmDouble {
    /// Starts a double speaking `kind`'s wire format; `responder` decides each answer from
    /// the request body.
    ///
    /// # Panics
    ///
    /// When no loopback port can be bound.
    pub async fn start(
        kind: ProviderKind,
        responder: impl Fn(&Value) -> Scripted + Send + Sync + 'static,
    ) -> LlmDouble {
        let state = Arc::new(DoubleState {
            kind,
            responder: Box::new(responder),
            received: Mutex::new(Vec::new()),
            key: Mutex::new(None),
            ids: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            peers: Mutex::default(),
            shutdown: CancellationToken::new(),
        });
        let router = axum::Router::new()
            .route("/v1/chat/completions", axum::routing::post(chat))
            .fallback(not_found)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding 127.0.0.1:0 for the model provider double");
        let addr = listener.local_addr().expect("the listener's address");
        let task = tokio::spawn({
            let shutdown = state.shutdown.clone();
            async move {
                let service = router.into_make_service_with_connect_info::<SocketAddr>();
                let _ = axum::serve(listener, service)
                    .with_graceful_shutdown(shutdown.cancelled_owned())
                    .await;
            }
        });
        LlmDouble {
            base_url: format!("http://{addr}/v1").parse().expect("a valid URL"),
            state,
            task,
        }
    }

    /// The API base URL, `http://127.0.0.1:PORT/v1`, to which clients append
    /// `/chat/completions`.
    pub fn base_url(&self) -> Url {
        self.base_url.clone()
    }

    /// The wire format the double speaks.
    pub fn kind(&self) -> ProviderKind {
        self.state.kind
    }

    /// From now on, answers 401 (in the provider's error format) to requests without
    /// `Authorization: Bearer {key}`.
    pub fn require_key(&self, key: &str) {
        *self.state.key.lock().expect("key lock") = Some(key.to_owned());
    }

    /// The bodies of every request received on the chat endpoint, in order (refused ones
    /// included).
    pub fn requests(&self) -> Vec<Value> {
        let received = self.state.received.lock().expect("requests lock");
        received.iter().map(|r| r.body.clone()).collect()
    }

    /// The `Authorization` header of every request received, in the order of
    /// [`LlmDouble::requests`].
    pub fn authorizations(&self) -> Vec<Option<String>> {
        let received = self.state.received.lock().expect("requests lock");
        received.iter().map(|r| r.authorization.clone()).collect()
    }

    /// How many connections the chat endpoint's requests came over.
    pub fn connections(&self) -> usize {
        self.state.peers.lock().expect("peers lock").len()
    }

    /// How many streamed answers were sent to their end.
    pub fn completed(&self) -> u64 {
        self.state.completed.load(Ordering::SeqCst)
    }

    /// How many streamed answers the client went away from before their end (noticed when
    /// the next chunk could not be written).
    pub fn cancelled(&self) -> u64 {
        self.state.cancelled.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` streamed answers were cancelled, for at most ten seconds;
    /// whether they were.
    pub async fn wait_cancelled(&self, n: u64) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.cancelled() < n {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }
}

impl Drop for LlmDouble {
    fn drop(&mut self) {
        // Hanging answers watch the token and then end their connections.
        self.state.shutdown.cancel();
        self.task.abort();
    }
}

async fn not_found(State(state): State<Arc<DoubleState>>) -> Response {
    error_response(state.kind, StatusCode::NOT_FOUND, "no such endpoint")
}

async fn chat(
    State(state): State<Arc<DoubleState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.peers.lock().expect("peers lock").insert(peer);
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error_response(
            state.kind,
            StatusCode::BAD_REQUEST,
            "the body is not valid JSON",
        );
    };
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    state
        .received
        .lock()
        .expect("requests lock")
        .push(Received {
            body: body.clone(),
            authorization: authorization.clone(),
        });
    let required = state.key.lock().expect("key lock").clone();
    if let Some(key) = required
        && authorization.as_deref() != Some(format!("Bearer {key}").as_str())
    {
        return unauthorized(state.kind);
    }
    if let Some(refusal) = check_request(state.kind, &body) {
        return refusal;
    }
    let scripted = (state.responder)(&body);
    let frames = match &scripted.answer {
        Answer::Status { code, body } => return status_response(*code, body.clone()),
        Answer::Hang => return hang(&state),
        Answer::Raw(raw) => split_events(raw),
        Answer::Reply { text, calls } => {
            let reply = Render {
                state: &state,
                request: &body,
                usage: scripted.usage,
            };
            reply.frames(text, calls)
        }
    };
    stream_response(&state, frames, scripted.chunk_delay, scripted.cut_off)
}

/// What the real APIs refuse before answering: a missing model or message list, a request
/// that does not stream (the double only streams), and for Mistral any field its API does not
/// know (it answers 422, as FastAPI does for extra inputs).
fn check_request(kind: ProviderKind, body: &Value) -> Option<Response> {
    let bad = |message: &str| Some(error_response(kind, StatusCode::BAD_REQUEST, message));
    if !body.get("model").is_some_and(Value::is_string) {
        return bad("you must provide a model parameter");
    }
    let messages = body.get("messages").and_then(Value::as_array);
    if messages.is_none_or(Vec::is_empty) {
        return bad("messages must be a non-empty array");
    }
    if body.get("stream") != Some(&Value::Bool(true)) {
        return bad("this double answers streamed requests only");
    }
    if kind == ProviderKind::Mistral {
        const KNOWN: &[&str] = &[
            "model",
            "messages",
            "stream",
            "temperature",
            "top_p",
            "max_tokens",
            "stop",
            "random_seed",
            "response_format",
            "tools",
            "tool_choice",
            "parallel_tool_calls",
            "presence_penalty",
            "frequency_penalty",
            "n",
            "prediction",
            "prompt_mode",
            "safe_prompt",
        ];
        let object = body.as_object()?;
        if let Some(extra) = object.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            let detail = json!({
                "object": "error",
                "message": { "detail": [{
                    "type": "extra_forbidden",
                    "loc": ["body", extra],
                    "msg": "Extra inputs are not permitted",
                    "input": object[extra],
                }]},
                "type": "invalid_request_error",
                "param": null,
                "code": null,
            });
            return Some((StatusCode::UNPROCESSABLE_ENTITY, axum::Json(detail)).into_response());
        }
    }
    None
}

fn unauthorized(kind: ProviderKind) -> Response {
    match kind {
        ProviderKind::OpenAi => error_response(
            kind,
            StatusCode::UNAUTHORIZED,
            "Incorrect API key provided. You can find your API key in your account settings.",
        ),
        ProviderKind::Mistral => (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({ "detail": "Unauthorized" })),
        )
            .into_response(),
    }
}

/// An error in the provider's JSON shape: OpenAI nests it under `error`, Mistral does not.
fn error_response(kind: ProviderKind, status: StatusCode, message: &str) -> Response {
    let body = match kind {
        ProviderKind::OpenAi => json!({ "error": {
            "message": message,
            "type": "invalid_request_error",
            "param": null,
            "code": null,
        }}),
        ProviderKind::Mistral => json!({
            "object": "error",
            "message": message,
            "type": "invalid_request_error",
            "param": null,
            "code": null,
        }),
    };
    (status, axum::Json(body)).into_response()
}

fn status_response(code: u16, body: String) -> Response {
    let status = StatusCode::from_u16(code).expect("a valid HTTP status code");
    let content_type = if serde_json::from_str::<Value>(&body).is_ok() {
        "application/json"
    } else if body.trim_start().starts_with('<') {
        "text/html; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// Counts an answer as completed or cancelled when hyper drops its body.
struct Progress {
    state: Arc<DoubleState>,
    finished: bool,
}

impl Drop for Progress {
    fn drop(&mut self) {
        let counter = if self.finished {
            &self.state.completed
        } else {
            &self.state.cancelled
        };
        counter.fetch_add(1, Ordering::SeqCst);
    }
}

fn event_stream(body: Body) -> Response {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn hang(state: &Arc<DoubleState>) -> Response {
    let progress = Progress {
        state: state.clone(),
        finished: false,
    };
    let shutdown = state.shutdown.clone();
    let body = futures::stream::unfold(
        (progress, shutdown),
        |(mut progress, shutdown)| async move {
            if progress.finished {
                return None;
            }
            shutdown.cancelled().await;
            // The double is going away: break the connection off rather than end the stream.
            progress.finished = true;
            let err = std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "stopped");
            Some((Err::<Bytes, _>(err), (progress, shutdown)))
        },
    );
    event_stream(Body::from_stream(body))
}

fn stream_response(
    state: &Arc<DoubleState>,
    frames: Vec<String>,
    delay: Duration,
    cut_off: bool,
) -> Response {
    struct Cursor {
        frames: std::vec::IntoIter<String>,
        progress: Progress,
        sent: usize,
    }
    let cursor = Cursor {
        frames: frames.into_iter(),
        progress: Progress {
            state: state.clone(),
            finished: false,
        },
        sent: 0,
    };
    let body = futures::stream::unfold(cursor, move |mut cursor| async move {
        if cursor.progress.finished {
            return None;
        }
        if cursor.sent > 0 && !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        match cursor.frames.next() {
            Some(frame) => {
                cursor.sent += 1;
                Some((Ok(Bytes::from(frame)), cursor))
            }
            None => {
                cursor.progress.finished = true;
                if cut_off {
                    let err = std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "the double broke the reply off",
                    );
                    Some((Err(err), cursor))
                } else {
                    None
                }
            }
        }
    });
    event_stream(Body::from_stream(body))
}

/// A raw event-stream body cut into its events, each with its blank line.
fn split_events(raw: &str) -> Vec<String> {
    let mut frames = Vec::new();
    let mut rest = raw;
    while let Some(at) = rest.find("\n\n") {
        frames.push(rest[..at + 2].to_owned());
        rest = &rest[at + 2..];
    }
    if !rest.is_empty() {
        frames.push(rest.to_owned());
    }
    frames
}

/// Renders a scripted reply as the provider would stream it.
struct Render<'a> {
    state: &'a DoubleState,
    request: &'a Value,
    usage: Option<(u64, u64)>,
}

impl Render<'_> {
    fn frames(&self, text: &str, calls: &[(String, Value)]) -> Vec<String> {
        let model = self
            .request
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let calls: Vec<(String, String, String)> = calls
            .iter()
            .map(|(name, args)| (self.call_id(), name.clone(), args.to_string()))
            .collect();
        let (prompt_tokens, completion_tokens) = self.usage.unwrap_or_else(|| {
            let prompt = self
                .request
                .get("messages")
                .map_or(0, |m| m.to_string().len());
            let reply = text.len() + calls.iter().map(|c| c.2.len()).sum::<usize>();
            ((prompt / 4).max(1) as u64, (reply / 4 + 1) as u64)
        });
        let usage = json!({
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        });
        let finish = if calls.is_empty() {
            "stop"
        } else {
            "tool_calls"
        };
        let mut frames = Vec::new();
        match self.state.kind {
            ProviderKind::OpenAi => {
                let id = format!("chatcmpl-{}", self.alphanumeric(29));
                let include_usage = self
                    .request
                    .pointer("/stream_options/include_usage")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let chunk = |choices: Value| {
                    let mut c = json!({
                        "id": id,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "system_fingerprint": "fp_double",
                        "choices": choices,
                    });
                    if include_usage {
                        c["usage"] = Value::Null;
                    }
                    c
                };
                let delta = |delta: Value, finish: Value| {
                    chunk(json!([{
                        "index": 0,
                        "delta": delta,
                        "logprobs": null,
                        "finish_reason": finish,
                    }]))
                };
                frames.push(delta(
                    json!({ "role": "assistant", "content": "", "refusal": null }),
                    Value::Null,
                ));
                for piece in words(text) {
                    frames.push(delta(json!({ "content": piece }), Value::Null));
                }
                for (index, (call_id, name, args)) in calls.iter().enumerate() {
                    frames.push(delta(
                        json!({ "tool_calls": [{
                            "index": index,
                            "id": call_id,
                            "type": "function",
                            "function": { "name": name, "arguments": "" },
                        }]}),
                        Value::Null,
                    ));
                    for fragment in thirds(args) {
                        frames.push(delta(
                            json!({ "tool_calls": [{
                                "index": index,
                                "function": { "arguments": fragment },
                            }]}),
                            Value::Null,
                        ));
                    }
                }
                frames.push(delta(json!({}), json!(finish)));
                if include_usage {
                    let mut last = chunk(json!([]));
                    last["usage"] = usage;
                    frames.push(last);
                }
            }
            ProviderKind::Mistral => {
                let id = self.hex(32);
                let chunk = |delta: Value, finish: Value| {
                    json!({
                        "id": id,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
                    })
                };
                frames.push(chunk(
                    json!({ "role": "assistant", "content": "" }),
                    Value::Null,
                ));
                for piece in words(text) {
                    frames.push(chunk(json!({ "content": piece }), Value::Null));
                }
                let last_delta = if calls.is_empty() {
                    json!({ "content": "" })
                } else {
                    let calls: Vec<Value> = calls
                        .iter()
                        .enumerate()
                        .map(|(index, (call_id, name, args))| {
                            json!({
                                "id": call_id,
                                "function": { "name": name, "arguments": args },
                                "index": index,
                            })
                        })
                        .collect();
                    json!({ "content": "", "tool_calls": calls })
                };
                let mut last = chunk(last_delta, json!(finish));
                last["usage"] = usage;
                frames.push(last);
            }
        }
        let mut out: Vec<String> = frames.iter().map(|f| format!("data: {f}\n\n")).collect();
        out.push("data: [DONE]\n\n".to_owned());
        out
    }

    fn call_id(&self) -> String {
        match self.state.kind {
            ProviderKind::OpenAi => format!("call_{}", self.alphanumeric(24)),
            ProviderKind::Mistral => self.alphanumeric(9),
        }
    }

    fn alphanumeric(&self, len: usize) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        (0..len)
            .map(|_| ALPHABET[(self.next_random() % ALPHABET.len() as u64) as usize] as char)
            .collect()
    }

    fn hex(&self, len: usize) -> String {
        (0..len)
            .map(|_| char::from_digit((self.next_random() % 16) as u32, 16).expect("a hex digit"))
            .collect()
    }

    /// splitmix64 over a per-double counter: ids differ within a double and repeat from one
    /// run to the next, which keeps snapshots stable.
    fn next_random(&self) -> u64 {
        let mut z = self
            .state
            .ids
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// `text` cut after each run of whitespace: `"Hello there"` → `["Hello ", "there"]`.
fn words(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_space = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            in_space = true;
        } else if in_space {
            out.push(&text[start..i]);
            start = i;
            in_space = false;
        }
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

/// `text` in three pieces of about equal length (fewer when it is shorter), on character
/// boundaries.
fn thirds(text: &str) -> Vec<&str> {
    let chars: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    let step = chars.len().div_ceil(3).max(1);
    let mut out = Vec::new();
    let mut at = 0;
    while at < chars.len() {
        let end = chars.get(at + step).copied().unwrap_or(text.len());
        out.push(&text[chars[at]..end]);
        at += step;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_splits_into_words_and_arguments_into_thirds() {
        assert_eq!(
            words("Hello there,  world"),
            vec!["Hello ", "there,  ", "world"]
        );
        assert_eq!(words(""), Vec::<&str>::new());
        assert_eq!(thirds(r#"{"q":"é"}"#).concat(), r#"{"q":"é"}"#);
        assert_eq!(thirds(r#"{"q":"é"}"#).len(), 3);
        assert_eq!(thirds("ab"), vec!["a", "b"]);
    }

    #[test]
    fn events_are_split_on_blank_lines() {
        assert_eq!(
            split_events("data: a\n\ndata: b\n\ndata: c\n"),
            vec!["data: a\n\n", "data: b\n\n", "data: c\n"]
        );
    }

    #[test]
    fn the_last_message_is_read() {
        let body = json!({ "messages": [
            { "role": "user", "content": "hi" },
            { "role": "assistant", "content": null, "tool_calls": [] },
        ]});
        assert_eq!(last_message(&body), ("assistant", ""));
        assert_eq!(last_message(&json!({})), ("", ""));
    }
}
