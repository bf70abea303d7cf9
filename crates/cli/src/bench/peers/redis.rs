//! Redis `XADD` with `appendfsync always`: the bench starts its own
//! `redis-server` child (the machine's Redis keeps nothing on disk) on a
//! free loopback port with `--appendonly yes --appendfsync always` and its
//! data in the run's temporary directory, and stops it afterwards.
//! `CHATSYNC_BENCH_REDIS_SERVER` names another binary.

use super::PeerFigures;
use crate::bench::load::{self, Appender};
use crate::bench::report::Report;
use crate::bench::stats::ProcWatch;
use crate::bench::Ctx;
use anyhow::Context;
use futures_util::future::BoxFuture;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Environment variable naming the `redis-server` binary.
pub const BIN_ENV: &str = "CHATSYNC_BENCH_REDIS_SERVER";

#[derive(Clone)]
struct Redis {
    /// One multiplexed (pipelining) connection per sender.
    conns: Arc<Vec<redis::aio::MultiplexedConnection>>,
}

impl Appender for Redis {
    fn append(&self, conv: usize, body: String) -> BoxFuture<'static, anyhow::Result<()>> {
        let mut c = self.conns[conv % self.conns.len()].clone();
        Box::pin(async move {
            let _id: String = redis::cmd("XADD")
                .arg(format!("chatsync-bench:{conv}"))
                .arg("*")
                .arg("body")
                .arg(body)
                .query_async(&mut c)
                .await?;
            Ok(())
        })
    }
}

/// Runs the Redis peer (skipped when `redis-server` cannot be started).
pub async fn run(ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    let a = &ctx.args;
    let bin = std::env::var(BIN_ENV).unwrap_or_else(|_| "redis-server".into());
    let dir = ctx.tmp.join("redis");
    std::fs::create_dir_all(&dir)?;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let spawned = tokio::process::Command::new(&bin)
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--appendonly", "yes", "--appendfsync", "always"])
        .args(["--save", "", "--protected-mode", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            report.skip(
                "redis",
                format!("cannot start `{bin}` ({e}); install redis-server or set {BIN_ENV}"),
            )?;
            return Ok(());
        }
    };
    let pid = child.id();
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
    let senders = a.max_senders.max(a.senders).max(1);
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = loop {
        match client.get_multiplexed_async_connection().await {
            Ok(c) => break c,
            Err(e) if Instant::now() > deadline => {
                let _ = child.kill().await;
                return Err(e).context("redis-server did not accept connections within 10 s");
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let mut conns = vec![first];
    for _ in 1..senders {
        conns.push(client.get_multiplexed_async_connection().await?);
    }
    let mut info_conn = conns[0].clone();
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut info_conn)
        .await
        .unwrap_or_default();
    let version = info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("?")
        .trim()
        .to_string();
    let system = Redis {
        conns: Arc::new(conns),
    };
    let watch = ProcWatch::start(pid);
    let open = load::open_loop(
        ctx,
        &system,
        "Redis XADD: open loop",
        a.messages,
        a.rate,
        a.senders,
    )
    .await;
    let max = load::max_rate(
        ctx,
        &system,
        "Redis XADD: max rate",
        a.max_messages,
        senders,
        a.window,
    )
    .await;
    let process = watch.finish();
    drop(system);
    let _ = child.kill().await;
    let figures = PeerFigures {
        system: format!(
            "Redis {version} XADD, own redis-server (appendonly yes, appendfsync always) on 127.0.0.1:{port}, AOF in {}",
            dir.display()
        ),
        durability: "reply after the AOF write and its fsync (appendfsync always; commands of one event-loop turn share one fsync)",
        open_loop: open,
        max_rate: max,
        process,
    };
    figures.print("peer Redis XADD")?;
    report.key.redis_p50_us = Some(figures.open_loop.ack.p50_us);
    report.key.redis_p99_us = Some(figures.open_loop.ack.p99_us);
    report.key.redis_max_per_s = Some(figures.max_rate.acked_per_s);
    report.add("redis", figures);
    Ok(())
}
