//! S10 lost wake-up: acks are delayed 500 ms; m2 is sent while m1 is in
//! flight; the person does nothing else: m2 reaches Success with no further
//! trigger. Variant: the link is black-holed and silently unblocked (no
//! close, no connectivity event): a queued message goes out within the ack
//! timeout (configured short: 1 s).

use crate::proxy::{Action, Dir};
use crate::status::{assert_delivered_path, StatusLog};
use crate::world::{acks_of, sends_of, short_ack, World};
use chatsync_client::core::Config;
use chatsync_client::Status;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s10_lost_wakeup_message_sent_while_another_is_in_flight() {
    // A window of one: m2 can only leave when m1's ack wakes the syncer.
    let w = World::new(Config {
        window: 1,
        ..short_ack()
    })
    .await;
    let mut log = StatusLog::watch(&w.alice, w.conv)
        .await
        .with_probe(&w.probe, w.alice.id());
    w.proxy.set_rule(Arc::new(|dir, ty, _| {
        if dir == Dir::ToClient && ty == "ack" {
            Action::Delay(Duration::from_millis(500))
        } else {
            Action::Forward
        }
    }));
    let m1 = w.alice.client.send(w.conv, "m1").await.unwrap();
    let m2 = w.alice.client.send(w.conv, "m2").await.unwrap();
    log.wait_all(&[m1, m2], Status::Success).await;
    assert_delivered_path(m1, &log.history(m1));
    assert_delivered_path(m2, &log.history(m2));
    assert_eq!(w.server_ids(), [m1, m2]);
    // m2 left right after m1's ack, not after an ack timeout.
    let ack1 = acks_of(&w.proxy, m1)[0].at;
    let send2 = sends_of(&w.proxy, m2)[0].at;
    assert!(
        send2 >= ack1 && send2 - ack1 < Duration::from_millis(500),
        "m2 left {:?} after m1's ack",
        send2.checked_duration_since(ack1)
    );
    assert_eq!(sends_of(&w.proxy, m1).len(), 1);
    assert_eq!(sends_of(&w.proxy, m2).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s10_lost_wakeup_link_silently_blackholed_then_unblocked() {
    let cfg = short_ack();
    let ack_timeout = cfg.ack_timeout;
    let w = World::new(cfg).await;
    let mut log = StatusLog::watch(&w.alice, w.conv)
        .await
        .with_probe(&w.probe, w.alice.id());
    let connections = w.proxy.connections();
    w.proxy.blackhole(Dir::ToServer, true);
    w.proxy.blackhole(Dir::ToClient, true);
    let m = w.alice.client.send(w.conv, "into the void").await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let unblocked = tokio::time::Instant::now();
    w.proxy.blackhole(Dir::ToServer, false);
    w.proxy.blackhole(Dir::ToClient, false);
    log.wait_for("the message to be acknowledged", |l| {
        l.status(m).is_some_and(Status::is_confirmed)
    })
    .await;
    let took = unblocked.elapsed();
    assert!(
        took <= ack_timeout + Duration::from_millis(500),
        "the message went out {took:?} after the link came back (ack timeout {ack_timeout:?})"
    );
    log.wait_all(&[m], Status::Success).await;
    assert_delivered_path(m, &log.history(m));
    assert_eq!(w.server_ids(), [m]);
    assert_eq!(
        w.proxy.connections(),
        connections,
        "recovered on the same connection, without a connectivity event"
    );
}
