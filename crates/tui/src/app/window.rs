//! A bounded window over one conversation's timeline.
//!
//! Only this window is kept in memory: at most [`MAX_ITEMS`] items around
//! what is on screen, paged from client storage as the person scrolls. So a
//! conversation of any length opens and scrolls at the same cost.
//!
//! Changes from the subscription are merged monotonically (a status never
//! moves back, except Failed → Sending by a retry; a sequence number once
//! known stays), so replaying changes that a freshly read page already
//! contains is harmless: pages and the change stream need no coordination.

use chatsync_client::{Item, Status, TimelineChange};
use chatsync_protocol::{MessageId, Seq};

/// Items fetched per page.
pub const PAGE: usize = 100;
/// Most items kept in memory for the open conversation.
pub const MAX_ITEMS: usize = 600;

/// The loaded part of a conversation, in timeline order.
#[derive(Debug, Default)]
pub struct Window {
    items: Vec<Item>,
    has_older: bool,
    attached: bool,
}

/// The timeline sort key: server order, then this device's send order.
fn key(item: &Item) -> ((bool, u64, u64), MessageId) {
    (item.order_key(), item.id)
}

/// Whether a status may move from `old` to `new`.
pub fn may_move(old: Status, new: Status) -> bool {
    use Status::*;
    match (old, new) {
        (Sending, InFlight | Success | Read | Failed) | (InFlight, Success | Read) => true,
        (Success, Read) => true,
        // A retry, or an acknowledgement that arrived after the budget ran out.
        (Failed, Sending | InFlight | Success | Read) => true,
        _ => false,
    }
}

/// Merges a newer version of an item into the stored one.
fn merge(existing: &mut Item, incoming: Item) {
    let status = if incoming.status == existing.status || may_move(existing.status, incoming.status)
    {
        incoming.status
    } else {
        existing.status
    };
    let failure = if status == Status::Failed {
        incoming.failure.or_else(|| existing.failure.take())
    } else {
        None
    };
    let seq = incoming.seq.or(existing.seq);
    let server_ts = incoming.server_ts.or(existing.server_ts);
    *existing = Item {
        status,
        failure,
        seq,
        server_ts,
        ..incoming
    };
}

impl Window {
    /// A window holding the newest items (`snapshot`, asked with `limit`).
    pub fn new(mut snapshot: Vec<Item>, limit: usize) -> Window {
        let fetched = snapshot.len();
        snapshot.retain(|i| i.action.is_none());
        snapshot.sort_by_key(key);
        Window {
            has_older: fetched >= limit,
            items: snapshot,
            attached: true,
        }
    }

    /// The items, in timeline order.
    pub fn items(&self) -> &[Item] {
        &self.items
    }

    /// Whether storage may hold items before the first one.
    pub fn has_older(&self) -> bool {
        self.has_older
    }

    /// Whether the window reaches the newest item (and so follows new ones).
    pub fn attached(&self) -> bool {
        self.attached
    }

    /// Position of an item.
    pub fn index_of(&self, id: MessageId) -> Option<usize> {
        self.items.iter().position(|i| i.id == id)
    }

    /// Highest sequence number in the window.
    pub fn max_seq(&self) -> Option<Seq> {
        self.items.iter().filter_map(|i| i.seq).max()
    }

    /// Applies a change from the subscription; true when the window changed.
    pub fn apply(&mut self, change: TimelineChange) -> bool {
        match change {
            TimelineChange::Upserted(item) => self.upsert(item),
            TimelineChange::StatusChanged {
                id,
                status,
                failure,
            } => {
                let Some(item) = self.items.iter_mut().find(|i| i.id == id) else {
                    return false;
                };
                if !may_move(item.status, status) {
                    return false;
                }
                item.status = status;
                item.failure = if status == Status::Failed {
                    failure
                } else {
                    None
                };
                true
            }
            TimelineChange::Removed(id) => match self.index_of(id) {
                Some(at) => {
                    self.items.remove(at);
                    true
                }
                None => false,
            },
        }
    }

    fn upsert(&mut self, item: Item) -> bool {
        if item.action.is_some() {
            return false; // an edit, delete or reaction row: shown on its message
        }
        if let Some(at) = self.index_of(item.id) {
            let mut existing = self.items.remove(at);
            merge(&mut existing, item);
            self.insert_sorted(existing);
            return true;
        }
        let k = key(&item);
        let before_first = self.items.first().is_some_and(|f| k < key(f));
        let after_last = self.items.last().is_none_or(|l| k > key(l));
        if (before_first && self.has_older) || (after_last && !self.attached) {
            return false; // outside the loaded range: paged in when scrolled to
        }
        self.insert_sorted(item);
        true
    }

    fn insert_sorted(&mut self, item: Item) {
        let k = key(&item);
        let at = self.items.partition_point(|i| key(i) < k);
        self.items.insert(at, item);
    }

    /// Where the next older page ends (exclusive).
    pub fn older_before(&self) -> Seq {
        self.items
            .iter()
            .find_map(|i| i.seq)
            .unwrap_or(Seq(u64::MAX))
    }

    /// Where the next newer page ends (exclusive), when detached: the
    /// [`PAGE`] sequence numbers after the last confirmed item.
    pub fn newer_before(&self) -> Seq {
        let last = self.max_seq().map_or(0, |s| s.0);
        Seq(last.saturating_add(1 + PAGE as u64))
    }

    /// Adds an older page (asked with `requested`). Keeps the window
    /// bounded by dropping the newest items, never index `keep` or before.
    pub fn add_older(&mut self, page: Vec<Item>, requested: usize, keep: usize) {
        if page.len() < requested {
            self.has_older = false;
        }
        let added = self.add(page);
        let keep = keep + added;
        if self.items.len() > MAX_ITEMS {
            let cut = MAX_ITEMS.max(keep + 1);
            if cut < self.items.len() {
                self.items.truncate(cut);
                self.attached = false;
            }
        }
    }

    /// Adds a newer page; `reached_end` when it includes the newest items.
    /// Keeps the window bounded by dropping the oldest items, never index
    /// `keep` or after. Returns how many were dropped from the front.
    pub fn add_newer(&mut self, page: Vec<Item>, reached_end: bool, keep: usize) -> usize {
        self.add(page);
        if reached_end {
            self.attached = true;
        }
        self.trim_front(keep)
    }

    /// Drops the oldest items beyond [`MAX_ITEMS`], never index `keep` or
    /// after. Returns how many were dropped.
    pub fn trim_front(&mut self, keep: usize) -> usize {
        let excess = self.items.len().saturating_sub(MAX_ITEMS).min(keep);
        if excess > 0 {
            self.items.drain(..excess);
            self.has_older = true;
        }
        excess
    }

    /// Merges items in; returns how many were added before the old first.
    fn add(&mut self, page: Vec<Item>) -> usize {
        let first = self.items.first().map(key);
        let mut added_before = 0;
        for item in page.into_iter().filter(|i| i.action.is_none()) {
            if first.as_ref().is_some_and(|f| key(&item) < *f) && self.index_of(item.id).is_none() {
                added_before += 1;
            }
            match self.index_of(item.id) {
                Some(at) => {
                    let mut existing = self.items.remove(at);
                    merge(&mut existing, item);
                    self.insert_sorted(existing);
                }
                None => self.insert_sorted(item),
            }
        }
        added_before
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatsync_protocol::{ConversationId, UserId};

    fn item(seq: Option<u64>, status: Status) -> Item {
        Item::message(
            MessageId::new(),
            ConversationId::new(),
            UserId::new(),
            "a".into(),
            "x".into(),
            true,
            status,
            seq.map(Seq),
            1,
            0,
            None,
        )
    }

    #[test]
    fn stale_changes_do_not_move_a_status_back() {
        let mut sent = item(Some(5), Status::Success);
        let mut w = Window::new(vec![sent.clone()], 10);
        assert!(!w.apply(TimelineChange::StatusChanged {
            id: sent.id,
            status: Status::InFlight,
            failure: None
        }));
        sent.status = Status::Sending;
        sent.seq = None;
        w.apply(TimelineChange::Upserted(sent.clone()));
        assert_eq!(w.items()[0].status, Status::Success);
        assert_eq!(w.items()[0].seq, Some(Seq(5)));
    }

    #[test]
    fn confirmed_item_moves_before_local_ones() {
        let a = item(None, Status::Sending);
        let mut b = item(None, Status::Sending);
        b.local_seq = 2;
        let mut w = Window::new(vec![a.clone(), b.clone()], 10);
        let mut b2 = b.clone();
        b2.seq = Some(Seq(9));
        b2.status = Status::InFlight;
        w.apply(TimelineChange::Upserted(b2));
        assert_eq!(w.items()[0].id, b.id);
        assert_eq!(w.items()[1].id, a.id);
    }

    #[test]
    fn window_stays_bounded_and_detaches() {
        let page = |from: u64, n: u64| -> Vec<Item> {
            (from..from + n)
                .map(|s| item(Some(s), Status::Success))
                .collect()
        };
        let mut w = Window::new(page(10_000, PAGE as u64), PAGE);
        assert!(w.has_older() && w.attached());
        let mut before = w.older_before().0;
        for _ in 0..10 {
            w.add_older(page(before - PAGE as u64, PAGE as u64), PAGE, 0);
            before = w.older_before().0;
        }
        assert!(w.items().len() <= MAX_ITEMS);
        assert!(!w.attached());
        // A new message while detached is not loaded into the window.
        assert!(!w.apply(TimelineChange::Upserted(item(
            Some(20_000),
            Status::Success
        ))));
        let newer = w.newer_before();
        let last = w.max_seq().map(|s| s.0).unwrap_or(0);
        assert_eq!(newer.0, last + 1 + PAGE as u64);
        let dropped = w.add_newer(page(last + 1, PAGE as u64), false, usize::MAX);
        assert_eq!(dropped, PAGE);
        assert!(w.items().len() <= MAX_ITEMS);
    }
}
