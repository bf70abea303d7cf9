//! Checking the design invariants after a run, shared by `chatsync demo`
//! and `chatsync chaos`: what was sent, against what the server stored and
//! what every member's device stored.

use crate::trace::Trace;
use chatsync_client::{Item, Status};
use chatsync_protocol::{ConversationId, MessageId, Seq};
use chatsync_server::ServerStore;
use std::collections::{BTreeMap, HashMap, HashSet};

/// A message (or action) whose `send` returned: it is durable on the
/// sender's device, so it must reach the server and every member.
#[derive(Clone, Debug)]
pub struct Sent {
    /// Id returned by `send`.
    pub id: MessageId,
    /// Conversation.
    pub conversation: ConversationId,
    /// Sender's account name (one device per account).
    pub sender: String,
    /// Text.
    pub body: String,
}

/// One row of a conversation's history on the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// Place in the conversation.
    pub seq: Seq,
    /// Client-generated id.
    pub id: MessageId,
    /// Whether it is an action (edit, delete, reaction) rather than a
    /// message; actions are folded into messages on devices.
    pub action: bool,
}

/// The server's history of each conversation, in sequence order.
pub type History = HashMap<ConversationId, Vec<Row>>;

/// Reads the history of `convs` from a server store, page by page.
pub fn read_history(store: &impl ServerStore, convs: &[ConversationId]) -> anyhow::Result<History> {
    let mut history = History::new();
    for &conv in convs {
        let mut after = Seq::ZERO;
        let mut list = Vec::new();
        loop {
            let page = store.messages_after(conv, after, 500)?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            list.extend(page.iter().map(|m| Row {
                seq: m.seq,
                id: m.id,
                action: m.action.is_some(),
            }));
        }
        history.insert(conv, list);
    }
    Ok(history)
}

/// What the checks found. Each list holds one line per violation.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Messages whose `send` returned.
    pub sent: usize,
    /// Of those, how many the server stored.
    pub on_server: usize,
    /// Sent but not on the server, or missing on a member's device.
    pub lost: Vec<String>,
    /// Stored twice on the server or on a device.
    pub duplicates: Vec<String>,
    /// Server gaps, send order broken, a device's order differing.
    pub order: Vec<String>,
    /// Not settled at Success in the end.
    pub stuck: Vec<String>,
    /// Marked Failed.
    pub failed: Vec<String>,
    /// A status that moved back.
    pub backwards: Vec<String>,
    /// Per member: (messages its device holds, messages it should hold).
    pub delivered: BTreeMap<String, (usize, usize)>,
}

impl Outcome {
    /// Number of invariant violations.
    pub fn violations(&self) -> usize {
        self.lost.len()
            + self.duplicates.len()
            + self.order.len()
            + self.stuck.len()
            + self.failed.len()
            + self.backwards.len()
    }
}

/// Compares what was sent, what the server stored (`history`) and what
/// every member's device stored (`views`: member, conversation, its
/// timeline as `Client::page` returns it). `traces` holds the statuses each
/// sender's subscription reported. `complete` says whether `history` holds
/// every row (read from the server's database), so that a missing sequence
/// number is a gap; a history read through a device lacks the actions.
pub fn check(
    history: &History,
    complete: bool,
    sent: &[Sent],
    views: &[(String, ConversationId, Vec<Item>)],
    traces: &HashMap<MessageId, Trace>,
) -> Outcome {
    let mut out = Outcome {
        sent: sent.len(),
        ..Outcome::default()
    };
    for (conv, list) in history.iter().filter(|_| complete) {
        for (i, row) in list.iter().enumerate() {
            if row.seq.0 != i as u64 + 1 {
                out.order.push(format!(
                    "server history of {conv} has a gap at seq {}",
                    row.seq
                ));
                break;
            }
        }
    }
    let mut server_count: HashMap<MessageId, usize> = HashMap::new();
    let mut server_seq: HashMap<MessageId, Seq> = HashMap::new();
    for list in history.values() {
        for row in list {
            *server_count.entry(row.id).or_default() += 1;
            server_seq.insert(row.id, row.seq);
        }
    }
    for (id, n) in &server_count {
        if *n > 1 {
            out.duplicates
                .push(format!("{id} stored {n} times on the server"));
        }
    }
    for s in sent {
        if server_count.contains_key(&s.id) {
            out.on_server += 1;
        } else {
            out.lost.push(format!(
                "{} ({}: {:?}) is not on the server",
                s.id, s.sender, s.body
            ));
        }
    }
    // Per sender and conversation, server order must be send order.
    let mut per_sender: HashMap<(&str, ConversationId), Vec<Seq>> = HashMap::new();
    for s in sent {
        if let Some(seq) = server_seq.get(&s.id) {
            per_sender
                .entry((&s.sender, s.conversation))
                .or_default()
                .push(*seq);
        }
    }
    for ((sender, conv), seqs) in per_sender {
        if seqs.windows(2).any(|w| w[0] >= w[1]) {
            out.order.push(format!(
                "{sender}'s messages in {conv} are out of send order on the server"
            ));
        }
    }
    // Every member's device must hold exactly the server's messages, in
    // order (actions are folded into them, not listed).
    let empty = Vec::new();
    for (member, conv, items) in views {
        let expected: Vec<(Seq, MessageId)> = history
            .get(conv)
            .unwrap_or(&empty)
            .iter()
            .filter(|r| !r.action)
            .map(|r| (r.seq, r.id))
            .collect();
        let mut seen = HashSet::new();
        for i in items {
            if !seen.insert(i.id) {
                out.duplicates
                    .push(format!("{member} holds {} twice", i.id));
            }
        }
        let got: Vec<(Seq, MessageId)> = items
            .iter()
            .filter_map(|i| i.seq.map(|s| (s, i.id)))
            .collect();
        let entry = out.delivered.entry(member.clone()).or_insert((0, 0));
        entry.1 += expected.len();
        entry.0 += got.iter().filter(|g| expected.contains(g)).count();
        if got != expected {
            let missing = expected.iter().filter(|e| !got.contains(e)).count();
            if missing > 0 {
                out.lost
                    .push(format!("{member} is missing {missing} messages of {conv}"));
            } else {
                out.order.push(format!(
                    "{member}'s timeline of {conv} differs from the server's order"
                ));
            }
        }
    }
    // Statuses: each sent message settled at Success, never moved back.
    for s in sent {
        let Some(t) = traces.get(&s.id) else {
            out.stuck.push(format!("{} has no status trace", s.id));
            continue;
        };
        match t.statuses.last() {
            Some(Status::Success | Status::Read) => {}
            Some(Status::Failed) => out.failed.push(format!(
                "{} failed: {}",
                s.id,
                t.failed.clone().unwrap_or_default()
            )),
            other => out.stuck.push(format!("{} ended as {other:?}", s.id)),
        }
        if t.statuses.windows(2).any(|w| w[1] < w[0]) {
            out.backwards
                .push(format!("{} went {:?}", s.id, t.statuses));
        }
    }
    out
}
