//! Integration tests: the real client against real servers on loopback.
//!
//! Only loopback addresses are ever contacted here. Addresses outside loopback are tested in
//! the crate's unit tests, whose clients carry a tripwire under the guard.

mod limits;
mod literals;
mod mcp_transport;
mod names;
mod redirects;
mod support;
