//! Connections: many concurrent authenticated connections, idle but for a
//! protocol `ping` every `--ping-interval` seconds. They are protocol-level
//! clients (raw tokio-tungstenite: `hello`, then idle), spread over several
//! loopback source addresses (127.0.0.2, 127.0.0.3, …) so that one
//! address's ephemeral ports do not run out. Reports the server's RSS and
//! its growth per connection.

use super::lite;
use super::report::{thousands, Report, Table};
use super::server::{BenchServer, Seeder};
use super::stats::{self, ProcWatch};
use super::Ctx;
use crate::output::outln;
use chatsync_protocol::ClientFrame;
use futures_util::StreamExt;
use serde::Serialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Connections opened per account (the seeded sessions are shared).
const PER_ACCOUNT: usize = 500;
/// Ephemeral ports used per source address, well below the usual range
/// (32768–60999), which ports still in TIME_WAIT also draw on.
const PORTS_PER_SOURCE: usize = 5_000;
/// Handshakes in progress at once.
const CONCURRENT_HANDSHAKES: usize = 128;

#[derive(Serialize)]
struct Figures {
    target: usize,
    /// Why fewer connections than asked were opened, if so.
    capped_by: Option<String>,
    /// Server RSS projected for the target count from the measured growth
    /// per connection (when capped).
    projected_rss_mib_at_target: Option<f64>,
    connected: usize,
    failed: usize,
    first_error: Option<String>,
    dropped_while_held: usize,
    source_addresses: usize,
    accounts: usize,
    ping_interval_s: u64,
    connect_seconds: f64,
    server_rss_idle_mib: f64,
    server_rss_connected_mib: f64,
    bytes_per_connection: f64,
    /// Memory of this (client) process per connection, for scale.
    bench_bytes_per_connection: f64,
    nofile_limit: u64,
    server_cpu_percent_while_held: Option<f64>,
}

/// Raises this process's open-file limit to at least `want` (soft and, when
/// allowed, hard). Child processes started afterwards inherit it, the
/// server included. Returns the soft limit in force.
pub fn raise_nofile(want: u64) -> u64 {
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((1024, 1024));
    if soft >= want {
        return soft;
    }
    // Raising the hard limit needs privilege; fall back to the hard limit.
    if rlimit::setrlimit(rlimit::Resource::NOFILE, want, want.max(hard)).is_ok() {
        return want;
    }
    rlimit::increase_nofile_limit(want).unwrap_or(soft)
}

/// Runs the connections suite.
pub async fn run(ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    let a = &ctx.args;
    let target = a.connections;
    let limit = raise_nofile(target as u64 + 4096);
    // The server child inherits the same limit; both sides need one
    // descriptor per connection plus their own files.
    let room = limit.saturating_sub(1024) as usize;
    anyhow::ensure!(room > 0, "the open-file limit is only {limit}");
    let n = target.min(room);
    let capped_by = (n < target).then(|| {
        format!(
            "capped from {target} to {n} connections: the hard open-file limit is {limit} and cannot be raised here (no CAP_SYS_RESOURCE; `ulimit -Hn`)"
        )
    });
    if let Some(why) = &capped_by {
        outln!()?;
        outln!("note: {why}")?;
    }
    let accounts = n.div_ceil(PER_ACCOUNT);
    let dir = ctx.tmp.join("server-connections");
    let users = Seeder::open(&dir)?.users("conn", accounts)?;
    let per_user = PER_ACCOUNT.to_string();
    let idle = (a.ping_interval * 4).max(120).to_string();
    let server = BenchServer::start(
        &dir,
        &[
            "--max-connections-per-user",
            &per_user,
            "--idle-timeout",
            &idle,
        ],
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss0 = server.rss().unwrap_or(0);
    let me = std::process::id();
    let bench_rss0 = stats::rss_bytes(me).unwrap_or(0);
    let spread = n.div_ceil(PORTS_PER_SOURCE);

    let bar = ctx.bar(n as u64, "connections: connecting");
    let gate = Arc::new(Semaphore::new(CONCURRENT_HANDSHAKES));
    let alive = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));
    let ping = Duration::from_secs(a.ping_interval.max(1));
    let start = Instant::now();
    let mut handles = Vec::with_capacity(n);
    let (err_tx, mut err_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    for i in 0..n {
        let token = users[i / PER_ACCOUNT].token.clone();
        let addr = server.addr.clone();
        let source = lite::source_addr(i, spread);
        let (gate, alive, dropped, bar, err_tx) = (
            gate.clone(),
            alive.clone(),
            dropped.clone(),
            bar.clone(),
            err_tx.clone(),
        );
        handles.push(tokio::spawn(async move {
            let ws = {
                let Ok(_permit) = gate.acquire().await else {
                    return;
                };
                match lite::connect(&addr, &token, source).await {
                    Ok(ws) => ws,
                    Err(e) => {
                        let _ = err_tx.send(format!("{e:#}"));
                        bar.inc(1);
                        return;
                    }
                }
            };
            alive.fetch_add(1, Ordering::Relaxed);
            bar.inc(1);
            idle_loop(ws, ping, i as u64).await;
            alive.fetch_sub(1, Ordering::Relaxed);
            dropped.fetch_add(1, Ordering::Relaxed);
        }));
    }
    drop(err_tx);
    // Wait until every attempt finished (connected or failed).
    let mut failed = 0;
    let mut first_error = None;
    loop {
        while let Ok(e) = err_rx.try_recv() {
            failed += 1;
            first_error.get_or_insert(e);
        }
        if alive.load(Ordering::Relaxed) + failed + dropped.load(Ordering::Relaxed) >= n {
            break;
        }
        if start.elapsed() > Duration::from_secs(600) {
            eprintln!("connections: gave up waiting after 600 s");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connect_seconds = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let connected = alive.load(Ordering::Relaxed);
    let drop_before = dropped.load(Ordering::Relaxed);
    let watch = ProcWatch::start(server.pid);
    tokio::time::sleep(Duration::from_secs(a.hold)).await;
    let rss1 = server.rss().unwrap_or(0);
    let bench_rss1 = stats::rss_bytes(me).unwrap_or(0);
    let held = watch.finish();
    let dropped_while_held = dropped.load(Ordering::Relaxed) - drop_before;
    for h in &handles {
        h.abort();
    }
    server.stop().await;

    let per = |a: u64, b: u64| {
        if connected > 0 {
            (b.saturating_sub(a)) as f64 / connected as f64
        } else {
            0.0
        }
    };
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let bytes_per_connection = per(rss0, rss1);
    let figures = Figures {
        target,
        projected_rss_mib_at_target: capped_by
            .as_ref()
            .map(|_| mib(rss0) + bytes_per_connection * target as f64 / (1024.0 * 1024.0)),
        capped_by,
        connected,
        failed,
        first_error,
        dropped_while_held,
        source_addresses: spread,
        accounts,
        ping_interval_s: a.ping_interval,
        connect_seconds,
        server_rss_idle_mib: mib(rss0),
        server_rss_connected_mib: mib(rss1),
        bytes_per_connection,
        bench_bytes_per_connection: per(bench_rss0, bench_rss1),
        nofile_limit: limit,
        server_cpu_percent_while_held: held.map(|h| h.cpu_percent),
    };
    let mut t = Table::new(
        format!(
            "connections: {} idle authenticated connections (protocol-level, ping every {} s, {} source addresses, {} accounts)",
            thousands(n as u64),
            a.ping_interval,
            spread,
            accounts
        ),
        &["figure", "value"],
    );
    t.row(vec!["connected".into(), thousands(connected as u64)]);
    t.row(vec!["failed".into(), failed.to_string()]);
    t.row(vec![
        "dropped while held".into(),
        dropped_while_held.to_string(),
    ]);
    t.row(vec![
        "time to connect all".into(),
        format!("{connect_seconds:.1}s"),
    ]);
    t.row(vec![
        "server RSS idle → connected".into(),
        format!(
            "{:.1} MiB → {:.1} MiB",
            figures.server_rss_idle_mib, figures.server_rss_connected_mib
        ),
    ]);
    t.row(vec![
        "server bytes per connection".into(),
        thousands(figures.bytes_per_connection as u64),
    ]);
    t.row(vec![
        "bench (client side) bytes per connection".into(),
        thousands(figures.bench_bytes_per_connection as u64),
    ]);
    if let Some(p) = figures.projected_rss_mib_at_target {
        t.row(vec![
            format!("server RSS projected at {}", thousands(target as u64)),
            format!("{p:.0} MiB"),
        ]);
    }
    if let Some(c) = figures.server_cpu_percent_while_held {
        t.row(vec!["server CPU while held".into(), format!("{c:.1}%")]);
    }
    t.print()?;
    if let Some(e) = &figures.first_error {
        outln!("first connection error: {e}")?;
    }
    report.key.connections = Some(connected as f64);
    report.key.connections_rss_mib = Some(figures.server_rss_connected_mib);
    report.key.bytes_per_connection = Some(figures.bytes_per_connection);
    report.key.connections_target = Some(target as f64);
    report.key.connections_projected_rss_mib = figures.projected_rss_mib_at_target;
    report.add("connections", figures);
    Ok(())
}

/// Holds a connection: a protocol `ping` every `every` (staggered by
/// `salt`), answers read and dropped. Returns when the server closes it.
async fn idle_loop(ws: lite::Ws, every: Duration, salt: u64) {
    let (mut sink, mut stream) = ws.split();
    let stagger = Duration::from_millis(salt % every.as_millis().max(1) as u64);
    let mut tick = tokio::time::interval_at((Instant::now() + stagger + every).into(), every);
    let mut nonce = salt << 20;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                nonce += 1;
                if lite::send(&mut sink, &ClientFrame::Ping { nonce }).await.is_err() {
                    return;
                }
            }
            msg = stream.next() => {
                match msg {
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return,
                }
            }
        }
    }
}
