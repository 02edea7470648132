//! Integration tests of switchboard-connect: the engine against real MCP servers on loopback.

mod engine;
mod legacy_sse;
