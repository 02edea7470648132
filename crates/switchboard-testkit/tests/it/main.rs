//! Self-tests of switchboard-testkit: every launcher starts its peer, and the peer answers an
//! MCP `initialize` sent as a plain JSON-RPC POST.

mod everything;
mod misbehaving;
mod python;
mod rmcp;
mod wire;
