//! Random faults against two clients and the fake server, then a healed
//! link: every invariant of DESIGN.md that concerns the core must hold.

use super::harness::{conv_id, user_id, World};
use crate::core::Config;
use crate::model::{Item, Status};
use crate::store::ClientStore;
use chatsync_protocol::{ConversationId, MessageId};
use proptest::prelude::*;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

/// Users 0 and 1 have a device each; user 2 has none.
/// Conversation 0: users 0 and 1. Conversation 1: users 0 and 2.
const CONVS: &[&[usize]] = &[&[0, 1], &[0, 2]];
const CLIENTS: usize = 2;

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
    /// The user retries the client's oldest Failed message.
    Retry(usize),
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

fn has_client(user: usize) -> bool {
    user < CLIENTS
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
                assert!(!CONVS[conv].contains(&client), "send refused: {e}");
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
            let failed = stored(w, c)
                .into_iter()
                .filter(|i| i.status == Status::Failed)
                .min_by_key(|i| i.local_seq);
            if let Some(item) = failed {
                w.retry(c, item.id)
                    .expect("a Failed message can be retried");
            }
        }
    }
}

/// Truthful status, checked after every event: In-Flight and Success only
/// for what the server has, Success only once every other member stored it.
fn check_truthful(w: &World) {
    for c in 0..CLIENTS {
        for item in stored(w, c) {
            let Some(seq) = item.seq else {
                assert!(matches!(item.status, Status::Sending | Status::Failed));
                assert!(item.own);
                continue;
            };
            let on_server = w
                .server
                .message(item.id)
                .unwrap_or_else(|| panic!("client {c} stores {} the server lacks", item.id));
            assert_eq!((on_server.seq, &on_server.body), (seq, &item.body));
            assert_eq!(on_server.sender, item.sender);
            assert!(item.status.is_confirmed(), "{item:?}");
            if !item.own || item.status != Status::Success {
                continue;
            }
            let members = CONVS[conv_index(item.conversation)];
            for &m in members.iter().filter(|&&m| user_id(m) != item.sender) {
                assert!(
                    has_client(m),
                    "Success while user {m} has no device: {item:?}"
                );
                let theirs = w.clients[m].store.item(item.id).expect("item");
                assert_eq!(
                    theirs.and_then(|i| i.seq),
                    Some(seq),
                    "Success before client {m} stored {}",
                    item.id
                );
            }
        }
    }
}

fn conv_index(id: ConversationId) -> usize {
    (0..CONVS.len())
        .find(|&i| conv_id(i) == id)
        .expect("known conversation")
}

/// Statuses only move forward; Failed → Sending only by a user's retry.
fn check_history(id: MessageId, history: &[Status], own: bool, retries: usize) {
    use Status::*;
    if !own {
        assert_eq!(history, [Success], "incoming {id}");
        return;
    }
    assert_eq!(history.first(), Some(&Sending), "{id}: {history:?}");
    let mut requeued = 0;
    for step in history.windows(2) {
        match (step[0], step[1]) {
            (Sending, InFlight) | (Sending, Success) | (InFlight, Success) | (Sending, Failed) => {}
            (Failed, Sending) => requeued += 1,
            _ => panic!("{id} moved {:?} → {:?}: {history:?}", step[0], step[1]),
        }
    }
    assert!(
        requeued <= retries,
        "{id} requeued without a retry: {history:?}"
    );
}

fn check_healed(w: &World) {
    check_truthful(w);
    for c in 0..CLIENTS {
        let client = &w.clients[c];
        let me = user_id(c);
        let items = stored(w, c);
        let by_id: HashMap<MessageId, &Item> = items.iter().map(|i| (i.id, i)).collect();

        // No stuck message.
        assert!(
            client.syncer.sending().is_empty(),
            "client {c} still sending"
        );
        assert!(items.iter().all(|i| i.status != Status::Sending));
        let failed = items.iter().filter(|i| i.status == Status::Failed).count();
        assert_eq!(client.syncer.unconfirmed(), failed);

        // Nothing lost.
        for (_, id) in &client.sent {
            let on_server = w.server.message(*id).is_some();
            let failed = by_id.get(id).is_some_and(|i| i.status == Status::Failed);
            assert!(
                on_server != failed,
                "{id}: on server {on_server}, failed {failed}"
            );
        }

        // Statuses seen by subscribers: forward only, and they end where storage is.
        for (id, history) in &client.history {
            let item = by_id[id];
            let retries = client.retried.get(id).copied().unwrap_or(0);
            check_history(*id, history, item.own, retries);
            assert_eq!(history.last(), Some(&item.status), "{id}");
        }

        for (i, members) in CONVS.iter().enumerate() {
            let conv = conv_id(i);
            let server = &w.server.convs[&conv];
            // Exactly once on the server.
            let ids: BTreeSet<_> = server.messages.iter().map(|m| m.id).collect();
            assert_eq!(ids.len(), server.messages.len());

            // Order: per sender, the server's order is the send order of
            // the messages that never failed (a retry moves a message).
            let never_failed = |id: &MessageId| !client.history[id].contains(&Status::Failed);
            let sent: Vec<_> = client
                .sent
                .iter()
                .filter(|(cv, id)| *cv == conv && never_failed(id))
                .map(|(_, id)| *id)
                .collect();
            let on_server: Vec<_> = server
                .messages
                .iter()
                .filter(|m| m.sender == me && never_failed(&m.id))
                .map(|m| m.id)
                .collect();
            assert_eq!(on_server, sent, "client {c}, conversation {i}");

            if !members.contains(&c) {
                continue;
            }
            // Gap-free, exactly once: the store holds exactly the server's
            // messages, each once, and the cursor is at the end.
            let mine: Vec<_> = client
                .timeline(conv)
                .into_iter()
                .filter_map(|i| i.seq.map(|s| (s, i.id, i.body)))
                .collect();
            let theirs: Vec<_> = server
                .messages
                .iter()
                .map(|m| (m.seq, m.id, m.body.clone()))
                .collect();
            assert_eq!(mine, theirs, "client {c}, conversation {i}");
            let stored_conv = client.stored_conversation(conv).expect("conversation");
            assert_eq!(stored_conv.cursor.0, server.messages.len() as u64);

            // Delivery reaches the sender once everyone has a device.
            let all_have_devices = members.iter().all(|&m| has_client(m));
            for item in client
                .timeline(conv)
                .iter()
                .filter(|i| i.own && i.seq.is_some())
            {
                let expected = if all_have_devices {
                    Status::Success
                } else {
                    Status::InFlight
                };
                assert_eq!(item.status, expected, "{item:?}");
            }
        }
    }
}

fn run(events: &[Ev]) {
    let mut w = World::new(3, CLIENTS, CONVS, config()).start();
    let mut bodies = 0;
    for ev in events {
        apply(&mut w, ev, &mut bodies);
        check_truthful(&w);
    }
    // Heal: networks up, every connection renewed (a frame lost on the way
    // to a client means, on a real socket, a lost connection), then quiet.
    for c in 0..CLIENTS {
        w.clients[c].network_up = true;
        w.cut(c);
    }
    w.run_until_idle();
    check_healed(&w);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_under_random_faults(events in prop::collection::vec(event(), 1..80)) {
        run(&events);
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
    run(&events);
}
