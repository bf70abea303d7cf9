//! Failed messages: a refusal does not block later messages; a retry
//! resends with the same id (never a duplicate); discard removes one.
//!
//! To get a real server refusal out of the real client, messages are queued
//! while the server is down and the server comes back with a smaller body
//! limit than the one the client last learnt.

use crate::status::{assert_delivered_path, StatusLog};
use crate::support::{TestServer, User};
use chatsync_client::{ClientError, Status};
use chatsync_protocol::ErrorCode;

const SMALL: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_message_can_be_retried_with_its_id_or_discarded() {
    let mut server = TestServer::start().await;
    let probe = server.probe().await;
    let alice = User::new(&server.url(), "alice").await;
    let bob = User::new(&server.url(), "bob").await;
    let conv = alice.create_conversation("limits moved", &["bob"]).await;
    bob.knows(conv).await;
    let mut log = StatusLog::watch(&alice, conv)
        .await
        .with_probe(&probe, alice.id());

    server.stop().await;
    alice.disconnected().await;
    let long = "ü".repeat(SMALL); // 100 bytes: fine for the old limit
    let big = alice.client.send(conv, long.clone()).await.unwrap();
    let big2 = alice.client.send(conv, long.clone()).await.unwrap();
    let ok = alice.client.send(conv, "short").await.unwrap();

    server
        .restart_with(|c| c.limits.max_body_bytes = SMALL)
        .await;
    log.wait_for("the long ones Failed and the short one Success", |l| {
        l.status(big) == Some(Status::Failed)
            && l.status(big2) == Some(Status::Failed)
            && l.status(ok) == Some(Status::Success)
    })
    .await;
    assert_eq!(log.history(big), [Status::Sending, Status::Failed]);
    assert_delivered_path(ok, &log.history(ok));
    let failure = log.item(big).unwrap().failure.clone().expect("a reason");
    assert_eq!(failure.code, ErrorCode::TooLarge);
    assert!(!failure.retryable);
    assert!(!failure.message.is_empty());
    let stored = alice.client.item(big).await.unwrap().unwrap();
    assert_eq!(stored.status, Status::Failed);
    assert_eq!(stored.failure, Some(failure));
    assert!(alice.client.sending().await.unwrap().is_empty());

    // Only Failed messages can be retried or discarded.
    assert!(matches!(
        alice.client.retry(ok).await,
        Err(ClientError::Action(_))
    ));
    assert!(matches!(
        alice.client.discard(ok).await,
        Err(ClientError::Action(_))
    ));
    assert_eq!(
        alice.client.item(ok).await.unwrap().unwrap().status,
        Status::Success
    );

    // Discard: gone from the timeline and from client storage.
    alice.client.discard(big2).await.unwrap();
    log.wait_for("big2 to be removed", |l| l.removed().contains(&big2))
        .await;
    assert!(alice.client.item(big2).await.unwrap().is_none());
    assert!(alice.timeline(conv).await.iter().all(|i| i.id != big2));

    // A retry under the same small limit is refused again, same id.
    alice.client.retry(big).await.unwrap();
    log.wait_for("the retry to be refused again", |l| {
        l.history(big).len() == 4
    })
    .await;
    assert_eq!(
        log.history(big),
        [
            Status::Sending,
            Status::Failed,
            Status::Sending,
            Status::Failed
        ]
    );

    // The limit is raised again: now the retry goes through, once.
    server.stop().await;
    alice.disconnected().await;
    server
        .restart_with(|c| c.limits.max_body_bytes = 4096)
        .await;
    alice.client.retry(big).await.unwrap();
    log.wait_for("the retried message to become Success", |l| {
        l.status(big) == Some(Status::Success)
    })
    .await;
    let history = log.history(big);
    assert_delivered_path(big, &history[4..]);
    let ok_seq = probe.seq_of(conv, ok).unwrap();
    let big_seq = probe.seq_of(conv, big).unwrap();
    assert!(
        big_seq > ok_seq,
        "a retry goes after what was already confirmed"
    );
    let ids: Vec<_> = probe.messages(conv).iter().map(|m| m.id).collect();
    assert_eq!(
        ids,
        [ok, big],
        "the server must hold each once, and never big2"
    );
    assert_eq!(bob.has(big).await.body.as_bytes(), long.as_bytes());
    let at_bob: Vec<_> = bob
        .confirmed_timeline(conv, 2)
        .await
        .iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(at_bob, [ok, big]);
}
