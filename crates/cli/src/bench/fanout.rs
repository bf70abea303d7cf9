//! Fan-out: conversations of 10, 100 and 1,000 members, every member
//! connected as a protocol-level client that stores nothing but
//! acknowledges each message with `received` (as a real client does once
//! it stored it). One member sends; the time until the last other member
//! has the message is measured over several messages per size.

use super::lite;
use super::report::{us, Report, Table};
use super::server::{BenchServer, Seeder};
use super::stats::{Lat, LatHist, ProcFigures, ProcWatch};
use super::Ctx;
use anyhow::Context;
use chatsync_protocol::{ClientFrame, ConversationId, MessageId, ServerFrame};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Arrivals of the message being measured.
#[derive(Default)]
struct Arrivals {
    /// Message id → arrival times at members.
    at: HashMap<MessageId, Vec<Instant>>,
}

#[derive(Serialize)]
struct Size {
    members: usize,
    messages: usize,
    /// Send → the last other member has it.
    to_last: Lat,
    /// Send → the median member has it.
    to_median: Lat,
    /// Send → the sender's ack.
    ack: Lat,
    /// Messages that did not reach every member within the timeout.
    incomplete: usize,
    /// p50 of `to_last` divided by the members reached: cost per member.
    per_member_us: f64,
    server: Option<ProcFigures>,
}

#[derive(Serialize)]
struct Figures {
    sizes: Vec<Size>,
    note: &'static str,
}

/// Runs the fan-out suite.
pub async fn run(ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    let a = &ctx.args;
    let mut sizes = a.fanout_sizes.clone();
    sizes.sort_unstable();
    sizes.dedup();
    let most = *sizes.last().context("sizes")?;
    let dir = ctx.tmp.join("server-fanout");
    let (users, convs) = {
        let seed = Seeder::open(&dir)?;
        let users = seed.users("fan", most)?;
        let mut convs = Vec::new();
        for &n in &sizes {
            let ids: Vec<_> = users[..n].iter().map(|u| u.id).collect();
            convs.push(seed.conversation(&format!("fanout {n}"), &ids)?);
        }
        (users, convs)
    };
    super::connections::raise_nofile(most as u64 * 2 + 4096);
    let server = BenchServer::start(&dir, &[]).await?;

    // Every member but the sender (user 0) connects and acknowledges.
    let arrivals: Arc<Mutex<Arrivals>> = Arc::default();
    let notify = Arc::new(Notify::new());
    let frames = Arc::new(AtomicU64::new(0));
    let bar = ctx.bar(most as u64 - 1, "fan-out: members connecting");
    let mut members = Vec::new();
    for u in &users[1..] {
        let ws = lite::connect(&server.addr, &u.token, None)
            .await
            .with_context(|| format!("member {}", u.name))?;
        let (arr, n, f) = (arrivals.clone(), notify.clone(), frames.clone());
        members.push(tokio::spawn(member(ws, arr, n, f)));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let mut sender = lite::connect(&server.addr, &users[0].token, None).await?;

    let mut out = Vec::new();
    for (&n, &conv) in sizes.iter().zip(&convs) {
        let bar = ctx.bar(a.fanout_messages as u64, &format!("fan-out: {n} members"));
        let watch = ProcWatch::start(server.pid);
        let (mut last, mut median, mut ack) = (LatHist::new(), LatHist::new(), LatHist::new());
        let mut incomplete = 0;
        for k in 0..a.fanout_messages {
            let id = MessageId::new();
            arrivals
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .at
                .insert(id, Vec::with_capacity(n));
            let t0 = Instant::now();
            lite::send(
                &mut sender,
                &ClientFrame::Send {
                    id,
                    conversation: conv,
                    body: ctx.body(k).to_string(),
                    action: None,
                },
            )
            .await?;
            // The sender's ack (pushes of marks are skipped).
            let ack_deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let f = tokio::time::timeout_at(ack_deadline.into(), lite::next(&mut sender))
                    .await
                    .context("no ack within 30 s")??;
                match f {
                    Some(ServerFrame::Ack { id: got, .. }) if got == id => {
                        ack.record(t0.elapsed());
                        break;
                    }
                    Some(ServerFrame::Refused { refusal, .. }) => {
                        anyhow::bail!("fan-out send refused: {}", refusal.message)
                    }
                    Some(_) => continue,
                    None => anyhow::bail!("the server closed the sender's connection"),
                }
            }
            // Every other member has it.
            let deadline = Instant::now() + Duration::from_secs(30);
            let times = loop {
                let waiter = notify.notified();
                let done = {
                    let g = arrivals.lock().unwrap_or_else(|p| p.into_inner());
                    g.at.get(&id).filter(|v| v.len() >= n - 1).cloned()
                };
                if let Some(t) = done {
                    break Some(t);
                }
                if tokio::time::timeout_at(deadline.into(), waiter)
                    .await
                    .is_err()
                {
                    break None;
                }
            };
            match times {
                Some(mut t) => {
                    t.sort_unstable();
                    if let (Some(l), Some(m)) = (t.last(), t.get(t.len() / 2)) {
                        last.record(l.saturating_duration_since(t0));
                        median.record(m.saturating_duration_since(t0));
                    }
                }
                None => incomplete += 1,
            }
            arrivals
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .at
                .remove(&id);
            // Let the delivery marks this message caused settle (each
            // member's `received` is pushed to every member) before the next.
            settle(&frames, &mut sender).await;
            bar.inc(1);
        }
        bar.finish_and_clear();
        let to_last = last.summary();
        out.push(Size {
            members: n,
            messages: a.fanout_messages,
            per_member_us: to_last.p50_us / (n - 1) as f64,
            to_last,
            to_median: median.summary(),
            ack: ack.summary(),
            incomplete,
            server: watch.finish(),
        });
    }
    for m in members {
        m.abort();
    }
    drop(sender);
    server.stop().await;

    let mut t = Table::new(
        "fan-out: one message → every other member has it (protocol-level members acking `received`)",
        &[
            "members", "count", "last p50", "last p99", "median p50", "ack p50", "per member",
            "growth", "incomplete",
        ],
    );
    let mut prev: Option<&Size> = None;
    for s in &out {
        let growth = prev
            .filter(|p| p.to_last.p50_us > 0.0)
            .map(|p| {
                format!(
                    "{:.1}× for {:.0}× members",
                    s.to_last.p50_us / p.to_last.p50_us,
                    s.members as f64 / p.members as f64
                )
            })
            .unwrap_or_else(|| "-".into());
        t.row(vec![
            s.members.to_string(),
            s.to_last.count.to_string(),
            us(s.to_last.p50_us),
            us(s.to_last.p99_us),
            us(s.to_median.p50_us),
            us(s.ack.p50_us),
            us(s.per_member_us),
            growth,
            s.incomplete.to_string(),
        ]);
        prev = Some(s);
    }
    t.print()?;
    report.key.fanout = out
        .iter()
        .map(|s| (s.members, s.to_last.p50_us, s.to_last.p99_us))
        .collect();
    report.add(
        "fanout",
        Figures {
            sizes: out,
            note: "members are lightweight protocol clients on loopback, all in this process; each acknowledges with `received`, whose marks the server pushes to every member",
        },
    );
    Ok(())
}

/// A member: records each message's arrival, then acknowledges it.
async fn member(
    mut ws: lite::Ws,
    arrivals: Arc<Mutex<Arrivals>>,
    notify: Arc<Notify>,
    frames: Arc<AtomicU64>,
) {
    let mut acks: HashMap<ConversationId, u64> = HashMap::new();
    while let Ok(Some(f)) = lite::next(&mut ws).await {
        frames.fetch_add(1, Ordering::Relaxed);
        if let ServerFrame::Message { message } = f {
            let now = Instant::now();
            if let Some(v) = arrivals
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .at
                .get_mut(&message.id)
            {
                v.push(now);
            }
            notify.notify_waiters();
            let seq = acks.entry(message.conversation).or_default();
            *seq = (*seq).max(message.seq.0);
            let frame = ClientFrame::Received {
                conversation: message.conversation,
                seq: chatsync_protocol::Seq(*seq),
            };
            if lite::send(&mut ws, &frame).await.is_err() {
                break;
            }
        }
    }
}

/// Waits until no member received a frame for 50 ms (at most 10 s), while
/// draining the sender's pushes.
async fn settle(frames: &AtomicU64, sender: &mut lite::Ws) {
    let end = Instant::now() + Duration::from_secs(10);
    let mut seen = frames.load(Ordering::Relaxed);
    while Instant::now() < end {
        let _ = tokio::time::timeout(Duration::from_millis(50), async {
            while let Ok(Some(_)) = lite::next(sender).await {}
        })
        .await;
        let now = frames.load(Ordering::Relaxed);
        if now == seen {
            return;
        }
        seen = now;
    }
}
