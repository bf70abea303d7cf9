//! The acknowledgement is lost with the connection right after the server
//! stored the message: the client reconnects by itself, resends, and the
//! server's deduplication keeps exactly one copy.

use crate::proxy::{cut_on_first, Dir, Proxy};
use crate::status::{assert_delivered_path, server_view, view, StatusLog};
use crate::support::{TestServer, User};
use chatsync_client::Status;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_ack_is_recovered_by_resending_without_duplicates() {
    let mut server = TestServer::start().await;
    let probe = server.probe().await;
    // alice reaches the server through the proxy; bob directly.
    let proxy = Proxy::start(server.addr, cut_on_first(Dir::ToClient, "ack")).await;
    let alice = User::new(&proxy.url(), "alice").await;
    let bob = User::new(&server.url(), "bob").await;
    let conv = alice.create_conversation("flaky", &["bob"]).await;
    bob.knows(conv).await;
    let connections_before = proxy.connections();

    let mut log = StatusLog::watch(&alice, conv)
        .await
        .with_probe(&probe, alice.id());
    let mut bob_log = StatusLog::watch(&bob, conv).await;
    // Pipelined: the first ack is dropped and the link cut; the others may
    // or may not have been stored by then.
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            alice
                .client
                .send(conv, format!("once only {i}"))
                .await
                .unwrap(),
        );
    }

    log.wait_all(&ids, Status::Success).await;
    assert_eq!(proxy.cuts(), 1, "the proxy never cut the connection");
    assert!(
        proxy.connections() > connections_before,
        "alice never reconnected through the proxy"
    );
    for id in &ids {
        let history = log.history(*id);
        assert!(!history.contains(&Status::Failed), "{id}: {history:?}");
        assert_delivered_path(*id, &history);
    }

    // bob has each exactly once, in send order.
    bob_log
        .wait_for("bob to receive all three", |l| {
            ids.iter().all(|id| l.status(*id) == Some(Status::Success))
        })
        .await;
    let timeline = bob.confirmed_timeline(conv, 3).await;
    let got: Vec<_> = timeline.iter().map(|i| i.id).collect();
    assert_eq!(
        got, ids,
        "bob's timeline must hold each message once, in order"
    );

    // The server holds exactly one copy of each (read after a clean stop).
    server.stop().await;
    let messages = probe.messages(conv);
    let stored: Vec<_> = messages.iter().map(|m| m.id).collect();
    assert_eq!(
        stored, ids,
        "the server must store each message exactly once"
    );
    let fresh = chatsync_server::open_store(&server.config.data_dir).unwrap();
    let again = chatsync_server::ServerStore::messages_after(
        &fresh,
        conv,
        chatsync_protocol::Seq::ZERO,
        100,
    )
    .unwrap();
    assert_eq!(again, messages);
    // And bob's device holds exactly what the server holds.
    assert_eq!(view(&bob.timeline(conv).await), server_view(&messages));
}
