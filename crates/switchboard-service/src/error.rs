//! The service layer's error: what went wrong, kept apart by what the caller should do about it.

use switchboard_domain::ValidationError;
use switchboard_store::StoreError;

/// Why a service operation failed.
///
/// Every variant but `Internal` is safe to show to the client as it is; `Internal` carries
/// detail for the log only, and the HTTP layer answers it with a generic message.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An input value was refused.
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// The thing does not exist, or the caller may not know that it does.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The change clashes with what exists.
    #[error("{message}")]
    Conflict {
        /// The input field whose value clashed.
        field: &'static str,
        /// What clashed.
        message: String,
    },
    /// The change would leave an organization without an owner.
    #[error("an organization must keep at least one owner")]
    LastOwner,
    /// The caller is known but may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The caller is not signed in, or the credentials are wrong.
    #[error("{0}")]
    Unauthenticated(String),
    /// Too many attempts; try again after this many seconds.
    #[error("too many attempts, try again in {0} seconds")]
    RateLimited(u64),
    /// A connector's server failed or refused; the message says how, in plain words.
    #[error("{0}")]
    Upstream(String),
    /// The connector needs an authorization (or a credential) that is missing or was
    /// refused for good; the message says who must act.
    #[error("{0}")]
    NeedsAuth(String),
    /// A dependency is unavailable; retrying later may succeed.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// A bug or a broken invariant; the detail is for the log only.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => Error::NotFound(what),
            StoreError::Conflict { field, message } => Error::Conflict { field, message },
            StoreError::LastOwner => Error::LastOwner,
            StoreError::Unavailable(m) => Error::Unavailable(m),
            e @ (StoreError::Backend(_) | StoreError::Corrupt(_)) => Error::Internal(e.to_string()),
        }
    }
}

/// Result of a service operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;
