//! Integration tests of the `switchboard` binary: each runs the built program as an operator
//! or a script would, in a scratch directory, against a real server on a loopback port and
//! real databases (SQLite always, PostgreSQL when `SWITCHBOARD_TEST_POSTGRES_URL` is set).

mod architecture;
mod cli;
mod config;
mod db;
mod keys;
mod support;
