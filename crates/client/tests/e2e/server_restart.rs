//! The server is down: messages stay Sending, and go out by themselves, in
//! order, once it is back on the same address with the same data.

use crate::status::{assert_delivered_path, StatusLog};
use crate::support::{TestServer, User};
use chatsync_client::Status;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_queued_while_the_server_is_down_go_out_in_order_when_it_returns() {
    let mut server = TestServer::start().await;
    let probe = server.probe().await;
    let alice = User::new(&server.url(), "alice").await;
    let bob = User::new(&server.url(), "bob").await;
    let conv = alice.create_conversation("outage", &["bob"]).await;
    bob.knows(conv).await;
    let mut log = StatusLog::watch(&alice, conv)
        .await
        .with_probe(&probe, alice.id());

    server.stop().await;
    alice.disconnected().await;
    let mut ids = Vec::new();
    for body in ["first", "second", "third"] {
        ids.push(alice.client.send(conv, body).await.unwrap());
    }
    assert_eq!(alice.client.sending().await.unwrap(), ids);

    // Reconnect attempts keep failing meanwhile: that is not a failure.
    log.idle().await;
    for id in &ids {
        assert_eq!(
            log.history(*id),
            [Status::Sending],
            "{id} while the server is down"
        );
    }
    assert_eq!(alice.client.sending().await.unwrap(), ids);
    assert!(probe.messages(conv).is_empty());

    // Back on the same address and data; no call on the client.
    server.restart().await;
    log.wait_all(&ids, Status::Success).await;
    for id in &ids {
        assert_delivered_path(*id, &log.history(*id));
    }
    let seqs: Vec<_> = ids
        .iter()
        .map(|id| probe.seq_of(conv, *id).unwrap())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "server order {seqs:?} differs from send order"
    );
    assert_eq!(probe.messages(conv).len(), 3);
    let b = bob.confirmed_timeline(conv, 3).await;
    let got: Vec<_> = b.iter().map(|i| (i.id, i.body.as_str())).collect();
    let want: Vec<_> = ids
        .iter()
        .copied()
        .zip(["first", "second", "third"])
        .collect();
    assert_eq!(got, want);
    assert!(alice.client.sending().await.unwrap().is_empty());
}
