//! MCP servers written with the Python SDK (`mcp` 2.3), kept in `tests/peers/python`.

use tokio::process::Command;

use crate::peers::Peers;
use crate::process::{PeerProcess, spawn_on_free_port};

/// `tests/peers/python/basic_server.py`: tools `add`, `echo`, `weather` (structured output) and
/// `slow` (progress), the resource `note://hello`, the template `greeting://{name}`, the prompt
/// `summarize(text, style)` and completions for `style`.
pub const BASIC_SERVER: &str = "basic_server.py";

/// `tests/peers/python/mutable_server.py`: the tool `lookup`, whose description changes at run
/// time (see [`PythonServer::set_description`]), followed by `notifications/tools/list_changed`.
pub const MUTABLE_SERVER: &str = "mutable_server.py";

/// Which transport a Python server serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PyTransport {
    /// Streamable HTTP at `/mcp`; speaks both the session-based (2025-11-25) and the stateless
    /// (2026-07-28) protocol.
    StreamableHttp,
    /// The old HTTP+SSE transport (2024-11-05): `GET /sse`, then POSTs to `/messages/`.
    Sse,
}

/// A running Python MCP server on loopback; dropping it stops the server.
#[derive(Debug)]
pub struct PythonServer {
    process: PeerProcess,
    url: String,
}

impl PythonServer {
    /// Starts `script`, a file in `tests/peers/python` such as [`BASIC_SERVER`].
    ///
    /// # Panics
    ///
    /// When the peers are not installed (the message names `bash scripts/peers`), the script
    /// does not exist, or the server does not start (the message carries its output).
    pub async fn start(script: &str, transport: PyTransport) -> PythonServer {
        match PythonServer::try_start(script, transport).await {
            Ok(server) => server,
            Err(error) => panic!("{script} did not start: {error:#}"),
        }
    }

    /// Like [`PythonServer::start`], but returns start failures as errors.
    pub async fn try_start(script: &str, transport: PyTransport) -> anyhow::Result<PythonServer> {
        let peers = Peers::locate();
        let path = peers.python_scripts().join(script);
        anyhow::ensure!(
            path.is_file(),
            "no Python peer script at {}",
            path.display()
        );
        let python = peers.python();
        let transport_name = match transport {
            PyTransport::StreamableHttp => "streamable-http",
            PyTransport::Sse => "sse",
        };
        let process = spawn_on_free_port(script, |port| {
            let mut command = Command::new(&python.program);
            command
                .arg(&path)
                .args(["--transport", transport_name, "--port", &port.to_string()])
                .env("PYTHONUNBUFFERED", "1")
                // Keeps __pycache__ out of the source tree.
                .env("PYTHONDONTWRITEBYTECODE", "1")
                .current_dir(peers.python_scripts());
            if let Some(pythonpath) = &python.pythonpath {
                command.env("PYTHONPATH", pythonpath);
            }
            command
        })
        .await?;
        let path = match transport {
            PyTransport::StreamableHttp => "/mcp",
            PyTransport::Sse => "/sse",
        };
        let url = format!("http://127.0.0.1:{}{path}", process.port());
        Ok(PythonServer { process, url })
    }

    /// The MCP URL: `http://127.0.0.1:PORT/mcp`, or `/sse` with [`PyTransport::Sse`].
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `http://127.0.0.1:PORT`, for the server's other routes.
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.process.port())
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.process.port()
    }

    /// What the server wrote so far, for failure messages.
    pub fn output(&self) -> String {
        self.process.output()
    }

    /// For [`MUTABLE_SERVER`]: changes the `lookup` tool's description out of band (the "rug
    /// pull"); the server then sends `notifications/tools/list_changed` to its clients.
    pub async fn set_description(&self, text: &str) -> anyhow::Result<()> {
        let url = format!("{}/control/description", self.origin());
        let response = reqwest::Client::new()
            .post(&url)
            .body(text.to_owned())
            .send()
            .await?
            .error_for_status()?;
        let now = response.text().await?;
        anyhow::ensure!(
            now == text,
            "the description is {now:?} after setting {text:?}"
        );
        Ok(())
    }
}
