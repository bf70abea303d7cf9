//! The two load shapes every durable-append system is driven with, so that
//! chatsync and its peers see the same workload:
//!
//! - **open loop**: message `k` is issued at `start + k / rate` whatever
//!   happened to the earlier ones (slow answers cannot hide latency);
//! - **max rate**: `senders` independent streams, each keeping `window`
//!   appends outstanding, until `messages` are acknowledged.
//!
//! A system is an [`Appender`]: "append this body to conversation `conv`
//! and resolve once it is acknowledged as durable".

use super::stats::{rate, Lat, LatHist};
use super::Ctx;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use serde::Serialize;
use std::time::{Duration, Instant};

/// A system under test.
pub trait Appender: Send + Sync + 'static {
    /// Appends `body` to conversation (stream, room) `conv`; resolves when
    /// the system acknowledged it.
    fn append(&self, conv: usize, body: String) -> BoxFuture<'static, anyhow::Result<()>>;
}

/// Result of an open-loop run.
#[derive(Clone, Debug, Serialize)]
pub struct OpenLoop {
    /// Messages issued.
    pub messages: usize,
    /// Target rate, msgs/s.
    pub rate_target: f64,
    /// Rate at which they were issued, msgs/s.
    pub rate_achieved: f64,
    /// Issue → acknowledgement.
    pub ack: Lat,
    /// Appends that failed.
    pub errors: usize,
    /// First error, if any.
    pub first_error: Option<String>,
}

/// Result of a max-rate run.
#[derive(Clone, Debug, Serialize)]
pub struct MaxRate {
    /// Messages acknowledged.
    pub messages: usize,
    /// Independent streams (connections).
    pub senders: usize,
    /// Outstanding appends per stream.
    pub window: usize,
    /// Seconds from the first issue to the last acknowledgement.
    pub seconds: f64,
    /// Acknowledged appends per second.
    pub acked_per_s: f64,
    /// Issue → acknowledgement.
    pub ack: Lat,
    /// Appends that failed.
    pub errors: usize,
    /// First error, if any.
    pub first_error: Option<String>,
}

/// How long an acknowledgement may take before the run gives up on it.
const ACK_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `messages` appends at `rate` per second over `convs` conversations.
pub async fn open_loop<A: Appender>(
    ctx: &Ctx,
    system: &A,
    label: &str,
    messages: usize,
    msgs_per_s: f64,
    convs: usize,
) -> OpenLoop {
    let bar = ctx.bar(messages as u64, label);
    let convs = convs.max(1);
    let interval = Duration::from_secs_f64(1.0 / msgs_per_s.max(1e-3));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<anyhow::Result<Duration>>();
    let start = Instant::now();
    for k in 0..messages {
        tokio::time::sleep_until((start + interval.mul_f64(k as f64)).into()).await;
        let t0 = Instant::now();
        let fut = system.append(k % convs, ctx.body(k).to_string());
        let tx = tx.clone();
        tokio::spawn(async move {
            let r = match tokio::time::timeout(ACK_TIMEOUT, fut).await {
                Ok(r) => r.map(|()| t0.elapsed()),
                Err(_) => Err(anyhow::anyhow!("no acknowledgement within {ACK_TIMEOUT:?}")),
            };
            let _ = tx.send(r);
        });
    }
    let issued = start.elapsed().as_secs_f64();
    drop(tx);
    let mut hist = LatHist::new();
    let mut errors = 0;
    let mut first_error = None;
    while let Some(r) = rx.recv().await {
        match r {
            Ok(d) => hist.record(d),
            Err(e) => {
                errors += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    OpenLoop {
        messages,
        rate_target: msgs_per_s,
        rate_achieved: rate(messages as f64, issued),
        ack: hist.summary(),
        errors,
        first_error,
    }
}

/// Runs `messages` appends as fast as acknowledgements allow: `senders`
/// streams (stream `s` appends to conversation `s`), each with `window`
/// appends outstanding.
pub async fn max_rate<A: Appender + Clone>(
    ctx: &Ctx,
    system: &A,
    label: &str,
    messages: usize,
    senders: usize,
    window: usize,
) -> MaxRate {
    let senders = senders.max(1);
    let window = window.max(1);
    let bar = ctx.bar(messages as u64, label);
    let per = messages.div_ceil(senders);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..senders {
        let count = per.min(messages.saturating_sub(s * per));
        let system = system.clone();
        let bodies: Vec<String> = (0..count)
            .map(|k| ctx.body(s * per + k).to_string())
            .collect();
        let bar = bar.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist = LatHist::new();
            let mut errors = 0usize;
            let mut first_error: Option<String> = None;
            let mut inflight = FuturesUnordered::new();
            let settle = |r: anyhow::Result<Duration>,
                          hist: &mut LatHist,
                          errors: &mut usize,
                          first: &mut Option<String>| {
                match r {
                    Ok(d) => hist.record(d),
                    Err(e) => {
                        *errors += 1;
                        first.get_or_insert_with(|| format!("{e:#}"));
                    }
                }
                bar.inc(1);
            };
            for body in bodies {
                if inflight.len() >= window {
                    if let Some(r) = inflight.next().await {
                        settle(r, &mut hist, &mut errors, &mut first_error);
                    }
                }
                let t0 = Instant::now();
                let fut = system.append(s, body);
                inflight.push(async move {
                    match tokio::time::timeout(ACK_TIMEOUT, fut).await {
                        Ok(r) => r.map(|()| t0.elapsed()),
                        Err(_) => Err(anyhow::anyhow!("no acknowledgement within {ACK_TIMEOUT:?}")),
                    }
                });
            }
            while let Some(r) = inflight.next().await {
                settle(r, &mut hist, &mut errors, &mut first_error);
            }
            (hist, errors, first_error)
        }));
    }
    let mut hist = LatHist::new();
    let mut errors = 0;
    let mut first_error = None;
    for t in tasks {
        match t.await {
            Ok((h, e, f)) => {
                hist.merge(&h);
                errors += e;
                if first_error.is_none() {
                    first_error = f;
                }
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert_with(|| format!("sender task: {e}"));
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let acked = hist.len() as usize;
    MaxRate {
        messages: acked,
        senders,
        window,
        seconds,
        acked_per_s: rate(acked as f64, seconds),
        ack: hist.summary(),
        errors,
        first_error,
    }
}
