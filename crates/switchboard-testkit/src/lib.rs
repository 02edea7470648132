//! Test support for Switchboard: starts real MCP peers, and deliberately broken ones, on
//! loopback so that integration tests talk to real servers rather than mocks.
//!
//! Every launcher picks a free loopback port, starts the peer, waits (a bounded number of
//! probes) until it accepts connections, and stops it when the returned handle is dropped.
//!
//! - [`Everything`]: `@modelcontextprotocol/server-everything` (Node), streamable HTTP or
//!   HTTP+SSE.
//! - [`PythonServer`]: the Python SDK servers in `tests/peers/python` ([`BASIC_SERVER`],
//!   [`MUTABLE_SERVER`]).
//! - [`RmcpServer`]: an in-process rmcp 3.9 server, with sessions or stateless.
//! - [`Misbehaving`]: an in-process server that breaks the protocol in one chosen way.
//!
//! The external peers are installed by `bash scripts/peers` into `.peers/` at the workspace
//! root; a launcher whose peer is missing panics with that command.

mod everything;
mod misbehaving;
mod peers;
mod process;
mod python;
mod rmcp_server;

pub use everything::{Everything, Mode};
pub use misbehaving::{Behaviour, Misbehaving, MisbehavingStats, TOOL_NAME};
pub use peers::{INSTALL_COMMAND, Peers, PythonCommand};
pub use process::free_port;
pub use python::{BASIC_SERVER, MUTABLE_SERVER, PyTransport, PythonServer};
pub use rmcp_server::{RmcpMode, RmcpOptions, RmcpServer, RmcpStats};
