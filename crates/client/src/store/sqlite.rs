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
//! Schema changes are numbered migrations tracked with `PRAGMA user_version`,
//! applied in one transaction. A released migration is never edited; add a
//! new one at the end of [`MIGRATIONS`].

use super::{ClientStore, LoadedState, StoreError, StoreOp};
use crate::model::{Conversation, Failure, Item, Status};
use chatsync_protocol::{ConversationId, MemberMarks, MessageId, Seq, UserId};
use rusqlite::types::FromSql;
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// Client storage in a SQLite file.
pub struct SqliteStore {
    conn: Connection,
    /// Dropping it stops the background checkpointer.
    _checkpointer: Option<std::sync::mpsc::Sender<()>>,
}

/// How often the background thread copies the WAL into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Runs WAL checkpoints on a thread of its own, with its own connection, so
/// that the fsyncs of a checkpoint never stall `send` (SQLite's automatic
/// checkpoint would run inside whichever commit crosses the threshold).
fn spawn_checkpointer(path: &Path) -> Result<std::sync::mpsc::Sender<()>, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("chatsync-checkpoint".into())
        .spawn(move || {
            // Runs until the store is dropped (the sender disconnects).
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                rx.recv_timeout(CHECKPOINT_EVERY)
            {
                // PASSIVE never waits for the writer nor blocks it.
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::debug!("WAL checkpoint: {e}");
                }
            }
        })?;
    Ok(tx)
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
];

/// Columns of an item row, in the order [`decode_item`] reads them (a macro so
/// that the queries below can be `concat!`-ed constants).
macro_rules! item_columns {
    () => {
        "id, conversation, sender, sender_name, body, own, status, seq, \
         local_seq, created_at, server_ts, failure, transmitted"
    };
}

/// Newest page of a timeline (`?1` conversation, `?2` limit). Each part walks
/// its partial index newest-first and stops after `limit` rows; the newest
/// `limit` of the union is the answer. One statement, so one snapshot.
const TIMELINE_SQL: &str = concat!(
    "SELECT * FROM (SELECT ",
    item_columns!(),
    " FROM items WHERE conversation = ?1 AND seq IS NULL \
     ORDER BY local_seq DESC, id DESC LIMIT ?2) \
     UNION ALL \
     SELECT * FROM (SELECT ",
    item_columns!(),
    " FROM items WHERE conversation = ?1 AND seq IS NOT NULL \
     ORDER BY seq DESC, id DESC LIMIT ?2)"
);

/// Older page of a timeline (`?1` conversation, `?2` before, `?3` limit).
const TIMELINE_BEFORE_SQL: &str = concat!(
    "SELECT ",
    item_columns!(),
    " FROM items WHERE conversation = ?1 AND seq IS NOT NULL AND seq < ?2 \
     ORDER BY seq DESC, id DESC LIMIT ?3"
);

const OUTBOX_SQL: &str = concat!(
    "SELECT ",
    item_columns!(),
    " FROM items WHERE own AND seq IS NULL ORDER BY local_seq, id"
);

const IN_FLIGHT_SQL: &str = concat!(
    "SELECT ",
    item_columns!(),
    " FROM items WHERE status = 1 AND own"
);

const ITEM_SQL: &str = concat!("SELECT ", item_columns!(), " FROM items WHERE id = ?1");

const MAX_LOCAL_SEQ_SQL: &str = "SELECT MAX(local_seq) FROM items WHERE local_seq > 0";

const INSERT_OUTGOING_SQL: &str = concat!(
    "INSERT INTO items (",
    item_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
     ON CONFLICT (id) DO NOTHING"
);

/// A Failed message the server confirmed after all takes the new status;
/// otherwise the status never moves back (the integer order of
/// `Status::as_i64` is the enum's order).
const UPSERT_CONFIRMED_SQL: &str = concat!(
    "INSERT INTO items (",
    item_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 1) \
     ON CONFLICT (id) DO UPDATE SET \
       seq = excluded.seq, \
       server_ts = excluded.server_ts, \
       failure = NULL, \
       status = CASE WHEN items.status = 9 THEN excluded.status \
                     ELSE MAX(items.status, excluded.status) END"
);

impl SqliteStore {
    /// Opens (creating if needed, with its parent directories) the store at
    /// `path`, and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut store = Self::init(Connection::open(path)?)?;
        store.conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        store._checkpointer = Some(spawn_checkpointer(path)?);
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
        // Room for every statement of `apply` and the reads.
        conn.set_prepared_statement_cache_capacity(32);
        migrate(&mut conn)?;
        Ok(SqliteStore {
            conn,
            _checkpointer: None,
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
        for op in ops {
            apply_one(&tx, op)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn load(&self) -> Result<LoadedState, StoreError> {
        // One read transaction, so the parts are one consistent snapshot.
        let tx = self.conn.unchecked_transaction()?;
        let outbox = query_items(&tx, OUTBOX_SQL, params![])?;
        let mut in_flight: Vec<Item> = query_items(&tx, IN_FLIGHT_SQL, params![])?
            .into_iter()
            .map(|(item, _)| item)
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
        let rows = match before {
            None => query_items(&self.conn, TIMELINE_SQL, params![conv, lim])?,
            Some(before) => query_items(
                &self.conn,
                TIMELINE_BEFORE_SQL,
                params![conv, before.0, lim],
            )?,
        };
        let mut items: Vec<Item> = rows.into_iter().map(|(item, _)| item).collect();
        items.sort_by_key(|i| (i.order_key(), i.id));
        let skip = items.len().saturating_sub(limit);
        Ok(items.split_off(skip))
    }

    fn item(&self, id: MessageId) -> Result<Option<Item>, StoreError> {
        let rows = query_items(&self.conn, ITEM_SQL, params![id.to_string()])?;
        Ok(rows.into_iter().next().map(|(item, _)| item))
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

/// Applies one op inside the batch's transaction; mirrors
/// `MemoryStore::apply_one` case by case.
fn apply_one(conn: &Connection, op: &StoreOp) -> Result<(), StoreError> {
    match op {
        StoreOp::InsertOutgoing { item, transmitted } => {
            let failure = encode_failure(item.failure.as_ref())?;
            conn.prepare_cached(INSERT_OUTGOING_SQL)?.execute(params![
                item.id.to_string(),
                item.conversation.to_string(),
                item.sender.to_string(),
                item.sender_name,
                item.body,
                item.own,
                item.status.as_i64(),
                item.seq.map(|s| s.0),
                item.local_seq,
                item.created_at,
                item.server_ts,
                failure,
                *transmitted,
            ])?;
        }
        StoreOp::MarkTransmitted(ids) => {
            let mut stmt = conn.prepare_cached("UPDATE items SET transmitted = 1 WHERE id = ?1")?;
            for id in ids {
                stmt.execute(params![id.to_string()])?;
            }
        }
        StoreOp::UpsertConfirmed(item) => {
            let failure = encode_failure(item.failure.as_ref())?;
            conn.prepare_cached(UPSERT_CONFIRMED_SQL)?.execute(params![
                item.id.to_string(),
                item.conversation.to_string(),
                item.sender.to_string(),
                item.sender_name,
                item.body,
                item.own,
                item.status.as_i64(),
                item.seq.map(|s| s.0),
                item.local_seq,
                item.created_at,
                item.server_ts,
                failure,
            ])?;
        }
        StoreOp::SetStatus { id, status } => {
            // Forward only; Failed only from Sending.
            conn.prepare_cached(
                "UPDATE items SET status = ?2 \
                 WHERE id = ?1 AND status < ?2 AND (?2 <> 9 OR status = 0)",
            )?
            .execute(params![id.to_string(), status.as_i64()])?;
        }
        StoreOp::SetFailed { id, failure } => {
            let failure = encode_failure(Some(failure))?;
            conn.prepare_cached(
                "UPDATE items SET status = 9, failure = ?2 WHERE id = ?1 AND status = 0",
            )?
            .execute(params![id.to_string(), failure])?;
        }
        StoreOp::Requeue { id, local_seq } => {
            conn.prepare_cached(
                "UPDATE items SET status = 0, failure = NULL, local_seq = ?2 \
                 WHERE id = ?1 AND status = 9",
            )?
            .execute(params![id.to_string(), local_seq])?;
        }
        StoreOp::Remove(id) => {
            conn.prepare_cached("DELETE FROM items WHERE id = ?1")?
                .execute(params![id.to_string()])?;
        }
        StoreOp::UpsertConversation {
            id,
            title,
            members,
            last_seq,
        } => {
            let members = encode_json(members)?;
            conn.prepare_cached(
                "INSERT INTO conversations (id, title, members, cursor, last_seq) \
                 VALUES (?1, ?2, ?3, 0, ?4) \
                 ON CONFLICT (id) DO UPDATE SET \
                   title = excluded.title, \
                   members = excluded.members, \
                   last_seq = MAX(conversations.last_seq, excluded.last_seq)",
            )?
            .execute(params![id.to_string(), title, members, last_seq.0])?;
        }
        StoreOp::SetMarks {
            conversation,
            marks,
        } => {
            let conv = conversation.to_string();
            let stored: Option<String> = conn
                .prepare_cached("SELECT members FROM conversations WHERE id = ?1")?
                .query_row(params![conv], |r| r.get(0))
                .optional()?;
            let Some(stored) = stored else {
                return Ok(());
            };
            let mut members: Vec<MemberMarks> = decode_json(&stored, "members")?;
            match members.iter_mut().find(|m| m.user == marks.user) {
                Some(m) => m.delivered = m.delivered.max(marks.delivered),
                None => members.push(marks.clone()),
            }
            conn.prepare_cached("UPDATE conversations SET members = ?2 WHERE id = ?1")?
                .execute(params![conv, encode_json(&members)?])?;
        }
        StoreOp::SetCursor { conversation, seq } => {
            conn.prepare_cached(
                "UPDATE conversations \
                 SET cursor = MAX(cursor, ?2), last_seq = MAX(last_seq, ?2) WHERE id = ?1",
            )?
            .execute(params![conversation.to_string(), seq.0])?;
        }
        StoreOp::SetMeta { key, value } => {
            conn.prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![key, value])?;
        }
    }
    Ok(())
}

/// Runs an item query; each row is decoded with [`decode_item`].
fn query_items(
    conn: &Connection,
    sql: &str,
    params: &[&dyn rusqlite::ToSql],
) -> Result<Vec<(Item, bool)>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(decode_item(row)?);
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
fn decode_item(row: &Row<'_>) -> Result<(Item, bool), StoreError> {
    let status: i64 = col(row, 6, "status")?;
    let failure: Option<String> = col(row, 11, "failure")?;
    let item = Item {
        id: parse_id(&col::<String>(row, 0, "id")?, "message id")?,
        conversation: parse_id(&col::<String>(row, 1, "conversation")?, "conversation id")?,
        sender: parse_id::<UserId>(&col::<String>(row, 2, "sender")?, "sender id")?,
        sender_name: col(row, 3, "sender_name")?,
        body: col(row, 4, "body")?,
        own: col(row, 5, "own")?,
        status: Status::from_i64(status)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown status {status}")))?,
        seq: col::<Option<i64>>(row, 7, "seq")?
            .map(|v| to_u64(v, "seq").map(Seq))
            .transpose()?,
        local_seq: col_u64(row, 8, "local_seq")?,
        created_at: col(row, 9, "created_at")?,
        server_ts: col(row, 10, "server_ts")?,
        failure: failure
            .map(|f| decode_json::<Failure>(&f, "failure"))
            .transpose()?,
    };
    let transmitted = col(row, 12, "transmitted")?;
    Ok((item, transmitted))
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
        ] {
            let p = plan(&store, sql);
            // "SCAN items USING INDEX <partial>" only walks the partial index.
            let full_scan = p
                .lines()
                .any(|l| l.trim_start().starts_with("SCAN items") && !l.contains("INDEX"));
            assert!(!full_scan, "full scan in:\n{sql}\n{p}");
        }
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

    /// A page of the timeline costs the same on a small and a large
    /// conversation (the walk stops after `limit` rows): no scan, no sort of
    /// the whole conversation.
    #[test]
    fn timeline_cost_does_not_grow_with_the_conversation() {
        let mut costs = Vec::new();
        for n in [500u64, 20_000] {
            let mut store = SqliteStore::open_in_memory().unwrap();
            let conv = ConversationId::from_str(CONV).unwrap();
            let other = ConversationId::new();
            let mut ops = Vec::new();
            for seq in 1..=n {
                for c in [conv, other] {
                    ops.push(StoreOp::UpsertConfirmed(Item {
                        id: MessageId::new(),
                        conversation: c,
                        sender: UserId::new(),
                        sender_name: "x".into(),
                        body: "hello".into(),
                        own: seq % 3 == 0,
                        status: Status::Success,
                        seq: Some(Seq(seq)),
                        local_seq: seq,
                        created_at: 0,
                        server_ts: Some(0),
                        failure: None,
                    }));
                }
            }
            store.apply(&ops).unwrap();
            let newest = vm_steps(&store, TIMELINE_SQL, params![CONV, 50]);
            let older = vm_steps(&store, TIMELINE_BEFORE_SQL, params![CONV, n / 2, 50]);
            let outbox = vm_steps(&store, OUTBOX_SQL, params![]);
            let max = vm_steps(&store, MAX_LOCAL_SEQ_SQL, params![]);
            assert_eq!((newest.0, older.0, outbox.0, max.0), (50, 50, 0, 1));
            costs.push((newest.1, older.1, outbox.1, max.1));
        }
        let (small, large) = (costs[0], costs[1]);
        // Allow a little slack for deeper B-trees.
        assert!(
            large.0 <= small.0 * 2 && large.1 <= small.1 * 2 && large.3 <= small.3 * 2,
            "cost grew: {small:?} -> {large:?}"
        );
        assert!(
            large.2 <= small.2 + 10,
            "outbox cost grew: {small:?} -> {large:?}"
        );
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
                    item_columns!(),
                    ") VALUES ('not-a-uuid', ?1, ?1, 'x', 'x', 1, 0, NULL, 1, 0, NULL, NULL, 0)"
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
                    item_columns!(),
                    ") VALUES (?1, ?2, ?2, 'x', 'x', 1, 5, NULL, 1, 0, NULL, NULL, 0)"
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
