//! Integration tests of the `switchboard` binary: each runs the built program as an operator
//! or a script would, in a scratch directory, against a real server on a loopback port, real
//! MCP servers started by the testkit, and real databases (SQLite always, PostgreSQL when
//! `SWITCHBOARD_TEST_POSTGRES_URL` is set).

mod architecture;
mod chat_cli;
mod chat_restart;
mod cli;
mod closed_stdout;
mod config;
mod db;
mod engine_cli;
mod keys;
mod oauth;
mod serve;
mod support;
