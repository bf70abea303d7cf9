//! Client storage: a trait, an in-memory twin for core tests, and SQLite.
//!
//! The syncer core never touches storage. It emits [`StoreOp`]s, and the
//! driver applies each batch of them in one transaction with
//! [`ClientStore::apply`] before it transmits anything that depends on them
//! (a delivery acknowledgement is only sent once the messages are stored).

mod memory;
mod sqlite;

pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

use crate::model::{Conversation, Failure, Item, Status};
use chatsync_protocol::{ConversationId, MemberMarks, MessageId, Seq};

/// Meta key holding the last limits the server announced (JSON).
pub const META_LIMITS: &str = "limits";

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The SQLite backend failed.
    #[error("client storage (SQLite): {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Stored data could not be read back (corrupt or from a newer version).
    #[error("client storage holds unreadable data: {0}")]
    Corrupt(String),
    /// The storage directory could not be created.
    #[error("client storage directory: {0}")]
    Io(#[from] std::io::Error),
}

/// A write to client storage, emitted by the syncer core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreOp {
    /// A new outgoing message, status Sending.
    InsertOutgoing {
        /// The message.
        item: Item,
        /// Whether it is being transmitted right away.
        transmitted: bool,
    },
    /// These outgoing messages have been (or may have been) transmitted.
    MarkTransmitted(Vec<MessageId>),
    /// Insert a confirmed message or action, or update the stored one with
    /// the same id: sets seq and server time; the status never moves back.
    /// A confirmed delete from the author also erases the stored text of
    /// its target.
    UpsertConfirmed(Item),
    /// Moves a message to a status (never backwards, except Failed → Sending
    /// through [`StoreOp::Requeue`]).
    SetStatus {
        /// Message.
        id: MessageId,
        /// New status.
        status: Status,
    },
    /// Marks a Sending message Failed.
    SetFailed {
        /// Message.
        id: MessageId,
        /// Why.
        failure: Failure,
    },
    /// A user's retry: Failed → Sending, placed after every other local message.
    Requeue {
        /// Message.
        id: MessageId,
        /// New place among local messages.
        local_seq: u64,
    },
    /// Removes a message or action that never reached the server.
    Remove(MessageId),
    /// Rewrites a queued (unconfirmed) message or action in place: an edit
    /// of a message not yet transmitted, or a newer toggle of a queued
    /// reaction.
    UpdateOutgoing {
        /// The queued row.
        id: MessageId,
        /// Its new text.
        body: String,
        /// Its new action (for a reaction toggled again).
        action: Option<chatsync_protocol::ActionRef>,
    },
    /// Inserts or updates a conversation (title, members); keeps the cursor.
    UpsertConversation {
        /// Id.
        id: ConversationId,
        /// Title.
        title: String,
        /// Members with marks.
        members: Vec<MemberMarks>,
        /// Newest sequence number known on the server.
        last_seq: Seq,
    },
    /// Replaces one member's marks.
    SetMarks {
        /// Conversation.
        conversation: ConversationId,
        /// New marks.
        marks: MemberMarks,
    },
    /// Moves the gap-free cursor of a conversation forward.
    SetCursor {
        /// Conversation.
        conversation: ConversationId,
        /// New cursor.
        seq: Seq,
    },
    /// Stores a session or configuration value.
    SetMeta {
        /// Key.
        key: String,
        /// Value.
        value: String,
    },
}

/// What the syncer core needs at start-up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadedState {
    /// Own messages not yet confirmed (Sending or Failed), in local order,
    /// each with whether it may have been transmitted.
    pub outbox: Vec<(Item, bool)>,
    /// Own rows confirmed but not settled: messages In-Flight or Success
    /// (waiting to be read by all), actions In-Flight.
    pub in_flight: Vec<Item>,
    /// Every known conversation.
    pub conversations: Vec<Conversation>,
    /// Highest local sequence used so far.
    pub max_local_seq: u64,
}

/// Durable client storage. Every backend passes the same conformance suite
/// (`tests/store_conformance.rs`).
pub trait ClientStore: Send + 'static {
    /// Applies a batch of writes atomically (one transaction).
    fn apply(&mut self, ops: &[StoreOp]) -> Result<(), StoreError>;
    /// Reads what the syncer core needs to resume.
    fn load(&self) -> Result<LoadedState, StoreError>;
    /// The newest `limit` messages (never action rows) of a conversation
    /// whose order key is before `before` (all when `None`), in timeline
    /// order, each as shown (actions folded, pending ones on top).
    fn timeline(
        &self,
        conversation: ConversationId,
        before: Option<Seq>,
        limit: usize,
    ) -> Result<Vec<Item>, StoreError>;
    /// One row by id; a message is returned as shown (like `timeline`).
    fn item(&self, id: MessageId) -> Result<Option<Item>, StoreError>;
    /// How many messages of others, not deleted, have a sequence number
    /// above `after` (unread when `after` is the account's read mark).
    fn unread(&self, conversation: ConversationId, after: Seq) -> Result<u64, StoreError>;
    /// Every known conversation.
    fn conversations(&self) -> Result<Vec<Conversation>, StoreError>;
    /// A stored session or configuration value.
    fn meta(&self, key: &str) -> Result<Option<String>, StoreError>;
}
