//! A write transaction sent to SQLite as one command.
//!
//! sqlx runs each SQLite connection on its own thread, and every query is a trip to that
//! thread and back. The chat's saves are on the path of every turn, so they are written as one
//! batch of statements, `BEGIN IMMEDIATE` to `COMMIT`, which the connection's thread runs in a
//! single trip. A batch cannot branch, so each write in it carries the condition it depends on
//! in its own `WHERE`; under the writer lock that condition reads the same in every statement,
//! and when it is false the batch writes nothing and commits an empty transaction.
//!
//! Values are bound to anonymous placeholders in the order they appear across the whole
//! batch (sqlx's SQLite driver numbers them on from one statement to the next); a value used
//! twice is bound twice. Numbered placeholders (`?3`) must not be used: the driver does not
//! bind them past a gap in a statement's numbers.

use std::fmt::Display;

use sqlx::pool::PoolConnection;
use sqlx::sqlite::{Sqlite, SqliteRow};
use sqlx::{Encode, QueryBuilder, SqlitePool, Type};
use switchboard_store::{StoreError, StoreResult};

use crate::error::from_sqlx;

/// Statements and their values, run as one write transaction by [`Batch::run`].
pub(crate) struct Batch<'q> {
    query: QueryBuilder<'q, Sqlite>,
}

impl<'q> Batch<'q> {
    pub(crate) fn new() -> Self {
        Self {
            query: QueryBuilder::new("BEGIN IMMEDIATE;\n"),
        }
    }

    /// Appends SQL text.
    pub(crate) fn push(&mut self, sql: impl Display) -> &mut Self {
        self.query.push(sql);
        self
    }

    /// Appends a placeholder bound to `value`.
    pub(crate) fn bind<T>(&mut self, value: T) -> &mut Self
    where
        T: Encode<'q, Sqlite> + Type<Sqlite> + 'q,
    {
        self.query.push_bind(value);
        self
    }

    /// Ends the statement being written.
    pub(crate) fn end(&mut self) -> &mut Self {
        self.query.push(";\n");
        self
    }

    /// Runs the statements in one transaction and returns the rows they produced, in order.
    ///
    /// On an error the transaction is rolled back before the connection goes back to the
    /// pool; if the caller stops waiting half-way, the connection is closed instead, which
    /// rolls back whatever the batch had begun.
    pub(crate) async fn run(mut self, pool: &SqlitePool) -> Result<Vec<SqliteRow>, sqlx::Error> {
        self.push("COMMIT").end();
        let mut conn = Unfinished(Some(pool.acquire().await?));
        let live = conn
            .0
            .as_mut()
            .expect("the connection is held until the batch ends");
        let ran = self.query.build().fetch_all(&mut **live).await;
        if ran.is_err() && sqlx::query("ROLLBACK").execute(&mut **live).await.is_err() {
            // No transaction was open (the batch failed at `BEGIN`), or the connection is in
            // doubt: either way it is closed rather than reused, which leaves nothing open.
            live.close_on_drop();
        }
        drop(conn.0.take());
        ran
    }
}

/// A connection whose batch has not finished: closed on drop rather than returned to the
/// pool, since it may still hold an open transaction.
struct Unfinished(Option<PoolConnection<Sqlite>>);

impl Drop for Unfinished {
    fn drop(&mut self) {
        if let Some(conn) = self.0.as_mut() {
            conn.close_on_drop();
        }
    }
}

/// Reads an integer column of a batch's row.
pub(crate) fn int(row: &SqliteRow, column: &str) -> StoreResult<i64> {
    sqlx::Row::try_get::<Option<i64>, _>(row, column)
        .map_err(from_sqlx)?
        .ok_or_else(|| StoreError::Backend(format!("the batch's {column} is missing")))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

    use super::*;

    /// A pool with one connection to a fresh database file, so that every batch and check
    /// below runs on the connection the previous one left behind.
    async fn one_connection(dir: &tempfile::TempDir) -> SqlitePool {
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("batch.db"))
            .create_if_missing(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER PRIMARY KEY)")
            .execute(&pool)
            .await
            .unwrap();
        pool
    }

    async fn values(pool: &SqlitePool) -> Vec<i64> {
        sqlx::query_scalar("SELECT x FROM t ORDER BY x")
            .fetch_all(pool)
            .await
            .unwrap()
    }

    fn insert(batch: &mut Batch<'_>, x: i64) {
        batch
            .push("INSERT INTO t (x) VALUES (")
            .bind(x)
            .push(")")
            .end();
    }

    #[tokio::test]
    async fn values_bind_in_order_across_statements_and_rows_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let pool = one_connection(&dir).await;
        let mut batch = Batch::new();
        insert(&mut batch, 1);
        batch
            .push("SELECT ")
            .bind(7_i64)
            .push(" AS a, (SELECT count(*) FROM t) AS n")
            .end();
        insert(&mut batch, 2);
        batch
            .push("INSERT INTO t (x) SELECT 3 WHERE ")
            .bind(0_i64)
            .push(" = 1")
            .end();
        let rows = batch.run(&pool).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (int(&rows[0], "a").unwrap(), int(&rows[0], "n").unwrap()),
            (7, 1)
        );
        assert_eq!(values(&pool).await, [1, 2]);
    }

    #[tokio::test]
    async fn a_failing_statement_rolls_back_the_whole_batch() {
        let dir = tempfile::tempdir().unwrap();
        let pool = one_connection(&dir).await;
        let mut batch = Batch::new();
        insert(&mut batch, 1);
        insert(&mut batch, 1);
        let Err(error) = batch.run(&pool).await else {
            panic!("a batch that breaks a unique key succeeded");
        };
        assert!(error.to_string().contains("UNIQUE"), "{error}");
        assert_eq!(values(&pool).await, Vec::<i64>::new());
        // The connection came back without a transaction: the next batch writes.
        let mut batch = Batch::new();
        insert(&mut batch, 2);
        batch.run(&pool).await.unwrap();
        assert_eq!(values(&pool).await, [2]);
    }

    #[tokio::test]
    async fn a_batch_abandoned_half_way_leaves_nothing_open() {
        let dir = tempfile::tempdir().unwrap();
        let pool = one_connection(&dir).await;
        let mut batch = Batch::new();
        insert(&mut batch, 1);
        // Long enough to be abandoned while it runs (a few hundred milliseconds).
        batch
            .push(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n \
                 WHERE i < 3000000) SELECT count(*) AS c FROM n",
            )
            .end();
        insert(&mut batch, 2);
        let abandoned = tokio::time::timeout(Duration::from_millis(50), batch.run(&pool)).await;
        assert!(
            abandoned.is_err(),
            "the batch finished before it was abandoned"
        );
        // Its connection is closed once the statement under way ends, which rolls back; the
        // next batch waits for the writer lock meanwhile, then writes.
        let mut batch = Batch::new();
        insert(&mut batch, 3);
        batch.run(&pool).await.unwrap();
        assert_eq!(values(&pool).await, [3]);
    }
}
