//! Catch-up: a real client library instance (its own SQLite client
//! storage) goes offline, misses `--catchup-messages` messages of one
//! conversation (filled by a protocol-level sender at max rate), then is
//! opened again; measured until its gap-free cursor reaches the newest
//! message.

use super::load;
use super::report::{per_sec, Report, Table};
use super::server::{bench_client, BenchServer, Seeder};
use super::stats::{rate, ProcFigures, ProcWatch};
use super::throughput::LiteAppender;
use super::Ctx;
use anyhow::Context;
use chatsync_client::core::Config;
use chatsync_client::Client;
use serde::Serialize;
use std::time::{Duration, Instant};

#[derive(Serialize)]
struct Figures {
    missed: usize,
    fill_acked_per_s: f64,
    seconds_to_connected: Option<f64>,
    seconds_to_current: f64,
    msgs_per_s: f64,
    server: Option<ProcFigures>,
    client_process_cpu_percent: Option<f64>,
}

/// Runs the catch-up suite.
pub async fn run(ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    let a = &ctx.args;
    let n = a.catchup_messages;
    let dir = ctx.tmp.join("server-catchup");
    let writer = Seeder::open(&dir)?
        .users("catchupw", 1)?
        .pop()
        .context("seeded writer")?;
    let server = BenchServer::start(&dir, &[]).await?;

    let name = format!("catchupr{}", std::process::id());
    let data = ctx.tmp.join("clients").join(&name);
    let config = Config {
        reconnect_base: Duration::from_millis(50),
        reconnect_cap: Duration::from_millis(1000),
        ..Config::default()
    };
    let conv = {
        let reader = bench_client(&server.addr, &name, &data, config.clone()).await?;
        reader
            .create_conversation("catch-up", &[writer.name.as_str()])
            .await?
    };
    // The client is gone (its last handle dropped); let its driver close.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let fill = LiteAppender::connect(&server.addr, &[(writer.token.clone(), conv.id)]).await?;
    let filled = load::max_rate(ctx, &fill, "catch-up: filling", n, 1, a.window).await;
    drop(fill);
    anyhow::ensure!(
        filled.errors == 0,
        "filling the conversation failed: {}",
        filled.first_error.unwrap_or_default()
    );

    let bar = ctx.bar(n as u64, "catch-up: reconnected client");
    let watch = ProcWatch::start(server.pid);
    let me = ProcWatch::start(Some(std::process::id()));
    let t0 = Instant::now();
    let client = Client::open_with(&data, config).await?;
    let c2 = client.clone();
    let connected = tokio::spawn(async move {
        c2.wait_connected(Duration::from_secs(60))
            .await
            .ok()
            .map(|()| t0.elapsed().as_secs_f64())
    });
    let deadline = t0 + Duration::from_secs(600);
    loop {
        let cursor = client
            .conversations()
            .await?
            .into_iter()
            .find(|c| c.id == conv.id)
            .map(|c| c.cursor.0)
            .unwrap_or(0);
        bar.set_position(cursor);
        if cursor >= n as u64 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the client was still at {cursor} of {n} after 600 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = t0.elapsed().as_secs_f64();
    let server_figures = watch.finish();
    let client_cpu = me.finish().map(|p| p.cpu_percent);
    bar.finish_and_clear();
    let seconds_to_connected = connected.await.ok().flatten();
    drop(client);
    server.stop().await;

    let figures = Figures {
        missed: n,
        fill_acked_per_s: filled.acked_per_s,
        seconds_to_connected,
        seconds_to_current: secs,
        msgs_per_s: rate(n as f64, secs),
        server: server_figures,
        client_process_cpu_percent: client_cpu,
    };
    let mut t = Table::new(
        format!("catch-up: a client library instance reopened after missing {n} messages"),
        &["figure", "value"],
    );
    t.row(vec![
        "open → connected".into(),
        seconds_to_connected
            .map(|s| format!("{:.1}ms", s * 1000.0))
            .unwrap_or_else(|| "-".into()),
    ]);
    t.row(vec!["open → current".into(), format!("{secs:.2}s")]);
    t.row(vec!["catch-up rate".into(), per_sec(figures.msgs_per_s)]);
    if let Some(s) = &figures.server {
        t.row(vec![
            "server CPU during catch-up".into(),
            format!("{:.0}% of one core", s.cpu_percent),
        ]);
    }
    if let Some(c) = client_cpu {
        t.row(vec![
            "client (bench process) CPU".into(),
            format!("{c:.0}% of one core"),
        ]);
    }
    t.row(vec![
        "fill (server acks at max rate)".into(),
        per_sec(filled.acked_per_s),
    ]);
    t.print()?;
    report.key.catchup_per_s = Some(figures.msgs_per_s);
    report.key.catchup_messages = Some(n as f64);
    report.add("catchup", figures);
    Ok(())
}
