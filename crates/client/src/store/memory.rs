//! In-memory twin of the SQLite store, for unit tests of the core and the
//! simulation. Same semantics, no durability.

use super::{ClientStore, LoadedState, StoreError, StoreOp};
use crate::model::{Conversation, Item, Status};
use chatsync_protocol::{ConversationId, MessageId, Seq};
use std::collections::{BTreeMap, HashMap};

/// Client storage held in memory.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    items: HashMap<MessageId, (Item, bool)>,
    conversations: BTreeMap<ConversationId, Conversation>,
    meta: HashMap<String, String>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn apply_one(&mut self, op: &StoreOp) {
        match op {
            StoreOp::InsertOutgoing { item, transmitted } => {
                self.items
                    .entry(item.id)
                    .or_insert_with(|| (item.clone(), *transmitted));
            }
            StoreOp::MarkTransmitted(ids) => {
                for id in ids {
                    if let Some((_, t)) = self.items.get_mut(id) {
                        *t = true;
                    }
                }
            }
            StoreOp::UpsertConfirmed(new) => match self.items.get_mut(&new.id) {
                Some((old, _)) => {
                    old.seq = new.seq;
                    old.server_ts = new.server_ts;
                    old.failure = None;
                    old.status = if old.status == Status::Failed {
                        new.status
                    } else {
                        old.status.max(new.status)
                    };
                }
                None => {
                    self.items.insert(new.id, (new.clone(), true));
                }
            },
            StoreOp::SetStatus { id, status } => {
                if let Some((item, _)) = self.items.get_mut(id) {
                    // Forward only, and Failed only from Sending: a confirmed
                    // message marked Failed would have a seq, so a retry
                    // could never put it back in the outbox.
                    let allowed = *status != Status::Failed || item.status == Status::Sending;
                    if *status > item.status && allowed {
                        item.status = *status;
                    }
                }
            }
            StoreOp::SetFailed { id, failure } => {
                if let Some((item, _)) = self.items.get_mut(id) {
                    if item.status == Status::Sending {
                        item.status = Status::Failed;
                        item.failure = Some(failure.clone());
                    }
                }
            }
            StoreOp::Requeue { id, local_seq } => {
                if let Some((item, _)) = self.items.get_mut(id) {
                    if item.status == Status::Failed {
                        item.status = Status::Sending;
                        item.failure = None;
                        item.local_seq = *local_seq;
                    }
                }
            }
            StoreOp::Remove(id) => {
                self.items.remove(id);
            }
            StoreOp::UpsertConversation {
                id,
                title,
                members,
                last_seq,
            } => {
                let conv = self
                    .conversations
                    .entry(*id)
                    .or_insert_with(|| Conversation {
                        id: *id,
                        title: String::new(),
                        members: Vec::new(),
                        cursor: Seq::ZERO,
                        last_seq: Seq::ZERO,
                    });
                conv.title.clone_from(title);
                conv.members.clone_from(members);
                conv.last_seq = conv.last_seq.max(*last_seq);
            }
            StoreOp::SetMarks {
                conversation,
                marks,
            } => {
                if let Some(conv) = self.conversations.get_mut(conversation) {
                    match conv.members.iter_mut().find(|m| m.user == marks.user) {
                        Some(m) => m.delivered = m.delivered.max(marks.delivered),
                        None => conv.members.push(marks.clone()),
                    }
                }
            }
            StoreOp::SetCursor { conversation, seq } => {
                if let Some(conv) = self.conversations.get_mut(conversation) {
                    conv.cursor = conv.cursor.max(*seq);
                    conv.last_seq = conv.last_seq.max(*seq);
                }
            }
            StoreOp::SetMeta { key, value } => {
                self.meta.insert(key.clone(), value.clone());
            }
        }
    }
}

impl ClientStore for MemoryStore {
    fn apply(&mut self, ops: &[StoreOp]) -> Result<(), StoreError> {
        for op in ops {
            self.apply_one(op);
        }
        Ok(())
    }

    fn load(&self) -> Result<LoadedState, StoreError> {
        let mut outbox: Vec<(Item, bool)> = self
            .items
            .values()
            .filter(|(i, _)| i.own && i.seq.is_none())
            .cloned()
            .collect();
        // Ties broken by id so the order never depends on hash order.
        outbox.sort_by_key(|(i, _)| (i.local_seq, i.id));
        let mut in_flight: Vec<Item> = self
            .items
            .values()
            .filter(|(i, _)| i.own && i.status == Status::InFlight)
            .map(|(i, _)| i.clone())
            .collect();
        sort_by_timeline_then_id(&mut in_flight);
        Ok(LoadedState {
            outbox,
            in_flight,
            conversations: self.conversations.values().cloned().collect(),
            max_local_seq: self
                .items
                .values()
                .map(|(i, _)| i.local_seq)
                .max()
                .unwrap_or(0),
        })
    }

    fn timeline(
        &self,
        conversation: ConversationId,
        before: Option<Seq>,
        limit: usize,
    ) -> Result<Vec<Item>, StoreError> {
        let mut items: Vec<Item> = self
            .items
            .values()
            .map(|(i, _)| i)
            .filter(|i| i.conversation == conversation)
            .filter(|i| match before {
                None => true,
                Some(b) => i.seq.is_some_and(|s| s < b),
            })
            .cloned()
            .collect();
        sort_by_timeline_then_id(&mut items);
        let skip = items.len().saturating_sub(limit);
        Ok(items.split_off(skip))
    }

    fn item(&self, id: MessageId) -> Result<Option<Item>, StoreError> {
        Ok(self.items.get(&id).map(|(i, _)| i.clone()))
    }

    fn conversations(&self) -> Result<Vec<Conversation>, StoreError> {
        Ok(self.conversations.values().cloned().collect())
    }

    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.meta.get(key).cloned())
    }
}

/// The timeline rule, with ties (which a well-behaved server never produces
/// within one conversation, but which occur across conversations) broken by
/// id, so that every backend returns the same, deterministic order.
fn sort_by_timeline_then_id(items: &mut [Item]) {
    items.sort_by_key(|i| (i.order_key(), i.id));
}
