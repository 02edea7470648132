//! Whole-database operations: resealing credentials, export and import of a [`Snapshot`], and
//! the table layout the shared test suite compares with [`SCHEMA`].

use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection, SqlitePool};
use switchboard_domain::{ConnectorId, UserId, credential_seal_context};
use switchboard_store::{
    Cell, ColumnType, Resealer, SCHEMA, Snapshot, StoreError, StoreResult, TableDump, TableSpec,
};
use uuid::Uuid;

use crate::error::{DbResultExt, corrupt};
use crate::{accounts, begin_read, begin_write};

pub(crate) async fn reseal_all(pool: &SqlitePool, reseal: Resealer<'_>) -> StoreResult<u64> {
    let mut tx = begin_write(pool).await?;
    let found = sqlx::query(
        "SELECT id, connector_id, user_id, sealed FROM connector_credentials ORDER BY id",
    )
    .fetch_all(&mut *tx)
    .await
    .db()?;
    let mut count = 0;
    for row in &found {
        let id: Uuid = row.try_get("id").db()?;
        let connector: Uuid = row.try_get("connector_id").db()?;
        let holder: Option<Uuid> = row.try_get("user_id").db()?;
        let sealed: String = row.try_get("sealed").db()?;
        let context = credential_seal_context(ConnectorId(connector), holder.map(UserId));
        // One value that cannot be resealed aborts the whole pass: dropping the transaction
        // rolls back, so no credential is left sealed under a key that is about to go away.
        let resealed = reseal(&context, &sealed)
            .map_err(|e| corrupt(&format!("credential {id} could not be resealed"), e))?;
        sqlx::query("UPDATE connector_credentials SET sealed = ? WHERE id = ?")
            .bind(resealed)
            .bind(id)
            .execute(&mut *tx)
            .await
            .db()?;
        count += 1;
    }
    tx.commit().await.db()?;
    Ok(count)
}

fn select_sql(spec: &TableSpec) -> String {
    let columns: Vec<&str> = spec.columns.iter().map(|(name, _)| *name).collect();
    format!(
        "SELECT {} FROM {} ORDER BY {}",
        columns.join(", "),
        spec.name,
        spec.order_by
    )
}

fn insert_sql(spec: &TableSpec) -> String {
    let columns: Vec<&str> = spec.columns.iter().map(|(name, _)| *name).collect();
    let marks = vec!["?"; columns.len()].join(", ");
    format!(
        "INSERT INTO {} ({}) VALUES ({marks})",
        spec.name,
        columns.join(", ")
    )
}

fn decode_cell(row: &SqliteRow, spec: &TableSpec, index: usize) -> StoreResult<Cell> {
    let (column, ty) = spec.columns[index];
    let cell = match ty {
        ColumnType::Uuid => row.try_get::<Option<Uuid>, _>(index).db()?.map(Cell::Uuid),
        ColumnType::Text => row
            .try_get::<Option<String>, _>(index)
            .db()?
            .map(Cell::Text),
        ColumnType::Int => row.try_get::<Option<i64>, _>(index).db()?.map(Cell::Int),
        ColumnType::Json => match row.try_get::<Option<String>, _>(index).db()? {
            Some(text) => {
                Some(Cell::Json(serde_json::from_str(&text).map_err(|e| {
                    corrupt(&format!("{}.{column}", spec.name), e)
                })?))
            }
            None => None,
        },
    };
    Ok(cell.unwrap_or(Cell::Null))
}

pub(crate) async fn export(pool: &SqlitePool) -> StoreResult<Snapshot> {
    // One read transaction: every table comes from the same moment.
    let mut tx = begin_read(pool).await?;
    let mut tables = Vec::with_capacity(SCHEMA.len());
    for spec in SCHEMA {
        let found = sqlx::query(&select_sql(spec))
            .fetch_all(&mut *tx)
            .await
            .db()?;
        let rows = found
            .iter()
            .map(|row| {
                (0..spec.columns.len())
                    .map(|i| decode_cell(row, spec, i))
                    .collect::<StoreResult<Vec<_>>>()
            })
            .collect::<StoreResult<Vec<_>>>()?;
        tables.push(TableDump {
            name: spec.name.to_owned(),
            rows,
        });
    }
    Ok(Snapshot { tables })
}

/// Refuses a snapshot that does not fit [`SCHEMA`], before anything is written.
fn check_snapshot(snapshot: &Snapshot) -> StoreResult<()> {
    let bad = |m: String| StoreError::Corrupt(format!("snapshot: {m}"));
    for (i, table) in snapshot.tables.iter().enumerate() {
        let Some(spec) = SCHEMA.iter().find(|s| s.name == table.name) else {
            return Err(bad(format!("unknown table {:?}", table.name)));
        };
        if snapshot.tables[..i].iter().any(|t| t.name == table.name) {
            return Err(bad(format!("table {} appears twice", table.name)));
        }
        for (r, row) in table.rows.iter().enumerate() {
            if row.len() != spec.columns.len() {
                return Err(bad(format!(
                    "{} row {r} has {} values, expected {}",
                    table.name,
                    row.len(),
                    spec.columns.len()
                )));
            }
            for (cell, (column, ty)) in row.iter().zip(spec.columns) {
                let fits = matches!(
                    (cell, ty),
                    (Cell::Null, _)
                        | (Cell::Uuid(_), ColumnType::Uuid)
                        | (Cell::Text(_), ColumnType::Text)
                        | (Cell::Int(_), ColumnType::Int)
                        | (Cell::Json(_), ColumnType::Json)
                );
                if !fits {
                    return Err(bad(format!(
                        "{}.{column} row {r} holds {cell:?}, expected {ty:?}",
                        table.name
                    )));
                }
            }
        }
    }
    Ok(())
}

async fn insert_rows(
    conn: &mut SqliteConnection,
    spec: &TableSpec,
    rows: &[Vec<Cell>],
) -> StoreResult<()> {
    let sql = insert_sql(spec);
    for row in rows {
        let mut query = sqlx::query(&sql);
        for cell in row {
            query = match cell {
                Cell::Null => query.bind(None::<String>),
                Cell::Uuid(u) => query.bind(*u),
                Cell::Text(t) => query.bind(t.as_str()),
                Cell::Int(i) => query.bind(*i),
                Cell::Json(v) => query.bind(
                    serde_json::to_string(v)
                        .map_err(|e| StoreError::Backend(format!("{}: {e}", spec.name)))?,
                ),
            };
        }
        query.execute(&mut *conn).await.db()?;
    }
    Ok(())
}

pub(crate) async fn import(pool: &SqlitePool, snapshot: &Snapshot) -> StoreResult<()> {
    check_snapshot(snapshot)?;
    let mut tx = begin_write(pool).await?;
    if accounts::user_count(&mut tx).await? > 0 {
        return Err(StoreError::conflict(
            "target",
            "the target database already holds users; import only into an empty database",
        ));
    }
    // A database without users holds nothing worth keeping (at most a setup token or records
    // of refused sign-ins); clearing it makes the result exactly the snapshot. Children go
    // first so foreign keys never point at a deleted parent.
    for spec in SCHEMA.iter().rev() {
        sqlx::query(&format!("DELETE FROM {}", spec.name))
            .execute(&mut *tx)
            .await
            .db()?;
    }
    // Parents come before children in SCHEMA, so foreign keys hold at every insert.
    for spec in SCHEMA {
        if let Some(table) = snapshot.tables.iter().find(|t| t.name == spec.name) {
            insert_rows(&mut tx, spec, &table.rows).await?;
        }
    }
    tx.commit().await.db()
}

pub(crate) async fn layout(pool: &SqlitePool) -> StoreResult<Vec<(String, Vec<String>)>> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_schema WHERE type = 'table' \
         AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
    )
    .fetch_all(pool)
    .await
    .db()?;
    let mut tables = Vec::with_capacity(names.len());
    for name in names {
        let columns: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_table_info(?) ORDER BY cid")
                .bind(&name)
                .fetch_all(pool)
                .await
                .db()?;
        tables.push((name, columns));
    }
    Ok(tables)
}
