//! What the app sees: timeline items, their statuses and the changes to them.

use chatsync_protocol::{
    ActionKind, ActionRef, ConversationId, ErrorCode, MemberMarks, MessageId, Seq, UserId,
};
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
    /// Every other member has read it (messages only).
    Read,
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
            Status::Read => 3,
            Status::Failed => 9,
        }
    }

    /// Inverse of [`Status::as_i64`].
    pub fn from_i64(v: i64) -> Option<Status> {
        Some(match v {
            0 => Status::Sending,
            1 => Status::InFlight,
            2 => Status::Success,
            3 => Status::Read,
            9 => Status::Failed,
            _ => return None,
        })
    }

    /// The status the server has confirmed: In-Flight or beyond.
    pub fn is_confirmed(self) -> bool {
        matches!(self, Status::InFlight | Status::Success | Status::Read)
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

/// A reaction on a message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reaction {
    /// The emoji.
    pub emoji: String,
    /// Who set it, each once (this account included while its own toggle
    /// is still being sent).
    pub users: Vec<UserId>,
}

/// One of this device's actions on a message that the server has not
/// confirmed yet (Sending), or refused (Failed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingAction {
    /// The action's own id (for `retry` and `discard`).
    pub id: MessageId,
    /// What it does.
    pub kind: ActionKind,
    /// New text (edit), emoji (react), empty (delete).
    pub body: String,
    /// Sending or Failed.
    pub status: Status,
    /// Reason, when Failed.
    pub failure: Option<Failure>,
}

/// One message in a conversation's timeline, or (in storage only) one
/// action on a message.
///
/// The fields after `failure` describe the message as shown: its confirmed
/// actions folded in sequence order, then this device's pending actions on
/// top (an edit shows at once, and disappears again if refused).
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
    /// Set when this row is an action rather than a message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<ActionRef>,
    /// The text was edited.
    #[serde(default)]
    pub edited: bool,
    /// The message was deleted (its text is gone; a placeholder remains).
    #[serde(default)]
    pub deleted: bool,
    /// Reactions, by emoji.
    #[serde(default)]
    pub reactions: Vec<Reaction>,
    /// This device's unconfirmed or refused actions on it, in send order.
    #[serde(default)]
    pub pending: Vec<PendingAction>,
}

impl Item {
    /// A new row with no action and nothing folded in.
    #[allow(clippy::too_many_arguments)]
    pub fn message(
        id: MessageId,
        conversation: ConversationId,
        sender: UserId,
        sender_name: String,
        body: String,
        own: bool,
        status: Status,
        seq: Option<Seq>,
        local_seq: u64,
        created_at: i64,
        server_ts: Option<i64>,
    ) -> Item {
        Item {
            id,
            conversation,
            sender,
            sender_name,
            body,
            own,
            status,
            seq,
            local_seq,
            created_at,
            server_ts,
            failure: None,
            action: None,
            edited: false,
            deleted: false,
            reactions: Vec::new(),
            pending: Vec::new(),
        }
    }

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
