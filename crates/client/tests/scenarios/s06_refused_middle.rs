//! S6 refused message in the middle: a, b (refused for good), c queued in
//! order. c is not blocked; a and c reach every member in order; b stays
//! visible as Failed with its reason; after an edit and a retry, every
//! member and the server agree on one order.
//!
//! b is made "too large for good" the way a real deployment does it: it is
//! queued while the server is down, and the server comes back with a
//! smaller body limit than the one the client last learnt.

use crate::status::{assert_delivered_path, StatusLog};
use crate::support::User;
use crate::world::{ids, short_ack, World};
use chatsync_client::Status;
use chatsync_protocol::ErrorCode;

const SMALL: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s06_refused_message_does_not_block_and_retry_after_edit_agrees() {
    let mut w = World::new(short_ack()).await;
    let mut log = StatusLog::watch(&w.alice, w.conv)
        .await
        .with_probe(&w.probe, w.alice.id());
    w.server.stop().await;
    w.alice.disconnected().await;
    let a = w.alice.client.send(w.conv, "a").await.unwrap();
    let b = w
        .alice
        .client
        .send(w.conv, "b".repeat(SMALL + 1))
        .await
        .unwrap();
    let c = w.alice.client.send(w.conv, "c").await.unwrap();
    w.server
        .restart_with(|cfg| cfg.limits.max_body_bytes = SMALL)
        .await;

    log.wait_for("a, c Success and b Failed", |l| {
        l.status(a) == Some(Status::Success)
            && l.status(c) == Some(Status::Success)
            && l.status(b) == Some(Status::Failed)
    })
    .await;
    assert_delivered_path(a, &log.history(a));
    assert_delivered_path(c, &log.history(c));
    assert_eq!(log.history(b), [Status::Sending, Status::Failed]);
    let failure = log.item(b).unwrap().failure.clone().expect("a reason");
    assert_eq!(failure.code, ErrorCode::TooLarge);
    assert!(!failure.retryable);
    assert!(failure.message.contains(&SMALL.to_string()), "{failure:?}");
    // b stays visible where it was, between a and c.
    let shown = w.alice.timeline(w.conv).await;
    let b_item = shown.iter().find(|i| i.id == b).expect("b is still shown");
    assert_eq!(b_item.status, Status::Failed);
    assert_eq!(w.server_ids(), [a, c]);
    let at_bob = w.bob.confirmed_timeline(w.conv, 2).await;
    assert_eq!(ids(&at_bob), [a, c], "bob has a and c, in order");

    // Edit the Failed message (rewritten in place: it never reached the
    // server), then retry it: same id, after everything confirmed.
    let edited = w.alice.client.edit(b, "b, shorter").await.unwrap();
    assert_eq!(edited, None, "a Failed message is rewritten in place");
    let shown = w.alice.client.item(b).await.unwrap().unwrap();
    assert_eq!(shown.body, "b, shorter");
    assert_eq!(shown.status, Status::Failed);
    w.alice.client.retry(b).await.unwrap();
    log.wait_all(&[a, b, c], Status::Success).await;

    let order = [a, c, b];
    assert_eq!(w.server_ids(), order, "server order");
    let server = w.probe.messages(w.conv);
    assert_eq!(server[2].body, "b, shorter");
    assert_eq!(
        ids(&w.alice.confirmed_timeline(w.conv, 3).await),
        order,
        "alice's order"
    );
    let at_bob = w.bob.confirmed_timeline(w.conv, 3).await;
    assert_eq!(ids(&at_bob), order, "bob's order");
    assert_eq!(at_bob[2].body, "b, shorter");
    // A fresh device reloading everything from the server agrees too.
    let fresh = User::login(&w.server.url(), "bob").await;
    assert_eq!(ids(&fresh.confirmed_timeline(w.conv, 3).await), order);
}
