//! NATS JetStream publish-with-acknowledgement, file storage, on the NATS
//! server of this machine (`CHATSYNC_BENCH_NATS_URL`, default
//! `nats://127.0.0.1:4222`). The bench creates its own stream and deletes
//! it afterwards.

use super::PeerFigures;
use crate::bench::load::{self, Appender};
use crate::bench::report::Report;
use crate::bench::stats::{find_pid, ProcWatch};
use crate::bench::Ctx;
use async_nats::jetstream::{self, stream};
use futures_util::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;

/// Environment variable naming the NATS server.
pub const URL_ENV: &str = "CHATSYNC_BENCH_NATS_URL";

#[derive(Clone)]
struct Nats {
    /// One client connection per sender.
    js: Arc<Vec<jetstream::Context>>,
    prefix: String,
}

impl Appender for Nats {
    fn append(&self, conv: usize, body: String) -> BoxFuture<'static, anyhow::Result<()>> {
        let js = self.js[conv % self.js.len()].clone();
        let subject = format!("{}.{conv}", self.prefix);
        Box::pin(async move {
            let ack = js.publish(subject, body.into()).await?;
            ack.await?;
            Ok(())
        })
    }
}

async fn connect(url: &str) -> anyhow::Result<async_nats::Client> {
    let opts = async_nats::ConnectOptions::new().connection_timeout(Duration::from_secs(2));
    match tokio::time::timeout(Duration::from_secs(5), opts.connect(url)).await {
        Ok(r) => Ok(r?),
        Err(_) => anyhow::bail!("timed out"),
    }
}

/// Runs the NATS peer (skipped when unreachable).
pub async fn run(ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    let a = &ctx.args;
    let url = std::env::var(URL_ENV).unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let senders = a.max_senders.max(a.senders).max(1);
    let mut js = Vec::new();
    for _ in 0..senders {
        match connect(&url).await {
            Ok(c) => js.push(jetstream::new(c)),
            Err(e) => {
                report.skip(
                    "nats",
                    format!(
                        "no NATS server at {url} ({}); set {URL_ENV} to use another",
                        crate::output::error_line(&e)
                    ),
                )?;
                return Ok(());
            }
        }
    }
    let id = std::process::id();
    let name = format!("CHATSYNC_BENCH_{id}");
    let prefix = format!("chatsync-bench.{id}");
    let created = js[0]
        .create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![format!("{prefix}.>")],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await;
    if let Err(e) = created {
        report.skip(
            "nats",
            format!("NATS at {url} has no usable JetStream (cannot create a file stream: {e})"),
        )?;
        return Ok(());
    }
    let system = Nats {
        js: Arc::new(js),
        prefix,
    };
    // The server's CPU, when it runs on this machine.
    let host = url.rsplit("//").next().unwrap_or("").to_string();
    let watch = ProcWatch::start(
        find_pid(&["nats-server"])
            .filter(|_| host.starts_with("127.") || host.starts_with("localhost")),
    );
    let open = load::open_loop(
        ctx,
        &system,
        "NATS JetStream: open loop",
        a.messages,
        a.rate,
        a.senders,
    )
    .await;
    let max = load::max_rate(
        ctx,
        &system,
        "NATS JetStream: max rate",
        a.max_messages,
        senders,
        a.window,
    )
    .await;
    let process = watch.finish();
    if let Err(e) = system.js[0].delete_stream(&name).await {
        eprintln!("note: could not delete the NATS stream {name}: {e}");
    }
    let version = system.js[0].client().server_info().version.clone();
    let figures = PeerFigures {
        system: format!("NATS {version} JetStream at {url}, stream {name} (file storage)"),
        durability: "ack after the write to the stream's file (page cache); JetStream's file store fsyncs on its sync interval (2 min by default), not per ack: an ack survives a process crash, not necessarily a power loss",
        open_loop: open,
        max_rate: max,
        process,
    };
    figures.print("peer NATS JetStream publish-ack")?;
    report.key.nats_p50_us = Some(figures.open_loop.ack.p50_us);
    report.key.nats_p99_us = Some(figures.open_loop.ack.p99_us);
    report.key.nats_max_per_s = Some(figures.max_rate.acked_per_s);
    report.add("nats", figures);
    Ok(())
}
