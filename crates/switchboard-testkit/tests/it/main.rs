//! Self-tests of switchboard-testkit: every launcher starts its peer, and the peer answers an
//! MCP `initialize` sent as a plain JSON-RPC POST; the OAuth peers and the browser complete a
//! whole authorization together.

mod everything;
mod misbehaving;
mod oauth;
mod python;
mod rmcp;
mod wire;
