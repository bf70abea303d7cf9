//! Random faults and random user actions (messages, edits, deletes,
//! reactions, read marks) against three devices and the fake server, then a
//! healed link: every invariant of DESIGN.md that concerns the core must
//! hold, and every member's storage must show each message as the server's
//! history folds it.

use super::harness::{conv_id, user_id, World};
use crate::core::{ActionError, Config};
use crate::model::{Item, Status};
use crate::store::ClientStore;
use chatsync_protocol::{ActionKind, ConversationId, MessageId, Seq, UserId};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

/// Users 0 and 1 have a device each, and user 0 a second one (client 2);
/// user 2 has none.
/// Conversation 0: users 0 and 1. Conversation 1: users 0 and 2.
const CONVS: &[&[usize]] = &[&[0, 1], &[0, 2]];
/// The account of each client.
const DEVICES: &[usize] = &[0, 1, 0];
const CLIENTS: usize = DEVICES.len();
const EMOJI: &[&str] = &["👍", "🎉"];

#[derive(Clone, Debug)]
enum Ev {
    /// Bodies starting with "bad" are refused for good by the server.
    Send {
        client: usize,
        conv: usize,
        bad: bool,
    },
    ToServer(usize),
    ToClient(usize),
    DropToClient(usize),
    DupToClient(usize),
    SwapToClient(usize),
    Cut(usize),
    Network(usize, bool),
    Advance(u64),
    /// Time passes but the driver's timer is late: frames and actions are
    /// handled past a deadline before `handle_timeout` runs.
    Skip(u64),
    /// The client is killed and started again from its store.
    Restart(usize),
    /// The server rate-limits the client's connection for that many ms.
    Throttle(usize, u64),
    /// The user retries the client's oldest Failed message or action.
    Retry(usize),
    /// The user discards the client's newest Failed message or action.
    Discard(usize),
    /// The user edits the `pick`-th message of the conversation (as the
    /// device stores it); bodies starting with "bad" are refused.
    Edit {
        client: usize,
        conv: usize,
        pick: usize,
        bad: bool,
    },
    /// The user deletes the `pick`-th message.
    Delete {
        client: usize,
        conv: usize,
        pick: usize,
    },
    /// The user sets or removes a reaction on the `pick`-th message.
    React {
        client: usize,
        conv: usize,
        pick: usize,
        emoji: usize,
        on: bool,
    },
    /// The user reads the conversation up to its `pick`-th message, or
    /// everything (`pick` 8: the app asks for the highest mark there is).
    MarkRead {
        client: usize,
        conv: usize,
        pick: usize,
    },
}

fn event() -> impl Strategy<Value = Ev> {
    let client = || 0..CLIENTS;
    prop_oneof![
        5 => (client(), 0..CONVS.len(), prop::bool::weighted(0.15))
            .prop_map(|(client, conv, bad)| Ev::Send { client, conv, bad }),
        6 => client().prop_map(Ev::ToServer),
        6 => client().prop_map(Ev::ToClient),
        1 => client().prop_map(Ev::DropToClient),
        1 => client().prop_map(Ev::DupToClient),
        1 => client().prop_map(Ev::SwapToClient),
        1 => client().prop_map(Ev::Cut),
        1 => (client(), any::<bool>()).prop_map(|(c, up)| Ev::Network(c, up)),
        3 => (1u64..4000).prop_map(Ev::Advance),
        1 => (1u64..2000).prop_map(Ev::Skip),
        1 => client().prop_map(Ev::Restart),
        1 => (client(), 1u64..3000).prop_map(|(c, ms)| Ev::Throttle(c, ms)),
        1 => client().prop_map(Ev::Retry),
        1 => client().prop_map(Ev::Discard),
        3 => (client(), 0..CONVS.len(), 0..8usize, prop::bool::weighted(0.15))
            .prop_map(|(client, conv, pick, bad)| Ev::Edit { client, conv, pick, bad }),
        1 => (client(), 0..CONVS.len(), 0..8usize)
            .prop_map(|(client, conv, pick)| Ev::Delete { client, conv, pick }),
        3 => (client(), 0..CONVS.len(), 0..8usize, 0..EMOJI.len(), any::<bool>())
            .prop_map(|(client, conv, pick, emoji, on)| Ev::React { client, conv, pick, emoji, on }),
        4 => (client(), 0..CONVS.len(), 0..9usize)
            .prop_map(|(client, conv, pick)| Ev::MarkRead { client, conv, pick }),
    ]
}

fn config() -> Config {
    Config {
        reconnect_base: Duration::from_millis(50),
        reconnect_cap: Duration::from_secs(1),
        ack_timeout: Duration::from_secs(1),
        window: 4,
        sync_page: 3,
        retry_budget: 3,
        seed: 11,
    }
}

fn stored(w: &World, c: usize) -> Vec<Item> {
    (0..CONVS.len())
        .flat_map(|i| w.clients[c].timeline(conv_id(i)))
        .collect()
}

/// Whether account `user` has a device.
fn has_client(user: usize) -> bool {
    DEVICES.contains(&user)
}

/// The clients of account `user`.
fn devices_of(user: UserId) -> impl Iterator<Item = usize> {
    (0..CLIENTS).filter(move |&c| user_id(DEVICES[c]) == user)
}

/// Whether client `c` belongs to conversation `conv`.
fn member(c: usize, conv: usize) -> bool {
    CONVS[conv].contains(&DEVICES[c])
}

/// The `pick`-th message of the conversation as client `c` stores it.
fn pick_message(w: &World, c: usize, conv: usize, pick: usize) -> Option<Item> {
    let timeline = w.clients[c].timeline(conv_id(conv));
    if timeline.is_empty() {
        return None;
    }
    let n = timeline.len();
    timeline.into_iter().nth(pick % n)
}

/// Failed rows of client `c` (messages and actions), oldest first.
fn failed_rows(w: &World, c: usize) -> Vec<Item> {
    let mut rows: Vec<Item> = stored(w, c)
        .into_iter()
        .flat_map(|i| {
            let pending: Vec<MessageId> = i.pending.iter().map(|p| p.id).collect();
            std::iter::once(i).chain(pending.into_iter().map(|id| w.item(c, id)))
        })
        .filter(|i| i.status == Status::Failed)
        .collect();
    rows.sort_by_key(|i| (i.local_seq, i.id));
    rows
}

/// Whether a refusal at once is the one the core owes for this target.
fn refused_rightly(e: &ActionError, client: usize, target: &Item, author_only: bool) -> bool {
    match e {
        ActionError::NotAuthor => author_only && target.sender != user_id(DEVICES[client]),
        ActionError::Deleted => target.deleted,
        _ => false,
    }
}

fn apply(w: &mut World, ev: &Ev, bodies: &mut u64) {
    match *ev {
        Ev::Send { client, conv, bad } => {
            *bodies += 1;
            let body = if bad {
                format!("bad {bodies}")
            } else {
                format!("m{bodies}")
            };
            // Refused at once only for a conversation the device does not
            // know (user 1 is not in conversation 1).
            if let Err(e) = w.send(client, conv_id(conv), &body) {
                assert!(!member(client, conv), "send refused: {e}");
            }
        }
        Ev::ToServer(c) => {
            w.deliver_to_server(c);
        }
        Ev::ToClient(c) => {
            w.deliver_to_client(c);
        }
        Ev::DropToClient(c) => {
            w.drop_to_client(c);
        }
        Ev::DupToClient(c) => w.dup_to_client(c),
        Ev::SwapToClient(c) => w.swap_to_client(c),
        Ev::Cut(c) => w.cut(c),
        Ev::Network(c, up) => w.set_network(c, up),
        Ev::Advance(ms) => w.advance(Duration::from_millis(ms)),
        Ev::Skip(ms) => w.skip(Duration::from_millis(ms)),
        Ev::Restart(c) => w.restart(c),
        Ev::Throttle(c, ms) => {
            if w.clients[c].connected {
                let until = w.now() + Duration::from_millis(ms);
                w.server.throttle(c, until);
            }
        }
        Ev::Retry(c) => {
            if let Some(item) = failed_rows(w, c).first() {
                w.retry(c, item.id).expect("a Failed row can be retried");
            }
        }
        Ev::Discard(c) => {
            if let Some(item) = failed_rows(w, c).last() {
                w.discard(c, item.id)
                    .expect("a Failed row can be discarded");
            }
        }
        Ev::Edit {
            client,
            conv,
            pick,
            bad,
        } => {
            let Some(target) = pick_message(w, client, conv, pick) else {
                return;
            };
            *bodies += 1;
            let body = if bad {
                format!("bad edit {bodies}")
            } else {
                format!("e{bodies}")
            };
            if let Err(e) = w.edit(client, target.id, &body) {
                assert!(
                    refused_rightly(&e, client, &target, true),
                    "{e}: {target:?}"
                );
            }
        }
        Ev::Delete { client, conv, pick } => {
            let Some(target) = pick_message(w, client, conv, pick) else {
                return;
            };
            if let Err(e) = w.delete(client, target.id) {
                assert!(
                    refused_rightly(&e, client, &target, true),
                    "{e}: {target:?}"
                );
            }
        }
        Ev::React {
            client,
            conv,
            pick,
            emoji,
            on,
        } => {
            let Some(target) = pick_message(w, client, conv, pick) else {
                return;
            };
            if let Err(e) = w.react(client, target.id, EMOJI[emoji], on) {
                assert!(
                    refused_rightly(&e, client, &target, false),
                    "{e}: {target:?}"
                );
            }
        }
        Ev::MarkRead { client, conv, pick } => {
            if !member(client, conv) {
                return;
            }
            if pick == 8 {
                w.mark_read(client, conv_id(conv), Seq(u64::MAX))
                    .expect("a known conversation");
                return;
            }
            let Some(target) = pick_message(w, client, conv, pick) else {
                return;
            };
            // The app marks read what it shows; a local message has no
            // place yet, so the newest confirmed one before it counts.
            let seq = target.seq.unwrap_or_else(|| {
                w.clients[client]
                    .stored_conversation(conv_id(conv))
                    .map_or(Seq::ZERO, |c| c.cursor)
            });
            w.mark_read(client, conv_id(conv), seq)
                .expect("a known conversation");
        }
    }
}

/// Truthful status, checked after every event: In-Flight and beyond only
/// for what the server has; Success only once every other member stored it
/// on a device; Read only once every other member's read mark covers it.
fn check_truthful(w: &World) {
    for (c, &user) in DEVICES.iter().enumerate() {
        let me = user_id(user);
        for item in stored(w, c) {
            assert_eq!(item.own, item.sender == me, "client {c}: {item:?}");
            let Some(seq) = item.seq else {
                assert!(matches!(item.status, Status::Sending | Status::Failed));
                assert!(item.own);
                continue;
            };
            let on_server = w
                .server
                .message(item.id)
                .unwrap_or_else(|| panic!("client {c} stores {} the server lacks", item.id));
            assert_eq!((on_server.seq, on_server.sender), (seq, item.sender));
            assert!(on_server.action.is_none(), "an action in the timeline");
            assert!(item.status.is_confirmed(), "{item:?}");
            if !item.own || item.status < Status::Success {
                continue;
            }
            let conv = &w.server.convs[&item.conversation];
            let members = CONVS[conv_index(item.conversation)];
            for &m in members.iter().filter(|&&m| user_id(m) != item.sender) {
                assert!(
                    has_client(m),
                    "Success while user {m} has no device: {item:?}"
                );
                let stored = devices_of(user_id(m)).any(|d| {
                    let theirs = w.clients[d].store.item(item.id).expect("item");
                    theirs.and_then(|i| i.seq) == Some(seq)
                });
                assert!(stored, "Success before user {m} stored {}", item.id);
                if item.status == Status::Read {
                    let read = conv.read.get(&user_id(m)).copied().unwrap_or_default();
                    assert!(read >= seq, "Read before user {m} read {}", item.id);
                }
            }
        }
    }
}

fn conv_index(id: ConversationId) -> usize {
    (0..CONVS.len())
        .find(|&i| conv_id(i) == id)
        .expect("known conversation")
}

/// Statuses only move forward (Sending → In-Flight → Success → Read, any
/// step skipped); Failed only from Sending, and back only by a retry. A row
/// this device did not queue arrives confirmed. Actions stop at Success.
fn check_history(id: MessageId, history: &[Status], queued_here: bool, retries: usize) {
    use Status::*;
    let first = history.first().copied();
    if queued_here {
        assert_eq!(first, Some(Sending), "{id}: {history:?}");
    } else {
        assert!(first.is_some_and(Status::is_confirmed), "{id}: {history:?}");
    }
    let mut requeued = 0;
    for step in history.windows(2) {
        match (step[0], step[1]) {
            (Sending, Failed) => {}
            (Failed, Sending) => requeued += 1,
            (a, b) if a < b && b.is_confirmed() => {}
            _ => panic!("{id} moved {:?} → {:?}: {history:?}", step[0], step[1]),
        }
    }
    assert!(
        requeued <= retries,
        "{id} requeued without a retry: {history:?}"
    );
}

/// The server's history of a conversation folded, by message.
fn folded_server(
    w: &World,
    conv: ConversationId,
) -> BTreeMap<MessageId, chatsync_protocol::Folded> {
    let server = &w.server.convs[&conv];
    server
        .messages
        .iter()
        .filter(|m| m.action.is_none())
        .map(|m| (m.id, server.folded(m.id)))
        .collect()
}

fn check_healed(w: &World) {
    check_truthful(w);
    for (c, &user) in DEVICES.iter().enumerate() {
        let client = &w.clients[c];
        let me = user_id(user);
        let items = stored(w, c);
        let by_id: HashMap<MessageId, &Item> = items.iter().map(|i| (i.id, i)).collect();
        let removed = |id: &MessageId| client.removed_rows.contains(id);
        let failed_ever = |id: &MessageId| {
            client
                .stored_history
                .get(id)
                .is_some_and(|h| h.contains(&Status::Failed))
        };
        client.check_view(c);

        // No stuck message or action.
        assert!(
            client.syncer.sending().is_empty(),
            "client {c} still sending"
        );
        let rows: Vec<Item> = client
            .queued
            .iter()
            .filter_map(|id| client.store.item(*id).expect("item"))
            .collect();
        assert!(rows.iter().all(|i| i.status != Status::Sending), "{rows:?}");
        let failed = rows.iter().filter(|i| i.status == Status::Failed).count();
        assert_eq!(client.syncer.unconfirmed(), failed);

        // Nothing lost: each queued message or action is on the server,
        // Failed, or was withdrawn by the user before it left (then it
        // never reaches the server).
        for id in &client.queued {
            let on_server = w.server.message(*id).is_some()
                || w.server
                    .convs
                    .values()
                    .any(|cv| cv.messages.iter().any(|m| m.id == *id));
            let row = client.store.item(*id).expect("item");
            let failed = row.as_ref().is_some_and(|i| i.status == Status::Failed);
            if removed(id) {
                assert!(!on_server && row.is_none(), "{id} withdrawn but kept");
                continue;
            }
            assert!(
                on_server != failed,
                "{id}: on server {on_server}, failed {failed}"
            );
            let row = row.expect("kept");
            if on_server {
                assert!(
                    row.seq.is_some(),
                    "{id} is on the server, not stored confirmed"
                );
            }
        }

        // Statuses of every row in storage, and as subscribers saw them:
        // forward only; the view ends where storage is.
        for (id, history) in &client.stored_history {
            if removed(id) {
                continue;
            }
            let retries = client.retried.get(id).copied().unwrap_or(0);
            check_history(*id, history, client.queued.contains(id), retries);
            let row = client.store.item(*id).expect("item").expect("kept");
            assert_eq!(history.last(), Some(&row.status), "{id}");
            if row.action.is_some() {
                assert!(!history.contains(&Status::Read), "action {id}: {history:?}");
            }
        }
        for (id, history) in &client.history {
            let Some(item) = by_id.get(id) else {
                assert!(removed(id), "{id} vanished from the timeline");
                continue;
            };
            let retries = client.retried.get(id).copied().unwrap_or(0);
            let sent_here = client.sent.iter().any(|(_, s)| s == id);
            if item.own || sent_here {
                check_history(*id, history, sent_here, retries);
            } else {
                assert_eq!(history, &[Status::Success], "incoming {id}");
            }
            assert_eq!(history.last(), Some(&item.status), "{id}");
        }

        for (i, members) in CONVS.iter().enumerate() {
            let conv = conv_id(i);
            let server = &w.server.convs[&conv];
            // Exactly once on the server: no message or action twice.
            let ids: BTreeSet<_> = server.messages.iter().map(|m| m.id).collect();
            assert_eq!(ids.len(), server.messages.len());

            // Order: the server's order of this device's messages, edits
            // and deletes is the order they were queued, leaving out those
            // that failed once (a retry moves them) or were withdrawn.
            let ordered = |id: &MessageId| !failed_ever(id) && !removed(id);
            let in_order = |id: &MessageId| {
                server
                    .messages
                    .iter()
                    .find(|m| m.id == *id)
                    .is_some_and(|m| {
                        !matches!(
                            m.action.as_ref().map(|a| a.kind),
                            Some(ActionKind::React { .. })
                        )
                    })
            };
            let queued: Vec<_> = client
                .queued
                .iter()
                .filter(|id| ordered(id) && in_order(id))
                .copied()
                .collect();
            let mine: BTreeSet<_> = client.queued.iter().collect();
            let on_server: Vec<_> = server
                .messages
                .iter()
                .filter(|m| mine.contains(&m.id) && ordered(&m.id) && in_order(&m.id))
                .map(|m| m.id)
                .collect();
            assert_eq!(on_server, queued, "client {c}, conversation {i}");

            // Read marks: the server's only moved forward (checked after
            // every event), and every member device ends knowing them.
            if !CONVS[i].contains(&DEVICES[c]) {
                continue;
            }
            let stored_conv = client.stored_conversation(conv).expect("conversation");
            for &m in members.iter() {
                let u = user_id(m);
                let marks = stored_conv
                    .members
                    .iter()
                    .find(|mm| mm.user == u)
                    .expect("every member's marks");
                let expected = (
                    server.delivered.get(&u).copied().unwrap_or_default(),
                    server.read.get(&u).copied().unwrap_or_default(),
                );
                assert_eq!(
                    (marks.delivered, marks.read),
                    expected,
                    "client {c}: marks of user {m} in conversation {i}"
                );
            }

            // Gap-free, exactly once: the store holds exactly the server's
            // rows, each once, and the cursor is at the end.
            let timeline = client.timeline(conv);
            let mine: Vec<_> = timeline
                .iter()
                .filter_map(|i| i.seq.map(|s| (s, i.id)))
                .collect();
            let theirs: Vec<_> = server
                .messages
                .iter()
                .filter(|m| m.action.is_none())
                .map(|m| (m.seq, m.id))
                .collect();
            assert_eq!(mine, theirs, "client {c}, conversation {i}");
            for m in server.messages.iter().filter(|m| m.action.is_some()) {
                let row = client.store.item(m.id).expect("item");
                let row = row.unwrap_or_else(|| panic!("client {c} lacks action {}", m.id));
                // The text of an edit of a deleted message is erased, like
                // the message's own (as the real server does).
                let erased = m.action.as_ref().is_some_and(|a| {
                    a.kind == ActionKind::Edit
                        && server
                            .message(a.target)
                            .is_some_and(|t| server.is_deleted(t))
                });
                let body = if erased { "" } else { m.body.as_str() };
                assert_eq!(
                    (row.seq, row.sender, &row.action, row.body.as_str()),
                    (Some(m.seq), m.sender, &m.action, body)
                );
            }
            assert_eq!(stored_conv.cursor.0, server.messages.len() as u64);

            // Converged: every message shows as the server's history folds
            // it; only refused actions of this device remain pending.
            let folded = folded_server(w, conv);
            for item in timeline.iter().filter(|i| i.seq.is_some()) {
                let f = &folded[&item.id];
                let reactions: BTreeMap<String, Vec<UserId>> = item
                    .reactions
                    .iter()
                    .map(|r| (r.emoji.clone(), r.users.clone()))
                    .collect();
                assert_eq!(
                    (&item.body, item.edited, item.deleted, &reactions),
                    (&f.body, f.edited, f.deleted, &f.reactions),
                    "client {c}: {item:?}"
                );
                assert!(
                    item.pending.iter().all(|p| p.status == Status::Failed),
                    "{item:?}"
                );
            }

            // Delivery and reading reach the sender once everyone has a
            // device; actions stop at Success.
            let all_have_devices = members.iter().all(|&m| has_client(m));
            let read_by_others = members
                .iter()
                .filter(|&&m| user_id(m) != me)
                .map(|&m| server.read.get(&user_id(m)).copied().unwrap_or_default())
                .min()
                .unwrap_or_default();
            for m in server.messages.iter().filter(|m| m.sender == me) {
                let row = client.store.item(m.id).expect("item").expect("stored");
                let expected = if !all_have_devices {
                    Status::InFlight
                } else if m.action.is_none() && read_by_others >= m.seq {
                    Status::Read
                } else {
                    Status::Success
                };
                assert_eq!(row.status, expected, "client {c}: {row:?}");
            }
        }
    }
}

/// (delivered, read) marks by conversation and member.
type Marks = BTreeMap<(ConversationId, UserId), (Seq, Seq)>;

/// Every (conversation, member) mark on the server.
fn server_reads(w: &World) -> Marks {
    w.server
        .convs
        .iter()
        .flat_map(|(&id, c)| {
            c.members.iter().map(move |&u| {
                let d = c.delivered.get(&u).copied().unwrap_or_default();
                let r = c.read.get(&u).copied().unwrap_or_default();
                ((id, u), (d, r))
            })
        })
        .collect()
}

/// Marks only move forward: on the server, and as each client stores them.
fn check_marks_forward(w: &World, server_before: &mut Marks, clients_before: &mut [Marks]) {
    let now = server_reads(w);
    for (k, v) in &now {
        let old = server_before.get(k).copied().unwrap_or_default();
        assert!(
            v.0 >= old.0 && v.1 >= old.1,
            "server marks {k:?}: {old:?} → {v:?}"
        );
        assert!(
            v.1 <= v.0,
            "read beyond delivered on the server: {k:?} {v:?}"
        );
    }
    *server_before = now;
    for (c, before) in clients_before.iter_mut().enumerate() {
        let now: Marks = w.clients[c]
            .store
            .conversations()
            .expect("conversations")
            .into_iter()
            .flat_map(|conv| {
                conv.members
                    .into_iter()
                    .map(move |m| ((conv.id, m.user), (m.delivered, m.read)))
            })
            .collect();
        for (k, v) in &now {
            let old = before.get(k).copied().unwrap_or_default();
            assert!(
                v.0 >= old.0 && v.1 >= old.1,
                "client {c} marks {k:?}: {old:?} → {v:?}"
            );
        }
        *before = now;
    }
}

/// Runs `events`; `summary_marks` picks the server's push rule for marks
/// (the current one, or the one before `others`: clients meet both).
fn run(events: &[Ev], summary_marks: bool) {
    let mut w = World::with_devices(3, DEVICES, CONVS, config());
    w.server.summary_marks = summary_marks;
    let mut w = w.start();
    let mut bodies = 0;
    let mut server_marks = BTreeMap::new();
    let mut client_marks = vec![BTreeMap::new(); CLIENTS];
    for ev in events {
        apply(&mut w, ev, &mut bodies);
        check_truthful(&w);
        check_marks_forward(&w, &mut server_marks, &mut client_marks);
    }
    // Heal: networks up, every connection renewed (a frame lost on the way
    // to a client means, on a real socket, a lost connection), then quiet.
    for c in 0..CLIENTS {
        w.clients[c].network_up = true;
        w.cut(c);
    }
    w.run_until_idle();
    check_marks_forward(&w, &mut server_marks, &mut client_marks);
    check_healed(&w);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_under_random_faults(
        events in prop::collection::vec(event(), 1..120),
        summary_marks in any::<bool>(),
    ) {
        run(&events, summary_marks);
    }
}

#[test]
fn a_busy_scenario_holds_the_invariants() {
    use Ev::*;
    let events = [
        Send {
            client: 0,
            conv: 0,
            bad: false,
        },
        Send {
            client: 0,
            conv: 0,
            bad: true,
        },
        Send {
            client: 0,
            conv: 1,
            bad: false,
        },
        Throttle(1, 500),
        Send {
            client: 1,
            conv: 0,
            bad: false,
        },
        Send {
            client: 1,
            conv: 0,
            bad: false,
        },
        ToServer(0),
        ToServer(1),
        DupToClient(0),
        SwapToClient(0),
        ToClient(0),
        Restart(0),
        Send {
            client: 0,
            conv: 0,
            bad: false,
        },
        ToServer(1),
        DropToClient(1),
        Advance(600),
        Retry(0),
        Network(1, false),
        Send {
            client: 1,
            conv: 0,
            bad: false,
        },
        Advance(3000),
    ];
    run(&events, true);
    run(&events, false);
}
