//! The `switchboard` binary: the server, the operator's maintenance commands and a command-line
//! client for the REST API.
//!
//! Architecture invariant: this is the only crate that reads the environment, files and
//! terminals, and the only one that picks a store backend. Everything it learns from them is
//! handed to the library crates as plain values (`ServiceConfig`, `ServerConfig`, a `KeyRing`,
//! an `Arc<dyn Store>`).

/// `print!` for a command's results, through [`output::write_stdout`]: a reader that went away
/// (`| head`) ends the program quietly instead of with `print!`'s panic. Defined before the
/// modules so that all of them can use it; `clippy.toml` forbids `print!` and `println!` here.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!($($arg)*))
    };
}

/// `println!` for a command's results; see [`out!`].
macro_rules! outln {
    () => {
        $crate::output::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

mod admin;
mod backend;
mod chat;
mod cli;
mod client;
mod config;
mod credentials;
mod db;
mod keys;
mod output;
mod prompt;
mod remote;
mod secret;
mod serve;
mod spinner;
mod sse;

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use clap::{CommandFactory, Parser};

use crate::cli::{AdminCommand, Cli, Command, ConfigArgs, ConfigCommand, DbCommand, ServerFlags};
use crate::config::{Config, Flags};

/// Turns a service error into one line; a conflict names its field as validation errors do.
pub fn service_error(e: switchboard_service::Error) -> anyhow::Error {
    match e {
        switchboard_service::Error::Conflict { field, message } => {
            anyhow::anyhow!("{field}: {message}")
        }
        other => anyhow::Error::new(other),
    }
}

/// Loads the configuration the operator commands use.
fn load_config(args: &ConfigArgs, server: Option<ServerFlags>) -> Result<Config> {
    let server = server.unwrap_or(ServerFlags {
        listen: None,
        log_format: None,
        log_level: None,
    });
    let flags = Flags {
        listen: server.listen,
        data_dir: args.data_dir.clone(),
        database_url: args.database_url.clone(),
        master_key_file: args.master_key_file.clone(),
        log_format: server.log_format,
        log_level: server.log_level,
    };
    Config::load(args.config.as_deref(), flags)
}

/// Shows warnings from the library crates on standard error for the commands that are not the
/// server (which sets up its own logging).
fn init_cli_logging() {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|s| tracing_subscriber::EnvFilter::try_new(s).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .try_init();
}

/// `config check`.
fn check_config(config: ConfigArgs, server: ServerFlags) -> Result<()> {
    let config = load_config(&config, Some(server))?;
    // The key is read too (never written): a malformed SWITCHBOARD_MASTER_KEY or a missing key
    // file would otherwise only show at start.
    let key = match keys::load(&config.master_key)? {
        Some(ring) => format!("key {} from {}", ring.current_id(), config.master_key),
        None => format!(
            "none yet; generated on first start into {}",
            config.data_dir.join(config::KEY_FILE_NAME).display()
        ),
    };
    for var in config::unknown_env_vars(std::env::vars().map(|(k, _)| k)) {
        eprintln!("warning: {var} is not a Switchboard setting and is ignored");
    }
    for warning in config.warnings() {
        eprintln!("warning: {warning}");
    }
    match &config.file {
        Some(file) => outln!(
            "# configuration is valid (file {}, then environment and flags)",
            file.display()
        ),
        None => {
            outln!("# configuration is valid (no file; defaults, then environment and flags)")
        }
    }
    outln!("# master key: {key}\n");
    out!("{}", config.to_toml());
    Ok(())
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(load_config(&args.config, Some(args.server))?).await,
        Command::Config(ConfigCommand::Check { config, server }) => check_config(config, server),
        Command::Config(ConfigCommand::Default) => {
            out!("{}", config::DEFAULT_TOML);
            Ok(())
        }
        Command::Admin(AdminCommand::CreateOwner(args)) => {
            admin::create_owner(&load_config(&args.config, None)?, args).await
        }
        Command::Admin(AdminCommand::RotateKey(args)) => {
            admin::rotate_key(&load_config(&args.config, None)?, args).await
        }
        Command::Admin(AdminCommand::GenerateKey { output }) => {
            admin::generate_key(output.as_deref())
        }
        Command::Db(DbCommand::Migrate { config }) => {
            db::migrate(&load_config(&config, None)?.database_url).await
        }
        Command::Db(DbCommand::Copy { from, to }) => db::copy(&from, &to).await,
        Command::Completions { shell } => {
            // clap_complete panics when its writer fails, so the script is made in memory and
            // written here, where a closed pipe is handled.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "switchboard", &mut script);
            output::Stdout.write_all(&script)?;
            output::Stdout.flush()?;
            Ok(())
        }
        Command::Login(args) => remote::account::login(args).await,
        Command::Logout(args) => remote::account::logout(args).await,
        Command::Org(args) => {
            let api = credentials::signed_in()?;
            remote::orgs::run(
                &api,
                args.output.json,
                args.org.org.as_deref(),
                args.command,
            )
            .await
        }
        Command::User(args) => {
            let api = credentials::signed_in()?;
            remote::account::user(&api, args.output.json, args.command).await
        }
        Command::Connector(args) => {
            let api = credentials::signed_in()?;
            remote::connectors::run(
                &api,
                args.output.json,
                args.org.org.as_deref(),
                args.command,
            )
            .await
        }
        Command::Call(args) => {
            let api = credentials::signed_in()?;
            remote::call::run(&api, args).await
        }
        Command::Probe(args) => {
            let api = credentials::signed_in()?;
            remote::engine::probe(&api, args).await
        }
        Command::Chat(args) => {
            let api = credentials::signed_in()?;
            chat::run(&api, args).await
        }
        Command::Audit(args) => {
            let api = credentials::signed_in()?;
            remote::audit::run(
                &api,
                args.output.json,
                args.org.org.as_deref(),
                args.command,
            )
            .await
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_)) {
        init_cli_logging();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` joins the context chain into one line: "what we tried: why it failed".
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
