//! Benchmark of the connector engine against plain rmcp 3.9 clients, measured in the same run
//! (CONVENTIONS rule 9): tool-call latency and throughput on loopback, and memory per idle
//! pooled session. It prints a report and a machine-readable summary; it never asserts a
//! duration or a size, it only says whether the targets were met.
//!
//! Run it with `scripts/bench` (`cargo bench -p switchboard-connect --bench engine`).
//!
//! Design choices, and why:
//!
//! - **Latency.** The rmcp server runs in this process but on its own thread with its own
//!   single-threaded runtime, and the callers run on another single-threaded runtime. On a
//!   two-core machine that gives client and server one core each, so neither steals the
//!   other's scheduler time, and what is compared is the client side, where the engine and the
//!   plain client differ. Variants are measured in interleaved rounds whose order rotates, so
//!   drift (CPU frequency, other work on the machine) falls on all of them alike.
//! - **Fairness of the baseline.** The plain rmcp client negotiates the same protocol version
//!   the engine negotiated with the same server (found with a probe first). A second plain
//!   variant uses the engine's own `SafeClient` transport, so the table separates the cost of
//!   the SSRF-safe HTTP client from the cost of the engine's pool and call path.
//! - **Memory.** Sessions are opened against server-everything, a separate Node process, so
//!   the server's memory is not counted. Each measurement runs in a fresh child process (this
//!   same binary, re-executed) against a fresh server: the allocator keeps freed memory, so a
//!   second measurement in one process would reuse the first one's heap and look cheaper than
//!   it is. Plain and engine children alternate, twice each.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rmcp::ClientHandler;
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResponse, CallToolResult, ClientConfig,
    ClientRequest, ProtocolVersion, ServerResult,
};
use rmcp::service::{
    ClientLifecycleMode, ClientServiceExt, Peer, PeerRequestOptions, RoleClient, RunningService,
};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use switchboard_connect::{
    CallOptions, DeclineAll, Engine, PoolConfig, SessionKey, Target, check_arguments,
};
use switchboard_domain::ConnectorId;
use switchboard_net::{ClientOptions, Destinations, SafeClient};
use switchboard_testkit::{Everything, Mode, RmcpServer};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Targets from the issue.
const P50_TARGET_RATIO: f64 = 1.10;
const BYTES_PER_SESSION_TARGET: f64 = 64.0 * 1024.0;

/// Environment variables that select a child measurement (set by the parent only).
const CHILD_ENV: &str = "SWITCHBOARD_BENCH_CHILD";
const CHILD_URL_ENV: &str = "SWITCHBOARD_BENCH_CHILD_URL";
const RESULT_PREFIX: &str = "BENCH-RESULT ";
/// The engine's label in the latency tables.
const ENGINE: &str = "engine";

/// What one run does; every field can be changed by an environment variable, so a quick run
/// (`BENCH_CALLS=400 BENCH_SESSIONS=100 scripts/bench`) is possible.
#[derive(Debug, Clone)]
struct Settings {
    warmup: usize,
    calls: usize,
    rounds: usize,
    concurrency: usize,
    concurrent_calls: usize,
    concurrent_rounds: usize,
    sessions: usize,
    open_concurrency: usize,
    memory_repeats: usize,
    settle: Duration,
    /// Only the latency part, or only the memory part.
    parts: String,
    /// Adds variants that give a plain client one of the engine's differences each.
    attribution: bool,
}

impl Settings {
    fn from_env() -> Self {
        fn num(name: &str, default: usize) -> usize {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        }
        Self {
            warmup: num("BENCH_WARMUP", 200),
            calls: num("BENCH_CALLS", 2000),
            rounds: num("BENCH_ROUNDS", 10).max(1),
            concurrency: num("BENCH_CONCURRENCY", 16).max(1),
            concurrent_calls: num("BENCH_CONCURRENT_CALLS", 4000),
            concurrent_rounds: num("BENCH_CONCURRENT_ROUNDS", 3).max(1),
            sessions: num("BENCH_SESSIONS", 1000),
            open_concurrency: num("BENCH_OPEN_CONCURRENCY", 32).max(1),
            memory_repeats: num("BENCH_MEMORY_REPEATS", 2).max(1),
            settle: Duration::from_millis(num("BENCH_SETTLE_MS", 3000) as u64),
            parts: std::env::var("BENCH_PARTS").unwrap_or_else(|_| "latency,memory".into()),
            attribution: num("BENCH_ATTRIBUTION", 0) != 0,
        }
    }
}

fn main() {
    if let Ok(kind) = std::env::var(CHILD_ENV) {
        // A memory measurement in its own process; see the module comment.
        let settings = Settings::from_env();
        let result = child_main(&kind, &settings);
        match result {
            Ok(r) => println!(
                "{RESULT_PREFIX}{}",
                serde_json::to_string(&r).expect("the result serializes")
            ),
            Err(e) => {
                eprintln!("memory child {kind} failed: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    if let Ok(variant) = std::env::var("BENCH_PROFILE") {
        // `BENCH_PROFILE=engine|plain|safe|N` runs only that variant's sequential loop, for a
        // profiler.
        profile_only(&variant, &Settings::from_env());
        return;
    }
    let settings = Settings::from_env();
    println!("Switchboard connector engine benchmark");
    println!("======================================");
    println!(
        "machine: {} CPUs; {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        raise_fd_limit()
    );
    let mut summary = BTreeMap::new();
    if settings.parts.contains("latency") {
        latency_part(&settings, &mut summary);
    }
    if settings.parts.contains("memory") {
        memory_part(&settings, &mut summary);
    }
    println!();
    println!("---- summary (machine-readable) ----");
    for (k, v) in &summary {
        println!("{k}={v}");
    }
    println!("---- end summary ----");
}

/// Each idle session-based session holds a socket for its SSE GET stream, so 1,000 sessions
/// need well over 1,000 descriptors. The soft limit is raised to the hard one; children and the
/// Node server inherit it.
fn raise_fd_limit() -> String {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let before = getrlimit(Resource::Nofile);
    if before.current < before.maximum {
        let raised = Rlimit {
            current: before.maximum,
            maximum: before.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            return format!(
                "open-file limit {:?} (raising it to {:?} failed: {e})",
                before.current, before.maximum
            );
        }
    }
    let now = getrlimit(Resource::Nofile);
    format!(
        "open-file limit {} (hard {})",
        now.current.map_or("unlimited".into(), |n| n.to_string()),
        now.maximum.map_or("unlimited".into(), |n| n.to_string())
    )
}

// ---------------------------------------------------------------------------------------------
// Part 1: latency and throughput
// ---------------------------------------------------------------------------------------------

fn loopback_client() -> SafeClient {
    let options = ClientOptions {
        total_timeout: None,
        idle_timeout: Some(Duration::from_secs(30)),
        ..ClientOptions::default()
    };
    SafeClient::new(Destinations::public_only().with_loopback(true), options)
        .expect("building the loopback client")
}

fn new_engine() -> Engine {
    Engine::new(
        loopback_client(),
        PoolConfig::default(),
        Arc::new(DeclineAll {
            reason: "benchmark: no person to ask".into(),
        }),
    )
}

/// The lifecycle a plain rmcp client uses to end up where the engine ended up: straight
/// `server/discover` when the engine negotiated the stateless 2026-07-28 protocol; otherwise
/// the engine's own probe-then-fall-back, with the same legacy version (rmcp's `()` handler
/// would otherwise announce 2026-07-28 in `initialize`).
fn plain_lifecycle(negotiated: &str) -> ClientLifecycleMode {
    if negotiated == ProtocolVersion::V_2026_07_28.as_str() {
        ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        }
    } else {
        ClientLifecycleMode::Auto {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            legacy_version: Some(ProtocolVersion::V_2025_11_25),
        }
    }
}

async fn plain_session<H: ClientHandler>(
    handler: H,
    http: reqwest::Client,
    url: &str,
    lifecycle: ClientLifecycleMode,
) -> Result<RunningService<RoleClient, H>, BoxError> {
    let transport = StreamableHttpClientTransport::with_client(
        http,
        StreamableHttpClientTransportConfig::with_uri(url),
    );
    Ok(handler.serve_with_lifecycle(transport, lifecycle).await?)
}

/// The client description the engine sends with the benchmark's handler, which offers neither
/// sampling nor roots (`handler::client_config` in the engine), for the attribution variant
/// that gives a plain client the same one.
fn engine_client_config() -> ClientConfig {
    serde_json::from_value(json!({
        "protocolVersion": "2025-11-25",
        "capabilities": { "elicitation": { "form": {} } },
        "clientInfo": { "name": "switchboard", "version": "0.1.0" }
    }))
    .expect("the client description is valid")
}

/// The description the engine sent before it was cut to what its handler answers: sampling,
/// roots and a title too. For the attribution variant that prices the per-request `_meta` of
/// 2026-07-28, where rmcp copies the description into every request.
fn full_client_config() -> ClientConfig {
    serde_json::from_value(json!({
        "protocolVersion": "2025-11-25",
        "capabilities": { "elicitation": { "form": {} }, "sampling": {}, "roots": {} },
        "clientInfo": { "name": "switchboard", "title": "Switchboard", "version": "0.1.0" }
    }))
    .expect("the client description is valid")
}

/// A session kept alive while a caller uses its peer.
type KeepAlive = Arc<dyn std::any::Any + Send + Sync>;

/// One way of calling `echo`.
#[derive(Clone)]
enum Caller {
    /// A plain rmcp client session: `Peer::call_tool_once`, what `RunningService::call_tool`
    /// does for a result that needs no further input.
    Plain {
        peer: Peer<RoleClient>,
        _keep: KeepAlive,
    },
    /// Attribution only: a plain rmcp session called the way the engine's `call.rs` calls it
    /// (`check_arguments`, typed parameters copied for the round, cancellable request with a
    /// timeout, content items turned into JSON values), without the pool.
    CallPath {
        peer: Peer<RoleClient>,
        _keep: KeepAlive,
        schema: Arc<Value>,
        /// Whether the arguments are checked against the schema, as `check_arguments` does.
        check: bool,
        /// Whether the request carries the engine's 60 s timeout.
        timeout: bool,
    },
    /// The engine's pooled session for one connector.
    Engine {
        engine: Engine,
        connector: ConnectorId,
        target: Arc<Target>,
        schema: Arc<Value>,
    },
}

impl Caller {
    fn plain<H: ClientHandler>(service: RunningService<RoleClient, H>) -> Caller {
        Caller::Plain {
            peer: service.peer().clone(),
            _keep: Arc::new(service),
        }
    }

    async fn echo(&self, text: &str) -> Result<String, BoxError> {
        match self {
            Caller::Plain { peer, .. } => {
                let mut args = serde_json::Map::new();
                args.insert("text".into(), Value::String(text.to_owned()));
                let params = CallToolRequestParams::new("echo").with_arguments(args);
                match peer.call_tool_once(params).await? {
                    CallToolResponse::Complete(result) => Ok(text_of_plain(&result)),
                    _ => Err("the server wanted more than a call".into()),
                }
            }
            Caller::CallPath {
                peer,
                schema,
                check,
                timeout,
                ..
            } => {
                let arguments = json!({ "text": text });
                if *check {
                    check_arguments(schema, &arguments)?;
                }
                let Value::Object(arguments) = arguments else {
                    return Err("the arguments are not an object".into());
                };
                let params =
                    CallToolRequestParams::new("echo".to_owned()).with_arguments(arguments);
                let request = ClientRequest::CallToolRequest(CallToolRequest::new(params.clone()));
                let handle = peer
                    .send_cancellable_request(
                        request,
                        if *timeout {
                            PeerRequestOptions::with_timeout(Duration::from_secs(60))
                        } else {
                            PeerRequestOptions::no_options()
                        },
                    )
                    .await?;
                let cancel = tokio_util::sync::CancellationToken::new();
                let result = tokio::select! {
                    result = handle.await_response() => result?,
                    () = cancel.cancelled() => return Err("cancelled".into()),
                };
                let ServerResult::CallToolResult(result) = result else {
                    return Err("not a call result".into());
                };
                black_box(params);
                let content: Vec<Value> = result
                    .content
                    .iter()
                    .map(|item| serde_json::to_value(item).unwrap_or(Value::Null))
                    .collect();
                Ok(content
                    .iter()
                    .filter_map(|c| c.get("text").and_then(Value::as_str))
                    .collect())
            }
            Caller::Engine {
                engine,
                connector,
                target,
                schema,
            } => {
                let result = engine
                    .call_tool(
                        *connector,
                        target,
                        "echo",
                        json!({ "text": text }),
                        schema,
                        CallOptions::default(),
                    )
                    .await?;
                Ok(result
                    .content
                    .iter()
                    .filter_map(|c| c.get("text").and_then(Value::as_str))
                    .collect())
            }
        }
    }

    /// One call as the benchmark times it: the result is consumed as a caller would, without
    /// extra work beyond keeping the optimizer from dropping it.
    async fn timed_call(&self, text: &str) -> Result<Duration, BoxError> {
        let started = Instant::now();
        let out = self.echo(text).await?;
        let took = started.elapsed();
        black_box(out);
        Ok(took)
    }
}

fn text_of_plain(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect()
}

/// Summary statistics of a set of latencies.
#[derive(Debug, Clone, Copy)]
struct Stats {
    n: usize,
    p50: Duration,
    p90: Duration,
    p99: Duration,
    mean: Duration,
    min: Duration,
    max: Duration,
}

impl Stats {
    fn of(samples: &[Duration]) -> Stats {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let n = sorted.len().max(1);
        // Nearest-rank percentile.
        let pct = |p: f64| sorted[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
        let total: Duration = sorted.iter().sum();
        Stats {
            n: sorted.len(),
            p50: pct(0.50),
            p90: pct(0.90),
            p99: pct(0.99),
            mean: total / n as u32,
            min: sorted[0],
            max: sorted[n - 1],
        }
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The in-process rmcp server on its own thread and runtime.
struct ServerThread {
    url: String,
    /// The server thread's `schedstat`, for its CPU time.
    schedstat: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerThread {
    fn start() -> ServerThread {
        let (url_tx, url_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("rmcp-server".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the server runtime");
                runtime.block_on(async move {
                    let server = RmcpServer::start().await;
                    let _ = url_tx.send((server.url().to_owned(), thread_schedstat_path()));
                    let _ = stop_rx.await;
                    server.shutdown().await;
                });
            })
            .expect("spawning the server thread");
        let (url, schedstat) = url_rx.recv().expect("the server thread reports its URL");
        ServerThread {
            url,
            schedstat,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The three ways of calling the same server, set up and checked.
struct Callers {
    /// (label, caller); the first is the baseline.
    all: Vec<(&'static str, Caller)>,
    negotiated_engine: String,
    negotiated_plain: String,
    engine: Engine,
}

async fn set_up_callers(url: &str, attribution: bool) -> Result<Callers, BoxError> {
    let engine = new_engine();
    let target = Arc::new(Target::new(url.parse()?));
    // Which protocol does the engine end up with on this server? A probe opens a session the
    // same way the pool does.
    let (report, _) = engine.probe(&target).await;
    let negotiated_engine = report
        .session
        .as_ref()
        .map(|s| s.protocol_version.clone())
        .ok_or_else(|| format!("the probe failed: {report:?}"))?;
    let connector = ConnectorId::new();
    let catalog = engine.catalog(connector, &target, false).await?;
    let schema = Arc::new(
        catalog
            .tool("echo")
            .ok_or("the server has no echo tool")?
            .input_schema
            .clone(),
    );
    let lifecycle = plain_lifecycle(&negotiated_engine);
    let plain = plain_session((), reqwest::Client::new(), url, lifecycle.clone()).await?;
    let negotiated_plain = plain
        .peer_info()
        .map(|i| i.protocol_version.to_string())
        .unwrap_or_default();
    let safe_http = loopback_client().client().clone();
    let safe = plain_session((), safe_http, url, lifecycle.clone()).await?;
    let mut all = vec![
        ("rmcp plain (baseline)", Caller::plain(plain)),
        ("rmcp on SafeClient", Caller::plain(safe)),
        (
            ENGINE,
            Caller::Engine {
                engine: engine.clone(),
                connector,
                target,
                schema: schema.clone(),
            },
        ),
    ];
    if attribution {
        // Each adds one of the engine's differences to a plain client, to find the cost.
        let http = reqwest::Client::new();
        let s = plain_session(engine_client_config(), http.clone(), url, lifecycle.clone());
        all.push(("+ engine ClientConfig", Caller::plain(s.await?)));
        let s = plain_session(full_client_config(), http.clone(), url, lifecycle.clone());
        all.push(("+ untrimmed ClientConfig", Caller::plain(s.await?)));
        let auto = ClientLifecycleMode::Auto {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            legacy_version: Some(ProtocolVersion::V_2025_11_25),
        };
        let s = plain_session((), http.clone(), url, auto).await?;
        all.push(("+ Auto lifecycle", Caller::plain(s)));
        let call_path = [
            ("+ call.rs path", true, true, false),
            ("+ call.rs, no schema check", false, true, false),
            ("+ call.rs, no timeout", true, false, false),
            ("+ ClientConfig + call.rs", true, true, true),
        ];
        for (label, check, timeout, engine_info) in call_path {
            let (peer, keep): (Peer<RoleClient>, KeepAlive) = if engine_info {
                let config = engine_client_config();
                let s = plain_session(config, http.clone(), url, lifecycle.clone()).await?;
                (s.peer().clone(), Arc::new(s))
            } else {
                let s = plain_session((), http.clone(), url, lifecycle.clone()).await?;
                (s.peer().clone(), Arc::new(s))
            };
            let caller = Caller::CallPath {
                peer,
                _keep: keep,
                schema: schema.clone(),
                check,
                timeout,
            };
            all.push((label, caller));
        }
    }
    for (label, caller) in &all {
        let got = caller.echo("check").await?;
        if got != "check" {
            return Err(format!("{label}: echo answered {got:?}").into());
        }
    }
    Ok(Callers {
        all,
        negotiated_engine,
        negotiated_plain,
        engine,
    })
}

fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the client runtime")
}

const ECHO_TEXT: &str = "hello from the switchboard benchmark";

/// The calling thread's `/proc/PID/task/TID/schedstat`.
fn thread_schedstat_path() -> String {
    std::fs::read_link("/proc/thread-self").map_or_else(
        |_| "/proc/thread-self/schedstat".into(),
        |p| format!("/proc/{}/schedstat", p.display()),
    )
}

/// CPU time a thread has run, from its `schedstat` (nanoseconds; 0 where unavailable). Unlike
/// wall time, it does not grow while the thread waits for a CPU that other work holds, so it
/// stays comparable on a busy machine.
fn thread_cpu_ns(schedstat: &str) -> u64 {
    std::fs::read_to_string(schedstat)
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// The one-minute load average, to judge how busy the machine was.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn latency_part(settings: &Settings, summary: &mut BTreeMap<String, String>) {
    println!();
    println!("1. Tool-call latency and throughput (rmcp 3.9 server on loopback, tool `echo`)");
    println!("--------------------------------------------------------------------------------");
    let server = ServerThread::start();
    let runtime = client_runtime();
    let load_before = load_average();
    let result = runtime.block_on(run_latency(settings, &server.url, &server.schedstat));
    println!(
        "load average (1 min) before and after: {load_before}, {}",
        load_average()
    );
    drop(runtime);
    drop(server);
    match result {
        Ok(report) => report.print(settings, summary),
        Err(e) => {
            println!("latency part FAILED: {e}");
            summary.insert("latency_error".into(), format!("{e:?}"));
        }
    }
}

struct LatencyReport {
    labels: Vec<&'static str>,
    sequential: Vec<Vec<Duration>>,
    sequential_wall: Vec<Duration>,
    /// CPU time of the callers' thread and of the server thread during the sequential calls.
    client_cpu: Vec<Duration>,
    server_cpu: Vec<Duration>,
    concurrent_calls: Vec<usize>,
    concurrent_wall: Vec<Duration>,
    negotiated_engine: String,
    negotiated_plain: String,
    engine_open_sessions: usize,
    micro: Vec<(&'static str, Duration)>,
}

async fn run_latency(
    settings: &Settings,
    url: &str,
    server_schedstat: &str,
) -> Result<LatencyReport, BoxError> {
    // Every task of the current-thread runtime runs on this thread.
    let client_schedstat = thread_schedstat_path();
    let callers = set_up_callers(url, settings.attribution).await?;
    let n = callers.all.len();
    // Warm-up: connections, caches, the allocator's free lists.
    for (_, caller) in &callers.all {
        for _ in 0..settings.warmup {
            caller.timed_call(ECHO_TEXT).await?;
        }
    }
    // Sequential calls, interleaved: each round runs every variant once, the order rotating
    // from round to round.
    let per_round = settings.calls.div_ceil(settings.rounds);
    let mut sequential = vec![Vec::with_capacity(settings.calls); n];
    let mut sequential_wall = vec![Duration::ZERO; n];
    let mut client_cpu = vec![Duration::ZERO; n];
    let mut server_cpu = vec![Duration::ZERO; n];
    for round in 0..settings.rounds {
        for k in 0..n {
            let v = (round + k) % n;
            let caller = &callers.all[v].1;
            let (client0, server0) = (
                thread_cpu_ns(&client_schedstat),
                thread_cpu_ns(server_schedstat),
            );
            let started = Instant::now();
            for _ in 0..per_round {
                sequential[v].push(caller.timed_call(ECHO_TEXT).await?);
            }
            sequential_wall[v] += started.elapsed();
            client_cpu[v] += Duration::from_nanos(thread_cpu_ns(&client_schedstat) - client0);
            server_cpu[v] += Duration::from_nanos(thread_cpu_ns(server_schedstat) - server0);
        }
    }
    // Throughput with concurrent callers, also interleaved.
    let per_task = settings.concurrent_calls.div_ceil(settings.concurrency);
    let mut concurrent_calls = vec![0; n];
    let mut concurrent_wall = vec![Duration::ZERO; n];
    for (_, caller) in &callers.all {
        concurrent_round(caller, settings.concurrency, per_task.min(50)).await?;
    }
    for round in 0..settings.concurrent_rounds {
        for k in 0..n {
            let v = (round + k) % n;
            let took = concurrent_round(&callers.all[v].1, settings.concurrency, per_task).await?;
            concurrent_wall[v] += took;
            concurrent_calls[v] += per_task * settings.concurrency;
        }
    }
    let engine_open_sessions = callers.engine.open_sessions().await;
    let micro = micro_costs(&callers);
    callers.engine.shutdown().await;
    Ok(LatencyReport {
        labels: callers.all.iter().map(|(l, _)| *l).collect(),
        sequential,
        sequential_wall,
        client_cpu,
        server_cpu,
        concurrent_calls,
        concurrent_wall,
        negotiated_engine: callers.negotiated_engine,
        negotiated_plain: callers.negotiated_plain,
        engine_open_sessions,
        micro,
    })
}

async fn concurrent_round(
    caller: &Caller,
    concurrency: usize,
    per_task: usize,
) -> Result<Duration, BoxError> {
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let caller = caller.clone();
            tokio::spawn(async move {
                for _ in 0..per_task {
                    black_box(caller.echo(ECHO_TEXT).await?);
                }
                Ok::<_, BoxError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(started.elapsed())
}

/// CPU time of the pieces of work the engine adds to every call, measured in this run. The
/// request and result rows copy what `call.rs` does (the functions are private to the crate).
fn micro_costs(callers: &Callers) -> Vec<(&'static str, Duration)> {
    let schema = callers
        .all
        .iter()
        .find_map(|(_, c)| match c {
            Caller::Engine { schema, .. } => Some(schema.clone()),
            _ => None,
        })
        .expect("the engine caller");
    let args = json!({ "text": ECHO_TEXT });
    const ITER: u32 = 20_000;
    let time = |f: &mut dyn FnMut()| {
        for _ in 0..ITER / 10 {
            f();
        }
        let started = Instant::now();
        for _ in 0..ITER {
            f();
        }
        started.elapsed() / ITER
    };
    let mut out = Vec::new();
    out.push((
        "check_arguments (what call_tool runs first)",
        time(&mut || {
            black_box(check_arguments(black_box(&schema), black_box(&args)).is_ok());
        }),
    ));
    out.push((
        "  compiling the schema and checking (no cache)",
        time(&mut || {
            let validator = jsonschema::validator_for(black_box(&schema));
            let validator = validator.expect("the echo schema compiles");
            black_box(validator.iter_errors(black_box(&args)).take(5).count());
        }),
    ));
    let validator = jsonschema::validator_for(&schema).expect("the echo schema compiles");
    out.push((
        "  checking with a validator compiled before",
        time(&mut || {
            black_box(validator.iter_errors(black_box(&args)).take(5).count());
        }),
    ));
    let target = Target::new("http://127.0.0.1:1/mcp".parse().expect("a URL"));
    let connector = ConnectorId::new();
    out.push((
        "SessionKey::new (SHA-256 + hex of the headers)",
        time(&mut || {
            black_box(SessionKey::new(connector, black_box(&target)));
        }),
    ));
    let arguments = args
        .as_object()
        .cloned()
        .expect("the arguments are an object");
    out.push((
        "request: typed params and the round's copy",
        time(&mut || {
            let params = CallToolRequestParams::new("echo".to_owned())
                .with_arguments(black_box(&arguments).clone());
            black_box(params.clone());
        }),
    ));
    let result = CallToolResult::success(vec![rmcp::model::ContentBlock::text(ECHO_TEXT)]);
    out.push((
        "result: content items to JSON values",
        time(&mut || {
            let content: Vec<Value> = black_box(&result)
                .content
                .iter()
                .map(|item| serde_json::to_value(item).unwrap_or(Value::Null))
                .collect();
            black_box(content);
        }),
    ));
    out
}

impl LatencyReport {
    fn print(&self, settings: &Settings, summary: &mut BTreeMap<String, String>) {
        println!(
            "protocol negotiated: engine {}, plain rmcp client {}{}",
            self.negotiated_engine,
            self.negotiated_plain,
            if self.negotiated_engine == self.negotiated_plain {
                " (same)"
            } else {
                " (DIFFERENT: the comparison is not like for like)"
            }
        );
        println!(
            "runtimes: server on its own thread (current-thread runtime); callers on the main \
             thread (current-thread runtime)"
        );
        println!(
            "sequential: {} warm-up calls per variant, then {} measured calls per variant in {} \
             interleaved rounds",
            settings.warmup,
            self.sequential[0].len(),
            settings.rounds
        );
        println!();
        println!(
            "{:<28} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>9}",
            "variant (sequential)",
            "p50 µs",
            "p90 µs",
            "p99 µs",
            "mean µs",
            "min µs",
            "max µs",
            "calls/s",
            "p50/base"
        );
        let stats: Vec<Stats> = self.sequential.iter().map(|s| Stats::of(s)).collect();
        for (i, s) in stats.iter().enumerate() {
            let calls_per_sec = s.n as f64 / self.sequential_wall[i].as_secs_f64();
            println!(
                "{:<28} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>10.0} {:>9.3}",
                self.labels[i],
                us(s.p50),
                us(s.p90),
                us(s.p99),
                us(s.mean),
                us(s.min),
                us(s.max),
                calls_per_sec,
                s.p50.as_secs_f64() / stats[0].p50.as_secs_f64()
            );
        }
        println!();
        println!(
            "{:<28} {:>14} {:>14} {:>16}",
            "CPU per call (sequential)", "client µs", "server µs", "client - base µs"
        );
        let cpu = |d: &[Duration], i: usize| us(d[i]) / stats[i].n.max(1) as f64;
        for i in 0..stats.len() {
            println!(
                "{:<28} {:>14.1} {:>14.1} {:>+16.1}",
                self.labels[i],
                cpu(&self.client_cpu, i),
                cpu(&self.server_cpu, i),
                cpu(&self.client_cpu, i) - cpu(&self.client_cpu, 0)
            );
        }
        let base = stats[0];
        let engine_i = self
            .labels
            .iter()
            .position(|l| *l == ENGINE)
            .expect("the engine variant");
        let eng = stats[engine_i];
        let safe = stats[1];
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
        let base_cps = base.n as f64 / self.sequential_wall[0].as_secs_f64();
        let eng_cps = eng.n as f64 / self.sequential_wall[engine_i].as_secs_f64();
        println!();
        println!(
            "{:<40} {:>8} {:>8} {:>8} {:>10}",
            "ratio", "p50", "p99", "mean", "calls/s"
        );
        println!(
            "{:<40} {:>8.3} {:>8.3} {:>8.3} {:>10.3}",
            "engine / rmcp plain (baseline)",
            ratio(eng.p50, base.p50),
            ratio(eng.p99, base.p99),
            ratio(eng.mean, base.mean),
            eng_cps / base_cps
        );
        println!(
            "{:<40} {:>8.3} {:>8.3} {:>8.3} {:>10}",
            "  rmcp on SafeClient / rmcp plain",
            ratio(safe.p50, base.p50),
            ratio(safe.p99, base.p99),
            ratio(safe.mean, base.mean),
            ""
        );
        println!(
            "{:<40} {:>8.3} {:>8.3} {:>8.3} {:>10}",
            "  engine / rmcp on SafeClient",
            ratio(eng.p50, safe.p50),
            ratio(eng.p99, safe.p99),
            ratio(eng.mean, safe.mean),
            ""
        );
        println!(
            "{:<40} {:>+8.1} {:>+8.1} {:>+8.1} {:>10}",
            "engine - rmcp plain, µs",
            us(eng.p50) - us(base.p50),
            us(eng.p99) - us(base.p99),
            us(eng.mean) - us(base.mean),
            ""
        );
        println!();
        println!(
            "{:<28} {:>10} {:>12} {:>12}",
            format!("{} concurrent callers", settings.concurrency),
            "calls",
            "calls/s",
            "vs baseline"
        );
        let cps: Vec<f64> = (0..self.labels.len())
            .map(|i| self.concurrent_calls[i] as f64 / self.concurrent_wall[i].as_secs_f64())
            .collect();
        for (i, label) in self.labels.iter().enumerate() {
            println!(
                "{:<28} {:>10} {:>12.0} {:>12.3}",
                label,
                self.concurrent_calls[i],
                cps[i],
                cps[i] / cps[0]
            );
        }
        println!();
        println!("per-call CPU work the engine adds (this run, µs per operation):");
        for (label, d) in &self.micro {
            println!("  {:<52} {:>8.2}", label, us(*d));
        }
        println!(
            "engine sessions open during the latency part: {} (expected 1)",
            self.engine_open_sessions
        );
        let p50_ratio = ratio(eng.p50, base.p50);
        let verdict = if p50_ratio <= P50_TARGET_RATIO {
            "MET"
        } else {
            "MISSED"
        };
        println!();
        println!(
            "verdict: engine p50 is {:.1}% {} the plain rmcp client (target: at most 10% slower) \
             -> {verdict}",
            (p50_ratio - 1.0).abs() * 100.0,
            if p50_ratio >= 1.0 {
                "slower than"
            } else {
                "faster than"
            }
        );
        summary.insert("p50_ratio".into(), format!("{p50_ratio:.3}"));
        summary.insert(
            "p99_ratio".into(),
            format!("{:.3}", ratio(eng.p99, base.p99)),
        );
        summary.insert(
            "mean_ratio".into(),
            format!("{:.3}", ratio(eng.mean, base.mean)),
        );
        summary.insert("p50_us_engine".into(), format!("{:.1}", us(eng.p50)));
        summary.insert("p50_us_plain".into(), format!("{:.1}", us(base.p50)));
        summary.insert("p99_us_engine".into(), format!("{:.1}", us(eng.p99)));
        summary.insert("p99_us_plain".into(), format!("{:.1}", us(base.p99)));
        summary.insert("calls_per_sec_engine".into(), format!("{eng_cps:.0}"));
        summary.insert("calls_per_sec_plain".into(), format!("{base_cps:.0}"));
        summary.insert(
            "concurrent_calls_per_sec_engine".into(),
            format!("{:.0}", cps[engine_i]),
        );
        summary.insert(
            "concurrent_calls_per_sec_plain".into(),
            format!("{:.0}", cps[0]),
        );
        summary.insert(
            "concurrent_throughput_ratio".into(),
            format!("{:.3}", cps[engine_i] / cps[0]),
        );
        summary.insert("p50_target_met".into(), (verdict == "MET").to_string());
        let cpu_per_call = |i: usize| us(self.client_cpu[i]) / stats[i].n.max(1) as f64;
        summary.insert(
            "client_cpu_us_per_call_engine".into(),
            format!("{:.1}", cpu_per_call(engine_i)),
        );
        summary.insert(
            "client_cpu_us_per_call_plain".into(),
            format!("{:.1}", cpu_per_call(0)),
        );
    }
}

/// `BENCH_PROFILE=engine|plain|safe|N`: only that variant's sequential loop (N indexes the
/// table's rows, attribution variants included), for `perf record` or `valgrind --tool=callgrind`.
fn profile_only(variant: &str, settings: &Settings) {
    let server = ServerThread::start();
    let runtime = client_runtime();
    runtime.block_on(async {
        // Every variant is set up whichever one runs, so that set-up costs are the same in
        // every profile and a difference between two profiles is the calls' alone.
        let callers = set_up_callers(&server.url, true).await.expect("setting up");
        let index = match variant {
            "plain" => Some(0),
            "safe" => Some(1),
            "engine" => Some(2),
            other => other.parse::<usize>().ok(),
        };
        let Some((label, caller)) = index.and_then(|i| callers.all.get(i)) else {
            let labels: Vec<_> = callers.all.iter().map(|(l, _)| *l).collect();
            panic!("BENCH_PROFILE is plain, safe, engine or an index into {labels:?}");
        };
        println!("profiling {label:?}");
        let started = Instant::now();
        let mut samples = Vec::with_capacity(settings.calls);
        for _ in 0..settings.calls {
            samples.push(caller.timed_call(ECHO_TEXT).await.expect("a call"));
        }
        let s = Stats::of(&samples);
        println!(
            "{variant}: {} calls in {:.2} s, p50 {:.1} µs, p99 {:.1} µs",
            s.n,
            started.elapsed().as_secs_f64(),
            us(s.p50),
            us(s.p99)
        );
        callers.engine.shutdown().await;
    });
    drop(runtime);
    drop(server);
}

// ---------------------------------------------------------------------------------------------
// Part 2: memory per idle session
// ---------------------------------------------------------------------------------------------

/// What one child measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct MemoryResult {
    kind: String,
    requested: usize,
    opened: usize,
    failed: usize,
    first_error: Option<String>,
    /// Sessions the engine reports open (engine children only), the warm-up one included.
    open_sessions: Option<usize>,
    protocol: String,
    open_secs: f64,
    rss_before_kib: u64,
    rss_after_kib: u64,
    anon_before_kib: u64,
    anon_after_kib: u64,
    fds_before: usize,
    fds_after: usize,
    threads_after: u64,
}

impl MemoryResult {
    fn bytes_per_session(&self) -> f64 {
        (self.rss_after_kib as f64 - self.rss_before_kib as f64) * 1024.0
            / self.opened.max(1) as f64
    }

    fn anon_bytes_per_session(&self) -> f64 {
        (self.anon_after_kib as f64 - self.anon_before_kib as f64) * 1024.0
            / self.opened.max(1) as f64
    }
}

/// A field of `/proc/self/status`, in KiB.
fn proc_status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

fn child_main(kind: &str, settings: &Settings) -> Result<MemoryResult, BoxError> {
    let url = std::env::var(CHILD_URL_ENV)?;
    // The product runs on a multi-threaded runtime; so do the memory children.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match kind {
            "plain" => child_plain(&url, settings).await,
            "engine" => child_engine(&url, settings, false).await,
            "engine+catalog" => child_engine(&url, settings, true).await,
            other => Err(format!("unknown child kind {other}").into()),
        }
    })
}

/// Shared by both children: measure, open `requested` sessions with `open`, settle, measure.
struct Measure {
    rss: u64,
    anon: u64,
    fds: usize,
}

impl Measure {
    async fn now(settle: Duration) -> Measure {
        tokio::time::sleep(settle).await;
        Measure {
            rss: proc_status_kib("VmRSS:"),
            anon: proc_status_kib("RssAnon:"),
            fds: open_fds(),
        }
    }
}

async fn child_engine(
    url: &str,
    settings: &Settings,
    with_catalog: bool,
) -> Result<MemoryResult, BoxError> {
    let engine = new_engine();
    let target = Arc::new(Target::new(url.parse()?));
    let (report, _) = engine.probe(&target).await;
    let protocol = report
        .session
        .map(|s| s.protocol_version)
        .unwrap_or_default();
    // One session opened before measuring, so one-time costs (lazy statics, the first
    // connection, the tool schema) are not charged to the 1,000.
    let warm = ConnectorId::new();
    let catalog = engine.catalog(warm, &target, false).await?;
    let schema = Arc::new(
        catalog
            .tool("echo")
            .ok_or("server-everything has no echo tool")?
            .input_schema
            .clone(),
    );
    engine
        .call_tool(
            warm,
            &target,
            "echo",
            json!({ "message": "warm" }),
            &schema,
            CallOptions::default(),
        )
        .await?;
    let before = Measure::now(settings.settle).await;
    let started = Instant::now();
    let results: Vec<Result<(), String>> = futures::stream::iter(0..settings.sessions)
        .map(|_| {
            let engine = engine.clone();
            let target = target.clone();
            let schema = schema.clone();
            async move {
                let id = ConnectorId::new();
                if with_catalog {
                    engine
                        .catalog(id, &target, false)
                        .await
                        .map_err(|e| e.to_string())?;
                } else {
                    // The cheapest call that opens the pooled session.
                    engine
                        .call_tool(
                            id,
                            &target,
                            "echo",
                            json!({ "message": "open" }),
                            &schema,
                            CallOptions::default(),
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok(())
            }
        })
        .buffer_unordered(settings.open_concurrency)
        .collect()
        .await;
    let open_secs = started.elapsed().as_secs_f64();
    let after = Measure::now(settings.settle).await;
    let open_sessions = engine.open_sessions().await;
    let failed = results.iter().filter(|r| r.is_err()).count();
    let first_error = results.iter().find_map(|r| r.clone().err());
    let result = MemoryResult {
        kind: if with_catalog {
            "engine+catalog".into()
        } else {
            "engine".into()
        },
        requested: settings.sessions,
        opened: settings.sessions - failed,
        failed,
        first_error,
        open_sessions: Some(open_sessions),
        protocol,
        open_secs,
        rss_before_kib: before.rss,
        rss_after_kib: after.rss,
        anon_before_kib: before.anon,
        anon_after_kib: after.anon,
        fds_before: before.fds,
        fds_after: after.fds,
        threads_after: proc_status_kib("Threads:"),
    };
    Ok(result)
}

async fn child_plain(url: &str, settings: &Settings) -> Result<MemoryResult, BoxError> {
    // One reqwest client shared by every session, as the engine shares its one SafeClient.
    let http = reqwest::Client::new();
    // server-everything is session-based; the plain client takes the same path there as the
    // engine (probe with server/discover, fall back to initialize at 2025-11-25).
    let lifecycle = plain_lifecycle(ProtocolVersion::V_2025_11_25.as_str());
    let call = |service: &RunningService<RoleClient, ()>| {
        let mut args = serde_json::Map::new();
        args.insert("message".into(), Value::String("open".into()));
        let params = CallToolRequestParams::new("echo").with_arguments(args);
        let peer = service.peer().clone();
        async move { peer.call_tool_once(params).await.map(|_| ()) }
    };
    let warm = plain_session((), http.clone(), url, lifecycle.clone()).await?;
    call(&warm).await?;
    let protocol = warm
        .peer_info()
        .map(|i| i.protocol_version.to_string())
        .unwrap_or_default();
    let before = Measure::now(settings.settle).await;
    let started = Instant::now();
    let results: Vec<Result<RunningService<RoleClient, ()>, String>> =
        futures::stream::iter(0..settings.sessions)
            .map(|_| {
                let http = http.clone();
                let lifecycle = lifecycle.clone();
                async move {
                    let service = plain_session((), http, url, lifecycle)
                        .await
                        .map_err(|e| e.to_string())?;
                    call(&service).await.map_err(|e| e.to_string())?;
                    Ok(service)
                }
            })
            .buffer_unordered(settings.open_concurrency)
            .collect()
            .await;
    let open_secs = started.elapsed().as_secs_f64();
    let after = Measure::now(settings.settle).await;
    let failed = results.iter().filter(|r| r.is_err()).count();
    let first_error = results.iter().find_map(|r| r.as_ref().err().cloned());
    let result = MemoryResult {
        kind: "plain".into(),
        requested: settings.sessions,
        opened: settings.sessions - failed,
        failed,
        first_error,
        open_sessions: None,
        protocol,
        open_secs,
        rss_before_kib: before.rss,
        rss_after_kib: after.rss,
        anon_before_kib: before.anon,
        anon_after_kib: after.anon,
        fds_before: before.fds,
        fds_after: after.fds,
        threads_after: proc_status_kib("Threads:"),
    };
    // The sessions live until the measurement is taken.
    drop(results);
    drop(warm);
    Ok(result)
}

fn memory_part(settings: &Settings, summary: &mut BTreeMap<String, String>) {
    println!();
    println!(
        "2. Memory per idle pooled session ({} sessions against server-everything, streamable \
         HTTP, a separate Node process)",
        settings.sessions
    );
    println!("--------------------------------------------------------------------------------");
    println!(
        "each measurement: a fresh child process and a fresh server; one warm session first, \
         RSS read {} ms after the last session opened; {} sessions opened at most {} at a time",
        settings.settle.as_millis(),
        settings.sessions,
        settings.open_concurrency
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the parent runtime");
    let mut kinds = Vec::new();
    for _ in 0..settings.memory_repeats {
        kinds.push("plain");
        kinds.push("engine");
    }
    kinds.push("engine+catalog");
    let mut results: Vec<MemoryResult> = Vec::new();
    for kind in kinds {
        match runtime.block_on(run_child(kind, settings)) {
            Ok(r) => results.push(r),
            Err(e) => {
                println!("{kind}: FAILED: {e}");
                summary.insert(
                    format!("memory_error_{}", kind.replace('+', "_")),
                    format!("{e:?}"),
                );
            }
        }
    }
    println!();
    println!(
        "{:<15} {:>7} {:>6} {:>7} {:>9} {:>9} {:>11} {:>11} {:>10} {:>7} {:>7}",
        "client",
        "opened",
        "open*",
        "open s",
        "RSS0 KiB",
        "RSS1 KiB",
        "B/sess RSS",
        "B/sess anon",
        "protocol",
        "fds",
        "threads"
    );
    for r in &results {
        println!(
            "{:<15} {:>7} {:>6} {:>7.1} {:>9} {:>9} {:>11.0} {:>11.0} {:>10} {:>7} {:>7}",
            r.kind,
            r.opened,
            r.open_sessions.map_or("-".into(), |n| n.to_string()),
            r.open_secs,
            r.rss_before_kib,
            r.rss_after_kib,
            r.bytes_per_session(),
            r.anon_bytes_per_session(),
            r.protocol,
            format!("+{}", r.fds_after.saturating_sub(r.fds_before)),
            r.threads_after
        );
        if r.failed > 0 {
            println!(
                "  {} of {} sessions could not be opened; first error: {}",
                r.failed,
                r.requested,
                r.first_error.as_deref().unwrap_or("?")
            );
        }
    }
    println!("(open* = engine.open_sessions(), the warm-up session included)");
    let mean = |kind: &str| {
        let v: Vec<f64> = results
            .iter()
            .filter(|r| r.kind == kind)
            .map(MemoryResult::bytes_per_session)
            .collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let engine = mean("engine");
    let plain = mean("plain");
    println!();
    if let Some(e) = engine {
        let verdict = if e <= BYTES_PER_SESSION_TARGET {
            "MET"
        } else {
            "MISSED"
        };
        println!(
            "engine: {:.1} KiB per idle session (mean of {} runs; target at most 64 KiB) -> \
             {verdict}",
            e / 1024.0,
            settings.memory_repeats
        );
        summary.insert("bytes_per_idle_session".into(), format!("{e:.0}"));
        summary.insert("memory_target_met".into(), (verdict == "MET").to_string());
    }
    if let Some(p) = plain {
        println!(
            "plain rmcp client: {:.1} KiB per idle session (mean of {} runs)",
            p / 1024.0,
            settings.memory_repeats
        );
        summary.insert("plain_bytes_per_idle_session".into(), format!("{p:.0}"));
    }
    if let (Some(e), Some(p)) = (engine, plain) {
        println!("ratio engine / plain: {:.3}", e / p);
        summary.insert("memory_ratio".into(), format!("{:.3}", e / p));
    }
    if let Some(c) = mean("engine+catalog") {
        println!(
            "engine with a cached catalog per connector (opened with catalog()): {:.1} KiB per \
             session (informational: server-everything's catalog is large)",
            c / 1024.0
        );
        summary.insert("bytes_per_session_with_catalog".into(), format!("{c:.0}"));
    }
    if let Some(r) = results.iter().find(|r| r.kind == "engine") {
        summary.insert("sessions_opened".into(), r.opened.to_string());
        summary.insert(
            "open_sessions_reported".into(),
            r.open_sessions.unwrap_or(0).to_string(),
        );
    }
}

async fn run_child(kind: &str, settings: &Settings) -> Result<MemoryResult, BoxError> {
    let server = Everything::try_start(Mode::StreamableHttp)
        .await
        .map_err(|e| format!("server-everything did not start: {e:#}"))?;
    let exe = std::env::current_exe()?;
    let output = tokio::process::Command::new(exe)
        .env(CHILD_ENV, kind)
        .env(CHILD_URL_ENV, server.url())
        .env("BENCH_SESSIONS", settings.sessions.to_string())
        .env(
            "BENCH_OPEN_CONCURRENCY",
            settings.open_concurrency.to_string(),
        )
        .env("BENCH_SETTLE_MS", settings.settle.as_millis().to_string())
        .stderr(std::process::Stdio::inherit())
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(RESULT_PREFIX))
        .ok_or_else(|| format!("the child ({}) gave no result: {stdout}", output.status))?;
    Ok(serde_json::from_str(line)?)
}
