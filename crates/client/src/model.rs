//! What the app sees: timeline items, their statuses and the changes to them.

use chatsync_protocol::{ConversationId, ErrorCode, MemberMarks, MessageId, Seq, UserId};
use serde::{Deserialize, Serialize};

/// Delivery status of a message. Ordered: a status only moves forward, except
/// for a user's retry (Failed → Sending).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// In client storage; the server has not confirmed it yet.
    Sending,
    /// The server stored it durably and gave it its sequence number.
    InFlight,
    /// Stored on the server and on a device of every other member.
    Success,
    /// The server refused it for good, or the retry budget ran out.
    Failed,
}

impl Status {
    /// Stable integer used by storage backends.
    pub fn as_i64(self) -> i64 {
        match self {
            Status::Sending => 0,
            Status::InFlight => 1,
            Status::Success => 2,
            Status::Failed => 9,
        }
    }

    /// Inverse of [`Status::as_i64`].
    pub fn from_i64(v: i64) -> Option<Status> {
        Some(match v {
            0 => Status::Sending,
            1 => Status::InFlight,
            2 => Status::Success,
            9 => Status::Failed,
            _ => return None,
        })
    }

    /// The status the server has confirmed: In-Flight or beyond.
    pub fn is_confirmed(self) -> bool {
        matches!(self, Status::InFlight | Status::Success)
    }
}

/// Why a message is Failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// Machine-readable reason.
    pub code: ErrorCode,
    /// Human-readable reason.
    pub message: String,
    /// Whether a retry can help.
    pub retryable: bool,
}

/// One message in a conversation's timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// Client-generated id.
    pub id: MessageId,
    /// Conversation.
    pub conversation: ConversationId,
    /// Author.
    pub sender: UserId,
    /// Author's account name.
    pub sender_name: String,
    /// Text, byte-identical to what the author typed.
    pub body: String,
    /// Whether the author is this account (from this or another device).
    pub own: bool,
    /// Delivery status (incoming messages are [`Status::Success`]: this
    /// device has them).
    pub status: Status,
    /// Place in the conversation, once the server assigned it.
    pub seq: Option<Seq>,
    /// Order among this device's unconfirmed messages (0 for others').
    pub local_seq: u64,
    /// When the author's device created it, ms since the epoch (device clock).
    pub created_at: i64,
    /// When the server stored it, ms since the epoch (server clock).
    pub server_ts: Option<i64>,
    /// Reason, when Failed.
    pub failure: Option<Failure>,
}

impl Item {
    /// The timeline order key: confirmed messages by server sequence, then
    /// local ones in send order.
    pub fn order_key(&self) -> (bool, u64, u64) {
        match self.seq {
            Some(seq) => (false, seq.0, 0),
            None => (true, 0, self.local_seq),
        }
    }
}

/// A change to a conversation's timeline, published to subscribers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimelineChange {
    /// A new item, or a new version of the item with the same id (it may
    /// have moved: place it by [`Item::order_key`]).
    Upserted(Item),
    /// The status of an item changed.
    StatusChanged {
        /// Item id.
        id: MessageId,
        /// New status.
        status: Status,
        /// Reason, when the new status is Failed.
        failure: Option<Failure>,
    },
    /// The item is gone (discarded by the user).
    Removed(MessageId),
}

/// A conversation as this device knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    /// Id.
    pub id: ConversationId,
    /// Display title.
    pub title: String,
    /// Members and their marks.
    pub members: Vec<MemberMarks>,
    /// Highest sequence number stored on this device without a gap.
    pub cursor: Seq,
    /// Newest sequence number the server reported.
    pub last_seq: Seq,
}

/// Connection state, for a UI indicator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionState {
    /// Authenticated and syncing.
    Connected,
    /// Opening a connection now.
    Connecting,
    /// Waiting before the next attempt.
    Reconnecting {
        /// Milliseconds until the next attempt.
        in_ms: u64,
    },
}

/// Orders items by the timeline rule.
pub fn sort_timeline(items: &mut [Item]) {
    items.sort_by_key(Item::order_key);
}
