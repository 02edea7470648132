//! `switchboard serve`: logging, the database, the master key, the application, and the HTTP
//! server until SIGTERM or Ctrl-C.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use switchboard_service::App;
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat, MasterKeySource};
use crate::{backend, keys};

/// How long requests in flight may take to finish after a stop signal. Streams (such as SSE)
/// can stay open indefinitely, and an operator who asked for a stop should get one.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Sets up logging for the server. Log lines go to standard output; the few messages meant for
/// the person at the terminal (the setup token, the listen address) go to standard error, so a
/// JSON log stream stays pure JSON.
fn init_logging(config: &Config) -> Result<()> {
    // RUST_LOG, when set, wins: it is how people ask for a fine-grained filter for one run.
    let filter = match std::env::var("RUST_LOG") {
        Ok(s) if !s.trim().is_empty() => EnvFilter::try_new(&s).context("RUST_LOG")?,
        _ => EnvFilter::try_new(config.log_level.as_str()).context("log.level")?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        // Colours only for a person watching; escape codes would litter a log file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    let installed = match config.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}

/// Completes on SIGTERM or Ctrl-C.
/// Installs the stop signals now and returns a future that completes on the first one.
///
/// The handlers are registered before the future is returned, not when it is first polled:
/// a SIGTERM that arrives between "listening" and the first poll must stop the server
/// gracefully rather than kill it with the default action.
fn stop_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("received Ctrl-C, shutting down"),
            _ = term.recv() => tracing::info!("received SIGTERM, shutting down"),
        }
    })
}

/// Runs the server until it is told to stop.
pub async fn run(config: Config) -> Result<()> {
    init_logging(&config)?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        database = %config.database_url,
        config_file = %config.file.as_deref().map_or("none".into(), |p| p.display().to_string()),
        "starting switchboard"
    );
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let store = backend::open_migrated(&config.database_url).await?;
    let (keys, generated) = keys::load_or_generate(&config.master_key, &*store).await?;
    if let (true, MasterKeySource::DataDir(path)) = (generated, &config.master_key) {
        eprintln!(
            "Generated a new master key in {}. Back it up: without it the stored credentials \
             cannot be opened.",
            path.display()
        );
    }
    tracing::info!(key = keys.current_id(), source = %config.master_key, "master key loaded");
    // Bound before the application is made: the public URL defaults to the address actually
    // listened on, which with port 0 is known only now.
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener
        .local_addr()
        .context("cannot read the listening address")?;
    let app = Arc::new(
        App::new(store, keys, config.service_config(addr))
            .context("cannot start the application")?,
    );
    let _watch = app.watch_list_changes();
    // Drives the assistant's turns, and picks up those another process left behind.
    let _turns = app.watch_turns();

    if let Some(token) = app
        .ensure_setup_token()
        .await
        .context("cannot prepare the setup token")?
    {
        // The token is a secret: it goes to the terminal only, never to the log.
        eprintln!(
            "\nNo owner exists yet. Create the first owner and organization with this one-time \
             setup token:\n\n    {token}\n\nSend it with POST http://{addr}/api/v1/setup, or run \
             `switchboard admin create-owner` on this machine instead. A new token is made at \
             every start until setup is done.\n"
        );
    }
    let stop = stop_signal().context("cannot install the signal handlers")?;
    eprintln!("listening on http://{addr}");
    tracing::info!(%addr, "listening");

    // The server's shutdown future completes on the signal; the same moment starts the clock
    // for the drain timeout.
    let (stopping_tx, mut stopping_rx) = watch::channel(false);
    let shutdown = async move {
        stop.await;
        let _ = stopping_tx.send(true);
    };
    let server = switchboard_server::serve(listener, app.clone(), config.server_config(), shutdown);
    let drain_deadline = async move {
        let _ = stopping_rx.wait_for(|stopping| *stopping).await;
        tokio::time::sleep(DRAIN_TIMEOUT).await;
    };
    tokio::select! {
        served = server => served.context("the HTTP server failed")?,
        () = drain_deadline => {
            tracing::warn!("requests still in flight after {} s; stopping anyway", DRAIN_TIMEOUT.as_secs());
        }
    }
    // Session-based MCP servers are told their sessions end (DELETE) rather than left to
    // time them out.
    app.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}
