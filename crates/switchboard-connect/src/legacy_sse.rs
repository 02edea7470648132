//! A client for the old HTTP+SSE transport of MCP protocol 2024-11-05, which rmcp 3.x no
//! longer ships, as an rmcp [`Transport`] for the client role.
//!
//! The transport (MCP 2024-11-05, "Basic › Transports › HTTP with SSE") works like this:
//!
//! 1. The client GETs the server's SSE URL and keeps the `text/event-stream` response open.
//! 2. The server's first event is `endpoint`; its data is a URI, usually relative, to which
//!    the client POSTs every JSON-RPC message it sends.
//! 3. Everything the server sends (responses, its own requests, notifications) arrives as
//!    `message` events on the GET stream, one JSON-RPC message as the event's data.
//!
//! The revision defines no resumption: there is no `Last-Event-ID` replay and no session id the
//! client could present again, so when the GET stream ends the session is over. This transport
//! then ends too ([`Transport::receive`] yields `None`, which ends the rmcp service), and
//! reconnecting is the caller's job.
//!
//! Design decisions, each with its reason:
//!
//! - **Same origin only.** The endpoint URI is resolved against the SSE URL and must have the
//!   same scheme, host and port, or [`connect`] fails with [`LegacySseError::EndpointOrigin`].
//!   The POSTs carry the connector's credentials, and a server (or anything that can inject an
//!   event into the stream) must not be able to send them to another host. A later `endpoint`
//!   event is ignored for the same reason: the spec sends it once, "when a client connects".
//! - **Own SSE parser.** Events are parsed by the rules of the HTML standard (WHATWG HTML,
//!   "Server-sent events › Interpreting an event stream"), which tolerate what stricter parsers
//!   reject (lines without a colon, unknown fields). The parser bounds memory: the field lines
//!   of one event, plus the line being read, may not exceed
//!   [`LegacySseOptions::max_event_bytes`]; comment lines (keep-alives) are bounded one by one
//!   but do not add up. An oversized event ends the transport.
//! - **Malformed messages are skipped.** A `message` event whose data is not a JSON-RPC message
//!   is logged at debug level (the JSON error's category and position, never the payload) and
//!   dropped; the session goes on. One bad notification should not cost every call in flight;
//!   a lost response still ends in the caller's request timeout. rmcp's own streamable-HTTP
//!   client does the same.
//! - **A background reader.** One task reads the GET stream and hands messages to
//!   [`Transport::receive`] through a bounded channel, so `receive` is cancellation-safe (rmcp
//!   polls it inside `select!`) and a slow consumer slows the reading instead of growing a
//!   buffer. Closing or dropping the transport aborts the task, which drops the connection.
//! - **Timeouts.** [`connect`] bounds everything up to the endpoint event (the GET included) by
//!   [`LegacySseOptions::endpoint_timeout`]. The GET stream is then meant to live as long as
//!   the session, so it is exempt from the client's total request timeout (it stays subject to
//!   the client's idle timeout, if it has one). POSTs keep the client's timeouts and are also
//!   cut short when the transport is closed.
//! - **A vanished session ends the transport.** A POST answered with 404 or 410 means the
//!   server no longer knows this session; the transport ends at once rather than waiting for
//!   the GET stream to notice.
//!
//! Nothing here logs or reports header values, message payloads or the endpoint URL (its query
//! string carries the server's session id); hosts and origins only.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use reqwest::header::{
    ACCEPT, CACHE_CONTROL, CONTENT_TYPE, HeaderMap, HeaderValue, WWW_AUTHENTICATE,
};
use reqwest::{Method, Response, StatusCode};
use rmcp::RoleClient;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::Transport;
use switchboard_net::{NetError, SafeClient};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use url::Url;

/// How long the GET stream may live: in effect for ever. It replaces the client's total request
/// timeout for that one request, which would otherwise end every session after a few seconds.
const STREAM_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// How many decoded messages may wait for [`Transport::receive`] before the reader pauses.
const INBOUND_CAPACITY: usize = 32;

/// The most of a POST answer's body that is read (and discarded) so that the connection can be
/// reused; servers answer `202 Accepted` with a word or nothing.
const POST_BODY_DRAIN_LIMIT: usize = 64 * 1024;

/// How [`connect`] reaches the server.
#[derive(Clone)]
pub struct LegacySseOptions {
    /// Headers sent on the GET and on every POST: credentials and custom headers. `Accept` on
    /// the GET and `Content-Type` on the POSTs are set by the transport.
    pub headers: HeaderMap,
    /// How long to wait, from sending the GET, for the server's `endpoint` event.
    pub endpoint_timeout: Duration,
    /// The largest event accepted from the server: the bytes of its field lines, not counting
    /// line ends and comment lines. A larger event ends the transport.
    pub max_event_bytes: usize,
}

impl Default for LegacySseOptions {
    /// No extra headers, 10 seconds for the endpoint event, and events up to 16 MiB, the limit
    /// rmcp's streamable-HTTP client applies, so that both transports accept the same messages.
    fn default() -> Self {
        Self {
            headers: HeaderMap::new(),
            endpoint_timeout: Duration::from_secs(10),
            max_event_bytes: 16 * 1024 * 1024,
        }
    }
}

impl fmt::Debug for LegacySseOptions {
    /// Names the headers but never shows their values, which are often credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.keys().map(|name| name.as_str()).collect();
        f.debug_struct("LegacySseOptions")
            .field("headers", &names)
            .field("endpoint_timeout", &self.endpoint_timeout)
            .field("max_event_bytes", &self.max_event_bytes)
            .finish()
    }
}

/// Which request of the transport a status error answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// The GET that opens the event stream.
    Stream,
    /// A POST of a message to the endpoint.
    Post,
}

impl fmt::Display for RequestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RequestKind::Stream => "the event stream request",
            RequestKind::Post => "a message POST",
        })
    }
}

/// Why the HTTP+SSE transport could not connect, or could not send a message.
///
/// Messages name hosts, origins and status codes, never header values, payloads or URLs with
/// their query strings.
#[derive(Debug, thiserror::Error)]
pub enum LegacySseError {
    /// The request was refused by the SSRF rules or failed on the network;
    /// [`NetError::is_retryable`] tells which.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The server wants credentials that are missing or were rejected (401 or 403).
    #[error("the server requires authorization (HTTP {status})")]
    Unauthorized {
        /// 401 or 403.
        status: u16,
        /// The `WWW-Authenticate` challenge, if the server sent one (several are joined with
        /// `, `). Kept out of the message: it is for authentication detection, not for logs.
        www_authenticate: Option<String>,
    },
    /// The URL does not serve the HTTP+SSE transport: 404 or 405 on the GET, or an answer that
    /// is not `text/event-stream`.
    #[error("not an HTTP+SSE endpoint: {reason} (HTTP {status})")]
    NotSse {
        /// The status of the GET.
        status: u16,
        /// What gave it away.
        reason: &'static str,
    },
    /// The server sent no `endpoint` event in time. A streamable-HTTP server that opens an
    /// event stream on GET looks like this too.
    #[error("the server sent no endpoint event within {} ms", timeout.as_millis())]
    EndpointTimeout {
        /// The timeout that ran out.
        timeout: Duration,
    },
    /// The `endpoint` event names another origin than the SSE URL; nothing was sent there.
    #[error("refusing the endpoint event: it points to another origin ({origin})")]
    EndpointOrigin {
        /// The origin the endpoint pointed to (`scheme://host:port`, no path or query).
        origin: String,
    },
    /// The server answered with a status this transport does not accept.
    #[error("the server answered {request} with HTTP {status}")]
    Status {
        /// The status code.
        status: u16,
        /// Which request it answered.
        request: RequestKind,
    },
    /// The server no longer knows the session (404 or 410 on a POST); the transport has ended
    /// and a new connection is needed.
    #[error("the server no longer knows this session (HTTP {status})")]
    SessionGone {
        /// 404 or 410.
        status: u16,
    },
    /// The server broke the transport's rules (no endpoint event, a malformed one, an
    /// oversized event).
    #[error("the server broke the HTTP+SSE transport: {0}")]
    Protocol(String),
    /// The transport was closed, or its event stream has ended.
    #[error("the HTTP+SSE transport is closed")]
    Closed,
}

impl LegacySseError {
    /// Whether trying again later, on a new connection, may succeed. Network trouble,
    /// timeouts, a lost session and 408, 425, 429 and most 5xx answers may pass; refusals,
    /// missing credentials, protocol violations and other answers are final.
    pub fn is_retryable(&self) -> bool {
        match self {
            LegacySseError::Net(error) => error.is_retryable(),
            LegacySseError::Status { status, .. } => {
                matches!(status, 408 | 425 | 429)
                    || ((500..=599).contains(status) && !matches!(status, 501 | 505))
            }
            LegacySseError::EndpointTimeout { .. }
            | LegacySseError::SessionGone { .. }
            | LegacySseError::Closed => true,
            LegacySseError::Unauthorized { .. }
            | LegacySseError::NotSse { .. }
            | LegacySseError::EndpointOrigin { .. }
            | LegacySseError::Protocol(_) => false,
        }
    }
}

/// Opens an HTTP+SSE session: GETs `url`, waits for the `endpoint` event and checks that it
/// stays on `url`'s origin. Every request goes through `client`, so its SSRF rules hold for
/// the GET and for every POST.
///
/// The returned transport is handed to rmcp, e.g.
/// `serve_client_with_lifecycle(handler, transport, ClientLifecycleMode::Initialize)`; the
/// 2024-11-05 servers know only the `initialize` handshake. Must be called within a Tokio
/// runtime (the stream is read by a spawned task).
pub async fn connect(
    client: &SafeClient,
    url: &Url,
    options: LegacySseOptions,
) -> Result<LegacySseTransport, LegacySseError> {
    client.check_url(url)?;
    let LegacySseOptions {
        headers,
        endpoint_timeout,
        max_event_bytes,
    } = options;
    let opened = tokio::time::timeout(
        endpoint_timeout,
        open_stream(client, url, &headers, max_event_bytes),
    )
    .await
    .map_err(|_| LegacySseError::EndpointTimeout {
        timeout: endpoint_timeout,
    })??;

    let host = url.host_str().unwrap_or("the server").to_owned();
    tracing::debug!(%host, "HTTP+SSE session opened");
    let cancel = CancellationToken::new();
    let (inbound_tx, inbound) = mpsc::channel(INBOUND_CAPACITY);
    let reader = tokio::spawn(read_stream(
        opened.body,
        opened.parser,
        inbound_tx,
        cancel.clone(),
        host.clone(),
    ));
    Ok(LegacySseTransport {
        inbound,
        outbound: Arc::new(Outbound {
            client: client.clone(),
            endpoint: opened.endpoint,
            headers,
            cancel,
            host,
        }),
        reader,
    })
}

/// The client side of one HTTP+SSE session, as an rmcp transport. Dropping it ends the GET
/// stream and any POST still in flight.
pub struct LegacySseTransport {
    inbound: mpsc::Receiver<ServerJsonRpcMessage>,
    outbound: Arc<Outbound>,
    reader: JoinHandle<()>,
}

impl LegacySseTransport {
    /// Whether the transport has ended: closed, dropped by the server, or its session lost.
    pub fn is_closed(&self) -> bool {
        self.outbound.cancel.is_cancelled() || self.reader.is_finished()
    }

    fn shut_down(&mut self) {
        self.outbound.cancel.cancel();
        self.reader.abort();
    }
}

impl fmt::Debug for LegacySseTransport {
    /// Shows the host only: the endpoint's query string carries the session id.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LegacySseTransport")
            .field("host", &self.outbound.host)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl Drop for LegacySseTransport {
    fn drop(&mut self) {
        self.shut_down();
    }
}

impl Transport<RoleClient> for LegacySseTransport {
    type Error = LegacySseError;

    fn name() -> std::borrow::Cow<'static, str> {
        "legacy-sse".into()
    }

    fn send(
        &mut self,
        item: ClientJsonRpcMessage,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let outbound = self.outbound.clone();
        async move { outbound.post(item).await }
    }

    async fn receive(&mut self) -> Option<ServerJsonRpcMessage> {
        self.inbound.recv().await
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.shut_down();
        // Messages already decoded stay readable; the channel then reports its end.
        self.inbound.close();
        Ok(())
    }
}

/// What a POST needs; shared by the send futures, which must not borrow the transport.
struct Outbound {
    client: SafeClient,
    endpoint: Url,
    headers: HeaderMap,
    /// Cancelled when the transport closes or learns that its session is gone; ends the reader
    /// and every POST in flight.
    cancel: CancellationToken,
    host: String,
}

impl Outbound {
    async fn post(&self, message: ClientJsonRpcMessage) -> Result<(), LegacySseError> {
        if self.cancel.is_cancelled() {
            return Err(LegacySseError::Closed);
        }
        let body = serde_json::to_vec(&message)
            .map_err(|e| LegacySseError::Protocol(format!("could not encode a message: {e}")))?;
        let mut headers = self.headers.clone();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let request = self
            .client
            .request(Method::POST, &self.endpoint)?
            .headers(headers)
            .body(body);
        let response = tokio::select! {
            _ = self.cancel.cancelled() => return Err(LegacySseError::Closed),
            response = self.client.send(request) => response?,
        };
        let status = response.status();
        if status.is_success() {
            // Reading the (tiny) body lets the connection go back to the pool; what it says
            // does not matter, the answer to the message comes on the event stream.
            tokio::select! {
                _ = self.cancel.cancelled() => {}
                _ = switchboard_net::read_limited(response, POST_BODY_DRAIN_LIMIT) => {}
            }
            return Ok(());
        }
        if matches!(status, StatusCode::NOT_FOUND | StatusCode::GONE) {
            tracing::debug!(
                host = %self.host,
                status = status.as_u16(),
                "the server no longer knows the HTTP+SSE session; ending the transport"
            );
            self.cancel.cancel();
            return Err(LegacySseError::SessionGone {
                status: status.as_u16(),
            });
        }
        Err(status_error(&response, RequestKind::Post))
    }
}

/// The opened GET stream, after its `endpoint` event.
struct Opened {
    body: BoxStream<'static, reqwest::Result<Bytes>>,
    /// Holds any events that arrived with the endpoint event and are not yet handled.
    parser: EventParser,
    endpoint: Url,
}

/// Sends the GET, checks the answer, and reads events until the `endpoint` event.
async fn open_stream(
    client: &SafeClient,
    url: &Url,
    headers: &HeaderMap,
    max_event_bytes: usize,
) -> Result<Opened, LegacySseError> {
    let mut get_headers = headers.clone();
    get_headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
    get_headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    let request = client
        .request(Method::GET, url)?
        .headers(get_headers)
        .timeout(STREAM_TIMEOUT);
    let response = client.send(request).await?;
    let status = response.status();
    match status {
        s if s.is_success() => {}
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => {
            return Err(LegacySseError::NotSse {
                status: status.as_u16(),
                reason: "the URL does not serve an event stream",
            });
        }
        _ => return Err(status_error(&response, RequestKind::Stream)),
    }
    if !is_event_stream(&response) {
        return Err(LegacySseError::NotSse {
            status: status.as_u16(),
            reason: "the answer is not text/event-stream",
        });
    }
    // After a redirect (the client follows same-origin ones by default), relative endpoints
    // are relative to where the stream came from; the origin check below still compares with
    // the URL the caller configured.
    let base = response.url().clone();
    let mut body = response.bytes_stream().boxed();
    let mut parser = EventParser::new(max_event_bytes);
    loop {
        while let Some(event) = parser.next_event() {
            match event.kind.as_str() {
                "endpoint" => {
                    let endpoint = resolve_endpoint(&base, url, &event.data)?;
                    return Ok(Opened {
                        body,
                        parser,
                        endpoint,
                    });
                }
                // The spec has the server send the endpoint "when a client connects", before
                // anything else; a message first would have nowhere to be answered.
                "message" => {
                    return Err(LegacySseError::Protocol(
                        "a message event came before the endpoint event".into(),
                    ));
                }
                _ => {}
            }
        }
        match body.next().await {
            Some(Ok(chunk)) => parser
                .feed(&chunk)
                .map_err(|too_large| LegacySseError::Protocol(too_large.to_string()))?,
            Some(Err(error)) => return Err(NetError::from(error).into()),
            None => {
                return Err(LegacySseError::Protocol(
                    "the event stream ended before the endpoint event".into(),
                ));
            }
        }
    }
}

/// Reads the GET stream until it ends, fails, the transport is closed or nobody receives any
/// more, passing decoded messages on. Its end (dropping `inbound`) is what ends the rmcp
/// service.
async fn read_stream(
    mut body: BoxStream<'static, reqwest::Result<Bytes>>,
    mut parser: EventParser,
    inbound: mpsc::Sender<ServerJsonRpcMessage>,
    cancel: CancellationToken,
    host: String,
) {
    loop {
        while let Some(event) = parser.next_event() {
            match event.kind.as_str() {
                "message" => {
                    for message in decode_messages(&event.data, &host) {
                        tokio::select! {
                            _ = cancel.cancelled() => return,
                            sent = inbound.send(message) => if sent.is_err() { return },
                        }
                    }
                }
                "endpoint" => {
                    tracing::debug!(%host, "ignoring a repeated endpoint event");
                }
                _ => {}
            }
        }
        let next = tokio::select! {
            _ = cancel.cancelled() => return,
            next = body.next() => next,
        };
        match next {
            Some(Ok(chunk)) => {
                if let Err(too_large) = parser.feed(&chunk) {
                    tracing::warn!(%host, "ending the HTTP+SSE session: {too_large}");
                    break;
                }
            }
            Some(Err(error)) => {
                let error = NetError::from(error);
                tracing::debug!(%host, "the HTTP+SSE event stream failed: {error}");
                break;
            }
            None => {
                tracing::debug!(%host, "the HTTP+SSE event stream ended");
                break;
            }
        }
    }
    // POSTs to a session without a stream would never be answered.
    cancel.cancel();
}

/// The JSON-RPC message (or batch, which JSON-RPC 2.0 allows) in a `message` event's data.
/// What does not decode is skipped, see the module documentation.
fn decode_messages(data: &str, host: &str) -> Vec<ServerJsonRpcMessage> {
    let result = if data.trim_start().starts_with('[') {
        serde_json::from_str::<Vec<ServerJsonRpcMessage>>(data)
    } else {
        serde_json::from_str::<ServerJsonRpcMessage>(data).map(|message| vec![message])
    };
    result.unwrap_or_else(|error| {
        // serde_json's message can quote the payload; its category and position cannot.
        tracing::debug!(
            %host,
            category = ?error.classify(),
            line = error.line(),
            column = error.column(),
            "skipping a message event that is not a JSON-RPC message"
        );
        Vec::new()
    })
}

/// Resolves the `endpoint` event's data against `base` (where the stream came from) and
/// checks that the result stays on `configured`'s origin.
fn resolve_endpoint(base: &Url, configured: &Url, data: &str) -> Result<Url, LegacySseError> {
    let reference = data.trim();
    if reference.is_empty() {
        return Err(LegacySseError::Protocol(
            "the endpoint event is empty".into(),
        ));
    }
    // url's parse errors name the problem, never the input.
    let mut endpoint = base.join(reference).map_err(|e| {
        LegacySseError::Protocol(format!("the endpoint event is not a URI reference: {e}"))
    })?;
    // Origins compare scheme, host and port (default ports filled in); an opaque origin (a
    // non-HTTP scheme) equals nothing, not even itself.
    if endpoint.origin() != configured.origin() {
        return Err(LegacySseError::EndpointOrigin {
            origin: endpoint.origin().ascii_serialization(),
        });
    }
    if !endpoint.username().is_empty() || endpoint.password().is_some() {
        return Err(LegacySseError::Protocol(
            "the endpoint event carries user credentials".into(),
        ));
    }
    endpoint.set_fragment(None);
    Ok(endpoint)
}

/// Whether the response's media type is `text/event-stream` (parameters such as `charset`
/// allowed).
fn is_event_stream(response: &Response) -> bool {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("text/event-stream"))
}

/// The error for an answer other than 2xx: [`LegacySseError::Unauthorized`] for 401 and 403,
/// [`LegacySseError::Status`] for the rest.
fn status_error(response: &Response, request: RequestKind) -> LegacySseError {
    let status = response.status();
    if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
        let challenges: Vec<&str> = response
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .collect();
        return LegacySseError::Unauthorized {
            status: status.as_u16(),
            www_authenticate: (!challenges.is_empty()).then(|| challenges.join(", ")),
        };
    }
    LegacySseError::Status {
        status: status.as_u16(),
        request,
    }
}

/// One dispatched server-sent event: its type (`message` when the server named none) and its
/// data.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Event {
    kind: String,
    data: String,
}

/// An event grew past the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an event exceeded the limit of {limit} bytes")]
struct EventTooLarge {
    limit: usize,
}

/// An incremental parser for `text/event-stream`, following WHATWG HTML "Server-sent events
/// › Interpreting an event stream": lines end with CRLF, LF or CR; a blank line dispatches the
/// event; lines starting with a colon are comments; a line without a colon is a field with an
/// empty value; unknown fields are ignored. `id` and `retry` are ignored as well, since the
/// 2024-11-05 transport has no resumption.
#[derive(Debug)]
struct EventParser {
    limit: usize,
    /// The line being read, without its end.
    line: Vec<u8>,
    /// The last chunk ended with CR, so a LF at the start of the next one ends no new line.
    after_cr: bool,
    /// No line has been completed yet, so a leading byte order mark is still to be dropped.
    at_start: bool,
    /// Bytes of the current event's completed field lines.
    event_bytes: usize,
    kind: String,
    data: String,
    ready: VecDeque<Event>,
}

impl EventParser {
    const BOM: &'static [u8] = b"\xEF\xBB\xBF";

    fn new(limit: usize) -> Self {
        Self {
            limit,
            line: Vec::new(),
            after_cr: false,
            at_start: true,
            event_bytes: 0,
            kind: String::new(),
            data: String::new(),
            ready: VecDeque::new(),
        }
    }

    /// The next complete event, if any.
    fn next_event(&mut self) -> Option<Event> {
        self.ready.pop_front()
    }

    /// Parses `chunk`. After an error the parser must not be fed again.
    fn feed(&mut self, mut chunk: &[u8]) -> Result<(), EventTooLarge> {
        if std::mem::take(&mut self.after_cr) && chunk.first() == Some(&b'\n') {
            chunk = &chunk[1..];
        }
        while !chunk.is_empty() {
            let end = chunk.iter().position(|&b| b == b'\n' || b == b'\r');
            let text = &chunk[..end.unwrap_or(chunk.len())];
            // Checked before copying, so a line never grows the buffer past the limit.
            if self.event_bytes + self.line.len() + text.len() > self.limit {
                return Err(EventTooLarge { limit: self.limit });
            }
            self.line.extend_from_slice(text);
            let Some(end) = end else { break };
            let was_cr = chunk[end] == b'\r';
            chunk = &chunk[end + 1..];
            if was_cr {
                match chunk.first() {
                    Some(b'\n') => chunk = &chunk[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            let line = std::mem::take(&mut self.line);
            self.line_done(&line);
            // Keeps the allocation for the next line.
            self.line = line;
            self.line.clear();
        }
        Ok(())
    }

    fn line_done(&mut self, mut line: &[u8]) {
        if std::mem::take(&mut self.at_start) {
            line = line.strip_prefix(Self::BOM).unwrap_or(line);
        }
        if line.is_empty() {
            self.dispatch();
            return;
        }
        if line[0] == b':' {
            return;
        }
        self.event_bytes += line.len();
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        // The stream is UTF-8; invalid sequences become U+FFFD, as the standard decodes.
        match name {
            b"event" => self.kind = String::from_utf8_lossy(value).into_owned(),
            b"data" => {
                self.data.push_str(&String::from_utf8_lossy(value));
                self.data.push('\n');
            }
            _ => {}
        }
    }

    fn dispatch(&mut self) {
        self.event_bytes = 0;
        let kind = std::mem::take(&mut self.kind);
        let mut data = std::mem::take(&mut self.data);
        // An event without data lines is not dispatched.
        if data.is_empty() {
            return;
        }
        data.pop();
        let kind = if kind.is_empty() {
            "message".to_owned()
        } else {
            kind
        };
        self.ready.push_back(Event { kind, data });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_chunks(
        limit: usize,
        chunks: &[&[u8]],
    ) -> Result<Vec<(String, String)>, EventTooLarge> {
        let mut parser = EventParser::new(limit);
        let mut events = Vec::new();
        for chunk in chunks {
            parser.feed(chunk)?;
            while let Some(event) = parser.next_event() {
                events.push((event.kind, event.data));
            }
        }
        Ok(events)
    }

    fn parse(text: &str) -> Vec<(String, String)> {
        parse_chunks(1024, &[text.as_bytes()]).expect("within the limit")
    }

    fn pair(kind: &str, data: &str) -> (String, String) {
        (kind.to_owned(), data.to_owned())
    }

    #[test]
    fn endpoint_and_message_events() {
        assert_eq!(
            parse("event: endpoint\ndata: /message?sessionId=1\n\nevent: message\ndata: {}\n\n"),
            [
                pair("endpoint", "/message?sessionId=1"),
                pair("message", "{}")
            ]
        );
    }

    #[test]
    fn an_event_without_type_is_a_message() {
        assert_eq!(parse("data: x\n\n"), [pair("message", "x")]);
    }

    #[test]
    fn every_line_ending_works_even_split_across_chunks() {
        let events = parse_chunks(
            1024,
            &[
                b"data: a\r",
                b"\n\r\ndata: b\r\rdata: c\n",
                b"\n",
                b"data: d\r\n\r",
                b"\n",
            ],
        )
        .unwrap();
        assert_eq!(
            events,
            [
                pair("message", "a"),
                pair("message", "b"),
                pair("message", "c"),
                pair("message", "d")
            ]
        );
    }

    #[test]
    fn a_cr_at_the_end_of_a_chunk_followed_by_another_line() {
        let events = parse_chunks(1024, &[b"data: a\r", b"\rdata: b\n\n"]).unwrap();
        assert_eq!(events, [pair("message", "a"), pair("message", "b")]);
    }

    #[test]
    fn data_lines_join_with_newlines_and_keep_inner_spaces() {
        assert_eq!(
            parse("data:  two spaces\ndata\ndata:last\n\n"),
            [pair("message", " two spaces\n\nlast")]
        );
    }

    #[test]
    fn comments_unknown_fields_ids_and_retries_are_ignored() {
        assert_eq!(
            parse(
                ": keep-alive\n\nid: 7\nretry: 10\nfoo: bar\nevent: message\n: inner\ndata: 1\n\n"
            ),
            [pair("message", "1")]
        );
    }

    #[test]
    fn events_without_data_are_not_dispatched() {
        assert_eq!(parse("event: ping\n\n\n\nevent: endpoint\n\n"), []);
    }

    #[test]
    fn the_event_type_resets_after_each_event() {
        assert_eq!(
            parse("event: endpoint\ndata: /m\n\ndata: {}\n\n"),
            [pair("endpoint", "/m"), pair("message", "{}")]
        );
    }

    #[test]
    fn a_leading_byte_order_mark_is_dropped() {
        let events = parse_chunks(1024, &[b"\xEF\xBB\xBFdata: x\n\n"]).unwrap();
        assert_eq!(events, [pair("message", "x")]);
    }

    #[test]
    fn an_unfinished_event_is_not_dispatched() {
        assert_eq!(parse("data: half"), []);
        assert_eq!(parse("data: half\n"), []);
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        let events = parse_chunks(1024, &[b"data: a\xFFb\n\n"]).unwrap();
        assert_eq!(events, [pair("message", "a\u{FFFD}b")]);
    }

    #[test]
    fn an_event_at_the_limit_passes() {
        // "data: abcd" is 10 bytes of field line.
        let events = parse_chunks(10, &[b"data: abcd\n\n"]).unwrap();
        assert_eq!(events, [pair("message", "abcd")]);
    }

    #[test]
    fn an_unterminated_line_over_the_limit_fails() {
        let error = parse_chunks(16, &[b"data: aaaaaaaa", b"aaaaaaaa"]).unwrap_err();
        assert_eq!(error, EventTooLarge { limit: 16 });
    }

    #[test]
    fn many_small_lines_of_one_event_add_up() {
        let chunks: Vec<&[u8]> = std::iter::repeat_n(&b"data: x\n"[..], 10).collect();
        assert!(parse_chunks(32, &chunks).is_err());
    }

    #[test]
    fn keep_alive_comments_do_not_add_up_and_events_reset_the_count() {
        let chunks: Vec<&[u8]> = std::iter::repeat_n(&b": ping\ndata: x\n\n"[..], 100).collect();
        let events = parse_chunks(8, &chunks).unwrap();
        assert_eq!(events.len(), 100);
    }

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn relative_and_absolute_endpoints_on_the_same_origin() {
        let sse = url("http://127.0.0.1:8080/sse");
        for (data, expected) in [
            (
                "/message?sessionId=abc",
                "http://127.0.0.1:8080/message?sessionId=abc",
            ),
            (
                "messages/?session_id=1",
                "http://127.0.0.1:8080/messages/?session_id=1",
            ),
            (" http://127.0.0.1:8080/m \n", "http://127.0.0.1:8080/m"),
            ("HTTP://127.0.0.1:8080/m#frag", "http://127.0.0.1:8080/m"),
        ] {
            let endpoint = resolve_endpoint(&sse, &sse, data).unwrap();
            assert_eq!(endpoint.as_str(), expected, "{data:?}");
        }
        let default_port = url("https://mcp.example/sse");
        let endpoint = resolve_endpoint(&default_port, &default_port, "https://mcp.example:443/m");
        assert!(endpoint.is_ok());
    }

    #[test]
    fn endpoints_on_other_origins_are_refused() {
        let sse = url("http://127.0.0.1:8080/sse");
        for (data, origin) in [
            ("http://evil.example/steal?token=1", "http://evil.example"),
            ("//evil.example/m", "http://evil.example"),
            ("http://127.0.0.1:8081/m", "http://127.0.0.1:8081"),
            ("https://127.0.0.1:8080/m", "https://127.0.0.1:8080"),
            ("http://localhost:8080/m", "http://localhost:8080"),
            ("file:///etc/passwd", "null"),
            ("javascript:alert(1)", "null"),
        ] {
            match resolve_endpoint(&sse, &sse, data) {
                Err(LegacySseError::EndpointOrigin { origin: got }) => {
                    assert_eq!(got, origin, "{data:?}");
                    let message = LegacySseError::EndpointOrigin { origin: got }.to_string();
                    assert!(!message.contains("token"), "{message}");
                }
                other => panic!("{data:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_configured_origin_is_what_counts_after_a_redirect() {
        let configured = url("http://127.0.0.1:8080/sse");
        let redirected = url("http://127.0.0.1:9090/sse");
        let error = resolve_endpoint(&redirected, &configured, "/message").unwrap_err();
        assert!(
            matches!(error, LegacySseError::EndpointOrigin { .. }),
            "{error:?}"
        );
    }

    #[test]
    fn empty_or_credentialed_endpoints_are_protocol_errors() {
        let sse = url("http://127.0.0.1:8080/sse");
        for data in ["", "  ", "http://user:pw@127.0.0.1:8080/m"] {
            let error = resolve_endpoint(&sse, &sse, data).unwrap_err();
            assert!(
                matches!(error, LegacySseError::Protocol(_)),
                "{data:?}: {error:?}"
            );
            assert!(!error.to_string().contains("pw"));
        }
    }

    #[test]
    fn malformed_messages_are_skipped_and_batches_unpacked() {
        assert!(decode_messages("not json", "h").is_empty());
        assert!(decode_messages(r#"{"jsonrpc":"2.0"}"#, "h").is_empty());
        let one = r#"{"jsonrpc":"2.0","id":1,"result":{}}"#;
        assert_eq!(decode_messages(one, "h").len(), 1);
        let batch = format!(
            "[{one},{}]",
            r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#
        );
        assert_eq!(decode_messages(&batch, "h").len(), 2);
    }

    #[test]
    fn retryable_and_final_errors() {
        let status = |status| LegacySseError::Status {
            status,
            request: RequestKind::Stream,
        };
        assert!(status(503).is_retryable());
        assert!(status(429).is_retryable());
        assert!(!status(501).is_retryable());
        assert!(!status(400).is_retryable());
        assert!(
            LegacySseError::EndpointTimeout {
                timeout: Duration::from_secs(1)
            }
            .is_retryable()
        );
        assert!(LegacySseError::SessionGone { status: 404 }.is_retryable());
        assert!(
            !LegacySseError::Unauthorized {
                status: 401,
                www_authenticate: None
            }
            .is_retryable()
        );
        assert!(!LegacySseError::Protocol("x".into()).is_retryable());
        assert!(
            !LegacySseError::NotSse {
                status: 404,
                reason: "x"
            }
            .is_retryable()
        );
        assert!(LegacySseError::Net(NetError::Timeout { host: "h".into() }).is_retryable());
    }

    #[test]
    fn the_challenge_stays_out_of_the_message() {
        let error = LegacySseError::Unauthorized {
            status: 401,
            www_authenticate: Some(r#"Bearer realm="secret-realm""#.into()),
        };
        assert_eq!(
            error.to_string(),
            "the server requires authorization (HTTP 401)"
        );
    }

    #[test]
    fn options_debug_hides_header_values() {
        let mut options = LegacySseOptions::default();
        options.headers.insert(
            reqwest::header::AUTHORIZATION,
            HeaderValue::from_static("Bearer hunter2"),
        );
        let text = format!("{options:?}");
        assert!(text.contains("authorization"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }
}
