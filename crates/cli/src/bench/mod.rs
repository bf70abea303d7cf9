//! `chatsync bench`: an open-loop load generator against a real server
//! process, recording per message the durable `send`, the time until the
//! UI sees it as Sending, In-Flight and Success, with HDR histograms.

use crate::server_process;

use crate::demo::transcript;
use crate::trace::Recorder;
use anyhow::Context;
use chatsync_client::core::Config;
use chatsync_client::Client;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Arguments of `bench`.
#[derive(clap::Args)]
pub struct Args {
    /// Messages to send in all.
    #[arg(long, default_value_t = 5000)]
    messages: usize,
    /// Open-loop send rate, messages per second over all senders.
    #[arg(long, default_value_t = 500.0)]
    rate: f64,
    /// Sender clients, each in a conversation with its own recipient client
    /// (every client is a full client library instance with its own SQLite
    /// storage).
    #[arg(long, default_value_t = 1)]
    senders: usize,
    /// Use this running server instead of starting one (`host:port`).
    #[arg(long)]
    server: Option<String>,
    /// Write the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Serialize)]
struct Figures {
    messages: usize,
    rate_target: f64,
    rate_achieved: f64,
    senders: usize,
    seconds: f64,
    settled_success: usize,
    latencies_us: Vec<Percentiles>,
}

#[derive(Serialize)]
struct Percentiles {
    metric: &'static str,
    count: u64,
    p50: u64,
    p90: u64,
    p99: u64,
    p999: u64,
    max: u64,
}

/// Runs the benchmark.
pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(a.senders >= 1, "--senders must be at least 1");
    anyhow::ensure!(a.rate > 0.0, "--rate must be positive");
    let tmp = tempfile::Builder::new()
        .prefix("chatsync-bench-")
        .tempdir()?;
    let spawned = match &a.server {
        Some(_) => None,
        None => Some(server_process::Spawned::start(&tmp.path().join("server")).await?),
    };
    let addr = match (&a.server, &spawned) {
        (Some(s), _) => s.clone(),
        (None, Some(p)) => p.addr.clone(),
        (None, None) => unreachable!("a server is either given or spawned"),
    };
    println!(
        "server: ws://{addr} {}",
        if spawned.is_some() {
            "(own process, started by bench)"
        } else {
            "(given)"
        }
    );
    let bodies: Vec<String> = transcript::load(None, None)?
        .into_iter()
        .flat_map(|s| s.lines.into_iter().map(|l| l.text))
        .collect();

    // Clients: sender i talks to recipient i.
    let run_id = std::process::id();
    let config = Config {
        reconnect_base: Duration::from_millis(50),
        reconnect_cap: Duration::from_millis(1000),
        ..Config::default()
    };
    let recorder = Recorder::default();
    let mut senders = Vec::new();
    let mut keep = Vec::new();
    for i in 0..a.senders {
        let mut pair = Vec::new();
        for role in ["s", "r"] {
            let name = format!("bench{run_id}{role}{i}");
            chatsync_client::register(&addr, &name, "bench-password")
                .await
                .with_context(|| format!("register {name}"))?;
            let c = Client::login_with(
                &tmp.path().join(&name),
                &addr,
                &name,
                "bench-password",
                "bench",
                config.clone(),
            )
            .await?;
            c.wait_connected(Duration::from_secs(10)).await?;
            pair.push((name, c));
        }
        let (rname, recipient) = pair.pop().context("recipient")?;
        let (_, sender) = pair.pop().context("sender")?;
        let conv = sender
            .create_conversation("bench", &[rname.as_str()])
            .await?;
        let mut timeline = sender.subscribe(conv.id, 0).await?;
        let rec = recorder.clone();
        tokio::spawn(async move {
            while let Some(change) = timeline.changes.recv().await {
                rec.own_change(&change);
            }
        });
        senders.push((sender, conv.id));
        keep.push(recipient);
    }

    // Open loop: message k is due at start + k / rate, whatever happened to
    // the ones before it, so slow answers cannot hide latency.
    let per_sender = a.messages.div_ceil(a.senders);
    let interval = Duration::from_secs_f64(a.senders as f64 / a.rate);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (i, (client, conv)) in senders.iter().cloned().enumerate() {
        let rec = recorder.clone();
        let bodies = bodies.clone();
        let offset = interval.mul_f64(i as f64 / a.senders as f64);
        let count = per_sender.min(a.messages.saturating_sub(i * per_sender));
        tasks.push(tokio::spawn(async move {
            for k in 0..count {
                let due = start + offset + interval.mul_f64(k as f64);
                tokio::time::sleep_until(due.into()).await;
                let body = bodies[(i + k) % bodies.len()].clone();
                let t0 = Instant::now();
                let id = client.send(conv, body).await?;
                let t1 = Instant::now();
                rec.with(id, |t| {
                    t.started = Some(t0);
                    t.durable = Some(t1);
                });
            }
            anyhow::Ok(())
        }));
    }
    let total = a.messages;
    let mut last = Instant::now();
    while tasks.iter().any(|t| !t.is_finished()) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if last.elapsed() >= Duration::from_secs(1) {
            last = Instant::now();
            let snap = recorder.snapshot();
            let done = snap.values().filter(|t| t.success.is_some()).count();
            eprint!(
                "\r{:>6.1}s  sent {:>7}/{total}  success {:>7}",
                start.elapsed().as_secs_f64(),
                snap.len(),
                done
            );
        }
    }
    for t in tasks {
        t.await??;
    }
    let send_secs = start.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let snap = recorder.snapshot();
        let done = snap.values().filter(|t| t.success.is_some()).count();
        if done >= total || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!();

    let snap = recorder.snapshot();
    let mut rows = Vec::new();
    type Pick = fn(&crate::trace::Trace) -> Option<Instant>;
    let metrics: [(&'static str, Pick); 4] = [
        ("send (durable insert)", |t| t.durable),
        ("visible as Sending", |t| t.visible),
        ("send → In-Flight", |t| t.in_flight),
        ("send → Success", |t| t.success),
    ];
    for (name, pick) in metrics {
        let mut h = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
        for t in snap.values() {
            if let (Some(s), Some(e)) = (t.started, pick(t)) {
                h.saturating_record(e.saturating_duration_since(s).as_micros().max(1) as u64);
            }
        }
        rows.push(Percentiles {
            metric: name,
            count: h.len(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        });
    }
    let figures = Figures {
        messages: total,
        rate_target: a.rate,
        rate_achieved: total as f64 / send_secs,
        senders: a.senders,
        seconds: send_secs,
        settled_success: snap.values().filter(|t| t.success.is_some()).count(),
        latencies_us: rows,
    };
    print_table(&figures);
    if let Some(path) = &a.json {
        std::fs::write(path, serde_json::to_string_pretty(&figures)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("figures written to {}", path.display());
    }
    drop(senders);
    drop(keep);
    if let Some(p) = spawned {
        p.stop().await;
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(f: &Figures) {
    println!(
        "{} messages from {} sender(s) at {:.0}/s target, {:.0}/s achieved, over {:.1}s; {} reached Success",
        f.messages, f.senders, f.rate_target, f.rate_achieved, f.seconds, f.settled_success
    );
    println!(
        "{:<24}{:>9}{:>10}{:>10}{:>10}{:>10}{:>10}",
        "latency", "count", "p50", "p90", "p99", "p99.9", "max"
    );
    let ms = |us: u64| format!("{:.3}ms", us as f64 / 1000.0);
    for r in &f.latencies_us {
        println!(
            "{:<24}{:>9}{:>10}{:>10}{:>10}{:>10}{:>10}",
            r.metric,
            r.count,
            ms(r.p50),
            ms(r.p90),
            ms(r.p99),
            ms(r.p999),
            ms(r.max)
        );
    }
}
