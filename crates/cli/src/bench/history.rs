//! Scale of history: `send` latency and timeline paging with a large
//! server store and a large client store, against the same figures with
//! empty stores, in the same run.
//!
//! Two `chatsync server` processes and two real client library instances
//! (each with its own SQLite client storage) take part:
//!
//! * **empty**: a fresh server store and a fresh client store. They only
//!   ever hold the conversation of the measurement and the messages the
//!   suite itself sends in it.
//! * **full**: a server store filled to `--history-server` messages and a
//!   client store holding `--history-client` of them.
//!
//! How the full stores are filled (honest, and fast enough for a run):
//!
//! 1. The server is stopped, and its SQLite file is written through the
//!    server crate's own store, [`chatsync_server::SqliteStore`]: every
//!    message is a [`WriteOp::Append`] given to `apply_batch` (the
//!    committer's own path: dedup, seq assignment, indexes), in
//!    transactions of [`FILL_BATCH`] appends. The client's conversation
//!    gets `--history-client` of them, from its other member, spread evenly
//!    through the fill; the rest go round-robin to
//!    `--history-conversations` other two-member conversations.
//! 2. The server is started again on the same file and address, and the
//!    client library reopens its store: it catches up the
//!    `--history-client` messages through the real protocol (`sync` /
//!    `batch`), which is the catch-up path, timed as well.
//!
//! Then both sides are measured **interleaved**, in rounds that alternate
//! which side goes first, so that the load of a shared machine weighs on
//! both alike, with both clients reopened on one current-thread runtime so
//! that both pay the same task hand-offs (see [`measure_on_one_thread`]):
//!
//! * open-loop `send` at `--history-rate`: the durable insert (`send`
//!   returning) and send → In-Flight (the server's durable ack, seen by the
//!   sender's subscription);
//! * timeline paging through the public API the terminal client uses,
//!   [`Client::page`]: the newest 50 items, and 50 items before a random
//!   point deep in the history.

use super::report::{per_sec, thousands, Report, Table};
use super::server::{bench_client, BenchServer, Seeder};
use super::stats::{rate, Lat, LatHist, ProcFigures, ProcWatch};
use super::{CancelOnDrop, Cancelled, Ctx};
use crate::output::outln;
use crate::trace::Recorder;
use anyhow::Context;
use chatsync_client::core::Config;
use chatsync_client::Client;
use chatsync_protocol::{ConversationId, MessageId, Seq, UserId};
use chatsync_server::store::{WriteOp, WriteOutcome};
use chatsync_server::ServerStore;
use indicatif::ProgressBar;
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Appends per transaction while filling the server store.
pub const FILL_BATCH: usize = 10_000;
/// Items per timeline page, as in the goal.
pub const PAGE: usize = 50;
/// Measurement rounds; each side sends and pages a share in each.
const ROUNDS: usize = 10;
/// Longest wait for a round's messages to reach In-Flight.
const SETTLE: Duration = Duration::from_secs(30);
/// The goal: each figure with full stores within this factor of empty.
const GOAL_RATIO: f64 = 1.10;

#[derive(Serialize)]
struct Figures {
    server_messages: u64,
    client_messages: u64,
    other_conversations: usize,
    fill: Fill,
    catch_up: CatchUp,
    open_loop_rate: f64,
    empty: SideFigures,
    full: SideFigures,
    /// Full over empty, per figure: (figure, p50 ratio, p99 ratio).
    ratios: Vec<Ratio>,
    method: &'static str,
}

#[derive(Serialize)]
struct Fill {
    seconds: f64,
    appends_per_s: f64,
    batch: usize,
    server_file_mib: f64,
}

#[derive(Serialize)]
struct CatchUp {
    messages: u64,
    seconds: f64,
    msgs_per_s: f64,
    server_start_seconds: f64,
    server: Option<ProcFigures>,
    client_process_cpu_percent: Option<f64>,
    client_file_mib: f64,
}

#[derive(Serialize, Default)]
struct SideFigures {
    send: Lat,
    in_flight: Lat,
    page_newest: Lat,
    page_deep: Lat,
    send_errors: usize,
    not_in_flight: usize,
    short_pages: usize,
    messages_in_conversation: u64,
}

#[derive(Serialize, Clone)]
struct Ratio {
    figure: &'static str,
    p50: f64,
    p99: f64,
}

/// One side of the comparison: a client, its conversation, and what it
/// measured.
struct Side {
    client: Client,
    conv: ConversationId,
    recorder: Recorder,
    sent: Vec<MessageId>,
    send: LatHist,
    newest: LatHist,
    deep: LatHist,
    send_errors: usize,
    short_pages: usize,
}

/// Runs the history-scale suite.
pub async fn run(ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    let a = &ctx.args;
    let n_server = a.history_server as u64;
    let n_client = a.history_client as u64;
    let config = Config {
        reconnect_base: Duration::from_millis(50),
        reconnect_cap: Duration::from_millis(1000),
        ..Config::default()
    };
    let pid = std::process::id();

    // Both server stores get the other member of the measured conversation;
    // the full one also the members of the other conversations.
    let empty_dir = ctx.tmp.join("server-history-empty");
    let full_dir = ctx.tmp.join("server-history-full");
    let empty_writer = Seeder::open(&empty_dir)?
        .users("histwe", 1)?
        .pop()
        .context("seeded writer")?;
    let (full_writer, others) = {
        let seeder = Seeder::open(&full_dir)?;
        let writer = seeder.users("histwf", 1)?.pop().context("seeded writer")?;
        let users = seeder.users("histo", 20)?;
        let mut others = Vec::with_capacity(a.history_conversations);
        for i in 0..a.history_conversations {
            let pair = [users[i % users.len()].id, users[(i + 1) % users.len()].id];
            others.push((seeder.conversation(&format!("other {i}"), &pair)?, pair));
        }
        (writer, others)
    };
    let empty_server = BenchServer::start(&empty_dir, &[]).await?;
    let full_server = BenchServer::start(&full_dir, &[]).await?;

    let data = |side: &str| ctx.tmp.join("clients").join(format!("history-{side}"));
    let mut login = Vec::new();
    for (side, server, writer) in [
        ("empty", &empty_server, &empty_writer),
        ("full", &full_server, &full_writer),
    ] {
        let name = format!("hist{side}{pid}");
        let client = bench_client(&server.addr, &name, &data(side), config.clone()).await?;
        let conv = client
            .create_conversation("history", &[writer.name.as_str()])
            .await?
            .id;
        login.push((client, conv));
    }
    let (full_client, full_conv) = login.pop().context("full client")?;
    let (empty_client, empty_conv) = login.pop().context("empty client")?;
    // The full side's client goes away while its server is stopped and
    // its store filled.
    drop(full_client);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let full_addr = full_server.addr.clone();
    full_server.stop().await;

    let plan = FillPlan {
        total: n_server,
        measured: (full_conv, full_writer.id),
        measured_count: n_client,
        others,
        bodies: (0..1000).map(|i| ctx.body(i).to_string()).collect(),
    };
    let bar = ctx.bar(n_server, "history: filling the server store");
    let t0 = Instant::now();
    let path = full_dir.clone();
    let b2 = bar.clone();
    // An interrupted run drops this future: the guard then stops the fill
    // at its next batch, rather than letting it write on for minutes.
    let (_stop_fill, cancelled) = CancelOnDrop::new();
    tokio::task::spawn_blocking(move || fill_server(&path, &plan, &b2, &cancelled))
        .await
        .context("the fill task failed")??;
    let fill_secs = t0.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let fill = Fill {
        seconds: fill_secs,
        appends_per_s: rate(n_server as f64, fill_secs),
        batch: FILL_BATCH,
        server_file_mib: file_mib(&full_dir.join(chatsync_server::DATABASE_FILE)),
    };
    outln!(
        "history: server store filled with {} messages in {:.1}s ({}), {:.0} MiB",
        thousands(n_server),
        fill.seconds,
        per_sec(fill.appends_per_s),
        fill.server_file_mib
    )?;

    let t0 = Instant::now();
    let full_server = BenchServer::start_on(&full_dir, &full_addr).await?;
    let server_start_seconds = t0.elapsed().as_secs_f64();

    // The client store is filled by the real client catching up.
    let bar = ctx.bar(n_client, "history: client catching up");
    let watch = ProcWatch::start(full_server.pid);
    let me = ProcWatch::start(Some(pid));
    let t0 = Instant::now();
    let full_client = Client::open_with(&data("full"), config.clone()).await?;
    wait_cursor(&full_client, full_conv, n_client, &bar).await?;
    let catch_secs = t0.elapsed().as_secs_f64();
    let catch_up = CatchUp {
        messages: n_client,
        seconds: catch_secs,
        msgs_per_s: rate(n_client as f64, catch_secs),
        server_start_seconds,
        server: watch.finish(),
        client_process_cpu_percent: me.finish().map(|p| p.cpu_percent),
        client_file_mib: file_mib(&data("full").join(chatsync_client::DB_FILE)),
    };
    bar.finish_and_clear();
    outln!(
        "history: client store filled by catching up {} messages in {:.1}s ({})",
        thousands(n_client),
        catch_secs,
        per_sec(catch_up.msgs_per_s)
    )?;

    let messages = a.history_messages.max(ROUNDS);
    let pages = a.history_pages.max(ROUNDS);
    let bar = ctx.bar(
        (2 * (messages + 2 * pages)) as u64,
        "history: measuring (interleaved)",
    );
    // Both clients are reopened on one thread of their own (next function).
    drop(empty_client);
    drop(full_client);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let plan = MeasurePlan {
        sides: [(data("empty"), empty_conv), (data("full"), full_conv)],
        config,
        bodies: ctx.bodies(),
        messages,
        pages,
        rate: a.history_rate,
        bar: bar.clone(),
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("history-clients".into())
        .spawn(move || {
            let _ = tx.send(measure_on_one_thread(plan));
        })
        .context("starting the measuring thread")?;
    let [empty, full] = rx.await.context("the measuring thread died")??;
    bar.finish_and_clear();
    let pairs: [(&'static str, Lat, Lat); 4] = [
        ("send (durable insert)", empty.send, full.send),
        ("send → In-Flight", empty.in_flight, full.in_flight),
        ("page: newest 50", empty.page_newest, full.page_newest),
        (
            "page: 50 from deep history",
            empty.page_deep,
            full.page_deep,
        ),
    ];
    let ratios: Vec<Ratio> = pairs
        .iter()
        .map(|(figure, e, f)| Ratio {
            figure,
            p50: ratio_of(f.p50_us, e.p50_us),
            p99: ratio_of(f.p99_us, e.p99_us),
        })
        .collect();

    let mut t = Table::new(
        format!(
            "history: empty stores vs {} server / {} client messages (open loop at {:.0}/s, {} sends and {} pages of {PAGE} per kind and side, interleaved)",
            thousands(n_server),
            thousands(n_client),
            a.history_rate,
            messages,
            pages
        ),
        &[
            "figure",
            "empty p50",
            "empty p99",
            "full p50",
            "full p99",
            "full/empty p50",
            "full/empty p99",
            "p50 within 10%",
        ],
    );
    for ((name, e, f), r) in pairs.iter().zip(&ratios) {
        t.row(vec![
            name.to_string(),
            super::report::us(e.p50_us),
            super::report::us(e.p99_us),
            super::report::us(f.p50_us),
            super::report::us(f.p99_us),
            format!("{:.2}×", r.p50),
            format!("{:.2}×", r.p99),
            if r.p50 <= GOAL_RATIO { "yes" } else { "no" }.to_string(),
        ]);
    }
    t.print()?;
    outln!(
        "fill: server store through SqliteStore::apply_batch (server stopped), {} appends in {:.1}s ({}, batches of {}), {:.0} MiB; \
         client store by catching up {} messages through the protocol in {:.1}s ({}), {:.0} MiB",
        thousands(n_server),
        fill.seconds,
        per_sec(fill.appends_per_s),
        FILL_BATCH,
        fill.server_file_mib,
        thousands(n_client),
        catch_up.seconds,
        per_sec(catch_up.msgs_per_s),
        catch_up.client_file_mib
    )?;
    for (s, f) in [("empty", &empty), ("full", &full)] {
        if f.send_errors + f.not_in_flight + f.short_pages > 0 {
            outln!(
                "{s}: {} send errors, {} never In-Flight, {} short pages",
                f.send_errors,
                f.not_in_flight,
                f.short_pages
            )?;
        }
    }

    report.key.history_server_messages = Some(n_server as f64);
    report.key.history_client_messages = Some(n_client as f64);
    report.key.history_ratios = ratios.iter().map(|r| (r.figure, r.p50)).collect();
    report.add(
        "history",
        Figures {
            server_messages: n_server,
            client_messages: n_client,
            other_conversations: a.history_conversations,
            fill,
            catch_up,
            open_loop_rate: a.history_rate,
            empty,
            full,
            ratios,
            method:
                "server store filled through SqliteStore::apply_batch with the server stopped; \
                     client store filled by the real client catching up through the protocol; \
                     both sides measured interleaved in the same run",
        },
    );

    empty_server.stop().await;
    full_server.stop().await;
    Ok(())
}

/// What the measuring thread needs: each side's client data directory and
/// conversation (empty first), and the workload.
struct MeasurePlan {
    sides: [(std::path::PathBuf, ConversationId); 2],
    config: Config,
    bodies: Arc<[String]>,
    messages: usize,
    pages: usize,
    rate: f64,
    bar: ProgressBar,
}

/// Opens both clients on one current-thread runtime, on a thread of its
/// own, and measures them interleaved; returns (empty, full).
///
/// A page goes through [`Client::page`]: the caller's task hands the request
/// to the client's driver task. On a multi-thread runtime the scheduler
/// decides, once per run, whether a driver shares its worker with the
/// caller or must be woken on the other one, and that alone moved a side's
/// page p50 by tens of µs. On one thread both sides pay the same hand-offs.
fn measure_on_one_thread(plan: MeasurePlan) -> anyhow::Result<[SideFigures; 2]> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the measuring runtime")?;
    runtime.block_on(async move {
        let mut sides = Vec::with_capacity(2);
        for (dir, conv) in &plan.sides {
            let client = Client::open_with(dir, plan.config.clone()).await?;
            sides.push(Side::new(client, *conv).await?);
        }
        // Sends first, so that the empty conversation has a history to page.
        for round in 0..ROUNDS {
            let n = share(plan.messages, round);
            for i in order(round) {
                sides[i].send_round(&plan.bodies, n, plan.rate).await;
                plan.bar.inc(n as u64);
            }
        }
        for round in 0..ROUNDS {
            let n = share(plan.pages, round);
            for i in order(round) {
                sides[i].page_round(n).await?;
                plan.bar.inc(2 * n as u64);
            }
        }
        let empty = sides[0].figures().await?;
        let full = sides[1].figures().await?;
        drop(sides);
        // Let the drivers see their clients gone and close their stores.
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok([empty, full])
    })
}

/// Share of `total` measured in `round` (the first rounds take the rest).
fn share(total: usize, round: usize) -> usize {
    total / ROUNDS + usize::from(round < total % ROUNDS)
}

/// Which side goes first: alternately the empty and the full one.
fn order(round: usize) -> [usize; 2] {
    if round.is_multiple_of(2) {
        [0, 1]
    } else {
        [1, 0]
    }
}

fn ratio_of(full: f64, empty: f64) -> f64 {
    if empty > 0.0 {
        full / empty
    } else {
        0.0
    }
}

fn file_mib(path: &Path) -> f64 {
    std::fs::metadata(path)
        .map(|m| m.len() as f64 / (1024.0 * 1024.0))
        .unwrap_or(0.0)
}

/// The messages of the full server store.
struct FillPlan {
    /// Messages in all.
    total: u64,
    /// The measured conversation and its other member, who writes to it.
    measured: (ConversationId, UserId),
    /// Messages of the measured conversation.
    measured_count: u64,
    /// The other conversations and their two members.
    others: Vec<(ConversationId, [UserId; 2])>,
    /// Message bodies, from the corpus.
    bodies: Vec<String>,
}

impl FillPlan {
    /// The `i`-th append: the measured conversation gets `measured_count`
    /// of `total`, evenly spread; the others share the rest round-robin,
    /// their two members taking turns.
    fn op(&self, i: u64) -> WriteOp {
        let measured = self.takes_measured(i);
        let (conversation, sender) = if measured || self.others.is_empty() {
            self.measured
        } else {
            let k = i - self.measured_before(i);
            let n = self.others.len() as u64;
            let (conv, members) = &self.others[(k % n) as usize];
            (*conv, members[((k / n) % 2) as usize])
        };
        WriteOp::Append {
            sender,
            id: MessageId::new(),
            conversation,
            body: self.bodies[(i % self.bodies.len() as u64) as usize].clone(),
            action: None,
        }
    }

    /// How many of the appends before `i` go to the measured conversation.
    fn measured_before(&self, i: u64) -> u64 {
        // u128: `i * measured_count` overflows u64 beyond 4 × 10^9 × 4 × 10^9.
        (u128::from(i) * u128::from(self.measured_count) / u128::from(self.total.max(1))) as u64
    }

    fn takes_measured(&self, i: u64) -> bool {
        self.measured_before(i + 1) > self.measured_before(i)
    }
}

/// Writes the plan into the server store in `dir` (the server stopped);
/// stops early, with an error, once the run is interrupted.
fn fill_server(
    dir: &Path,
    plan: &FillPlan,
    bar: &ProgressBar,
    cancelled: &Cancelled,
) -> anyhow::Result<()> {
    let store = chatsync_server::open_store(dir)
        .with_context(|| format!("cannot open the server store in {}", dir.display()))?;
    let mut i = 0;
    while i < plan.total {
        cancelled.check()?;
        let end = (i + FILL_BATCH as u64).min(plan.total);
        let ops: Vec<WriteOp> = (i..end).map(|k| plan.op(k)).collect();
        let outcomes = store.apply_batch(&ops).context("fill batch")?;
        if let Some(bad) = outcomes
            .iter()
            .find(|o| !matches!(o, WriteOutcome::Appended(a) if !a.duplicate))
        {
            anyhow::bail!("a fill append was not stored: {bad:?}");
        }
        bar.set_position(end);
        i = end;
    }
    Ok(())
}

/// Waits until the client's cursor in `conv` reaches `n`.
async fn wait_cursor(
    client: &Client,
    conv: ConversationId,
    n: u64,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(3600);
    loop {
        let cursor = cursor_of(client, conv).await?;
        bar.set_position(cursor);
        if cursor >= n {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the client was still at {cursor} of {n} after an hour"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn cursor_of(client: &Client, conv: ConversationId) -> anyhow::Result<u64> {
    Ok(client
        .conversations()
        .await?
        .into_iter()
        .find(|c| c.id == conv)
        .map(|c| c.cursor.0)
        .unwrap_or(0))
}

impl Side {
    async fn new(client: Client, conv: ConversationId) -> anyhow::Result<Side> {
        client.wait_connected(Duration::from_secs(30)).await?;
        let recorder = Recorder::default();
        let mut timeline = client.subscribe(conv, 0).await?;
        let rec = recorder.clone();
        tokio::spawn(async move {
            while let Some(change) = timeline.changes.recv().await {
                rec.own_change(&change);
            }
        });
        Ok(Side {
            client,
            conv,
            recorder,
            sent: Vec::new(),
            send: LatHist::new(),
            newest: LatHist::new(),
            deep: LatHist::new(),
            send_errors: 0,
            short_pages: 0,
        })
    }

    /// Sends `n` messages open loop at `rate`, then waits until they are
    /// In-Flight (so that no round overlaps the next side's).
    async fn send_round(&mut self, bodies: &[String], n: usize, rate: f64) {
        let interval = Duration::from_secs_f64(1.0 / rate.max(1e-3));
        let start = Instant::now();
        let mut ids = Vec::with_capacity(n);
        for k in 0..n {
            let due = start + interval.mul_f64(k as f64);
            tokio::time::sleep_until(due.into()).await;
            let t0 = Instant::now();
            match self
                .client
                .send(
                    self.conv,
                    bodies[(self.sent.len() + k) % bodies.len()].as_str(),
                )
                .await
            {
                Ok(id) => {
                    let t1 = Instant::now();
                    self.send.record(t1 - t0);
                    self.recorder.with(id, |t| {
                        t.started = Some(t0);
                        t.durable = Some(t1);
                    });
                    ids.push(id);
                }
                Err(_) => self.send_errors += 1,
            }
        }
        let deadline = Instant::now() + SETTLE;
        loop {
            let done = self.recorder.read(|traces| {
                ids.iter()
                    .all(|id| traces.get(id).is_some_and(|t| t.in_flight.is_some()))
            });
            if done || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.sent.extend(ids);
    }

    /// Reads `n` newest pages and `n` pages from a random point of the
    /// history, through [`Client::page`].
    async fn page_round(&mut self, n: usize) -> anyhow::Result<()> {
        let cursor = cursor_of(&self.client, self.conv).await?;
        for _ in 0..n {
            let t0 = Instant::now();
            let page = self.client.page(self.conv, None, PAGE).await?;
            self.newest.record(t0.elapsed());
            self.short_pages += usize::from(page.len() < PAGE);

            let before = Seq(fastrand::u64(PAGE as u64 + 1..=cursor.max(PAGE as u64 + 1)));
            let t0 = Instant::now();
            let page = self.client.page(self.conv, Some(before), PAGE).await?;
            self.deep.record(t0.elapsed());
            self.short_pages += usize::from(page.len() < PAGE);
        }
        Ok(())
    }

    async fn figures(&self) -> anyhow::Result<SideFigures> {
        let snap = self.recorder.snapshot();
        let mut in_flight = LatHist::new();
        let mut not_in_flight = 0;
        for id in &self.sent {
            match snap.get(id).and_then(|t| Some((t.started?, t.in_flight?))) {
                Some((s, f)) => in_flight.record(f.saturating_duration_since(s)),
                None => not_in_flight += 1,
            }
        }
        Ok(SideFigures {
            send: self.send.summary(),
            in_flight: in_flight.summary(),
            page_newest: self.newest.summary(),
            page_deep: self.deep.summary(),
            send_errors: self.send_errors,
            not_in_flight,
            short_pages: self.short_pages,
            messages_in_conversation: cursor_of(&self.client, self.conv).await?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(total: u64, measured: u64, others: usize) -> FillPlan {
        FillPlan {
            total,
            measured: (ConversationId::new(), UserId::new()),
            measured_count: measured,
            others: (0..others)
                .map(|_| (ConversationId::new(), [UserId::new(), UserId::new()]))
                .collect(),
            bodies: vec!["a".into(), "b".into()],
        }
    }

    fn conv_of(op: &WriteOp) -> ConversationId {
        match op {
            WriteOp::Append { conversation, .. } => *conversation,
            other => panic!("not an append: {other:?}"),
        }
    }

    /// The measured conversation gets exactly its share, spread through
    /// the fill, and the others share the rest evenly.
    #[test]
    fn the_plan_gives_each_conversation_its_share() {
        for (total, measured, others) in [(1000, 100, 7), (1000, 1000, 3), (997, 13, 4)] {
            let p = plan(total, measured, others);
            let ops: Vec<WriteOp> = (0..total).map(|i| p.op(i)).collect();
            let m = p.measured.0;
            let in_measured = ops.iter().filter(|o| conv_of(o) == m).count() as u64;
            assert_eq!(in_measured, measured, "{total}/{measured}/{others}");
            // Spread: the first half of the fill holds about half of them.
            let first_half = ops[..(total / 2) as usize]
                .iter()
                .filter(|o| conv_of(o) == m)
                .count() as u64;
            assert!(first_half.abs_diff(measured / 2) <= 1, "{first_half}");
            let rest = total - measured;
            for (c, _) in &p.others {
                let n = ops.iter().filter(|o| conv_of(o) == *c).count() as u64;
                assert!(n.abs_diff(rest / others as u64) <= 1, "{n} of {rest}");
            }
        }
    }

    /// Every append comes from a member of its conversation, and the two
    /// members of another conversation take turns.
    #[test]
    fn the_plan_sends_as_members() {
        let p = plan(500, 50, 5);
        let mut senders = std::collections::HashMap::<ConversationId, Vec<UserId>>::new();
        for i in 0..500 {
            let WriteOp::Append {
                sender,
                conversation,
                ..
            } = p.op(i)
            else {
                panic!("not an append")
            };
            senders.entry(conversation).or_default().push(sender);
        }
        assert!(senders[&p.measured.0].iter().all(|s| *s == p.measured.1));
        for (c, members) in &p.others {
            let seen = &senders[c];
            assert!(seen.iter().all(|s| members.contains(s)));
            assert!(seen.contains(&members[0]) && seen.contains(&members[1]));
        }
    }
}
