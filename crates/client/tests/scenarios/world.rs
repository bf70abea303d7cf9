//! The setting most scenarios share: a real server, alice reaching it
//! through the proxy, bob directly, one conversation between them; and a
//! watcher that records every state of a timeline while a scenario runs.

use crate::proxy::{forward_all, Dir, Fate, Frame, Proxy};
use crate::support::{self, Probe, TestServer, User};
use chatsync_client::core::Config;
use chatsync_client::{Client, Item, Status};
use chatsync_protocol::{ConversationId, MessageId};
use chatsync_server::ServerConfig;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Test tunables with a short ack timeout (1 s) so that a scenario which
/// depends on it finishes quickly.
pub fn short_ack() -> Config {
    Config {
        ack_timeout: Duration::from_secs(1),
        ..support::config()
    }
}

pub struct World {
    pub server: TestServer,
    pub probe: Probe,
    pub proxy: Proxy,
    /// Connected through the proxy.
    pub alice: User,
    /// Connected directly.
    pub bob: User,
    pub conv: ConversationId,
}

impl World {
    pub async fn new(alice: Config) -> World {
        Self::with(|_| {}, alice).await
    }

    pub async fn with(tweak: impl FnOnce(&mut ServerConfig), alice: Config) -> World {
        let server = TestServer::start_with(tweak).await;
        let probe = server.probe().await;
        let proxy = Proxy::start(server.addr, forward_all()).await;
        let alice = User::new_with(&proxy.url(), "alice", alice).await;
        let bob = User::new(&server.url(), "bob").await;
        let conv = alice.create_conversation("scenario", &["bob"]).await;
        bob.knows(conv).await;
        World {
            server,
            probe,
            proxy,
            alice,
            bob,
            conv,
        }
    }

    /// The ids the server holds in the conversation, in seq order.
    pub fn server_ids(&self) -> Vec<MessageId> {
        self.probe
            .messages(self.conv)
            .iter()
            .map(|m| m.id)
            .collect()
    }
}

/// Frames `send` that carried message `id` to the server.
pub fn sends_of(proxy: &Proxy, id: MessageId) -> Vec<Frame> {
    let id = id.to_string();
    proxy
        .delivered(Dir::ToServer, "send")
        .into_iter()
        .filter(|f| f.str_field("id").as_deref() == Some(id.as_str()))
        .collect()
}

/// Frames `ack` for message `id` that reached the client.
pub fn acks_of(proxy: &Proxy, id: MessageId) -> Vec<Frame> {
    let id = id.to_string();
    proxy
        .delivered(Dir::ToClient, "ack")
        .into_iter()
        .filter(|f| f.str_field("id").as_deref() == Some(id.as_str()))
        .collect()
}

/// Every frame the server received (delivered by the proxy).
pub fn to_server(proxy: &Proxy) -> Vec<Frame> {
    proxy
        .frames()
        .into_iter()
        .filter(|f| f.dir == Dir::ToServer && f.fate == Fate::Delivered)
        .collect()
}

/// Records every state of a timeline, as storage shows it to a new
/// subscriber, every few milliseconds until [`Watch::finish`].
pub struct Watch {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Vec<Vec<Item>>>,
}

impl Watch {
    pub fn start(client: &Client, conv: ConversationId) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let client = client.clone();
        let task = tokio::spawn(async move {
            let mut states: Vec<Vec<Item>> = Vec::new();
            loop {
                let last = s.load(Ordering::SeqCst);
                let snapshot = client.subscribe(conv, 1000).await.unwrap().snapshot;
                if states.last() != Some(&snapshot) {
                    states.push(snapshot);
                }
                if last {
                    return states;
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        });
        Watch { stop, task }
    }

    /// Stops recording (after one last look); returns every distinct state.
    pub async fn finish(self) -> Vec<Vec<Item>> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap()
    }
}

/// From the first state that shows `id`, every state shows it exactly once
/// and never Failed.
pub fn assert_once_at_every_moment(states: &[Vec<Item>], id: MessageId) {
    let first = states
        .iter()
        .position(|s| s.iter().any(|i| i.id == id))
        .unwrap_or_else(|| panic!("{id} was never shown"));
    for (k, state) in states.iter().enumerate().skip(first) {
        let copies: Vec<&Item> = state.iter().filter(|i| i.id == id).collect();
        assert_eq!(
            copies.len(),
            1,
            "state {k} of the timeline shows {id} {} times: {state:#?}",
            copies.len()
        );
        assert_ne!(copies[0].status, Status::Failed, "state {k}: {id} Failed");
    }
}

/// The ids of a timeline, in timeline order.
pub fn ids(items: &[Item]) -> Vec<MessageId> {
    items.iter().map(|i| i.id).collect()
}
