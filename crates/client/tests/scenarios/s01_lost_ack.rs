//! S1 lost acknowledgement: the server stores m1, the connection drops
//! before its ack arrives (variant: the ack is delayed past the client's ack
//! timeout). The resend gets the original ack. Exactly one m1 on the server
//! and at the recipient; the sender shows Success, never Failed; nothing more
//! is sent for m1 once its ack arrived.

use crate::proxy::{cut_on_first, Action, Dir};
use crate::status::{assert_delivered_path, StatusLog};
use crate::support::TIMEOUT;
use crate::world::{acks_of, sends_of, short_ack, World};
use chatsync_client::Status;
use chatsync_protocol::MessageId;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// After m1 settled: one copy on the server and at bob, Success at alice,
/// and (watched for longer than the ack timeout) no `send` of m1 after the
/// first ack that reached alice.
async fn assert_settled_once(w: &World, log: &mut StatusLog, m1: MessageId) {
    log.wait_all(&[m1], Status::Success).await;
    let history = log.history(m1);
    assert!(!history.contains(&Status::Failed), "{history:?}");
    assert_delivered_path(m1, &history);
    // Longer than the 1 s ack timeout: a stale timer would resend by now.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let first_ack = acks_of(&w.proxy, m1)
        .first()
        .map(|f| f.at)
        .expect("no ack of m1 reached alice");
    let late: Vec<_> = sends_of(&w.proxy, m1)
        .into_iter()
        .filter(|f| f.at > first_ack)
        .collect();
    assert!(late.is_empty(), "m1 was sent again after its ack: {late:?}");
    assert_eq!(w.server_ids(), [m1], "the server must hold m1 exactly once");
    let at_bob = w.bob.confirmed_timeline(w.conv, 1).await;
    assert_eq!(crate::world::ids(&at_bob), [m1], "bob must hold m1 once");
    let seqs: Vec<_> = acks_of(&w.proxy, m1)
        .iter()
        .map(|f| f.json()["seq"].as_u64())
        .collect();
    assert!(
        seqs.windows(2).all(|p| p[0] == p[1]),
        "acks of m1 disagree: {seqs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s01_lost_ack_connection_cut_after_store() {
    let w = World::new(short_ack()).await;
    let mut log = StatusLog::watch(&w.alice, w.conv)
        .await
        .with_probe(&w.probe, w.alice.id());
    w.proxy.set_rule(cut_on_first(Dir::ToClient, "ack"));
    let m1 = w.alice.client.send(w.conv, "m1").await.unwrap();
    assert_settled_once(&w, &mut log, m1).await;
    assert_eq!(w.proxy.cuts(), 1, "the ack was never cut");
    assert_eq!(
        sends_of(&w.proxy, m1).len(),
        2,
        "m1 is sent once, then resent once after the reconnect"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s01_lost_ack_delayed_past_ack_timeout() {
    let w = World::new(short_ack()).await;
    let mut log = StatusLog::watch(&w.alice, w.conv)
        .await
        .with_probe(&w.probe, w.alice.id());
    // The first ack is held 1.6 s, past the 1 s ack timeout (the frames
    // behind it wait too, as on a real connection).
    let fired = Arc::new(AtomicBool::new(false));
    let f = fired.clone();
    w.proxy.set_rule(Arc::new(move |dir, ty, _| {
        if dir == Dir::ToClient && ty == "ack" && !f.swap(true, Ordering::SeqCst) {
            Action::Delay(Duration::from_millis(1600))
        } else {
            Action::Forward
        }
    }));
    let started = tokio::time::Instant::now();
    let m1 = w.alice.client.send(w.conv, "m1").await.unwrap();
    assert_settled_once(&w, &mut log, m1).await;
    assert!(fired.load(Ordering::SeqCst));
    assert!(started.elapsed() < TIMEOUT);
    let sends = sends_of(&w.proxy, m1);
    assert!(
        sends.len() >= 2,
        "the ack timeout should have resent m1 before the late ack: {sends:?}"
    );
    assert!(
        acks_of(&w.proxy, m1).len() >= 2,
        "every resend is answered with the original ack"
    );
    assert_eq!(w.proxy.cuts(), 0, "no connection was cut");
}
