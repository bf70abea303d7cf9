//! Checking the invariants after a replay, and printing the report.

use super::Sent;
use crate::output::glyph;
use crate::trace::Trace;
use chatsync_client::{Item, Status};
use chatsync_protocol::{ConversationId, MessageId, Seq};
use chatsync_server::ServerStore;
use hdrhistogram::Histogram;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

/// What the checks found.
pub struct Outcome {
    sent: usize,
    on_server: usize,
    lost: Vec<String>,
    duplicates: Vec<String>,
    order: Vec<String>,
    stuck: Vec<String>,
    failed: Vec<String>,
    backwards: Vec<String>,
    delivered: BTreeMap<String, (usize, usize)>,
    latency: Vec<(&'static str, Histogram<u64>)>,
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

/// Compares what was sent, what the server stored and what every member's
/// device stored.
pub fn check(
    store: &impl ServerStore,
    convs: &[ConversationId],
    sent: &[Sent],
    views: &[(String, ConversationId, Vec<Item>)],
    traces: &HashMap<MessageId, Trace>,
) -> anyhow::Result<Outcome> {
    let mut out = Outcome {
        sent: sent.len(),
        on_server: 0,
        lost: Vec::new(),
        duplicates: Vec::new(),
        order: Vec::new(),
        stuck: Vec::new(),
        failed: Vec::new(),
        backwards: Vec::new(),
        delivered: BTreeMap::new(),
        latency: Vec::new(),
    };
    // The server's history of each conversation, read page by page.
    let mut server: HashMap<ConversationId, Vec<(Seq, MessageId)>> = HashMap::new();
    for &conv in convs {
        let mut after = Seq::ZERO;
        let mut list = Vec::new();
        loop {
            let page = store.messages_after(conv, after, 500)?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            list.extend(page.iter().map(|m| (m.seq, m.id)));
        }
        for (i, (seq, _)) in list.iter().enumerate() {
            if seq.0 != i as u64 + 1 {
                out.order
                    .push(format!("server history of {conv} has a gap at seq {seq}"));
                break;
            }
        }
        server.insert(conv, list);
    }
    let mut server_count: HashMap<MessageId, usize> = HashMap::new();
    let mut server_seq: HashMap<MessageId, Seq> = HashMap::new();
    for list in server.values() {
        for (seq, id) in list {
            *server_count.entry(*id).or_default() += 1;
            server_seq.insert(*id, *seq);
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
    // Every member's device must hold exactly the server's history, in order.
    for (member, conv, items) in views {
        let expected = &server[conv];
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
        if &got != expected {
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
    // Latencies from the call to `send`.
    let mut hist =
        |name: &'static str, f: &dyn Fn(&Trace) -> Option<Instant>| -> anyhow::Result<()> {
            let mut h = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
            for t in traces.values() {
                if let (Some(start), Some(end)) = (t.started, f(t)) {
                    h.saturating_record(end.saturating_duration_since(start).as_micros() as u64);
                }
            }
            out.latency.push((name, h));
            Ok(())
        };
    hist("send (durable insert)", &|t| t.durable)?;
    hist("→ visible as Sending", &|t| t.visible)?;
    hist("→ In-Flight", &|t| t.in_flight)?;
    hist("→ Success", &|t| t.success)?;
    Ok(out)
}

/// One line for a message's trace.
pub fn trace_line(t: &Trace) -> String {
    let since = |i: Option<Instant>| match (t.started, i) {
        (Some(s), Some(i)) => format!(
            "{:.1}ms",
            i.saturating_duration_since(s).as_secs_f64() * 1e3
        ),
        _ => "-".into(),
    };
    let (who, text) = t.label.clone().unwrap_or_default();
    let mut text: String = text.chars().take(48).collect();
    if text.len() < t.label.as_ref().map_or(0, |l| l.1.len()) {
        text.push('…');
    }
    format!(
        "{who}: {text:<50} durable {}  {} {}  {} {}",
        since(t.durable),
        glyph(Status::InFlight),
        since(t.in_flight),
        glyph(Status::Success),
        since(t.success)
    )
}

/// Prints the report.
pub fn print(o: &Outcome, wall: Duration) {
    println!();
    println!("== report ({:.1}s) ==", wall.as_secs_f64());
    println!("messages sent            {}", o.sent);
    println!("stored on the server     {}", o.on_server);
    for (member, (got, expected)) in &o.delivered {
        println!("delivered to {member:<12} {got}/{expected}");
    }
    let list = |name: &str, v: &[String]| {
        println!("{name:<25}{}", v.len());
        for line in v.iter().take(10) {
            println!("    {line}");
        }
    };
    list("lost", &o.lost);
    list("duplicates", &o.duplicates);
    list("order violations", &o.order);
    list("stuck (not Success)", &o.stuck);
    list("failed", &o.failed);
    list("status moved back", &o.backwards);
    println!();
    println!(
        "{:<25}{:>10}{:>10}{:>10}",
        "latency from send()", "p50", "p99", "max"
    );
    for (name, h) in &o.latency {
        let f = |us: u64| {
            if us >= 10_000 {
                format!("{:.0}ms", us as f64 / 1e3)
            } else {
                format!("{:.2}ms", us as f64 / 1e3)
            }
        };
        println!(
            "{name:<25}{:>10}{:>10}{:>10}",
            f(h.value_at_quantile(0.5)),
            f(h.value_at_quantile(0.99)),
            f(h.max())
        );
    }
    println!("(the p99 and max include the dropped connections and the server restart)");
    println!();
    if o.violations() == 0 {
        println!("all invariants held ✓");
    } else {
        println!("{} INVARIANT VIOLATIONS ✗", o.violations());
    }
}
