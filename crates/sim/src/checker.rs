//! The invariants of DESIGN.md, checked against the full history of a run.
//!
//! Two kinds of checks:
//!
//! * **live**, at every store batch of every device ([`on_changes`]): each
//!   status change must be a legal move (forward only; Failed only from
//!   Sending; Failed → Sending only by a user's retry; a confirmed row
//!   never disappears) and must be true *at that instant*: In-Flight only
//!   if the server has committed that id at that seq; Success only if a
//!   device of every other member has the row stored; Read only if every
//!   other member's read mark covers it (invariant 4).
//! * **final**, after healing and running until idle ([`final_check`]):
//!   1. *Nothing lost*: every id the syncer accepted is on the server, or
//!      Failed on its device, or was removed by the user before it could
//!      leave; every id the server committed is still in its history.
//!   2. *Exactly once*: ids are unique in the server history, and every
//!      member device stores each of them once, at the server's seq, with
//!      no other confirmed row.
//!   3. *Order*: per device and conversation, the seqs of what it queued
//!      (never Failed, never removed) follow the order of the calls.
//!   4. *Truthful status*: every own row ends at exactly the status the
//!      server's marks justify; a Failed row is not on the server.
//!   5. *No stuck message*: nothing Sending anywhere.
//!   6. *Gap-free catch-up*: every member device has every conversation of
//!      its account, its cursor at the server's last seq, each message
//!      folded exactly as [`chatsync_protocol::fold`] folds the server's
//!      history, each action byte-identical, its own account's marks as
//!      the server has them, and other members' marks never ahead of the
//!      server's (they are not pushed live to everyone: PROTOCOL.md §8.2).
//!   7. *Bad input*: not applicable here — frames are typed values and the
//!      syncer only produces valid ones; the decoder and hostile clients
//!      are covered by the fuzz targets and the gateway's own tests.

use crate::client::StatusChange;
use crate::world::World;
use chatsync_client::store::ClientStore;
use chatsync_client::{Item, Status};
use chatsync_protocol::{fold, ConversationId, FoldEvent, MessageId, Seq, UserId, WireMessage};
use std::collections::{BTreeMap, BTreeSet};

/// One message or action the syncer accepted.
#[derive(Clone, Debug)]
pub struct Queued {
    /// Device.
    pub client: usize,
    /// Its id.
    pub id: MessageId,
    /// Conversation.
    pub conv: ConversationId,
}

/// What happened during a run.
#[derive(Debug, Default)]
pub struct History {
    /// Accepted messages and actions, in call order.
    pub sent: Vec<Queued>,
    /// Ids that were Failed at some point (a retry moves them to the end of
    /// the order, so they are left out of the order check).
    pub ever_failed: BTreeSet<MessageId>,
    /// Ids removed from storage before they were confirmed (discarded, or
    /// deleted before they left).
    pub removed: BTreeSet<MessageId>,
    retry: BTreeSet<MessageId>,
    /// Broken invariants.
    pub violations: Vec<String>,
}

impl History {
    /// The syncer accepted `id` on device `client`.
    pub fn queued(&mut self, client: usize, id: MessageId, conv: ConversationId) {
        self.sent.push(Queued { client, id, conv });
    }

    /// The user asks to retry `id`: Failed → Sending is allowed once.
    pub fn retry_allowed(&mut self, id: MessageId) {
        self.retry.insert(id);
    }

    /// Records a broken invariant (the first few only: one bug tends to
    /// break many checks).
    pub fn violation(&mut self, text: String) {
        if self.violations.len() < 20 {
            self.violations.push(text);
        }
    }
}

/// Live checks of the status changes of one store batch of device `client`.
pub fn on_changes(w: &mut World, client: usize, changes: &[StatusChange]) {
    for ch in changes {
        if let Some(v) = check_change(w, ch) {
            let name = w.names.msg(ch.id);
            let text = format!(
                "truthful status: d{client} {name}: {:?} -> {:?}: {v}",
                ch.before,
                ch.after.as_ref().map(|i| i.status)
            );
            w.log(|| format!("VIOLATION {text}"));
            w.history.violation(text);
        }
    }
}

fn check_change(w: &mut World, ch: &StatusChange) -> Option<String> {
    let own = ch.after.as_ref().is_none_or(|i| i.own);
    if !own {
        return None;
    }
    let after = ch.after.as_ref().map(|i| i.status);
    match (ch.before, after) {
        (Some(Status::Sending | Status::Failed), None) => {
            w.history.removed.insert(ch.id);
            return None;
        }
        (Some(_), None) => return Some("a confirmed row disappeared".into()),
        (None, Some(Status::Sending)) | (Some(Status::Sending), Some(_)) => {}
        (None, Some(s)) if s.is_confirmed() => {}
        (Some(Status::Failed), Some(Status::Sending)) => {
            if !w.history.retry.remove(&ch.id) {
                return Some("Failed -> Sending without a retry".into());
            }
        }
        (Some(a), Some(b)) if a.is_confirmed() && b.is_confirmed() && b > a => {}
        _ => return Some("illegal move".into()),
    }
    let item = ch.after.as_ref()?;
    if item.status == Status::Failed {
        w.history.ever_failed.insert(item.id);
    }
    if !item.status.is_confirmed() {
        return None;
    }
    let Some(seq) = item.seq else {
        return Some("confirmed without a seq".into());
    };
    match w.server.committed.get(&item.id) {
        Some(&(c, s)) if c == item.conversation && s == seq => {}
        other => {
            return Some(format!(
                "confirmed at seq {seq} but the server committed {other:?}"
            ))
        }
    }
    let others = other_members(w, item.conversation, item.sender);
    if matches!(item.status, Status::Success | Status::Read) {
        for u in &others {
            let stored = w.clients.iter().any(|c| {
                c.identity.user == *u
                    && c.store
                        .item(item.id)
                        .ok()
                        .flatten()
                        .is_some_and(|i| i.seq == Some(seq))
            });
            if !stored {
                return Some(format!(
                    "Success but no device of {} has it",
                    w.names.user(*u)
                ));
            }
        }
    }
    if item.status == Status::Read {
        let marks = w.server.store().marks(item.conversation).ok().flatten();
        for u in &others {
            let read = marks
                .as_ref()
                .and_then(|(m, _)| m.iter().find(|m| m.user == *u))
                .map_or(Seq::ZERO, |m| m.read);
            if read < seq {
                return Some(format!("Read but {} read only {read}", w.names.user(*u)));
            }
        }
    }
    None
}

fn other_members(w: &World, conv: ConversationId, me: UserId) -> Vec<UserId> {
    w.server
        .store()
        .members(conv)
        .ok()
        .flatten()
        .unwrap_or_default()
        .into_iter()
        .filter(|u| *u != me)
        .collect()
}

/// The final checks; see the module docs.
pub fn final_check(w: &mut World) {
    let mut v = Vec::new();
    let store = w.server.store();
    let convs = w.server.conversations();
    // The server's history.
    let mut history: BTreeMap<ConversationId, Vec<WireMessage>> = BTreeMap::new();
    let mut by_id: BTreeMap<MessageId, WireMessage> = BTreeMap::new();
    for &c in &convs {
        let msgs = store
            .messages_after(c, Seq::ZERO, u32::MAX)
            .unwrap_or_default();
        for (i, m) in msgs.iter().enumerate() {
            if m.seq != Seq(i as u64 + 1) {
                v.push(format!(
                    "gap-free: server history of {} has seq {} at {}",
                    w.names.conv(c),
                    m.seq,
                    i + 1
                ));
            }
            if by_id.insert(m.id, m.clone()).is_some() {
                v.push(format!(
                    "exactly once: {} twice in the server history",
                    w.names.msg(m.id)
                ));
            }
        }
        history.insert(c, msgs);
    }
    // 1. Acknowledged writes survived every crash.
    for (id, (c, s)) in &w.server.committed {
        match by_id.get(id) {
            Some(m) if m.conversation == *c && m.seq == *s => {}
            other => v.push(format!(
                "nothing lost: {} was committed at {}:{s}, now {:?}",
                w.names.msg(*id),
                w.names.conv(*c),
                other.map(|m| m.seq)
            )),
        }
    }
    // 1, 4, 5. Every accepted id: on the server, or Failed, or removed.
    for q in &w.history.sent {
        let name = w.names.msg(q.id);
        let row = w.clients[q.client].store.item(q.id).ok().flatten();
        let on_server = by_id.get(&q.id);
        if w.history.removed.contains(&q.id) {
            if on_server.is_some() {
                v.push(format!(
                    "truthful status: {name} was removed on d{} but is on the server",
                    q.client
                ));
            }
            continue;
        }
        match (row, on_server) {
            (None, _) => v.push(format!(
                "nothing lost: {name} queued on d{} is gone from its storage",
                q.client
            )),
            (Some(r), Some(m)) => {
                if r.seq != Some(m.seq) || !r.status.is_confirmed() {
                    v.push(format!("truthful status: {name} is on the server at {} but d{} shows {:?} seq {:?}", m.seq, q.client, r.status, r.seq));
                }
            }
            (Some(r), None) => match r.status {
                Status::Failed => {}
                Status::Sending => v.push(format!(
                    "no stuck message: {name} still Sending on d{} after healing",
                    q.client
                )),
                s => v.push(format!(
                    "nothing lost: {name} shows {s:?} on d{} but is not on the server",
                    q.client
                )),
            },
        }
    }
    // 3. Order per device and conversation.
    let mut lanes: BTreeMap<(usize, ConversationId), Vec<(MessageId, Seq)>> = BTreeMap::new();
    for q in &w.history.sent {
        if w.history.ever_failed.contains(&q.id) || w.history.removed.contains(&q.id) {
            continue;
        }
        if let Some(m) = by_id.get(&q.id) {
            lanes
                .entry((q.client, q.conv))
                .or_default()
                .push((q.id, m.seq));
        }
    }
    for ((client, conv), lane) in &lanes {
        for pair in lane.windows(2) {
            if pair[1].1 <= pair[0].1 {
                v.push(format!(
                    "order: on d{client} in {}, {} was sent before {} but got seq {} > {}",
                    w.names.conv(*conv),
                    w.names.msg(pair[0].0),
                    w.names.msg(pair[1].0),
                    pair[0].1,
                    pair[1].1
                ));
            }
        }
    }
    // 2, 4, 5, 6. Every device against the server.
    for (d, c) in w.clients.iter().enumerate() {
        if c.syncer.as_ref().is_some_and(|s| !s.sending().is_empty()) {
            v.push(format!(
                "no stuck message: d{d} still has {} Sending after healing",
                c.syncer.as_ref().map_or(0, |s| s.sending().len())
            ));
        }
        let me = c.identity.user;
        let stored = c.store.conversations().unwrap_or_default();
        for &conv in &convs {
            let cname = w.names.conv(conv);
            let members = store.members(conv).ok().flatten().unwrap_or_default();
            let local = stored.iter().find(|s| s.id == conv);
            if !members.contains(&me) {
                if local.is_some() {
                    v.push(format!("d{d} knows {cname} but is not a member"));
                }
                continue;
            }
            let msgs = &history[&conv];
            let Some(local) = local else {
                v.push(format!("gap-free: d{d} does not know {cname}"));
                continue;
            };
            let last = Seq(msgs.len() as u64);
            if local.cursor != last {
                v.push(format!(
                    "gap-free: d{d} cursor in {cname} is {} but the server has {last}",
                    local.cursor
                ));
            }
            // Marks: the account's own as the server has them (pushed to
            // all its devices); another member's never ahead of the server
            // (they are only pushed to a member when its lowest-of-the-
            // others moves, PROTOCOL.md §8.2, so they may lag: what they
            // are for, Success and Read, is checked exactly below).
            if let Ok(Some((marks, _))) = store.marks(conv) {
                for m in &marks {
                    let mine = local.members.iter().find(|x| x.user == m.user);
                    let wrong = match mine {
                        None => m.user == me,
                        Some(x) if m.user == me => (x.delivered, x.read) != (m.delivered, m.read),
                        Some(x) => x.delivered > m.delivered || x.read > m.read,
                    };
                    if wrong {
                        v.push(format!(
                            "gap-free: d{d} has marks {:?} of {} in {cname}; the server {:?}",
                            mine.map(|x| (x.delivered, x.read)),
                            w.names.user(m.user),
                            (m.delivered, m.read)
                        ));
                    }
                }
                let others: Vec<_> = marks.iter().filter(|m| m.user != me).collect();
                let delivered = others
                    .iter()
                    .map(|m| m.delivered)
                    .min()
                    .unwrap_or(Seq(u64::MAX));
                let read = others.iter().map(|m| m.read).min().unwrap_or(Seq(u64::MAX));
                for m in msgs.iter().filter(|m| m.sender == me) {
                    let want = if m.action.is_none() && read >= m.seq {
                        Status::Read
                    } else if delivered >= m.seq {
                        Status::Success
                    } else {
                        Status::InFlight
                    };
                    let got = c.store.item(m.id).ok().flatten().map(|i| i.status);
                    if got.is_some() && got != Some(want) {
                        v.push(format!(
                            "truthful status: d{d} shows {} as {got:?}; the marks say {want:?}",
                            w.names.msg(m.id)
                        ));
                    }
                }
            }
            for m in msgs {
                let name = w.names.msg(m.id);
                let Some(row) = c.store.item(m.id).ok().flatten() else {
                    v.push(format!("gap-free: d{d} lacks {name} ({cname}:{})", m.seq));
                    continue;
                };
                if row.seq != Some(m.seq)
                    || row.conversation != conv
                    || row.sender != m.sender
                    || row.action != m.action
                {
                    v.push(format!(
                        "exactly once: d{d} stores {name} as {:?}@{:?}, the server at {}",
                        row.seq, row.action, m.seq
                    ));
                    continue;
                }
                if m.action.is_some() {
                    if row.body != m.body {
                        v.push(format!(
                            "gap-free: d{d} action {name} body {:?}, server {:?}",
                            row.body, m.body
                        ));
                    }
                } else if let Some(diff) = fold_differs(&row, m, msgs) {
                    v.push(format!("gap-free: d{d} shows {name} {diff}"));
                }
            }
        }
        // No confirmed row beyond the server's history.
        for id in &c.ids {
            if let Some(row) = c.store.item(*id).ok().flatten() {
                if let Some(seq) = row.seq {
                    if by_id.get(id).map(|m| (m.conversation, m.seq))
                        != Some((row.conversation, seq))
                    {
                        v.push(format!(
                            "exactly once: d{d} has {} at {}:{seq}, not in the server history",
                            w.names.msg(*id),
                            w.names.conv(row.conversation)
                        ));
                    }
                }
            }
        }
    }
    for text in v {
        w.history.violation(text);
    }
}

/// How the device's shown message differs from the fold of the server
/// history, if it does.
fn fold_differs(row: &Item, m: &WireMessage, msgs: &[WireMessage]) -> Option<String> {
    let events: Vec<FoldEvent<'_>> = msgs
        .iter()
        .filter(|a| a.action.as_ref().is_some_and(|a| a.target == m.id))
        .map(|a| FoldEvent {
            seq: a.seq,
            sender: a.sender,
            body: &a.body,
            action: a.action.as_ref(),
        })
        .collect();
    let want = fold(m.sender, &m.body, &events);
    let reactions: BTreeMap<String, Vec<UserId>> = row
        .reactions
        .iter()
        .map(|r| (r.emoji.clone(), r.users.clone()))
        .collect();
    let got = (&row.body, row.edited, row.deleted, &reactions);
    let exp = (&want.body, want.edited, want.deleted, &want.reactions);
    (got != exp).then(|| format!("as {got:?}; the server history folds to {exp:?}"))
}
