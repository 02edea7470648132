//! The command line: every command, argument and help text, as clap derive types. Dispatching
//! happens in `main.rs`; the work happens in the modules named there.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{LogFormat, LogLevel, parse_listen};
use crate::secret::DatabaseUrl;

/// Switchboard: lets an organization's AI assistant use the organization's MCP servers, with
/// per-function permissions and an audit log.
///
/// Operator commands (serve, config, admin, db) work on the server's configuration and
/// database directly. The other commands talk to a running server's API after `switchboard
/// login`.
#[derive(Debug, Parser)]
#[command(
    name = "switchboard",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Check the configuration, or print an example file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Operator tasks that work on the database directly: owners and the master key.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Database maintenance: migrations and copying between databases.
    #[command(subcommand)]
    Db(DbCommand),
    /// Print a shell completion script, for example: switchboard completions bash >
    /// ~/.local/share/bash-completion/completions/switchboard
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Sign in to a server and keep an API token for the other commands.
    Login(LoginArgs),
    /// Revoke the kept API token and forget it.
    Logout(LogoutArgs),
    /// Organizations and their members.
    Org(OrgArgs),
    /// Your account: profile, password and API tokens.
    User(UserArgs),
    /// Connectors (remote MCP servers) and their functions.
    Connector(ConnectorArgs),
    /// Call a connector's function by hand and print its result.
    Call(CallArgs),
    /// Check whether a URL answers as an MCP server, step by step, without registering it
    /// (admins).
    Probe(ProbeArgs),
    /// The organization's audit log.
    Audit(AuditArgs),
    /// Talk with the assistant, which works through the connectors you choose; you approve
    /// the calls your preferences ask about.
    Chat(ChatArgs),
}

/// Where the server's configuration comes from; shared by every operator command.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Configuration file (TOML); see `switchboard config default`.
    #[arg(long, short = 'c', env = "SWITCHBOARD_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Directory for the SQLite database and the generated master key [default: ./data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB. Prefer the
    /// SWITCHBOARD_DATABASE_URL variable for a URL with a password, which a flag would show to
    /// other local users.
    #[arg(long, value_name = "URL", value_parser = parse_database_url)]
    pub database_url: Option<DatabaseUrl>,
    /// File holding the master key ring, made by `switchboard admin generate-key`.
    #[arg(long, value_name = "PATH")]
    pub master_key_file: Option<PathBuf>,
}

/// Settings only the server uses.
#[derive(Debug, Args)]
pub struct ServerFlags {
    /// Address and port to listen on [default: 127.0.0.1:8080]. Port 0 picks a free port; the
    /// address is printed as `listening on http://ADDR`.
    #[arg(long, value_name = "ADDR", value_parser = parse_listen)]
    pub listen: Option<SocketAddr>,
    /// Log format.
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Log level or filter, such as info or info,sqlx=warn (RUST_LOG takes precedence).
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<LogLevel>,
}

fn parse_database_url(s: &str) -> Result<DatabaseUrl, String> {
    DatabaseUrl::parse(s)
}

/// `switchboard serve`.
#[derive(Debug, Args)]
#[command(
    after_help = "On a fresh installation the server prints a one-time setup token; use it \
with POST /api/v1/setup, or create the first owner with `switchboard admin create-owner`. \
SIGTERM or Ctrl-C stops the server after the requests in flight finish."
)]
pub struct ServeArgs {
    /// Configuration.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Server settings.
    #[command(flatten)]
    pub server: ServerFlags,
}

/// `switchboard config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check the merged configuration (defaults, file, environment, flags) without starting,
    /// and print the effective settings. Exits non-zero naming the bad key on an error.
    Check {
        /// Configuration.
        #[command(flatten)]
        config: ConfigArgs,
        /// Server settings.
        #[command(flatten)]
        server: ServerFlags,
    },
    /// Print an example configuration file with every key, its default and what it does.
    Default,
}

/// `switchboard admin ...`.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create an owner and their organization, directly in the database. On a new
    /// installation this is the first owner; later it adds another owner with a new
    /// organization, which recovers access when every owner is locked out.
    CreateOwner(CreateOwnerArgs),
    /// Replace the master key and reseal every stored credential with the new one.
    #[command(long_about = ROTATE_HELP)]
    RotateKey(RotateKeyArgs),
    /// Generate a new master key ring (for security.master_key_file, SWITCHBOARD_MASTER_KEY or
    /// `rotate-key --new-key-file`).
    GenerateKey {
        /// Write the key to this new file with mode 0600 instead of printing it.
        #[arg(long, short, value_name = "PATH")]
        output: Option<PathBuf>,
    },
}

const ROTATE_HELP: &str = "\
Replace the master key and reseal every stored credential with the new one.

Stop every server that uses this database first: a running server keeps the old key in memory, \
cannot open what was resealed, and would seal new secrets with the retired key.

With the key Switchboard generated in the data directory (the default), the rotation runs in \
three steps, each leaving a key file that opens everything in the database:
  1. the key file is replaced (atomically, mode 0600) by a ring holding the new key and the old;
  2. every sealed value is resealed under the new key, in one database transaction;
  3. the key file is replaced by a ring holding only the new key.
If the command is interrupted, run it again.

With a key you supply (security.master_key_file or SWITCHBOARD_MASTER_KEY), Switchboard does not \
write your key. Make a new key with `switchboard admin generate-key --output NEW`, run `rotate-key \
--new-key-file NEW`, then switch your configuration to the new key before starting the server.

Back up the new key: without it the stored credentials cannot be opened.";

/// `switchboard admin create-owner`.
#[derive(Debug, Args)]
pub struct CreateOwnerArgs {
    /// Configuration.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The owner's email, used to sign in.
    #[arg(long)]
    pub email: String,
    /// The owner's display name.
    #[arg(long)]
    pub name: String,
    /// The organization's short name (letters, digits and hyphens).
    #[arg(long, value_name = "SLUG")]
    pub org: String,
    /// The organization's display name [default: the slug].
    #[arg(long, value_name = "NAME")]
    pub org_name: Option<String>,
    /// Read the password from the first line of standard input instead of asking for it.
    #[arg(long)]
    pub password_stdin: bool,
}

/// `switchboard admin rotate-key`.
#[derive(Debug, Args)]
pub struct RotateKeyArgs {
    /// Configuration.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The new key, made by `switchboard admin generate-key --output PATH`. Required when the
    /// current key is supplied by you rather than generated in the data directory.
    #[arg(long, value_name = "PATH")]
    pub new_key_file: Option<PathBuf>,
}

/// `switchboard db ...`.
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Apply pending migrations to the configured database.
    Migrate {
        /// Configuration.
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Copy every row from one database into another, empty one (for example from SQLite to
    /// PostgreSQL), then check that the copy holds exactly what the source holds. Stop the
    /// server first. Sealed credentials are copied as they are: the target needs the same
    /// master key.
    Copy {
        /// The database to read, for example sqlite://./data/switchboard.db.
        #[arg(long, value_name = "URL", value_parser = parse_database_url)]
        from: DatabaseUrl,
        /// The database to write; it is migrated first and must hold no data.
        #[arg(long, value_name = "URL", value_parser = parse_database_url)]
        to: DatabaseUrl,
    },
}

/// How a command that talks to the API prints.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Print JSON (the API's answer) instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// Which organization a command works in.
#[derive(Debug, Args)]
pub struct OrgOption {
    /// The organization's slug [default: your only organization].
    #[arg(long, global = true, env = "SWITCHBOARD_ORG", value_name = "SLUG")]
    pub org: Option<String>,
}

/// `switchboard login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The server's URL, such as `https://switchboard.example.com` (asked for if missing).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// Your email (asked for if missing).
    #[arg(long)]
    pub email: Option<String>,
    /// Read the password from the first line of standard input instead of asking for it.
    #[arg(long)]
    pub password_stdin: bool,
    /// A name for the API token, shown in `switchboard user tokens` (default: `cli@HOSTNAME`).
    #[arg(long, value_name = "NAME")]
    pub token_name: Option<String>,
    /// How many days the token stays valid [default: the server's default].
    #[arg(long, value_name = "DAYS")]
    pub expires_in_days: Option<u32>,
}

/// `switchboard logout`.
#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// Forget the token even if the server cannot be reached to revoke it.
    #[arg(long)]
    pub forget: bool,
}

/// `switchboard org`.
#[derive(Debug, Args)]
pub struct OrgArgs {
    /// Output.
    #[command(flatten)]
    pub output: OutputArgs,
    /// Organization.
    #[command(flatten)]
    pub org: OrgOption,
    /// What to do.
    #[command(subcommand)]
    pub command: OrgCommand,
}

/// A member's role.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    /// Uses connectors and sets their own function preferences.
    Member,
    /// Also manages connectors, members, policies and reads the audit log.
    Admin,
    /// Also manages owners.
    Owner,
}

impl RoleArg {
    /// The API's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Member => "member",
            Self::Admin => "admin",
            Self::Owner => "owner",
        }
    }
}

/// `switchboard org ...`.
#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// List your organizations and your role in each.
    List,
    /// Create an organization, with you as its owner.
    Create {
        /// Short name (letters, digits and hyphens), used with --org.
        slug: String,
        /// Display name [default: the slug].
        #[arg(long)]
        name: Option<String>,
    },
    /// Show an organization.
    Show {
        /// Its slug [default: --org, or your only organization].
        slug: Option<String>,
    },
    /// List the organization's members.
    Members,
    /// Add a member: an existing account by email, or a new account (with --name and
    /// --password).
    AddMember {
        /// Their email.
        email: String,
        /// Their role.
        #[arg(long, value_enum, default_value = "member")]
        role: RoleArg,
        /// Display name for a new account.
        #[arg(long)]
        name: Option<String>,
        /// Create a new account with an initial password, asked for at the terminal or read
        /// from standard input.
        #[arg(long)]
        password: bool,
    },
    /// Change a member's role.
    SetRole {
        /// Their email.
        email: String,
        /// The new role.
        #[arg(value_enum)]
        role: RoleArg,
    },
    /// Remove a member (or yourself, to leave the organization).
    RemoveMember {
        /// Their email.
        email: String,
    },
}

/// `switchboard user`.
#[derive(Debug, Args)]
pub struct UserArgs {
    /// Output.
    #[command(flatten)]
    pub output: OutputArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: UserCommand,
}

/// `switchboard user ...`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Show who you are signed in as and your organizations.
    Me,
    /// Change your password (ends your browser sessions).
    Password {
        /// Read the current and the new password from the first two lines of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List your API tokens.
    Tokens,
    /// Create an API token; its secret is printed once.
    TokenCreate {
        /// A name to recognize it by.
        name: String,
        /// How many days it stays valid [default: the server's default].
        #[arg(long, value_name = "DAYS")]
        expires_in_days: Option<u32>,
    },
    /// Revoke an API token.
    TokenRevoke {
        /// The token's id, prefix or name.
        token: String,
    },
}

/// `switchboard connector`.
#[derive(Debug, Args)]
pub struct ConnectorArgs {
    /// Output.
    #[command(flatten)]
    pub output: OutputArgs,
    /// Organization.
    #[command(flatten)]
    pub org: OrgOption,
    /// What to do.
    #[command(subcommand)]
    pub command: ConnectorCommand,
}

/// A static credential to give a connector. Secrets are never taken as arguments: they are
/// asked for at the terminal, or read from standard input when it is not a terminal.
#[derive(Debug, Args)]
pub struct CredentialArgs {
    /// Authenticate with a bearer token (asked for, or read from standard input).
    #[arg(long, conflicts_with_all = ["basic", "header", "headers_stdin"])]
    pub bearer: bool,
    /// Authenticate with HTTP Basic as USER (the password is asked for, or read from standard
    /// input).
    #[arg(long, value_name = "USER", conflicts_with_all = ["header", "headers_stdin"])]
    pub basic: Option<String>,
    /// Send a header with every request, as 'Name: value' (repeatable). Other local users can
    /// see arguments; for secret values use --headers-stdin.
    #[arg(long, value_name = "NAME: VALUE")]
    pub header: Vec<String>,
    /// Read 'Name: value' header lines from standard input.
    #[arg(long)]
    pub headers_stdin: bool,
}

/// How Switchboard authenticates to a connector's server.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AuthArg {
    /// No credentials.
    None,
    /// A bearer token.
    Bearer,
    /// HTTP Basic.
    Basic,
    /// Custom headers, such as an API key header.
    Headers,
    /// OAuth 2.1.
    Oauth,
}

impl AuthArg {
    /// The API's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthArg::None => "none",
            AuthArg::Bearer => "bearer",
            AuthArg::Basic => "basic",
            AuthArg::Headers => "headers",
            AuthArg::Oauth => "oauth",
        }
    }
}

/// A function's floor, set by an admin.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FloorArg {
    /// Members may let the assistant call it freely.
    Allowed,
    /// Every call needs the member's approval.
    Ask,
    /// Never offered to the assistant.
    Blocked,
}

/// A member's own preference for a function.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PreferenceArg {
    /// Call it without asking (if the floor allows).
    Always,
    /// Ask every time.
    Ask,
    /// Never call it.
    Never,
    /// Remove your preference and follow the floor.
    Clear,
}

/// `switchboard connector ...`.
#[derive(Debug, Subcommand)]
pub enum ConnectorCommand {
    /// List the organization's connectors.
    List,
    /// Register a connector.
    Add {
        /// Its name: ASCII letters and digits, unique in the organization.
        name: String,
        /// The MCP server's URL (https).
        url: String,
        /// What it is for.
        #[arg(long)]
        description: Option<String>,
        /// Every member brings their own credential (or connects their own account) instead of
        /// one shared by the organization.
        #[arg(long)]
        per_member: bool,
        /// The auth method, instead of the detected one.
        #[arg(long, value_enum)]
        auth: Option<AuthArg>,
        /// Credential.
        #[command(flatten)]
        credential: CredentialArgs,
    },
    /// Show a connector.
    Show {
        /// Its name.
        connector: String,
    },
    /// Change a connector.
    Edit {
        /// Its name.
        connector: String,
        /// A new name.
        #[arg(long)]
        name: Option<String>,
        /// A new URL (the connector is then validated again).
        #[arg(long)]
        url: Option<String>,
        /// A new description.
        #[arg(long, conflicts_with = "clear_description")]
        description: Option<String>,
        /// Remove the description.
        #[arg(long)]
        clear_description: bool,
        /// Remove the stored credential.
        #[arg(long, conflicts_with_all = ["bearer", "basic", "header", "headers_stdin"])]
        remove_credential: bool,
        /// A new credential.
        #[command(flatten)]
        credential: CredentialArgs,
        /// The auth method to use from now on, instead of the detected one.
        #[arg(long, value_enum)]
        auth: Option<AuthArg>,
        /// From now on every member brings their own credential (or connects their own
        /// account).
        #[arg(long, conflicts_with = "shared")]
        per_member: bool,
        /// From now on the organization shares one credential (or one OAuth grant).
        #[arg(long)]
        shared: bool,
    },
    /// Delete a connector with its functions, policies and credentials.
    Rm {
        /// Its name.
        connector: String,
        /// Do not ask for confirmation (required when not at a terminal).
        #[arg(long, short)]
        yes: bool,
    },
    /// Enable a connector (it is validated again).
    Enable {
        /// Its name.
        connector: String,
    },
    /// Disable a connector: its functions are no longer offered.
    Disable {
        /// Its name.
        connector: String,
    },
    /// List a connector's functions with their policies and what a call would get now.
    Functions {
        /// Its name.
        connector: String,
    },
    /// Set the organization's floor for a function (admins).
    Floor {
        /// The connector's name.
        connector: String,
        /// The function's name.
        function: String,
        /// The floor.
        #[arg(value_enum)]
        floor: FloorArg,
    },
    /// Set your own preference for a function.
    Prefer {
        /// The connector's name.
        connector: String,
        /// The function's name.
        function: String,
        /// The preference.
        #[arg(value_enum)]
        preference: PreferenceArg,
    },
    /// Connect an OAuth connector: prints the link to open in a browser (or opens it with
    /// --open), then waits until the authorization completes. On a connector every member
    /// connects for themselves this connects your own account; otherwise (admins) the
    /// organization's.
    #[command(
        after_help = "With --loopback (implied by --open) the command listens on a \
loopback port (127.0.0.1, chosen by the system) and the server sends the browser there once the \
authorization completes, so the command learns the outcome at once and the browser shows it. \
Use it when the browser runs on this machine; without it the command asks the server every \
second, which works wherever the link is opened. With --json the server's answer to the start \
is printed as one line, and the authorization's state as another once it completes."
    )]
    Connect {
        /// Its name.
        connector: String,
        /// Open the link in the default browser (implies --loopback).
        #[arg(long)]
        open: bool,
        /// Wait for the browser on a loopback port of this machine instead of only asking the
        /// server.
        #[arg(long)]
        loopback: bool,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 900)]
        timeout: u64,
    },
    /// Disconnect an OAuth connector: revoke its tokens at the authorization server and
    /// delete them.
    Disconnect {
        /// Its name.
        connector: String,
    },
    /// Set your own credential on a connector where every member brings their own.
    MyCredential {
        /// Its name.
        connector: String,
        /// Remove your credential.
        #[arg(long, conflicts_with_all = ["bearer", "basic", "header", "headers_stdin"])]
        remove: bool,
        /// The credential.
        #[command(flatten)]
        credential: CredentialArgs,
    },
    /// Connect to the connector's server, step by step, and record what it offers (admins).
    /// Exits non-zero when a step fails.
    Test {
        /// Its name.
        connector: String,
    },
    /// Ask the connector's server for its functions again and hold any that changed for
    /// review (admins).
    Refresh {
        /// Its name.
        connector: String,
    },
    /// Show how a function's definition differs from the approved one.
    Diff {
        /// The connector's name.
        connector: String,
        /// The function's name.
        function: String,
    },
    /// Approve a function's current definition (admins). Without --hash the changes are shown
    /// first and confirmed.
    Approve {
        /// The connector's name.
        connector: String,
        /// The function's name.
        function: String,
        /// The definition hash you reviewed, as `connector diff` prints it; the approval fails
        /// if the definition has changed since.
        #[arg(long, value_name = "HASH")]
        hash: Option<String>,
        /// Do not ask for confirmation (required without --hash when not at a terminal).
        #[arg(long, short)]
        yes: bool,
    },
    /// List the resources and resource templates the connector's server offers.
    Resources {
        /// Its name.
        connector: String,
    },
    /// Read one of the connector's resources.
    Read {
        /// The connector's name.
        connector: String,
        /// The resource's URI, such as note://hello.
        uri: String,
    },
    /// List the prompt templates the connector's server offers.
    Prompts {
        /// Its name.
        connector: String,
    },
    /// Fill in one of the connector's prompt templates and print its messages.
    Prompt {
        /// The connector's name.
        connector: String,
        /// The prompt's name.
        prompt: String,
        /// An argument, as KEY=VALUE (repeatable).
        #[arg(long = "arg", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        args: Vec<(String, String)>,
    },
}

/// Splits `KEY=VALUE`; the value may itself contain `=`.
fn parse_key_value(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        Some(_) => Err(format!("expected KEY=VALUE, found {raw:?} with no key")),
        None => Err(format!("expected KEY=VALUE, found {raw:?}")),
    }
}

/// `switchboard call`.
#[derive(Debug, Args)]
#[command(
    after_help = "Progress reported by the server is printed to standard error as it \
arrives. Text content is printed as it is, other content is summarized, structured content is \
printed as JSON. A result the function marks as an error goes to standard error and the \
command exits with 1. Ctrl-C abandons the call, and the server is told to cancel it."
)]
pub struct CallArgs {
    /// Output.
    #[command(flatten)]
    pub output: OutputArgs,
    /// Organization.
    #[command(flatten)]
    pub org: OrgOption,
    /// The connector's name.
    pub connector: String,
    /// The function's name.
    pub function: String,
    /// The arguments as a JSON object, or `-` to read them from standard input [default: {}].
    #[arg(long, value_name = "JSON", conflicts_with = "args_file")]
    pub args: Option<String>,
    /// Read the arguments (a JSON object) from this file.
    #[arg(long, value_name = "PATH")]
    pub args_file: Option<PathBuf>,
}

/// `switchboard probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Output.
    #[command(flatten)]
    pub output: OutputArgs,
    /// Organization (the probe runs with its outbound rules).
    #[command(flatten)]
    pub org: OrgOption,
    /// The URL to probe.
    pub url: String,
    /// Credential.
    #[command(flatten)]
    pub credential: CredentialArgs,
}

/// `switchboard chat`.
#[derive(Debug, Args)]
#[command(
    after_help = "Type a message and press Enter; the answer streams as it is written, \
with a line for each function the assistant calls and its result. When a call needs your \
approval, the connector, function, arguments and the reason are shown and you answer y (allow \
once), a (always allow: also sets your preference) or n (deny). When a connector's server asks \
a question, its fields are asked one by one, or you decline. Ctrl-C during an answer cancels \
it; /quit, Ctrl-D or Ctrl-C at the prompt leaves (the conversation is kept: continue it with \
--conversation ID)."
)]
pub struct ChatArgs {
    /// Organization.
    #[command(flatten)]
    pub org: OrgOption,
    /// Continue this conversation (its id, as printed when it was started) instead of
    /// starting a new one.
    #[arg(long, value_name = "ID", conflicts_with_all = ["connectors", "title"])]
    pub conversation: Option<String>,
    /// A connector whose functions the assistant may use in the new conversation, by name
    /// (repeatable).
    #[arg(long = "connector", value_name = "NAME")]
    pub connectors: Vec<String>,
    /// The new conversation's title [default: the server's].
    #[arg(long, value_name = "TITLE")]
    pub title: Option<String>,
}

/// `switchboard audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Output.
    #[command(flatten)]
    pub output: OutputArgs,
    /// Organization.
    #[command(flatten)]
    pub org: OrgOption,
    /// What to do.
    #[command(subcommand)]
    pub command: AuditCommand,
}

/// Which events to list or export.
#[derive(Debug, Args)]
pub struct AuditFilterArgs {
    /// Only this action, such as connector_created.
    #[arg(long)]
    pub action: Option<String>,
    /// Only events by this member (email or user id).
    #[arg(long, value_name = "MEMBER")]
    pub actor: Option<String>,
    /// Only events at or after this time: RFC 3339, or an age such as 30m, 24h or 7d.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only events before this time: RFC 3339, or an age such as 30m, 24h or 7d.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
}

/// `switchboard audit ...`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List events, newest first, one page at a time.
    List {
        /// Filter.
        #[command(flatten)]
        filter: AuditFilterArgs,
        /// Events per page (1 to 200).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Continue from a previous page (the cursor printed under it).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Export every matching event as JSON lines (one event a line).
    Export {
        /// Filter.
        #[command(flatten)]
        filter: AuditFilterArgs,
        /// Write to this file instead of standard output.
        #[arg(long, short, value_name = "PATH")]
        output: Option<PathBuf>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn prompt_arguments_are_key_value_pairs() {
        assert_eq!(
            parse_key_value("style=brief=ish").unwrap(),
            ("style".into(), "brief=ish".into())
        );
        assert_eq!(
            parse_key_value("text=").unwrap(),
            ("text".into(), "".into())
        );
        assert!(parse_key_value("=x").is_err());
        assert!(parse_key_value("novalue").is_err());
    }

    #[test]
    fn chat_continues_a_conversation_or_starts_one() {
        let parsed = Cli::try_parse_from([
            "switchboard",
            "chat",
            "--connector",
            "Tools",
            "--connector",
            "Notes",
            "--title",
            "Sums",
        ])
        .unwrap();
        let Command::Chat(args) = parsed.command else {
            panic!("not chat")
        };
        assert_eq!(args.connectors, ["Tools", "Notes"]);
        assert_eq!(args.title.as_deref(), Some("Sums"));
        // The connectors of a conversation that exists were chosen when it was started.
        assert!(
            Cli::try_parse_from([
                "switchboard",
                "chat",
                "--conversation",
                "x",
                "--connector",
                "Tools"
            ])
            .is_err()
        );
    }

    #[test]
    fn call_arguments_come_from_one_place() {
        let parsed = Cli::try_parse_from([
            "switchboard",
            "call",
            "Tools",
            "add",
            "--args",
            "{}",
            "--args-file",
            "a.json",
        ]);
        assert!(parsed.is_err());
    }
}
