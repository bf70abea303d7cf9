//! S12 edit before the acknowledgement: acks are delayed; send "helo", edit
//! it to "hello", then to "hello!". Every member and the server end with
//! "hello!"; an older edit never overwrites a newer one (at any moment, in
//! any view, or on the wire); a retry after a transient failure carries
//! "hello!".
//!
//! Scaled: acks are delayed 1 s instead of 3 s. The transient failure is the
//! connection cut by the proxy on the first edit frame (which it drops).

use crate::proxy::{Action, Dir};
use crate::support::User;
use crate::world::{Watch, World};
use chatsync_client::core::Config;
use chatsync_client::Item;
use chatsync_protocol::{ActionKind, MessageId};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const TEXTS: [&str; 3] = ["helo", "hello", "hello!"];

fn rank(body: &str) -> usize {
    TEXTS
        .iter()
        .position(|t| *t == body)
        .unwrap_or_else(|| panic!("unexpected text {body:?}"))
}

/// The texts a view showed for `id`, in order, must only move forward.
fn assert_never_back(who: &str, states: &[Vec<Item>], id: MessageId) {
    let shown: Vec<&str> = states
        .iter()
        .filter_map(|s| s.iter().find(|i| i.id == id))
        .map(|i| i.body.as_str())
        .collect();
    assert!(
        shown.windows(2).all(|p| rank(p[0]) <= rank(p[1])),
        "{who}'s view went back to an older text: {shown:?}"
    );
    assert_eq!(shown.last(), Some(&"hello!"), "{who} ends with {shown:?}");
}

fn is_edit(v: &serde_json::Value) -> bool {
    v["action"]["action"] == "edit"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s12_edit_before_ack_newest_text_wins_everywhere() {
    let w = World::new(Config {
        ack_timeout: Duration::from_secs(3),
        ..crate::support::config()
    })
    .await;
    let cut = Arc::new(AtomicBool::new(false));
    let c = cut.clone();
    w.proxy.set_rule(Arc::new(move |dir, ty, text| {
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        match (dir, ty) {
            (Dir::ToServer, "send") if is_edit(&v) && !c.swap(true, Ordering::SeqCst) => {
                Action::DropAndCut
            }
            (Dir::ToClient, "ack") => Action::Delay(Duration::from_secs(1)),
            _ => Action::Forward,
        }
    }));
    let alice_watch = Watch::start(&w.alice.client, w.conv);
    let bob_watch = Watch::start(&w.bob.client, w.conv);
    let m = w.alice.client.send(w.conv, TEXTS[0]).await.unwrap();
    w.alice.client.edit(m, TEXTS[1]).await.unwrap();
    w.alice.client.edit(m, TEXTS[2]).await.unwrap();
    assert_eq!(
        w.alice.client.item(m).await.unwrap().unwrap().body,
        "hello!",
        "the newest edit shows at once"
    );

    let alice = &w.alice;
    crate::support::eventually("alice's message and edits confirmed", || async move {
        alice
            .client
            .sending()
            .await
            .unwrap()
            .is_empty()
            .then_some(())
    })
    .await;
    let bob = &w.bob;
    crate::support::eventually("bob to show hello!", || async move {
        let item = bob.client.item(m).await.unwrap()?;
        (item.body == "hello!").then_some(())
    })
    .await;
    assert!(cut.load(Ordering::SeqCst), "the transient failure happened");
    let a_states = alice_watch.finish().await;
    let b_states = bob_watch.finish().await;
    assert_never_back("alice", &a_states, m);
    assert_never_back("bob", &b_states, m);

    // On the wire: the edits reached the server oldest text first, and the
    // last one carries "hello!".
    let edits: Vec<String> = w
        .proxy
        .delivered(Dir::ToServer, "send")
        .iter()
        .map(|f| f.json())
        .filter(is_edit)
        .map(|v| v["body"].as_str().unwrap().to_string())
        .collect();
    assert!(!edits.is_empty());
    assert!(
        edits.windows(2).all(|p| rank(&p[0]) <= rank(&p[1])),
        "edits reached the server out of order: {edits:?}"
    );
    assert_eq!(edits.last().map(String::as_str), Some("hello!"));

    // The server: folding its history gives "hello!".
    let server = w.probe.messages(w.conv);
    let newest = server
        .iter()
        .filter(|e| {
            e.action
                .as_ref()
                .is_some_and(|a| a.target == m && a.kind == ActionKind::Edit)
        })
        .max_by_key(|e| e.seq)
        .expect("an edit is stored");
    assert_eq!(newest.body, "hello!");
    for (who, item) in [
        ("alice", w.alice.client.item(m).await.unwrap().unwrap()),
        ("bob", w.bob.client.item(m).await.unwrap().unwrap()),
    ] {
        assert_eq!(item.body, "hello!", "{who}");
        assert!(item.edited, "{who}: not marked edited");
    }
    let fresh = User::login(&w.server.url(), "bob").await;
    let reloaded = fresh.has(m).await;
    let fresh_ref = &fresh;
    crate::support::eventually("a fresh device to fold the edits", || async move {
        let item = fresh_ref.client.item(m).await.unwrap()?;
        (item.body == "hello!").then_some(())
    })
    .await;
    assert_eq!(reloaded.id, m);
}
