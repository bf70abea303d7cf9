//! S9 a new message during reconnect: m1 is queued while the link is down;
//! m2 is sent while the connection is being re-established, before the
//! backlog flushed. seq(m1) < seq(m2) everywhere.
//!
//! The proxy holds the server's frames (the `welcome` among them) while the
//! new connection opens, so m2 is sent while the client is still
//! connecting. The client's window is 1, so the backlog cannot leave in one
//! burst: m1b also waits for m1's ack while m2 is already queued.

use crate::proxy::Dir;
use crate::status::{assert_delivered_path, StatusLog};
use crate::support::eventually;
use crate::world::{ids, short_ack, World};
use chatsync_client::core::Config;
use chatsync_client::{ConnectionState, Status};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s09_message_sent_during_reconnect_goes_after_the_backlog() {
    let w = World::new(Config {
        window: 1,
        ..short_ack()
    })
    .await;
    let mut log = StatusLog::watch(&w.alice, w.conv)
        .await
        .with_probe(&w.probe, w.alice.id());
    w.proxy.set_down(true);
    w.alice.disconnected().await;
    let m1 = w
        .alice
        .client
        .send(w.conv, "m1 (queued offline)")
        .await
        .unwrap();
    let m1b = w
        .alice
        .client
        .send(w.conv, "m1b (queued offline)")
        .await
        .unwrap();

    // The link comes back, but the server's answers are held: the client
    // has sent `hello` and waits for `welcome`.
    w.proxy.hold(Dir::ToClient, true);
    let hellos = w.proxy.count(Dir::ToServer, "hello");
    w.proxy.set_down(false);
    let proxy = &w.proxy;
    eventually("the client to say hello again", || async move {
        (proxy.count(Dir::ToServer, "hello") > hellos).then_some(())
    })
    .await;
    let state = *w.alice.client.connection().borrow();
    assert_ne!(state, ConnectionState::Connected, "welcome was held");
    let m2 = w
        .alice
        .client
        .send(w.conv, "m2 (during reconnect)")
        .await
        .unwrap();
    w.proxy.hold(Dir::ToClient, false);

    let all = [m1, m1b, m2];
    log.wait_all(&all, Status::Success).await;
    for id in all {
        assert_delivered_path(id, &log.history(id));
    }
    let seq = |id| w.probe.seq_of(w.conv, id).unwrap();
    assert!(seq(m1) < seq(m1b) && seq(m1b) < seq(m2), "server order");
    assert_eq!(w.server_ids(), all);
    assert_eq!(ids(&w.alice.confirmed_timeline(w.conv, 3).await), all);
    assert_eq!(ids(&w.bob.confirmed_timeline(w.conv, 3).await), all);
    // The order on the wire too: m1, m1b, then m2, once each.
    let sent: Vec<_> = w
        .proxy
        .delivered(Dir::ToServer, "send")
        .iter()
        .map(|f| f.str_field("id").unwrap())
        .collect();
    let expected: Vec<String> = all.iter().map(|id| id.to_string()).collect();
    assert_eq!(sent, expected);
}
