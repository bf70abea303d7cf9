//! Every frame of the protocol.

use crate::{ActionRef, ConversationId, DeviceId, Limits, MessageId, Seq, UserId};
use serde::{Deserialize, Serialize};

/// A frame sent by a client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    /// Create an account. Allowed before `hello`. Answered by `registered`.
    Register {
        /// Correlates the answer.
        req: u64,
        /// Unique account name, 1 to 64 bytes.
        username: String,
        /// At least 8 bytes.
        password: String,
    },
    /// Log in and open a new session (device). Allowed before `hello`.
    /// Answered by `logged_in` with a token to present in `hello`.
    Login {
        /// Correlates the answer.
        req: u64,
        /// Account name.
        username: String,
        /// Account password.
        password: String,
        /// Free text naming the device, for the user's benefit.
        device_name: String,
    },
    /// Authenticate this connection. Answered by `welcome`, or by `error`
    /// followed by the server closing the connection.
    Hello {
        /// Must equal [`crate::PROTOCOL_VERSION`].
        version: u32,
        /// Session token from `logged_in`.
        token: String,
    },
    /// Send a message. Answered by `ack` or `refused`, in frame order.
    Send {
        /// Client-generated id; resending the same id is harmless.
        id: MessageId,
        /// Target conversation; the sender must be a member.
        conversation: ConversationId,
        /// UTF-8 text, at most `max_body_bytes` bytes; for an action, the
        /// new text (edit), the emoji (react) or empty (delete).
        body: String,
        /// Present when this is an action on an earlier message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        action: Option<ActionRef>,
    },
    /// Marks the conversation read up to `seq` on behalf of the account
    /// (cumulative; the server keeps the highest mark it has seen).
    Read {
        /// Conversation.
        conversation: ConversationId,
        /// Highest sequence number read.
        seq: Seq,
    },
    /// Cumulative delivery acknowledgement: this device has stored every
    /// message of `conversation` up to and including `seq`.
    Received {
        /// Conversation.
        conversation: ConversationId,
        /// Highest sequence number stored without gap.
        seq: Seq,
    },
    /// Ask for messages after a cursor. Answered by `batch`.
    Sync {
        /// Correlates the answer.
        req: u64,
        /// Conversation to page through.
        conversation: ConversationId,
        /// Return messages with a sequence number strictly greater than this.
        after: Seq,
        /// At most this many (capped by `max_page`).
        limit: u32,
    },
    /// Create a conversation. Answered by `conversation` (also pushed to
    /// every online member).
    CreateConversation {
        /// Correlates the answer.
        req: u64,
        /// Display title.
        title: String,
        /// Account names of the other members; the creator is always a member.
        members: Vec<String>,
    },
    /// List the conversations this account belongs to. Answered by
    /// `conversations`.
    ListConversations {
        /// Correlates the answer.
        req: u64,
    },
    /// Keep-alive; answered by `pong`.
    Ping {
        /// Echoed back.
        nonce: u64,
    },
    /// Revoke the session (token) this connection authenticated with.
    /// Answered by `logged_out`, after which the server closes the
    /// connection; the token is refused by every later `hello`.
    Logout {
        /// Correlates the answer.
        req: u64,
    },
}

/// A message as stored on the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireMessage {
    /// Client-generated id.
    pub id: MessageId,
    /// Conversation.
    pub conversation: ConversationId,
    /// Place in the conversation.
    pub seq: Seq,
    /// Author.
    pub sender: UserId,
    /// Author's account name.
    pub sender_name: String,
    /// UTF-8 text, byte-identical to what was sent.
    pub body: String,
    /// When the server stored it, milliseconds since the Unix epoch.
    pub server_ts: i64,
    /// Present when this is an action on an earlier message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<ActionRef>,
}

/// One member's position in a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberMarks {
    /// Member.
    pub user: UserId,
    /// Member's account name.
    pub username: String,
    /// Highest sequence number stored by at least one of the member's devices.
    pub delivered: Seq,
    /// Highest sequence number the member has read (never above `delivered`).
    #[serde(default)]
    pub read: Seq,
}

/// The lowest marks among the members of a conversation other than one
/// account: what that account's own messages need for Success and Read.
/// Each field only ever grows, like the marks it summarises.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OthersMarks {
    /// Lowest `delivered` among the other members: every other member has
    /// stored every message up to it.
    pub delivered: Seq,
    /// Lowest `read` among the other members: every other member has read
    /// up to it.
    pub read: Seq,
}

/// A conversation as listed to a member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationInfo {
    /// Id.
    pub id: ConversationId,
    /// Display title.
    pub title: String,
    /// Every member with their marks.
    pub members: Vec<MemberMarks>,
    /// Sequence number of the newest message (0 when empty).
    pub last_seq: Seq,
}

/// Why the server refused something.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// Machine-readable reason.
    pub code: ErrorCode,
    /// Human-readable explanation.
    pub message: String,
    /// Whether sending the same thing again later can succeed.
    pub retryable: bool,
    /// When retryable: wait at least this long before retrying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// Machine-readable error codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not valid JSON or not a known frame.
    Malformed,
    /// The WebSocket message exceeds `max_frame_bytes`.
    FrameTooLarge,
    /// `hello` carried an unsupported protocol version.
    UnsupportedVersion,
    /// The token is unknown, expired or revoked.
    Unauthorized,
    /// An authenticated frame arrived before `hello`.
    NotAuthenticated,
    /// Wrong username or password.
    BadCredentials,
    /// The username is taken.
    UsernameTaken,
    /// The username or password does not meet the rules.
    InvalidAccount,
    /// The sender is not a member of the conversation.
    NotMember,
    /// The conversation does not exist.
    UnknownConversation,
    /// A named member does not exist.
    UnknownUser,
    /// The body exceeds `max_body_bytes`.
    TooLarge,
    /// The body is empty.
    EmptyBody,
    /// The body contains characters the server does not store (U+0000).
    InvalidBody,
    /// Too many sends; retry after `retry_after_ms`.
    RateLimited,
    /// The message id is already used by a message of another account.
    /// Ids are unique across senders on the server, so this send can never
    /// be stored under this id; a client generating UUIDv7 ids never sees it.
    IdConflict,
    /// The message an action targets does not exist in that conversation.
    NotFound,
    /// Only the author of a message may edit or delete it.
    NotAuthor,
    /// The message an action targets was deleted.
    Gone,
    /// A request breaks a documented limit other than the body's (a
    /// conversation title or member list too long).
    InvalidRequest,
    /// The server is shutting down or overloaded; retry later.
    Unavailable,
    /// An unexpected server-side error; retry later.
    Internal,
}

/// A frame sent by the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// Answer to `register`.
    Registered {
        /// Correlates with the request.
        req: u64,
        /// The new account.
        user: UserId,
    },
    /// Answer to `login`.
    LoggedIn {
        /// Correlates with the request.
        req: u64,
        /// The account.
        user: UserId,
        /// The new session.
        device: DeviceId,
        /// Secret to present in `hello`; shown once, stored hashed.
        token: String,
    },
    /// Answer to a successful `hello`.
    Welcome {
        /// Protocol version spoken.
        version: u32,
        /// Authenticated account.
        user: UserId,
        /// Account name.
        username: String,
        /// Authenticated session.
        device: DeviceId,
        /// Limits in force on this connection.
        limits: Limits,
        /// Server clock, milliseconds since the Unix epoch.
        server_time: i64,
    },
    /// The server stored a message durably; answer to `send`. A resend of
    /// an already stored id gets the original `seq` and `server_ts`.
    Ack {
        /// Message id.
        id: MessageId,
        /// Conversation.
        conversation: ConversationId,
        /// Assigned place.
        seq: Seq,
        /// Storage time, ms since the epoch.
        server_ts: i64,
    },
    /// The server did not store a message.
    Refused {
        /// Message id.
        id: MessageId,
        /// Why.
        #[serde(flatten)]
        refusal: Refusal,
    },
    /// A new message in a conversation this account belongs to (pushed).
    Message {
        /// The message.
        message: WireMessage,
    },
    /// A member's marks moved (pushed). It reaches the member's own
    /// account, and every other member whose [`OthersMarks`] it changed
    /// (PROTOCOL.md §8.2).
    Marks {
        /// Conversation.
        conversation: ConversationId,
        /// The member's new marks.
        marks: MemberMarks,
        /// The lowest marks among the members other than the recipient's
        /// account, after this move. Absent from servers older than this
        /// field, and in a conversation with no other member.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        others: Option<OthersMarks>,
    },
    /// Answer to `sync`.
    Batch {
        /// Correlates with the request.
        req: u64,
        /// Conversation.
        conversation: ConversationId,
        /// Messages in sequence order, without gap, starting right after `after`.
        messages: Vec<WireMessage>,
        /// Every member's marks at the time of the read.
        members: Vec<MemberMarks>,
        /// Newest sequence number of the conversation at the time of the read.
        last_seq: Seq,
    },
    /// A conversation was created with this account as member (pushed), or
    /// the answer to `create_conversation` (then `req` is set).
    Conversation {
        /// Correlates with the request when this is an answer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        /// The conversation.
        conversation: ConversationInfo,
    },
    /// Answer to `list_conversations`.
    Conversations {
        /// Correlates with the request.
        req: u64,
        /// Every conversation of the account.
        conversations: Vec<ConversationInfo>,
    },
    /// Answer to `ping`.
    Pong {
        /// Echoed nonce.
        nonce: u64,
    },
    /// Answer to `logout`: the session is revoked; the server closes the
    /// connection right after this frame.
    LoggedOut {
        /// Correlates with the request.
        req: u64,
    },
    /// A request failed, or the connection is about to be closed.
    Error {
        /// The request it answers, when it answers one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        /// Why.
        #[serde(flatten)]
        refusal: Refusal,
    },
}

impl Refusal {
    /// A permanent refusal.
    pub fn permanent(code: ErrorCode, message: impl Into<String>) -> Self {
        Refusal {
            code,
            message: message.into(),
            retryable: false,
            retry_after_ms: None,
        }
    }

    /// A transient refusal.
    pub fn transient(
        code: ErrorCode,
        message: impl Into<String>,
        retry_after_ms: Option<u64>,
    ) -> Self {
        Refusal {
            code,
            message: message.into(),
            retryable: true,
            retry_after_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn new_error_codes_are_snake_case_on_the_wire() {
        for (code, text) in [
            (ErrorCode::IdConflict, "\"id_conflict\""),
            (ErrorCode::NotFound, "\"not_found\""),
            (ErrorCode::NotAuthor, "\"not_author\""),
            (ErrorCode::Gone, "\"gone\""),
            (ErrorCode::InvalidRequest, "\"invalid_request\""),
        ] {
            assert_eq!(serde_json::to_string(&code).unwrap(), text);
            assert_eq!(serde_json::from_str::<ErrorCode>(text).unwrap(), code);
        }
    }
}
