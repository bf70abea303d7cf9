//! The server's durable throughput: protocol-level senders, each on its own
//! connection and conversation (recipients offline), pipelining `send`
//! frames; an `ack` comes only after the group commit's fsync. Measured at
//! max rate (a window of sends outstanding per connection) and in the same
//! open loop as the peers, so the server is compared with NATS JetStream
//! and Redis on the same footing: a protocol client, no client storage.

use super::lite;
use super::load::{self, Appender, MaxRate, OpenLoop};
use super::report::{per_sec, Report, Table};
use super::server::{BenchServer, Seeder};
use super::stats::{self, ProcFigures, ProcWatch};
use crate::output::outln;

/// Name of the server's group-commit thread (`crates/server/src/commit.rs`).
const COMMITTER: &str = "chatsync-commit";
/// Name of the thread that fans out and answers each committed batch.
const FANOUT: &str = "chatsync-fanout";
use super::Ctx;
use anyhow::Context;
use chatsync_protocol::{ClientFrame, ConversationId, MessageId, ServerFrame};
use futures_util::future::BoxFuture;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// Answer to one `send`: `Ok` on `ack`, `Err` on `refused` or a lost
/// connection.
type Answer = oneshot::Sender<anyhow::Result<()>>;

/// Protocol-level senders, one connection per conversation.
#[derive(Clone)]
pub struct LiteAppender {
    conns: Arc<Vec<mpsc::UnboundedSender<(ClientFrame, Answer)>>>,
    convs: Arc<Vec<ConversationId>>,
}

impl LiteAppender {
    /// Connects one authenticated connection per `(token, conversation)`.
    pub async fn connect(addr: &str, who: &[(String, ConversationId)]) -> anyhow::Result<Self> {
        let mut conns = Vec::new();
        let mut convs = Vec::new();
        for (token, conv) in who {
            let ws = lite::connect(addr, token, None).await?;
            conns.push(spawn_conn(ws));
            convs.push(*conv);
        }
        Ok(LiteAppender {
            conns: Arc::new(conns),
            convs: Arc::new(convs),
        })
    }
}

/// Runs a connection: frames from the channel go out in order (written in
/// bursts, one flush per burst); answers come back in the same order
/// (PROTOCOL.md §4.3), so a queue of waiting senders is enough.
fn spawn_conn(ws: lite::Ws) -> mpsc::UnboundedSender<(ClientFrame, Answer)> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(ClientFrame, Answer)>();
    let waiting: Arc<Mutex<VecDeque<Answer>>> = Arc::default();
    let (mut sink, mut stream) = ws.split();
    let w = waiting.clone();
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut burst = vec![first];
            while let Ok(more) = rx.try_recv() {
                burst.push(more);
                if burst.len() >= 256 {
                    break;
                }
            }
            let mut texts = Vec::with_capacity(burst.len());
            {
                let mut q = w.lock().unwrap_or_else(|p| p.into_inner());
                for (frame, answer) in burst {
                    texts.push(chatsync_protocol::encode(&frame));
                    q.push_back(answer);
                }
            }
            for t in texts {
                if sink.feed(Message::text(t)).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });
    tokio::spawn(async move {
        loop {
            let frame = match lite::next(&mut stream).await {
                Ok(Some(f)) => f,
                Ok(None) | Err(_) => break,
            };
            let result = match frame {
                ServerFrame::Ack { .. } => Ok(()),
                ServerFrame::Refused { refusal, .. } => Err(anyhow::anyhow!(
                    "refused: {:?} {}",
                    refusal.code,
                    refusal.message
                )),
                _ => continue,
            };
            let next = waiting
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop_front();
            if let Some(answer) = next {
                let _ = answer.send(result);
            }
        }
        // Connection gone: fail whatever still waits.
        let mut q = waiting.lock().unwrap_or_else(|p| p.into_inner());
        for a in q.drain(..) {
            let _ = a.send(Err(anyhow::anyhow!("connection lost")));
        }
    });
    tx
}

impl Appender for LiteAppender {
    fn append(&self, conv: usize, body: String) -> BoxFuture<'static, anyhow::Result<()>> {
        let i = conv % self.conns.len().max(1);
        let frame = ClientFrame::Send {
            id: MessageId::new(),
            conversation: self.convs[i],
            body,
            action: None,
        };
        let (otx, orx) = oneshot::channel();
        let sent = self.conns[i].send((frame, otx));
        Box::pin(async move {
            sent.map_err(|_| anyhow::anyhow!("connection task ended"))?;
            orx.await.context("connection task ended")?
        })
    }
}

#[derive(Serialize)]
struct Figures {
    max_rate: MaxRate,
    max_rate_server: Option<ProcFigures>,
    /// CPU of this process (the load generator) during the max-rate run.
    max_rate_load_generator: Option<ProcFigures>,
    /// Server CPU time per acknowledged message in the max-rate run, µs.
    server_cpu_us_per_message: Option<f64>,
    /// CPU time of the server's group-commit thread per acknowledged
    /// message, µs: the serial part that bounds throughput.
    committer_cpu_us_per_message: Option<f64>,
    /// CPU time of the thread that runs the fan-out hook and answers each
    /// committed batch, per acknowledged message, µs (serial too, but in
    /// parallel with the committer).
    fanout_cpu_us_per_message: Option<f64>,
    open_loop: OpenLoop,
    open_loop_server: Option<ProcFigures>,
    note: &'static str,
}

/// Runs the throughput suite.
pub async fn run(ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    let a = &ctx.args;
    let senders = a.max_senders.max(a.senders).max(1);
    let dir = ctx.tmp.join("server-throughput");
    let who = {
        let seed = Seeder::open(&dir)?;
        let users = seed.users("tput", senders)?;
        let peers = seed.users("tputr", senders)?;
        let mut who = Vec::new();
        for (u, r) in users.iter().zip(&peers) {
            who.push((u.token.clone(), seed.conversation("tput", &[u.id, r.id])?));
        }
        who
    };
    let server = BenchServer::start(&dir, &[]).await?;
    let system = LiteAppender::connect(&server.addr, &who).await?;

    let watch = ProcWatch::start(server.pid);
    let open = load::open_loop(
        ctx,
        &system,
        "chatsync server: open loop",
        a.messages,
        a.rate,
        a.senders,
    )
    .await;
    let open_server = watch.finish();
    let watch = ProcWatch::start(server.pid);
    let generator = ProcWatch::start(Some(std::process::id()));
    let committer0 = server
        .pid
        .and_then(|p| stats::thread_cpu_seconds(p, COMMITTER));
    let fanout0 = server
        .pid
        .and_then(|p| stats::thread_cpu_seconds(p, FANOUT));
    let max = load::max_rate(
        ctx,
        &system,
        "chatsync server: max rate",
        a.max_messages,
        senders,
        a.window,
    )
    .await;
    let max_server = watch.finish();
    let max_generator = generator.finish();
    let committer = server
        .pid
        .and_then(|p| stats::thread_cpu_seconds(p, COMMITTER))
        .zip(committer0)
        .map(|(b, a)| b - a);
    let fanout = server
        .pid
        .and_then(|p| stats::thread_cpu_seconds(p, FANOUT))
        .zip(fanout0)
        .map(|(b, a)| b - a);
    let per_msg = |cpu: f64| 1e6 * cpu / (max.messages.max(1) as f64);
    let server_cpu_us_per_message = max_server.map(|s| per_msg(s.cpu_seconds));
    let committer_cpu_us_per_message = committer.map(per_msg);
    let fanout_cpu_us_per_message = fanout.map(per_msg);
    drop(system);
    server.stop().await;

    let mut t = Table::new(
        "chatsync server, protocol-level senders (no client storage): send → ack (fsynced)",
        &["run", "count", "p50", "p90", "p99", "p99.9", "max"],
    );
    t.lat_row(&format!("open loop {:.0}/s", open.rate_target), &open.ack);
    t.lat_row(
        &format!("max rate, {} conn × window {}", max.senders, max.window),
        &max.ack,
    );
    t.print()?;
    outln!(
        "max rate: {} acknowledged (fsynced) messages; errors {} open loop, {} max rate{}",
        per_sec(max.acked_per_s),
        open.errors,
        max.errors,
        open.first_error
            .as_ref()
            .or(max.first_error.as_ref())
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default()
    )?;
    if let Some(s) = &max_server {
        outln!(
            "server during max rate: CPU {:.0}% of one core, RSS {:.1} MiB; load generator (this process) CPU {:.0}%",
            s.cpu_percent,
            s.rss_mib,
            max_generator.map(|g| g.cpu_percent).unwrap_or(0.0)
        )?;
    }
    if let (Some(s), Some(c)) = (server_cpu_us_per_message, committer_cpu_us_per_message) {
        outln!(
            "server CPU per acknowledged message: {s:.1}µs, of which the group-commit thread {c:.1}µs (serial: at most {} with a core to itself, before fsync waits)",
            per_sec(1e6 / c.max(1e-3))
        )?;
    }
    if let Some(f) = fanout_cpu_us_per_message {
        outln!("fan-out thread (pushes and answers after each commit): {f:.1}µs per acknowledged message")?;
    }
    report.key.chatsync_max_per_s = Some(max.acked_per_s);
    report.key.chatsync_max_ack_p50_us = Some(max.ack.p50_us);
    report.key.chatsync_lite_p50_us = Some(open.ack.p50_us);
    report.key.chatsync_lite_p99_us = Some(open.ack.p99_us);
    report.add(
        "throughput",
        Figures {
            max_rate: max,
            max_rate_server: max_server,
            max_rate_load_generator: max_generator,
            server_cpu_us_per_message,
            committer_cpu_us_per_message,
            fanout_cpu_us_per_message,
            open_loop: open,
            open_loop_server: open_server,
            note: "recipients offline: the durable accept path, as a publish-ack measures it",
        },
    );
    Ok(())
}
