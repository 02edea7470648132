//! Child processes for peers: their own process group, captured output, a bounded wait until
//! they accept connections, and a kill of the whole group on drop.

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
    async fn spawn(name: &str, port: u16, mut command: Command) -> anyhow::Result<Self> {
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
            let mut output = into.lock().expect("output lock");
            output.push_str(prefix);
            output.push_str(String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']));
            output.push('\n');
            line.clear();
            if output.len() > OUTPUT_LIMIT {
                let mut cut = output.len() - OUTPUT_LIMIT;
                while !output.is_char_boundary(cut) {
                    cut += 1;
                }
                output.drain(..cut);
            }
        }
    });
}
