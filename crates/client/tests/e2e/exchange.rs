//! Two users exchange messages: each sees its own go Sending → In-Flight →
//! Success, never ahead of the server, and both end with one timeline.

use crate::status::{assert_delivered_path, server_view, view, StatusLog};
use crate::support::{TestServer, User};
use chatsync_client::Status;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_exchange_messages_and_end_with_the_same_timeline() {
    let server = TestServer::start().await;
    let probe = server.probe().await;
    let alice = User::new(&server.url(), "alice").await;
    let bob = User::new(&server.url(), "bob").await;
    let conv = alice.create_conversation("lunch", &["bob"]).await;
    bob.knows(conv).await;

    let mut alice_log = StatusLog::watch(&alice, conv)
        .await
        .with_probe(&probe, alice.id());
    let mut bob_log = StatusLog::watch(&bob, conv)
        .await
        .with_probe(&probe, bob.id());

    let (mut alice_ids, mut bob_ids) = (Vec::new(), Vec::new());
    for i in 0..5 {
        let id = alice.client.send(conv, format!("alice {i}")).await.unwrap();
        // Committed to client storage before send returned.
        let stored = alice.client.item(id).await.unwrap();
        assert!(stored.is_some_and(|i| i.own), "{id} not in client storage");
        alice_ids.push(id);
        bob_ids.push(bob.client.send(conv, format!("bob {i}")).await.unwrap());
    }

    alice_log.wait_all(&alice_ids, Status::Success).await;
    bob_log.wait_all(&bob_ids, Status::Success).await;
    for id in &alice_ids {
        assert_delivered_path(*id, &alice_log.history(*id));
    }
    for id in &bob_ids {
        assert_delivered_path(*id, &bob_log.history(*id));
    }
    // The other side's messages arrive already stored: shown as Success.
    for id in &bob_ids {
        assert_eq!(alice_log.history(*id), [Status::Success], "incoming {id}");
    }

    let a = alice.confirmed_timeline(conv, 10).await;
    let b = bob.confirmed_timeline(conv, 10).await;
    assert_eq!(view(&a), view(&b), "alice and bob see different timelines");
    assert_eq!(view(&a), server_view(&probe.messages(conv)));
    let seqs: Vec<u64> = a.iter().map(|i| i.seq.unwrap().0).collect();
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>(), "seqs must be 1..=10");
    // Each sender's messages are in the order of its send calls.
    let alice_order: Vec<_> = a
        .iter()
        .filter(|i| i.sender == alice.id())
        .map(|i| i.id)
        .collect();
    let bob_order: Vec<_> = a
        .iter()
        .filter(|i| i.sender == bob.id())
        .map(|i| i.id)
        .collect();
    assert_eq!(alice_order, alice_ids);
    assert_eq!(bob_order, bob_ids);
    assert!(a.iter().all(|i| i.status == Status::Success));
    assert!(b.iter().all(|i| i.status == Status::Success));
    assert!(alice.client.sending().await.unwrap().is_empty());
}
