//! Integration tests of switchboard-llm over real HTTP on loopback: the exact request bodies
//! each provider is sent (snapshots), recorded streams in each provider's wire format parsed
//! into events, the mapping of failures to errors, and whole exchanges with the testkit's
//! provider double.

mod double;
mod errors;
mod fixtures;
mod requests;
mod support;
