//! SQLite client storage: one file in WAL mode, one connection, one writer.
//!
//! Every [`StoreOp`] batch is one `BEGIN IMMEDIATE … COMMIT` transaction, and
//! every op has exactly the semantics of the in-memory twin
//! ([`super::MemoryStore`]); the conformance suite runs both.
//!
//! Why these settings:
//! * `journal_mode=WAL` + `synchronous=NORMAL`: a commit is a `write()` to the
//!   WAL without fsync, which survives the app being killed at any instant
//!   (DESIGN, "Durability") and keeps `send` well under a millisecond. Only a
//!   power loss can drop the last commits, which the design accepts for the
//!   client.
//! * Every statement is prepared once and cached (`prepare_cached`), so the hot
//!   path — `InsertOutgoing` alone in a transaction — costs one bound insert.
//! * Status moves are enforced in SQL (`WHERE status < ?`), never by reading
//!   the row first.
//!
//! Layout: uuids are stored as lowercase hyphenated TEXT, whose byte order is
//! the uuid's order; sequence numbers as INTEGER (a value above `i64::MAX`
//! cannot be stored and fails the whole batch); member marks and failures as
//! JSON. The tables are `STRICT`, so a value of the wrong type is refused on
//! write rather than discovered on read.
//!
//! Messages and actions (edit, delete, react) share the `items` table: an
//! action row has `target` (the message acted on) and `action` (a short
//! code, see [`encode_action`]). What a message looks like after its actions
//! is never stored: `timeline` and `item` fetch the action rows of the
//! messages they return through the `items_target` index and compute it with
//! the rule both backends share ([`super::memory::present`]). The one thing
//! written back is the erasure: once a confirmed delete from the author is
//! stored, the target's text is blanked and its `deleted` flag set, whatever
//! the order the two rows arrived in.
//!
//! Schema changes are numbered migrations tracked with `PRAGMA user_version`,
//! applied in one transaction. A released migration is never edited; add a
//! new one at the end of [`MIGRATIONS`].

use super::memory::present;
use super::{ClientStore, LoadedState, StoreError, StoreOp};
use crate::model::{Conversation, Failure, Item, Status};
use chatsync_protocol::{
    ActionKind, ActionRef, ConversationId, MemberMarks, MessageId, Seq, UserId,
};
use rusqlite::types::FromSql;
use rusqlite::{params, CachedStatement, Connection, OptionalExtension, Row, TransactionBehavior};
use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::Duration;

/// Client storage in a SQLite file.
pub struct SqliteStore {
    conn: Connection,
    /// Tells the background checkpointer of each commit; dropping it stops
    /// the thread.
    checkpointer: Option<SyncSender<()>>,
}

/// Least time between two checkpoints of the background thread, while
/// commits come. Each checkpoint first fsyncs the WAL, so it is kept short:
/// at most every 100 ms rather than 500, the fsync has a fifth as much to
/// write and stalls other writers of the disk far less (measured with
/// `chatsync bench --suite syncer`, where the clients share the server's
/// disk: send → In-Flight p99 24–27 ms at 500 ms, 7–9 ms at 100 ms).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// Runs WAL checkpoints on a thread of its own, with its own connection, so
/// that the fsyncs of a checkpoint never stall `send` (SQLite's automatic
/// checkpoint would run inside whichever commit crosses the threshold). The
/// thread sleeps until something is committed: an idle device never wakes
/// up for it.
fn spawn_checkpointer(path: &Path) -> Result<SyncSender<()>, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    // One pending notification is all it needs to know.
    let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
    std::thread::Builder::new()
        .name("chatsync-checkpoint".into())
        .spawn(move || checkpoint_loop(&conn, &rx))?;
    Ok(tx)
}

/// Waits for a commit, checkpoints, then pauses [`CHECKPOINT_EVERY`]: a
/// commit made during the pause leaves its notification in the channel, so
/// one checkpoint covers the commits of a pause. Ends once the store is
/// dropped.
fn checkpoint_loop(conn: &Connection, commits: &Receiver<()>) {
    while commits.recv().is_ok() {
        // PASSIVE never waits for the writer nor blocks it.
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::debug!("WAL checkpoint: {e}");
        }
        std::thread::sleep(CHECKPOINT_EVERY);
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.conn.path())
            .finish()
    }
}

/// Schema migrations; entry `n` brings the schema from version `n` to `n + 1`.
/// Never edit a released entry: append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: initial schema.
    r#"
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
    ) STRICT;

    CREATE TABLE conversations (
        id       TEXT PRIMARY KEY NOT NULL,
        title    TEXT NOT NULL,
        members  TEXT NOT NULL,          -- JSON array of MemberMarks
        cursor   INTEGER NOT NULL,
        last_seq INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE items (
        id           TEXT PRIMARY KEY NOT NULL,
        conversation TEXT NOT NULL,
        sender       TEXT NOT NULL,
        sender_name  TEXT NOT NULL,
        body         TEXT NOT NULL,
        own          INTEGER NOT NULL,   -- 0 or 1
        status       INTEGER NOT NULL,   -- Status::as_i64
        seq          INTEGER,            -- NULL until the server confirmed it
        local_seq    INTEGER NOT NULL,
        created_at   INTEGER NOT NULL,
        server_ts    INTEGER,
        failure      TEXT,               -- JSON Failure
        transmitted  INTEGER NOT NULL    -- 0 or 1
    ) STRICT;

    -- Timeline, confirmed part: newest-first walk by seq. Partial, so that
    -- inserting an outgoing message does not touch it.
    CREATE INDEX items_confirmed ON items (conversation, seq) WHERE seq IS NOT NULL;
    -- Timeline, unconfirmed part (after every confirmed item), by local order.
    CREATE INDEX items_local ON items (conversation, local_seq) WHERE seq IS NULL;
    -- The outbox, in local order.
    CREATE INDEX items_outbox ON items (local_seq) WHERE own AND seq IS NULL;
    -- Own messages In-Flight, waiting for their delivery report.
    CREATE INDEX items_in_flight ON items (seq) WHERE status = 1 AND own;
    -- MAX(local_seq) at start-up without a scan (others' messages have 0).
    CREATE INDEX items_local_seq ON items (local_seq) WHERE local_seq > 0;
    "#,
    // 2: actions (edit, delete, react) as rows of their own; erased messages.
    r#"
    -- The message an action row acts on; NULL for a message.
    ALTER TABLE items ADD COLUMN target TEXT;
    -- What the action does (see encode_action); NULL for a message.
    ALTER TABLE items ADD COLUMN action TEXT
        CHECK ((action IS NULL) = (target IS NULL)
               AND (action IS NULL OR action IN ('edit', 'delete', 'react_on', 'react_off')));
    -- 1 once a confirmed delete from the author erased the text (messages).
    ALTER TABLE items ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1));

    -- The timeline lists messages only: its indexes leave action rows out,
    -- so a page never steps over reactions. The trailing columns make the
    -- confirmed one cover the unread count (`action`, always NULL here, only
    -- so that SQLite sees every column of that query in the index).
    DROP INDEX items_confirmed;
    DROP INDEX items_local;
    CREATE INDEX items_messages ON items (conversation, seq, own, deleted, action)
        WHERE seq IS NOT NULL AND action IS NULL;
    CREATE INDEX items_messages_local ON items (conversation, local_seq)
        WHERE seq IS NULL AND action IS NULL;
    -- The actions on the messages of a page.
    CREATE INDEX items_target ON items (target) WHERE target IS NOT NULL;
    -- Own messages delivered (Success), waiting to be read by all.
    CREATE INDEX items_delivered ON items (seq) WHERE status = 2 AND own AND action IS NULL;
    "#,
];

/// Columns written when a row is inserted (a macro so that the queries
/// below can be `concat!`-ed constants).
macro_rules! insert_columns {
    () => {
        "id, conversation, sender, sender_name, body, own, status, seq, \
         local_seq, created_at, server_ts, failure, transmitted, target, action"
    };
}

/// Columns of an item row, in the order [`decode_row`] reads them.
macro_rules! item_columns {
    () => {
        concat!(insert_columns!(), ", deleted")
    };
}

/// Newest page of a timeline, messages only (`?1` conversation, `?2`
/// limit). Each part walks its partial index newest-first and stops after
/// `limit` rows; the newest `limit` of the union is the answer. Ties on
/// the order key (none from a sane server: a seq is unique in a
/// conversation, a local_seq on a device) are broken by id afterwards,
/// see [`complete_ties`]: an `id` tie-breaker in the `ORDER BY` made SQLite
/// sort every row of every page in a temporary B-tree, a fifth of a
/// page's time.
const TIMELINE_SQL: &str = concat!(
    "SELECT * FROM (SELECT ",
    item_columns!(),
    " FROM items WHERE conversation = ?1 AND seq IS NULL AND action IS NULL \
     ORDER BY local_seq DESC LIMIT ?2) \
     UNION ALL \
     SELECT * FROM (SELECT ",
    item_columns!(),
    " FROM items WHERE conversation = ?1 AND seq IS NOT NULL AND action IS NULL \
     ORDER BY seq DESC LIMIT ?2)"
);

/// Older page of a timeline (`?1` conversation, `?2` before, `?3` limit).
const TIMELINE_BEFORE_SQL: &str = concat!(
    "SELECT ",
    item_columns!(),
    " FROM items WHERE conversation = ?1 AND seq IS NOT NULL AND action IS NULL \
     AND seq < ?2 ORDER BY seq DESC LIMIT ?3"
);

/// Confirmed messages at one seq (`?1` conversation, `?2` seq).
const TIES_CONFIRMED_SQL: &str = concat!(
    "SELECT ",
    item_columns!(),
    " FROM items WHERE conversation = ?1 AND seq IS NOT NULL AND action IS NULL AND seq = ?2"
);

/// Unconfirmed messages at one local_seq (`?1` conversation, `?2` local_seq).
const TIES_LOCAL_SQL: &str = concat!(
    "SELECT ",
    item_columns!(),
    " FROM items WHERE conversation = ?1 AND seq IS NULL AND action IS NULL AND local_seq = ?2"
);

/// Every action row targeting one of the messages whose ids are in the JSON
/// array `?1` (one index probe per id).
const ACTIONS_SQL: &str = concat!(
    "SELECT ",
    item_columns!(),
    " FROM items WHERE target IS NOT NULL \
     AND target IN (SELECT value FROM json_each(?1))"
);

/// Messages of others, not deleted, above a mark (`?1` conversation, `?2`
/// mark): a range count on the covering `items_messages` index.
const UNREAD_SQL: &str = "SELECT COUNT(*) FROM items \
     WHERE conversation = ?1 AND seq IS NOT NULL AND action IS NULL \
     AND seq > ?2 AND own = 0 AND deleted = 0";

const OUTBOX_SQL: &str = concat!(
    "SELECT ",
    item_columns!(),
    " FROM items WHERE own AND seq IS NULL ORDER BY local_seq, id"
);

/// Own rows confirmed but not settled: In-Flight (messages and actions),
/// and messages delivered (Success) that still wait for Read. Each part
/// walks its own partial index.
const IN_FLIGHT_SQL: &str = concat!(
    "SELECT ",
    item_columns!(),
    " FROM items WHERE status = 1 AND own \
     UNION ALL SELECT ",
    item_columns!(),
    " FROM items WHERE status = 2 AND own AND action IS NULL"
);

const ITEM_SQL: &str = concat!("SELECT ", item_columns!(), " FROM items WHERE id = ?1");

const MAX_LOCAL_SEQ_SQL: &str = "SELECT MAX(local_seq) FROM items WHERE local_seq > 0";

const INSERT_OUTGOING_SQL: &str = concat!(
    "INSERT INTO items (",
    insert_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) \
     ON CONFLICT (id) DO NOTHING"
);

/// A confirmed row not stored yet. `OR IGNORE` (the only unique key is
/// `id`) rather than an upsert: a plain insert needs no statement journal,
/// which an `ON CONFLICT DO UPDATE` would write for every row of a
/// catch-up page. When the row is already stored, [`UPDATE_CONFIRMED_SQL`]
/// follows.
const INSERT_CONFIRMED_SQL: &str = concat!(
    "INSERT OR IGNORE INTO items (",
    insert_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 1, ?13, ?14)"
);

/// A stored row confirmed (`?1` id, `?2` seq, `?3` server time, `?4`
/// status): a Failed message the server confirmed after all takes the new
/// status; otherwise the status never moves back (the integer order of
/// `Status::as_i64` is the enum's order). A stored row keeps its text and
/// action. Answers whether the stored row is a message.
const UPDATE_CONFIRMED_SQL: &str = "UPDATE items SET seq = ?2, server_ts = ?3, failure = NULL, \
     status = CASE WHEN status = 9 THEN ?4 ELSE MAX(status, ?4) END \
     WHERE id = ?1 RETURNING action IS NULL";

/// Whether any action row targets `?1` (one probe of `items_target`): when
/// none does, a confirmed message has nothing to erase.
const TARGETED_SQL: &str =
    "SELECT EXISTS (SELECT 1 FROM items WHERE target IS NOT NULL AND target = ?1)";

/// After `?1` was confirmed: when it is a confirmed delete, erase its target
/// if the target is a message by the same author in the same conversation.
const ERASE_TARGET_SQL: &str = "UPDATE items SET body = '', deleted = 1 \
     WHERE id = (SELECT target FROM items WHERE id = ?1 AND action = 'delete' \
                 AND seq IS NOT NULL) \
     AND action IS NULL \
     AND sender = (SELECT sender FROM items WHERE id = ?1) \
     AND conversation = (SELECT conversation FROM items WHERE id = ?1)";

/// After `?1` was confirmed: when it is a message and a confirmed delete
/// from its author (same conversation) arrived before it, erase it.
const ERASE_SELF_SQL: &str = "UPDATE items SET body = '', deleted = 1 \
     WHERE id = ?1 AND action IS NULL AND EXISTS ( \
       SELECT 1 FROM items AS d WHERE d.target IS NOT NULL AND d.target = ?1 \
       AND d.action = 'delete' AND d.seq IS NOT NULL AND d.sender = items.sender \
       AND d.conversation = items.conversation)";

/// After `?1` was confirmed: when the message it is (or acts on) was
/// deleted by its author, blank the text of that author's confirmed edits of
/// it too (each one is a version of the text), whichever came first.
const ERASE_EDITS_SQL: &str = "UPDATE items SET body = '' \
     WHERE action = 'edit' AND seq IS NOT NULL AND body <> '' \
     AND target = (SELECT COALESCE(target, id) FROM items WHERE id = ?1) \
     AND EXISTS ( \
       SELECT 1 FROM items AS m WHERE m.id = items.target AND m.action IS NULL \
       AND m.deleted = 1 AND m.sender = items.sender \
       AND m.conversation = items.conversation)";

impl SqliteStore {
    /// Opens (creating if needed, with its parent directories) the store at
    /// `path`, and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut store = Self::init(Connection::open(path)?)?;
        store.conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        store.checkpointer = Some(spawn_checkpointer(path)?);
        Ok(store)
    }

    /// A store in memory, for tests.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Self, StoreError> {
        conn.busy_timeout(Duration::from_secs(5))?;
        // An in-memory database answers "memory"; that is fine for tests.
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") && !mode.eq_ignore_ascii_case("memory") {
            return Err(StoreError::Corrupt(format!(
                "cannot switch to WAL (journal_mode is {mode})"
            )));
        }
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        // A deleted message's text must not linger in free space of the
        // file: zero freed cell content when that costs no extra I/O (the
        // text is blanked by an in-page update).
        conn.pragma_update(None, "secure_delete", "FAST")?;
        // Room for every statement of `apply` and the reads.
        conn.set_prepared_statement_cache_capacity(48);
        migrate(&mut conn)?;
        Ok(SqliteStore {
            conn,
            checkpointer: None,
        })
    }
}

/// Applies the pending migrations in one transaction.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let target = MIGRATIONS.len();
    let current = usize::try_from(version)
        .map_err(|_| StoreError::Corrupt(format!("schema version {version} is invalid")))?;
    if current > target {
        return Err(StoreError::Corrupt(format!(
            "schema version {current} is newer than this build knows ({target})"
        )));
    }
    if current == target {
        return Ok(());
    }
    for sql in &MIGRATIONS[current..] {
        tx.execute_batch(sql)?;
    }
    // PRAGMA takes no bound parameter; `target` is our own constant.
    tx.pragma_update(None, "user_version", target)?;
    tx.commit()?;
    Ok(())
}

impl ClientStore for SqliteStore {
    fn apply(&mut self, ops: &[StoreOp]) -> Result<(), StoreError> {
        // IMMEDIATE takes the write lock at BEGIN (waiting up to the busy
        // timeout), so a batch that reads before it writes (SetMarks) cannot
        // fail with SQLITE_BUSY when its read lock is upgraded.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut w = Writer::new(&tx);
        for op in ops {
            apply_one(&mut w, op)?;
        }
        drop(w);
        tx.commit()?;
        if let Some(checkpointer) = &self.checkpointer {
            // Full means a checkpoint is already due.
            let _ = checkpointer.try_send(());
        }
        Ok(())
    }

    fn load(&self) -> Result<LoadedState, StoreError> {
        // One read transaction, so the parts are one consistent snapshot.
        let tx = self.conn.unchecked_transaction()?;
        let outbox = query_rows(&tx, OUTBOX_SQL, params![])?
            .into_iter()
            .map(|r| (r.item, r.transmitted))
            .collect();
        let mut in_flight: Vec<Item> = query_rows(&tx, IN_FLIGHT_SQL, params![])?
            .into_iter()
            .map(|r| r.item)
            .collect();
        in_flight.sort_by_key(|i| (i.order_key(), i.id));
        let conversations = query_conversations(&tx)?;
        let max: Option<i64> = tx
            .prepare_cached(MAX_LOCAL_SEQ_SQL)?
            .query_row([], |r| r.get(0))?;
        let max_local_seq = match max {
            None => 0,
            Some(v) => u64::try_from(v)
                .map_err(|_| StoreError::Corrupt(format!("negative local_seq {v}")))?,
        };
        tx.finish()?;
        Ok(LoadedState {
            outbox,
            in_flight,
            conversations,
            max_local_seq,
        })
    }

    fn timeline(
        &self,
        conversation: ConversationId,
        before: Option<Seq>,
        limit: usize,
    ) -> Result<Vec<Item>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let conv = conversation.to_string();
        let lim = i64::try_from(limit).unwrap_or(i64::MAX);
        // The page and its actions from one snapshot.
        let tx = self.conn.unchecked_transaction()?;
        let mut rows = match before {
            None => query_rows(&tx, TIMELINE_SQL, params![conv, lim])?,
            Some(before) => query_rows(&tx, TIMELINE_BEFORE_SQL, params![conv, before.0, lim])?,
        };
        complete_ties(&tx, &conv, &mut rows, limit)?;
        rows.sort_by_key(|r| (r.item.order_key(), r.item.id));
        let skip = rows.len().saturating_sub(limit);
        let page = rows.split_off(skip);
        let shown = present_messages(&tx, page)?;
        tx.finish()?;
        Ok(shown)
    }

    fn item(&self, id: MessageId) -> Result<Option<Item>, StoreError> {
        let tx = self.conn.unchecked_transaction()?;
        let Some(row) = query_rows(&tx, ITEM_SQL, params![id.to_string()])?
            .into_iter()
            .next()
        else {
            return Ok(None);
        };
        let shown = if row.item.action.is_some() {
            // An action row is returned as stored.
            row.item
        } else {
            present_messages(&tx, vec![row])?
                .into_iter()
                .next()
                .ok_or_else(|| StoreError::Corrupt("message vanished while read".into()))?
        };
        tx.finish()?;
        Ok(Some(shown))
    }

    fn unread(&self, conversation: ConversationId, after: Seq) -> Result<u64, StoreError> {
        // A mark beyond i64 is above every stored seq.
        let Ok(after) = i64::try_from(after.0) else {
            return Ok(0);
        };
        let n: i64 = self
            .conn
            .prepare_cached(UNREAD_SQL)?
            .query_row(params![conversation.to_string(), after], |r| r.get(0))?;
        to_u64(n, "unread count")
    }

    fn conversations(&self) -> Result<Vec<Conversation>, StoreError> {
        query_conversations(&self.conn)
    }

    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
            .query_row(params![key], |r| r.get(0))
            .optional()?)
    }
}

/// Shows stored message rows: fetches the action rows targeting any of them
/// in one query (the `items_target` index, one probe per message) and applies
/// the shared rule, [`present`].
fn present_messages(conn: &Connection, messages: Vec<StoredRow>) -> Result<Vec<Item>, StoreError> {
    if messages.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = messages.iter().map(|m| m.item.id.to_string()).collect();
    let mut by_target: HashMap<MessageId, Vec<Item>> = HashMap::new();
    for row in query_rows(conn, ACTIONS_SQL, params![encode_json(&ids)?])? {
        if let Some(action) = &row.item.action {
            by_target.entry(action.target).or_default().push(row.item);
        }
    }
    Ok(messages
        .iter()
        .map(|m| {
            let actions = by_target.get(&m.item.id).into_iter().flatten();
            present(&m.item, m.deleted, actions)
        })
        .collect())
}

/// The statements of one [`ClientStore::apply`] batch: each taken from the
/// connection's cache on first use and kept until the batch ends, so a
/// catch-up page of hundreds of rows looks each one up once, not once a row.
struct Writer<'c> {
    conn: &'c Connection,
    stmts: Vec<(&'static str, CachedStatement<'c>)>,
}

impl<'c> Writer<'c> {
    fn new(conn: &'c Connection) -> Self {
        Writer {
            conn,
            stmts: Vec::new(),
        }
    }

    /// The prepared statement for `sql` (a constant: it is recognised by
    /// address, and a batch uses a handful, so a linear search is fastest).
    fn stmt(&mut self, sql: &'static str) -> Result<&mut CachedStatement<'c>, StoreError> {
        let pos = match self
            .stmts
            .iter()
            .position(|(s, _)| std::ptr::eq(s.as_ptr(), sql.as_ptr()) && s.len() == sql.len())
        {
            Some(pos) => pos,
            None => {
                self.stmts.push((sql, self.conn.prepare_cached(sql)?));
                self.stmts.len() - 1
            }
        };
        Ok(&mut self.stmts[pos].1)
    }

    /// Runs a statement that returns no row; answers how many rows changed.
    fn execute(
        &mut self,
        sql: &'static str,
        params: &[&dyn rusqlite::ToSql],
    ) -> Result<usize, StoreError> {
        Ok(self.stmt(sql)?.execute(params)?)
    }
}

/// Binds the columns of `insert_columns!()` (`?1` to `?12`, then
/// `transmitted` when given, then `target` and `action`) and runs `sql`, an
/// insert that ignores a row already stored. `id` is `item.id` as stored.
/// Answers whether the row was inserted.
fn insert_item(
    w: &mut Writer<'_>,
    sql: &'static str,
    id: &str,
    item: &Item,
    transmitted: Option<bool>,
) -> Result<bool, StoreError> {
    let failure = encode_failure(item.failure.as_ref())?;
    let (target, action) = encode_action(item.action.as_ref());
    let conversation = item.conversation.to_string();
    let sender = item.sender.to_string();
    let seq = item.seq.map(|s| s.0);
    let common = params![
        id,
        conversation,
        sender,
        item.sender_name,
        item.body,
        item.own,
        item.status.as_i64(),
        seq,
        item.local_seq,
        item.created_at,
        item.server_ts,
        failure,
    ];
    let mut all: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(15);
    all.extend_from_slice(common);
    if let Some(t) = &transmitted {
        all.push(t);
    }
    all.extend_from_slice(params![target, action]);
    Ok(w.execute(sql, &all)? > 0)
}

/// Applies one op inside the batch's transaction; mirrors
/// `MemoryStore::apply_one` case by case.
fn apply_one(w: &mut Writer<'_>, op: &StoreOp) -> Result<(), StoreError> {
    match op {
        StoreOp::InsertOutgoing { item, transmitted } => {
            let id = item.id.to_string();
            insert_item(w, INSERT_OUTGOING_SQL, &id, item, Some(*transmitted))?;
        }
        StoreOp::MarkTransmitted(ids) => {
            let stmt = w.stmt("UPDATE items SET transmitted = 1 WHERE id = ?1")?;
            for id in ids {
                stmt.execute(params![id.to_string()])?;
            }
        }
        StoreOp::UpsertConfirmed(item) => {
            let id = item.id.to_string();
            // Whether the row as stored now is a message (not an action).
            let message = if insert_item(w, INSERT_CONFIRMED_SQL, &id, item, None)? {
                item.action.is_none()
            } else {
                let seq = item.seq.map(|s| s.0);
                w.stmt(UPDATE_CONFIRMED_SQL)?
                    .query_row(
                        params![id, seq, item.server_ts, item.status.as_i64()],
                        |r| r.get::<_, bool>(0),
                    )
                    .optional()?
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!("confirmed row {id} could not be stored"))
                    })?
            };
            // The erasure, whichever of the delete and its target came
            // first. A stored message can only be erased (or have edits to
            // blank) when some action targets it; in a catch-up page almost
            // none is, so one index probe replaces three updates.
            // ERASE_TARGET_SQL only ever acts for a stored delete.
            let erase = !message
                || w.stmt(TARGETED_SQL)?
                    .query_row(params![id], |r| r.get::<_, bool>(0))?;
            if erase {
                if !message {
                    w.execute(ERASE_TARGET_SQL, params![id])?;
                }
                w.execute(ERASE_SELF_SQL, params![id])?;
                w.execute(ERASE_EDITS_SQL, params![id])?;
            }
        }
        StoreOp::SetStatus { id, status } => {
            // Forward only; Failed only from Sending.
            w.execute(
                "UPDATE items SET status = ?2 \
                 WHERE id = ?1 AND status < ?2 AND (?2 <> 9 OR status = 0)",
                params![id.to_string(), status.as_i64()],
            )?;
        }
        StoreOp::SetFailed { id, failure } => {
            let failure = encode_failure(Some(failure))?;
            w.execute(
                "UPDATE items SET status = 9, failure = ?2 WHERE id = ?1 AND status = 0",
                params![id.to_string(), failure],
            )?;
        }
        StoreOp::Requeue { id, local_seq } => {
            w.execute(
                "UPDATE items SET status = 0, failure = NULL, local_seq = ?2 \
                 WHERE id = ?1 AND status = 9",
                params![id.to_string(), local_seq],
            )?;
        }
        StoreOp::Remove(id) => {
            w.execute("DELETE FROM items WHERE id = ?1", params![id.to_string()])?;
        }
        StoreOp::UpdateOutgoing { id, body, action } => {
            let (target, action) = encode_action(action.as_ref());
            w.execute(
                "UPDATE items SET body = ?2, target = ?3, action = ?4 \
                 WHERE id = ?1 AND seq IS NULL",
                params![id.to_string(), body, target, action],
            )?;
        }
        StoreOp::UpsertConversation {
            id,
            title,
            members,
            last_seq,
        } => {
            let members = encode_json(members)?;
            w.execute(
                "INSERT INTO conversations (id, title, members, cursor, last_seq) \
                 VALUES (?1, ?2, ?3, 0, ?4) \
                 ON CONFLICT (id) DO UPDATE SET \
                   title = excluded.title, \
                   members = excluded.members, \
                   last_seq = MAX(conversations.last_seq, excluded.last_seq)",
                params![id.to_string(), title, members, last_seq.0],
            )?;
        }
        StoreOp::SetMarks {
            conversation,
            marks,
        } => {
            let conv = conversation.to_string();
            let stored: Option<String> = w
                .stmt("SELECT members FROM conversations WHERE id = ?1")?
                .query_row(params![conv], |r| r.get(0))
                .optional()?;
            let Some(stored) = stored else {
                return Ok(());
            };
            let mut members: Vec<MemberMarks> = decode_json(&stored, "members")?;
            match members.iter_mut().find(|m| m.user == marks.user) {
                Some(m) => {
                    // Each mark independently: a read mark may come with an
                    // older delivery mark, and vice versa.
                    m.delivered = m.delivered.max(marks.delivered);
                    m.read = m.read.max(marks.read);
                }
                None => members.push(marks.clone()),
            }
            w.execute(
                "UPDATE conversations SET members = ?2 WHERE id = ?1",
                params![conv, encode_json(&members)?],
            )?;
        }
        StoreOp::SetCursor { conversation, seq } => {
            w.execute(
                "UPDATE conversations \
                 SET cursor = MAX(cursor, ?2), last_seq = MAX(last_seq, ?2) WHERE id = ?1",
                params![conversation.to_string(), seq.0],
            )?;
        }
        StoreOp::SetMeta { key, value } => {
            w.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )?;
        }
    }
    Ok(())
}

/// One row of `items` as stored.
struct StoredRow {
    /// Its fields (display fields empty).
    item: Item,
    /// Whether it may have been transmitted.
    transmitted: bool,
    /// Whether a confirmed delete from the author erased its text.
    deleted: bool,
}

/// Runs an item query; each row is decoded with [`decode_row`].
/// A part of a page (confirmed, or not yet) that stopped at `limit` rows
/// may have cut a group of rows sharing its lowest order key anywhere, as
/// its `ORDER BY` has no tie-breaker: every row of that key is added, so
/// that sorting by (key, id) then picks the same rows as the store's
/// contract (and its in-memory twin). One index probe, usually finding
/// the one row already there.
fn complete_ties(
    conn: &Connection,
    conv: &str,
    rows: &mut Vec<StoredRow>,
    limit: usize,
) -> Result<(), StoreError> {
    for confirmed in [true, false] {
        let part = rows.iter().filter(|r| r.item.seq.is_some() == confirmed);
        if part.clone().count() < limit {
            continue;
        }
        let lowest = part.map(|r| r.item.order_key()).min();
        let Some((_, seq, local_seq)) = lowest else {
            continue;
        };
        let ties = if confirmed {
            query_rows(conn, TIES_CONFIRMED_SQL, params![conv, seq])?
        } else {
            query_rows(conn, TIES_LOCAL_SQL, params![conv, local_seq])?
        };
        for tie in ties {
            if !rows.iter().any(|r| r.item.id == tie.item.id) {
                rows.push(tie);
            }
        }
    }
    Ok(())
}

fn query_rows(
    conn: &Connection,
    sql: &str,
    params: &[&dyn rusqlite::ToSql],
) -> Result<Vec<StoredRow>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(decode_row(row)?);
    }
    Ok(out)
}

fn query_conversations(conn: &Connection) -> Result<Vec<Conversation>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, title, members, cursor, last_seq FROM conversations ORDER BY id",
    )?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let members: String = col(row, 2, "members")?;
        out.push(Conversation {
            id: parse_id(&col::<String>(row, 0, "id")?, "conversation id")?,
            title: col(row, 1, "title")?,
            members: decode_json(&members, "members")?,
            cursor: Seq(col_u64(row, 3, "cursor")?),
            last_seq: Seq(col_u64(row, 4, "last_seq")?),
        });
    }
    Ok(out)
}

/// Reads one row of `item_columns!()`. Anything undecodable is
/// [`StoreError::Corrupt`], never a panic.
fn decode_row(row: &Row<'_>) -> Result<StoredRow, StoreError> {
    let status: i64 = col(row, 6, "status")?;
    let failure: Option<String> = col(row, 11, "failure")?;
    let mut item = Item::message(
        parse_id(&col::<String>(row, 0, "id")?, "message id")?,
        parse_id(&col::<String>(row, 1, "conversation")?, "conversation id")?,
        parse_id::<UserId>(&col::<String>(row, 2, "sender")?, "sender id")?,
        col(row, 3, "sender_name")?,
        col(row, 4, "body")?,
        col(row, 5, "own")?,
        Status::from_i64(status)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown status {status}")))?,
        col::<Option<i64>>(row, 7, "seq")?
            .map(|v| to_u64(v, "seq").map(Seq))
            .transpose()?,
        col_u64(row, 8, "local_seq")?,
        col(row, 9, "created_at")?,
        col(row, 10, "server_ts")?,
    );
    item.failure = failure
        .map(|f| decode_json::<Failure>(&f, "failure"))
        .transpose()?;
    item.action = decode_action(col(row, 13, "target")?, col(row, 14, "action")?)?;
    Ok(StoredRow {
        item,
        transmitted: col(row, 12, "transmitted")?,
        deleted: col(row, 15, "deleted")?,
    })
}

/// Reads a column; a value of the wrong type is corrupt data.
fn col<T: FromSql>(row: &Row<'_>, idx: usize, name: &str) -> Result<T, StoreError> {
    row.get(idx).map_err(|e| match e {
        rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..) => {
            StoreError::Corrupt(format!("column {name}: {e}"))
        }
        other => StoreError::Sqlite(other),
    })
}

fn col_u64(row: &Row<'_>, idx: usize, name: &str) -> Result<u64, StoreError> {
    to_u64(col(row, idx, name)?, name)
}

fn to_u64(v: i64, name: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("column {name}: negative value {v}")))
}

fn parse_id<T: FromStr<Err = uuid::Error>>(s: &str, what: &str) -> Result<T, StoreError> {
    T::from_str(s).map_err(|e| StoreError::Corrupt(format!("{what} {s:?}: {e}")))
}

fn decode_json<T: serde::de::DeserializeOwned>(s: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn encode_json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    // Serialising these plain structs cannot fail; map it anyway rather than panic.
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(format!("cannot encode: {e}")))
}

fn encode_failure(f: Option<&Failure>) -> Result<Option<String>, StoreError> {
    f.map(encode_json).transpose()
}

/// The `target` and `action` columns of a row: both NULL for a message;
/// for an action, the target's id and one of `edit`, `delete`, `react_on`,
/// `react_off` (the `CHECK` of migration 2 allows nothing else).
fn encode_action(action: Option<&ActionRef>) -> (Option<String>, Option<&'static str>) {
    match action {
        None => (None, None),
        Some(a) => {
            let code = match a.kind {
                ActionKind::Edit => "edit",
                ActionKind::Delete => "delete",
                ActionKind::React { on: true } => "react_on",
                ActionKind::React { on: false } => "react_off",
            };
            (Some(a.target.to_string()), Some(code))
        }
    }
}

/// Inverse of [`encode_action`].
fn decode_action(
    target: Option<String>,
    action: Option<String>,
) -> Result<Option<ActionRef>, StoreError> {
    match (target, action) {
        (None, None) => Ok(None),
        (Some(target), Some(code)) => {
            let kind = match code.as_str() {
                "edit" => ActionKind::Edit,
                "delete" => ActionKind::Delete,
                "react_on" => ActionKind::React { on: true },
                "react_off" => ActionKind::React { on: false },
                other => return Err(StoreError::Corrupt(format!("unknown action {other:?}"))),
            };
            Ok(Some(ActionRef {
                target: parse_id(&target, "action target")?,
                kind,
            }))
        }
        (t, a) => Err(StoreError::Corrupt(format!(
            "action row with target {t:?} but action {a:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const CONV: &str = "00000000-0000-0000-0000-000000000000";

    fn plan(store: &SqliteStore, sql: &str) -> String {
        let mut stmt = store
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap();
        let all: [&dyn rusqlite::ToSql; 3] = [&CONV, &10, &50];
        let n = stmt.parameter_count();
        let rows = stmt
            .query_map(&all[..n], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        rows.join("\n")
    }

    /// The timeline and start-up queries walk indexes; none scans the table.
    #[test]
    fn queries_use_indexes() {
        let store = SqliteStore::open_in_memory().unwrap();
        for sql in [
            TIMELINE_SQL,
            TIMELINE_BEFORE_SQL,
            OUTBOX_SQL,
            IN_FLIGHT_SQL,
            ITEM_SQL,
            MAX_LOCAL_SEQ_SQL,
            ACTIONS_SQL,
            UNREAD_SQL,
            ERASE_TARGET_SQL,
            ERASE_SELF_SQL,
            ERASE_EDITS_SQL,
        ] {
            let p = plan(&store, sql);
            // "SCAN items USING INDEX <partial>" only walks the partial index.
            let full_scan = p
                .lines()
                .any(|l| l.trim_start().starts_with("SCAN items") && !l.contains("INDEX"));
            assert!(!full_scan, "full scan in:\n{sql}\n{p}");
        }
        // The unread count never reads the table.
        let p = plan(&store, UNREAD_SQL);
        assert!(p.contains("COVERING INDEX items_messages"), "{p}");
    }

    /// Commits wake the background checkpointer, which copies the WAL
    /// into the database file (SQLite's own checkpoints are off, so without
    /// it the WAL would only grow), and keep doing so while writes go on.
    #[test]
    fn commits_are_checkpointed_into_the_database_file_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.db");
        let mut store = SqliteStore::open(&path).unwrap();
        let conv = ConversationId::new();
        let file_len = || std::fs::metadata(&path).unwrap().len();
        let mut seq = 0;
        for round in 0..2 {
            let before = file_len();
            let ops: Vec<_> = (0..300)
                .map(|_| {
                    seq += 1;
                    confirmed(conv, seq, false, None)
                })
                .collect();
            store.apply(&ops).unwrap();
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while file_len() <= before {
                assert!(
                    std::time::Instant::now() < deadline,
                    "round {round}: nothing was checkpointed into the file"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Once the author's delete is confirmed, the text is gone from the
    /// database file (after a checkpoint), not only from the answers.
    #[test]
    fn deleted_text_leaves_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.db");
        let mut store = SqliteStore::open(&path).unwrap();
        // The background checkpointer may hold the checkpoint lock for a
        // moment: SQLite then answers busy (first column 1), and the WAL
        // is not all in the file yet; try again.
        let checkpoint = |s: &SqliteStore| loop {
            let busy: i64 = s
                .conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
                .unwrap();
            if busy == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let conv = ConversationId::new();
        let secret = "the-secret-text-7f3a9c";
        let mut ops = Vec::new();
        let mut target = None;
        for seq in 1..=20u64 {
            let StoreOp::UpsertConfirmed(mut item) = confirmed(conv, seq, false, None) else {
                unreachable!()
            };
            if seq == 10 {
                // Long enough that an update without secure_delete leaves
                // the old text in the page's free space.
                item.body = format!("{}{secret}{}", "a".repeat(300), "b".repeat(300));
                target = Some(item.clone());
            }
            ops.push(StoreOp::UpsertConfirmed(item));
        }
        store.apply(&ops).unwrap();
        checkpoint(&store);
        let contains = |bytes: &[u8]| bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
        assert!(contains(&std::fs::read(&path).unwrap()));
        let target = target.unwrap();
        let mut del = target.clone();
        del.id = MessageId::new();
        del.seq = Some(Seq(21));
        del.body = String::new();
        del.action = Some(ActionRef {
            target: target.id,
            kind: ActionKind::Delete,
        });
        store.apply(&[StoreOp::UpsertConfirmed(del)]).unwrap();
        checkpoint(&store);
        assert!(!contains(&std::fs::read(&path).unwrap()));
        let shown = store.item(target.id).unwrap().unwrap();
        assert!(shown.deleted && shown.body.is_empty());
    }

    /// Runs `sql` to the end and returns how many VM steps it took.
    fn vm_steps(store: &SqliteStore, sql: &str, params: &[&dyn rusqlite::ToSql]) -> (usize, i32) {
        let mut stmt = store.conn.prepare(sql).unwrap();
        let mut rows = stmt.query(params).unwrap();
        let mut n = 0;
        while rows.next().unwrap().is_some() {
            n += 1;
        }
        drop(rows);
        let full = stmt.get_status(rusqlite::StatementStatus::FullscanStep);
        assert_eq!(full, 0, "full scan steps in {sql}");
        (n, stmt.get_status(rusqlite::StatementStatus::VmStep))
    }

    /// A confirmed row for the cost test.
    fn confirmed(c: ConversationId, seq: u64, own: bool, action: Option<ActionRef>) -> StoreOp {
        let mut item = Item::message(
            MessageId::new(),
            c,
            UserId::new(),
            "x".into(),
            "hello".into(),
            own,
            if own { Status::Read } else { Status::Success },
            Some(Seq(seq)),
            seq,
            0,
            Some(0),
        );
        item.action = action;
        StoreOp::UpsertConfirmed(item)
    }

    /// Timeline pages are read in index order and never sorted: a sort
    /// (a temporary B-tree) costs a fifth of a page's time.
    #[test]
    fn timeline_pages_need_no_sort() {
        let store = SqliteStore::open_in_memory().unwrap();
        let newest: &[&dyn rusqlite::ToSql] = &[&CONV, &50];
        let before: &[&dyn rusqlite::ToSql] = &[&CONV, &1, &50];
        for (sql, params) in [(TIMELINE_SQL, newest), (TIMELINE_BEFORE_SQL, before)] {
            let plan: Vec<String> = store
                .conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map(params, |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert!(
                plan.iter().all(|step| !step.contains("TEMP B-TREE")),
                "{sql}: {plan:?}"
            );
            assert!(
                plan.iter()
                    .any(|step| step.contains("USING INDEX items_messages")),
                "{sql}: {plan:?}"
            );
        }
    }

    /// A page of the timeline, the actions of its messages and the unread
    /// count above a recent mark cost the same on a small and a large
    /// conversation full of reactions (each walk stops after the rows it
    /// returns): no scan, no sort of the whole conversation, and action rows
    /// are never stepped over.
    #[test]
    fn timeline_cost_does_not_grow_with_the_conversation() {
        let mut costs = Vec::new();
        for n in [500u64, 20_000] {
            let mut store = SqliteStore::open_in_memory().unwrap();
            let conv = ConversationId::from_str(CONV).unwrap();
            let other = ConversationId::new();
            let mut ops = Vec::new();
            let mut seq = 0;
            for m in 1..=n {
                for c in [conv, other] {
                    seq += 1;
                    let op = confirmed(c, seq, m % 3 == 0, None);
                    let StoreOp::UpsertConfirmed(message) = &op else {
                        unreachable!()
                    };
                    let target = message.id;
                    ops.push(op);
                    // Two reactions on every message, an edit on every tenth.
                    for kind in [
                        ActionKind::React { on: true },
                        ActionKind::React { on: false },
                        ActionKind::Edit,
                    ] {
                        if kind == ActionKind::Edit && m % 10 != 0 {
                            continue;
                        }
                        seq += 1;
                        ops.push(confirmed(c, seq, false, Some(ActionRef { target, kind })));
                    }
                }
            }
            store.apply(&ops).unwrap();
            let newest = vm_steps(&store, TIMELINE_SQL, params![CONV, 50]);
            let older = vm_steps(&store, TIMELINE_BEFORE_SQL, params![CONV, seq / 2, 50]);
            let outbox = vm_steps(&store, OUTBOX_SQL, params![]);
            let max = vm_steps(&store, MAX_LOCAL_SEQ_SQL, params![]);
            let page = store.timeline(conv, None, 50).unwrap();
            let page_ids: Vec<String> = page.iter().map(|i| i.id.to_string()).collect();
            let ids_json = serde_json::to_string(&page_ids).unwrap();
            let actions = vm_steps(&store, ACTIONS_SQL, params![ids_json]);
            let mark = page[0].seq.unwrap().0;
            let unread = vm_steps(&store, UNREAD_SQL, params![CONV, mark]);
            let count = store.unread(conv, Seq(mark)).unwrap();
            let in_flight = vm_steps(&store, IN_FLIGHT_SQL, params![]);
            assert_eq!(
                (
                    newest.0,
                    older.0,
                    outbox.0,
                    max.0,
                    actions.0,
                    unread.0,
                    in_flight.0
                ),
                (50, 50, 0, 1, 105, 1, 0)
            );
            // Of the 49 messages above the oldest of the page, 16 are own.
            assert_eq!(count, 33);
            costs.push([
                newest.1,
                older.1,
                outbox.1,
                max.1,
                actions.1,
                unread.1,
                in_flight.1,
            ]);
        }
        let (small, large) = (costs[0], costs[1]);
        // Allow a little slack for deeper B-trees.
        for (s, l) in small.iter().zip(&large) {
            assert!(*l <= s * 2 + 10, "cost grew: {small:?} -> {large:?}");
        }
    }

    /// The erasure, and a later migration, keep working on a store written
    /// by schema version 1 (rows without the action columns).
    #[test]
    fn migration_2_keeps_version_1_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.db");
        {
            let mut conn = Connection::open(&path).unwrap();
            let tx = conn.transaction().unwrap();
            tx.execute_batch(MIGRATIONS[0]).unwrap();
            tx.pragma_update(None, "user_version", 1).unwrap();
            tx.execute(
                "INSERT INTO items (id, conversation, sender, sender_name, body, own, status, \
                 seq, local_seq, created_at, server_ts, failure, transmitted) \
                 VALUES (?1, ?2, ?3, 'x', 'old text', 0, 2, 1, 0, 0, 0, NULL, 1)",
                params![
                    MessageId(uuid::Uuid::from_u128(1)).to_string(),
                    CONV,
                    UserId(uuid::Uuid::from_u128(2)).to_string()
                ],
            )
            .unwrap();
            tx.commit().unwrap();
        }
        let mut store = SqliteStore::open(&path).unwrap();
        let id = MessageId(uuid::Uuid::from_u128(1));
        let conv = ConversationId::from_str(CONV).unwrap();
        let got = store.item(id).unwrap().unwrap();
        assert_eq!(
            (got.body.as_str(), got.action.is_none()),
            ("old text", true)
        );
        assert_eq!(store.unread(conv, Seq(0)).unwrap(), 1);
        let mut del = got.clone();
        del.id = MessageId(uuid::Uuid::from_u128(3));
        del.seq = Some(Seq(2));
        del.body = String::new();
        del.action = Some(ActionRef {
            target: id,
            kind: ActionKind::Delete,
        });
        store.apply(&[StoreOp::UpsertConfirmed(del)]).unwrap();
        let got = store.item(id).unwrap().unwrap();
        assert!(got.deleted && got.body.is_empty());
        assert_eq!(store.unread(conv, Seq(0)).unwrap(), 0);
        assert_eq!(store.timeline(conv, None, 10).unwrap(), vec![got]);
    }

    #[test]
    fn reopen_is_idempotent_and_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/client.db");
        drop(SqliteStore::open(&path).unwrap());
        let store = SqliteStore::open(&path).unwrap();
        let v: i64 = store
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, MIGRATIONS.len() as i64);
        let mode: String = store
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        store.conn.pragma_update(None, "user_version", 99).unwrap();
        drop(store);
        assert!(matches!(
            SqliteStore::open(&path),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn undecodable_rows_are_corrupt_not_panics() {
        let mut store = SqliteStore::open_in_memory().unwrap();
        let conv = ConversationId::new();
        store
            .conn
            .execute(
                concat!(
                    "INSERT INTO items (",
                    insert_columns!(),
                    ") VALUES ('not-a-uuid', ?1, ?1, 'x', 'x', 1, 0, NULL, 1, 0, NULL, NULL, 0, \
                     NULL, NULL)"
                ),
                params![conv.to_string()],
            )
            .unwrap();
        assert!(matches!(store.load(), Err(StoreError::Corrupt(_))));
        store.conn.execute("DELETE FROM items", []).unwrap();
        let id = MessageId::new();
        store
            .conn
            .execute(
                concat!(
                    "INSERT INTO items (",
                    insert_columns!(),
                    ") VALUES (?1, ?2, ?2, 'x', 'x', 1, 5, NULL, 1, 0, NULL, NULL, 0, NULL, NULL)"
                ),
                params![id.to_string(), conv.to_string()],
            )
            .unwrap();
        assert!(matches!(store.item(id), Err(StoreError::Corrupt(_))));
        store
            .conn
            .execute(
                "UPDATE items SET status = 9, failure = '{' WHERE id = ?1",
                params![id.to_string()],
            )
            .unwrap();
        assert!(matches!(
            store.timeline(conv, None, 10),
            Err(StoreError::Corrupt(_))
        ));
        // An action whose target is not an id.
        store
            .conn
            .execute(
                "UPDATE items SET failure = NULL, target = 'nope', action = 'edit' WHERE id = ?1",
                params![id.to_string()],
            )
            .unwrap();
        assert!(matches!(store.item(id), Err(StoreError::Corrupt(_))));
        store
            .conn
            .execute(
                "INSERT INTO conversations VALUES (?1, 't', 'not json', 0, 0)",
                params![conv.to_string()],
            )
            .unwrap();
        assert!(matches!(store.conversations(), Err(StoreError::Corrupt(_))));
        // A Seq beyond i64 cannot be stored: the whole batch is refused.
        let before = store.meta("k").unwrap();
        let r = store.apply(&[
            StoreOp::SetMeta {
                key: "k".into(),
                value: "v".into(),
            },
            StoreOp::SetCursor {
                conversation: conv,
                seq: Seq(u64::MAX),
            },
        ]);
        assert!(matches!(r, Err(StoreError::Sqlite(_))));
        assert_eq!(store.meta("k").unwrap(), before);
    }
}
