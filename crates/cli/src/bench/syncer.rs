//! The client-level run: real client library instances (each with its own
//! SQLite client storage) send open-loop through a real server process,
//! and every message's way is timed: `send` (durable insert), visible as
//! Sending, In-Flight (the server's durable ack), delivered to the
//! recipient's client storage (every recipient's, with `--members` above
//! 2), Success.

use super::report::{per_sec, Report, Table};
use super::server::{bench_client, BenchServer};
use super::stats::{rate, Lat, LatHist, ProcFigures, ProcWatch};
use super::Ctx;
use crate::output::outln;
use crate::trace::{Recorder, Trace};
use anyhow::Context;
use chatsync_client::core::Config;
use chatsync_client::{Client, TimelineChange};
use chatsync_protocol::MessageId;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Serialize)]
struct Figures {
    messages: usize,
    rate_target: f64,
    rate_achieved: f64,
    senders: usize,
    members: usize,
    seconds: f64,
    settled_success: usize,
    /// Largest lag of a `send` call behind its open-loop due time.
    max_schedule_lag_us: f64,
    errors: Errors,
    server: Option<ProcFigures>,
    latencies: Vec<Row>,
}

#[derive(Serialize, Default)]
struct Errors {
    /// `send` calls that returned an error.
    send: usize,
    /// Messages that reached Failed.
    failed: usize,
    /// Messages that never reached In-Flight within the settle time.
    not_in_flight: usize,
    /// Messages that never reached Success within the settle time.
    not_success: usize,
    first: Option<String>,
}

#[derive(Serialize)]
struct Row {
    metric: &'static str,
    #[serde(flatten)]
    lat: Lat,
}

/// Arrival of each message in its recipients' client storage: how many
/// recipients have it, and when the last of them got it.
type Deliveries = Arc<Mutex<HashMap<MessageId, (usize, Instant)>>>;

/// Runs the client-level latency run.
pub async fn run(ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    let a = &ctx.args;
    let server = match &a.server {
        Some(_) => None,
        None => Some(BenchServer::start(&ctx.tmp.join("server-syncer"), &[]).await?),
    };
    let addr = match (&a.server, &server) {
        (Some(s), _) => s.clone(),
        (None, Some(p)) => p.addr.clone(),
        (None, None) => anyhow::bail!("no server"),
    };

    // Clients: sender i talks to its own `members - 1` recipients.
    let run_id = std::process::id();
    let config = Config {
        reconnect_base: Duration::from_millis(50),
        reconnect_cap: Duration::from_millis(1000),
        ..Config::default()
    };
    let recorder = Recorder::default();
    let delivered: Deliveries = Arc::default();
    let recipients = a.members - 1;
    let mut senders = Vec::new();
    let mut keep = Vec::new();
    for i in 0..a.senders {
        let mut group = Vec::new();
        for role in std::iter::once("s".to_string()).chain((0..recipients).map(|r| format!("r{r}")))
        {
            let name = format!("bench{run_id}{role}x{i}");
            let data = ctx.tmp.join("clients").join(&name);
            let c = bench_client(&addr, &name, &data, config.clone()).await?;
            group.push((name, c));
        }
        let (_, sender) = group.remove(0);
        let names: Vec<&str> = group.iter().map(|(n, _)| n.as_str()).collect();
        let conv = sender.create_conversation("bench", &names).await?;
        let mut timeline = sender.subscribe(conv.id, 0).await?;
        let rec = recorder.clone();
        tokio::spawn(async move {
            while let Some(change) = timeline.changes.recv().await {
                rec.own_change(&change);
            }
        });
        // A recipient's subscription shows a message once it is in its
        // client storage.
        for (_, recipient) in group {
            let rtimeline = wait_subscribe(&recipient, conv.id).await?;
            let d = delivered.clone();
            tokio::spawn(async move {
                let mut changes = rtimeline.changes;
                while let Some(change) = changes.recv().await {
                    if let TimelineChange::Upserted(item) = change {
                        if !item.own {
                            let now = Instant::now();
                            let mut map = d.lock().unwrap_or_else(|p| p.into_inner());
                            let entry = map.entry(item.id).or_insert((0, now));
                            // Counted once per recipient: a later upsert of
                            // the same item (an edit) is not a delivery.
                            entry.0 += 1;
                            entry.1 = now;
                        }
                    }
                }
            });
            keep.push(recipient);
        }
        senders.push((sender, conv.id));
    }

    // Open loop: message k is due at start + k / rate, whatever happened to
    // the ones before it, so slow answers cannot hide latency.
    let bar = ctx.bar(a.messages as u64, "syncer: open loop (Success)");
    let per_sender = a.messages.div_ceil(a.senders);
    let interval = Duration::from_secs_f64(a.senders as f64 / a.rate);
    let watch = ProcWatch::start(server.as_ref().and_then(|s| s.pid));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (i, (client, conv)) in senders.iter().cloned().enumerate() {
        let rec = recorder.clone();
        let bodies = ctx.bodies();
        let offset = interval.mul_f64(i as f64 / a.senders as f64);
        let count = per_sender.min(a.messages.saturating_sub(i * per_sender));
        tasks.push(tokio::spawn(async move {
            let mut max_lag = Duration::ZERO;
            let mut errors = 0usize;
            let mut first = None;
            for k in 0..count {
                let body = bodies[(i * per_sender + k) % bodies.len()].clone();
                let due = start + offset + interval.mul_f64(k as f64);
                tokio::time::sleep_until(due.into()).await;
                let t0 = Instant::now();
                max_lag = max_lag.max(t0.saturating_duration_since(due));
                match client.send(conv, body).await {
                    Ok(id) => {
                        let t1 = Instant::now();
                        rec.with(id, |t| {
                            t.started = Some(t0);
                            t.durable = Some(t1);
                        });
                    }
                    Err(e) => {
                        errors += 1;
                        first.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            (max_lag, errors, first)
        }));
    }
    let total = a.messages;
    let count_success = |snap: &HashMap<MessageId, Trace>| {
        snap.values()
            .filter(|t| t.success.is_some() || t.failed.is_some())
            .count()
    };
    while tasks.iter().any(|t| !t.is_finished()) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        bar.set_position(recorder.read(count_success) as u64);
    }
    let mut errors = Errors::default();
    let mut max_lag = Duration::ZERO;
    for t in tasks {
        let (lag, e, first) = t.await?;
        max_lag = max_lag.max(lag);
        errors.send += e;
        if errors.first.is_none() {
            errors.first = first;
        }
    }
    let send_secs = start.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let done = recorder.read(count_success);
        bar.set_position(done as u64);
        if done + errors.send >= total || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let server_figures = watch.finish();
    bar.finish_and_clear();

    let snap = recorder.snapshot();
    let delivered = delivered.lock().unwrap_or_else(|p| p.into_inner()).clone();
    errors.failed = snap.values().filter(|t| t.failed.is_some()).count();
    errors.not_in_flight = snap.values().filter(|t| t.in_flight.is_none()).count();
    errors.not_success = snap.values().filter(|t| t.success.is_none()).count();
    if errors.first.is_none() {
        errors.first = snap.values().find_map(|t| t.failed.clone());
    }
    let mut rows = Vec::new();
    type Pick = fn(&Trace) -> Option<Instant>;
    let metrics: [(&'static str, Pick); 4] = [
        ("send (durable insert)", |t| t.durable),
        ("send → visible as Sending", |t| t.visible),
        ("send → In-Flight", |t| t.in_flight),
        ("send → Success", |t| t.success),
    ];
    for (i, (name, pick)) in metrics.into_iter().enumerate() {
        let mut h = LatHist::new();
        for t in snap.values() {
            if let (Some(s), Some(e)) = (t.started, pick(t)) {
                h.record(e.saturating_duration_since(s));
            }
        }
        rows.push(Row {
            metric: name,
            lat: h.summary(),
        });
        if i == 2 {
            // Delivery to the recipients sits between In-Flight and
            // Success: timed when the last recipient stored it.
            let mut h = LatHist::new();
            for (id, (count, at)) in &delivered {
                if *count < recipients {
                    continue;
                }
                if let Some(s) = snap.get(id).and_then(|t| t.started) {
                    h.record(at.saturating_duration_since(s));
                }
            }
            rows.push(Row {
                metric: "send → in every recipient's storage",
                lat: h.summary(),
            });
        }
    }
    let figures = Figures {
        messages: total,
        rate_target: a.rate,
        rate_achieved: rate(total as f64, send_secs),
        senders: a.senders,
        members: a.members,
        seconds: send_secs,
        settled_success: snap.values().filter(|t| t.success.is_some()).count(),
        max_schedule_lag_us: max_lag.as_secs_f64() * 1e6,
        errors,
        server: server_figures,
        latencies: rows,
    };
    print_table(&figures)?;
    let pick = |m: &str| {
        figures
            .latencies
            .iter()
            .find(|r| r.metric == m)
            .map(|r| r.lat)
    };
    if let Some(l) = pick("send (durable insert)") {
        report.key.send_p99_us = Some(l.p99_us);
        report.key.send_p999_us = Some(l.p999_us);
    }
    if let Some(l) = pick("send → visible as Sending") {
        report.key.visible_p99_us = Some(l.p99_us);
    }
    if let Some(l) = pick("send → In-Flight") {
        report.key.in_flight_p50_us = Some(l.p50_us);
        report.key.in_flight_p99_us = Some(l.p99_us);
    }
    if let Some(l) = pick("send → Success") {
        report.key.success_p50_us = Some(l.p50_us);
    }
    report.key.syncer_rate = Some(a.rate);
    report.add("syncer", &figures);

    drop(senders);
    drop(keep);
    if let Some(p) = server {
        p.stop().await;
    }
    if a.stages {
        if let Some(file) = crate::stages::file() {
            let shown = super::breakdown::report(file, report);
            let _ = std::fs::remove_file(file);
            shown?;
        }
    }
    Ok(())
}

/// Subscribes to a conversation the client may only learn about a moment
/// later (the `conversation` push to the recipient).
async fn wait_subscribe(
    client: &Client,
    conv: chatsync_protocol::ConversationId,
) -> anyhow::Result<chatsync_client::Timeline> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client.subscribe(conv, 0).await {
            Ok(t) => return Ok(t),
            Err(e) if Instant::now() > deadline => {
                return Err(e).context("the recipient never learned of the conversation")
            }
            Err(_) => {
                let _ = client.refresh_conversations().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

fn print_table(f: &Figures) -> anyhow::Result<()> {
    let mut t = Table::new(
        format!(
            "syncer: {} messages from {} sender(s) to {} recipient(s) each, open loop at {:.0}/s target, {:.0}/s achieved, {:.1}s; {} reached Success",
            f.messages, f.senders, f.members - 1, f.rate_target, f.rate_achieved, f.seconds, f.settled_success
        ),
        &["latency", "count", "p50", "p90", "p99", "p99.9", "max"],
    );
    for r in &f.latencies {
        t.lat_row(r.metric, &r.lat);
    }
    t.print()?;
    let e = &f.errors;
    outln!(
        "errors: {} send, {} failed, {} never In-Flight, {} never Success{}; max schedule lag {:.0}µs",
        e.send,
        e.failed,
        e.not_in_flight,
        e.not_success,
        e.first
            .as_ref()
            .map(|s| format!(" (first: {s})"))
            .unwrap_or_default(),
        f.max_schedule_lag_us
    )?;
    if let Some(s) = &f.server {
        outln!(
            "server: CPU {:.1}s ({:.0}% of one core), RSS {:.1} MiB (peak {:.1} MiB); throughput {}",
            s.cpu_seconds,
            s.cpu_percent,
            s.rss_mib,
            s.peak_rss_mib,
            per_sec(f.rate_achieved)
        )?;
    }
    Ok(())
}
