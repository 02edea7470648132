//! Opening one MCP session to a server, in whichever transport and protocol generation it
//! speaks, and describing what answered.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};
use rmcp::model::{ProtocolVersion, ServerPeerInfo};
use rmcp::service::{
    ClientLifecycleMode, Peer, RoleClient, RunningService, serve_client_with_lifecycle,
};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde::Serialize;
use serde_json::Value;
use switchboard_domain::Transport;
use switchboard_net::{NetError, SafeClient};
use tokio::sync::Mutex;

use crate::error::{ConnectError, Result};
use crate::handler::{Handler, Tapped};
use crate::legacy_sse::{self, LegacySseError, LegacySseOptions};
use crate::target::Target;

/// What answered when a session was opened.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionInfo {
    /// The transport that answered.
    pub transport: Transport,
    /// The negotiated protocol version, such as `2025-11-25`.
    pub protocol_version: String,
    /// The server's name, if it gave one.
    pub server_name: Option<String>,
    /// The server's version, if it gave one.
    pub server_version: Option<String>,
    /// The server's capabilities, as the protocol's JSON.
    pub capabilities: Value,
    /// The server's instructions for using it, if any.
    pub instructions: Option<String>,
}

/// Settings for opening sessions.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// How long connecting and the handshake may take.
    pub connect_timeout: Duration,
    /// Largest single message accepted from a server; larger ones fail the request. Results
    /// above the (smaller) per-call limit are cut, not failed.
    pub max_message_bytes: usize,
    /// Most requests in flight on one session at once.
    pub max_concurrent_requests: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(30),
            max_message_bytes: 32 * 1024 * 1024,
            max_concurrent_requests: 16,
        }
    }
}

/// An open session.
///
/// It keeps no copy of what the server said about itself, only a second reference to the
/// typed description rmcp's peer already holds: a pool may hold thousands of idle sessions.
pub(crate) struct Session {
    pub peer: Peer<RoleClient>,
    pub handler: Handler,
    /// The transport that answered.
    pub transport: Transport,
    /// What the server said about itself: negotiated version, capabilities, name,
    /// instructions.
    pub server: Arc<ServerPeerInfo>,
    next_call: AtomicU64,
    running: Mutex<Option<RunningService<RoleClient, Handler>>>,
}

impl Session {
    /// What answered, in the engine's own terms (for the probe report).
    pub fn info(&self) -> SessionInfo {
        let server = &self.server;
        SessionInfo {
            transport: self.transport,
            protocol_version: server.protocol_version.to_string(),
            server_name: server.server_info.as_ref().map(|s| s.name.clone()),
            server_version: server.server_info.as_ref().map(|s| s.version.clone()),
            capabilities: serde_json::to_value(&server.capabilities).unwrap_or(Value::Null),
            instructions: server.instructions.clone(),
        }
    }

    /// Whether the connection underneath still works.
    pub fn is_alive(&self) -> bool {
        !self.peer.is_transport_closed()
    }

    /// A number for a call, unique within this session.
    pub fn call_id(&self) -> u64 {
        self.next_call.fetch_add(1, Ordering::Relaxed)
    }

    /// Ends the session: session-based servers get their DELETE.
    pub async fn close(&self) {
        if let Some(mut running) = self.running.lock().await.take() {
            let _ = running.close_with_timeout(Duration::from_secs(5)).await;
        }
    }
}

/// Opens a session. The transport that answered last time is tried first; otherwise
/// Streamable HTTP (the stateless 2026-07-28 protocol, falling back to the session-based one)
/// and then the old HTTP+SSE transport.
pub(crate) async fn open(
    target: &Target,
    client: &SafeClient,
    handler: Handler,
    config: &SessionConfig,
) -> Result<Session> {
    client.check_url(&target.url)?;
    let legacy_first = target.transport == Some(Transport::Sse);
    let attempt = |legacy: bool| {
        let handler = handler.clone();
        async move {
            let work = async {
                if legacy {
                    open_legacy(target, client, handler).await
                } else {
                    open_streamable(target, client, handler, config).await
                }
            };
            match tokio::time::timeout(config.connect_timeout, work).await {
                Ok(result) => result,
                Err(_) => Err(ConnectError::Timeout(config.connect_timeout.as_secs())),
            }
        }
    };
    let first = attempt(legacy_first).await;
    let first_error = match first {
        Ok(session) => return Ok(session),
        // Credentials, refusals and an unreachable host are the same whatever the transport:
        // no point trying another, and a retryable error must stay retryable for the pool's
        // backoff.
        Err(
            e @ (ConnectError::AuthRequired { .. }
            | ConnectError::Net(_)
            | ConnectError::Timeout(_)),
        ) => {
            return Err(e);
        }
        Err(e) => e,
    };
    match attempt(!legacy_first).await {
        Ok(session) => Ok(session),
        Err(e @ ConnectError::AuthRequired { .. }) => Err(e),
        Err(second) => {
            let (streamable, legacy) = if legacy_first {
                (second, first_error)
            } else {
                (first_error, second)
            };
            Err(ConnectError::NotMcp(format!(
                "Streamable HTTP: {streamable}; HTTP+SSE: {legacy}"
            )))
        }
    }
}

fn header_map(target: &Target) -> Result<HashMap<HeaderName, HeaderValue>> {
    let mut map = HashMap::new();
    for (name, value) in &target.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ConnectError::Protocol(format!("invalid header name {name:?}")))?;
        let mut value = HeaderValue::from_str(value).map_err(|_| {
            ConnectError::Protocol(format!("the value of header {name} is not valid"))
        })?;
        value.set_sensitive(true);
        map.insert(name, value);
    }
    Ok(map)
}

async fn open_streamable(
    target: &Target,
    client: &SafeClient,
    handler: Handler,
    config: &SessionConfig,
) -> Result<Session> {
    let transport = || -> Result<_> {
        let transport_config = StreamableHttpClientTransportConfig::with_uri(target.url.as_str())
            .custom_headers(header_map(target)?)
            .max_sse_event_size(config.max_message_bytes)
            .max_concurrent_requests(config.max_concurrent_requests)
            .reinit_on_expired_session(true);
        Ok(Tapped::new(
            StreamableHttpClientTransport::with_client(client.client().clone(), transport_config),
            &handler,
        ))
    };
    let initialize = ClientLifecycleMode::Initialize;
    // A server that answered with sessions last time is greeted that way again: probing with
    // `server/discover` first would only cost a round trip.
    let lifecycle = if target.transport == Some(Transport::StreamableHttp) {
        initialize.clone()
    } else {
        ClientLifecycleMode::Auto {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            legacy_version: Some(ProtocolVersion::V_2025_11_25),
        }
    };
    let first = serve_client_with_lifecycle(handler.clone(), transport()?, lifecycle.clone()).await;
    let running = match first {
        Ok(running) => running,
        // Some session-based servers answer an unknown method (`server/discover`) with an empty
        // success instead of an error, which rmcp cannot tell from a broken discovery answer.
        // Such a server still speaks `initialize`, so greet it again the old way on a fresh
        // transport.
        Err(rmcp::service::ClientInitializeError::ExpectedInitResult(_))
            if lifecycle != initialize =>
        {
            serve_client_with_lifecycle(handler.clone(), transport()?, initialize)
                .await
                .map_err(|e| classify_init_error(&e))?
        }
        Err(e) => return Err(classify_init_error(&e)),
    };
    finish(running, handler, None)
}

async fn open_legacy(target: &Target, client: &SafeClient, handler: Handler) -> Result<Session> {
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in header_map(target)? {
        headers.insert(name, value);
    }
    let options = LegacySseOptions {
        headers,
        ..LegacySseOptions::default()
    };
    let transport = legacy_sse::connect(client, &target.url, options)
        .await
        .map_err(|e| match e {
            LegacySseError::Unauthorized {
                status,
                www_authenticate,
            } => ConnectError::AuthRequired {
                status,
                challenge: www_authenticate,
            },
            LegacySseError::Net(net) => ConnectError::Net(net),
            other => ConnectError::NotMcp(other.to_string()),
        })?;
    let transport = Tapped::new(transport, &handler);
    let running =
        serve_client_with_lifecycle(handler.clone(), transport, ClientLifecycleMode::Initialize)
            .await
            .map_err(|e| classify_init_error(&e))?;
    finish(running, handler, Some(Transport::Sse))
}

fn finish(
    running: RunningService<RoleClient, Handler>,
    handler: Handler,
    transport: Option<Transport>,
) -> Result<Session> {
    let peer = running.peer().clone();
    let server = peer
        .peer_info()
        .ok_or_else(|| ConnectError::Protocol("the server did not describe itself".into()))?;
    let transport = transport.unwrap_or(
        if server.protocol_version == ProtocolVersion::V_2026_07_28 {
            Transport::StreamableHttpStateless
        } else {
            Transport::StreamableHttp
        },
    );
    Ok(Session {
        peer,
        handler,
        transport,
        server,
        next_call: AtomicU64::new(1),
        running: Mutex::new(Some(running)),
    })
}

/// Turns rmcp's start-up error into ours, keeping 401/403 challenges and SSRF refusals apart.
fn classify_init_error(e: &rmcp::service::ClientInitializeError) -> ConnectError {
    // The transport's error tells a 401 from a 403 (`insufficient_scope`); rmcp's own
    // accessor below gives only the challenge, so it is the fallback.
    if let Some(auth) = auth_in_init_error(e) {
        return auth;
    }
    if let Some(challenge) = e.auth_challenge() {
        return ConnectError::AuthRequired {
            status: 401,
            challenge: Some(challenge.to_owned()),
        };
    }
    if e.is_authorization_required() {
        return ConnectError::AuthRequired {
            status: 401,
            challenge: None,
        };
    }
    if let Some(net) = NetError::find_in(e) {
        return ConnectError::Net(net);
    }
    ConnectError::Protocol(describe(e))
}

/// The 401 or 403 behind a failed start-up. The transport's error is a field of the
/// start-up error rather than its `source`, so it is dug out here.
fn auth_in_init_error(e: &rmcp::service::ClientInitializeError) -> Option<ConnectError> {
    use rmcp::service::ClientInitializeError as E;
    match e {
        E::TransportError { error, .. } => ConnectError::auth_failure_in(error),
        E::LegacyFallbackFailed { discover, fallback } => {
            auth_in_init_error(fallback).or_else(|| auth_in_init_error(discover))
        }
        _ => None,
    }
}

/// An rmcp error in words, without URLs: reqwest's messages carry the full URL, which may hold
/// a secret in its query string.
pub(crate) fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let text = e.to_string();
    let mut out = String::with_capacity(text.len());
    for word in text.split(' ') {
        if !out.is_empty() {
            out.push(' ');
        }
        if word.contains("://") {
            out.push_str("<url>");
        } else {
            out.push_str(word);
        }
    }
    out
}
