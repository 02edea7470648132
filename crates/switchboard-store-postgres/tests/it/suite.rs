//! The shared behaviour suite every backend must pass, run against PostgreSQL.

use std::sync::Arc;

use switchboard_store::testsuite::run_all;
use switchboard_store_postgres::PostgresStore;

use crate::harness::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_store_suite() {
    let Some(server) = Server::from_env() else {
        return;
    };
    let opener = server.clone();
    run_all(
        move || {
            let server = opener.clone();
            async move { Arc::new(server.fresh_store().await) }
        },
        |store: Arc<PostgresStore>| async move {
            store.table_layout().await.expect("table layout")
        },
    )
    .await;
    server.cleanup().await;
}
