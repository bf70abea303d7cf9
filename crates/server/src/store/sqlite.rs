//! SQLite implementation of [`ServerStore`].
//!
//! One writer connection behind a mutex (SQLite allows one writer anyway, and
//! the group committer is its main user) and a few read-only connections, so
//! that reads in WAL mode never wait for a write. `synchronous=FULL` makes
//! every commit that stores a message fsync the WAL: an acknowledgement
//! means the message is on disk. A batch of marks only is committed with
//! `synchronous=NORMAL` (written, not fsynced): the WAL is appended in
//! order, so the next fsync, of a message batch or of a checkpoint, makes
//! it durable too (see [`WriteOp::must_be_durable`]).
//! A checkpoint thread with its own connection copies the WAL into the
//! database file, off the path of the thread that commits.

use super::{Account, Appended, Page, ServerStore, SessionRecord, WriteOp, WriteOutcome};
use crate::ServerError;
use chatsync_protocol::{
    ActionKind, ActionRef, ConversationId, ConversationInfo, DeviceId, ErrorCode, MemberMarks,
    MessageId, Seq, UserId, WireMessage,
};
use rusqlite::types::Type;
use rusqlite::{
    params, CachedStatement, Connection, OpenFlags, OptionalExtension, TransactionBehavior,
};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;
use uuid::Uuid;

/// Numbered migrations. Never edit a released one; append a new one.
/// `PRAGMA user_version` records how many have been applied.
const MIGRATIONS: &[&str] = &[
    // 1: initial schema.
    r#"
    CREATE TABLE accounts (
        id            BLOB PRIMARY KEY,
        username      TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        created_ms    INTEGER NOT NULL
    );
    CREATE TABLE sessions (
        token_hash  BLOB PRIMARY KEY,
        device      BLOB NOT NULL UNIQUE,
        user        BLOB NOT NULL REFERENCES accounts(id),
        device_name TEXT NOT NULL,
        created_ms  INTEGER NOT NULL
    );
    CREATE TABLE conversations (
        id         BLOB PRIMARY KEY,
        title      TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        last_seq   INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE members (
        conversation BLOB NOT NULL REFERENCES conversations(id),
        user         BLOB NOT NULL REFERENCES accounts(id),
        delivered    INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (conversation, user)
    ) WITHOUT ROWID;
    CREATE INDEX members_by_user ON members(user);
    CREATE TABLE messages (
        conversation BLOB NOT NULL REFERENCES conversations(id),
        seq          INTEGER NOT NULL,
        sender       BLOB NOT NULL REFERENCES accounts(id),
        id           BLOB NOT NULL,
        body         TEXT NOT NULL,
        server_ts    INTEGER NOT NULL,
        PRIMARY KEY (conversation, seq)
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX messages_dedup ON messages(sender, id);
    "#,
    // 2: message ids are unique across senders; appends look them up by id
    // alone. Not UNIQUE: a database written before this rule may hold the
    // same id from two senders, and must still open.
    r#"
    CREATE INDEX messages_by_id ON messages(id);
    "#,
    // 3: actions (edit, delete, react) are rows of `messages` sharing the
    // conversation's seq: `action_kind` is NULL for a plain message;
    // `action_target` is the id of the message acted on; `action_on` is
    // set for a reaction only. `deleted` flags a message whose delete was
    // stored (its body is then erased). Members get a read mark.
    r#"
    ALTER TABLE messages ADD COLUMN action_kind TEXT
        CHECK (action_kind IN ('edit', 'delete', 'react'));
    ALTER TABLE messages ADD COLUMN action_target BLOB;
    ALTER TABLE messages ADD COLUMN action_on INTEGER;
    ALTER TABLE messages ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX messages_by_target ON messages(action_target)
        WHERE action_target IS NOT NULL;
    ALTER TABLE members ADD COLUMN read_seq INTEGER NOT NULL DEFAULT 0;
    "#,
    // 4: `messages` rebuilt (SQLite's documented procedure for a changed
    // constraint), same columns and rows, for a cheaper append:
    // - the CHECK on `action_kind` compares instead of using IN, which
    //   made every insert build and drop a temporary B-tree of the list;
    // - one UNIQUE index on (id, sender) replaces `messages_dedup`
    //   (sender, id) and `messages_by_id` (id): the same uniqueness, the
    //   same lookups by id, one index fewer to update per message.
    r#"
    CREATE TABLE messages_v4 (
        conversation  BLOB NOT NULL REFERENCES conversations(id),
        seq           INTEGER NOT NULL,
        sender        BLOB NOT NULL REFERENCES accounts(id),
        id            BLOB NOT NULL,
        body          TEXT NOT NULL,
        server_ts     INTEGER NOT NULL,
        action_kind   TEXT CHECK (action_kind = 'edit' OR action_kind = 'delete'
                                  OR action_kind = 'react'),
        action_target BLOB,
        action_on     INTEGER,
        deleted       INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (conversation, seq)
    ) WITHOUT ROWID;
    INSERT INTO messages_v4 (conversation, seq, sender, id, body, server_ts,
                             action_kind, action_target, action_on, deleted)
        SELECT conversation, seq, sender, id, body, server_ts,
               action_kind, action_target, action_on, deleted
        FROM messages ORDER BY conversation, seq;
    DROP TABLE messages;
    ALTER TABLE messages_v4 RENAME TO messages;
    CREATE UNIQUE INDEX messages_by_id ON messages(id, sender);
    CREATE INDEX messages_by_target ON messages(action_target)
        WHERE action_target IS NOT NULL;
    "#,
];

/// Read-only connections opened next to the writer on a file database.
const READERS: usize = 2;

/// WAL size, in pages, at which the writer checkpoints by itself. Only a
/// backstop, should the checkpoint thread fall behind (SQLite's default
/// is 1000, which put every checkpoint on the group committer's path).
const BACKSTOP_CHECKPOINT_PAGES: i64 = 20_000;

/// Least time between two checkpoints of the checkpoint thread. Each one
/// fsyncs the database file; spacing them lets one cover many commits.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// The SQLite store. See the module docs.
pub struct SqliteStore {
    writer: Mutex<Connection>,
    /// The writer is at `synchronous=FULL` (every commit fsyncs the WAL)
    /// rather than NORMAL; read and written only under the writer's lock.
    writer_full: AtomicBool,
    /// Empty for an in-memory database, whose contents only the writer
    /// connection can see; reads then share the writer.
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    /// `None` for an in-memory database (no WAL).
    checkpointer: Option<Checkpointer>,
}

/// Checkpoints the WAL on its own thread and connection, so that the
/// thread that commits never copies pages into the database file nor
/// waits for that file's fsync. Durability does not depend on it: a
/// commit is durable once its WAL frames are fsynced, which the writer's
/// `synchronous=FULL` does before the commit returns.
struct Checkpointer {
    shared: Arc<CheckpointShared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct CheckpointShared {
    state: Mutex<CheckpointState>,
    wake: Condvar,
}

#[derive(Default)]
struct CheckpointState {
    /// Something was committed since the last checkpoint started.
    pending: bool,
    /// The store is being dropped.
    stop: bool,
}

impl CheckpointShared {
    fn lock(&self) -> MutexGuard<'_, CheckpointState> {
        // Two flags: always consistent, even after a panic.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Checkpointer {
    fn start(path: &Path) -> Result<Self, ServerError> {
        let conn = Connection::open(path)?;
        configure(&conn)?;
        // A checkpoint fsyncs the WAL before copying it and the database
        // file after, before the WAL may be reused: as safe as the writer.
        conn.pragma_update(None, "synchronous", "FULL")?;
        let shared = Arc::new(CheckpointShared::default());
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("chatsync-ckpt".into())
                .spawn(move || checkpoint_loop(&conn, &shared))?
        };
        Ok(Checkpointer {
            shared,
            thread: Some(thread),
        })
    }

    /// Tells the thread that a transaction was committed.
    fn committed(&self) {
        let mut state = self.shared.lock();
        if !state.pending {
            state.pending = true;
            self.shared.wake.notify_one();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the WAL checkpoint thread panicked");
            }
        }
    }
}

/// Waits for a commit, checkpoints as much of the WAL as no reader still
/// needs (PASSIVE: never blocks the writer or a reader), pauses, repeats;
/// ends once stopped with nothing left to checkpoint.
fn checkpoint_loop(conn: &Connection, shared: &CheckpointShared) {
    loop {
        {
            let mut state = shared.lock();
            while !state.pending && !state.stop {
                state = shared.wake.wait(state).unwrap_or_else(|p| p.into_inner());
            }
            // When stopping, a last checkpoint still covers what was
            // committed since the previous one.
            if !state.pending {
                return;
            }
            state.pending = false;
        }
        let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        });
        match done {
            Ok((log, copied)) => tracing::trace!(log, copied, "WAL checkpoint"),
            // The next commit triggers another attempt; meanwhile the WAL
            // just grows (up to the writer's backstop).
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
        }
        let state = shared.lock();
        let _ = shared
            .wake
            .wait_timeout_while(state, CHECKPOINT_EVERY, |s| !s.stop);
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` and brings its
    /// schema up to date.
    pub fn open(path: &Path) -> Result<Self, ServerError> {
        let mut writer = Connection::open(path)?;
        configure(&writer)?;
        // WAL lets readers proceed during a write; FULL fsyncs each commit.
        writer.pragma_update(None, "journal_mode", "WAL")?;
        writer.pragma_update(None, "synchronous", "FULL")?;
        // Checkpoints are the checkpoint thread's job (see `Checkpointer`).
        writer.pragma_update(None, "wal_autocheckpoint", BACKSTOP_CHECKPOINT_PAGES)?;
        migrate(&mut writer)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let reader = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            configure(&reader)?;
            readers.push(Mutex::new(reader));
        }
        Ok(SqliteStore {
            writer: Mutex::new(writer),
            writer_full: AtomicBool::new(true),
            readers,
            next_reader: AtomicUsize::new(0),
            checkpointer: Some(Checkpointer::start(path)?),
        })
    }

    /// A fresh private in-memory database, for tests.
    pub fn open_in_memory() -> Result<Self, ServerError> {
        let mut writer = Connection::open_in_memory()?;
        configure(&writer)?;
        migrate(&mut writer)?;
        Ok(SqliteStore {
            writer: Mutex::new(writer),
            // An in-memory database never syncs; this only records what
            // batches asked for.
            writer_full: AtomicBool::new(true),
            readers: Vec::new(),
            next_reader: AtomicUsize::new(0),
            checkpointer: None,
        })
    }

    fn lock_writer(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves no open transaction behind
        // (rusqlite rolls back on drop), so a poisoned lock is still usable.
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The writer, set to fsync every commit (a batch of marks may have
    /// left it at NORMAL).
    fn write_conn(&self) -> Result<MutexGuard<'_, Connection>, ServerError> {
        let conn = self.lock_writer();
        self.fsync_commits(&conn, true)?;
        Ok(conn)
    }

    /// Sets the writer's `synchronous` level for its next transactions, if
    /// it changes: FULL fsyncs every commit, NORMAL leaves that to a later
    /// commit or checkpoint. `writer` is the locked writer connection.
    fn fsync_commits(&self, writer: &Connection, full: bool) -> Result<(), ServerError> {
        if self.writer_full.load(Ordering::Relaxed) != full {
            let level = if full { "FULL" } else { "NORMAL" };
            writer.pragma_update(None, "synchronous", level)?;
            self.writer_full.store(full, Ordering::Relaxed);
        }
        Ok(())
    }

    fn read_conn(&self) -> MutexGuard<'_, Connection> {
        if self.readers.is_empty() {
            return self.lock_writer();
        }
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        for i in 0..self.readers.len() {
            if let Ok(guard) = self.readers[(start + i) % self.readers.len()].try_lock() {
                return guard;
            }
        }
        self.readers[start % self.readers.len()]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}

fn configure(conn: &Connection) -> Result<(), ServerError> {
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

/// Applies the missing migrations in one transaction, so a crash leaves
/// the schema either before or after, never half-way.
fn migrate(conn: &mut Connection) -> Result<(), ServerError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let current: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if current > known {
        return Err(ServerError::SchemaTooNew {
            found: current,
            supported: known,
        });
    }
    for sql in MIGRATIONS.iter().skip(current as usize) {
        tx.execute_batch(sql)?;
    }
    // PRAGMA does not take parameters; `known` is a constant we computed.
    tx.pragma_update(None, "user_version", known)?;
    tx.commit()?;
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn seq_of(v: i64) -> Seq {
    Seq(u64::try_from(v).unwrap_or(0))
}

fn seq_sql(s: Seq) -> i64 {
    i64::try_from(s.0).unwrap_or(i64::MAX)
}

fn uuid_at(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<Uuid> {
    let bytes: [u8; 16] = row.get(idx)?;
    Ok(Uuid::from_bytes(bytes))
}

/// The stored form of an action kind: `action_kind` and `action_on`.
fn kind_sql(kind: ActionKind) -> (&'static str, Option<bool>) {
    match kind {
        ActionKind::Edit => ("edit", None),
        ActionKind::Delete => ("delete", None),
        ActionKind::React { on } => ("react", Some(on)),
    }
}

/// The action stored in columns `idx` (`action_kind`), `idx + 1`
/// (`action_target`) and `idx + 2` (`action_on`); `None` for a message.
fn action_at(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<Option<ActionRef>> {
    let Some(kind) = row.get::<_, Option<String>>(idx)? else {
        return Ok(None);
    };
    let target = MessageId(uuid_at(row, idx + 1)?);
    let on: Option<bool> = row.get(idx + 2)?;
    let kind = match (kind.as_str(), on) {
        ("edit", _) => ActionKind::Edit,
        ("delete", _) => ActionKind::Delete,
        ("react", Some(on)) => ActionKind::React { on },
        _ => {
            return Err(rusqlite::Error::FromSqlConversionFailure(
                idx,
                Type::Text,
                format!("unknown stored action {kind:?} (on: {on:?})").into(),
            ))
        }
    };
    Ok(Some(ActionRef { target, kind }))
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

fn read_members(
    conn: &Connection,
    conversation: ConversationId,
) -> rusqlite::Result<Vec<MemberMarks>> {
    let mut stmt = conn.prepare_cached(
        "SELECT m.user, a.username, m.delivered, m.read_seq FROM members m
         JOIN accounts a ON a.id = m.user
         WHERE m.conversation = ?1 ORDER BY a.username",
    )?;
    let rows = stmt.query_map(params![conversation.0.as_bytes()], |r| {
        Ok(MemberMarks {
            user: UserId(uuid_at(r, 0)?),
            username: r.get(1)?,
            delivered: seq_of(r.get(2)?),
            read: seq_of(r.get(3)?),
        })
    })?;
    rows.collect()
}

fn read_conversation(
    conn: &Connection,
    id: ConversationId,
) -> rusqlite::Result<Option<ConversationInfo>> {
    let head: Option<(String, i64)> = conn
        .prepare_cached("SELECT title, last_seq FROM conversations WHERE id = ?1")?
        .query_row(params![id.0.as_bytes()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((title, last_seq)) = head else {
        return Ok(None);
    };
    Ok(Some(ConversationInfo {
        id,
        title,
        members: read_members(conn, id)?,
        last_seq: seq_of(last_seq),
    }))
}

fn read_last_seq(conn: &Connection, id: ConversationId) -> rusqlite::Result<Option<Seq>> {
    conn.prepare_cached("SELECT last_seq FROM conversations WHERE id = ?1")?
        .query_row(params![id.0.as_bytes()], |r| r.get(0).map(seq_of))
        .optional()
}

fn read_messages(
    conn: &Connection,
    conversation: ConversationId,
    after: Seq,
    limit: u32,
) -> rusqlite::Result<Vec<WireMessage>> {
    let mut stmt = conn.prepare_cached(
        "SELECT m.seq, m.sender, a.username, m.id, m.body, m.server_ts,
                m.action_kind, m.action_target, m.action_on
         FROM messages m
         JOIN accounts a ON a.id = m.sender
         WHERE m.conversation = ?1 AND m.seq > ?2 ORDER BY m.seq LIMIT ?3",
    )?;
    let rows = stmt.query_map(
        params![conversation.0.as_bytes(), seq_sql(after), i64::from(limit)],
        |r| {
            Ok(WireMessage {
                id: MessageId(uuid_at(r, 3)?),
                conversation,
                seq: seq_of(r.get(0)?),
                sender: UserId(uuid_at(r, 1)?),
                sender_name: r.get(2)?,
                body: r.get(4)?,
                server_ts: r.get(5)?,
                action: action_at(r, 6)?,
            })
        },
    )?;
    rows.collect()
}

/// What one batch's transaction knows about the conversations it touches:
/// each `last_seq` is read from the table once, advanced in memory by
/// every append, and written back once, just before the commit. Everything
/// inside the batch (sequence numbers, marks clamped to `last_seq`) reads
/// the in-memory value, so it sees the batch's earlier appends.
#[derive(Default)]
struct LastSeqs {
    /// `None`: the conversation does not exist (it cannot appear during
    /// the batch, whose transaction holds the writer connection).
    convs: HashMap<ConversationId, Option<LastSeq>>,
}

#[derive(Clone, Copy)]
struct LastSeq {
    /// As stored in `conversations`.
    stored: Seq,
    /// After the batch's appends so far.
    current: Seq,
}

impl LastSeqs {
    /// The conversation's `last_seq` as of the batch's writes so far;
    /// `None` if it does not exist.
    fn get(
        &mut self,
        tx: &rusqlite::Transaction<'_>,
        conversation: ConversationId,
    ) -> rusqlite::Result<Option<Seq>> {
        if let Some(known) = self.convs.get(&conversation) {
            return Ok(known.map(|l| l.current));
        }
        let stored = read_last_seq(tx, conversation)?;
        self.convs.insert(
            conversation,
            stored.map(|s| LastSeq {
                stored: s,
                current: s,
            }),
        );
        Ok(stored)
    }

    /// Records that `seq` was just taken in `conversation` (read before
    /// with [`LastSeqs::get`]).
    fn advance(&mut self, conversation: ConversationId, seq: Seq) {
        if let Some(Some(l)) = self.convs.get_mut(&conversation) {
            l.current = seq;
        }
    }

    /// Writes every moved `last_seq` back to `conversations`.
    fn write_back(&self, tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
        let mut update =
            tx.prepare_cached("UPDATE conversations SET last_seq = ?2 WHERE id = ?1")?;
        for (conversation, l) in &self.convs {
            if let Some(l) = l {
                if l.current != l.stored {
                    update.execute(params![conversation.0.as_bytes(), seq_sql(l.current)])?;
                }
            }
        }
        Ok(())
    }
}

/// What `(sender, id)` already is in the store, if anything.
enum Existing {
    /// This sender stored it: its original place.
    Own(Appended),
    /// Only other senders use this id.
    Other,
}

/// Looks a message id up for dedup, by the index on `(id, sender)`: no
/// sort, and for a new id (the common case) a single index probe that
/// finds nothing. It sees earlier writes of the same batch too, since they are
/// in this transaction. Should a database from before ids were unique
/// across senders hold the id several times, the sender's own copy wins.
fn existing(
    probe: &mut CachedStatement<'_>,
    sender: UserId,
    id: MessageId,
) -> rusqlite::Result<Option<Existing>> {
    let mut rows = probe.query(params![id.0.as_bytes()])?;
    let mut found = None;
    while let Some(r) = rows.next()? {
        if uuid_at(r, 0)? == sender.0 {
            return Ok(Some(Existing::Own(Appended {
                conversation: ConversationId(uuid_at(r, 1)?),
                seq: seq_of(r.get(2)?),
                server_ts: r.get(3)?,
                duplicate: true,
            })));
        }
        found = Some(Existing::Other);
    }
    Ok(found)
}
/// The dedup probe and the insert of an append, prepared once per batch:
/// taking them from rusqlite's statement cache for every message (a hash
/// of the SQL text, then the cache's bookkeeping when the handle is
/// dropped) cost about a seventh of the group-commit thread's CPU at max
/// rate.
struct AppendStatements<'c> {
    conn: &'c Connection,
    probe: Option<CachedStatement<'c>>,
    insert: Option<CachedStatement<'c>>,
}

impl<'c> AppendStatements<'c> {
    fn new(conn: &'c Connection) -> Self {
        AppendStatements {
            conn,
            probe: None,
            insert: None,
        }
    }

    /// Looks a message id up (see [`existing`]).
    fn probe(&mut self) -> rusqlite::Result<&mut CachedStatement<'c>> {
        cached(
            &mut self.probe,
            self.conn,
            "SELECT sender, conversation, seq, server_ts FROM messages WHERE id = ?1",
        )
    }

    /// Inserts a message or an action.
    fn insert(&mut self) -> rusqlite::Result<&mut CachedStatement<'c>> {
        cached(
            &mut self.insert,
            self.conn,
            "INSERT INTO messages (conversation, seq, sender, id, body, server_ts,
                                   action_kind, action_target, action_on)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
    }
}

/// The statement in `slot`, prepared (through the cache) on first use.
fn cached<'a, 'c>(
    slot: &'a mut Option<CachedStatement<'c>>,
    conn: &'c Connection,
    sql: &str,
) -> rusqlite::Result<&'a mut CachedStatement<'c>> {
    match slot {
        Some(stmt) => Ok(stmt),
        None => Ok(slot.insert(conn.prepare_cached(sql)?)),
    }
}

fn apply_one(
    tx: &rusqlite::Transaction<'_>,
    stmts: &mut AppendStatements<'_>,
    seqs: &mut LastSeqs,
    op: &WriteOp,
    now: i64,
) -> rusqlite::Result<WriteOutcome> {
    match op {
        WriteOp::Append {
            sender,
            id,
            conversation,
            body,
            action,
        } => {
            // One lookup by id decides both dedup and conflict.
            match existing(stmts.probe()?, *sender, *id)? {
                Some(Existing::Own(original)) => return Ok(WriteOutcome::Appended(original)),
                Some(Existing::Other) => return Ok(WriteOutcome::Rejected(ErrorCode::IdConflict)),
                None => {}
            }
            let Some(last) = seqs.get(tx, *conversation)? else {
                return Ok(WriteOutcome::Rejected(ErrorCode::UnknownConversation));
            };
            // Validated after dedup (a resend gets its original ack even if
            // the target was deleted since) and before a seq is taken (a
            // refused action leaves no gap).
            let target_seq = match action {
                None => None,
                Some(action) => match check_action(tx, *sender, *conversation, action)? {
                    Ok(target_seq) => Some(target_seq),
                    Err(code) => return Ok(WriteOutcome::Rejected(code)),
                },
            };
            let seq = last.next();
            let (kind, on) = match action {
                Some(a) => {
                    let (kind, on) = kind_sql(a.kind);
                    (Some(kind), on)
                }
                None => (None, None),
            };
            let target = action.as_ref().map(|a| a.target.0.as_bytes().to_vec());
            stmts.insert()?.execute(params![
                conversation.0.as_bytes(),
                seq_sql(seq),
                sender.0.as_bytes(),
                id.0.as_bytes(),
                body,
                now,
                kind,
                target,
                on
            ])?;
            // `conversations.last_seq` is written once, at the batch's end.
            seqs.advance(*conversation, seq);
            if let (Some(action), Some(target_seq)) = (action, target_seq) {
                if action.kind == ActionKind::Delete {
                    erase(tx, *conversation, target_seq, action.target)?;
                }
            }
            Ok(WriteOutcome::Appended(Appended {
                conversation: *conversation,
                seq,
                server_ts: now,
                duplicate: false,
            }))
        }
        WriteOp::Delivered {
            conversation,
            user,
            seq,
        } => move_marks(tx, seqs, *conversation, *user, *seq, false),
        WriteOp::Read {
            conversation,
            user,
            seq,
        } => move_marks(tx, seqs, *conversation, *user, *seq, true),
    }
}

/// Validates an action against its target, inside the write transaction:
/// the seq of the target, or why the action is refused. Checked in this
/// order: the target is a message (not an action) of `conversation`
/// (`NotFound`); an edit or delete comes from its author (`NotAuthor`); an
/// edit or reaction does not target a deleted message (`Gone`). A delete
/// of a deleted message passes: a second device may delete too.
fn check_action(
    tx: &rusqlite::Transaction<'_>,
    sender: UserId,
    conversation: ConversationId,
    action: &ActionRef,
) -> rusqlite::Result<Result<Seq, ErrorCode>> {
    // Should a database from before ids were unique across senders hold
    // the id twice in this conversation, the sender's own copy is taken,
    // else the earliest. Picked here rather than by an ORDER BY, which
    // would build a temporary B-tree for every action.
    let mut stmt = tx.prepare_cached(
        "SELECT sender, seq, deleted FROM messages
         WHERE id = ?1 AND conversation = ?2 AND action_kind IS NULL",
    )?;
    let mut rows = stmt.query(params![
        action.target.0.as_bytes(),
        conversation.0.as_bytes()
    ])?;
    let mut target: Option<(Uuid, i64, bool)> = None;
    while let Some(r) = rows.next()? {
        let row: (Uuid, i64, bool) = (uuid_at(r, 0)?, r.get(1)?, r.get(2)?);
        if row.0 == sender.0 {
            target = Some(row);
            break;
        }
        match target {
            Some(earliest) if earliest.1 <= row.1 => {}
            _ => target = Some(row),
        }
    }
    let Some((author, seq, deleted)) = target else {
        return Ok(Err(ErrorCode::NotFound));
    };
    let by_author = author == sender.0;
    Ok(match action.kind {
        ActionKind::Edit | ActionKind::Delete if !by_author => Err(ErrorCode::NotAuthor),
        ActionKind::Edit | ActionKind::React { .. } if deleted => Err(ErrorCode::Gone),
        _ => Ok(seq_of(seq)),
    })
}

/// Marks the message at `seq` deleted and erases its text and the text of
/// every edit of it (privacy: no version of the text stays on the server).
fn erase(
    tx: &rusqlite::Transaction<'_>,
    conversation: ConversationId,
    seq: Seq,
    target: MessageId,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE messages SET body = '', deleted = 1 WHERE conversation = ?1 AND seq = ?2",
    )?
    .execute(params![conversation.0.as_bytes(), seq_sql(seq)])?;
    tx.prepare_cached(
        "UPDATE messages SET body = ''
         WHERE action_target = ?1 AND conversation = ?2 AND action_kind = 'edit'",
    )?
    .execute(params![target.0.as_bytes(), conversation.0.as_bytes()])?;
    Ok(())
}

/// Moves a member's marks forward. A delivery report moves `delivered`; a
/// read moves `read` and then `delivered` up to it (reading implies
/// having). Both are clamped to `last_seq`, and a late, repeated or lower
/// report never moves a mark back.
fn move_marks(
    tx: &rusqlite::Transaction<'_>,
    seqs: &mut LastSeqs,
    conversation: ConversationId,
    user: UserId,
    seq: Seq,
    read: bool,
) -> rusqlite::Result<WriteOutcome> {
    // Clamped against the batch's own appends too.
    let Some(last) = seqs.get(tx, conversation)? else {
        return Ok(WriteOutcome::Rejected(ErrorCode::UnknownConversation));
    };
    let old: Option<(i64, i64)> = tx
        .prepare_cached(
            "SELECT delivered, read_seq FROM members WHERE conversation = ?1 AND user = ?2",
        )?
        .query_row(params![conversation.0.as_bytes(), user.0.as_bytes()], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    let Some((old_delivered, old_read)) = old else {
        return Ok(WriteOutcome::Rejected(ErrorCode::NotMember));
    };
    let (old_delivered, old_read) = (seq_of(old_delivered), seq_of(old_read));
    // A client cannot claim messages that do not exist yet.
    let claimed = seq.min(last);
    let (delivered, new_read) = if read {
        let new_read = old_read.max(claimed);
        (old_delivered.max(new_read), new_read)
    } else {
        (old_delivered.max(claimed), old_read)
    };
    let changed = (delivered, new_read) != (old_delivered, old_read);
    if changed {
        tx.prepare_cached(
            "UPDATE members SET delivered = ?3, read_seq = ?4
             WHERE conversation = ?1 AND user = ?2",
        )?
        .execute(params![
            conversation.0.as_bytes(),
            user.0.as_bytes(),
            seq_sql(delivered),
            seq_sql(new_read)
        ])?;
    }
    Ok(WriteOutcome::Marks {
        delivered,
        read: new_read,
        changed,
    })
}

impl ServerStore for SqliteStore {
    fn create_account(&self, username: &str, password_hash: &str) -> Result<UserId, ServerError> {
        let id = UserId::new();
        let conn = self.write_conn()?;
        match conn.execute(
            "INSERT INTO accounts (id, username, password_hash, created_ms) VALUES (?1, ?2, ?3, ?4)",
            params![id.0.as_bytes(), username, password_hash, now_ms()],
        ) {
            Ok(_) => Ok(id),
            Err(e) if is_unique_violation(&e) => Err(ServerError::UsernameTaken),
            Err(e) => Err(e.into()),
        }
    }

    fn account_by_name(&self, username: &str) -> Result<Option<Account>, ServerError> {
        let conn = self.read_conn();
        let account = conn
            .prepare_cached("SELECT id, username, password_hash FROM accounts WHERE username = ?1")?
            .query_row(params![username], |r| {
                Ok(Account {
                    id: UserId(uuid_at(r, 0)?),
                    username: r.get(1)?,
                    password_hash: r.get(2)?,
                })
            })
            .optional()?;
        Ok(account)
    }

    fn create_session(
        &self,
        user: UserId,
        device_name: &str,
        token_hash: &[u8; 32],
    ) -> Result<DeviceId, ServerError> {
        let device = DeviceId::new();
        self.write_conn()?.execute(
            "INSERT INTO sessions (token_hash, device, user, device_name, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                token_hash,
                device.0.as_bytes(),
                user.0.as_bytes(),
                device_name,
                now_ms()
            ],
        )?;
        Ok(device)
    }

    fn session_by_token_hash(
        &self,
        token_hash: &[u8; 32],
    ) -> Result<Option<SessionRecord>, ServerError> {
        let conn = self.read_conn();
        let session = conn
            .prepare_cached(
                "SELECT s.device, s.user, a.username, s.token_hash, s.created_ms FROM sessions s
                 JOIN accounts a ON a.id = s.user WHERE s.token_hash = ?1",
            )?
            .query_row(params![token_hash], |r| {
                Ok(SessionRecord {
                    device: DeviceId(uuid_at(r, 0)?),
                    user: UserId(uuid_at(r, 1)?),
                    username: r.get(2)?,
                    token_hash: r.get(3)?,
                    created_ms: r.get(4)?,
                })
            })
            .optional()?;
        Ok(session)
    }

    fn revoke_session(&self, token_hash: &[u8; 32]) -> Result<bool, ServerError> {
        let deleted = self.write_conn()?.execute(
            "DELETE FROM sessions WHERE token_hash = ?1",
            params![token_hash],
        )?;
        Ok(deleted > 0)
    }

    fn create_conversation(
        &self,
        title: &str,
        members: &[UserId],
    ) -> Result<ConversationInfo, ServerError> {
        let id = ConversationId::new();
        let mut conn = self.write_conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO conversations (id, title, created_ms, last_seq) VALUES (?1, ?2, ?3, 0)",
            params![id.0.as_bytes(), title, now_ms()],
        )?;
        {
            let mut add = tx.prepare_cached(
                "INSERT OR IGNORE INTO members (conversation, user, delivered) VALUES (?1, ?2, 0)",
            )?;
            for member in members {
                add.execute(params![id.0.as_bytes(), member.0.as_bytes()])?;
            }
        }
        let info = read_conversation(&tx, id)?
            .ok_or_else(|| ServerError::Corrupt("conversation vanished while created".into()))?;
        tx.commit()?;
        Ok(info)
    }

    fn conversations_of(&self, user: UserId) -> Result<Vec<ConversationInfo>, ServerError> {
        let mut conn = self.read_conn();
        let tx = conn.transaction()?;
        let ids: Vec<Uuid> = {
            let mut stmt = tx.prepare_cached(
                "SELECT c.id FROM conversations c JOIN members m ON m.conversation = c.id
                 WHERE m.user = ?1 ORDER BY c.created_ms, c.id",
            )?;
            let rows = stmt.query_map(params![user.0.as_bytes()], |r| uuid_at(r, 0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(info) = read_conversation(&tx, ConversationId(id))? {
                out.push(info);
            }
        }
        Ok(out)
    }

    fn members(&self, conversation: ConversationId) -> Result<Option<Vec<UserId>>, ServerError> {
        let mut conn = self.read_conn();
        let tx = conn.transaction()?;
        if read_last_seq(&tx, conversation)?.is_none() {
            return Ok(None);
        }
        let mut stmt = tx.prepare_cached("SELECT user FROM members WHERE conversation = ?1")?;
        let rows = stmt.query_map(params![conversation.0.as_bytes()], |r| {
            uuid_at(r, 0).map(UserId)
        })?;
        Ok(Some(rows.collect::<rusqlite::Result<_>>()?))
    }

    fn apply_batch(&self, ops: &[WriteOp]) -> Result<Vec<WriteOutcome>, ServerError> {
        let mut conn = self.lock_writer();
        self.fsync_commits(&conn, ops.iter().any(WriteOp::must_be_durable))?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = now_ms();
        let mut seqs = LastSeqs::default();
        let mut outcomes = Vec::with_capacity(ops.len());
        let mut stmts = AppendStatements::new(&tx);
        for op in ops {
            outcomes.push(apply_one(&tx, &mut stmts, &mut seqs, op, now)?);
        }
        drop(stmts);
        seqs.write_back(&tx)?;
        // The one fsync of a batch with a message happens here; until it
        // returns, no outcome leaves this function, so no ack precedes
        // durability.
        tx.commit()?;
        drop(conn);
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.committed();
        }
        Ok(outcomes)
    }

    fn find_sent(&self, sender: UserId, id: MessageId) -> Result<Option<Appended>, ServerError> {
        let conn = self.read_conn();
        let found = conn
            .prepare_cached(
                "SELECT conversation, seq, server_ts FROM messages WHERE sender = ?1 AND id = ?2",
            )?
            .query_row(params![sender.0.as_bytes(), id.0.as_bytes()], |r| {
                Ok(Appended {
                    conversation: ConversationId(uuid_at(r, 0)?),
                    seq: seq_of(r.get(1)?),
                    server_ts: r.get(2)?,
                    duplicate: true,
                })
            })
            .optional()?;
        Ok(found)
    }

    fn messages_after(
        &self,
        conversation: ConversationId,
        after: Seq,
        limit: u32,
    ) -> Result<Vec<WireMessage>, ServerError> {
        Ok(read_messages(
            &self.read_conn(),
            conversation,
            after,
            limit,
        )?)
    }

    fn marks(
        &self,
        conversation: ConversationId,
    ) -> Result<Option<(Vec<MemberMarks>, Seq)>, ServerError> {
        let mut conn = self.read_conn();
        let tx = conn.transaction()?;
        let Some(last) = read_last_seq(&tx, conversation)? else {
            return Ok(None);
        };
        Ok(Some((read_members(&tx, conversation)?, last)))
    }

    fn page(
        &self,
        conversation: ConversationId,
        after: Seq,
        limit: u32,
    ) -> Result<Option<Page>, ServerError> {
        let mut conn = self.read_conn();
        // One read transaction: messages, marks and last_seq from the same
        // snapshot, so last_seq is never behind the page.
        let tx = conn.transaction()?;
        let Some(last_seq) = read_last_seq(&tx, conversation)? else {
            return Ok(None);
        };
        let messages = read_messages(&tx, conversation, after, limit)?;
        let members = read_members(&tx, conversation)?;
        Ok(Some(Page {
            messages,
            members,
            last_seq,
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn store_with_pair() -> (SqliteStore, UserId, UserId, ConversationId) {
        let store = SqliteStore::open_in_memory().unwrap();
        let a = store.create_account("alice", "h").unwrap();
        let b = store.create_account("bob", "h").unwrap();
        let conv = store.create_conversation("t", &[a, b]).unwrap();
        (store, a, b, conv.id)
    }

    fn append(sender: UserId, id: MessageId, conversation: ConversationId, body: &str) -> WriteOp {
        WriteOp::Append {
            sender,
            id,
            conversation,
            body: body.into(),
            action: None,
        }
    }

    fn act(
        sender: UserId,
        id: MessageId,
        conversation: ConversationId,
        body: &str,
        target: MessageId,
        kind: ActionKind,
    ) -> WriteOp {
        WriteOp::Append {
            sender,
            id,
            conversation,
            body: body.into(),
            action: Some(ActionRef { target, kind }),
        }
    }

    fn marks(delivered: u64, read: u64, changed: bool) -> WriteOutcome {
        WriteOutcome::Marks {
            delivered: Seq(delivered),
            read: Seq(read),
            changed,
        }
    }

    fn appended(o: &WriteOutcome) -> Appended {
        match o {
            WriteOutcome::Appended(a) => *a,
            other => panic!("expected appended, got {other:?}"),
        }
    }

    #[test]
    fn username_is_unique() {
        let store = SqliteStore::open_in_memory().unwrap();
        store.create_account("alice", "h").unwrap();
        assert!(matches!(
            store.create_account("alice", "h2"),
            Err(ServerError::UsernameTaken)
        ));
    }

    #[test]
    fn seqs_are_consecutive_per_conversation() {
        let (store, a, b, c1) = store_with_pair();
        let c2 = store.create_conversation("other", &[a]).unwrap().id;
        let ops = vec![
            append(a, MessageId::new(), c1, "1"),
            append(b, MessageId::new(), c1, "2"),
            append(a, MessageId::new(), c2, "x"),
            append(a, MessageId::new(), c1, "3"),
        ];
        let out = store.apply_batch(&ops).unwrap();
        let seqs: Vec<u64> = out.iter().map(|o| appended(o).seq.0).collect();
        assert_eq!(seqs, vec![1, 2, 1, 3]);
        let more = store
            .apply_batch(&[append(b, MessageId::new(), c1, "4")])
            .unwrap();
        assert_eq!(appended(&more[0]).seq, Seq(4));
        let msgs = store.messages_after(c1, Seq(1), 10).unwrap();
        assert_eq!(
            msgs.iter().map(|m| m.seq.0).collect::<Vec<_>>(),
            vec![2, 3, 4]
        );
        assert_eq!(msgs[0].sender_name, "bob");
        assert_eq!(msgs[0].body, "2");
    }

    #[test]
    fn duplicates_get_the_original_ack() {
        let (store, a, b, c) = store_with_pair();
        let id = MessageId::new();
        let first = appended(&store.apply_batch(&[append(a, id, c, "hi")]).unwrap()[0]);
        assert!(!first.duplicate);
        // In the same batch as other writes, and much later.
        let out = store
            .apply_batch(&[
                append(a, MessageId::new(), c, "other"),
                append(a, id, c, "changed body"),
                append(a, id, c, "again"),
            ])
            .unwrap();
        let dup = appended(&out[1]);
        assert!(dup.duplicate);
        assert_eq!((dup.seq, dup.server_ts), (first.seq, first.server_ts));
        assert!(appended(&out[2]).duplicate);
        // The same id from another sender is refused, later or in the
        // same batch as the original, and the rest of the batch applies.
        let out = store.apply_batch(&[append(b, id, c, "bob's")]).unwrap();
        assert_eq!(out[0], WriteOutcome::Rejected(ErrorCode::IdConflict));
        let fresh = MessageId::new();
        let out = store
            .apply_batch(&[
                append(a, fresh, c, "new"),
                append(b, fresh, c, "shadow"),
                append(b, MessageId::new(), c, "fine"),
            ])
            .unwrap();
        assert_eq!(appended(&out[0]).seq, Seq(3));
        assert_eq!(out[1], WriteOutcome::Rejected(ErrorCode::IdConflict));
        assert_eq!(appended(&out[2]).seq, Seq(4));
        let all = store.messages_after(c, Seq::ZERO, 100).unwrap();
        assert_eq!(all.len(), 4);
        assert_eq!(all[0].body, "hi");
        assert_eq!(all[2].body, "new");
        // The read used on the refusal path finds only the sender's own.
        let own = store.find_sent(a, id).unwrap().unwrap();
        assert_eq!((own.seq, own.server_ts), (first.seq, first.server_ts));
        assert!(store.find_sent(b, id).unwrap().is_none());
    }

    /// A database at schema `version` (migrations applied by hand, as an
    /// older server left it) holding conversation `c` with `last_seq` and
    /// two member accounts, alice and bob.
    fn legacy_db(
        path: &Path,
        version: usize,
        c: ConversationId,
        last_seq: i64,
        users: [UserId; 2],
    ) -> Connection {
        let mut conn = Connection::open(path).unwrap();
        let tx = conn.transaction().unwrap();
        for sql in &MIGRATIONS[..version] {
            tx.execute_batch(sql).unwrap();
        }
        tx.pragma_update(None, "user_version", version as i64)
            .unwrap();
        tx.execute(
            "INSERT INTO conversations (id, title, created_ms, last_seq)
             VALUES (?1, 't', 1, ?2)",
            params![c.0.as_bytes(), last_seq],
        )
        .unwrap();
        for (user, name) in users.into_iter().zip(["alice", "bob"]) {
            tx.execute(
                "INSERT INTO accounts (id, username, password_hash, created_ms)
                 VALUES (?1, ?2, 'h', 1)",
                params![user.0.as_bytes(), name],
            )
            .unwrap();
            tx.execute(
                "INSERT INTO members (conversation, user, delivered) VALUES (?1, ?2, 0)",
                params![c.0.as_bytes(), user.0.as_bytes()],
            )
            .unwrap();
        }
        tx.commit().unwrap();
        conn
    }

    #[test]
    fn a_database_with_legacy_cross_sender_duplicates_still_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        let (a, b, c, id) = (
            UserId::new(),
            UserId::new(),
            ConversationId::new(),
            MessageId::new(),
        );
        {
            // Schema 1 only, with the same id stored by two senders, as an
            // older server allowed. Rows written by hand, in that shape.
            let conn = legacy_db(&path, 1, c, 2, [a, b]);
            for (seq, sender) in [(1, a), (2, b)] {
                conn.execute(
                    "INSERT INTO messages (conversation, seq, sender, id, body, server_ts)
                     VALUES (?1, ?2, ?3, ?4, 'old', 1)",
                    params![c.0.as_bytes(), seq, sender.0.as_bytes(), id.0.as_bytes()],
                )
                .unwrap();
            }
        }
        // Migration 2 applies (its index is not unique) and each legacy
        // owner still gets its own original ack; a third sender conflicts.
        let store = SqliteStore::open(&path).unwrap();
        let carol = store.create_account("carol", "h").unwrap();
        let out = store
            .apply_batch(&[
                append(b, id, c, "x"),
                append(a, id, c, "x"),
                append(carol, id, c, "x"),
            ])
            .unwrap();
        assert_eq!(appended(&out[0]).seq, Seq(2));
        assert_eq!(appended(&out[1]).seq, Seq(1));
        assert_eq!(out[2], WriteOutcome::Rejected(ErrorCode::IdConflict));
        // An action on the ambiguous id targets the actor's own copy.
        let out = store
            .apply_batch(&[act(b, MessageId::new(), c, "mine", id, ActionKind::Edit)])
            .unwrap();
        assert_eq!(appended(&out[0]).seq, Seq(3));
        // Anyone else's action takes the earliest copy: once that one is
        // deleted, a reaction to the id is refused as gone, while its other
        // owner still reacts to their own copy.
        Connection::open(&path)
            .unwrap()
            .execute("UPDATE messages SET deleted = 1 WHERE seq = 1", [])
            .unwrap();
        let like = ActionKind::React { on: true };
        let out = store
            .apply_batch(&[
                act(carol, MessageId::new(), c, "👍", id, like),
                act(b, MessageId::new(), c, "👍", id, like),
            ])
            .unwrap();
        assert_eq!(out[0], WriteOutcome::Rejected(ErrorCode::Gone));
        assert_eq!(appended(&out[1]).seq, Seq(4));
    }

    #[test]
    fn unknown_conversation_is_rejected_without_failing_the_batch() {
        let (store, a, _, c) = store_with_pair();
        let out = store
            .apply_batch(&[
                append(a, MessageId::new(), ConversationId::new(), "x"),
                append(a, MessageId::new(), c, "y"),
            ])
            .unwrap();
        assert_eq!(
            out[0],
            WriteOutcome::Rejected(ErrorCode::UnknownConversation)
        );
        assert_eq!(appended(&out[1]).seq, Seq(1));
    }

    #[test]
    fn delivered_only_moves_forward_and_is_clamped() {
        let (store, a, b, c) = store_with_pair();
        let ops: Vec<_> = (0..3)
            .map(|i| append(a, MessageId::new(), c, &i.to_string()))
            .collect();
        store.apply_batch(&ops).unwrap();
        let d = |seq| WriteOp::Delivered {
            conversation: c,
            user: b,
            seq: Seq(seq),
        };
        let out = store.apply_batch(&[d(2), d(1), d(99), d(3)]).unwrap();
        assert_eq!(
            out,
            vec![
                marks(2, 0, true),
                marks(2, 0, false),
                marks(3, 0, true),
                marks(3, 0, false),
            ]
        );
        let outsider = store.create_account("carol", "h").unwrap();
        let out = store
            .apply_batch(&[WriteOp::Delivered {
                conversation: c,
                user: outsider,
                seq: Seq(1),
            }])
            .unwrap();
        assert_eq!(out[0], WriteOutcome::Rejected(ErrorCode::NotMember));
        let (marks, last) = store.marks(c).unwrap().unwrap();
        assert_eq!(last, Seq(3));
        let bob = marks.iter().find(|m| m.user == b).unwrap();
        assert_eq!(bob.delivered, Seq(3));
    }

    #[test]
    fn sessions_and_listing() {
        let (store, a, b, c) = store_with_pair();
        let hash = [7u8; 32];
        let device = store.create_session(a, "laptop", &hash).unwrap();
        let s = store.session_by_token_hash(&hash).unwrap().unwrap();
        assert_eq!(
            (s.device, s.user, s.username.as_str()),
            (device, a, "alice")
        );
        assert!(store.session_by_token_hash(&[8u8; 32]).unwrap().is_none());
        let list = store.conversations_of(b).unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].id, c);
        assert_eq!(list[0].members.len(), 2);
        assert!(store.members(ConversationId::new()).unwrap().is_none());
        assert_eq!(store.members(c).unwrap().unwrap().len(), 2);
    }

    #[test]
    fn file_store_survives_reopen_and_migrations_are_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        let (a, c, id) = {
            let store = SqliteStore::open(&path).unwrap();
            let a = store.create_account("alice", "h").unwrap();
            let c = store.create_conversation("t", &[a]).unwrap().id;
            let id = MessageId::new();
            store.apply_batch(&[append(a, id, c, "kept")]).unwrap();
            (a, c, id)
        };
        let store = SqliteStore::open(&path).unwrap();
        let page = store.page(c, Seq::ZERO, 10).unwrap().unwrap();
        assert_eq!(page.messages.len(), 1);
        assert_eq!(page.last_seq, Seq(1));
        let again = appended(&store.apply_batch(&[append(a, id, c, "kept")]).unwrap()[0]);
        assert!(again.duplicate);
        assert_eq!(again.seq, Seq(1));
    }

    /// What the writer's next commit does: 2 = FULL (fsync), 1 = NORMAL.
    fn writer_sync_level(store: &SqliteStore) -> i64 {
        store
            .lock_writer()
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn only_writes_that_must_be_durable_wait_for_an_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        let (a, b, c) = {
            let store = SqliteStore::open(&path).unwrap();
            let a = store.create_account("alice", "h").unwrap();
            let b = store.create_account("bob", "h").unwrap();
            let c = store.create_conversation("t", &[a, b]).unwrap().id;
            let delivered = |seq| WriteOp::Delivered {
                conversation: c,
                user: b,
                seq: Seq(seq),
            };
            let read = |seq| WriteOp::Read {
                conversation: c,
                user: b,
                seq: Seq(seq),
            };
            assert_eq!(writer_sync_level(&store), 2, "FULL from the start");
            store
                .apply_batch(&[append(a, MessageId::new(), c, "1")])
                .unwrap();
            assert_eq!(writer_sync_level(&store), 2, "a message is fsynced");
            store.apply_batch(&[delivered(1), read(1)]).unwrap();
            assert_eq!(writer_sync_level(&store), 1, "marks alone are not");
            // A mark in the same batch as a message waits for its fsync.
            store
                .apply_batch(&[delivered(1), append(a, MessageId::new(), c, "2")])
                .unwrap();
            assert_eq!(writer_sync_level(&store), 2);
            store.apply_batch(&[delivered(2)]).unwrap();
            assert_eq!(writer_sync_level(&store), 1);
            // Every other write (here a conversation) is fsynced again.
            store.create_conversation("u", &[a]).unwrap();
            assert_eq!(writer_sync_level(&store), 2);
            store.apply_batch(&[read(2)]).unwrap();
            assert_eq!(writer_sync_level(&store), 1);
            (a, b, c)
        };
        // Written, if not fsynced: a clean restart keeps the marks.
        let store = SqliteStore::open(&path).unwrap();
        let info = store.conversations_of(a).unwrap();
        let conv = info.iter().find(|i| i.id == c).unwrap();
        let bob = conv.members.iter().find(|m| m.user == b).unwrap();
        assert_eq!((bob.delivered, bob.read), (Seq(2), Seq(2)));
        assert_eq!(writer_sync_level(&store), 2, "a reopened store fsyncs");
    }

    #[test]
    fn read_marks_only_move_forward_and_raise_delivered() {
        let (store, a, b, c) = store_with_pair();
        let ops: Vec<_> = (0..4)
            .map(|i| append(a, MessageId::new(), c, &i.to_string()))
            .collect();
        store.apply_batch(&ops).unwrap();
        let r = |seq| WriteOp::Read {
            conversation: c,
            user: b,
            seq: Seq(seq),
        };
        let d = |seq| WriteOp::Delivered {
            conversation: c,
            user: b,
            seq: Seq(seq),
        };
        let out = store
            .apply_batch(&[d(1), r(3), r(1), d(2), r(99), r(4), d(4)])
            .unwrap();
        assert_eq!(
            out,
            vec![
                marks(1, 0, true),
                // Reading implies having.
                marks(3, 3, true),
                // A stale device's lower mark changes nothing.
                marks(3, 3, false),
                marks(3, 3, false),
                // Clamped to last_seq.
                marks(4, 4, true),
                marks(4, 4, false),
                marks(4, 4, false),
            ]
        );
        let outsider = store.create_account("carol", "h").unwrap();
        let out = store
            .apply_batch(&[
                WriteOp::Read {
                    conversation: c,
                    user: outsider,
                    seq: Seq(1),
                },
                WriteOp::Read {
                    conversation: ConversationId::new(),
                    user: a,
                    seq: Seq(1),
                },
            ])
            .unwrap();
        assert_eq!(out[0], WriteOutcome::Rejected(ErrorCode::NotMember));
        assert_eq!(
            out[1],
            WriteOutcome::Rejected(ErrorCode::UnknownConversation)
        );
        // Every place marks are read reports the read mark.
        let (listed, _) = store.marks(c).unwrap().unwrap();
        let bob = listed.iter().find(|m| m.user == b).unwrap();
        assert_eq!((bob.delivered, bob.read), (Seq(4), Seq(4)));
        let page = store.page(c, Seq::ZERO, 1).unwrap().unwrap();
        assert_eq!(page.members, listed);
        assert_eq!(store.conversations_of(a).unwrap()[0].members, listed);
    }

    #[test]
    fn actions_are_validated_against_their_target() {
        let (store, a, b, c) = store_with_pair();
        let other = store.create_conversation("other", &[a, b]).unwrap().id;
        let (m, elsewhere, edit) = (MessageId::new(), MessageId::new(), MessageId::new());
        let like = ActionKind::React { on: true };
        let out = store
            .apply_batch(&[
                append(a, m, c, "hello"),
                append(a, elsewhere, other, "elsewhere"),
                // Its target is earlier in the same batch: it sees it.
                act(a, edit, c, "hello!", m, ActionKind::Edit),
            ])
            .unwrap();
        assert_eq!(appended(&out[2]).seq, Seq(2));
        let out = store
            .apply_batch(&[
                act(
                    a,
                    MessageId::new(),
                    c,
                    "x",
                    MessageId::new(),
                    ActionKind::Edit,
                ),
                act(a, MessageId::new(), c, "x", elsewhere, ActionKind::Edit),
                act(b, MessageId::new(), c, "👍", edit, like),
                act(b, MessageId::new(), c, "hijack", m, ActionKind::Edit),
                act(b, MessageId::new(), c, "", m, ActionKind::Delete),
                act(b, MessageId::new(), c, "👍", m, like),
            ])
            .unwrap();
        assert_eq!(out[0], WriteOutcome::Rejected(ErrorCode::NotFound));
        assert_eq!(out[1], WriteOutcome::Rejected(ErrorCode::NotFound));
        assert_eq!(out[2], WriteOutcome::Rejected(ErrorCode::NotFound));
        assert_eq!(out[3], WriteOutcome::Rejected(ErrorCode::NotAuthor));
        assert_eq!(out[4], WriteOutcome::Rejected(ErrorCode::NotAuthor));
        // Refused actions took no seq.
        assert_eq!(appended(&out[5]).seq, Seq(3));

        let (del, del2, late_edit) = (MessageId::new(), MessageId::new(), MessageId::new());
        let out = store
            .apply_batch(&[
                act(a, del, c, "", m, ActionKind::Delete),
                act(a, late_edit, c, "back", m, ActionKind::Edit),
                act(b, MessageId::new(), c, "❤️", m, like),
                // Still the author's check first, then gone.
                act(b, MessageId::new(), c, "", m, ActionKind::Delete),
                // A second device deletes too: accepted.
                act(a, del2, c, "", m, ActionKind::Delete),
                // A resend of the first edit: its original ack, though the
                // target is gone now.
                act(a, edit, c, "hello!", m, ActionKind::Edit),
            ])
            .unwrap();
        assert_eq!(appended(&out[0]).seq, Seq(4));
        assert_eq!(out[1], WriteOutcome::Rejected(ErrorCode::Gone));
        assert_eq!(out[2], WriteOutcome::Rejected(ErrorCode::Gone));
        assert_eq!(out[3], WriteOutcome::Rejected(ErrorCode::NotAuthor));
        assert_eq!(appended(&out[4]).seq, Seq(5));
        let dup = appended(&out[5]);
        assert!(dup.duplicate);
        assert_eq!(dup.seq, Seq(2));

        // The text is erased from the message and its edit; the actions
        // come back with their `action`.
        let all = store.messages_after(c, Seq::ZERO, 100).unwrap();
        let bodies: Vec<&str> = all.iter().map(|w| w.body.as_str()).collect();
        assert_eq!(bodies, vec!["", "", "👍", "", ""]);
        assert_eq!(all[0].action, None);
        assert_eq!(
            all[1].action,
            Some(ActionRef {
                target: m,
                kind: ActionKind::Edit
            })
        );
        assert_eq!(all[2].action.as_ref().map(|a| a.kind), Some(like));
        assert_eq!(
            all[3].action.as_ref().map(|a| (a.target, a.kind)),
            Some((m, ActionKind::Delete))
        );
        // The other conversation is untouched.
        let there = store.messages_after(other, Seq::ZERO, 10).unwrap();
        assert_eq!(there[0].body, "elsewhere");
    }

    #[test]
    fn folding_the_stored_history_gives_the_expected_state() {
        use chatsync_protocol::{fold, FoldEvent};
        let (store, a, b, c) = store_with_pair();
        let (m1, m2, m3) = (MessageId::new(), MessageId::new(), MessageId::new());
        let on = ActionKind::React { on: true };
        let off = ActionKind::React { on: false };
        store
            .apply_batch(&[
                append(a, m1, c, "first"),
                append(b, m2, c, "second"),
                append(a, m3, c, "third"),
                act(
                    a,
                    MessageId::new(),
                    c,
                    "first, edited",
                    m1,
                    ActionKind::Edit,
                ),
                act(b, MessageId::new(), c, "👍", m1, on),
                act(a, MessageId::new(), c, "👍", m1, on),
                act(b, MessageId::new(), c, "👍", m1, off),
                act(b, MessageId::new(), c, "👍", m1, on),
                act(a, MessageId::new(), c, "🎉", m2, on),
                act(
                    b,
                    MessageId::new(),
                    c,
                    "second, fixed",
                    m2,
                    ActionKind::Edit,
                ),
                act(
                    b,
                    MessageId::new(),
                    c,
                    "second, final",
                    m2,
                    ActionKind::Edit,
                ),
                act(
                    a,
                    MessageId::new(),
                    c,
                    "third, edited",
                    m3,
                    ActionKind::Edit,
                ),
                act(b, MessageId::new(), c, "😮", m3, on),
                act(a, MessageId::new(), c, "", m3, ActionKind::Delete),
            ])
            .unwrap();
        // Read in small pages, as a client catching up would.
        let mut history = Vec::new();
        loop {
            let after = history.last().map_or(Seq::ZERO, |w: &WireMessage| w.seq);
            let page = store.page(c, after, 4).unwrap().unwrap();
            if page.messages.is_empty() {
                break;
            }
            history.extend(page.messages);
        }
        assert_eq!(history.len(), 14);
        let folded = |id: MessageId| {
            let msg = history.iter().find(|w| w.id == id).unwrap();
            let events: Vec<FoldEvent<'_>> = history
                .iter()
                .filter(|w| w.action.as_ref().is_some_and(|x| x.target == id))
                .map(|w| FoldEvent {
                    seq: w.seq,
                    sender: w.sender,
                    body: &w.body,
                    action: w.action.as_ref(),
                })
                .collect();
            fold(msg.sender, &msg.body, &events)
        };
        let mut both = vec![a, b];
        both.sort();
        let f1 = folded(m1);
        assert_eq!(f1.body, "first, edited");
        assert!(f1.edited && !f1.deleted);
        assert_eq!(f1.reactions.len(), 1);
        assert_eq!(f1.reactions.get("👍"), Some(&both));
        let f2 = folded(m2);
        assert_eq!(f2.body, "second, final");
        assert!(f2.edited);
        assert_eq!(f2.reactions.get("🎉"), Some(&vec![a]));
        let f3 = folded(m3);
        assert!(f3.deleted);
        assert_eq!(f3.body, "");
        assert!(f3.reactions.is_empty());
        // Nothing of the deleted message's text is left in the history.
        assert!(!history.iter().any(|w| w.body.contains("third")));
    }

    #[test]
    fn a_schema_2_database_gains_actions_and_read_marks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        {
            let mut conn = Connection::open(&path).unwrap();
            let tx = conn.transaction().unwrap();
            tx.execute_batch(MIGRATIONS[0]).unwrap();
            tx.execute_batch(MIGRATIONS[1]).unwrap();
            tx.pragma_update(None, "user_version", 2).unwrap();
            tx.commit().unwrap();
        }
        let (a, c, m) = {
            // Rows in the old shape, written by hand.
            let conn = Connection::open(&path).unwrap();
            let (a, c, m) = (UserId::new(), ConversationId::new(), MessageId::new());
            conn.execute(
                "INSERT INTO accounts (id, username, password_hash, created_ms)
                 VALUES (?1, 'alice', 'h', 1)",
                params![a.0.as_bytes()],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO conversations (id, title, created_ms, last_seq)
                 VALUES (?1, 't', 1, 1)",
                params![c.0.as_bytes()],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO members (conversation, user, delivered) VALUES (?1, ?2, 1)",
                params![c.0.as_bytes(), a.0.as_bytes()],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO messages (conversation, seq, sender, id, body, server_ts)
                 VALUES (?1, 1, ?2, ?3, 'old', 1)",
                params![c.0.as_bytes(), a.0.as_bytes(), m.0.as_bytes()],
            )
            .unwrap();
            (a, c, m)
        };
        let store = SqliteStore::open(&path).unwrap();
        let page = store.page(c, Seq::ZERO, 10).unwrap().unwrap();
        assert_eq!(page.messages[0].body, "old");
        assert_eq!(page.messages[0].action, None);
        assert_eq!(page.members[0].read, Seq::ZERO);
        let out = store
            .apply_batch(&[act(a, MessageId::new(), c, "new", m, ActionKind::Edit)])
            .unwrap();
        assert_eq!(appended(&out[0]).seq, Seq(2));
    }

    fn stored_last_seq(store: &SqliteStore, c: ConversationId) -> Seq {
        store.marks(c).unwrap().unwrap().1
    }

    #[test]
    fn last_seq_is_kept_per_conversation_across_an_interleaved_batch() {
        let (store, a, b, c1) = store_with_pair();
        let c2 = store.create_conversation("two", &[a, b]).unwrap().id;
        let c3 = store.create_conversation("three", &[b]).unwrap().id;
        store
            .apply_batch(&[append(a, MessageId::new(), c2, "before")])
            .unwrap();
        let convs = [c1, c2, c1, c3, c2, c2, c1, c3];
        let ops: Vec<_> = convs
            .iter()
            .enumerate()
            .map(|(i, c)| append(b, MessageId::new(), *c, &i.to_string()))
            .collect();
        let out = store.apply_batch(&ops).unwrap();
        let seqs: Vec<u64> = out.iter().map(|o| appended(o).seq.0).collect();
        assert_eq!(seqs, vec![1, 2, 2, 1, 3, 4, 3, 2]);
        // Written back once, and every reader sees it.
        assert_eq!(stored_last_seq(&store, c1), Seq(3));
        assert_eq!(stored_last_seq(&store, c2), Seq(4));
        assert_eq!(stored_last_seq(&store, c3), Seq(2));
        assert_eq!(
            store.page(c2, Seq::ZERO, 10).unwrap().unwrap().last_seq,
            Seq(4)
        );
        assert_eq!(store.conversations_of(b).unwrap().len(), 3);
        // The next batch carries on from there, without gaps.
        let out = store
            .apply_batch(&[
                append(a, MessageId::new(), c2, "x"),
                append(a, MessageId::new(), c1, "y"),
            ])
            .unwrap();
        assert_eq!(appended(&out[0]).seq, Seq(5));
        assert_eq!(appended(&out[1]).seq, Seq(4));
        for (c, last) in [(c1, 4), (c2, 5), (c3, 2)] {
            let all = store.messages_after(c, Seq::ZERO, 100).unwrap();
            let seqs: Vec<u64> = all.iter().map(|m| m.seq.0).collect();
            assert_eq!(seqs, (1..=last).collect::<Vec<_>>());
        }
    }

    #[test]
    fn refused_and_duplicate_appends_take_no_seq_within_a_batch() {
        let (store, a, b, c) = store_with_pair();
        let (m1, m2) = (MessageId::new(), MessageId::new());
        let out = store
            .apply_batch(&[
                append(a, m1, c, "one"),
                // The same message again, in the same batch.
                append(a, m1, c, "one"),
                append(a, MessageId::new(), ConversationId::new(), "nowhere"),
                append(b, m1, c, "stolen id"),
                act(
                    a,
                    MessageId::new(),
                    c,
                    "x",
                    MessageId::new(),
                    ActionKind::Edit,
                ),
                append(a, m2, c, "two"),
            ])
            .unwrap();
        let first = appended(&out[0]);
        assert_eq!(first.seq, Seq(1));
        assert_eq!(
            out[1],
            WriteOutcome::Appended(Appended {
                duplicate: true,
                ..first
            })
        );
        assert_eq!(
            out[2],
            WriteOutcome::Rejected(ErrorCode::UnknownConversation)
        );
        assert_eq!(out[3], WriteOutcome::Rejected(ErrorCode::IdConflict));
        assert_eq!(out[4], WriteOutcome::Rejected(ErrorCode::NotFound));
        assert_eq!(appended(&out[5]).seq, Seq(2));
        assert_eq!(stored_last_seq(&store, c), Seq(2));
        // Across batches: both are duplicates, in any order.
        let out = store
            .apply_batch(&[append(a, m2, c, "two"), append(a, m1, c, "one")])
            .unwrap();
        assert_eq!(
            (appended(&out[0]).seq, appended(&out[0]).duplicate),
            (Seq(2), true)
        );
        assert_eq!(
            (appended(&out[1]).seq, appended(&out[1]).duplicate),
            (Seq(1), true)
        );
        assert_eq!(stored_last_seq(&store, c), Seq(2));
    }

    #[test]
    fn marks_and_actions_see_the_batchs_own_appends() {
        let (store, a, b, c) = store_with_pair();
        let other = store.create_conversation("other", &[a, b]).unwrap().id;
        let m = MessageId::new();
        let d = |conversation, seq| WriteOp::Delivered {
            conversation,
            user: b,
            seq: Seq(seq),
        };
        let r = |conversation, seq| WriteOp::Read {
            conversation,
            user: b,
            seq: Seq(seq),
        };
        let out = store
            .apply_batch(&[
                // Nothing stored yet: clamped to 0.
                d(c, 5),
                append(a, m, c, "one"),
                // Clamped to the seq just taken in this batch.
                d(c, 5),
                append(a, MessageId::new(), other, "elsewhere"),
                act(
                    b,
                    MessageId::new(),
                    c,
                    "👍",
                    m,
                    ActionKind::React { on: true },
                ),
                r(c, 99),
                // The other conversation has its own last_seq.
                r(other, 99),
            ])
            .unwrap();
        assert_eq!(out[0], marks(0, 0, false));
        assert_eq!(out[2], marks(1, 0, true));
        assert_eq!(appended(&out[4]).seq, Seq(2));
        assert_eq!(out[5], marks(2, 2, true));
        assert_eq!(out[6], marks(1, 1, true));
        let (listed, last) = store.marks(c).unwrap().unwrap();
        assert_eq!(last, Seq(2));
        let bob = listed.iter().find(|x| x.user == b).unwrap();
        assert_eq!((bob.delivered, bob.read), (Seq(2), Seq(2)));
    }

    #[test]
    fn a_failed_batch_stores_nothing_not_even_last_seq() {
        let (store, a, _, c) = store_with_pair();
        store
            .apply_batch(&[append(a, MessageId::new(), c, "kept")])
            .unwrap();
        // An unknown sender breaks a foreign key: the whole batch fails.
        let kept = MessageId::new();
        let failed = store.apply_batch(&[
            append(a, kept, c, "rolled back"),
            append(UserId::new(), MessageId::new(), c, "no such account"),
        ]);
        assert!(failed.is_err());
        assert_eq!(stored_last_seq(&store, c), Seq(1));
        let out = store.apply_batch(&[append(a, kept, c, "again")]).unwrap();
        let again = appended(&out[0]);
        assert_eq!((again.seq, again.duplicate), (Seq(2), false));
    }

    #[test]
    fn the_checkpoint_thread_copies_the_wal_into_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        // Nothing else checkpoints here.
        conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        conn.execute_batch("CREATE TABLE t (x BLOB)").unwrap();
        let size = || std::fs::metadata(&path).unwrap().len();
        let before = size();
        let checkpointer = Checkpointer::start(&path).unwrap();
        for _ in 0..100 {
            conn.execute("INSERT INTO t VALUES (zeroblob(8192))", [])
                .unwrap();
        }
        assert_eq!(size(), before, "the rows are only in the WAL so far");
        checkpointer.committed();
        // Stopping still checkpoints what was committed.
        drop(checkpointer);
        assert!(size() > before + 100 * 8192, "{} bytes", size());
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 100);
    }

    #[test]
    fn schema_4_keeps_the_rows_and_one_unique_index_on_id_and_sender() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        let (a, b, c, m) = (
            UserId::new(),
            UserId::new(),
            ConversationId::new(),
            MessageId::new(),
        );
        {
            let mut conn = legacy_db(&path, 3, c, 3, [a, b]);
            let tx = conn.transaction().unwrap();
            tx.execute(
                "INSERT INTO messages (conversation, seq, sender, id, body, server_ts)
                 VALUES (?1, 1, ?2, ?3, 'hello', 1)",
                params![c.0.as_bytes(), a.0.as_bytes(), m.0.as_bytes()],
            )
            .unwrap();
            tx.execute(
                "INSERT INTO messages (conversation, seq, sender, id, body, server_ts,
                                       action_kind, action_target, action_on)
                 VALUES (?1, 2, ?2, ?3, '👍', 2, 'react', ?4, 1)",
                params![
                    c.0.as_bytes(),
                    b.0.as_bytes(),
                    MessageId::new().0.as_bytes(),
                    m.0.as_bytes()
                ],
            )
            .unwrap();
            tx.execute(
                "INSERT INTO messages (conversation, seq, sender, id, body, server_ts,
                                       action_kind, action_target, deleted)
                 VALUES (?1, 3, ?2, ?3, '', 3, 'delete', ?4, 0)",
                params![
                    c.0.as_bytes(),
                    a.0.as_bytes(),
                    MessageId::new().0.as_bytes(),
                    m.0.as_bytes()
                ],
            )
            .unwrap();
            tx.commit().unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let all = store.messages_after(c, Seq::ZERO, 10).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].body, "hello");
        assert_eq!(
            all[1].action,
            Some(ActionRef {
                target: m,
                kind: ActionKind::React { on: true }
            })
        );
        assert_eq!(
            all[2].action.as_ref().map(|x| x.kind),
            Some(ActionKind::Delete)
        );
        let dup = appended(&store.apply_batch(&[append(a, m, c, "again")]).unwrap()[0]);
        assert_eq!((dup.seq, dup.duplicate), (Seq(1), true));
        drop(store);
        let conn = Connection::open(&path).unwrap();
        let indexes: Vec<(String, bool)> = conn
            .prepare("SELECT name, \"unique\" FROM pragma_index_list('messages') ORDER BY name")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let names: Vec<&str> = indexes.iter().map(|(n, _)| n.as_str()).collect();
        assert!(names.contains(&"messages_by_id"), "{names:?}");
        assert!(names.contains(&"messages_by_target"), "{names:?}");
        assert!(!names.contains(&"messages_dedup"), "{names:?}");
        assert!(indexes.iter().any(|(n, u)| n == "messages_by_id" && *u));
        // The schema itself still refuses a second (sender, id) and an
        // unknown action kind.
        let insert = |seq: i64, id: MessageId, kind: Option<&str>| {
            conn.execute(
                "INSERT INTO messages (conversation, seq, sender, id, body, server_ts,
                                       action_kind)
                 VALUES (?1, ?2, ?3, ?4, 'x', 9, ?5)",
                params![c.0.as_bytes(), seq, a.0.as_bytes(), id.0.as_bytes(), kind],
            )
        };
        assert!(insert(10, m, None).is_err());
        assert!(insert(11, MessageId::new(), Some("shout")).is_err());
        insert(12, MessageId::new(), Some("edit")).unwrap();
        insert(13, MessageId::new(), None).unwrap();
    }
}
