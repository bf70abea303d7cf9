//! Per-conversation sync state: the gap-free cursor, what arrived above it,
//! the members' marks, and own messages waiting for delivery.

use crate::model::Conversation;
use chatsync_protocol::{MemberMarks, MessageId, OthersMarks, Seq, UserId};
use std::collections::{BTreeMap, BTreeSet, HashSet};

#[derive(Debug)]
pub(crate) struct ConvState {
    pub info: Conversation,
    /// Sequence numbers stored above the cursor (arrived out of order).
    pub above: BTreeSet<Seq>,
    /// The `sync` request in flight on the current connection.
    pub sync_req: Option<u64>,
    /// Own rows In-Flight (waiting for delivery), by sequence number, with
    /// whether each is an action (actions stop at Success).
    pub in_flight_own: BTreeMap<Seq, (MessageId, bool)>,
    /// Own messages at Success, waiting for every other member to read them.
    pub unread_own: BTreeMap<Seq, MessageId>,
    /// The read mark last sent to the server.
    pub read_reported: Seq,
    /// Messages targeted by actions that arrived before them (out of order).
    pub early_targets: HashSet<MessageId>,
    /// Cursor last reported to the server with `received`.
    pub reported: Seq,
    /// The other members' lowest marks, as last pushed by the server
    /// (`marks.others`), merged by maximum. A lower bound kept beside the
    /// member list, whose marks of others are no longer pushed live; not
    /// stored (statuses derived from it are).
    pub others: OthersMarks,
}

impl ConvState {
    pub fn new(info: Conversation) -> Self {
        ConvState {
            reported: Seq::ZERO,
            info,
            above: BTreeSet::new(),
            sync_req: None,
            in_flight_own: BTreeMap::new(),
            unread_own: BTreeMap::new(),
            read_reported: Seq::ZERO,
            early_targets: HashSet::new(),
            others: OthersMarks::default(),
        }
    }

    /// Whether `seq` is already stored on this device.
    pub fn has(&self, seq: Seq) -> bool {
        seq <= self.info.cursor || self.above.contains(&seq)
    }

    /// Records that `seq` is stored; returns whether the cursor moved.
    pub fn stored(&mut self, seq: Seq) -> bool {
        if seq <= self.info.cursor {
            return false;
        }
        self.above.insert(seq);
        let before = self.info.cursor;
        while self.above.remove(&self.info.cursor.next()) {
            self.info.cursor = self.info.cursor.next();
        }
        self.info.last_seq = self.info.last_seq.max(self.info.cursor);
        self.info.cursor != before
    }

    /// Whether messages are known to exist that are not stored here.
    pub fn has_gap(&self) -> bool {
        !self.above.is_empty() || self.info.last_seq > self.info.cursor
    }

    /// Highest sequence every member other than `me` is known to have
    /// stored, or `None` when neither the member list nor the server's
    /// `others` is known (then nothing counts as delivered).
    pub fn delivered_to_others(&self, me: UserId) -> Option<Seq> {
        self.lowest_other(me, |m| m.delivered, self.others.delivered)
    }

    /// Highest sequence every member other than `me` is known to have
    /// read, or `None` when neither the member list nor the server's
    /// `others` is known.
    pub fn read_by_others(&self, me: UserId) -> Option<Seq> {
        self.lowest_other(me, |m| m.read, self.others.read)
    }

    /// The larger of two lower bounds of the other members' lowest mark:
    /// the one derived from the member list (when it is known) and the
    /// server's `others`. Both only grow, so their maximum does too.
    fn lowest_other(
        &self,
        me: UserId,
        mark: impl Fn(&MemberMarks) -> Seq,
        floor: Seq,
    ) -> Option<Seq> {
        let derived = self.info.members.iter().any(|m| m.user == me).then(|| {
            self.info
                .members
                .iter()
                .filter(|m| m.user != me)
                .map(mark)
                .min()
                .unwrap_or(Seq(u64::MAX))
        });
        match derived {
            Some(d) => Some(d.max(floor)),
            None => (floor > Seq::ZERO).then_some(floor),
        }
    }

    /// Merges the server's lowest marks of the other members (each only
    /// moves forward); returns whether either moved.
    pub fn merge_others(&mut self, others: OthersMarks) -> bool {
        let before = self.others;
        self.others.delivered = self.others.delivered.max(others.delivered);
        self.others.read = self.others.read.max(others.read);
        self.others != before
    }

    /// This account's own read mark.
    pub fn my_read(&self, me: UserId) -> Seq {
        self.info
            .members
            .iter()
            .find(|m| m.user == me)
            .map_or(Seq::ZERO, |m| m.read)
    }

    /// Merges one member's marks (each only moves forward).
    pub fn merge_marks(&mut self, marks: &MemberMarks) {
        match self.info.members.iter_mut().find(|m| m.user == marks.user) {
            Some(m) => {
                m.delivered = m.delivered.max(marks.delivered);
                m.read = m.read.max(marks.read);
            }
            None => self.info.members.push(marks.clone()),
        }
    }

    /// Own In-Flight rows now delivered to every other member, with whether
    /// each is an action.
    pub fn take_delivered(&mut self, me: UserId) -> Vec<(MessageId, bool, Seq)> {
        let Some(upto) = self.delivered_to_others(me) else {
            return Vec::new();
        };
        take_upto(&mut self.in_flight_own, upto)
            .into_iter()
            .map(|(seq, (id, action))| (id, action, seq))
            .collect()
    }

    /// Own Success messages now read by every other member.
    pub fn take_read(&mut self, me: UserId) -> Vec<MessageId> {
        let Some(upto) = self.read_by_others(me) else {
            return Vec::new();
        };
        take_upto(&mut self.unread_own, upto)
            .into_values()
            .collect()
    }
}

/// Removes and returns the entries with a key up to `upto`, inclusive.
fn take_upto<V>(map: &mut BTreeMap<Seq, V>, upto: Seq) -> BTreeMap<Seq, V> {
    let rest = match upto.0.checked_add(1) {
        Some(next) => map.split_off(&Seq(next)),
        None => BTreeMap::new(),
    };
    std::mem::replace(map, rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatsync_protocol::ConversationId;
    use uuid::Uuid;

    fn user(n: u128) -> UserId {
        UserId(Uuid::from_u128(n))
    }

    fn marks(n: u128, delivered: u64, read: u64) -> MemberMarks {
        MemberMarks {
            user: user(n),
            username: format!("u{n}"),
            delivered: Seq(delivered),
            read: Seq(read),
        }
    }

    fn conv(members: Vec<MemberMarks>) -> ConvState {
        ConvState::new(Conversation {
            id: ConversationId(Uuid::from_u128(9)),
            title: "t".into(),
            members,
            cursor: Seq::ZERO,
            last_seq: Seq::ZERO,
        })
    }

    fn others(delivered: u64, read: u64) -> OthersMarks {
        OthersMarks {
            delivered: Seq(delivered),
            read: Seq(read),
        }
    }

    #[test]
    fn the_lowest_other_is_the_larger_of_the_member_list_and_others() {
        let me = user(1);
        let mut c = conv(vec![marks(1, 9, 9), marks(2, 4, 1), marks(3, 6, 2)]);
        assert_eq!(c.delivered_to_others(me), Some(Seq(4)));
        assert_eq!(c.read_by_others(me), Some(Seq(1)));
        // The server's `others` is ahead of the (stale) member list.
        assert!(c.merge_others(others(6, 2)));
        assert_eq!(c.delivered_to_others(me), Some(Seq(6)));
        assert_eq!(c.read_by_others(me), Some(Seq(2)));
        // The member list gets ahead again (a snapshot).
        c.merge_marks(&marks(2, 8, 3));
        c.merge_marks(&marks(3, 7, 5));
        assert_eq!(c.delivered_to_others(me), Some(Seq(7)));
        assert_eq!(c.read_by_others(me), Some(Seq(3)));
    }

    #[test]
    fn an_older_others_never_moves_the_lowest_back() {
        let me = user(1);
        let mut c = conv(vec![marks(1, 0, 0), marks(2, 0, 0), marks(3, 0, 0)]);
        assert!(c.merge_others(others(5, 3)));
        // Reordered or repeated pushes, each field on its own.
        assert!(!c.merge_others(others(4, 3)));
        assert!(!c.merge_others(others(5, 0)));
        assert!(c.merge_others(others(2, 4)));
        assert_eq!(c.others, others(5, 4));
        assert_eq!(c.delivered_to_others(me), Some(Seq(5)));
        assert_eq!(c.read_by_others(me), Some(Seq(4)));
    }

    #[test]
    fn others_counts_without_the_member_list_but_zero_does_not() {
        let me = user(1);
        let mut c = conv(Vec::new());
        assert_eq!(c.delivered_to_others(me), None);
        c.merge_others(others(0, 0));
        assert_eq!(c.delivered_to_others(me), None);
        c.merge_others(others(3, 1));
        assert_eq!(c.delivered_to_others(me), Some(Seq(3)));
        assert_eq!(c.read_by_others(me), Some(Seq(1)));
        c.in_flight_own
            .insert(Seq(3), (MessageId(Uuid::from_u128(30)), false));
        c.in_flight_own
            .insert(Seq(4), (MessageId(Uuid::from_u128(40)), false));
        let taken: Vec<Seq> = c
            .take_delivered(me)
            .into_iter()
            .map(|(_, _, s)| s)
            .collect();
        assert_eq!(taken, [Seq(3)]);
    }

    #[test]
    fn alone_in_a_conversation_everything_is_delivered_and_read() {
        let me = user(1);
        let c = conv(vec![marks(1, 0, 0)]);
        assert_eq!(c.delivered_to_others(me), Some(Seq(u64::MAX)));
        assert_eq!(c.read_by_others(me), Some(Seq(u64::MAX)));
    }
}
