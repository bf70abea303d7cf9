//! Matrix Synapse, the chat server people self-host: messages sent through
//! its client API, `PUT /_matrix/client/v3/rooms/{room}/send/m.room.message/{txnId}`,
//! one room per conversation with a second member joined. Started by
//! `scripts/synapse.sh` (SQLite backend, loopback); the bench finds it at
//! `CHATSYNC_BENCH_SYNAPSE_URL` (default `http://127.0.0.1:8008`) and logs
//! in as the users that script registers.

use super::PeerFigures;
use crate::bench::load::{self, Appender};
use crate::bench::report::Report;
use crate::bench::stats::{find_pid, ProcWatch};
use crate::bench::Ctx;
use anyhow::{bail, Context};
use futures_util::future::BoxFuture;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Environment variable naming the Synapse base URL.
pub const URL_ENV: &str = "CHATSYNC_BENCH_SYNAPSE_URL";
/// Users and password created by `scripts/synapse.sh`.
const SENDER: &str = "bencha";
const RECIPIENT: &str = "benchb";
const PASSWORD: &str = "chatsync-bench-pw";

/// A logged-in Matrix client.
#[derive(Clone)]
struct Session {
    http: reqwest::Client,
    base: String,
    token: String,
    user_id: String,
}

impl Session {
    async fn login(http: &reqwest::Client, base: &str, user: &str) -> anyhow::Result<Session> {
        let v = call(
            http.post(format!("{base}/_matrix/client/v3/login")),
            json!({
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": user},
                "password": PASSWORD,
                "initial_device_display_name": "chatsync bench",
            }),
        )
        .await
        .with_context(|| format!("login as {user} (did scripts/synapse.sh register it?)"))?;
        Ok(Session {
            http: http.clone(),
            base: base.to_string(),
            token: v["access_token"]
                .as_str()
                .context("no access_token")?
                .to_string(),
            user_id: v["user_id"].as_str().context("no user_id")?.to_string(),
        })
    }

    fn auth(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        r.header("Authorization", format!("Bearer {}", self.token))
    }
}

/// Sends a JSON body and returns the JSON answer; a non-2xx status is an
/// error carrying Matrix's `errcode`.
async fn call(req: reqwest::RequestBuilder, body: Value) -> anyhow::Result<Value> {
    let resp = req
        .header("Content-Type", "application/json")
        .body(serde_json::to_vec(&body)?)
        .send()
        .await?;
    let status = resp.status();
    let bytes = resp.bytes().await?;
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if !status.is_success() {
        bail!(
            "HTTP {status}: {} {}",
            v["errcode"].as_str().unwrap_or(""),
            v["error"].as_str().unwrap_or("")
        );
    }
    Ok(v)
}

/// Room ids hold `!` and `:`; percent-encode a path segment.
fn seg(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Clone)]
struct Synapse {
    sender: Session,
    rooms: Arc<Vec<String>>,
    txn: Arc<AtomicU64>,
    run: u64,
}

impl Appender for Synapse {
    fn append(&self, conv: usize, body: String) -> BoxFuture<'static, anyhow::Result<()>> {
        let s = self.sender.clone();
        let room = seg(&self.rooms[conv % self.rooms.len()]);
        let txn = format!(
            "cb{}-{}",
            self.run,
            self.txn.fetch_add(1, Ordering::Relaxed)
        );
        Box::pin(async move {
            let url = format!(
                "{}/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}",
                s.base
            );
            call(
                s.auth(s.http.put(url)),
                json!({"msgtype": "m.text", "body": body}),
            )
            .await?;
            Ok(())
        })
    }
}

/// Runs the Synapse peer (skipped when no Synapse answers).
pub async fn run(ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    let a = &ctx.args;
    let base = std::env::var(URL_ENV)
        .unwrap_or_else(|_| "http://127.0.0.1:8008".into())
        .trim_end_matches('/')
        .to_string();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(64)
        .build()?;
    let versions = tokio::time::timeout(
        Duration::from_secs(3),
        http.get(format!("{base}/_matrix/client/versions")).send(),
    )
    .await;
    match versions {
        Ok(Ok(r)) if r.status().is_success() => {}
        Ok(Ok(r)) => {
            report.skip(
                "synapse",
                format!("{base} answered {} to /_matrix/client/versions", r.status()),
            )?;
            return Ok(());
        }
        Ok(Err(e)) => {
            report.skip(
                "synapse",
                format!("no Synapse at {base} ({e}); start one with scripts/synapse.sh, or set {URL_ENV}"),
            )?;
            return Ok(());
        }
        Err(_) => {
            report.skip("synapse", format!("no answer from {base} within 3 s"))?;
            return Ok(());
        }
    }
    let sender = Session::login(&http, &base, SENDER).await?;
    let recipient = Session::login(&http, &base, RECIPIENT).await?;
    let senders = a.max_senders.max(a.senders).max(1);
    let mut rooms = Vec::new();
    for i in 0..senders {
        let v = call(
            sender.auth(http.post(format!("{base}/_matrix/client/v3/createRoom"))),
            json!({
                "preset": "private_chat",
                "name": format!("chatsync bench {i}"),
                "invite": [recipient.user_id],
            }),
        )
        .await
        .context("createRoom")?;
        let room = v["room_id"].as_str().context("no room_id")?.to_string();
        call(
            recipient.auth(http.post(format!("{base}/_matrix/client/v3/join/{}", seg(&room)))),
            json!({}),
        )
        .await
        .context("join")?;
        rooms.push(room);
    }
    let system = Synapse {
        sender,
        rooms: Arc::new(rooms),
        txn: Arc::default(),
        run: std::process::id() as u64,
    };
    let pid = find_pid(&["synapse.app.homeserver"]);
    let watch = ProcWatch::start(pid);
    let open = load::open_loop(
        ctx,
        &system,
        "Synapse: open loop",
        a.synapse_messages,
        a.synapse_rate,
        a.senders,
    )
    .await;
    let max = load::max_rate(
        ctx,
        &system,
        "Synapse: max rate",
        a.synapse_messages,
        senders,
        a.synapse_window,
    )
    .await;
    let process = watch.finish();
    let figures = PeerFigures {
        system: format!(
            "Matrix Synapse at {base} (client API, PUT …/send/m.room.message/{{txnId}}, one room per conversation with 2 members)"
        ),
        durability: "200 OK once the event is persisted by Synapse (its SQLite database, Synapse's own settings)",
        open_loop: open,
        max_rate: max,
        process,
    };
    figures.print("peer Matrix Synapse")?;
    report.key.synapse_p50_us = Some(figures.open_loop.ack.p50_us);
    report.key.synapse_p99_us = Some(figures.open_loop.ack.p99_us);
    report.key.synapse_max_per_s = Some(figures.max_rate.acked_per_s);
    report.add("synapse", figures);
    Ok(())
}
