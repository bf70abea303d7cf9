//! S8 offline backlog with jitter: four messages typed offline 200 ms
//! apart; on reconnect every frame is delayed by a random 0–500 ms (seeded,
//! both ways). Server order and every view equal the typing order, before
//! and after a reload from the server (fresh devices catching up).

use crate::proxy::{Action, Dir};
use crate::status::{assert_delivered_path, StatusLog};
use crate::support::User;
use crate::world::{ids, short_ack, World};
use chatsync_client::Status;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s08_offline_backlog_with_jitter_keeps_typing_order() {
    let w = World::new(short_ack()).await;
    let mut log = StatusLog::watch(&w.alice, w.conv)
        .await
        .with_probe(&w.probe, w.alice.id());
    w.proxy.set_down(true);
    w.alice.disconnected().await;
    let mut typed = Vec::new();
    for body in ["first", "second", "third", "fourth"] {
        typed.push(w.alice.client.send(w.conv, body).await.unwrap());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(w.alice.client.sending().await.unwrap(), typed);

    let rng = Mutex::new(fastrand::Rng::with_seed(8));
    w.proxy.set_rule(Arc::new(move |_, _, _| {
        Action::Delay(Duration::from_millis(rng.lock().unwrap().u64(0..=500)))
    }));
    w.proxy.set_down(false);
    log.wait_all(&typed, Status::Success).await;
    for id in &typed {
        assert_delivered_path(*id, &log.history(*id));
    }
    assert!(
        w.proxy.count(Dir::ToServer, "send") >= 4,
        "the backlog went through the jittery link"
    );

    assert_eq!(w.server_ids(), typed, "server order = typing order");
    assert_eq!(ids(&w.alice.confirmed_timeline(w.conv, 4).await), typed);
    assert_eq!(ids(&w.bob.confirmed_timeline(w.conv, 4).await), typed);
    // Reload from the server: new devices of both, catching up from zero
    // (alice's through the jittery proxy).
    let alice2 = User::login(&w.proxy.url(), "alice").await;
    let bob2 = User::login(&w.server.url(), "bob").await;
    let a2 = alice2.confirmed_timeline(w.conv, 4).await;
    assert_eq!(ids(&a2), typed, "alice's reloaded view");
    assert!(a2.iter().all(|i| i.own));
    assert_eq!(ids(&bob2.confirmed_timeline(w.conv, 4).await), typed);
    let bodies: Vec<String> = a2.iter().map(|i| i.body.clone()).collect();
    assert_eq!(bodies, ["first", "second", "third", "fourth"]);
}
