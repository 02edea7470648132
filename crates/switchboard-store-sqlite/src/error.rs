//! How sqlx errors (and the chat writer's rusqlite errors) become [`StoreError`]s, so every
//! query maps failures the same way.

use std::fmt::Display;

use sqlx::error::{DatabaseError, ErrorKind};
use switchboard_store::{StoreError, StoreResult};

/// SQLite's primary result codes for "someone else holds the lock": `SQLITE_BUSY` and
/// `SQLITE_LOCKED`. Extended codes keep the primary code in their low byte.
const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;
/// The extended result codes of a broken unique key: a unique index, or a primary key.
const SQLITE_CONSTRAINT_UNIQUE: i32 = 2067;
const SQLITE_CONSTRAINT_PRIMARYKEY: i32 = 1555;

/// Converts a sqlx error into the store's vocabulary.
///
/// Lost connections, pool timeouts and lock contention that outlasted the busy timeout are
/// `Unavailable` (worth retrying); values that do not decode are `Corrupt`; the rest is
/// `Backend`.
pub(crate) fn from_sqlx(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
        sqlx::Error::Database(db) if is_busy(db.as_ref()) => StoreError::Unavailable(e.to_string()),
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
            StoreError::Corrupt(e.to_string())
        }
        _ => StoreError::Backend(e.to_string()),
    }
}

fn is_busy(db: &dyn DatabaseError) -> bool {
    db.code()
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(busy_code)
}

fn busy_code(code: i32) -> bool {
    matches!(code & 0xff, SQLITE_BUSY | SQLITE_LOCKED)
}

/// Converts a rusqlite error as [`from_sqlx`] converts sqlx's: lock contention that outlasted
/// the busy timeout is `Unavailable`, the rest is `Backend`.
pub(crate) fn from_rusqlite(e: &rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(failure, _) if busy_code(failure.extended_code) => {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Backend(e.to_string()),
    }
}

/// Whether a rusqlite error is a broken unique key.
pub(crate) fn breaks_unique_key(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(failure, _)
            if matches!(
                failure.extended_code,
                SQLITE_CONSTRAINT_UNIQUE | SQLITE_CONSTRAINT_PRIMARYKEY
            )
    )
}

fn kind_of(e: &sqlx::Error) -> Option<ErrorKind> {
    match e {
        sqlx::Error::Database(db) => Some(db.kind()),
        _ => None,
    }
}

/// A corrupt-data error for a stored value that did not parse.
pub(crate) fn corrupt(what: &str, e: impl Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

/// `?`-friendly conversions for sqlx results.
pub(crate) trait DbResultExt<T> {
    /// Maps any error with [`from_sqlx`].
    fn db(self) -> StoreResult<T>;
    /// Maps a unique-constraint violation to `Conflict { field, message }`, anything else
    /// with [`from_sqlx`].
    fn unique_as(self, field: &'static str, message: impl FnOnce() -> String) -> StoreResult<T>;
}

impl<T> DbResultExt<T> for Result<T, sqlx::Error> {
    fn db(self) -> StoreResult<T> {
        self.map_err(from_sqlx)
    }

    fn unique_as(self, field: &'static str, message: impl FnOnce() -> String) -> StoreResult<T> {
        self.map_err(|e| match kind_of(&e) {
            Some(ErrorKind::UniqueViolation) => StoreError::conflict(field, message()),
            _ => from_sqlx(e),
        })
    }
}

/// Converts a migration failure: a failing statement maps like any query, anything else (a
/// missing or modified migration) is a final backend error.
pub(crate) fn migrate_error(e: sqlx::migrate::MigrateError) -> StoreError {
    match e {
        sqlx::migrate::MigrateError::Execute(e) => from_sqlx(e),
        other => StoreError::Backend(format!("migration failed: {other}")),
    }
}
