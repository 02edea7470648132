//! Test support: finding the test server, and a fresh, migrated, empty database per case.

use std::io::Write;
use std::sync::{Arc, Mutex, Once};

use sqlx::{Connection, PgConnection};
use switchboard_store::Store;
use switchboard_store_postgres::PostgresStore;

/// The variable naming the server the tests run against.
pub const URL_VAR: &str = "SWITCHBOARD_TEST_POSTGRES_URL";

/// The test server, as one test sees it: tests run in parallel, so each keeps its own list of
/// the databases it created and drops only those.
#[derive(Clone)]
pub struct Server {
    url: url::Url,
    created: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// The server named by [`URL_VAR`], or `None` (after saying how to provide one) when it is
    /// unset outside CI. In CI a missing server is a failure, so the PostgreSQL backend can
    /// never go untested there by accident.
    pub fn from_env() -> Option<Server> {
        let Some(raw) = std::env::var_os(URL_VAR) else {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "{URL_VAR} is not set, and CI must run the PostgreSQL tests; start a server \
                     with scripts/postgres-test-cluster DIR and export the URL it prints"
                );
            }
            // Every test asks; the notice is worth reading once. It is written to the process's
            // stderr directly, past the test harness's capture, so a passing run shows it too.
            static NOTICE: Once = Once::new();
            NOTICE.call_once(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "skipping the PostgreSQL store tests: {URL_VAR} is not set. To run them:\n  \
                 export {URL_VAR}=\"$(scripts/postgres-test-cluster /tmp/sb-pg)\"\n  \
                 cargo test -p switchboard-store-postgres\n  \
                 scripts/postgres-test-cluster stop /tmp/sb-pg"
                );
            });
            return None;
        };
        let raw = raw
            .to_str()
            .expect("the test server url is not valid unicode");
        let url = url::Url::parse(raw).expect("the test server url does not parse");
        Some(Server {
            url,
            created: Arc::default(),
        })
    }

    async fn admin(&self) -> PgConnection {
        PgConnection::connect(self.url.as_str())
            .await
            .expect("cannot connect to the test server")
    }

    /// The URL of database `name` on the server.
    pub fn database_url(&self, name: &str) -> String {
        let mut url = self.url.clone();
        url.set_path(name);
        url.to_string()
    }

    /// Creates an empty database with a random name and returns its name.
    ///
    /// Where the server can (PostgreSQL 15+ built with ICU), the database gets a linguistic
    /// collation (`en-US`), as a production database often has: the suite's byte-order checks
    /// then prove that the store orders text explicitly rather than by the server's default.
    pub async fn create_database(&self) -> String {
        let name = format!("sb_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = self.admin().await;
        // A database name cannot be a bind parameter; this one is made of hex digits only.
        let linguistic = sqlx::query(&format!(
            "CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' \
             LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"
        ))
        .execute(&mut admin)
        .await;
        if linguistic.is_err() {
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut admin)
                .await
                .expect("cannot create a test database");
        }
        let _ = admin.close().await;
        self.created
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(name.clone());
        name
    }

    /// A store on a fresh database, migrated and empty: what the shared suite asks for.
    pub async fn fresh_store(&self) -> PostgresStore {
        let name = self.create_database().await;
        let store = PostgresStore::open(&self.database_url(&name))
            .await
            .expect("cannot open the test database");
        store.migrate().await.expect("migrations fail");
        store
    }

    /// Drops the databases this test created. Best effort: a leftover database on a throwaway
    /// server does no harm.
    pub async fn cleanup(&self) {
        let names: Vec<String> =
            std::mem::take(&mut *self.created.lock().unwrap_or_else(|e| e.into_inner()));
        let mut admin = self.admin().await;
        for name in names {
            // WITH (FORCE) (PostgreSQL 13+) ends connections that pools dropped by the suite
            // have not finished closing yet.
            let dropped = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin)
                .await;
            if dropped.is_err() {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
                    .execute(&mut admin)
                    .await;
            }
        }
        let _ = admin.close().await;
    }
}
