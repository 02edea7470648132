//! The one SSRF-aware HTTP client for every request to a user-supplied URL.
//!
//! Connector URLs, OAuth metadata and token endpoints are typed in by users, so a request to
//! one must not become a way to reach the installation's own network: its loopback services,
//! the private ranges behind it, or the cloud metadata endpoint at `169.254.169.254`.
//! [`SafeClient`] refuses every address that is not ordinary public unicast
//! ([`classify`] names the class), unless the operator's allowlist ([`Destinations`]) opens
//! it.
//!
//! The checks are inside the [`reqwest::Client`] itself, so they hold for code that is only
//! handed the client (rmcp's streamable-HTTP transport):
//!
//! - a resolver that passes on only allowed addresses, so the address checked is the address
//!   connected to and a second DNS answer cannot redirect the connection;
//! - a connector layer that refuses IP literals (which reqwest never resolves) before a socket
//!   is opened, for every connection including those made after a redirect, and checks the
//!   peer address of every connection once made;
//! - a redirect policy that checks every hop;
//! - connect, total and idle timeouts, no proxies from the environment.
//!
//! Every spelling of an IPv4 address (decimal `2130706433`, octal `0177.0.0.1`, hex
//! `0x7f000001`, short `127.1`) is turned into dotted-quad by the URL parser (WHATWG URL
//! standard, IPv4 parser) before reqwest sees it, and IPv6 forms that embed an IPv4 address are
//! judged by that address.
//!
//! **API boundary:** knows HTTP as a client only; knows nothing of MCP, OAuth or the store.
//! Callers that need a different rule (an OAuth server the operator runs on a private
//! address) express it in [`Destinations`], never by bypassing this crate.

mod classify;
mod client;
mod destinations;
mod error;
mod guard;

pub use classify::{Blocked, classify};
pub use client::{ClientOptions, Redirects, SafeClient, read_limited};
pub use destinations::{Destinations, IpBlock};
pub use error::NetError;
