//! Child processes for peers: their own process group, captured output, a bounded wait until
//! they accept connections (or announce where they listen), and a kill of the whole group on
//! drop.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

/// How often a starting peer is probed, and how many times, before it counts as failed.
const PROBE_INTERVAL: Duration = Duration::from_millis(50);
const PROBE_TRIES: u32 = 600;
/// How often a start is retried on a fresh port when the chosen one was taken meanwhile.
const PORT_ATTEMPTS: u32 = 3;
/// The most output kept per peer; older lines are dropped first.
const OUTPUT_LIMIT: usize = 256 * 1024;
/// What a peer that picks its own port prints, followed by its URL, once it accepts connections
/// (see [`spawn_announced`]).
pub const READY_PREFIX: &str = "PEER_READY ";

/// A port that was free on 127.0.0.1 a moment ago. Another process may take it before the
/// peer binds it, which is why the launchers retry on another port when that happens.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("binding 127.0.0.1:0 to find a free port")
}

/// A running peer process. Dropping it kills its whole process group.
#[derive(Debug)]
pub struct PeerProcess {
    name: String,
    port: u16,
    child: Child,
    output: Arc<Mutex<String>>,
}

impl PeerProcess {
    /// The loopback port the peer listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// What the peer wrote to stderr and stdout so far (the last 256 KiB).
    pub fn output(&self) -> String {
        self.output.lock().expect("output lock").clone()
    }

    /// Spawns `command` and waits until it accepts TCP connections on `port`.
    async fn spawn(name: &str, port: u16, command: Command) -> anyhow::Result<Self> {
        let (mut child, output) = launch(name, command)?;
        if let Some(stdout) = child.stdout.take() {
            capture(stdout, "[stdout] ", output.clone());
        }
        let mut process = PeerProcess {
            name: name.to_owned(),
            port,
            child,
            output,
        };
        process.wait_until_accepting().await?;
        Ok(process)
    }

    /// Polls the port a bounded number of times; fails early when the process exits.
    async fn wait_until_accepting(&mut self) -> anyhow::Result<()> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        for _ in 0..PROBE_TRIES {
            if let Some(status) = self.child.try_wait()? {
                // Let the readers drain what the process wrote before it died.
                tokio::time::sleep(PROBE_INTERVAL).await;
                bail!(
                    "{} exited with {status} before accepting connections on {addr}; its output:\n{}",
                    self.name,
                    self.output()
                );
            }
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
        bail!(
            "{} did not accept connections on {addr} after {} tries; its output:\n{}",
            self.name,
            PROBE_TRIES,
            self.output()
        )
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        if let Some(pid) = self
            .child
            .id()
            .and_then(|id| rustix::process::Pid::from_raw(id as i32))
        {
            // The group may already be gone; there is nothing to do about a failure here.
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        let _ = self.child.start_kill();
    }
}

/// Starts a peer on a free loopback port: `make(port)` builds the command. When the process
/// dies before accepting because the port was taken in the meantime, tries again on another.
pub async fn spawn_on_free_port(
    name: &str,
    make: impl Fn(u16) -> Command,
) -> anyhow::Result<PeerProcess> {
    let mut last_error = None;
    for _ in 0..PORT_ATTEMPTS {
        let port = free_port();
        match PeerProcess::spawn(name, port, make(port)).await {
            Ok(process) => return Ok(process),
            Err(error) => {
                let text = format!("{error:#}").to_ascii_lowercase();
                let port_taken = text.contains("address already in use")
                    || text.contains("eaddrinuse")
                    || text.contains("errno 98");
                if !port_taken {
                    return Err(error);
                }
                last_error = Some(error);
            }
        }
    }
    Err(last_error.expect("at least one attempt"))
}

/// Starts a peer that picks its own port (it listens on port 0) and announces where it listens by
/// printing [`READY_PREFIX`] and its URL as one line on stdout. Returns the process and that URL.
/// Binding port 0 leaves no window in which another process could take the port.
pub async fn spawn_announced(
    name: &str,
    command: Command,
) -> anyhow::Result<(PeerProcess, String)> {
    let (mut child, output) = launch(name, command)?;
    let stdout = child.stdout.take().context("the child's stdout is piped")?;
    let mut reader = BufReader::new(stdout);
    let announced = tokio::time::timeout(PROBE_INTERVAL * PROBE_TRIES, async {
        let mut line = Vec::new();
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line).await? == 0 {
                return anyhow::Ok(None);
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\r', '\n']);
            append(&output, "[stdout] ", text);
            if let Some(url) = text.strip_prefix(READY_PREFIX) {
                return Ok(Some(url.trim().to_owned()));
            }
        }
    })
    .await;
    let mut process = PeerProcess {
        name: name.to_owned(),
        port: 0,
        child,
        output,
    };
    let url = match announced {
        Ok(Ok(Some(url))) => url,
        Ok(Ok(None)) => {
            // Let the stderr reader drain what the process wrote before it died.
            let status = match tokio::time::timeout(PROBE_INTERVAL * 20, process.child.wait()).await
            {
                Ok(Ok(status)) => status.to_string(),
                _ => "still running".to_owned(),
            };
            tokio::time::sleep(PROBE_INTERVAL).await;
            bail!(
                "{name} closed its output without announcing its address ({status}); \
                 its output:\n{}",
                process.output()
            );
        }
        Ok(Err(error)) => {
            return Err(error).with_context(|| format!("reading the output of {name}"));
        }
        Err(_) => bail!(
            "{name} did not announce its address within {:?}; its output:\n{}",
            PROBE_INTERVAL * PROBE_TRIES,
            process.output()
        ),
    };
    capture(reader, "[stdout] ", process.output.clone());
    process.port = reqwest::Url::parse(&url)
        .ok()
        .and_then(|parsed| parsed.port())
        .with_context(|| format!("{name} announced {url:?}, which names no port"))?;
    Ok((process, url))
}

/// Spawns `command` in its own process group with piped output; stderr is captured at once,
/// stdout is left to the caller.
fn launch(name: &str, mut command: Command) -> anyhow::Result<(Child, Arc<Mutex<String>>)> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own group, so that dropping the handle also ends anything the peer started.
        .process_group(0);
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {name}: {command:?}"))?;
    let output = Arc::new(Mutex::new(String::new()));
    if let Some(stderr) = child.stderr.take() {
        capture(stderr, "", output.clone());
    }
    Ok((child, output))
}

/// Copies lines from a child's pipe into the shared output buffer, keeping it bounded.
fn capture(
    pipe: impl AsyncRead + Unpin + Send + 'static,
    prefix: &'static str,
    into: Arc<Mutex<String>>,
) {
    tokio::spawn(async move {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        // Lines are read as bytes: a peer's stray non-UTF-8 output must not end the capture.
        while matches!(reader.read_until(b'\n', &mut line).await, Ok(n) if n > 0) {
            let text = String::from_utf8_lossy(&line);
            append(&into, prefix, text.trim_end_matches(['\r', '\n']));
            line.clear();
        }
    });
}

/// Adds one line to a peer's output, dropping the oldest text beyond [`OUTPUT_LIMIT`].
fn append(output: &Mutex<String>, prefix: &str, line: &str) {
    let mut output = output.lock().expect("output lock");
    output.push_str(prefix);
    output.push_str(line);
    output.push('\n');
    if output.len() > OUTPUT_LIMIT {
        let mut cut = output.len() - OUTPUT_LIMIT;
        while !output.is_char_boundary(cut) {
            cut += 1;
        }
        output.drain(..cut);
    }
}
