//! Test support for Switchboard: starts real MCP peers, and deliberately broken ones, on
//! loopback so that integration tests talk to real servers rather than mocks.
//!
//! Every launcher starts its peer on a free loopback port (or lets the peer bind port 0 and
//! announce its address), waits a bounded time until it accepts connections, and stops it when
//! the returned handle is dropped.
//!
//! - [`Everything`]: `@modelcontextprotocol/server-everything` (Node), streamable HTTP or
//!   HTTP+SSE.
//! - [`PythonServer`]: the Python SDK servers in `tests/peers/python` ([`BASIC_SERVER`],
//!   [`MUTABLE_SERVER`]).
//! - [`RmcpServer`]: an in-process rmcp 3.9 server, with sessions or stateless.
//! - [`Misbehaving`]: an in-process server that breaks the protocol in one chosen way.
//! - [`OidcProvider`]: panva's `oidc-provider` (Node), a real OAuth authorization server with
//!   dynamic registration, resource indicators, PKCE, refresh tokens and login and consent pages,
//!   plus test controls (token-request count, token-endpoint outage, revoking every grant).
//! - [`ProtectedMcpServer`]: a Python SDK server that needs an access token from that issuer and
//!   serves the RFC 9728 protected-resource metadata, or (started with static tokens) a plain
//!   bearer-protected server that reports which token called.
//! - [`Browser`]: headless Chromium driven by Playwright through the login and consent pages.
//! - [`LlmDouble`]: an in-process model provider speaking OpenAI's or Mistral's streamed chat
//!   completions, answering as the test scripts it ([`Scripted`]).
//!
//! The external peers are installed by `bash scripts/peers` into `.peers/` at the workspace
//! root; a launcher whose peer is missing panics with that command. Chromium comes from Debian's
//! `chromium` package (`.ci/run` installs it); see [`Browser::find`] for what happens without it.

mod browser;
mod everything;
mod llm;
mod misbehaving;
mod oauth;
mod peers;
mod process;
mod python;
mod rmcp_server;

pub use browser::{Authorization, Browser, CHROMIUM_VAR, DEFAULT_CHROMIUM};
pub use everything::{Everything, Mode};
pub use llm::{LlmDouble, Scripted, call_then_answer, last_message};
pub use misbehaving::{Behaviour, Misbehaving, MisbehavingStats, TOOL_NAME};
pub use oauth::{OidcOptions, OidcProvider, ProtectedMcpServer};
pub use peers::{INSTALL_COMMAND, Peers, PythonCommand};
pub use process::free_port;
pub use python::{BASIC_SERVER, MUTABLE_SERVER, PyTransport, PythonServer};
pub use rmcp_server::{RmcpMode, RmcpOptions, RmcpServer, RmcpStats};
