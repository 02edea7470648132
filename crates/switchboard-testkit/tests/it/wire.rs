//! Just enough MCP over HTTP, by hand, to check the peers: JSON-RPC POSTs and an SSE reader.

use std::time::Duration;

use serde_json::{Value, json};

/// Every read in these tests is bounded, so a broken peer fails a test instead of hanging it.
pub const READ_LIMIT: Duration = Duration::from_secs(20);

pub const ACCEPT_BOTH: &str = "application/json, text/event-stream";

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(READ_LIMIT)
        .build()
        .unwrap()
}

pub fn initialize_request(version: &str) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": version,
            "capabilities": {},
            "clientInfo": { "name": "switchboard-testkit-it", "version": "0" },
        },
    })
}

pub fn request(id: u64, method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params })
}

/// A POST to a streamable HTTP endpoint; the reply is read from JSON or from an SSE stream.
pub struct Post {
    pub status: reqwest::StatusCode,
    pub session: Option<String>,
    pub message: Option<Value>,
}

pub async fn post(url: &str, session: Option<&str>, body: &Value) -> Post {
    post_with_token(url, session, None, body).await
}

/// [`post`] with `Authorization: Bearer <token>` when a token is given.
pub async fn post_with_token(
    url: &str,
    session: Option<&str>,
    token: Option<&str>,
    body: &Value,
) -> Post {
    let mut builder = client()
        .post(url)
        .header("accept", ACCEPT_BOTH)
        .header("mcp-protocol-version", "2025-11-25")
        .json(body);
    if let Some(session) = session {
        builder = builder.header("mcp-session-id", session);
    }
    if let Some(token) = token {
        builder = builder.bearer_auth(token);
    }
    let response = builder.send().await.unwrap();
    let status = response.status();
    let session = response
        .headers()
        .get("mcp-session-id")
        .map(|value| value.to_str().unwrap().to_owned());
    let is_sse = response
        .headers()
        .get("content-type")
        .is_some_and(|value| value.to_str().unwrap().starts_with("text/event-stream"));
    let message = if is_sse {
        let id = body.get("id").cloned();
        let mut events = Sse::new(response);
        loop {
            let Some(event) = events.next().await else {
                break None;
            };
            if let Ok(message) = serde_json::from_str::<Value>(&event.data)
                && id.is_some()
                && message.get("id") == id.as_ref()
            {
                break Some(message);
            }
        }
    } else {
        let text = response.text().await.unwrap();
        serde_json::from_str(&text).ok()
    };
    Post {
        status,
        session,
        message,
    }
}

/// `initialize` then `notifications/initialized`; returns the session id (if any) and the
/// initialize result.
pub async fn handshake(url: &str) -> (Option<String>, Value) {
    let reply = post(url, None, &initialize_request("2025-11-25")).await;
    assert_eq!(reply.status, 200, "initialize at {url}");
    let message = reply.message.expect("an initialize response");
    let result = message
        .get("result")
        .unwrap_or_else(|| panic!("initialize failed: {message}"))
        .clone();
    assert!(result["protocolVersion"].is_string(), "{result}");
    let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    let ack = post(url, reply.session.as_deref(), &initialized).await;
    assert_eq!(ack.status, 202, "notifications/initialized at {url}");
    (reply.session, result)
}

/// One server-sent event.
#[derive(Debug, Default)]
pub struct Event {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
    pub retry: Option<u64>,
}

/// Reads server-sent events from a response, chunk by chunk.
pub struct Sse {
    response: reqwest::Response,
    buffer: String,
}

impl Sse {
    pub fn new(response: reqwest::Response) -> Sse {
        Sse {
            response,
            buffer: String::new(),
        }
    }

    /// The next event, or `None` when the stream ends or breaks.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            let normalized = self.buffer.replace("\r\n", "\n");
            if let Some(end) = normalized.find("\n\n") {
                let block = normalized[..end].to_owned();
                self.buffer = normalized[end + 2..].to_owned();
                if let Some(event) = parse_event(&block) {
                    return Some(event);
                }
                continue;
            }
            self.buffer = normalized;
            match tokio::time::timeout(READ_LIMIT, self.response.chunk()).await {
                Ok(Ok(Some(chunk))) => self.buffer.push_str(&String::from_utf8_lossy(&chunk)),
                _ => return None,
            }
        }
    }
}

fn parse_event(block: &str) -> Option<Event> {
    let mut event = Event::default();
    let mut data = Vec::new();
    let mut any = false;
    for line in block.lines() {
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        any = true;
        match field {
            "id" => event.id = Some(value.to_owned()),
            "event" => event.event = Some(value.to_owned()),
            "data" => data.push(value.to_owned()),
            "retry" => event.retry = value.parse().ok(),
            _ => {}
        }
    }
    event.data = data.join("\n");
    any.then_some(event)
}

/// The old HTTP+SSE transport: opens the stream, reads the `endpoint` event, POSTs
/// `initialize` there, and returns the initialize result read from the stream.
pub async fn sse_transport_initialize(sse_url: &str) -> Value {
    let response = client()
        .get(sse_url)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut events = Sse::new(response);
    let endpoint = loop {
        let event = events.next().await.expect("an endpoint event");
        if event.event.as_deref() == Some("endpoint") {
            break event.data;
        }
    };
    let endpoint = reqwest::Url::parse(sse_url)
        .unwrap()
        .join(&endpoint)
        .unwrap();
    let sent = client()
        .post(endpoint)
        .json(&initialize_request("2024-11-05"))
        .send()
        .await
        .unwrap();
    assert!(sent.status().is_success(), "{}", sent.status());
    loop {
        let event = events.next().await.expect("the initialize response");
        if let Ok(message) = serde_json::from_str::<Value>(&event.data)
            && message["id"] == 1
        {
            return message["result"].clone();
        }
    }
}

/// The names in a `tools/list` result.
pub fn tool_names(message: &Value) -> Vec<String> {
    message["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("not a tools/list result: {message}"))
        .iter()
        .map(|tool| tool["name"].as_str().unwrap().to_owned())
        .collect()
}
