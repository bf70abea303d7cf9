//! The client library's error type.

use crate::core::ActionError;
use crate::store::StoreError;
use chatsync_protocol::Refusal;

/// Everything that can go wrong in the client library.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Client storage failed; the client stops to avoid diverging from it.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A user action was refused at once (nothing was queued).
    #[error(transparent)]
    Action(#[from] ActionError),
    /// The server refused a request.
    #[error("server refused: {} ({:?})", .0.message, .0.code)]
    Refused(Refusal),
    /// The server could not be reached or the connection broke.
    #[error("cannot reach the server at {url}: {reason}")]
    Connect {
        /// Server URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The server answered something the protocol does not allow there.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The data directory holds no session: log in first.
    #[error("no session in {0}: log in first")]
    NoSession(String),
    /// Waiting for something took too long.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The client has stopped (shut down, or a storage failure).
    #[error("the client has stopped")]
    Closed,
}
