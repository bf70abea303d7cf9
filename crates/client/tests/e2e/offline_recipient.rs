//! A message to recipients who are offline stays In-Flight until every one
//! of them has caught up, then becomes Success.

use crate::status::StatusLog;
use crate::support::{eventually, register, TestServer, User};
use chatsync_client::Status;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_stays_in_flight_until_every_offline_recipient_catches_up() {
    let server = TestServer::start().await;
    let probe = server.probe().await;
    let alice = User::new(&server.url(), "alice").await;
    // bob has an account but has never opened a client.
    let bob_id = register(&server.url(), "bob").await;
    let carol = User::new(&server.url(), "carol").await;
    let conv = alice.create_conversation("trip", &["bob", "carol"]).await;
    carol.knows(conv).await;
    // carol's client is shut down (its storage stays).
    let carol = carol.close().await;

    let mut log = StatusLog::watch(&alice, conv)
        .await
        .with_probe(&probe, alice.id());
    let id = alice.client.send(conv, "are you there?").await.unwrap();
    log.wait_for("the message to be In-Flight", |l| {
        l.status(id) == Some(Status::InFlight)
    })
    .await;
    let seq = probe.seq_of(conv, id).unwrap();

    log.idle().await;
    assert_eq!(log.history(id), [Status::Sending, Status::InFlight]);
    let stored = alice.client.item(id).await.unwrap().unwrap();
    assert_eq!(stored.status, Status::InFlight, "nobody else has it yet");

    // bob opens a client for the first time and catches up.
    let bob = User::login(&server.url(), "bob").await;
    assert_eq!(bob.has(id).await.body, "are you there?");
    let p = &probe;
    eventually("the server to record bob's delivery", move || async move {
        (p.delivered(conv, bob_id) >= seq).then_some(())
    })
    .await;
    // carol still lacks it: still In-Flight.
    log.idle().await;
    assert_eq!(log.history(id), [Status::Sending, Status::InFlight]);
    assert_eq!(
        alice.client.item(id).await.unwrap().unwrap().status,
        Status::InFlight,
        "carol has not got it yet"
    );

    // carol comes back and catches up: now every recipient has it.
    let carol = carol.open().await;
    assert_eq!(carol.has(id).await.body, "are you there?");
    log.wait_for("the message to become Success", |l| {
        l.status(id) == Some(Status::Success)
    })
    .await;
    assert_eq!(
        log.history(id),
        [Status::Sending, Status::InFlight, Status::Success]
    );
    assert_eq!(
        alice.client.item(id).await.unwrap().unwrap().status,
        Status::Success
    );
    drop(bob);
}
