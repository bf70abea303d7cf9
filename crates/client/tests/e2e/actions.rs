//! Issue 4 end to end: edit, delete, react and read marks through the real
//! client and the real server, the Read status, and one account on two
//! devices. Each test checks what every member's client storage shows
//! against what the server's store holds (its history folded by the shared
//! rule, `chatsync_protocol::fold`).
//!
//! A client that must be offline while the server keeps running (so that
//! others can act meanwhile) reaches the server through the proxy with a
//! [`Switch`]: while it is down, every frame is dropped and the link cut, so
//! the client can never get past `hello`.

use crate::proxy::{Action, Dir, Proxy, Rule};
use crate::raw::RawWs;
use crate::status::{assert_delivered_path, StatusLog};
use crate::support::{config, eventually, register, TestServer, User, PASSWORD, TIMEOUT};
use chatsync_client::model::{PendingAction, Reaction};
use chatsync_client::{Client, ClientError, Item, Status, TimelineChange, DB_FILE};
use chatsync_protocol::{
    fold, ActionKind, ActionRef, ClientFrame, ConversationId, ErrorCode, FoldEvent, Folded,
    MemberMarks, MessageId, Seq, ServerFrame, UserId, WireMessage,
};
use chatsync_server::ServerStore;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tempfile::TempDir;
use tokio::sync::mpsc;

// ---- helpers -------------------------------------------------------------

/// Turns a client's link on and off through the proxy, and can swallow the
/// next acknowledgement (taking the link down with it).
#[derive(Default)]
struct Switch {
    down: AtomicBool,
    swallow_next_ack: AtomicBool,
    /// Frames forwarded: (direction, type, text).
    forwarded: Mutex<Vec<(Dir, String, String)>>,
}

impl Switch {
    fn rule(self: &Arc<Self>) -> Rule {
        let me = self.clone();
        Arc::new(move |dir, ty, text| {
            if me.down.load(Ordering::SeqCst) {
                return Action::DropAndCut;
            }
            if dir == Dir::ToClient
                && ty == "ack"
                && me.swallow_next_ack.swap(false, Ordering::SeqCst)
            {
                me.down.store(true, Ordering::SeqCst);
                return Action::DropAndCut;
            }
            me.forwarded
                .lock()
                .unwrap()
                .push((dir, ty.to_string(), text.to_string()));
            Action::Forward
        })
    }

    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Takes `user` offline: the switch goes down and the current link is
    /// dropped (an idle link carries no frame the switch could cut).
    async fn take_offline(&self, user: &User) {
        self.set_down(true);
        user.client.drop_connection().await.unwrap();
        user.disconnected().await;
    }

    /// `send` frames forwarded to the server for `id`.
    fn sends_of(&self, id: MessageId) -> usize {
        let id = id.to_string();
        self.forwarded
            .lock()
            .unwrap()
            .iter()
            .filter(|(dir, ty, text)| {
                *dir == Dir::ToServer
                    && ty == "send"
                    && serde_json::from_str::<serde_json::Value>(text)
                        .ok()
                        .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(|s| s == id))
                        .unwrap_or(false)
            })
            .count()
    }
}

/// A proxy whose link is controlled by the returned switch.
async fn switched_proxy(server: &TestServer) -> (Proxy, Arc<Switch>) {
    let switch = Arc::new(Switch::default());
    let proxy = Proxy::start(server.addr, switch.rule()).await;
    (proxy, switch)
}

/// Polls `client`'s stored version of message `id` until `done` holds;
/// fails with the last version seen.
async fn item_until(
    client: &Client,
    id: MessageId,
    what: &str,
    done: impl Fn(&Item) -> bool,
) -> Item {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let item = client.item(id).await.unwrap();
        if let Some(item) = item.as_ref().filter(|i| done(i)) {
            return item.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {TIMEOUT:?} waiting for {what}; last seen: {item:#?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `client` counts `n` unread messages in `conv`.
async fn unread_until(client: &Client, conv: ConversationId, n: u64, what: &str) {
    let what = format!("{what} (unread = {n})");
    eventually(&what, || async move {
        (client.unread(conv).await.unwrap() == n).then_some(())
    })
    .await;
}

/// Reactions of a shown item, as the fold gives them.
fn reactions(item: &Item) -> BTreeMap<String, Vec<UserId>> {
    item.reactions
        .iter()
        .map(|Reaction { emoji, users }| (emoji.clone(), users.clone()))
        .collect()
}

/// Whether a device shows message `item` as the server's history folds it,
/// with nothing of its own left pending.
fn shows(item: &Item, server: &Folded) -> bool {
    item.body == server.body
        && item.edited == server.edited
        && item.deleted == server.deleted
        && reactions(item) == server.reactions
        && item.pending.is_empty()
}

/// Message `id` folded from the server's history.
fn server_fold(messages: &[WireMessage], id: MessageId) -> Folded {
    let message = messages
        .iter()
        .find(|m| m.id == id && m.action.is_none())
        .unwrap_or_else(|| panic!("the server does not hold message {id}"));
    let events: Vec<FoldEvent<'_>> = messages
        .iter()
        .filter(|m| m.action.as_ref().is_some_and(|a| a.target == id))
        .map(|m| FoldEvent {
            seq: m.seq,
            sender: m.sender,
            body: &m.body,
            action: m.action.as_ref(),
        })
        .collect();
    fold(message.sender, &message.body, &events)
}

/// The actions the server holds on `id`, in sequence order.
fn server_actions(messages: &[WireMessage], id: MessageId) -> Vec<(MessageId, ActionKind, String)> {
    messages
        .iter()
        .filter_map(|m| {
            let a = m.action.as_ref().filter(|a| a.target == id)?;
            Some((m.id, a.kind, m.body.clone()))
        })
        .collect()
}

/// A member's marks as the server stores them (its store opened aside).
fn server_marks(server: &TestServer, conv: ConversationId, user: UserId) -> MemberMarks {
    let store = chatsync_server::open_store(&server.config.data_dir).unwrap();
    let (members, _) = store.marks(conv).unwrap().expect("unknown conversation");
    members
        .into_iter()
        .find(|m| m.user == user)
        .expect("not a member")
}

/// Waits until the server stores `user`'s read mark at `seq` exactly.
async fn server_read_is(server: &TestServer, conv: ConversationId, user: UserId, seq: Seq) {
    let what = format!("the server to store read mark {seq:?}");
    eventually(&what, || async move {
        (server_marks(server, conv, user).read == seq).then_some(())
    })
    .await;
}

/// Every change a subscription shows, kept per message.
struct Watch {
    changes: mpsc::UnboundedReceiver<TimelineChange>,
}

impl Watch {
    async fn new(client: &Client, conv: ConversationId) -> Watch {
        let timeline = client.subscribe(conv, 1000).await.unwrap();
        Watch {
            changes: timeline.changes,
        }
    }

    /// The next change concerning `id` (other messages' are skipped).
    async fn next(&mut self, id: MessageId) -> TimelineChange {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let change = tokio::time::timeout_at(deadline, self.changes.recv())
                .await
                .unwrap_or_else(|_| panic!("no change of {id} shown within {TIMEOUT:?}"))
                .expect("the timeline closed");
            let of = match &change {
                TimelineChange::Upserted(item) => item.id,
                TimelineChange::StatusChanged { id, .. } | TimelineChange::Removed(id) => *id,
            };
            if of == id {
                return change;
            }
        }
    }

    /// The next version of message `id` shown.
    async fn next_version(&mut self, id: MessageId) -> Item {
        loop {
            if let TimelineChange::Upserted(item) = self.next(id).await {
                return item;
            }
        }
    }

    /// Versions of `id` shown until one satisfies `done`; returns it.
    async fn version_until(&mut self, id: MessageId, done: impl Fn(&Item) -> bool) -> Item {
        loop {
            let item = self.next_version(id).await;
            if done(&item) {
                return item;
            }
        }
    }
}

/// Every text stored in a client storage file, one entry per cell, read
/// with SQL from every table (the client must be closed).
fn stored_texts(dir: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(dir.join(DB_FILE)).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut texts = Vec::new();
    for table in tables {
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{table}\"")).unwrap();
        let columns = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            for c in 0..columns {
                if let Ok(Some(text)) = row.get::<_, Option<String>>(c) {
                    texts.push(text);
                }
            }
        }
    }
    texts
}

/// A device whose storage directory the test keeps, to read its file.
struct Device {
    client: Client,
    dir: TempDir,
}

impl Device {
    async fn login(server: &str, name: &str) -> Device {
        let dir = tempfile::tempdir().unwrap();
        let client = Client::login_with(dir.path(), server, name, PASSWORD, "e2e", config())
            .await
            .unwrap();
        client.wait_connected(TIMEOUT).await.unwrap();
        Device { client, dir }
    }

    /// Drops the client, waits until its syncer stopped; keeps the files.
    async fn close(self) -> TempDir {
        let mut state = self.client.connection();
        drop(self.client);
        tokio::time::timeout(TIMEOUT, async { while state.changed().await.is_ok() {} })
            .await
            .expect("the client did not stop");
        self.dir
    }
}

/// A message everyone has: sent by `from`, stored by each of `to`, and
/// shown Success on the sender.
async fn delivered(from: &Client, to: &[&Client], conv: ConversationId, body: &str) -> MessageId {
    let id = from.send(conv, body).await.unwrap();
    for c in to {
        item_until(c, id, "the message to arrive", |_| true).await;
    }
    item_until(from, id, "the message to be Success", |i| {
        i.status == Status::Success
    })
    .await;
    id
}

// ---- edit ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_shows_at_once_and_every_member_ends_with_the_latest_text() {
    let mut server = TestServer::start().await;
    let probe = server.probe().await;
    let alice = User::new(&server.url(), "alice").await;
    let bob = User::new(&server.url(), "bob").await;
    let carol = User::new(&server.url(), "carol").await;
    let conv = alice.create_conversation("edits", &["bob", "carol"]).await;
    bob.knows(conv).await;
    carol.knows(conv).await;
    let m = delivered(
        &alice.client,
        &[&bob.client, &carol.client],
        conv,
        "hello wrld",
    )
    .await;

    // With the server stopped no answer can come: what shows is optimistic.
    let mut watch = Watch::new(&alice.client, conv).await;
    server.stop().await;
    alice.disconnected().await;
    let e = alice
        .client
        .edit(m, "hello world")
        .await
        .unwrap()
        .expect("an edit of a confirmed message is an action with its own id");
    let shown = watch.next_version(m).await;
    assert_eq!(shown.body, "hello world");
    assert!(shown.edited && !shown.deleted);
    assert_eq!(
        shown.status,
        Status::Success,
        "the message keeps its status"
    );
    assert_eq!(
        shown.pending,
        [PendingAction {
            id: e,
            kind: ActionKind::Edit,
            body: "hello world".into(),
            status: Status::Sending,
            failure: None,
        }]
    );
    let row = alice
        .client
        .item(e)
        .await
        .unwrap()
        .expect("the edit is stored");
    assert_eq!(
        row.action,
        Some(ActionRef {
            target: m,
            kind: ActionKind::Edit
        })
    );
    assert_eq!((row.status, row.seq), (Status::Sending, None));

    // A second edit while the first has not left rewrites it in place.
    let again = alice.client.edit(m, "hello, world").await.unwrap();
    assert_eq!(again, Some(e), "the queued edit is rewritten, not doubled");
    let shown = watch.next_version(m).await;
    assert_eq!(shown.body, "hello, world");
    assert_eq!(shown.pending.len(), 1);
    assert_eq!(alice.client.item(m).await.unwrap().unwrap(), shown);
    let at_bob = bob.client.item(m).await.unwrap().unwrap();
    assert_eq!((at_bob.body.as_str(), at_bob.edited), ("hello wrld", false));

    server.restart().await;
    for user in [&alice, &bob, &carol] {
        let what = format!("{} to show the latest text", user.name);
        item_until(&user.client, m, &what, |i| {
            i.body == "hello, world" && i.edited && i.pending.is_empty()
        })
        .await;
    }
    item_until(&alice.client, e, "the edit to be delivered", |i| {
        i.status == Status::Success
    })
    .await;
    let messages = probe.messages(conv);
    assert_eq!(
        server_actions(&messages, m),
        [(e, ActionKind::Edit, "hello, world".to_string())],
        "the server holds the edit once, with its last text"
    );
    let folded = server_fold(&messages, m);
    for user in [&alice, &bob, &carol] {
        let item = user.client.item(m).await.unwrap().unwrap();
        assert!(
            shows(&item, &folded),
            "{}: {item:?} vs {folded:?}",
            user.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_before_the_first_ack_end_with_the_last_text_everywhere() {
    let server = TestServer::start().await;
    let probe = server.probe().await;
    let (proxy, switch) = switched_proxy(&server).await;
    let alice = User::new(&proxy.url(), "alice").await;
    let bob = User::new(&server.url(), "bob").await;
    let conv = alice.create_conversation("quick edits", &["bob"]).await;
    bob.knows(conv).await;
    let m = delivered(&alice.client, &[&bob.client], conv, "v1").await;

    // The first edit reaches the server, but its ack is lost with the link.
    switch.swallow_next_ack.store(true, Ordering::SeqCst);
    let e1 = alice.client.edit(m, "v2").await.unwrap().unwrap();
    eventually("the proxy to swallow the edit's ack", || async {
        (proxy.cuts() >= 1).then_some(())
    })
    .await;
    alice.disconnected().await;
    assert!(probe.seq_of(conv, e1).is_some(), "the server stored e1");
    item_until(&bob.client, m, "bob to get the first edit", |i| {
        i.body == "v2"
    })
    .await;
    let row = alice.client.item(e1).await.unwrap().unwrap();
    assert_eq!(row.status, Status::Sending, "alice never heard back");

    // Two more edits before that ack: the first of them is a new action
    // (e1 may be on the server), the second rewrites it (not transmitted).
    let e2 = alice.client.edit(m, "v3").await.unwrap().unwrap();
    assert_ne!(e2, e1);
    assert_eq!(alice.client.edit(m, "v4").await.unwrap(), Some(e2));
    let shown = alice.client.item(m).await.unwrap().unwrap();
    assert_eq!(shown.body, "v4");
    let pending: Vec<_> = shown.pending.iter().map(|p| (p.id, p.status)).collect();
    assert_eq!(pending, [(e1, Status::Sending), (e2, Status::Sending)]);

    switch.set_down(false);
    for user in [&alice, &bob] {
        let what = format!("{} to end with the last text", user.name);
        item_until(&user.client, m, &what, |i| {
            i.body == "v4" && i.edited && i.pending.is_empty()
        })
        .await;
    }
    let messages = probe.messages(conv);
    assert_eq!(
        server_actions(&messages, m),
        [
            (e1, ActionKind::Edit, "v2".to_string()),
            (e2, ActionKind::Edit, "v4".to_string())
        ],
        "each edit stored once, in the order made (e1 resent and deduplicated)"
    );
    let folded = server_fold(&messages, m);
    for user in [&alice, &bob] {
        let item = user.client.item(m).await.unwrap().unwrap();
        assert!(shows(&item, &folded), "{}: {item:?}", user.name);
    }
    for e in [e1, e2] {
        let row = alice.client.item(e).await.unwrap().unwrap();
        assert!(row.status.is_confirmed(), "{e}: {:?}", row.status);
    }
}

// ---- delete ----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_leaves_a_placeholder_and_erases_every_version_of_the_text() {
    const FIRST: &str = "secret-first-4b1d9e";
    const SECOND: &str = "secret-second-77c2aa";
    let server = TestServer::start().await;
    let probe = server.probe().await;
    register(&server.url(), "alice").await;
    register(&server.url(), "bob").await;
    let alice = Device::login(&server.url(), "alice").await;
    let bob = Device::login(&server.url(), "bob").await;
    let conv = alice
        .client
        .create_conversation("oops", &["bob"])
        .await
        .unwrap()
        .id;
    eventually("bob to learn of the conversation", || async {
        let convs = bob.client.conversations().await.unwrap();
        convs.iter().any(|c| c.id == conv).then_some(())
    })
    .await;
    let before = delivered(&alice.client, &[&bob.client], conv, "before").await;
    let m = delivered(&alice.client, &[&bob.client], conv, FIRST).await;
    let after = delivered(&alice.client, &[&bob.client], conv, "after").await;
    alice.client.edit(m, SECOND).await.unwrap().unwrap();
    bob.client.react(m, "😮", true).await.unwrap();
    for (client, who) in [(&alice.client, "alice"), (&bob.client, "bob")] {
        let what = format!("{who} to show the edit and the reaction");
        item_until(client, m, &what, |i| {
            i.body == SECOND && i.reactions.len() == 1 && i.pending.is_empty()
        })
        .await;
    }

    let mut watch = Watch::new(&alice.client, conv).await;
    let d = alice.client.delete(m).await.unwrap().unwrap();
    let shown = watch.next_version(m).await;
    assert!(shown.deleted, "the delete shows at once: {shown:?}");
    assert!(shown.body.is_empty() && shown.reactions.is_empty());
    assert_eq!(shown.pending.len(), 1);
    assert_eq!(
        (shown.pending[0].id, shown.pending[0].kind),
        (d, ActionKind::Delete)
    );

    for (client, who) in [(&alice.client, "alice"), (&bob.client, "bob")] {
        let what = format!("{who} to show the placeholder");
        item_until(client, m, &what, |i| {
            i.deleted && i.body.is_empty() && i.reactions.is_empty() && i.pending.is_empty()
        })
        .await;
        // The placeholder keeps its place in the timeline.
        let timeline = client.subscribe(conv, 100).await.unwrap().snapshot;
        let ids: Vec<_> = timeline.iter().map(|i| i.id).collect();
        assert_eq!(ids, [before, m, after], "{who}");
    }
    // A deleted message takes no more actions, and is not unread.
    assert!(matches!(
        alice.client.edit(m, "again").await,
        Err(ClientError::Action(_))
    ));
    assert!(matches!(
        bob.client.react(m, "👍", true).await,
        Err(ClientError::Action(_))
    ));
    assert_eq!(bob.client.unread(conv).await.unwrap(), 2);

    // The server erased it too; every member agrees with its history.
    let messages = probe.messages(conv);
    assert!(messages
        .iter()
        .all(|w| !w.body.contains(FIRST) && !w.body.contains(SECOND)));
    let folded = server_fold(&messages, m);
    assert!(folded.deleted);

    // No version of the text is left in either device's storage.
    for (device, who) in [(alice, "alice"), (bob, "bob")] {
        let dir = device.close().await;
        // Not even in the file's bytes, once its last connection closed
        // (SQLite then folds the WAL into the file and removes it).
        let wal = dir.path().join(format!("{DB_FILE}-wal"));
        let what = format!("{who}'s storage to be closed (its WAL removed)");
        eventually(&what, || {
            let gone = !wal.exists();
            async move { gone.then_some(()) }
        })
        .await;
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            for secret in [FIRST, SECOND] {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "{path:?} still holds the bytes of {secret:?} after the delete"
                );
            }
        }
        let texts = stored_texts(dir.path());
        assert!(texts.iter().any(|t| t == "before"), "{who}: sanity");
        for secret in [FIRST, SECOND] {
            let left: Vec<_> = texts.iter().filter(|t| t.contains(secret)).collect();
            assert!(
                left.is_empty(),
                "{who}'s storage still holds {secret:?} after the delete: {left:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_of_an_unsent_message_then_a_kill_sends_nothing_ever() {
    const SECRET: &str = "never-leaves-this-device-0e5d";
    const REWRITTEN: &str = "rewritten-and-never-sent-93af";
    let mut server = TestServer::start().await;
    server.probe().await;
    let alice = User::new(&server.url(), "alice").await;
    let bob = User::new(&server.url(), "bob").await;
    let conv = alice.create_conversation("unsend", &["bob"]).await;
    bob.knows(conv).await;
    let first = delivered(&alice.client, &[&bob.client], conv, "first").await;

    server.stop().await;
    alice.disconnected().await;
    let mut watch = Watch::new(&alice.client, conv).await;
    let m = alice.client.send(conv, SECRET).await.unwrap();
    let r = alice.client.react(m, "👀", true).await.unwrap();
    assert_eq!(alice.client.edit(m, REWRITTEN).await.unwrap(), None);
    assert_eq!(alice.client.sending().await.unwrap(), [m, r]);
    assert_eq!(alice.client.delete(m).await.unwrap(), None);
    loop {
        if watch.next(m).await == TimelineChange::Removed(m) {
            break;
        }
    }
    assert!(alice.client.item(m).await.unwrap().is_none());
    assert!(
        alice.client.item(r).await.unwrap().is_none(),
        "its reaction goes with it"
    );
    assert!(alice.client.sending().await.unwrap().is_empty());
    let last = alice.client.send(conv, "last").await.unwrap();

    // Killed offline, started again online.
    let closed = alice.close().await;
    server.restart().await;
    let alice = closed.open().await;
    bob.has(last).await;
    item_until(
        &alice.client,
        last,
        "the later message to be Success",
        |i| i.status == Status::Success,
    )
    .await;
    for user in [&alice, &bob] {
        let items = user.confirmed_timeline(conv, 2).await;
        let ids: Vec<_> = items.iter().map(|i| i.id).collect();
        assert_eq!(ids, [first, last], "{}'s timeline", user.name);
    }
    assert!(alice.client.item(m).await.unwrap().is_none());
    assert!(bob.client.item(m).await.unwrap().is_none());

    server.stop().await;
    let store = chatsync_server::open_store(&server.config.data_dir).unwrap();
    let messages = store.messages_after(conv, Seq::ZERO, 1000).unwrap();
    let ids: Vec<_> = messages.iter().map(|w| w.id).collect();
    assert_eq!(
        ids,
        [first, last],
        "the server never got the deleted message"
    );
    assert!(messages.iter().all(|w| w.id != r
        && w.action.as_ref().is_none_or(|a| a.target != m)
        && !w.body.contains(SECRET)
        && !w.body.contains(REWRITTEN)));
}

// ---- react -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reaction_toggled_quickly_ends_on_everywhere_exactly_once() {
    let mut server = TestServer::start().await;
    let probe = server.probe().await;
    let alice = User::new(&server.url(), "alice").await;
    let bob = User::new(&server.url(), "bob").await;
    let conv = alice.create_conversation("reactions", &["bob"]).await;
    bob.knows(conv).await;
    let m = delivered(&alice.client, &[&bob.client], conv, "react to me").await;
    let want_one = BTreeMap::from([("👍".to_string(), vec![bob.id()])]);

    // Online, as fast as the API allows.
    for on in [true, false, true] {
        bob.client.react(m, "👍", on).await.unwrap();
    }
    let shown = bob.client.item(m).await.unwrap().unwrap();
    assert_eq!(reactions(&shown), want_one, "the last toggle shows at once");
    for user in [&alice, &bob] {
        let what = format!("{} to show one 👍 from bob", user.name);
        item_until(&user.client, m, &what, |i| {
            i.pending.is_empty() && reactions(i) == want_one
        })
        .await;
    }
    let folded = server_fold(&probe.messages(conv), m);
    assert_eq!(folded.reactions, want_one);

    // Offline: toggles queue up, then go out when the server is back.
    server.stop().await;
    bob.disconnected().await;
    for on in [true, false, true, false, true] {
        bob.client.react(m, "🎉", on).await.unwrap();
    }
    bob.client.react(m, "👍", false).await.unwrap();
    bob.client.react(m, "👍", true).await.unwrap();
    let want_two = BTreeMap::from([
        ("🎉".to_string(), vec![bob.id()]),
        ("👍".to_string(), vec![bob.id()]),
    ]);
    let shown = bob.client.item(m).await.unwrap().unwrap();
    assert_eq!(reactions(&shown), want_two);
    server.restart().await;
    for user in [&alice, &bob] {
        let what = format!("{} to show 👍 and 🎉 from bob once each", user.name);
        item_until(&user.client, m, &what, |i| {
            i.pending.is_empty() && reactions(i) == want_two
        })
        .await;
    }
    let folded = server_fold(&probe.messages(conv), m);
    assert_eq!(folded.reactions, want_two);
    assert!(!folded.edited && folded.body == "react to me");
}

// ---- read marks and the Read status ----------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_status_once_every_other_member_read_and_own_messages_never_unread() {
    let server = TestServer::start().await;
    let probe = server.probe().await;
    let alice = User::new(&server.url(), "alice").await;
    let bob = User::new(&server.url(), "bob").await;
    let carol = User::new(&server.url(), "carol").await;
    let conv = alice.create_conversation("read", &["bob", "carol"]).await;
    bob.knows(conv).await;
    carol.knows(conv).await;
    let mut log = StatusLog::watch(&alice, conv)
        .await
        .with_probe(&probe, alice.id());
    let mut bob_log = StatusLog::watch(&bob, conv).await;

    let m1 = alice.client.send(conv, "one").await.unwrap();
    let m2 = alice.client.send(conv, "two").await.unwrap();
    log.wait_all(&[m1, m2], Status::Success).await;
    let b1 = delivered(&bob.client, &[&alice.client, &carol.client], conv, "bob's").await;
    let seq = |id| probe.seq_of(conv, id).unwrap();

    // Own messages are never unread.
    unread_until(&alice.client, conv, 1, "alice: only bob's message").await;
    unread_until(&bob.client, conv, 2, "bob: alice's two").await;
    unread_until(&carol.client, conv, 3, "carol: everything").await;

    // Delivered is not read; one reader out of two is not everyone.
    log.idle().await;
    assert_eq!(log.status(m1), Some(Status::Success));
    bob.client.mark_read(conv, seq(m2)).await.unwrap();
    server_read_is(&server, conv, bob.id(), seq(m2)).await;
    unread_until(&bob.client, conv, 0, "bob read alice's").await;
    log.idle().await;
    assert_eq!(log.status(m1), Some(Status::Success), "carol has not read");
    assert_eq!(log.status(m2), Some(Status::Success));

    carol.client.mark_read(conv, seq(m1)).await.unwrap();
    log.wait_for("m1 to become Read", |l| l.status(m1) == Some(Status::Read))
        .await;
    log.idle().await;
    assert_eq!(log.status(m2), Some(Status::Success), "carol read m1 only");
    unread_until(&carol.client, conv, 2, "carol read one").await;

    carol.client.mark_read(conv, seq(b1)).await.unwrap();
    log.wait_for("m2 to become Read", |l| l.status(m2) == Some(Status::Read))
        .await;
    unread_until(&carol.client, conv, 0, "carol read all").await;
    for id in [m1, m2] {
        let history = log.history(id);
        let (last, delivered) = history.split_last().unwrap();
        assert_eq!(*last, Status::Read, "{id}: {history:?}");
        assert_delivered_path(id, delivered);
        assert_eq!(
            alice.client.item(id).await.unwrap().unwrap().status,
            Status::Read
        );
    }

    // bob's message: carol read it, alice not yet.
    bob_log.idle().await;
    assert_eq!(
        bob.client.item(b1).await.unwrap().unwrap().status,
        Status::Success
    );
    alice.client.mark_read(conv, seq(b1)).await.unwrap();
    bob_log
        .wait_for("b1 to become Read", |l| l.status(b1) == Some(Status::Read))
        .await;
    unread_until(&alice.client, conv, 0, "alice read bob's").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_mark_from_a_stale_device_does_not_move_the_mark_back() {
    let mut server = TestServer::start().await;
    let probe = server.probe().await;
    let alice = User::new(&server.url(), "alice").await;
    let bob = User::new(&server.url(), "bob").await;
    // bob's second device goes through a switch, to be offline at will.
    let (proxy, switch) = switched_proxy(&server).await;
    let bob2 = User::login(&proxy.url(), "bob").await;
    let conv = alice.create_conversation("stale", &["bob"]).await;
    bob.knows(conv).await;
    bob2.knows(conv).await;
    let mut ids = Vec::new();
    for body in ["one", "two", "three"] {
        ids.push(delivered(&alice.client, &[&bob.client, &bob2.client], conv, body).await);
    }
    let seq = |id| probe.seq_of(conv, id).unwrap();
    let top = seq(ids[2]);

    switch.take_offline(&bob2).await;
    bob.client.mark_read(conv, top).await.unwrap();
    server_read_is(&server, conv, bob.id(), top).await;
    for &id in &ids {
        item_until(&alice.client, id, "alice's messages to be Read", |i| {
            i.status == Status::Read
        })
        .await;
    }

    // The stale real client: it marks an older message read while offline,
    // then comes back. Its own mark ends at the account's highest.
    bob2.client.mark_read(conv, seq(ids[0])).await.unwrap();
    assert_eq!(bob2.client.unread(conv).await.unwrap(), 2);
    switch.set_down(false);
    bob2.connected().await;
    unread_until(&bob2.client, conv, 0, "bob2 to learn the account's mark").await;

    // A stale device that does report a lower mark: the server keeps the
    // highest. A send after it on the same connection is a sync point (the
    // connection's frames are processed in order).
    let mut raw = RawWs::login(&server.url(), "bob").await;
    raw.send(&ClientFrame::Read {
        conversation: conv,
        seq: seq(ids[0]),
    })
    .await;
    let sync_point = MessageId::new();
    raw.send_message(sync_point, conv, "sync point").await;
    loop {
        match raw.recv().await {
            ServerFrame::Ack { id, .. } if id == sync_point => break,
            ServerFrame::Refused { id, refusal } if id == sync_point => {
                panic!("sync point refused: {refusal:?}")
            }
            _ => {}
        }
    }
    assert_eq!(server_marks(&server, conv, bob.id()).read, top);
    for &id in &ids {
        let item = alice.client.item(id).await.unwrap().unwrap();
        assert_eq!(item.status, Status::Read, "Read never moves back");
    }
    assert_eq!(bob.client.unread(conv).await.unwrap(), 0);
    server.stop().await;
    assert_eq!(server_marks(&server, conv, bob.id()).read, top);
}

// ---- many devices ----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_devices_of_one_account_see_every_message_once_and_share_actions() {
    let server = TestServer::start().await;
    let probe = server.probe().await;
    let a = User::new(&server.url(), "alice").await;
    let b = User::login(&server.url(), "alice").await;
    let bob = User::new(&server.url(), "bob").await;
    let conv = a.create_conversation("devices", &["bob"]).await;
    b.knows(conv).await;
    bob.knows(conv).await;

    let m1 = delivered(&a.client, &[&b.client, &bob.client], conv, "from A").await;
    let on_b = b.has(m1).await;
    assert!(on_b.own, "A's message is B's own: {on_b:?}");
    assert_eq!((on_b.sender, on_b.body.as_str()), (a.id(), "from A"));
    let b1 = delivered(&bob.client, &[&a.client, &b.client], conv, "bob 1").await;
    let b2 = delivered(&bob.client, &[&a.client, &b.client], conv, "bob 2").await;
    let m2 = delivered(&b.client, &[&a.client, &bob.client], conv, "from B").await;
    assert!(a.has(m2).await.own);
    unread_until(&b.client, conv, 2, "B counts bob's only").await;
    unread_until(&a.client, conv, 2, "A counts bob's only").await;

    // An edit from B applies on A (and at bob's).
    b.client
        .edit(m1, "from A, fixed on B")
        .await
        .unwrap()
        .unwrap();
    for user in [&a, &b, &bob] {
        let what = format!("{} to show B's edit", user.name);
        item_until(&user.client, m1, &what, |i| {
            i.body == "from A, fixed on B" && i.edited && i.pending.is_empty()
        })
        .await;
    }
    // A reaction from A shows on B as the account's; B takes it back.
    a.client.react(b1, "❤", true).await.unwrap();
    let mine = BTreeMap::from([("❤".to_string(), vec![a.id()])]);
    item_until(&b.client, b1, "B to show A's reaction", |i| {
        reactions(i) == mine
    })
    .await;
    b.client.react(b1, "❤", false).await.unwrap();
    for user in [&a, &b, &bob] {
        let what = format!("{} to show no reaction", user.name);
        item_until(&user.client, b1, &what, |i| {
            i.reactions.is_empty() && i.pending.is_empty()
        })
        .await;
    }

    // Every message once, in the server's order, on every device.
    let order: Vec<_> = probe
        .messages(conv)
        .into_iter()
        .filter(|w| w.action.is_none())
        .map(|w| w.id)
        .collect();
    assert_eq!(order, [m1, b1, b2, m2]);
    for user in [&a, &b, &bob] {
        let ids: Vec<_> = user
            .confirmed_timeline(conv, 4)
            .await
            .iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(ids, order, "{}'s timeline", user.name);
    }

    // Read on B is read for the account: A's count follows.
    b.client
        .mark_read(conv, probe.seq_of(conv, b2).unwrap())
        .await
        .unwrap();
    unread_until(&b.client, conv, 0, "B read everything").await;
    unread_until(&a.client, conv, 0, "A follows B's read mark").await;
    item_until(&bob.client, b2, "bob's message to be Read", |i| {
        i.status == Status::Read
    })
    .await;
}

// ---- refusals ----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_edit_rolls_the_view_back_and_can_be_retried_or_discarded() {
    const SMALL: usize = 50;
    let mut server = TestServer::start().await;
    let probe = server.probe().await;
    let alice = User::new(&server.url(), "alice").await;
    let bob = User::new(&server.url(), "bob").await;
    let conv = alice.create_conversation("limits", &["bob"]).await;
    bob.knows(conv).await;
    let m = delivered(&alice.client, &[&bob.client], conv, "short").await;
    let mut watch = Watch::new(&alice.client, conv).await;

    // Fine under the limit alice knows; the server comes back with less.
    server.stop().await;
    alice.disconnected().await;
    let long = "ü".repeat(SMALL); // 100 bytes
    let e = alice.client.edit(m, long.clone()).await.unwrap().unwrap();
    let shown = watch.next_version(m).await;
    assert_eq!((shown.body.as_str(), shown.edited), (long.as_str(), true));
    server
        .restart_with(|c| c.limits.max_body_bytes = SMALL)
        .await;

    let rolled_back = watch
        .version_until(m, |i| {
            i.pending
                .first()
                .is_some_and(|p| p.status == Status::Failed)
        })
        .await;
    assert_eq!(rolled_back.body, "short", "the refused edit is rolled back");
    assert!(!rolled_back.edited && !rolled_back.deleted);
    assert_eq!(rolled_back.pending.len(), 1);
    let failed = &rolled_back.pending[0];
    assert_eq!((failed.id, failed.kind), (e, ActionKind::Edit));
    assert_eq!(
        failed.body, long,
        "the failed edit keeps its text for a retry"
    );
    let failure = failed.failure.clone().expect("a reason");
    assert_eq!(failure.code, ErrorCode::TooLarge);
    assert!(!failure.retryable && !failure.message.is_empty());
    let row = alice.client.item(e).await.unwrap().unwrap();
    assert_eq!((row.status, row.failure), (Status::Failed, Some(failure)));
    assert_eq!(alice.client.item(m).await.unwrap().unwrap(), rolled_back);

    // Retry: shown again at once, refused again under the same limit.
    alice.client.retry(e).await.unwrap();
    let retried = watch.next_version(m).await;
    assert_eq!(retried.body, long);
    assert_eq!(retried.pending[0].status, Status::Sending);
    let again = watch
        .version_until(m, |i| {
            i.pending
                .first()
                .is_some_and(|p| p.status == Status::Failed)
        })
        .await;
    assert_eq!(again.body, "short");

    // Discard: the failed edit is gone for good.
    alice.client.discard(e).await.unwrap();
    let discarded = watch.version_until(m, |i| i.pending.is_empty()).await;
    assert_eq!(
        (discarded.body.as_str(), discarded.edited),
        ("short", false)
    );
    assert!(alice.client.item(e).await.unwrap().is_none());
    assert!(matches!(
        alice.client.retry(e).await,
        Err(ClientError::Action(_))
    ));

    let messages = probe.messages(conv);
    assert!(messages.iter().all(|w| w.id != e), "never stored");
    let folded = server_fold(&messages, m);
    for user in [&alice, &bob] {
        let item = user.client.item(m).await.unwrap().unwrap();
        assert!(shows(&item, &folded), "{}: {item:?}", user.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_of_a_message_deleted_on_another_device_is_refused_gone() {
    let server = TestServer::start().await;
    let probe = server.probe().await;
    let (proxy, switch) = switched_proxy(&server).await;
    let a = User::new(&proxy.url(), "alice").await;
    let b = User::login(&server.url(), "alice").await;
    let bob = User::new(&server.url(), "bob").await;
    let conv = a.create_conversation("race", &["bob"]).await;
    b.knows(conv).await;
    bob.knows(conv).await;
    let m = delivered(&a.client, &[&b.client, &bob.client], conv, "soon gone").await;

    // A is offline; B deletes; A, not knowing, edits.
    switch.take_offline(&a).await;
    b.client.delete(m).await.unwrap().unwrap();
    item_until(&bob.client, m, "bob to see the delete", |i| i.deleted).await;
    let mut watch = Watch::new(&a.client, conv).await;
    let e = a.client.edit(m, "edited offline").await.unwrap().unwrap();
    let shown = watch.next_version(m).await;
    assert_eq!(shown.body, "edited offline");

    switch.set_down(false);
    let refused = item_until(
        &a.client,
        m,
        "A to show the delete and the refused edit",
        |i| {
            i.deleted
                && i.pending
                    .first()
                    .is_some_and(|p| p.status == Status::Failed)
        },
    )
    .await;
    assert!(refused.body.is_empty() && !refused.edited);
    assert_eq!(refused.pending.len(), 1);
    let failure = refused.pending[0].failure.clone().expect("a reason");
    assert_eq!(failure.code, ErrorCode::Gone);
    assert!(!failure.retryable && !failure.message.is_empty());

    // A retry goes out again with the same id and is refused again.
    assert_eq!(switch.sends_of(e), 1);
    a.client.retry(e).await.unwrap();
    eventually("the retry to be sent and refused", || async {
        let row = a.client.item(e).await.unwrap().unwrap();
        (switch.sends_of(e) == 2 && row.status == Status::Failed).then_some(())
    })
    .await;
    a.client.discard(e).await.unwrap();
    let item = item_until(&a.client, m, "the discarded edit to vanish", |i| {
        i.pending.is_empty()
    })
    .await;
    assert!(item.deleted && item.body.is_empty());
    assert!(a.client.item(e).await.unwrap().is_none());

    let messages = probe.messages(conv);
    assert!(messages.iter().all(|w| w.id != e));
    assert!(messages.iter().all(|w| !w.body.contains("edited offline")));
    let folded = server_fold(&messages, m);
    for user in [&a, &b, &bob] {
        let item = user.client.item(m).await.unwrap().unwrap();
        assert!(shows(&item, &folded), "{}: {item:?}", user.name);
    }
}
