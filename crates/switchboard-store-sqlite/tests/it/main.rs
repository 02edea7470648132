//! Integration tests of the SQLite backend: the shared store suite on temporary database
//! files, and the SQLite-specific settings every connection must run with.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use switchboard_store::Store;
use switchboard_store_sqlite::SqliteStore;
use tempfile::TempDir;

/// Opens a fresh, migrated database file inside `dir`, a new file each call.
async fn open_file(dir: &std::path::Path, n: usize) -> SqliteStore {
    let path = dir.join(format!("store-{n}.db"));
    let store = SqliteStore::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shared_store_suite() {
    let dir = Arc::new(TempDir::new().unwrap());
    let counter = Arc::new(AtomicUsize::new(0));
    let open = {
        let dir = dir.clone();
        move || {
            let dir = dir.clone();
            let n = counter.fetch_add(1, Ordering::Relaxed);
            async move { Arc::new(open_file(dir.path(), n).await) }
        }
    };
    switchboard_store::testsuite::run_all(open, |store: Arc<SqliteStore>| async move {
        store.table_layout().await.unwrap()
    })
    .await;
}

#[tokio::test]
async fn file_connections_use_wal_and_enforce_foreign_keys() {
    let dir = TempDir::new().unwrap();
    let store = open_file(dir.path(), 0).await;
    let settings = store.connection_settings().await.unwrap();
    assert_eq!(settings.journal_mode, "wal");
    assert!(settings.foreign_keys);
    assert_eq!(settings.busy_timeout_ms, 5000);
    assert_eq!(settings.synchronous, 1, "NORMAL");
}

#[tokio::test]
async fn a_plain_path_creates_the_file() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("plain.db");
    assert!(!path.exists());
    let store = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    store.migrate().await.unwrap();
    assert!(path.exists());
    assert_eq!(store.backend(), "sqlite");
    store.set_instance_setting("k", Some("v")).await.unwrap();
    store.close().await;

    // The data is in the file: a second open sees it, and migrating again is a no-op.
    let again = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    again.migrate().await.unwrap();
    assert_eq!(
        again.instance_setting("k").await.unwrap().as_deref(),
        Some("v")
    );
}

#[tokio::test]
async fn memory_databases_are_private_and_keep_their_data() {
    let one = SqliteStore::open_in_memory().await.unwrap();
    let two = SqliteStore::open_in_memory().await.unwrap();
    one.set_instance_setting("k", Some("one")).await.unwrap();
    assert_eq!(two.instance_setting("k").await.unwrap(), None);
    assert_eq!(
        one.instance_setting("k").await.unwrap().as_deref(),
        Some("one")
    );
    // Kept in a temporary file, so that the chat's writer shares it: set up as any file.
    let settings = one.connection_settings().await.unwrap();
    assert!(settings.foreign_keys);
    assert_eq!(settings.journal_mode, "wal");
}

#[tokio::test]
async fn an_unusable_location_is_reported() {
    let dir = TempDir::new().unwrap();
    let missing_parent = dir.path().join("no/such/dir/x.db");
    let err = SqliteStore::open(missing_parent.to_str().unwrap())
        .await
        .unwrap_err();
    assert!(!err.to_string().is_empty());
}
