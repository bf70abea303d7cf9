//! The crate's single error type.

use chatsync_protocol::{ErrorCode, Refusal};

/// Everything that can go wrong inside the server.
///
/// Some variants are ordinary answers to a client (a taken username, wrong
/// credentials); [`ServerError::refusal`] turns any of them into the
/// [`Refusal`] sent on the wire, without leaking internal details.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Binding, accepting, or creating the data directory failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),

    /// The SQLite database returned an error.
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),

    /// The database was written by a newer server whose schema this one
    /// does not know; refusing to run protects the data.
    #[error("database schema version {found} is newer than the {supported} this server knows")]
    SchemaTooNew {
        /// `PRAGMA user_version` found in the file.
        found: i64,
        /// Highest migration this build knows.
        supported: i64,
    },

    /// A stored value could not be read back (for example a malformed id).
    #[error("corrupt stored data: {0}")]
    Corrupt(String),

    /// Registration asked for a username that already exists.
    #[error("the username is taken")]
    UsernameTaken,

    /// The username or password breaks the account rules.
    #[error("invalid account: {0}")]
    InvalidAccount(String),

    /// Login with an unknown username or a wrong password (deliberately
    /// indistinguishable).
    #[error("wrong username or password")]
    BadCredentials,

    /// Hashing or parsing a password hash failed.
    #[error("password hashing failed: {0}")]
    PasswordHash(String),

    /// The operating system's random number generator failed.
    #[error("random number generator failed: {0}")]
    Random(String),

    /// The group committer has stopped: the server is shutting down.
    #[error("the committer has stopped")]
    CommitterStopped,

    /// The transaction of a whole batch failed; every write in the batch
    /// gets this, and none of them was stored.
    #[error("batch commit failed: {0}")]
    BatchFailed(String),

    /// A background task panicked or was cancelled.
    #[error("background task failed: {0}")]
    Task(String),
}

impl ServerError {
    /// The refusal to put on the wire for this error. Internal failures are
    /// reported as retryable without their details, which only the log gets.
    pub fn refusal(&self) -> Refusal {
        match self {
            ServerError::UsernameTaken => {
                Refusal::permanent(ErrorCode::UsernameTaken, "the username is taken")
            }
            ServerError::InvalidAccount(why) => {
                Refusal::permanent(ErrorCode::InvalidAccount, why.clone())
            }
            ServerError::BadCredentials => {
                Refusal::permanent(ErrorCode::BadCredentials, "wrong username or password")
            }
            ServerError::CommitterStopped => Refusal::transient(
                ErrorCode::Unavailable,
                "the server is shutting down",
                Some(1000),
            ),
            _ => Refusal::transient(ErrorCode::Internal, "internal server error", Some(1000)),
        }
    }
}

impl From<tokio::task::JoinError> for ServerError {
    fn from(e: tokio::task::JoinError) -> Self {
        ServerError::Task(e.to_string())
    }
}
