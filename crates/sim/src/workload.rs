//! The seeded workload: user actions of every kind on random devices, and
//! faults, one operation per step.
//!
//! Actions go through the syncer's API exactly as an app would call it
//! (`send`, `edit`, `delete`, `react`, `mark_read`, `retry`, `discard`,
//! `create_conversation`), with targets read from the device's own storage.
//! An action the syncer refuses at once (unknown conversation, offline,
//! too large for the announced limit…) is simply not recorded: nothing was
//! queued. Sends in a conversation the account is not a member of cannot
//! be made through the client (it does not know such conversations), so
//! they are not attempted.

use crate::world::{random_limits, World};
use chatsync_client::{Item, Status};
use chatsync_protocol::{ConversationId, Seq};
use std::time::Duration;

/// Bodies: ASCII, accents (composed and decomposed), CJK, emoji with
/// modifiers, right-to-left text; all must arrive byte-identical.
const WORDS: &[&str] = &[
    "hi",
    "lunch?",
    "café",
    "cafe\u{301}",
    "日本語",
    "👍🏽",
    "👨‍👩‍👧",
    "שלום",
    "ok",
    "🎉",
    "x",
];
const EMOJI: &[&str] = &["👍", "❤️", "😂", "👨‍👩‍👧"];

/// How many operations remain.
pub struct Workload {
    left: usize,
    created: usize,
}

impl Workload {
    /// A workload of `ops` operations.
    pub fn new(ops: usize) -> Workload {
        Workload {
            left: ops,
            created: 0,
        }
    }

    /// Performs one operation; `false` once the workload is done.
    pub fn step(&mut self, w: &mut World) -> bool {
        if self.left == 0 {
            return false;
        }
        self.left -= 1;
        let client = w.rng.usize(0..w.clients.len());
        let roll = w.rng.u32(0..100);
        match roll {
            0..=34 => send(w, client),
            35..=44 => edit(w, client),
            45..=49 => delete(w, client),
            50..=59 => react(w, client),
            60..=66 => mark_read(w, client),
            67..=72 => fix_failed(w, client),
            73..=74 => {
                if self.created < 1 && create(w, client) {
                    self.created += 1;
                }
            }
            75..=80 => {
                if let Some(conn) = w.conn_of(client) {
                    let detect = w.random_detect();
                    w.cut(conn, detect);
                }
            }
            81..=83 => {
                let dur = Duration::from_millis(w.rng.u64(500..=8000));
                w.partition(client, dur);
            }
            84..=88 => {
                let down = Duration::from_millis(w.rng.u64(0..=3000));
                w.crash_client(client, down);
            }
            89..=91 => {
                let down = Duration::from_millis(w.rng.u64(0..=4000));
                // Sometimes the operator changes the body limit meanwhile.
                let limits = if w.rng.f64() < 0.3 {
                    random_limits(&mut w.rng)
                } else {
                    w.server.limits.clone()
                };
                w.crash_server(down, limits);
            }
            92..=93 if w.cfg.commit_failures => w.fail_commit(),
            _ => {
                let dur = Duration::from_millis(w.rng.u64(500..=6000));
                w.stall(client, dur);
            }
        }
        true
    }
}

/// Conversations device `client` knows.
fn known(w: &World, client: usize) -> Vec<ConversationId> {
    use chatsync_client::store::ClientStore;
    w.clients[client]
        .store
        .conversations()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect()
}

fn pick_conv(w: &mut World, client: usize) -> Option<ConversationId> {
    let convs = known(w, client);
    if convs.is_empty() {
        return None;
    }
    // Storage lists conversations by id, which is random: order by the
    // server's creation order instead, so that the pick is reproducible.
    let order = w.server.conversations();
    let mut convs: Vec<(usize, ConversationId)> = convs
        .into_iter()
        .map(|c| (order.iter().position(|o| *o == c).unwrap_or(usize::MAX), c))
        .collect();
    convs.sort();
    Some(convs[w.rng.usize(0..convs.len())].1)
}

/// Messages of a conversation as device `client` shows them.
fn items(w: &World, client: usize, conv: ConversationId) -> Vec<Item> {
    use chatsync_client::store::ClientStore;
    w.clients[client]
        .store
        .timeline(conv, None, 40)
        .unwrap_or_default()
}

fn body(w: &mut World) -> String {
    let n = w.rng.usize(1..=4);
    let mut s: Vec<&str> = (0..n).map(|_| WORDS[w.rng.usize(0..WORDS.len())]).collect();
    let long;
    if w.rng.f64() < 0.12 {
        // Over a lowered limit (48 bytes), within the default one.
        long = "long ".repeat(w.rng.usize(11..=30));
        s.push(&long);
    }
    s.join(" ")
}

fn send(w: &mut World, client: usize) {
    let Some(conv) = pick_conv(w, client) else {
        return;
    };
    let body = body(w);
    let id = w.new_id();
    let created = w.epoch_ms();
    let mut result = None;
    w.input(client, |s, now| {
        result = Some(s.send(now, conv, body, id, created));
    });
    if let Some(Ok(id)) = result {
        w.history.queued(client, id, conv);
        let name = w.names.msg(id);
        let cname = w.names.conv(conv);
        w.log(|| format!("d{client}: send {name} in {cname}"));
    }
}

fn own_target(w: &mut World, client: usize) -> Option<Item> {
    let conv = pick_conv(w, client)?;
    let me = w.clients[client].identity.user;
    let mine: Vec<Item> = items(w, client, conv)
        .into_iter()
        .filter(|i| i.sender == me && !i.deleted)
        .collect();
    (!mine.is_empty()).then(|| mine[w.rng.usize(0..mine.len())].clone())
}

fn edit(w: &mut World, client: usize) {
    let Some(target) = own_target(w, client) else {
        return;
    };
    let body = format!("edited {}", body(w));
    let id = w.new_id();
    let created = w.epoch_ms();
    let mut result = None;
    w.input(client, |s, now| {
        result = Some(s.edit(now, &target, body, id, created));
    });
    // A queued edit that has not left is rewritten: its id comes back.
    if let Some(Ok(Some(got))) = result {
        if got == id {
            w.history.queued(client, id, target.conversation);
        }
    }
    let (t, r) = (w.names.msg(target.id), format!("{result:?}"));
    w.log(|| format!("d{client}: edit {t}: {r}"));
}

fn delete(w: &mut World, client: usize) {
    let Some(target) = own_target(w, client) else {
        return;
    };
    let id = w.new_id();
    let created = w.epoch_ms();
    let mut result = None;
    w.input(client, |s, now| {
        result = Some(s.delete(now, &target, id, created));
    });
    if let Some(Ok(Some(id))) = result {
        w.history.queued(client, id, target.conversation);
    }
    let (t, r) = (w.names.msg(target.id), format!("{result:?}"));
    w.log(|| format!("d{client}: delete {t}: {r}"));
}

fn react(w: &mut World, client: usize) {
    let Some(conv) = pick_conv(w, client) else {
        return;
    };
    let all: Vec<Item> = items(w, client, conv)
        .into_iter()
        .filter(|i| !i.deleted)
        .collect();
    if all.is_empty() {
        return;
    }
    let target = all[w.rng.usize(0..all.len())].clone();
    let emoji = EMOJI[w.rng.usize(0..EMOJI.len())].to_string();
    let on = w.rng.f64() < 0.7;
    let id = w.new_id();
    let created = w.epoch_ms();
    let mut result = None;
    w.input(client, |s, now| {
        result = Some(s.react(now, &target, emoji, on, id, created));
    });
    if let Some(Ok(got)) = result {
        if got == id {
            w.history.queued(client, id, conv);
        }
    }
}

fn mark_read(w: &mut World, client: usize) {
    use chatsync_client::store::ClientStore;
    let Some(conv) = pick_conv(w, client) else {
        return;
    };
    let convs = w.clients[client].store.conversations().unwrap_or_default();
    let Some(c) = convs.iter().find(|c| c.id == conv) else {
        return;
    };
    let upto = c.last_seq.0.max(c.cursor.0);
    let seq = Seq(w.rng.u64(0..=upto));
    w.input(client, |s, _| {
        let _ = s.mark_read(conv, seq);
    });
}

/// A Failed message or action of this device: shorten and retry, retry as
/// is, or discard.
fn fix_failed(w: &mut World, client: usize) {
    use chatsync_client::store::ClientStore;
    let failed: Vec<Item> = w.clients[client]
        .statuses
        .iter()
        .filter(|(_, s)| **s == Status::Failed)
        .filter_map(|(id, _)| w.clients[client].store.item(*id).ok().flatten())
        .collect();
    if failed.is_empty() {
        return;
    }
    let item = failed[w.rng.usize(0..failed.len())].clone();
    let id = item.id;
    let roll = w.rng.u32(0..3);
    let name = w.names.msg(id);
    if roll == 0 && item.action.is_none() {
        let short = "short again".to_string();
        let new_id = w.new_id();
        let created = w.epoch_ms();
        w.input(client, |s, now| {
            let _ = s.edit(now, &item, short, new_id, created);
        });
    }
    if roll < 2 {
        w.history.retry_allowed(id);
        let mut result = None;
        w.input(client, |s, now| result = Some(s.retry(now, id)));
        let r = format!("{result:?}");
        w.log(|| format!("d{client}: retry {name}: {r}"));
    } else {
        let mut result = None;
        w.input(client, |s, _| result = Some(s.discard(id)));
        let r = format!("{result:?}");
        w.log(|| format!("d{client}: discard {name}: {r}"));
    }
}

fn create(w: &mut World, client: usize) -> bool {
    let me = w.clients[client].user;
    let others: Vec<String> = (0..w.users.len())
        .filter(|&u| u != me && w.rng.f64() < 0.6)
        .map(|u| w.users[u].1.clone())
        .collect();
    let mut ok = false;
    w.input(client, |s, _| {
        ok = s
            .create_conversation("made during the run".into(), others)
            .is_ok();
    });
    ok
}
