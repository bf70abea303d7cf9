//! Checking the invariants after a replay, and printing the report.

use super::Sent;
use crate::output::{glyph, outln};
use crate::trace::Trace;
use crate::verify;
use chatsync_client::{Item, Status};
use chatsync_protocol::{ConversationId, MessageId};
use chatsync_server::ServerStore;
use hdrhistogram::Histogram;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What the checks found, and the latencies.
pub struct Outcome {
    checks: verify::Outcome,
    latency: Vec<(&'static str, Histogram<u64>)>,
}

impl Outcome {
    /// Number of invariant violations.
    pub fn violations(&self) -> usize {
        self.checks.violations()
    }
}

/// Compares what was sent, what the server stored and what every member's
/// device stored (see [`verify::check`]), and measures latencies.
pub fn check(
    store: &impl ServerStore,
    convs: &[ConversationId],
    sent: &[Sent],
    views: &[(String, ConversationId, Vec<Item>)],
    traces: &HashMap<MessageId, Trace>,
) -> anyhow::Result<Outcome> {
    let history = verify::read_history(store, convs)?;
    let checks = verify::check(&history, true, sent, views, traces);
    // Latencies from the call to `send`.
    let mut latency = Vec::new();
    let mut hist =
        |name: &'static str, f: &dyn Fn(&Trace) -> Option<Instant>| -> anyhow::Result<()> {
            let mut h = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
            for t in traces.values() {
                if let (Some(start), Some(end)) = (t.started, f(t)) {
                    h.saturating_record(end.saturating_duration_since(start).as_micros() as u64);
                }
            }
            latency.push((name, h));
            Ok(())
        };
    hist("send (durable insert)", &|t| t.durable)?;
    hist("→ visible as Sending", &|t| t.visible)?;
    hist("→ In-Flight", &|t| t.in_flight)?;
    hist("→ Success", &|t| t.success)?;
    Ok(Outcome { checks, latency })
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
pub fn print(outcome: &Outcome, wall: Duration) -> anyhow::Result<()> {
    let o = &outcome.checks;
    outln!()?;
    outln!("== report ({:.1}s) ==", wall.as_secs_f64())?;
    outln!("messages sent            {}", o.sent)?;
    outln!("stored on the server     {}", o.on_server)?;
    for (member, (got, expected)) in &o.delivered {
        outln!("delivered to {member:<12} {got}/{expected}")?;
    }
    let list = |name: &str, v: &[String]| -> anyhow::Result<()> {
        outln!("{name:<25}{}", v.len())?;
        for line in v.iter().take(10) {
            outln!("    {line}")?;
        }
        Ok(())
    };
    list("lost", &o.lost)?;
    list("duplicates", &o.duplicates)?;
    list("order violations", &o.order)?;
    list("stuck (not Success)", &o.stuck)?;
    list("failed", &o.failed)?;
    list("status moved back", &o.backwards)?;
    outln!()?;
    outln!(
        "{:<25}{:>10}{:>10}{:>10}",
        "latency from send()",
        "p50",
        "p99",
        "max"
    )?;
    for (name, h) in &outcome.latency {
        let f = |us: u64| {
            if us >= 10_000 {
                format!("{:.0}ms", us as f64 / 1e3)
            } else {
                format!("{:.2}ms", us as f64 / 1e3)
            }
        };
        outln!(
            "{name:<25}{:>10}{:>10}{:>10}",
            f(h.value_at_quantile(0.5)),
            f(h.value_at_quantile(0.99)),
            f(h.max())
        )?;
    }
    outln!("(the p99 and max include the dropped connections and the server restart)")?;
    outln!()?;
    if outcome.violations() == 0 {
        outln!("all invariants held ✓")
    } else {
        outln!("{} INVARIANT VIOLATIONS ✗", outcome.violations())
    }
}
