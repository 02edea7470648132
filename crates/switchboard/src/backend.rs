//! Picks the store backend from the database URL. This is the one place that knows both
//! backends exist; everything after it sees only `dyn Store`.

use std::sync::Arc;

use anyhow::{Context, Result};
use switchboard_service::Store;
use switchboard_store_postgres::PostgresStore;
use switchboard_store_sqlite::SqliteStore;

use crate::keys::create_private_dir;
use crate::secret::{Backend, DatabaseUrl};

/// Opens the database `url` names, without migrating it. For SQLite the file's directory is
/// created first (mode 0700), so the default `./data/switchboard.db` works on a fresh machine.
pub async fn open(url: &DatabaseUrl) -> Result<Arc<dyn Store>> {
    let store: Arc<dyn Store> = match url.backend() {
        Backend::Sqlite => {
            if let Some(dir) = url.sqlite_path().as_deref().and_then(|p| p.parent())
                && !dir.as_os_str().is_empty()
                && !dir.exists()
            {
                create_private_dir(dir)?;
            }
            Arc::new(
                SqliteStore::open(url.expose())
                    .await
                    .with_context(|| format!("cannot open the SQLite database {url}"))?,
            )
        }
        Backend::Postgres => Arc::new(
            PostgresStore::open(url.expose())
                .await
                .with_context(|| format!("cannot connect to the PostgreSQL database {url}"))?,
        ),
    };
    Ok(store)
}

/// Opens the database and applies pending migrations.
pub async fn open_migrated(url: &DatabaseUrl) -> Result<Arc<dyn Store>> {
    let store = open(url).await?;
    store
        .migrate()
        .await
        .with_context(|| format!("cannot migrate the database {url}"))?;
    Ok(store)
}
