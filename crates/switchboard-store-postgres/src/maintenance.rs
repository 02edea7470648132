//! Whole-database operations: resealing every secret under a new key, the snapshot export
//! and import behind `db copy`, and the table layout the shared test suite checks.
//!
//! Export and import are driven by [`SCHEMA`] rather than written table by table, so a table
//! or column added there (and to the migrations) is copied without touching this file.

use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::{PgConnection, PgPool, Postgres, Row};
use switchboard_domain::{
    ConnectorId, OrgId, UserId, chat_model_seal_context, client_seal_context,
    credential_seal_context, grant_seal_context, pending_seal_context,
};
use switchboard_store::{
    Cell, ColumnType, Resealer, SCHEMA, Snapshot, StoreError, StoreResult, TableDump, TableSpec,
};
use uuid::Uuid;

use crate::error::backend;

/// Reseals the values of one table, given as (row key, seal context, sealed text), with
/// `update` (binding the key as `$1` and the new text as `$2`) writing each back. `what` names
/// the row kind in an error.
async fn reseal_rows<K>(
    conn: &mut PgConnection,
    reseal: Resealer<'_>,
    what: &str,
    values: Vec<(K, String, String)>,
    update: &str,
) -> StoreResult<u64>
where
    K: for<'q> sqlx::Encode<'q, Postgres> + sqlx::Type<Postgres> + std::fmt::Display + Send,
{
    let mut count = 0;
    for (key, context, sealed) in values {
        // One value that cannot be resealed aborts the whole pass: the transaction rolls back,
        // so no secret is left sealed under a key that is about to go away.
        let resealed = reseal(&context, &sealed)
            .map_err(|e| StoreError::Corrupt(format!("{what} {key} cannot be resealed: {e}")))?;
        sqlx::query(update)
            .bind(key)
            .bind(resealed)
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
        count += 1;
    }
    Ok(count)
}

pub(crate) async fn reseal_all(pool: &PgPool, reseal: Resealer<'_>) -> StoreResult<u64> {
    let mut tx = pool.begin().await.map_err(backend)?;
    let mut count = 0;
    // Every read is FOR UPDATE, so that a value written meanwhile (a refreshed token set, a
    // replaced credential) cannot be overwritten with a reseal of its older value.

    let rows: Vec<(Uuid, Uuid, Option<Uuid>, String)> = sqlx::query_as(
        "SELECT id, connector_id, user_id, sealed FROM connector_credentials ORDER BY id FOR UPDATE",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(backend)?;
    let values = rows
        .into_iter()
        .map(|(id, connector, holder, sealed)| {
            let context = credential_seal_context(ConnectorId(connector), holder.map(UserId));
            (id, context, sealed)
        })
        .collect();
    count += reseal_rows(
        &mut tx,
        reseal,
        "connector credential",
        values,
        "UPDATE connector_credentials SET sealed = $2 WHERE id = $1",
    )
    .await?;

    let rows: Vec<(Uuid, Uuid, String, String)> = sqlx::query_as(
        "SELECT id, connector_id, issuer, sealed FROM oauth_clients ORDER BY id FOR UPDATE",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(backend)?;
    let values = rows
        .into_iter()
        .map(|(id, connector, issuer, sealed)| {
            (
                id,
                client_seal_context(ConnectorId(connector), &issuer),
                sealed,
            )
        })
        .collect();
    count += reseal_rows(
        &mut tx,
        reseal,
        "oauth client",
        values,
        "UPDATE oauth_clients SET sealed = $2 WHERE id = $1",
    )
    .await?;

    let rows: Vec<(Uuid, Uuid, Option<Uuid>, String, String)> = sqlx::query_as(
        "SELECT id, connector_id, user_id, issuer, sealed FROM oauth_grants ORDER BY id FOR UPDATE",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(backend)?;
    let values = rows
        .into_iter()
        .map(|(id, connector, holder, issuer, sealed)| {
            let context = grant_seal_context(ConnectorId(connector), holder.map(UserId), &issuer);
            (id, context, sealed)
        })
        .collect();
    count += reseal_rows(
        &mut tx,
        reseal,
        "oauth grant",
        values,
        "UPDATE oauth_grants SET sealed = $2 WHERE id = $1",
    )
    .await?;

    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT state_hash, sealed FROM oauth_pending ORDER BY state_hash COLLATE \"C\" FOR UPDATE",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(backend)?;
    let values = rows
        .into_iter()
        .map(|(state_hash, sealed)| {
            let context = pending_seal_context(&state_hash);
            (state_hash, context, sealed)
        })
        .collect();
    count += reseal_rows(
        &mut tx,
        reseal,
        "pending authorization",
        values,
        "UPDATE oauth_pending SET sealed = $2 WHERE state_hash = $1",
    )
    .await?;

    let rows: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT org_id, sealed_key FROM chat_models WHERE sealed_key IS NOT NULL \
         ORDER BY org_id FOR UPDATE",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(backend)?;
    let values = rows
        .into_iter()
        .map(|(org, sealed)| (org, chat_model_seal_context(OrgId(org)), sealed))
        .collect();
    count += reseal_rows(
        &mut tx,
        reseal,
        "chat model key",
        values,
        "UPDATE chat_models SET sealed_key = $2 WHERE org_id = $1",
    )
    .await?;

    tx.commit().await.map_err(backend)?;
    Ok(count)
}

fn column_list(table: &TableSpec) -> String {
    table
        .columns
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

fn decode_cell(row: &PgRow, index: usize, ty: ColumnType) -> Result<Cell, sqlx::Error> {
    Ok(match ty {
        ColumnType::Uuid => row.try_get::<Option<Uuid>, _>(index)?.map(Cell::Uuid),
        ColumnType::Text => row.try_get::<Option<String>, _>(index)?.map(Cell::Text),
        ColumnType::Int => row.try_get::<Option<i64>, _>(index)?.map(Cell::Int),
        ColumnType::Json => row
            .try_get::<Option<serde_json::Value>, _>(index)?
            .map(Cell::Json),
        ColumnType::Bool => row.try_get::<Option<bool>, _>(index)?.map(Cell::Bool),
    }
    .unwrap_or(Cell::Null))
}

/// The table's `ORDER BY` list with every text column compared by bytes (`COLLATE "C"`), so
/// an export comes out in the same order as SQLite's whatever collation the database was
/// created with.
fn byte_order(table: &TableSpec) -> String {
    table
        .order_by
        .split(',')
        .map(str::trim)
        .map(|column| {
            let is_text = table
                .columns
                .iter()
                .any(|(name, ty)| *name == column && *ty == ColumnType::Text);
            if is_text {
                format!("{column} COLLATE \"C\"")
            } else {
                column.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) async fn export(pool: &PgPool) -> StoreResult<Snapshot> {
    let mut tx = pool.begin().await.map_err(backend)?;
    // One snapshot of the whole database, so rows written during the export cannot appear in a
    // child table without their parent.
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    let mut tables = Vec::with_capacity(SCHEMA.len());
    for table in SCHEMA {
        let sql = format!(
            "SELECT {} FROM {} ORDER BY {}",
            column_list(table),
            table.name,
            byte_order(table)
        );
        let rows = sqlx::query(&sql)
            .fetch_all(&mut *tx)
            .await
            .map_err(backend)?;
        let rows = rows
            .iter()
            .map(|row| {
                table
                    .columns
                    .iter()
                    .enumerate()
                    .map(|(i, (_, ty))| decode_cell(row, i, *ty))
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::Corrupt(format!("table {}: {e}", table.name)))?;
        tables.push(TableDump {
            name: table.name.to_owned(),
            rows,
        });
    }
    tx.commit().await.map_err(backend)?;
    Ok(Snapshot { tables })
}

/// Checks that a snapshot's cell fits its column before anything is written.
fn check_cell(table: &TableSpec, row: usize, col: usize, cell: &Cell) -> StoreResult<()> {
    let (name, ty) = table.columns[col];
    let fits = matches!(
        (ty, cell),
        (_, Cell::Null)
            | (ColumnType::Uuid, Cell::Uuid(_))
            | (ColumnType::Text, Cell::Text(_))
            | (ColumnType::Int, Cell::Int(_))
            | (ColumnType::Json, Cell::Json(_))
            | (ColumnType::Bool, Cell::Bool(_))
    );
    if fits {
        Ok(())
    } else {
        Err(StoreError::Corrupt(format!(
            "snapshot table {} row {row}: column {name} expects {ty:?}, found {cell:?}",
            table.name
        )))
    }
}

/// Binds a cell as its column's type; a NULL is bound typed so the server need not guess.
fn bind_cell<'q>(
    query: Query<'q, Postgres, PgArguments>,
    ty: ColumnType,
    cell: &'q Cell,
) -> Query<'q, Postgres, PgArguments> {
    match (ty, cell) {
        (_, Cell::Uuid(v)) => query.bind(*v),
        (_, Cell::Text(v)) => query.bind(v.as_str()),
        (_, Cell::Int(v)) => query.bind(*v),
        (_, Cell::Json(v)) => query.bind(v),
        (_, Cell::Bool(v)) => query.bind(*v),
        (ColumnType::Uuid, Cell::Null) => query.bind(None::<Uuid>),
        (ColumnType::Text, Cell::Null) => query.bind(None::<String>),
        (ColumnType::Int, Cell::Null) => query.bind(None::<i64>),
        (ColumnType::Json, Cell::Null) => query.bind(None::<serde_json::Value>),
        (ColumnType::Bool, Cell::Null) => query.bind(None::<bool>),
    }
}

/// Inserts a table's rows in batches, staying far below PostgreSQL's 65535 parameters per
/// statement.
async fn insert_rows(
    conn: &mut PgConnection,
    table: &TableSpec,
    rows: &[Vec<Cell>],
) -> StoreResult<()> {
    let width = table.columns.len();
    let batch = (16_000 / width.max(1)).clamp(1, 500);
    for chunk in rows.chunks(batch) {
        let mut sql = format!(
            "INSERT INTO {} ({}) VALUES ",
            table.name,
            column_list(table)
        );
        for (r, _) in chunk.iter().enumerate() {
            sql.push_str(if r == 0 { "(" } else { ", (" });
            for c in 0..width {
                if c > 0 {
                    sql.push_str(", ");
                }
                sql.push('$');
                sql.push_str(&(r * width + c + 1).to_string());
            }
            sql.push(')');
        }
        let mut query = sqlx::query(&sql);
        for row in chunk {
            for (cell, (_, ty)) in row.iter().zip(table.columns) {
                query = bind_cell(query, *ty, cell);
            }
        }
        query
            .execute(&mut *conn)
            .await
            .map_err(|e| match backend(e) {
                StoreError::Backend(m) => {
                    StoreError::Backend(format!("importing table {}: {m}", table.name))
                }
                other => other,
            })?;
    }
    Ok(())
}

pub(crate) async fn import(pool: &PgPool, snapshot: &Snapshot) -> StoreResult<()> {
    // Validate the whole snapshot before touching the database.
    for dump in &snapshot.tables {
        let table = SCHEMA.iter().find(|t| t.name == dump.name).ok_or_else(|| {
            StoreError::Corrupt(format!("snapshot has unknown table {}", dump.name))
        })?;
        for (r, row) in dump.rows.iter().enumerate() {
            if row.len() != table.columns.len() {
                return Err(StoreError::Corrupt(format!(
                    "snapshot table {} row {r} has {} values, expected {}",
                    dump.name,
                    row.len(),
                    table.columns.len()
                )));
            }
            for (c, cell) in row.iter().enumerate() {
                check_cell(table, r, c, cell)?;
            }
        }
    }
    if let Some(dup) = snapshot
        .tables
        .iter()
        .enumerate()
        .find(|(i, d)| snapshot.tables[..*i].iter().any(|e| e.name == d.name))
    {
        return Err(StoreError::Corrupt(format!(
            "snapshot lists table {} twice",
            dup.1.name
        )));
    }

    let mut tx = pool.begin().await.map_err(backend)?;
    // The same lock setup takes: an owner created while the snapshot loads would be lost.
    crate::accounts::lock_users(&mut tx).await?;
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
    if users > 0 {
        return Err(StoreError::conflict(
            "target",
            "the target database already holds accounts; import only into a new database",
        ));
    }
    // Without accounts the database holds nothing worth keeping (at most a pending setup token
    // and sign-in failures), and those would clash with the snapshot's rows, so it is emptied.
    for table in SCHEMA.iter().rev() {
        sqlx::query(&format!("DELETE FROM {}", table.name))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
    }
    // Parents before children, the order SCHEMA lists them in, whatever the snapshot's order.
    for table in SCHEMA {
        if let Some(dump) = snapshot.tables.iter().find(|d| d.name == table.name) {
            insert_rows(&mut tx, table, &dump.rows).await?;
        }
    }
    tx.commit().await.map_err(backend)
}

pub(crate) async fn layout(pool: &PgPool) -> StoreResult<Vec<(String, Vec<String>)>> {
    // `current_schema()` is where the migrations created the tables (the first schema on the
    // search path), so a database shared with other schemas is not mixed in.
    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position",
    )
    .fetch_all(pool)
    .await
    .map_err(backend)?;
    let mut tables: Vec<(String, Vec<String>)> = Vec::new();
    for (table, column) in columns {
        match tables.last_mut() {
            Some((name, cols)) if *name == table => cols.push(column),
            _ => tables.push((table, vec![column])),
        }
    }
    Ok(tables)
}
