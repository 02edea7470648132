//! `@modelcontextprotocol/server-everything`, the reference server with every MCP feature.

use tokio::process::Command;

use crate::peers::Peers;
use crate::process::{PeerProcess, spawn_on_free_port};

/// Which transport server-everything serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Session-based streamable HTTP (protocol 2025-11-25) at `/mcp`.
    StreamableHttp,
    /// The old HTTP+SSE transport (2024-11-05): `GET /sse`, then POSTs to `/message`.
    Sse,
}

/// A running server-everything on loopback; dropping it stops the server.
///
/// Its tools include `echo`, `get-sum`, `trigger-long-running-operation` (progress),
/// `toggle-simulated-logging`, and triggers for sampling and elicitation; it also has
/// resources, resource templates, prompts and completions.
#[derive(Debug)]
pub struct Everything {
    process: PeerProcess,
    url: String,
}

impl Everything {
    /// Starts server-everything in `mode`.
    ///
    /// # Panics
    ///
    /// When the peers are not installed (the message names `bash scripts/peers`) or the server
    /// does not start (the message carries its output).
    pub async fn start(mode: Mode) -> Everything {
        match Everything::try_start(mode).await {
            Ok(server) => server,
            Err(error) => panic!("server-everything did not start: {error:#}"),
        }
    }

    /// Like [`Everything::start`], but returns start failures as errors.
    pub async fn try_start(mode: Mode) -> anyhow::Result<Everything> {
        let peers = Peers::locate();
        let node = peers.node();
        let script = peers.everything_script();
        let preload = peers.loopback_preload();
        let argument = match mode {
            Mode::StreamableHttp => "streamableHttp",
            Mode::Sse => "sse",
        };
        let process = spawn_on_free_port("server-everything", |port| {
            let mut command = Command::new(&node);
            command
                .arg(&script)
                .arg(argument)
                .env("PORT", port.to_string())
                // server-everything listens on every interface by itself; the preload keeps
                // it on 127.0.0.1.
                .env("NODE_OPTIONS", format!("--require {}", preload.display()))
                .current_dir(peers.workspace_root());
            command
        })
        .await?;
        let path = match mode {
            Mode::StreamableHttp => "/mcp",
            Mode::Sse => "/sse",
        };
        let url = format!("http://127.0.0.1:{}{path}", process.port());
        Ok(Everything { process, url })
    }

    /// The MCP URL: `http://127.0.0.1:PORT/mcp`, or `/sse` in [`Mode::Sse`].
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.process.port()
    }

    /// What the server wrote so far, for failure messages.
    pub fn output(&self) -> String {
        self.process.output()
    }
}
