//! The chaos checks and report: the shared invariant checks
//! ([`crate::verify`]) plus what only chaos needs (sends interrupted by a
//! kill, edits, reactions, actions, time stuck in Sending, faults).

use super::agent::Dump;
use super::faults::KINDS;
use super::{Conv, Model, Rig};
use crate::trace::Trace;
use crate::verify::{self, History, Row, Sent};
use anyhow::Context;
use chatsync_client::{Client, Item, Status};
use chatsync_protocol::{ConversationId, MessageId, UserId};
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

/// Reactions as one member shows them: emoji and who set it.
type ReactionSet = BTreeSet<(String, Vec<UserId>)>;

/// What the checks need.
pub struct Input<'a> {
    /// The server's history.
    pub history: &'a History,
    /// Whether `history` is complete, actions included (read from the
    /// server's database rather than through a device).
    pub actions_on_server: bool,
    /// What the workload did.
    pub model: &'a Model,
    /// The conversations.
    pub convs: &'a [Conv],
    /// Account name of each client.
    pub names: Vec<String>,
    /// Account id of each client.
    pub users: Vec<Option<UserId>>,
    /// What each client stored, by client index.
    pub dumps: &'a [Dump],
    /// Statuses seen by the senders.
    pub traces: &'a HashMap<MessageId, Trace>,
    /// What had not settled when the settle time ran out.
    pub leftovers: Vec<String>,
    /// Faults fired, by kind.
    pub faults: BTreeMap<&'static str, usize>,
    /// The end of the run (for messages never confirmed).
    pub now: Instant,
}

/// What the checks found.
pub struct Outcome {
    checks: verify::Outcome,
    ops: BTreeMap<&'static str, usize>,
    interrupted: BTreeMap<&'static str, usize>,
    recovered: usize,
    uncommitted: usize,
    acknowledged: usize,
    delivered: (usize, usize),
    stuck_sending: usize,
    max_sending: Option<(Duration, String)>,
    actions: usize,
    actions_on_server: bool,
    edits: Vec<String>,
    reactions: Vec<String>,
    action_faults: Vec<String>,
    errors: Vec<String>,
    leftovers: Vec<String>,
    faults: BTreeMap<&'static str, usize>,
}

impl Outcome {
    /// Number of invariant violations.
    pub fn violations(&self) -> usize {
        self.checks.violations()
            + self.edits.len()
            + self.reactions.len()
            + self.action_faults.len()
            + self.errors.len()
            + self.leftovers.len()
    }
}

/// Checks everything.
pub fn check(input: Input<'_>) -> Outcome {
    let Input {
        history,
        actions_on_server,
        model,
        convs,
        names,
        users,
        dumps,
        traces,
        leftovers,
        faults,
        now,
    } = input;

    // A send interrupted by a kill counts as sent if the device committed
    // it (then it must go everywhere like any other), in its place among
    // the sends: send order is checked per device.
    let mut sent: Vec<Sent> = Vec::new();
    let (mut recovered, mut uncommitted) = (0, 0);
    let mut doubts = model.in_doubt.iter().peekable();
    for pos in 0..=model.sent.len() {
        while let Some((client, conv, body, _)) = doubts.next_if(|d| d.3 <= pos) {
            let found = dumps.get(*client).and_then(|d| {
                d.views
                    .iter()
                    .filter(|(c, _)| c == conv)
                    .flat_map(|(_, items)| items)
                    .find(|i| i.own && &i.body == body)
            });
            match found {
                Some(item) => {
                    recovered += 1;
                    sent.push(Sent {
                        id: item.id,
                        conversation: *conv,
                        sender: names[*client].clone(),
                        body: body.clone(),
                    });
                }
                None => uncommitted += 1,
            }
        }
        if let Some((_, s)) = model.sent.get(pos) {
            sent.push(s.clone());
        }
    }

    let mut views: Vec<(String, ConversationId, Vec<Item>)> = Vec::new();
    for (i, dump) in dumps.iter().enumerate() {
        for (conv, items) in &dump.views {
            views.push((names[i].clone(), *conv, items.clone()));
        }
    }
    let checks = verify::check(history, actions_on_server, &sent, &views, traces);

    // Copies on the other members' devices.
    let mut held: HashSet<(usize, MessageId)> = HashSet::new();
    for (i, dump) in dumps.iter().enumerate() {
        for (_, items) in &dump.views {
            held.extend(items.iter().filter(|x| x.seq.is_some()).map(|x| (i, x.id)));
        }
    }
    let sender_of: HashMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let mut delivered = (0, 0);
    for s in &sent {
        let from = sender_of.get(s.sender.as_str()).copied();
        let Some(conv) = convs.iter().find(|c| c.id == s.conversation) else {
            continue;
        };
        for &m in conv.members.iter().filter(|&&m| Some(m) != from) {
            delivered.1 += 1;
            if held.contains(&(m, s.id)) {
                delivered.0 += 1;
            }
        }
    }

    // Statuses over time.
    let mut acknowledged = 0;
    let mut stuck_sending = 0;
    let mut max_sending: Option<(Duration, String)> = None;
    for s in &sent {
        let Some(t) = traces.get(&s.id) else { continue };
        if t.in_flight.is_some() {
            acknowledged += 1;
        }
        if t.statuses.last() == Some(&Status::Sending) {
            stuck_sending += 1;
        }
        if let Some(start) = t.started.or(t.visible) {
            let d = t.in_flight.unwrap_or(now).saturating_duration_since(start);
            if max_sending.as_ref().is_none_or(|(m, _)| d > *m) {
                let text: String = s.body.chars().take(24).collect();
                max_sending = Some((d, format!("{} {text:?}", short(s.id))));
            }
        }
    }

    // Edits: every device shows the newest edit (an edit interrupted by a
    // kill may or may not have been committed, so either is accepted).
    let mut edits = Vec::new();
    for (member, _, items) in &views {
        for item in items {
            let Some(bodies) = model.bodies.get(&item.id) else {
                continue;
            };
            let from = bodies.iter().rposition(|(_, sure)| *sure).unwrap_or(0);
            let ok = bodies[from..].iter().any(|(b, _)| *b == item.body);
            if !ok && edits.len() < 1000 {
                edits.push(format!(
                    "{member} shows {} as {:?}, expected {:?}",
                    short(item.id),
                    item.body,
                    bodies[from].0
                ));
            }
        }
    }

    // Reactions: every member shows the same ones, and as toggled.
    let mut reactions = Vec::new();
    let mut shown: HashMap<MessageId, Vec<(String, ReactionSet)>> = HashMap::new();
    for (member, _, items) in &views {
        for item in items {
            let set: ReactionSet = item
                .reactions
                .iter()
                .filter(|r| !r.users.is_empty())
                .map(|r| {
                    let mut users = r.users.clone();
                    users.sort();
                    (r.emoji.clone(), users)
                })
                .collect();
            shown
                .entry(item.id)
                .or_default()
                .push((member.clone(), set));
        }
    }
    for (id, per_member) in &shown {
        if let Some((first, set)) = per_member.first() {
            for (other, other_set) in &per_member[1..] {
                if other_set != set {
                    reactions.push(format!(
                        "{first} and {other} show different reactions on {}",
                        short(*id)
                    ));
                }
            }
        }
    }
    for ((id, client, emoji), toggles) in &model.reactions {
        if toggles.iter().any(|(_, sure)| !sure) {
            continue;
        }
        let (Some((on, _)), Some(Some(user))) = (toggles.last(), users.get(*client)) else {
            continue;
        };
        let Some((member, set)) = shown.get(id).and_then(|v| v.first()) else {
            continue;
        };
        let has = set.iter().any(|(e, u)| e == emoji && u.contains(user));
        if has != *on {
            reactions.push(format!(
                "{member} shows {}'s {emoji} on {} as {}, it was last turned {}",
                names[*client],
                short(*id),
                if has { "on" } else { "off" },
                if *on { "on" } else { "off" }
            ));
        }
    }

    // Actions: each on the server once, confirmed on its device.
    let mut action_faults = Vec::new();
    let mut on_server: HashMap<MessageId, usize> = HashMap::new();
    for row in history.values().flatten() {
        *on_server.entry(row.id).or_default() += 1;
    }
    for (client, id) in &model.actions {
        if actions_on_server {
            match on_server.get(id).copied().unwrap_or(0) {
                1 => {}
                0 => action_faults.push(format!(
                    "action {} of {} is not on the server",
                    short(*id),
                    names[*client]
                )),
                n => action_faults.push(format!(
                    "action {} is stored {n} times on the server",
                    short(*id)
                )),
            }
        }
        let stored = dumps
            .get(*client)
            .and_then(|d| d.actions.iter().find(|(a, _)| a == id))
            .and_then(|(_, item)| item.as_ref());
        match stored {
            Some(item) if item.status.is_confirmed() => {}
            Some(item) => action_faults.push(format!(
                "action {} of {} ended {:?}{}",
                short(*id),
                names[*client],
                item.status,
                item.failure
                    .as_ref()
                    .map(|f| format!(": {}", f.message))
                    .unwrap_or_default()
            )),
            None => action_faults.push(format!(
                "action {} is gone from {}'s device",
                short(*id),
                names[*client]
            )),
        }
    }

    Outcome {
        checks,
        ops: model.ops.clone(),
        interrupted: model.interrupted.clone(),
        recovered,
        uncommitted,
        acknowledged,
        delivered,
        stuck_sending,
        max_sending,
        actions: model.actions.len(),
        actions_on_server,
        edits,
        reactions,
        action_faults,
        errors: model.errors.clone(),
        leftovers,
        faults,
    }
}

/// The last 8 characters of an id (its random part; a UUIDv7 starts with
/// the time).
fn short(id: MessageId) -> String {
    let s = id.to_string();
    s[s.len().saturating_sub(8)..].to_string()
}

/// Reads the server's history of every conversation through a fresh
/// device of its creator, logged in directly (no proxy): what any new
/// device receives from the server. Only messages, not actions.
pub async fn audit_history(
    server: &str,
    rig: &Rig,
    dir: &Path,
    password: &str,
) -> anyhow::Result<History> {
    let mut auditors: HashMap<usize, Client> = HashMap::new();
    let mut history = History::new();
    for conv in &rig.convs {
        let creator = conv.members[0];
        let name = &rig.agents[creator].name;
        let client = match auditors.entry(creator) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(
                Client::login(&dir.join(name), server, name, password, "chaos-audit")
                    .await
                    .with_context(|| format!("audit login of {name}"))?,
            ),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let caught_up = client
                .conversations()
                .await?
                .iter()
                .any(|c| c.id == conv.id && c.cursor == c.last_seq && c.last_seq.0 > 0);
            if caught_up {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "a fresh device of {name} did not catch up on {} within 30 s",
                conv.id
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let items = client.page(conv.id, None, usize::MAX >> 2).await?;
        let rows = items
            .iter()
            .filter_map(|i| {
                i.seq.map(|seq| Row {
                    seq,
                    id: i.id,
                    action: false,
                })
            })
            .collect();
        history.insert(conv.id, rows);
    }
    Ok(history)
}

/// Prints the report, ending with two `key=value` lines for scripts.
pub fn print(o: &Outcome, seed: u64, wall: Duration, settle: Duration, remote: bool) {
    let c = &o.checks;
    let count = |k: &str| o.ops.get(k).copied().unwrap_or(0);
    let total_ops: usize = o.ops.values().sum();
    println!();
    println!(
        "== chaos report: seed {seed}, {:.1}s (settled in {:.1}s) ==",
        wall.as_secs_f64(),
        settle.as_secs_f64()
    );
    println!(
        "workload                 {total_ops} operations: {} sends, {} edits, {} reactions, {} read marks",
        count("send"),
        count("edit"),
        count("react"),
        count("read")
    );
    let interrupted: usize = o.interrupted.values().sum();
    if interrupted > 0 {
        let by_kind: Vec<String> = o
            .interrupted
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        println!(
            "interrupted by a kill    {interrupted} ({}); of the sends, {} had been committed, {} had not",
            by_kind.join(", "),
            o.recovered,
            o.uncommitted
        );
    }
    println!("messages sent            {}", c.sent);
    println!(
        "acknowledged             {}  (In-Flight seen by the sender)",
        o.acknowledged
    );
    println!(
        "delivered                {}/{}  (copies on the other members' devices)",
        o.delivered.0, o.delivered.1
    );
    let list = |name: &str, v: &[String]| {
        println!("{name:<25}{}", v.len());
        for line in v.iter().take(10) {
            println!("    {line}");
        }
    };
    list("lost", &c.lost);
    list("duplicated", &c.duplicates);
    list("reordered", &c.order);
    if !o.actions_on_server {
        println!("    (the server's history was read through a fresh device: sequence gaps are");
        println!("     checked by every device's gap-free cursor, actions on their devices)");
    }
    println!("{:<25}{}", "stuck (still Sending)", o.stuck_sending);
    let not_success: Vec<String> = c
        .stuck
        .iter()
        .filter(|l| !l.contains("Some(Sending)"))
        .cloned()
        .collect();
    list("not Success at the end", &not_success);
    for line in c
        .stuck
        .iter()
        .filter(|l| l.contains("Some(Sending)"))
        .take(10)
    {
        println!("    {line}");
    }
    list("failed", &c.failed);
    list("status moved back", &c.backwards);
    list("edits not as expected", &o.edits);
    list("reactions disagreeing", &o.reactions);
    println!(
        "{:<25}{}  ({} actions, {})",
        "actions lost or refused",
        o.action_faults.len(),
        o.actions,
        if o.actions_on_server {
            "checked on the server and their devices"
        } else {
            "checked on their devices only"
        }
    );
    for line in o.action_faults.iter().take(10) {
        println!("    {line}");
    }
    list("client errors", &o.errors);
    list("not settled", &o.leftovers);
    match &o.max_sending {
        Some((d, what)) => println!(
            "{:<25}{:.2}s  ({what})",
            "max time in Sending",
            d.as_secs_f64()
        ),
        None => println!("{:<25}-", "max time in Sending"),
    }
    let total_faults: usize = o.faults.values().sum();
    println!("{:<25}{total_faults}", "faults injected");
    for kind in KINDS {
        let n = o.faults.get(kind).copied().unwrap_or(0);
        let note = match *kind {
            "kill-server" if remote => "  (disabled: --server)",
            _ => "",
        };
        println!("  {kind:<23}{n}{note}");
    }
    println!();
    if o.violations() == 0 {
        println!("all invariants held ✓");
    } else {
        println!("{} INVARIANT VIOLATIONS ✗", o.violations());
    }
    println!(
        "chaos-result: seed={seed} sent={} acknowledged={} delivered={}/{} lost={} duplicated={} reordered={} stuck={} failed={} max_sending_ms={} faults={total_faults} violations={}",
        c.sent,
        o.acknowledged,
        o.delivered.0,
        o.delivered.1,
        c.lost.len(),
        c.duplicates.len(),
        c.order.len(),
        o.stuck_sending,
        c.failed.len(),
        o.max_sending.as_ref().map_or(0, |(d, _)| d.as_millis()),
        o.violations()
    );
    let kinds: Vec<String> = KINDS
        .iter()
        .map(|k| format!("{k}={}", o.faults.get(k).copied().unwrap_or(0)))
        .collect();
    println!("chaos-faults: {}", kinds.join(" "));
}
