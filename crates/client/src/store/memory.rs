//! In-memory twin of the SQLite store, for unit tests of the core and the
//! simulation. Same semantics, no durability.
//!
//! It also holds [`present`], the one definition of how a stored message is
//! shown (its confirmed actions folded, this device's pending ones on top),
//! which the SQLite store uses too, so that both backends show the same.

use super::{ClientStore, LoadedState, StoreError, StoreOp};
use crate::model::{Conversation, Item, PendingAction, Reaction, Status};
use chatsync_protocol::{fold, ActionKind, ConversationId, FoldEvent, MessageId, Seq, UserId};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// One stored row: a message or an action, exactly as written (the display
/// fields of its [`Item`] are always empty here).
#[derive(Clone, Debug)]
struct Row {
    /// The row's own fields.
    item: Item,
    /// Whether it may have been transmitted.
    transmitted: bool,
    /// Whether a confirmed delete from the author erased its text (messages
    /// only; never cleared).
    deleted: bool,
}

/// Client storage held in memory.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    rows: HashMap<MessageId, Row>,
    /// Action rows by the message they target (the twin of SQLite's
    /// `items_target` index), so that showing a message never scans.
    by_target: HashMap<MessageId, BTreeSet<MessageId>>,
    conversations: BTreeMap<ConversationId, Conversation>,
    meta: HashMap<String, String>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts a row that is not stored yet.
    fn insert_new(&mut self, item: &Item, transmitted: bool) {
        let item = raw(item);
        if let Some(action) = &item.action {
            self.by_target
                .entry(action.target)
                .or_default()
                .insert(item.id);
        }
        self.rows.insert(
            item.id,
            Row {
                item,
                transmitted,
                deleted: false,
            },
        );
    }

    /// Removes a row, keeping `by_target` in step.
    fn remove(&mut self, id: MessageId) {
        if let Some(row) = self.rows.remove(&id) {
            if let Some(action) = row.item.action {
                self.unlink(action.target, id);
            }
        }
    }

    fn unlink(&mut self, target: MessageId, id: MessageId) {
        if let Some(set) = self.by_target.get_mut(&target) {
            set.remove(&id);
            if set.is_empty() {
                self.by_target.remove(&target);
            }
        }
    }

    /// The action rows targeting `target`.
    fn actions_on(&self, target: MessageId) -> impl Iterator<Item = &Item> + '_ {
        self.by_target
            .get(&target)
            .into_iter()
            .flatten()
            .filter_map(|id| self.rows.get(id))
            .map(|row| &row.item)
    }

    /// Erases the text of a message deleted by its author: after `id` was
    /// confirmed, if it is a confirmed delete, its target; if it is a
    /// message, itself when a confirmed delete from its author is stored
    /// (whichever of the two arrived first). Both must be in the same
    /// conversation.
    fn erase_if_deleted(&mut self, id: MessageId) {
        let Some(row) = self.rows.get(&id) else {
            return;
        };
        let victim = match &row.item.action {
            Some(action) => {
                let target = action.target;
                let deletes_target = is_confirmed_delete_by(&row.item, row.item.sender)
                    && self.rows.get(&target).is_some_and(|t| {
                        t.item.action.is_none()
                            && t.item.sender == row.item.sender
                            && t.item.conversation == row.item.conversation
                    });
                deletes_target.then_some(target)
            }
            None => self
                .actions_on(id)
                .any(|a| {
                    is_confirmed_delete_by(a, row.item.sender)
                        && a.conversation == row.item.conversation
                })
                .then_some(id),
        };
        if let Some(row) = victim.and_then(|v| self.rows.get_mut(&v)) {
            row.item.body.clear();
            row.deleted = true;
        }
    }

    /// Blanks the text of the confirmed edits of a deleted message (each
    /// one is a version of its text): after `id` was confirmed, for the
    /// message it is or acts on, when its author deleted it. Only the
    /// author's edits in its conversation count, as for the erasure itself.
    fn erase_edits_if_deleted(&mut self, id: MessageId) {
        let Some(row) = self.rows.get(&id) else {
            return;
        };
        let message = row.item.action.as_ref().map_or(id, |a| a.target);
        let Some(m) = self
            .rows
            .get(&message)
            .filter(|m| m.deleted && m.item.action.is_none())
        else {
            return;
        };
        let (author, conversation) = (m.item.sender, m.item.conversation);
        let edits: Vec<MessageId> = self
            .by_target
            .get(&message)
            .into_iter()
            .flatten()
            .copied()
            .filter(|e| {
                self.rows.get(e).is_some_and(|r| {
                    r.item.seq.is_some()
                        && r.item.sender == author
                        && r.item.conversation == conversation
                        && r.item
                            .action
                            .as_ref()
                            .is_some_and(|a| a.kind == ActionKind::Edit)
                })
            })
            .collect();
        for e in edits {
            if let Some(r) = self.rows.get_mut(&e) {
                r.item.body.clear();
            }
        }
    }

    /// The row `id` as shown: actions folded when it is a message.
    fn shown(&self, row: &Row) -> Item {
        if row.item.action.is_some() {
            return row.item.clone();
        }
        present(&row.item, row.deleted, self.actions_on(row.item.id))
    }

    fn apply_one(&mut self, op: &StoreOp) {
        match op {
            StoreOp::InsertOutgoing { item, transmitted } => {
                if !self.rows.contains_key(&item.id) {
                    self.insert_new(item, *transmitted);
                }
            }
            StoreOp::MarkTransmitted(ids) => {
                for id in ids {
                    if let Some(row) = self.rows.get_mut(id) {
                        row.transmitted = true;
                    }
                }
            }
            StoreOp::UpsertConfirmed(new) => {
                match self.rows.get_mut(&new.id) {
                    Some(row) => {
                        let old = &mut row.item;
                        old.seq = new.seq;
                        old.server_ts = new.server_ts;
                        old.failure = None;
                        old.status = if old.status == Status::Failed {
                            new.status
                        } else {
                            old.status.max(new.status)
                        };
                    }
                    None => self.insert_new(new, true),
                }
                self.erase_if_deleted(new.id);
                self.erase_edits_if_deleted(new.id);
            }
            StoreOp::SetStatus { id, status } => {
                if let Some(Row { item, .. }) = self.rows.get_mut(id) {
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
                if let Some(Row { item, .. }) = self.rows.get_mut(id) {
                    if item.status == Status::Sending {
                        item.status = Status::Failed;
                        item.failure = Some(failure.clone());
                    }
                }
            }
            StoreOp::Requeue { id, local_seq } => {
                if let Some(Row { item, .. }) = self.rows.get_mut(id) {
                    if item.status == Status::Failed {
                        item.status = Status::Sending;
                        item.failure = None;
                        item.local_seq = *local_seq;
                    }
                }
            }
            StoreOp::Remove(id) => self.remove(*id),
            StoreOp::UpdateOutgoing { id, body, action } => {
                let Some(row) = self.rows.get_mut(id) else {
                    return;
                };
                if row.item.seq.is_some() {
                    return;
                }
                let old = std::mem::replace(&mut row.item.action, action.clone());
                row.item.body.clone_from(body);
                if let Some(old) = old {
                    self.unlink(old.target, *id);
                }
                if let Some(new) = action {
                    self.by_target.entry(new.target).or_default().insert(*id);
                }
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
                        Some(m) => {
                            // Each mark independently: a read mark may come
                            // with an older delivery mark, and vice versa.
                            m.delivered = m.delivered.max(marks.delivered);
                            m.read = m.read.max(marks.read);
                        }
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
            .rows
            .values()
            .filter(|r| r.item.own && r.item.seq.is_none())
            .map(|r| (r.item.clone(), r.transmitted))
            .collect();
        // Ties broken by id so the order never depends on hash order.
        outbox.sort_by_key(|(i, _)| (i.local_seq, i.id));
        let mut in_flight: Vec<Item> = self
            .rows
            .values()
            .map(|r| &r.item)
            .filter(|i| is_unsettled(i))
            .cloned()
            .collect();
        sort_by_timeline_then_id(&mut in_flight);
        Ok(LoadedState {
            outbox,
            in_flight,
            conversations: self.conversations.values().cloned().collect(),
            max_local_seq: self
                .rows
                .values()
                .map(|r| r.item.local_seq)
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
        let mut page: Vec<&Row> = self
            .rows
            .values()
            .filter(|r| r.item.action.is_none() && r.item.conversation == conversation)
            .filter(|r| match before {
                None => true,
                Some(b) => r.item.seq.is_some_and(|s| s < b),
            })
            .collect();
        page.sort_by_key(|r| (r.item.order_key(), r.item.id));
        let skip = page.len().saturating_sub(limit);
        Ok(page[skip..].iter().map(|r| self.shown(r)).collect())
    }

    fn item(&self, id: MessageId) -> Result<Option<Item>, StoreError> {
        Ok(self.rows.get(&id).map(|r| self.shown(r)))
    }

    fn unread(&self, conversation: ConversationId, after: Seq) -> Result<u64, StoreError> {
        let n = self
            .rows
            .values()
            .filter(|r| {
                let i = &r.item;
                i.conversation == conversation
                    && i.action.is_none()
                    && !i.own
                    && !r.deleted
                    && i.seq.is_some_and(|s| s > after)
            })
            .count();
        Ok(u64::try_from(n).unwrap_or(u64::MAX))
    }

    fn conversations(&self) -> Result<Vec<Conversation>, StoreError> {
        Ok(self.conversations.values().cloned().collect())
    }

    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.meta.get(key).cloned())
    }
}

/// Whether `load` lists the row in `in_flight`: own rows confirmed but not
/// settled, that is In-Flight (messages and actions) or, for messages,
/// Success (they still wait for Read).
fn is_unsettled(i: &Item) -> bool {
    i.own && (i.status == Status::InFlight || (i.status == Status::Success && i.action.is_none()))
}

/// Whether `a` is a confirmed delete written by `author`.
fn is_confirmed_delete_by(a: &Item, author: UserId) -> bool {
    a.seq.is_some()
        && a.sender == author
        && a.action
            .as_ref()
            .is_some_and(|r| r.kind == ActionKind::Delete)
}

/// `item` as stored: the display fields, which are computed on read, empty.
fn raw(item: &Item) -> Item {
    Item {
        edited: false,
        deleted: false,
        reactions: Vec::new(),
        pending: Vec::new(),
        ..item.clone()
    }
}

/// A stored message as shown, the single rule both backends apply.
///
/// `message` is the stored message row, `erased` whether a confirmed delete
/// from its author erased its stored text, and `actions` the stored action
/// rows targeting it, in any order (rows of another conversation are
/// ignored). The confirmed ones (with a seq) are folded with
/// [`chatsync_protocol::fold`]; then this device's unconfirmed ones are
/// listed in `pending` in local order, and those not Failed are shown on
/// top: an edit replaces the text, a delete leaves the placeholder, a
/// reaction adds or removes this account. Edits and deletes count, as in
/// the fold, only from the message's author, and nothing applies after a
/// delete.
pub(super) fn present<'a>(
    message: &Item,
    erased: bool,
    actions: impl IntoIterator<Item = &'a Item>,
) -> Item {
    let mut actions: Vec<&Item> = actions
        .into_iter()
        .filter(|a| a.conversation == message.conversation)
        .collect();
    // The fold orders by seq, keeping ties (which a well-behaved server never
    // produces) in the given order: make that order the same on every backend.
    actions.sort_by_key(|a| (a.seq, a.id));
    let events: Vec<FoldEvent<'_>> = actions
        .iter()
        .filter_map(|a| {
            Some(FoldEvent {
                seq: a.seq?,
                sender: a.sender,
                body: &a.body,
                action: Some(a.action.as_ref()?),
            })
        })
        .collect();
    let folded = fold(message.sender, &message.body, &events);
    let mut shown = raw(message);
    shown.body = folded.body;
    shown.edited = folded.edited;
    shown.deleted = folded.deleted || erased;
    let mut reactions = folded.reactions;

    let mut pending: Vec<&Item> = actions
        .iter()
        .copied()
        .filter(|a| a.own && a.seq.is_none())
        .collect();
    pending.sort_by_key(|a| (a.local_seq, a.id));
    for a in pending {
        let Some(action) = &a.action else { continue };
        shown.pending.push(PendingAction {
            id: a.id,
            kind: action.kind,
            body: a.body.clone(),
            status: a.status,
            failure: a.failure.clone(),
        });
        if a.status == Status::Failed || shown.deleted {
            continue;
        }
        let by_author = a.sender == message.sender;
        match action.kind {
            ActionKind::Edit if by_author => {
                shown.body.clone_from(&a.body);
                shown.edited = true;
            }
            ActionKind::Delete if by_author => shown.deleted = true,
            ActionKind::React { on } => {
                let users = reactions.entry(a.body.clone()).or_default();
                match (users.binary_search(&a.sender), on) {
                    (Err(at), true) => users.insert(at, a.sender),
                    (Ok(at), false) => {
                        users.remove(at);
                    }
                    _ => {}
                }
                if users.is_empty() {
                    reactions.remove(&a.body);
                }
            }
            _ => {}
        }
    }
    if shown.deleted {
        shown.body.clear();
        reactions.clear();
    }
    shown.reactions = reactions
        .into_iter()
        .map(|(emoji, mut users)| {
            // The fold lists users in id order already; keep it explicit.
            users.sort();
            users.dedup();
            Reaction { emoji, users }
        })
        .collect();
    shown
}

/// The timeline rule, with ties (which a well-behaved server never produces
/// within one conversation, but which occur across conversations) broken by
/// id, so that every backend returns the same, deterministic order.
fn sort_by_timeline_then_id(items: &mut [Item]) {
    items.sort_by_key(|i| (i.order_key(), i.id));
}
