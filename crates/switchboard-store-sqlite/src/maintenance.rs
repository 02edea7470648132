//! Whole-database operations: resealing every sealed value, export and import of a
//! [`Snapshot`], and the table layout the shared test suite compares with [`SCHEMA`].

use sqlx::sqlite::{Sqlite, SqliteRow};
use sqlx::{Row, SqliteConnection, SqlitePool};
use switchboard_domain::{
    ConnectorId, OrgId, UserId, chat_model_seal_context, client_seal_context,
    credential_seal_context, grant_seal_context, pending_seal_context,
};
use switchboard_store::{
    Cell, ColumnType, Resealer, SCHEMA, Snapshot, StoreError, StoreResult, TableDump, TableSpec,
};
use uuid::Uuid;

use crate::error::{DbResultExt, corrupt};
use crate::{accounts, begin_read, begin_write};

/// Reseals the values of one table, given as (row key, seal context, sealed text), with
/// `update` (binding the new text, then the key) writing each back. `what` names the row kind
/// in an error.
async fn reseal_rows<K>(
    conn: &mut SqliteConnection,
    reseal: Resealer<'_>,
    what: &str,
    values: Vec<(K, String, String)>,
    update: &str,
) -> StoreResult<u64>
where
    K: for<'q> sqlx::Encode<'q, Sqlite> + sqlx::Type<Sqlite> + std::fmt::Display + Send,
{
    let mut count = 0;
    for (key, context, sealed) in values {
        // One value that cannot be resealed aborts the whole pass: dropping the transaction
        // rolls back, so no secret is left sealed under a key that is about to go away.
        let resealed = reseal(&context, &sealed)
            .map_err(|e| corrupt(&format!("{what} {key} could not be resealed"), e))?;
        sqlx::query(update)
            .bind(resealed)
            .bind(key)
            .execute(&mut *conn)
            .await
            .db()?;
        count += 1;
    }
    Ok(count)
}

pub(crate) async fn reseal_all(pool: &SqlitePool, reseal: Resealer<'_>) -> StoreResult<u64> {
    let mut tx = begin_write(pool).await?;
    let uuid = |row: &SqliteRow, column: &str| row.try_get::<Uuid, _>(column).db();
    let holder = |row: &SqliteRow| {
        Ok::<_, StoreError>(row.try_get::<Option<Uuid>, _>("user_id").db()?.map(UserId))
    };
    let text = |row: &SqliteRow, column: &str| row.try_get::<String, _>(column).db();
    let mut count = 0;

    let found = sqlx::query(
        "SELECT id, connector_id, user_id, sealed FROM connector_credentials ORDER BY id",
    )
    .fetch_all(&mut *tx)
    .await
    .db()?;
    let values = found
        .iter()
        .map(|row| {
            let context =
                credential_seal_context(ConnectorId(uuid(row, "connector_id")?), holder(row)?);
            Ok((uuid(row, "id")?, context, text(row, "sealed")?))
        })
        .collect::<StoreResult<Vec<_>>>()?;
    count += reseal_rows(
        &mut tx,
        reseal,
        "credential",
        values,
        "UPDATE connector_credentials SET sealed = ? WHERE id = ?",
    )
    .await?;

    let found =
        sqlx::query("SELECT id, connector_id, issuer, sealed FROM oauth_clients ORDER BY id")
            .fetch_all(&mut *tx)
            .await
            .db()?;
    let values = found
        .iter()
        .map(|row| {
            let context = client_seal_context(
                ConnectorId(uuid(row, "connector_id")?),
                &text(row, "issuer")?,
            );
            Ok((uuid(row, "id")?, context, text(row, "sealed")?))
        })
        .collect::<StoreResult<Vec<_>>>()?;
    count += reseal_rows(
        &mut tx,
        reseal,
        "oauth client",
        values,
        "UPDATE oauth_clients SET sealed = ? WHERE id = ?",
    )
    .await?;

    let found = sqlx::query(
        "SELECT id, connector_id, user_id, issuer, sealed FROM oauth_grants ORDER BY id",
    )
    .fetch_all(&mut *tx)
    .await
    .db()?;
    let values = found
        .iter()
        .map(|row| {
            let context = grant_seal_context(
                ConnectorId(uuid(row, "connector_id")?),
                holder(row)?,
                &text(row, "issuer")?,
            );
            Ok((uuid(row, "id")?, context, text(row, "sealed")?))
        })
        .collect::<StoreResult<Vec<_>>>()?;
    count += reseal_rows(
        &mut tx,
        reseal,
        "oauth grant",
        values,
        "UPDATE oauth_grants SET sealed = ? WHERE id = ?",
    )
    .await?;

    let found = sqlx::query("SELECT state_hash, sealed FROM oauth_pending ORDER BY state_hash")
        .fetch_all(&mut *tx)
        .await
        .db()?;
    let values = found
        .iter()
        .map(|row| {
            let state_hash = text(row, "state_hash")?;
            let context = pending_seal_context(&state_hash);
            Ok((state_hash, context, text(row, "sealed")?))
        })
        .collect::<StoreResult<Vec<_>>>()?;
    count += reseal_rows(
        &mut tx,
        reseal,
        "pending authorization",
        values,
        "UPDATE oauth_pending SET sealed = ? WHERE state_hash = ?",
    )
    .await?;

    let found = sqlx::query(
        "SELECT org_id, sealed_key FROM chat_models WHERE sealed_key IS NOT NULL ORDER BY org_id",
    )
    .fetch_all(&mut *tx)
    .await
    .db()?;
    let values = found
        .iter()
        .map(|row| {
            let org = uuid(row, "org_id")?;
            let context = chat_model_seal_context(OrgId(org));
            Ok((org, context, text(row, "sealed_key")?))
        })
        .collect::<StoreResult<Vec<_>>>()?;
    count += reseal_rows(
        &mut tx,
        reseal,
        "chat model key",
        values,
        "UPDATE chat_models SET sealed_key = ? WHERE org_id = ?",
    )
    .await?;

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
        ColumnType::Bool => row.try_get::<Option<bool>, _>(index).db()?.map(Cell::Bool),
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
                        | (Cell::Bool(_), ColumnType::Bool)
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
                Cell::Bool(b) => query.bind(*b),
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
