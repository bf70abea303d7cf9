//! Per-conversation sync state: the gap-free cursor, what arrived above it,
//! the members' marks, and own messages waiting for delivery.

use crate::model::Conversation;
use chatsync_protocol::{MemberMarks, MessageId, Seq, UserId};
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

    /// Highest sequence every member other than `me` has stored, or `None`
    /// when the member list is not known (then nothing counts as delivered).
    pub fn delivered_to_others(&self, me: UserId) -> Option<Seq> {
        if !self.info.members.iter().any(|m| m.user == me) {
            return None;
        }
        Some(
            self.info
                .members
                .iter()
                .filter(|m| m.user != me)
                .map(|m| m.delivered)
                .min()
                .unwrap_or(Seq(u64::MAX)),
        )
    }

    /// Highest sequence every member other than `me` has read, or `None`
    /// when the member list is not known.
    pub fn read_by_others(&self, me: UserId) -> Option<Seq> {
        if !self.info.members.iter().any(|m| m.user == me) {
            return None;
        }
        Some(
            self.info
                .members
                .iter()
                .filter(|m| m.user != me)
                .map(|m| m.read)
                .min()
                .unwrap_or(Seq(u64::MAX)),
        )
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
