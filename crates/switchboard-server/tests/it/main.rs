//! Integration tests of the HTTP API against a real server on loopback over SQLite.

mod api;
mod chat;
mod isolation;
mod leaks;
mod live;
mod openapi;
mod support;
