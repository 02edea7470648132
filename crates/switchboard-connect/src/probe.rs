//! The probe: connecting to a URL step by step and writing down what happened, in words a
//! person can act on.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;
use switchboard_net::NetError;
use url::Host;

use crate::catalog::{Catalog, discover};
use crate::error::ConnectError;
use crate::handler::Handler;
use crate::pool::Pool;
use crate::session::{self, SessionInfo};
use crate::target::Target;

/// How a step went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It worked.
    Ok,
    /// It failed; `reason` says why.
    Failed,
    /// An earlier step failed, so this one did not run.
    Skipped,
}

/// One step of a probe.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// `resolve`, `connect`, `http`, `handshake`, `server` or `discovery`.
    pub name: &'static str,
    /// How it went.
    pub outcome: Outcome,
    /// How long it took, in milliseconds.
    pub millis: u64,
    /// What it found.
    pub detail: String,
    /// Why it failed, in plain words.
    pub reason: Option<String>,
}

/// How many things the server offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Tools.
    pub tools: usize,
    /// Resources.
    pub resources: usize,
    /// Resource templates.
    pub resource_templates: usize,
    /// Prompts.
    pub prompts: usize,
}

/// Evidence about authentication seen during the probe.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuthEvidence {
    /// The HTTP status that asked for credentials.
    pub status: u16,
    /// The `WWW-Authenticate` challenge, if any.
    pub challenge: Option<String>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeReport {
    /// The URL probed.
    pub url: String,
    /// Whether every step passed.
    pub ok: bool,
    /// The first step that failed.
    pub failed_step: Option<&'static str>,
    /// The steps in order.
    pub steps: Vec<Step>,
    /// What answered, once the handshake passed.
    pub session: Option<SessionInfo>,
    /// What the server offers, once discovery passed.
    pub counts: Option<Counts>,
    /// Set when the server asked for credentials.
    pub auth: Option<AuthEvidence>,
}

impl ProbeReport {
    fn push(
        &mut self,
        name: &'static str,
        started: Instant,
        result: Result<String, String>,
    ) -> bool {
        let millis = started.elapsed().as_millis() as u64;
        let ok = result.is_ok();
        let (detail, reason) = match result {
            Ok(detail) => (detail, None),
            Err(reason) => (String::new(), Some(reason)),
        };
        let outcome = if ok { Outcome::Ok } else { Outcome::Failed };
        if !ok && self.failed_step.is_none() {
            self.failed_step = Some(name);
        }
        self.steps.push(Step {
            name,
            outcome,
            millis,
            detail,
            reason,
        });
        ok
    }

    fn skip(&mut self, names: &[&'static str]) {
        for name in names {
            self.steps.push(Step {
                name,
                outcome: Outcome::Skipped,
                millis: 0,
                detail: String::new(),
                reason: None,
            });
        }
    }
}

const STEPS: [&str; 6] = [
    "resolve",
    "connect",
    "http",
    "handshake",
    "server",
    "discovery",
];

/// Probes a target with a fresh session (never a pooled one, so the report shows what a new
/// connection meets), and returns the catalog when discovery passed.
pub(crate) async fn probe(pool: &Pool, target: &Target) -> (ProbeReport, Option<Catalog>) {
    let mut report = ProbeReport {
        url: redact(&target.url),
        ok: false,
        failed_step: None,
        steps: Vec::new(),
        session: None,
        counts: None,
        auth: None,
    };
    let client = pool.client();
    let timeout = pool.config().session.connect_timeout;

    // 1. Name resolution, checked against the outbound rules.
    let started = Instant::now();
    let addrs = resolve(client, target).await;
    let addrs = match addrs {
        Ok(addrs) => {
            let list: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
            report.push(
                "resolve",
                started,
                Ok(format!("{} → {}", host_of(target), list.join(", "))),
            );
            addrs
        }
        Err(reason) => {
            report.push("resolve", started, Err(reason));
            report.skip(&STEPS[1..]);
            return (report, None);
        }
    };

    // 2. TCP to the first allowed address.
    let started = Instant::now();
    let connected = connect_any(&addrs, timeout).await;
    if !report.push("connect", started, connected) {
        report.skip(&STEPS[2..]);
        return (report, None);
    }

    // 3. One plain HTTP exchange: status, content type and any authentication challenge. With
    // https this is also where TLS is negotiated and the certificate checked.
    let started = Instant::now();
    let http = http_exchange(client, target).await;
    match http {
        Ok((status, detail, challenge)) => {
            report.push("http", started, Ok(detail));
            if status == 401 || status == 403 {
                report.auth = Some(AuthEvidence { status, challenge });
            }
        }
        Err(reason) => {
            report.push("http", started, Err(reason));
            report.skip(&STEPS[3..]);
            return (report, None);
        }
    }

    // 4. The MCP handshake, in whichever transport answers.
    let started = Instant::now();
    let handler = Handler::new(
        pool.default_handler(),
        std::sync::Arc::new(|_| {}),
        pool.client_info(),
    );
    let session = match session::open(target, client, handler, &pool.config().session).await {
        Ok(s) => s,
        Err(e) => {
            if let ConnectError::AuthRequired { status, challenge } = &e {
                report.auth = Some(AuthEvidence {
                    status: *status,
                    challenge: challenge.clone(),
                });
            }
            report.push("handshake", started, Err(explain(&e)));
            report.skip(&STEPS[4..]);
            return (report, None);
        }
    };
    let info = session.info();
    let transport = match info.transport {
        switchboard_domain::Transport::StreamableHttpStateless => "Streamable HTTP, stateless",
        switchboard_domain::Transport::StreamableHttp => "Streamable HTTP with a session",
        switchboard_domain::Transport::Sse => "HTTP+SSE (the 2024-11-05 transport)",
    };
    report.push(
        "handshake",
        started,
        Ok(format!("{transport}, protocol {}", info.protocol_version)),
    );

    // 5. Who the server says it is.
    let started = Instant::now();
    let caps: Vec<&str> = ["tools", "resources", "prompts", "completions", "logging"]
        .into_iter()
        .filter(|c| info.capabilities.get(*c).is_some())
        .collect();
    report.push(
        "server",
        started,
        Ok(format!(
            "{} {}; offers {}{}",
            info.server_name.as_deref().unwrap_or("(unnamed)"),
            info.server_version.as_deref().unwrap_or(""),
            if caps.is_empty() {
                "nothing".to_owned()
            } else {
                caps.join(", ")
            },
            if info.instructions.is_some() {
                "; has instructions"
            } else {
                ""
            },
        )),
    );
    report.session = Some(info);

    // 6. Discovery.
    let started = Instant::now();
    let catalog = discover(&session).await;
    session.close().await;
    match catalog {
        Ok(catalog) => {
            let counts = Counts {
                tools: catalog.tools.len(),
                resources: catalog.resources.len(),
                resource_templates: catalog.resource_templates.len(),
                prompts: catalog.prompts.len(),
            };
            report.push(
                "discovery",
                started,
                Ok(format!(
                    "{} tools, {} resources, {} resource templates, {} prompts",
                    counts.tools, counts.resources, counts.resource_templates, counts.prompts
                )),
            );
            report.counts = Some(counts);
            report.ok = true;
            (report, Some(catalog))
        }
        Err(e) => {
            report.push("discovery", started, Err(explain(&e)));
            (report, None)
        }
    }
}

fn host_of(target: &Target) -> String {
    target.url.host_str().unwrap_or_default().to_owned()
}

/// The URL without user info or query string, which may carry secrets.
pub(crate) fn redact(url: &url::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    if u.query().is_some() {
        u.set_query(Some("…"));
    }
    u.to_string()
}

async fn resolve(
    client: &switchboard_net::SafeClient,
    target: &Target,
) -> Result<Vec<SocketAddr>, String> {
    client.check_url(&target.url).map_err(|e| e.to_string())?;
    let port = target.url.port_or_known_default().unwrap_or(443);
    let host = match target.url.host() {
        Some(Host::Ipv4(ip)) => return Ok(vec![SocketAddr::new(ip.into(), port)]),
        Some(Host::Ipv6(ip)) => return Ok(vec![SocketAddr::new(ip.into(), port)]),
        Some(Host::Domain(d)) => d.to_owned(),
        None => return Err("the URL names no host".into()),
    };
    let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| format!("{host} does not resolve: {e}"))?
        .collect();
    if found.is_empty() {
        return Err(format!("{host} resolves to no address"));
    }
    let mut allowed = Vec::new();
    let mut refused = Vec::new();
    for addr in found {
        match client.destinations().check_resolved(&host, addr.ip()) {
            Ok(()) => allowed.push(addr),
            Err(class) => refused.push(format!("{} ({})", addr.ip(), class.as_str())),
        }
    }
    if allowed.is_empty() {
        return Err(format!(
            "{host} resolves only to addresses Switchboard may not reach: {}; an operator can allow them in the configuration",
            refused.join(", ")
        ));
    }
    Ok(allowed)
}

async fn connect_any(addrs: &[SocketAddr], timeout: Duration) -> Result<String, String> {
    let mut last = String::new();
    for addr in addrs {
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_)) => return Ok(format!("TCP connection to {addr}")),
            Ok(Err(e)) => last = format!("{addr} refused the connection: {e}"),
            Err(_) => last = format!("{addr} did not answer within {} s", timeout.as_secs()),
        }
    }
    Err(last)
}

async fn http_exchange(
    client: &switchboard_net::SafeClient,
    target: &Target,
) -> Result<(u16, String, Option<String>), String> {
    let body = json!({ "jsonrpc": "2.0", "id": 0, "method": "server/discover", "params": {} });
    let mut request = client
        .request(reqwest::Method::POST, &target.url)
        .map_err(|e| e.to_string())?
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "server/discover")
        .json(&body);
    for (name, value) in &target.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let response = client
        .send(request)
        .await
        .map_err(|e| explain(&ConnectError::Net(e)))?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("no content type")
        .to_owned();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let tls = if target.url.scheme() == "https" {
        " over TLS"
    } else {
        ""
    };
    let mut detail = format!("HTTP {status} ({content_type}){tls}");
    if let Some(c) = &challenge {
        detail.push_str(&format!("; WWW-Authenticate: {c}"));
    }
    Ok((status, detail, challenge))
}

/// A failure in words that say what to do about it.
pub(crate) fn explain(e: &ConnectError) -> String {
    match e {
        ConnectError::AuthRequired {
            challenge: Some(c), ..
        } => {
            format!("the server asks for credentials (WWW-Authenticate: {c})")
        }
        ConnectError::AuthRequired {
            status,
            challenge: None,
        } => {
            format!(
                "the server refused without credentials (HTTP {status}); add a token or other credential"
            )
        }
        ConnectError::Net(NetError::Timeout { .. }) => "the server did not answer in time".into(),
        other => other.to_string(),
    }
}
