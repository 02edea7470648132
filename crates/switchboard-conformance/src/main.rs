//! `switchboard-conformance`: the client that the MCP conformance suite
//! (`@modelcontextprotocol/conformance`) runs, built on Switchboard's connector engine so that
//! the suite judges the engine itself, not a separate MCP client.
//!
//! The suite starts a mock server for one scenario, then runs this program with the server's URL
//! as the last argument and the scenario's name in `MCP_CONFORMANCE_SCENARIO`. Two more variables
//! may be set: `MCP_CONFORMANCE_PROTOCOL_VERSION` (the revision whose wire the run speaks) and
//! `MCP_CONFORMANCE_CONTEXT` (a JSON object of data the scenario hands to the client). The
//! program does what a client is expected to do in that scenario and exits 0, or prints why it
//! could not and exits 1. `scripts/conformance` runs every scored client scenario, the
//! authorization ones included.

mod arguments;
mod auth;
mod scenarios;

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use serde_json::Value;
use tracing_subscriber::EnvFilter;
use url::Url;

const USAGE: &str = "\
usage: switchboard-conformance <server-url>

Run by the MCP conformance suite, which appends the mock server's URL and sets:
  MCP_CONFORMANCE_SCENARIO          the scenario to act out (required)
  MCP_CONFORMANCE_PROTOCOL_VERSION  the protocol revision of the run (informational)
  MCP_CONFORMANCE_CONTEXT           scenario data as a JSON object (some scenarios)
Logs go to stderr; RUST_LOG sets their level (default: info).";

/// What the suite asked for: the scenario, the server and the scenario's data.
#[derive(Debug)]
pub(crate) struct Invocation {
    /// The scenario's name, such as `tools_call`.
    pub scenario: String,
    /// The mock server's MCP endpoint.
    pub server: Url,
    /// The revision the run is scored against. It is only logged: the engine negotiates the
    /// protocol generation by itself, as it must for a connector it meets for the first time.
    pub protocol_version: Option<String>,
    /// `MCP_CONFORMANCE_CONTEXT`, or an empty object.
    pub context: Value,
}

impl Invocation {
    /// Reads the command line and the environment.
    fn from_env() -> anyhow::Result<Self> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        if args.iter().any(|a| a == "-h" || a == "--help") {
            println!("{USAGE}");
            std::process::exit(0);
        }
        // The suite appends the URL to whatever command it was given, so it is the last argument.
        let Some(server) = args.last() else {
            bail!("the server URL is missing\n\n{USAGE}");
        };
        let server = Url::parse(server).with_context(|| format!("{server:?} is not a URL"))?;
        let scenario = std::env::var("MCP_CONFORMANCE_SCENARIO")
            .context("MCP_CONFORMANCE_SCENARIO is not set; this program is run by the suite")?;
        let protocol_version = std::env::var("MCP_CONFORMANCE_PROTOCOL_VERSION").ok();
        let context = match std::env::var("MCP_CONFORMANCE_CONTEXT") {
            Ok(raw) => serde_json::from_str(&raw)
                .context("MCP_CONFORMANCE_CONTEXT is not a JSON document")?,
            Err(_) => Value::Object(Default::default()),
        };
        Ok(Self {
            scenario,
            server,
            protocol_version,
            context,
        })
    }
}

fn main() -> ExitCode {
    // The suite keeps the client's stderr next to its checks, so logs go there.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();

    let outcome = Invocation::from_env().and_then(|invocation| {
        tracing::info!(
            scenario = %invocation.scenario,
            server = %invocation.server,
            protocol_version = invocation.protocol_version.as_deref().unwrap_or("(not set)"),
            "starting"
        );
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?
            .block_on(scenarios::run(&invocation))
    });
    match outcome {
        Ok(()) => {
            tracing::info!("scenario finished");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("switchboard-conformance: {e:#}");
            ExitCode::FAILURE
        }
    }
}
