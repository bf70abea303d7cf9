//! S13 rate limit: the server allows 5 sends per second per connection
//! (burst 5) and answers `rate_limited` with `retry_after_ms`; the client
//! sends 30 messages within one second. All 30 are delivered once, in
//! order; none is marked Failed; nothing is sent before a retry-after has
//! passed; the total of `send` frames is at most 30 + the number of
//! rate-limited answers.

use crate::proxy::{Dir, Frame};
use crate::status::StatusLog;
use crate::world::{ids, short_ack, World};
use chatsync_client::Status;
use std::collections::HashSet;
use std::time::Duration;

const N: usize = 30;
/// Allowed skew for resends. A client pauses on the first refusal of a
/// burst; the refusals of the messages pipelined behind it are collateral,
/// and their `retry_after_ms` was computed by the server a little later
/// toward the same instant (when a token is available). On a loaded machine
/// the server can take tens of ms between two of them, so a refusal's own
/// deadline, seen at the proxy, can run later than the pause that governs
/// the client. A client ignoring retry-after resends within a few ms and
/// fails anyway (retry-afters here are 100–200 ms).
const SKEW: Duration = Duration::from_millis(30);
/// A new message's first transmission may cross a refusal: the refusal is
/// already in the client's socket (where the proxy's timestamp is taken)
/// but the client handled the user's `send` first. Allowed this long after
/// the refusal reached the client; a client that ignored the pause would
/// send new messages 33 ms apart through pauses of 100–200 ms and be caught.
/// Resends get no such allowance.
const CROSSING: Duration = Duration::from_millis(50);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s13_rate_limit_thirty_in_a_second_all_delivered_in_order() {
    let w = World::with(
        |c| {
            c.limits.rate_per_sec = 5;
            c.limits.rate_burst = 5;
        },
        short_ack(),
    )
    .await;
    let mut log = StatusLog::watch(&w.alice, w.conv)
        .await
        .with_probe(&w.probe, w.alice.id());
    let mut sent = Vec::new();
    for i in 0..N {
        sent.push(
            w.alice
                .client
                .send(w.conv, format!("burst {i:02}"))
                .await
                .unwrap(),
        );
        tokio::time::sleep(Duration::from_millis(1000 / N as u64)).await;
    }
    // 25 over the burst at 5 per second: about 5 s.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        log.drain();
        if sent
            .iter()
            .all(|id| log.status(*id) == Some(Status::Success))
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not all {N} delivered: {:?}",
            sent.iter().map(|id| log.status(*id)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for id in &sent {
        let history = log.history(*id);
        assert!(!history.contains(&Status::Failed), "{id}: {history:?}");
    }
    assert_eq!(w.server_ids(), sent, "once each, in send order");
    assert_eq!(ids(&w.bob.confirmed_timeline(w.conv, N).await), sent);

    let sends = w.proxy.delivered(Dir::ToServer, "send");
    let refusals: Vec<Frame> = w
        .proxy
        .delivered(Dir::ToClient, "refused")
        .into_iter()
        .filter(|f| f.json()["code"] == "rate_limited")
        .collect();
    assert!(!refusals.is_empty(), "the rate limit never bit");
    assert!(
        sends.len() <= N + refusals.len(),
        "{} send frames for {N} messages and {} refusals",
        sends.len(),
        refusals.len()
    );
    // Nothing sent before a retry-after has passed.
    let t0 = sends[0].at;
    let trace: Vec<String> = w
        .proxy
        .frames()
        .iter()
        .filter(|f| f.ty == "send" || f.ty == "refused" || f.ty == "ack")
        .map(|f| {
            let v = f.json();
            let id = v["id"].as_str().unwrap_or_default();
            format!(
                "{:>6}ms {:?} {} {} {}",
                (f.at - t0).as_millis(),
                f.dir,
                f.ty,
                &id[id.len().saturating_sub(4)..],
                v["retry_after_ms"]
            )
        })
        .collect();
    for r in &refusals {
        let wait = Duration::from_millis(r.json()["retry_after_ms"].as_u64().unwrap());
        let until = r.at + wait.saturating_sub(SKEW);
        let mut earlier: HashSet<String> = HashSet::new();
        for s in &sends {
            let id = s.str_field("id").unwrap();
            let resend = earlier.contains(&id);
            earlier.insert(id.clone());
            let inside = s.at > r.at && s.at < until;
            let crossed = !resend && s.at < r.at + CROSSING;
            assert!(
                !inside || crossed,
                "send of {id} {:?} after a refusal asking to wait {wait:?} ({})\n{}",
                s.at - r.at,
                r.text,
                trace.join("\n")
            );
        }
    }
}
