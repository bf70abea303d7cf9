//! S3 own echo before the acknowledgement: the server's fan-out of the
//! sender's own message reaches the sender's session before (or instead
//! of) the direct acknowledgement. The sender's view holds the message
//! exactly once at every moment and never shows Failed; the sender's second
//! device shows it once, as its own.
//!
//! The reference server never echoes to the sending connection (it pushes
//! to the account's *other* connections), so the echo is forged by the
//! proxy from the ack: a `message` push with the stored message, sent just
//! before the ack (`before:` bodies) or in its place (`instead:` bodies).

use crate::proxy::{Action, Dir};
use crate::status::StatusLog;
use crate::support::User;
use crate::world::{acks_of, assert_once_at_every_moment, ids, sends_of, short_ack, Watch, World};
use chatsync_client::Status;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s03_own_echo_before_or_instead_of_ack() {
    let w = World::new(short_ack()).await;
    // alice's second device, directly on the server.
    let alice2 = User::login(&w.server.url(), "alice").await;
    alice2.knows(w.conv).await;

    let (me, name) = (w.alice.id().to_string(), w.alice.name.clone());
    let bodies: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let b = bodies.clone();
    w.proxy.set_rule(Arc::new(move |dir, ty, text| {
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        if dir == Dir::ToServer && ty == "send" {
            let id = v["id"].as_str().unwrap().to_string();
            let body = v["body"].as_str().unwrap().to_string();
            b.lock().unwrap().insert(id, body);
            return Action::Forward;
        }
        if dir != Dir::ToClient || ty != "ack" {
            return Action::Forward;
        }
        let Some(body) = b.lock().unwrap().get(v["id"].as_str().unwrap()).cloned() else {
            return Action::Forward;
        };
        let echo = serde_json::json!({
            "type": "message",
            "message": {
                "id": v["id"], "conversation": v["conversation"], "seq": v["seq"],
                "sender": me, "sender_name": name, "body": body,
                "server_ts": v["server_ts"],
            }
        })
        .to_string();
        if body.starts_with("before:") {
            Action::Replace(vec![
                (Duration::ZERO, echo),
                (Duration::from_millis(300), text.to_string()),
            ])
        } else {
            Action::Replace(vec![(Duration::ZERO, echo)])
        }
    }));

    let mut log = StatusLog::watch(&w.alice, w.conv)
        .await
        .with_probe(&w.probe, w.alice.id());
    let watch = Watch::start(&w.alice.client, w.conv);
    let before = w.alice.client.send(w.conv, "before: hi").await.unwrap();
    let instead = w.alice.client.send(w.conv, "instead: hi").await.unwrap();
    log.wait_all(&[before, instead], Status::Success).await;
    // Longer than the 1 s ack timeout: the forged echo must have settled
    // `instead` for good, with nothing left to resend.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let states = watch.finish().await;

    for id in [before, instead] {
        assert_once_at_every_moment(&states, id);
        let history = log.history(id);
        assert!(!history.contains(&Status::Failed), "{id}: {history:?}");
        assert!(log.removed().is_empty(), "removed: {:?}", log.removed());
    }
    assert_eq!(
        acks_of(&w.proxy, before).len(),
        1,
        "the real ack of `before` arrived after the echo"
    );
    assert!(
        acks_of(&w.proxy, instead).is_empty(),
        "the ack was replaced"
    );
    assert_eq!(
        sends_of(&w.proxy, instead).len(),
        1,
        "the echo confirmed `instead`: no resend"
    );
    let timeline = w.alice.timeline(w.conv).await;
    assert_eq!(ids(&timeline), [before, instead]);
    assert_eq!(w.server_ids(), [before, instead]);

    // The second device: each once, as its own, in server order.
    let other = alice2.confirmed_timeline(w.conv, 2).await;
    assert_eq!(ids(&other), [before, instead]);
    for item in &other {
        assert!(
            item.own,
            "alice's other device shows {} as not own",
            item.id
        );
        assert_eq!(item.sender, w.alice.id());
    }
    assert_eq!(other[0].body, "before: hi");
}
