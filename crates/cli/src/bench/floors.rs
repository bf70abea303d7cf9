//! The floors: what the same stack costs with nothing of chatsync in it.
//!
//! - A bare WebSocket echo over loopback: an axum WebSocket echo server
//!   (the server's stack) on its own runtime and threads, and a
//!   tokio-tungstenite client (the client library's stack); round trip
//!   percentiles one at a time, and messages/s pipelined.
//! - A bare SQLite append with fsync on the same disk as the run (WAL,
//!   `synchronous=FULL`, like the server): single-row commits and rows in
//!   batches.

use super::lite;
use super::report::{per_sec, Report, Table};
use super::stats::{rate, Lat, LatHist};
use super::{CancelOnDrop, Ctx};
use crate::output::outln;
use anyhow::Context;
use axum::extract::ws::{Message as AxMessage, WebSocket, WebSocketUpgrade};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Semaphore};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// Figures of the floors.
#[derive(Serialize)]
struct Floors {
    ws_echo: WsEcho,
    sqlite: SqliteFloor,
}

#[derive(Serialize)]
struct WsEcho {
    /// One message at a time: send, wait for the echo.
    round_trip: Lat,
    /// Pipelined on one connection with `window` messages outstanding.
    pipelined_msgs_per_s: f64,
    window: usize,
    messages: usize,
    mean_frame_bytes: f64,
}

#[derive(Serialize)]
struct SqliteFloor {
    /// Single-row insert, one commit (one fsync of the WAL) each.
    single_commit: Lat,
    commits_per_s: f64,
    /// Rows per second in transactions of `batch` rows.
    batch: usize,
    batched_rows_per_s: f64,
    batch_commit: Lat,
    path: String,
}

/// Runs both floors and adds them to the report.
pub async fn run(ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    let ws = ws_echo(ctx).await.context("WebSocket echo floor")?;
    let sqlite = sqlite_floor(ctx).await.context("SQLite floor")?;

    let mut t = Table::new(
        "floors (same machine, same run)",
        &["floor", "count", "p50", "p90", "p99", "p99.9", "max"],
    );
    t.lat_row("WebSocket echo round trip", &ws.round_trip);
    t.lat_row("SQLite commit (1 row, fsync)", &sqlite.single_commit);
    t.lat_row(
        &format!("SQLite commit ({} rows, fsync)", sqlite.batch),
        &sqlite.batch_commit,
    );
    t.print()?;
    let mut r = Table::new("floor throughput", &["floor", "rate"]);
    r.row(vec![
        format!("WebSocket echo, pipelined (window {})", ws.window),
        per_sec(ws.pipelined_msgs_per_s),
    ]);
    r.row(vec![
        "SQLite single-row commits".into(),
        per_sec(sqlite.commits_per_s),
    ]);
    r.row(vec![
        format!("SQLite rows in batches of {}", sqlite.batch),
        per_sec(sqlite.batched_rows_per_s),
    ]);
    r.print()?;
    outln!(
        "(echo frames average {:.0} bytes; the first 5% of round trips warm up and are not counted; \
         SQLite file on the same disk as the run's temporary directory)",
        ws.mean_frame_bytes,
    )?;

    report.key.ws_rtt_p50_us = Some(ws.round_trip.p50_us);
    report.key.ws_rtt_p99_us = Some(ws.round_trip.p99_us);
    report.key.ws_msgs_per_s = Some(ws.pipelined_msgs_per_s);
    report.key.fsync_commit_p50_us = Some(sqlite.single_commit.p50_us);
    report.key.sqlite_commits_per_s = Some(sqlite.commits_per_s);
    report.key.sqlite_rows_per_s = Some(sqlite.batched_rows_per_s);
    report.add(
        "floors",
        Floors {
            ws_echo: ws,
            sqlite,
        },
    );
    Ok(())
}

/// A WebSocket echo server on its own thread and runtime.
struct EchoServer {
    addr: String,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EchoServer {
    fn start() -> anyhow::Result<EchoServer> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?.to_string();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("bench-echo".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        eprintln!("echo server: no runtime: {e}");
                        return;
                    }
                };
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            eprintln!("echo server: {e}");
                            return;
                        }
                    };
                    let app = axum::Router::new().route(
                        "/echo",
                        axum::routing::get(
                            |ws: WebSocketUpgrade| async move { ws.on_upgrade(echo) },
                        ),
                    );
                    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                        let _ = tcp.set_nodelay(true);
                    });
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(async move {
                            let _ = stopped.await;
                        })
                        .await;
                });
            })?;
        Ok(EchoServer {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        // The runtime ends when its thread returns; don't block on it
        // (upgraded sockets may linger until their peers close).
        drop(self.thread.take());
    }
}

async fn echo(mut socket: WebSocket) {
    while let Some(Ok(msg)) = socket.recv().await {
        let echo = matches!(msg, AxMessage::Text(_) | AxMessage::Binary(_));
        let close = matches!(msg, AxMessage::Close(_));
        if close || (echo && socket.send(msg).await.is_err()) {
            break;
        }
    }
}

/// Distinct frames the echo floor encodes up front and then cycles through
/// (a long run does not hold every frame in memory).
const ECHO_FRAMES: usize = 10_000;

/// Frames shaped like the real `send` frames of the run.
fn frames(ctx: &Ctx, n: usize) -> Vec<String> {
    let conv = chatsync_protocol::ConversationId::new();
    (0..n)
        .map(|i| {
            chatsync_protocol::encode(&chatsync_protocol::ClientFrame::Send {
                id: chatsync_protocol::MessageId::new(),
                conversation: conv,
                body: ctx.body(i).to_string(),
                action: None,
            })
        })
        .collect()
}

async fn ws_echo(ctx: &Ctx) -> anyhow::Result<WsEcho> {
    let server = EchoServer::start()?;
    let n = ctx.args.echo_messages.max(10);
    let texts = frames(ctx, n.min(ECHO_FRAMES));
    let mean_frame_bytes = texts.iter().map(String::len).sum::<usize>() as f64 / texts.len() as f64;
    // Cloned per message without copying the text.
    let texts: Arc<[Utf8Bytes]> = texts.into_iter().map(Utf8Bytes::from).collect();
    let bar = ctx.bar(2 * n as u64, "floor: WebSocket echo");

    // One at a time.
    let mut ws = lite::connect_path(&server.addr, "/echo", None).await?;
    let mut hist = LatHist::new();
    for i in 0..n {
        let t0 = Instant::now();
        ws.send(Message::text(texts[i % texts.len()].clone()))
            .await?;
        loop {
            match ws.next().await.context("echo server closed")?? {
                Message::Text(_) => break,
                _ => continue,
            }
        }
        if i >= n / 20 {
            // The first 5% warm up caches and the allocator.
            hist.record(t0.elapsed());
        }
        bar.inc(1);
    }
    let _ = ws.close(None).await;

    // Pipelined: a window of messages outstanding on one connection.
    let window = ctx.args.window;
    let ws = lite::connect_path(&server.addr, "/echo", None).await?;
    let (mut tx, mut rx) = ws.split();
    let permits = Arc::new(Semaphore::new(window));
    let start = Instant::now();
    let p = permits.clone();
    let writer = tokio::spawn(async move {
        for i in 0..n {
            p.acquire().await?.forget();
            tx.send(Message::text(texts[i % texts.len()].clone()))
                .await?;
        }
        anyhow::Ok(tx)
    });
    let mut got = 0;
    while got < n {
        match tokio::time::timeout(Duration::from_secs(30), rx.next()).await {
            Ok(Some(Ok(Message::Text(_)))) => {
                got += 1;
                permits.add_permits(1);
                bar.inc(1);
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => return Err(e.into()),
            Ok(None) | Err(_) => anyhow::bail!("echo stalled after {got} of {n}"),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let mut tx = writer.await??;
    let _ = tx.close().await;
    bar.finish_and_clear();
    drop(server);
    Ok(WsEcho {
        round_trip: hist.summary(),
        pipelined_msgs_per_s: rate(n as f64, secs),
        window,
        messages: n,
        mean_frame_bytes,
    })
}

async fn sqlite_floor(ctx: &Ctx) -> anyhow::Result<SqliteFloor> {
    let dir = ctx.tmp.join("floor-sqlite");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("floor.sqlite3");
    let commits = ctx.args.sqlite_commits.max(10);
    let batches = ctx.args.sqlite_batches.max(2);
    let batch = ctx.args.sqlite_batch;
    let bodies = ctx.bodies();
    let bar = ctx.bar((commits + batches) as u64, "floor: SQLite fsync");
    let p = path.clone();
    let b = bar.clone();
    let (_stop, cancelled) = CancelOnDrop::new();
    let (single, commits_per_s, batch_hist, rows_per_s) =
        tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let conn = rusqlite::Connection::open(&p)?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "FULL")?;
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS log (seq INTEGER PRIMARY KEY, body TEXT NOT NULL)",
            )?;
            let mut single = LatHist::new();
            let start = Instant::now();
            for body in bodies.iter().cycle().take(commits) {
                cancelled.check()?;
                let t0 = Instant::now();
                conn.execute("INSERT INTO log (body) VALUES (?1)", [body])?;
                single.record(t0.elapsed());
                b.inc(1);
            }
            let commits_per_s = rate(commits as f64, start.elapsed().as_secs_f64());
            let mut batch_hist = LatHist::new();
            let start = Instant::now();
            let mut conn = conn;
            for _ in 0..batches {
                let t0 = Instant::now();
                let tx = conn.transaction()?;
                {
                    let mut st = tx.prepare_cached("INSERT INTO log (body) VALUES (?1)")?;
                    for (k, body) in bodies.iter().cycle().take(batch).enumerate() {
                        if k % 1024 == 0 {
                            cancelled.check()?;
                        }
                        st.execute([body])?;
                    }
                }
                tx.commit()?;
                batch_hist.record(t0.elapsed());
                b.inc(1);
            }
            let rows_per_s = rate((batches * batch) as f64, start.elapsed().as_secs_f64());
            Ok((single, commits_per_s, batch_hist, rows_per_s))
        })
        .await??;
    bar.finish_and_clear();
    Ok(SqliteFloor {
        single_commit: single.summary(),
        commits_per_s,
        batch,
        batched_rows_per_s: rows_per_s,
        batch_commit: batch_hist.summary(),
        path: path.display().to_string(),
    })
}
