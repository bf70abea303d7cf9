//! SQLite client storage (WAL). Being written.

use super::{ClientStore, LoadedState, StoreError, StoreOp};
use crate::model::{Conversation, Item};
use chatsync_protocol::{ConversationId, MessageId, Seq};
use std::path::Path;

/// Client storage in a SQLite file.
pub struct SqliteStore {
    _conn: rusqlite::Connection,
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(SqliteStore {
            _conn: rusqlite::Connection::open(path)?,
        })
    }

    /// A store in memory, for tests.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Ok(SqliteStore {
            _conn: rusqlite::Connection::open_in_memory()?,
        })
    }
}

impl ClientStore for SqliteStore {
    fn apply(&mut self, _ops: &[StoreOp]) -> Result<(), StoreError> {
        Err(StoreError::Corrupt("not implemented".into()))
    }
    fn load(&self) -> Result<LoadedState, StoreError> {
        Err(StoreError::Corrupt("not implemented".into()))
    }
    fn timeline(
        &self,
        _conversation: ConversationId,
        _before: Option<Seq>,
        _limit: usize,
    ) -> Result<Vec<Item>, StoreError> {
        Err(StoreError::Corrupt("not implemented".into()))
    }
    fn item(&self, _id: MessageId) -> Result<Option<Item>, StoreError> {
        Err(StoreError::Corrupt("not implemented".into()))
    }
    fn conversations(&self) -> Result<Vec<Conversation>, StoreError> {
        Err(StoreError::Corrupt("not implemented".into()))
    }
    fn meta(&self, _key: &str) -> Result<Option<String>, StoreError> {
        Err(StoreError::Corrupt("not implemented".into()))
    }
}
