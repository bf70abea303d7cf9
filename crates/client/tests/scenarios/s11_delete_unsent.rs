//! S11 delete of an unsent message: offline, send "secret" and "hi",
//! delete "secret", restart the client (dropped and reopened from the same
//! data directory), go online. The recipient only ever receives "hi"; no
//! frame carrying "secret" ever reaches the server. Variant: "secret" was
//! already stored but its ack was lost when it was deleted: the deletion
//! reaches the server and both sides agree it is deleted.
//!
//! (The SIGKILL form of the restart is in crates/cli/tests/scenarios_kill.rs.)

use crate::proxy::{Action, Dir};
use crate::status::StatusLog;
use crate::world::{ids, short_ack, to_server, Watch, World};
use chatsync_client::Status;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s11_delete_of_unsent_message_never_reaches_the_server() {
    let w = World::new(short_ack()).await;
    let bob_watch = Watch::start(&w.bob.client, w.conv);
    w.proxy.set_down(true);
    w.alice.disconnected().await;
    let secret = w.alice.client.send(w.conv, "secret").await.unwrap();
    let hi = w.alice.client.send(w.conv, "hi").await.unwrap();
    let deleted = w.alice.client.delete(secret).await.unwrap();
    assert_eq!(deleted, None, "an unsent message is removed locally");
    assert!(w.alice.client.item(secret).await.unwrap().is_none());

    // Restart: drop the client, reopen it from its storage, offline.
    let World {
        server,
        probe,
        proxy,
        alice,
        bob,
        conv,
    } = w;
    let alice = alice.close().await.reopen_with(short_ack()).await;
    assert_eq!(alice.client.sending().await.unwrap(), [hi]);
    let mut log = StatusLog::watch(&alice, conv)
        .await
        .with_probe(&probe, alice.id());
    proxy.set_down(false);
    log.wait_all(&[hi], Status::Success).await;
    // (The Sending state was in the subscription's snapshot.)
    assert_eq!(log.history(hi).last(), Some(&Status::Success));
    assert!(!log.history(hi).contains(&Status::Failed));

    let states = bob_watch.finish().await;
    for state in &states {
        assert!(
            state.iter().all(|i| i.id != secret && i.body != "secret"),
            "bob saw the deleted message: {state:#?}"
        );
    }
    assert_eq!(ids(&bob.confirmed_timeline(conv, 1).await), [hi]);
    let leaked: Vec<_> = to_server(&proxy)
        .into_iter()
        .filter(|f| f.text.contains("secret") || f.text.contains(&secret.to_string()))
        .collect();
    assert!(leaked.is_empty(), "frames carrying the secret: {leaked:?}");
    let stored: Vec<_> = probe.messages(conv).iter().map(|m| m.id).collect();
    assert_eq!(stored, [hi]);
    assert_eq!(ids(&alice.timeline(conv).await), [hi]);
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s11_delete_after_lost_ack_reaches_the_server() {
    let w = World::new(short_ack()).await;
    let mut bob_log = StatusLog::watch(&w.bob, w.conv).await;
    // The ack of "secret" is lost with the connection, and the link stays
    // down (every later frame is cut too) until `cut` is cleared.
    let secret_id: Arc<Mutex<Option<String>>> = Arc::default();
    let cut = Arc::new(AtomicBool::new(false));
    let fired = AtomicBool::new(false);
    let (s, c) = (secret_id.clone(), cut.clone());
    w.proxy.set_rule(Arc::new(move |dir, ty, text| {
        if c.load(Ordering::SeqCst) {
            return Action::DropAndCut;
        }
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        if dir == Dir::ToServer && ty == "send" && v["body"] == "secret" {
            *s.lock().unwrap() = v["id"].as_str().map(str::to_string);
        }
        let is_secret = s.lock().unwrap().as_deref() == v["id"].as_str();
        if dir == Dir::ToClient && ty == "ack" && is_secret && !fired.swap(true, Ordering::SeqCst) {
            c.store(true, Ordering::SeqCst);
            return Action::DropAndCut;
        }
        Action::Forward
    }));
    let secret = w.alice.client.send(w.conv, "secret").await.unwrap();
    let (probe, conv) = (w.probe.clone(), w.conv);
    crate::support::eventually("the server to store the secret", || {
        let probe = probe.clone();
        async move { probe.seq_of(conv, secret) }
    })
    .await;
    w.alice.disconnected().await;
    assert_eq!(w.alice.client.sending().await.unwrap(), [secret]);

    // Deleted while its ack is lost: it may be on the server, so the
    // delete must go there.
    let delete = w.alice.client.delete(secret).await.unwrap();
    let delete = delete.expect("a transmitted message is deleted by an action");
    let shown = w.alice.client.item(secret).await.unwrap().unwrap();
    assert!(shown.deleted && shown.body.is_empty(), "{shown:?}");

    cut.store(false, Ordering::SeqCst);
    let alice = &w.alice;
    crate::support::eventually("alice's secret and its delete confirmed", || async move {
        alice
            .client
            .sending()
            .await
            .unwrap()
            .is_empty()
            .then_some(())
    })
    .await;

    // The server: the message, erased, then the delete.
    let server = w.probe.messages(w.conv);
    assert_eq!(server.len(), 2, "{server:#?}");
    assert_eq!(server[0].id, secret);
    assert_eq!(server[0].body, "", "the server erased the text");
    assert_eq!(server[1].id, delete);
    assert_eq!(server[1].action.as_ref().map(|a| a.target), Some(secret));
    // alice: deleted; bob: deleted (he had received the text before).
    let mine = w.alice.client.item(secret).await.unwrap().unwrap();
    assert!(mine.deleted && mine.body.is_empty(), "{mine:?}");
    bob_log
        .wait_for("bob to see the secret deleted", |l| {
            l.item(secret).is_some_and(|i| i.deleted)
        })
        .await;
    let theirs = w.bob.has(secret).await;
    assert!(theirs.deleted && theirs.body.is_empty(), "{theirs:?}");
    bob_log.drain();
    assert!(bob_log.removed().is_empty());
    assert_eq!(
        ids(&w.bob.timeline(w.conv).await),
        [secret],
        "bob shows one placeholder"
    );
}
