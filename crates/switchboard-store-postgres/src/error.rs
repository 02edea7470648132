//! How driver errors become [`StoreError`]s: what is worth retrying, what is a uniqueness
//! conflict, and what is final.

use sqlx::error::ErrorKind;
use switchboard_store::StoreError;

/// Classifies a driver error that no call site handled more precisely.
///
/// Connection trouble, an exhausted pool, a server shutting down or refusing connections, and
/// the two transaction failures PostgreSQL asks clients to retry (serialization failure and
/// deadlock) are `Unavailable`; a value that does not decode is `Corrupt`; the rest is
/// `Backend`.
pub(crate) fn backend(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // SQLSTATE classes: 08 connection exception, 53 insufficient resources (such as
            // too many connections), 57P operator intervention (shutdown, starting up).
            if code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57P")
                || code == "40001"
                || code == "40P01"
            {
                StoreError::Unavailable(e.to_string())
            } else {
                StoreError::Backend(e.to_string())
            }
        }
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
            StoreError::Corrupt(e.to_string())
        }
        _ => StoreError::Backend(e.to_string()),
    }
}

/// The name of the unique constraint `e` violated, if it is a uniqueness violation.
pub(crate) fn unique_violation(e: &sqlx::Error) -> Option<&str> {
    match e {
        sqlx::Error::Database(db) if db.kind() == ErrorKind::UniqueViolation => db.constraint(),
        _ => None,
    }
}

/// Whether `e` is a foreign key violation (a referenced row does not exist).
pub(crate) fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.kind() == ErrorKind::ForeignKeyViolation)
}
