//! The chat's own SQLite connections, beside the pool: write transactions run by a thread of
//! their own, each as one job ([`Writer`]), and reads run on the caller's thread ([`Readers`]).
//!
//! The chat's saves are on the path of every turn. Through sqlx, every statement of a save
//! is a message from the connection's thread back to the waiting task, and each message is a
//! thread wake-up, which costs more than the statement itself. So the chat's writes go to a
//! [`Writer`] instead: a thread that owns one connection and runs a whole [`Batch`],
//! `BEGIN IMMEDIATE` to `COMMIT`, for one message there and one back.
//!
//! A batch cannot branch. Each write in it carries the condition it depends on in its own
//! `WHERE`; under the writer lock that condition reads the same in every statement, and when
//! it is false the batch writes nothing and commits an empty transaction.
//!
//! Values bind to the anonymous placeholders (`?`) of the statement being written, in order.
//! They take the representation sqlx gives them, so that the pool's queries read back what
//! a batch wrote: a UUID is its 16 bytes, a time its milliseconds.

use std::fmt::{Display, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use switchboard_store::{StoreError, StoreResult};
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::error::{breaks_unique_key, from_rusqlite};

/// Prepared statements the writer keeps: a save's statements differ with the number of
/// events, messages and audit entries it writes.
const STATEMENT_CACHE: usize = 64;

/// The writer's settings, which the pool's connections also have.
const WRITER_PRAGMAS: &str = "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;";

/// Statements and their values: run as one write transaction by [`Writer::run`], or, a single
/// read, by [`Readers::read`].
#[derive(Debug, Default)]
pub(crate) struct Batch {
    statements: Vec<Statement>,
    current: Statement,
}

#[derive(Debug, Default)]
struct Statement {
    sql: String,
    values: Vec<Value>,
}

impl Batch {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Appends SQL text to the statement being written.
    pub(crate) fn push(&mut self, sql: impl Display) -> &mut Self {
        write!(self.current.sql, "{sql}").expect("writing to a string cannot fail");
        self
    }

    /// Appends a placeholder bound to `value`.
    pub(crate) fn bind(&mut self, value: impl Bind) -> &mut Self {
        self.current.sql.push('?');
        self.current.values.push(value.value());
        self
    }

    /// Ends the statement being written.
    pub(crate) fn end(&mut self) -> &mut Self {
        self.statements.push(std::mem::take(&mut self.current));
        self
    }
}

/// A value a batch binds, in the representation sqlx gives it in SQLite.
pub(crate) trait Bind {
    fn value(self) -> Value;
}

impl Bind for i64 {
    fn value(self) -> Value {
        Value::Integer(self)
    }
}

impl Bind for &str {
    fn value(self) -> Value {
        Value::Text(self.to_owned())
    }
}

impl Bind for String {
    fn value(self) -> Value {
        Value::Text(self)
    }
}

impl Bind for Uuid {
    fn value(self) -> Value {
        Value::Blob(self.as_bytes().to_vec())
    }
}

impl<T: Bind> Bind for Option<T> {
    fn value(self) -> Value {
        self.map_or(Value::Null, Bind::value)
    }
}

/// A row a batch's statement produced: its values by column name.
#[derive(Debug)]
pub(crate) struct Row {
    columns: Arc<[String]>,
    values: Vec<Value>,
}

impl Row {
    /// The value of `column`; `None` when the row has no such column.
    pub(crate) fn value(&self, column: &str) -> Option<&Value> {
        self.columns
            .iter()
            .position(|c| c == column)
            .map(|i| &self.values[i])
    }
}

/// A failed batch: a unique key it broke (which the caller names), or anything else.
#[derive(Debug)]
pub(crate) enum BatchError {
    Unique(String),
    Store(StoreError),
}

impl BatchError {
    /// The store's error, a broken unique key being a conflict on `field`.
    pub(crate) fn unique_as(
        self,
        field: &'static str,
        message: impl FnOnce() -> String,
    ) -> StoreError {
        match self {
            Self::Unique(_) => StoreError::conflict(field, message()),
            Self::Store(e) => e,
        }
    }

    /// The store's error, a broken unique key being a backend error like any other.
    pub(crate) fn store(self) -> StoreError {
        match self {
            Self::Unique(message) => StoreError::Backend(message),
            Self::Store(e) => e,
        }
    }
}

fn batch_error(e: rusqlite::Error) -> BatchError {
    if breaks_unique_key(&e) {
        BatchError::Unique(e.to_string())
    } else {
        BatchError::Store(from_rusqlite(&e))
    }
}

fn closed() -> BatchError {
    BatchError::Store(StoreError::Unavailable("the store is closed".into()))
}

enum Job {
    Run(Batch, oneshot::Sender<Result<Vec<Row>, BatchError>>),
    Close(oneshot::Sender<()>),
}

/// The thread that runs batches, one after the other, on its own connection.
///
/// A batch runs to its end even when its caller stops waiting: it commits, or it fails and
/// rolls back. The thread stops when the writer is closed or dropped.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer on the database file at `path`, which must exist, with `busy` as
    /// its busy timeout.
    pub(crate) async fn start(path: &Path, busy: Duration) -> StoreResult<Self> {
        let (jobs, queue) = mpsc::channel();
        let (ready, opened) = oneshot::channel();
        let path = path.to_owned();
        std::thread::Builder::new()
            .name("sqlite-chat-writer".into())
            .spawn(
                move || match open(&path, busy, STATEMENT_CACHE, WRITER_PRAGMAS) {
                    Ok(conn) => {
                        let _ = ready.send(Ok(()));
                        serve(conn, queue);
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                    }
                },
            )
            .map_err(|e| StoreError::Unavailable(format!("cannot start the writer: {e}")))?;
        match opened.await {
            Ok(Ok(())) => Ok(Self { jobs }),
            Ok(Err(e)) => Err(batch_error(e).store()),
            Err(_) => Err(closed().store()),
        }
    }

    /// Runs `batch` as one transaction and returns the rows its statements produced, in
    /// order. On an error, nothing of it is written.
    pub(crate) async fn run(&self, batch: Batch) -> Result<Vec<Row>, BatchError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Run(batch, reply))
            .map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    /// Closes the connection once the batches sent before have run; later batches fail as
    /// `Unavailable`.
    pub(crate) async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.jobs.send(Job::Close(done)).is_ok() {
            let _ = closed.await;
        }
    }
}

/// Opens a connection to the database file at `path` (which must exist) with `busy` as its
/// busy timeout, keeping `statements` prepared statements, then runs `pragmas`.
fn open(
    path: &Path,
    busy: Duration,
    statements: usize,
    pragmas: &str,
) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(busy)?;
    conn.set_prepared_statement_cache_capacity(statements);
    conn.execute_batch(pragmas)?;
    Ok(conn)
}

fn serve(mut conn: Connection, queue: mpsc::Receiver<Job>) {
    while let Ok(job) = queue.recv() {
        match job {
            Job::Run(batch, reply) => {
                let ran = execute(&mut conn, &batch).map_err(batch_error);
                // A caller that stopped waiting misses the answer, not the write.
                let _ = reply.send(ran);
            }
            Job::Close(done) => {
                drop(conn);
                let _ = done.send(());
                return;
            }
        }
    }
}

fn execute(conn: &mut Connection, batch: &Batch) -> rusqlite::Result<Vec<Row>> {
    if !conn.is_autocommit() {
        // A rollback that failed after an earlier batch left its transaction open.
        conn.execute_batch("ROLLBACK")?;
    }
    // Dropped on an error before the commit, the transaction rolls back.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut rows = Vec::new();
    for statement in &batch.statements {
        produce(&tx, statement, &mut rows)?;
    }
    tx.commit()?;
    Ok(rows)
}

/// Runs one statement of a batch, adding the rows it produced to `rows`.
fn produce(conn: &Connection, statement: &Statement, rows: &mut Vec<Row>) -> rusqlite::Result<()> {
    let mut prepared = conn.prepare_cached(&statement.sql)?;
    let columns: Arc<[String]> = prepared
        .column_names()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let mut produced = prepared.query(rusqlite::params_from_iter(&statement.values))?;
    while let Some(row) = produced.next()? {
        let values = (0..columns.len())
            .map(|i| row.get::<_, Value>(i))
            .collect::<rusqlite::Result<_>>()?;
        rows.push(Row {
            columns: columns.clone(),
            values,
        });
    }
    Ok(())
}

/// Connections that run reads on the caller's own thread.
///
/// A query through the pool is a message to its connection's thread and one back, and the
/// pool then tests the connection with another round trip before taking it back: several
/// thread wake-ups for a lookup that itself takes microseconds. The chat's reads on the path
/// of every message (a conversation by key, its history) run here instead, where the only
/// cost is the read's own. In WAL mode a reader does not wait for writers, so the caller is
/// held for as long as the read takes and no longer.
#[derive(Debug)]
pub(crate) struct Readers {
    path: PathBuf,
    busy: Duration,
    /// `None` once closed.
    idle: Mutex<Option<Vec<Connection>>>,
}

/// Idle reading connections kept for the next reads; more are opened while they are all in
/// use and closed afterwards.
const READERS_KEPT: usize = 4;
/// Prepared statements each reader keeps.
const READER_STATEMENT_CACHE: usize = 16;

impl Readers {
    /// Readers of the database file at `path`, with `busy` as their busy timeout.
    pub(crate) fn new(path: &Path, busy: Duration) -> Self {
        Self {
            path: path.to_owned(),
            busy,
            idle: Mutex::new(Some(Vec::new())),
        }
    }

    /// Closes the idle connections; later reads fail as `Unavailable`.
    pub(crate) fn close(&self) {
        *self.idle.lock().expect("readers lock") = None;
    }

    /// Runs `batch`, one statement that only reads, on this thread.
    pub(crate) fn read(&self, batch: &Batch) -> StoreResult<Vec<Row>> {
        let [statement] = batch.statements.as_slice() else {
            return Err(StoreError::Backend(format!(
                "a read runs one statement, not {}",
                batch.statements.len()
            )));
        };
        let kept = match self.idle.lock().expect("readers lock").as_mut() {
            Some(idle) => idle.pop(),
            None => return Err(closed().store()),
        };
        let conn = match kept {
            Some(conn) => conn,
            // A reader never writes, whatever a batch given to it says.
            None => open(
                &self.path,
                self.busy,
                READER_STATEMENT_CACHE,
                "PRAGMA query_only = ON;",
            )
            .map_err(|e| from_rusqlite(&e))?,
        };
        let mut rows = Vec::new();
        produce(&conn, statement, &mut rows).map_err(|e| from_rusqlite(&e))?;
        if let Some(idle) = self.idle.lock().expect("readers lock").as_mut()
            && idle.len() < READERS_KEPT
        {
            idle.push(conn);
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use sqlx::SqlitePool;
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

    use super::*;
    use crate::rows::Columns;

    /// A writer on a fresh database file and a pool to read it back with.
    async fn writer(dir: &tempfile::TempDir) -> (Writer, SqlitePool) {
        let path = dir.path().join("batch.db");
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER PRIMARY KEY, id BLOB, s TEXT)")
            .execute(&pool)
            .await
            .unwrap();
        let writer = Writer::start(&path, Duration::from_secs(10)).await.unwrap();
        (writer, pool)
    }

    async fn values(pool: &SqlitePool) -> Vec<i64> {
        sqlx::query_scalar("SELECT x FROM t ORDER BY x")
            .fetch_all(pool)
            .await
            .unwrap()
    }

    fn insert(batch: &mut Batch, x: i64) {
        batch
            .push("INSERT INTO t (x) VALUES (")
            .bind(x)
            .push(")")
            .end();
    }

    #[tokio::test]
    async fn values_bind_in_order_and_rows_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, pool) = writer(&dir).await;
        let mut batch = Batch::new();
        insert(&mut batch, 1);
        batch
            .push("SELECT ")
            .bind(7_i64)
            .push(" AS a, (SELECT count(*) FROM t) AS n, ")
            .bind("text")
            .push(" AS s")
            .end();
        insert(&mut batch, 2);
        batch
            .push("INSERT INTO t (x) SELECT 3 WHERE ")
            .bind(0_i64)
            .push(" = 1")
            .end();
        let rows = writer.run(batch).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].int("a").unwrap(), rows[0].int("n").unwrap()),
            (7, 1)
        );
        assert!(matches!(rows[0].int("s"), Err(StoreError::Corrupt(_))));
        assert!(matches!(rows[0].int("b"), Err(StoreError::Backend(_))));
        assert_eq!(values(&pool).await, [1, 2]);
    }

    #[tokio::test]
    async fn uuids_and_nulls_read_back_through_sqlx() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, pool) = writer(&dir).await;
        let id = Uuid::new_v4();
        let mut batch = Batch::new();
        for (x, id) in [(1, Some(id)), (2, None)] {
            batch
                .push("INSERT INTO t (x, id) VALUES (")
                .bind(x)
                .push(", ")
                .bind(id)
                .push(")")
                .end();
        }
        writer.run(batch).await.unwrap();
        let read: Vec<Option<Uuid>> = sqlx::query_scalar("SELECT id FROM t ORDER BY x")
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(read, [Some(id), None]);
    }

    #[tokio::test]
    async fn a_failing_statement_rolls_back_the_whole_batch() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, pool) = writer(&dir).await;
        let mut batch = Batch::new();
        insert(&mut batch, 1);
        insert(&mut batch, 1);
        let Err(error) = writer.run(batch).await else {
            panic!("a batch that breaks a unique key succeeded");
        };
        let error = error.unique_as("x", || "x is taken".into());
        assert!(
            matches!(&error, StoreError::Conflict { field: "x", .. }),
            "{error:?}"
        );
        assert_eq!(values(&pool).await, Vec::<i64>::new());
        // The connection came back without a transaction: the next batch writes.
        let mut batch = Batch::new();
        insert(&mut batch, 2);
        writer.run(batch).await.unwrap();
        assert_eq!(values(&pool).await, [2]);
    }

    #[tokio::test]
    async fn a_batch_whose_caller_stops_waiting_still_commits_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, pool) = writer(&dir).await;
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
        let abandoned = tokio::time::timeout(Duration::from_millis(50), writer.run(batch)).await;
        assert!(
            abandoned.is_err(),
            "the batch finished before it was abandoned"
        );
        // The next batch runs after it, on the same connection, with nothing left open.
        let mut batch = Batch::new();
        insert(&mut batch, 3);
        writer.run(batch).await.unwrap();
        assert_eq!(values(&pool).await, [1, 2, 3]);
    }

    #[tokio::test]
    async fn a_lock_held_past_the_busy_timeout_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let (_, pool) = writer(&dir).await;
        let impatient = Writer::start(&dir.path().join("batch.db"), Duration::from_millis(50))
            .await
            .unwrap();
        let mut holder = pool.acquire().await.unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *holder)
            .await
            .unwrap();
        let mut batch = Batch::new();
        insert(&mut batch, 1);
        let refused = impatient.run(batch).await.unwrap_err().store();
        assert!(matches!(refused, StoreError::Unavailable(_)), "{refused:?}");
        sqlx::query("ROLLBACK").execute(&mut *holder).await.unwrap();
        drop(holder);
        assert_eq!(values(&pool).await, Vec::<i64>::new());
    }

    #[tokio::test]
    async fn a_closed_writer_refuses_batches() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, pool) = writer(&dir).await;
        let mut batch = Batch::new();
        insert(&mut batch, 1);
        writer.run(batch).await.unwrap();
        writer.close().await;
        let mut batch = Batch::new();
        insert(&mut batch, 2);
        let refused = writer.run(batch).await.unwrap_err().store();
        assert!(matches!(refused, StoreError::Unavailable(_)), "{refused:?}");
        assert_eq!(values(&pool).await, [1]);
    }

    #[tokio::test]
    async fn a_missing_file_is_reported_when_the_writer_starts() {
        let dir = tempfile::tempdir().unwrap();
        let error = Writer::start(&dir.path().join("none.db"), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(error, StoreError::Backend(_)), "{error:?}");
    }

    /// Readers of the database [`writer`] made.
    fn readers(dir: &tempfile::TempDir) -> Readers {
        Readers::new(&dir.path().join("batch.db"), Duration::from_secs(1))
    }

    fn select_all(batch: &mut Batch) {
        batch.push("SELECT x, id, s FROM t ORDER BY x").end();
    }

    #[tokio::test]
    async fn readers_read_what_the_writer_and_the_pool_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, pool) = writer(&dir).await;
        let readers = readers(&dir);
        let id = Uuid::new_v4();
        sqlx::query("INSERT INTO t (x, id, s) VALUES (1, ?, 'one')")
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
        let mut batch = Batch::new();
        insert(&mut batch, 2);
        writer.run(batch).await.unwrap();

        let mut batch = Batch::new();
        select_all(&mut batch);
        let rows = readers.read(&batch).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].uuid("id").unwrap(), id);
        assert_eq!(rows[0].text("s").unwrap(), "one");
        assert_eq!(rows[1].int("x").unwrap(), 2);
        assert_eq!(rows[1].opt_text("s").unwrap(), None);
        // A value of the wrong kind is corrupt; a column the row lacks is the query's fault.
        assert!(matches!(rows[0].uuid("s"), Err(StoreError::Corrupt(_))));
        assert!(matches!(rows[1].text("s"), Err(StoreError::Corrupt(_))));
        assert!(matches!(rows[0].uuid("x"), Err(StoreError::Corrupt(_))));
        assert!(matches!(rows[0].opt_text("z"), Err(StoreError::Backend(_))));
    }

    #[tokio::test]
    async fn readers_never_write() {
        let dir = tempfile::tempdir().unwrap();
        let (_, pool) = writer(&dir).await;
        let readers = readers(&dir);
        let mut batch = Batch::new();
        insert(&mut batch, 1);
        assert!(readers.read(&batch).is_err(), "a reader wrote");
        assert_eq!(values(&pool).await, Vec::<i64>::new());
    }

    #[tokio::test]
    async fn a_read_runs_one_statement() {
        let dir = tempfile::tempdir().unwrap();
        let _ = writer(&dir).await;
        let readers = readers(&dir);
        let mut two = Batch::new();
        select_all(&mut two);
        select_all(&mut two);
        let refused = readers.read(&two).unwrap_err();
        assert!(matches!(refused, StoreError::Backend(_)), "{refused:?}");
    }

    #[tokio::test]
    async fn closed_readers_refuse_reads() {
        let dir = tempfile::tempdir().unwrap();
        let _ = writer(&dir).await;
        let readers = readers(&dir);
        let mut batch = Batch::new();
        select_all(&mut batch);
        readers.read(&batch).unwrap();
        readers.close();
        let refused = readers.read(&batch).unwrap_err();
        assert!(matches!(refused, StoreError::Unavailable(_)), "{refused:?}");
    }
}
