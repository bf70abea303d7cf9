//! `chatsync demo`: replays real conversations through an embedded server
//! and one client per sender, drops every connection once and restarts the
//! server once, then checks the invariants and reports latencies.

mod report;
mod server;
pub(crate) mod transcript;

use crate::output::{glyph, outln};
use crate::trace::Recorder;
use anyhow::Context;
use chatsync_client::core::Config;
use chatsync_client::{Client, Status};
use chatsync_protocol::ConversationId;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Arguments of `demo`.
#[derive(clap::Args)]
pub struct Args {
    /// A transcript in the chitchat dataset's shape (default: the excerpt
    /// shipped with chatsync, 11 conversations, 335 messages).
    #[arg(long)]
    transcript: Option<PathBuf>,
    /// Replay at most this many conversations of the transcript.
    #[arg(long)]
    conversations: Option<usize>,
    /// How many times faster than the people typed.
    #[arg(long, default_value_t = 30.0)]
    speed: f64,
    /// Longest pause between two messages of a conversation, in ms.
    #[arg(long, default_value_t = 400)]
    max_gap_ms: u64,
    /// Skip the dropped connections and the server restart.
    #[arg(long)]
    no_faults: bool,
    /// Print only progress lines, not every message as it settles.
    #[arg(long, short)]
    quiet: bool,
    /// Seconds to wait for every message to settle after the replay.
    #[arg(long, default_value_t = 60)]
    settle_timeout: u64,
    /// Keep the data directory (printed) instead of deleting it.
    #[arg(long)]
    keep: bool,
}

pub use crate::verify::Sent;

const PASSWORD: &str = "demo-password";
/// Longest `--settle-timeout` accepted (a day).
const MAX_SETTLE_SECS: u64 = 86_400;

/// Runs the demo.
pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        a.speed.is_finite() && a.speed >= 0.01,
        "--speed must be a number of at least 0.01, not {}",
        a.speed
    );
    anyhow::ensure!(
        a.conversations != Some(0),
        "--conversations must be at least 1"
    );
    anyhow::ensure!(
        a.settle_timeout <= MAX_SETTLE_SECS,
        "--settle-timeout must be at most {MAX_SETTLE_SECS} seconds, not {}",
        a.settle_timeout
    );
    let scripts = transcript::load(a.transcript.as_deref(), a.conversations)?;
    let tmp = tempfile::Builder::new()
        .prefix("chatsync-demo-")
        .tempdir()
        .context("cannot create a temporary directory (set TMPDIR to a writable one)")?;
    let mut stop = crate::stop_signals::StopSignals::listen()?;
    // The server lives out here, so that it is stopped (and done with its
    // files) however the replay ends, a Ctrl-C included.
    let mut server = None;
    let stopped_by = tokio::select! {
        result = replay(&a, scripts, tmp.path(), &mut server) => Ok(result),
        stopped = stop.recv() => Err(stopped),
    };
    if let Some(srv) = server.take() {
        let _ = srv.stop().await;
    }
    let result = match stopped_by {
        Ok(result) => result,
        Err((how, code)) => {
            eprintln!("demo: {how}; removing {}", tmp.path().display());
            remove_when_quiet(tmp).await;
            return Ok(ExitCode::from(code));
        }
    };
    match result {
        Ok(code) => {
            if a.keep {
                let kept = tmp.keep();
                outln!("data kept in {}", kept.display())?;
            }
            Ok(code)
        }
        Err(e) => {
            remove_when_quiet(tmp).await;
            Err(e)
        }
    }
}

/// Removes the data of a demo that stopped early. The server and the
/// clients were dropped mid-run: their threads may still be closing their
/// SQLite files for a moment, and a file they create during the removal
/// would make it fail; so it is retried for up to a second.
async fn remove_when_quiet(tmp: tempfile::TempDir) {
    let path = tmp.keep();
    for _ in 0..20 {
        match std::fs::remove_dir_all(&path) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    eprintln!("warning: could not remove {}", path.display());
}

/// The demo proper, with its data in `root`; the server it starts is kept
/// in `server` while it runs.
async fn replay(
    a: &Args,
    scripts: Vec<transcript::Script>,
    root: &std::path::Path,
    server: &mut Option<server::Embedded>,
) -> anyhow::Result<ExitCode> {
    let total: usize = scripts.iter().map(|s| s.lines.len()).sum();
    let root = root.to_path_buf();
    let started = Instant::now();
    outln!(
        "chatsync demo: {} conversations, {total} messages, data in {}",
        scripts.len(),
        root.display()
    )?;

    let srv =
        server.insert(server::Embedded::start(&root.join("server"), "127.0.0.1:0".parse()?).await?);
    let addr = srv.addr.to_string();
    outln!("server listening on ws://{addr}")?;

    // One account and one client (own storage) per sender of the transcript.
    let mut names: HashMap<String, String> = HashMap::new();
    for s in &scripts {
        for sender in s.senders() {
            let n = names.len() + 1;
            names.entry(sender).or_insert_with(|| format!("user{n:02}"));
        }
    }
    let mut clients: HashMap<String, Client> = HashMap::new();
    let config = Config {
        reconnect_base: Duration::from_millis(50),
        reconnect_cap: Duration::from_millis(1000),
        ..Config::default()
    };
    let mut users: Vec<&String> = names.values().collect();
    users.sort();
    for name in users {
        chatsync_client::register(&addr, name, PASSWORD)
            .await
            .with_context(|| format!("register {name}"))?;
        let client = Client::login_with(
            &root.join("clients").join(name),
            &addr,
            name,
            PASSWORD,
            "demo",
            Config {
                seed: clients.len() as u64 + 1,
                ..config.clone()
            },
        )
        .await
        .with_context(|| format!("log in {name}"))?;
        client.wait_connected(Duration::from_secs(10)).await?;
        clients.insert(name.clone(), client);
    }
    outln!(
        "{} clients logged in, each with its own SQLite storage",
        clients.len()
    )?;

    // Conversations, created by their first speaker.
    let mut convs = Vec::new();
    for (i, s) in scripts.iter().enumerate() {
        let senders: Vec<String> = s.senders().iter().map(|x| names[x].clone()).collect();
        let others: Vec<&str> = senders[1..].iter().map(String::as_str).collect();
        let info = clients[&senders[0]]
            .create_conversation(&format!("chat-{:02}", i + 1), &others)
            .await?;
        convs.push((info.id, senders));
    }
    for (id, members) in &convs {
        for m in members {
            wait_known(&clients[m], *id).await?;
        }
    }

    // Every member subscribes; the sender's own changes are recorded.
    let recorder = Recorder::default();
    let settled = Arc::new(AtomicUsize::new(0));
    for (id, members) in &convs {
        for m in members {
            let mut timeline = clients[m].subscribe(*id, 0).await?;
            let rec = recorder.clone();
            let settled = settled.clone();
            let verbose = !a.quiet;
            tokio::spawn(async move {
                while let Some(change) = timeline.changes.recv().await {
                    if let Some((msg, status)) = rec.own_change(&change) {
                        if matches!(status, Status::Success | Status::Failed) {
                            // (Read comes later, once the recipient reads.)
                            settled.fetch_add(1, Ordering::Relaxed);
                            if verbose {
                                let t = rec.with(msg, |t| t.clone());
                                let _ = outln!("  {} {}", glyph(status), report::trace_line(&t));
                            }
                        }
                    }
                }
            });
        }
    }

    // The replay: one task per conversation, each line sent by its
    // sender's client at the (accelerated) pace it was typed.
    let schedule_len = scripts
        .iter()
        .map(|s| {
            replay_offsets(s, a.speed, a.max_gap_ms)
                .last()
                .copied()
                .unwrap_or_default()
        })
        .max()
        .unwrap_or_default();
    outln!(
        "replaying for about {:.1}s ({}x speed){}",
        schedule_len.as_secs_f64(),
        a.speed,
        if a.no_faults {
            String::new()
        } else {
            format!(
                "; every connection drops at {:.1}s and the server restarts at {:.1}s",
                (schedule_len / 3).as_secs_f64(),
                (schedule_len * 2 / 3).as_secs_f64()
            )
        }
    )?;
    let replay_start = Instant::now();
    let sent: Arc<std::sync::Mutex<Vec<Sent>>> = Arc::default();
    let mut tasks = Vec::new();
    for (script, (conv, _)) in scripts.iter().zip(&convs) {
        let offsets = replay_offsets(script, a.speed, a.max_gap_ms);
        let lines: Vec<(Duration, Client, String, String)> = script
            .lines
            .iter()
            .zip(offsets)
            .map(|(l, at)| {
                let name = names[&l.sender].clone();
                (at, clients[&name].clone(), name, l.text.clone())
            })
            .collect();
        let conv = *conv;
        let rec = recorder.clone();
        let sent = sent.clone();
        tasks.push(tokio::spawn(async move {
            for (at, client, name, body) in lines {
                tokio::time::sleep_until((replay_start + at).into()).await;
                let t0 = Instant::now();
                let id = client.send(conv, body.clone()).await?;
                let t1 = Instant::now();
                rec.with(id, |t| {
                    t.started = Some(t0);
                    t.durable = Some(t1);
                });
                sent.lock().unwrap_or_else(|p| p.into_inner()).push(Sent {
                    id,
                    conversation: conv,
                    sender: name,
                    body,
                });
            }
            anyhow::Ok(())
        }));
    }

    // Faults and a progress line while the replay runs.
    let mut dropped = a.no_faults;
    let mut restarted = a.no_faults;
    let mut last_progress = Instant::now();
    while tasks.iter().any(|t| !t.is_finished()) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let elapsed = replay_start.elapsed();
        if !dropped && elapsed >= schedule_len / 3 {
            dropped = true;
            for c in clients.values() {
                c.drop_connection().await?;
            }
            outln!(
                "[{:>5.1}s] ✂ dropped all {} connections",
                elapsed.as_secs_f64(),
                clients.len()
            )?;
        }
        if !restarted && elapsed >= schedule_len * 2 / 3 {
            restarted = true;
            outln!("[{:>5.1}s] ⟳ stopping the server", elapsed.as_secs_f64())?;
            let srv = server.take().context("the server is running")?;
            *server = Some(srv.restart().await?);
            outln!(
                "[{:>5.1}s] ⟳ server is back on the same address and data",
                replay_start.elapsed().as_secs_f64()
            )?;
        }
        if last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            progress(&recorder, elapsed, total)?;
        }
    }
    for t in tasks {
        t.await.context("replay task")??;
    }
    outln!(
        "[{:>5.1}s] all {total} messages sent; waiting for every status to settle",
        replay_start.elapsed().as_secs_f64()
    )?;
    let deadline = Instant::now() + Duration::from_secs(a.settle_timeout);
    while settled.load(Ordering::Relaxed) < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    progress(&recorder, replay_start.elapsed(), total)?;

    // Let the last delivery acknowledgements land, then compare every
    // device's storage with the server's.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = sent.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut member_views = Vec::new();
    for (conv, members) in &convs {
        for m in members {
            let items = clients[m].page(*conv, None, usize::MAX >> 1).await?;
            member_views.push((m.clone(), *conv, items));
        }
    }
    drop(clients);
    if let Some(srv) = server.take() {
        srv.stop().await?;
    }
    let store = chatsync_server::open_store(&root.join("server"))?;
    let conv_ids: Vec<ConversationId> = convs.iter().map(|(c, _)| *c).collect();
    let outcome = report::check(
        &store,
        &conv_ids,
        &sent,
        &member_views,
        &recorder.snapshot(),
    )?;
    report::print(&outcome, started.elapsed())?;
    Ok(if outcome.violations() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// When each line of a script is sent, from the start of the replay.
fn replay_offsets(script: &transcript::Script, speed: f64, max_gap_ms: u64) -> Vec<Duration> {
    let max_gap = Duration::from_millis(max_gap_ms);
    let mut at = Duration::ZERO;
    let mut prev = 0.0;
    script
        .lines
        .iter()
        .map(|l| {
            let gap = Duration::from_secs_f64(((l.at - prev) / speed.max(0.001)).max(0.0));
            prev = l.at;
            at += gap.min(max_gap);
            at
        })
        .collect()
}

async fn wait_known(client: &Client, conv: ConversationId) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if client.conversations().await?.iter().any(|c| c.id == conv) {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} never learnt conversation {conv}",
            client.username()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn progress(rec: &Recorder, elapsed: Duration, total: usize) -> anyhow::Result<()> {
    let traces = rec.snapshot();
    let mut counts = [0usize; 4];
    for t in traces.values() {
        let i = match t.statuses.last() {
            Some(Status::Sending) | None => 0,
            Some(Status::InFlight) => 1,
            Some(Status::Success | Status::Read) => 2,
            Some(Status::Failed) => 3,
        };
        counts[i] += 1;
    }
    outln!(
        "[{:>5.1}s] sent {:>4}/{total}   {} {:>4}   {} {:>4}   {} {:>4}   {} {}",
        elapsed.as_secs_f64(),
        traces.len(),
        glyph(Status::Sending),
        counts[0],
        glyph(Status::InFlight),
        counts[1],
        glyph(Status::Success),
        counts[2],
        glyph(Status::Failed),
        counts[3],
    )
}
