//! The outbox: own messages not yet confirmed by the server, in send order.

use crate::model::{Item, Status};
use chatsync_protocol::MessageId;
use std::collections::{BTreeMap, HashMap};

/// One unconfirmed message.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub item: Item,
    /// Storage knows it may have left the device (survives restarts).
    pub persisted_transmitted: bool,
    /// Transmitted on the current connection and not answered yet.
    pub on_link: bool,
    /// Transient refusals received so far (the retry budget).
    pub transient_refusals: u32,
    /// Transmissions on the current connection not answered yet. The
    /// server answers one id's transmissions in order, so a refusal that
    /// leaves this above zero answers an older transmission: it is stale.
    pub answers_due: u32,
}

/// Unconfirmed messages keyed by local order, with an index by id.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    by_order: BTreeMap<u64, Entry>,
    by_id: HashMap<MessageId, u64>,
    /// Entries with `on_link` set.
    pub on_link: usize,
}

impl Outbox {
    pub fn insert(&mut self, entry: Entry) {
        self.by_id.insert(entry.item.id, entry.item.local_seq);
        if entry.on_link {
            self.on_link += 1;
        }
        self.by_order.insert(entry.item.local_seq, entry);
    }

    pub fn get(&self, id: MessageId) -> Option<&Entry> {
        self.by_id.get(&id).and_then(|k| self.by_order.get(k))
    }

    pub fn get_mut(&mut self, id: MessageId) -> Option<&mut Entry> {
        let k = self.by_id.get(&id)?;
        self.by_order.get_mut(k)
    }

    pub fn remove(&mut self, id: MessageId) -> Option<Entry> {
        let k = self.by_id.remove(&id)?;
        let entry = self.by_order.remove(&k)?;
        if entry.on_link {
            self.on_link -= 1;
        }
        Some(entry)
    }

    /// Takes an entry off the link (answered, or the link is gone).
    pub fn clear_on_link(&mut self, id: MessageId) {
        if let Some(k) = self.by_id.get(&id) {
            if let Some(e) = self.by_order.get_mut(k) {
                if e.on_link {
                    e.on_link = false;
                    self.on_link -= 1;
                }
            }
        }
    }

    /// Forgets what was transmitted on the link: everything unconfirmed is
    /// resent, in order, on the next one.
    pub fn reset_link(&mut self) {
        for e in self.by_order.values_mut() {
            e.on_link = false;
        }
        self.on_link = 0;
    }

    /// The connection is gone: nothing sent on it will be answered.
    pub fn link_lost(&mut self) {
        self.reset_link();
        for e in self.by_order.values_mut() {
            e.answers_due = 0;
        }
    }

    /// Sending entries not yet on the link, in send order.
    pub fn unsent_mut(&mut self) -> impl Iterator<Item = &mut Entry> {
        self.by_order
            .values_mut()
            .filter(|e| e.item.status == Status::Sending && !e.on_link)
    }

    /// Whether a Sending entry waits to be transmitted.
    pub fn has_unsent(&self) -> bool {
        self.by_order
            .values()
            .any(|e| e.item.status == Status::Sending && !e.on_link)
    }

    /// Moves an entry to a new place in the local order (a retry).
    pub fn reorder(&mut self, id: MessageId, local_seq: u64) {
        if let Some(mut e) = self.remove(id) {
            e.item.local_seq = local_seq;
            self.insert(e);
        }
    }

    pub fn len(&self) -> usize {
        self.by_order.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.by_order.values()
    }
}
