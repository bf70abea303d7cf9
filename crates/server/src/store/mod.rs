//! Server storage: the [`ServerStore`] trait and its SQLite implementation.
//!
//! The trait is synchronous on purpose: every write goes through the group
//! committer's dedicated thread ([`crate::commit`]), and async callers run
//! reads on `spawn_blocking`. Keeping it sync keeps backends simple and lets
//! one transaction cover a whole batch.

mod sqlite;

pub use sqlite::SqliteStore;

use crate::ServerError;
use chatsync_protocol::{
    ActionRef, ConversationId, ConversationInfo, DeviceId, ErrorCode, MemberMarks, MessageId, Seq,
    UserId, WireMessage,
};

/// An account as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// Id.
    pub id: UserId,
    /// Unique name.
    pub username: String,
    /// Argon2 PHC string.
    pub password_hash: String,
}

/// A session (one logged-in device) as stored. The token itself is never
/// stored, only its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    /// The session's device id.
    pub device: DeviceId,
    /// Account.
    pub user: UserId,
    /// Account name.
    pub username: String,
    /// SHA-256 of the token.
    pub token_hash: [u8; 32],
    /// When the session was opened (its `login`), ms since the epoch; the
    /// session expires `ServerConfig::session_ttl` after it.
    pub created_ms: i64,
}

/// One write, applied by [`ServerStore::apply_batch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOp {
    /// Store a message or an action, unless `(sender, id)` is already
    /// stored (then the original is acknowledged) or `id` is another
    /// sender's (refused). An action is then validated against its target
    /// (see [`ServerStore::apply_batch`]).
    Append {
        /// Author.
        sender: UserId,
        /// Client-generated id.
        id: MessageId,
        /// Target conversation.
        conversation: ConversationId,
        /// Text: the message, the new text of an edit, the emoji of a
        /// reaction, empty for a delete.
        body: String,
        /// Present when this is an action on an earlier message.
        action: Option<ActionRef>,
    },
    /// Move a member's delivered mark forward.
    Delivered {
        /// Conversation.
        conversation: ConversationId,
        /// Member.
        user: UserId,
        /// Highest seq the member stored; clamped to the conversation's
        /// `last_seq`.
        seq: Seq,
    },
    /// Move a member's read mark forward (and the delivered mark with it:
    /// reading implies having).
    Read {
        /// Conversation.
        conversation: ConversationId,
        /// Member.
        user: UserId,
        /// Highest seq the member read; clamped to the conversation's
        /// `last_seq`.
        seq: Seq,
    },
}

impl WriteOp {
    /// Whether a commit containing this write must be fsynced before
    /// anyone is answered. Appends must: their acknowledgement promises
    /// the message survives a power loss. Marks need not: a member's
    /// `received` and `read` reports describe its own storage, they are
    /// repeated by the client whenever the server's mark is behind its own
    /// (on every `welcome`), and the next durable commit or WAL checkpoint
    /// makes them durable anyway. Losing the last marks to a power cut
    /// delays nothing a client cannot restore.
    pub fn must_be_durable(&self) -> bool {
        matches!(self, WriteOp::Append { .. })
    }
}

/// Result of an [`WriteOp::Append`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// Conversation the message is stored in. For a duplicate this is the
    /// original message's conversation.
    pub conversation: ConversationId,
    /// Assigned (or, for a duplicate, original) place.
    pub seq: Seq,
    /// Storage time (original for a duplicate), ms since the epoch.
    pub server_ts: i64,
    /// The message was already stored; nothing was written.
    pub duplicate: bool,
}

/// Result of one [`WriteOp`], in the same position as the op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Answer to [`WriteOp::Append`].
    Appended(Appended),
    /// Answer to [`WriteOp::Delivered`] and [`WriteOp::Read`].
    Marks {
        /// The member's delivered mark after the write.
        delivered: Seq,
        /// The member's read mark after the write.
        read: Seq,
        /// Whether either mark moved.
        changed: bool,
    },
    /// The op could not apply (unknown conversation, not a member, id used
    /// by another sender; for an action, a target that is not a message of
    /// the conversation, an edit or delete by someone other than the
    /// target's author, an edit or reaction on a deleted message); the
    /// rest of the batch is unaffected.
    Rejected(ErrorCode),
}

/// One page of a conversation, read at a single point in time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// Messages after the cursor, in sequence order, without gap.
    pub messages: Vec<WireMessage>,
    /// Every member's marks.
    pub members: Vec<MemberMarks>,
    /// Newest sequence number.
    pub last_seq: Seq,
}

/// Storage used by the server. Implementations must be safe to call from
/// many threads; writes of messages and marks only come through
/// [`ServerStore::apply_batch`].
pub trait ServerStore: Send + Sync + 'static {
    /// Creates an account. [`ServerError::UsernameTaken`] if the name exists.
    fn create_account(&self, username: &str, password_hash: &str) -> Result<UserId, ServerError>;

    /// Looks an account up by its exact name.
    fn account_by_name(&self, username: &str) -> Result<Option<Account>, ServerError>;

    /// Opens a session for `user`, identified by the SHA-256 of its token.
    fn create_session(
        &self,
        user: UserId,
        device_name: &str,
        token_hash: &[u8; 32],
    ) -> Result<DeviceId, ServerError>;

    /// Finds the session whose token hashes to `token_hash`.
    fn session_by_token_hash(
        &self,
        token_hash: &[u8; 32],
    ) -> Result<Option<SessionRecord>, ServerError>;

    /// Deletes the session whose token hashes to `token_hash` (logout):
    /// its token never authenticates again. `false` if there was none.
    fn revoke_session(&self, token_hash: &[u8; 32]) -> Result<bool, ServerError>;

    /// Creates a conversation with exactly these members (deduplicated).
    fn create_conversation(
        &self,
        title: &str,
        members: &[UserId],
    ) -> Result<ConversationInfo, ServerError>;

    /// Every conversation `user` belongs to, oldest first, with marks.
    fn conversations_of(&self, user: UserId) -> Result<Vec<ConversationInfo>, ServerError>;

    /// Members of a conversation; `None` if it does not exist.
    fn members(&self, conversation: ConversationId) -> Result<Option<Vec<UserId>>, ServerError>;

    /// Applies every op in ONE transaction (one fsync), in order, and
    /// returns one outcome per op. Appends deduplicate on `(sender, id)`
    /// for as long as the message exists: a duplicate gets the original
    /// seq and timestamp with `duplicate: true`. Ids are unique across
    /// senders: an append whose id is already stored (or appended earlier
    /// in the same batch) by another sender is
    /// `Rejected(ErrorCode::IdConflict)`. A new message gets the
    /// conversation's `last_seq + 1`. `Err` means nothing was stored.
    ///
    /// An action (an append with `action`) shares the conversation's
    /// sequence with messages. After dedup it is validated against the
    /// state inside the same transaction, so earlier ops of the batch count:
    /// the target must be a message (not an action) of the same
    /// conversation, else `Rejected(NotFound)`; an edit or delete must come
    /// from the target's sender, else `Rejected(NotAuthor)`; an edit or
    /// reaction on a deleted message is `Rejected(Gone)`, while a delete of
    /// a deleted message is stored (idempotent). A stored delete marks the
    /// target deleted and erases its text and the text of its edits.
    ///
    /// Marks only move forward: `delivered = max(old, min(seq, last_seq))`;
    /// for a read, `read = max(old, min(seq, last_seq))` and then
    /// `delivered = max(delivered, read)`.
    ///
    /// A batch with an op that [`WriteOp::must_be_durable`] is durable when
    /// this returns; a batch of marks only may be made durable later (by
    /// the next durable batch), which spares one fsync per mark report.
    fn apply_batch(&self, ops: &[WriteOp]) -> Result<Vec<WriteOutcome>, ServerError>;

    /// The committed message `sender` stored under `id`, as its original
    /// acknowledgement (`duplicate: true`); `None` if there is none. A read
    /// for the refusal path: a resend of a stored message is answered with
    /// its ack rather than refused.
    fn find_sent(&self, sender: UserId, id: MessageId) -> Result<Option<Appended>, ServerError>;

    /// Up to `limit` messages and actions with `seq > after`, in order,
    /// with sender names and each action's `action`.
    fn messages_after(
        &self,
        conversation: ConversationId,
        after: Seq,
        limit: u32,
    ) -> Result<Vec<WireMessage>, ServerError>;

    /// Every member's marks and the newest seq; `None` if the conversation
    /// does not exist.
    fn marks(
        &self,
        conversation: ConversationId,
    ) -> Result<Option<(Vec<MemberMarks>, Seq)>, ServerError>;

    /// [`ServerStore::messages_after`] and [`ServerStore::marks`] read as
    /// one snapshot; `None` if the conversation does not exist.
    fn page(
        &self,
        conversation: ConversationId,
        after: Seq,
        limit: u32,
    ) -> Result<Option<Page>, ServerError>;
}
