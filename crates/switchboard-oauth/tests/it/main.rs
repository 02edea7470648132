//! Integration tests of switchboard-oauth: detection, discovery, the code flow, refresh and
//! revocation against servers on loopback, and the refusals that protect a grant. The
//! well-behaved flows are also run against the MCP conformance suite's mock authorization
//! server by `scripts/conformance`.

mod detection;
mod flow;
mod hostile;
mod support;
