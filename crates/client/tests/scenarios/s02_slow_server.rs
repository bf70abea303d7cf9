//! S2 slow server, many retries: every reply is delayed well past the
//! client's ack timeout, so several resends of one message race each other
//! on the server. One stored copy; every reply carries the same sequence
//! number; the recipient sees it once.
//!
//! Scaled from the report's 5 s delay and 2 s timeout to 2.5 s and 1 s
//! (same ratio; real time, so the test stays short).

use crate::proxy::{delay_all, Dir};
use crate::status::{assert_delivered_path, StatusLog};
use crate::world::{acks_of, ids, sends_of, short_ack, World};
use chatsync_client::Status;
use std::time::Duration;

const DELAY: Duration = Duration::from_millis(2500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s02_slow_server_racing_resends_store_one_copy() {
    let w = World::new(short_ack()).await; // ack timeout 1 s
    let mut log = StatusLog::watch(&w.alice, w.conv)
        .await
        .with_probe(&w.probe, w.alice.id());
    let mut bob_log = StatusLog::watch(&w.bob, w.conv).await;
    w.proxy.set_rule(delay_all(Dir::ToClient, DELAY));
    let m1 = w.alice.client.send(w.conv, "slow but sure").await.unwrap();

    log.wait_all(&[m1], Status::Success).await;
    let history = log.history(m1);
    assert!(!history.contains(&Status::Failed), "{history:?}");
    assert_delivered_path(m1, &history);
    // Let the answers to the last resends arrive too.
    tokio::time::sleep(DELAY).await;

    let sends = sends_of(&w.proxy, m1);
    assert!(
        sends.len() >= 3,
        "with a 1 s timeout and 2.5 s replies, m1 should be sent at least 3 times, was {}",
        sends.len()
    );
    let acks = acks_of(&w.proxy, m1);
    assert_eq!(
        acks.len(),
        sends.len(),
        "every send of m1 is answered with an ack"
    );
    let seqs: Vec<u64> = acks
        .iter()
        .map(|f| f.json()["seq"].as_u64().unwrap())
        .collect();
    assert!(seqs.iter().all(|s| *s == seqs[0]), "acks differ: {seqs:?}");
    let server = w.probe.messages(w.conv);
    assert_eq!(ids_of(&server), [m1], "one stored copy");
    assert_eq!(server[0].seq.0, seqs[0], "the ack's seq is the stored one");

    bob_log
        .wait_for("bob to have m1", |l| l.status(m1).is_some())
        .await;
    bob_log.drain();
    assert_eq!(bob_log.history(m1), [Status::Success], "bob saw m1 once");
    assert_eq!(ids(&w.bob.timeline(w.conv).await), [m1]);
}

fn ids_of(messages: &[chatsync_protocol::WireMessage]) -> Vec<chatsync_protocol::MessageId> {
    messages.iter().map(|m| m.id).collect()
}
