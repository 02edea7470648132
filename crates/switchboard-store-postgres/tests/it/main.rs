//! Integration tests of the PostgreSQL store against a real server: the shared behaviour suite
//! and the things only PostgreSQL can show (races between connections, type mapping).
//!
//! The server comes from `SWITCHBOARD_TEST_POSTGRES_URL`; each test case gets a database of
//! its own, created on that server and dropped at the end. Start a throwaway server with
//!
//! ```text
//! export SWITCHBOARD_TEST_POSTGRES_URL="$(scripts/postgres-test-cluster /tmp/sb-pg)"
//! cargo test -p switchboard-store-postgres
//! scripts/postgres-test-cluster stop /tmp/sb-pg
//! ```

mod fixtures;
mod harness;
mod postgres;
mod suite;
