//! Storage conformance suite: every [`ClientStore`] backend must pass every
//! check here. Each `check_*` function is generic over the backend and runs
//! against [`MemoryStore`], [`SqliteStore::open_in_memory`] and a
//! [`SqliteStore`] on a file; a property test then drives the in-memory twin
//! and SQLite with the same random ops and requires identical answers.
//! SQLite-file specifics (reopen, kill) come last.

#![allow(clippy::unwrap_used, missing_docs)]

use chatsync_client::model::{PendingAction, Reaction};
use chatsync_client::store::{
    ClientStore, LoadedState, MemoryStore, SqliteStore, StoreError, StoreOp,
};
use chatsync_client::{Conversation, Failure, Item, Status};
use chatsync_protocol::{
    ActionKind, ActionRef, ConversationId, ErrorCode, MemberMarks, MessageId, Seq, UserId,
};
use proptest::prelude::*;
use tempfile::TempDir;
use uuid::Uuid;

// ---------------------------------------------------------------- fixtures

fn conv(n: u128) -> ConversationId {
    ConversationId(Uuid::from_u128(0xc0 << 64 | n))
}

fn mid(n: u128) -> MessageId {
    MessageId(Uuid::from_u128(0xa0 << 64 | n))
}

fn user(n: u128) -> UserId {
    UserId(Uuid::from_u128(0xb0 << 64 | n))
}

/// An own message as `send` stores it: Sending, no seq. This account is
/// `user(1)`.
fn outgoing(id: MessageId, c: ConversationId, local_seq: u64, body: &str) -> Item {
    Item::message(
        id,
        c,
        user(1),
        "me".into(),
        body.into(),
        true,
        Status::Sending,
        None,
        local_seq,
        1_700_000_000_000 + local_seq as i64,
        None,
    )
}

/// Someone else's (`user(2)`'s) message as catch-up stores it.
fn incoming(id: MessageId, c: ConversationId, seq: u64, body: &str) -> Item {
    Item::message(
        id,
        c,
        user(2),
        "them".into(),
        body.into(),
        false,
        Status::Success,
        Some(Seq(seq)),
        0,
        1_600_000_000_000,
        Some(1_700_000_000_000 + seq as i64),
    )
}

/// `item` made an action on `target`.
fn acting(mut item: Item, target: MessageId, kind: ActionKind) -> Item {
    item.action = Some(ActionRef { target, kind });
    item
}

/// An own action as `edit`, `delete` or `react` stores it: Sending.
fn own_action(
    id: MessageId,
    c: ConversationId,
    local_seq: u64,
    target: MessageId,
    kind: ActionKind,
    body: &str,
) -> Item {
    acting(outgoing(id, c, local_seq, body), target, kind)
}

/// A confirmed action of `user(from)` (this account when `from` is 1).
fn confirmed_action(
    id: MessageId,
    c: ConversationId,
    seq: u64,
    from: u128,
    target: MessageId,
    kind: ActionKind,
    body: &str,
) -> Item {
    let mut item = incoming(id, c, seq, body);
    item.sender = user(from);
    item.sender_name = format!("user{from}");
    item.own = from == 1;
    acting(item, target, kind)
}

const ON: ActionKind = ActionKind::React { on: true };
const OFF: ActionKind = ActionKind::React { on: false };

/// A message as shown after edits and deletes, from the stored one.
fn shown_as(item: &Item, body: &str, edited: bool, deleted: bool) -> Item {
    Item {
        body: body.into(),
        edited,
        deleted,
        ..item.clone()
    }
}

fn pending(item: &Item, failure: Option<Failure>) -> PendingAction {
    PendingAction {
        id: item.id,
        kind: item.action.as_ref().unwrap().kind,
        body: item.body.clone(),
        status: if failure.is_some() {
            Status::Failed
        } else {
            item.status
        },
        failure,
    }
}

fn reaction(emoji: &str, users: &[u128]) -> Reaction {
    Reaction {
        emoji: emoji.into(),
        users: users.iter().map(|u| user(*u)).collect(),
    }
}

fn upsert(item: &Item) -> StoreOp {
    StoreOp::UpsertConfirmed(item.clone())
}

fn set_status(id: MessageId, status: Status) -> StoreOp {
    StoreOp::SetStatus { id, status }
}

/// The one message of a conversation's timeline, as shown.
fn only<S: ClientStore>(store: &S, c: ConversationId) -> Item {
    let mut tl = store.timeline(c, None, 100).unwrap();
    assert_eq!(tl.len(), 1, "{tl:?}");
    let item = tl.remove(0);
    // `item` shows a message exactly as the timeline does.
    assert_eq!(store.item(item.id).unwrap().as_ref(), Some(&item));
    item
}

/// `item` as the server's acknowledgement describes it.
fn acked(item: &Item, seq: u64, status: Status) -> Item {
    Item {
        seq: Some(Seq(seq)),
        server_ts: Some(1_800_000_000_000 + seq as i64),
        status,
        ..item.clone()
    }
}

fn failure() -> Failure {
    Failure {
        code: ErrorCode::NotMember,
        message: "not a member".into(),
        retryable: false,
    }
}

fn marks(u: u128, delivered: u64) -> MemberMarks {
    marks_read(u, delivered, 0)
}

fn marks_read(u: u128, delivered: u64, read: u64) -> MemberMarks {
    MemberMarks {
        user: user(u),
        username: format!("user{u}"),
        delivered: Seq(delivered),
        read: Seq(read),
    }
}

fn insert(item: &Item) -> StoreOp {
    StoreOp::InsertOutgoing {
        item: item.clone(),
        transmitted: false,
    }
}

fn upsert_conv(
    c: ConversationId,
    title: &str,
    members: Vec<MemberMarks>,
    last_seq: u64,
) -> StoreOp {
    StoreOp::UpsertConversation {
        id: c,
        title: title.into(),
        members,
        last_seq: Seq(last_seq),
    }
}

fn ids(items: &[Item]) -> Vec<MessageId> {
    items.iter().map(|i| i.id).collect()
}

fn outbox_ids(state: &LoadedState) -> Vec<MessageId> {
    state.outbox.iter().map(|(i, _)| i.id).collect()
}

fn status<S: ClientStore>(store: &S, id: MessageId) -> Status {
    store.item(id).unwrap().unwrap().status
}

fn conversation<S: ClientStore>(store: &S, c: ConversationId) -> Conversation {
    store
        .conversations()
        .unwrap()
        .into_iter()
        .find(|x| x.id == c)
        .unwrap()
}

// ------------------------------------------------------------------ checks

fn check_insert_outgoing_shows_in_outbox_in_local_order<S: ClientStore>(make: impl Fn() -> S) {
    let mut s = make();
    assert_eq!(s.load().unwrap(), LoadedState::default());
    let a = outgoing(mid(3), conv(1), 1, "first");
    let b = outgoing(mid(1), conv(2), 2, "second");
    let c = outgoing(mid(2), conv(1), 3, "third");
    // Inserted out of local order, across batches and conversations.
    s.apply(&[insert(&c)]).unwrap();
    s.apply(&[
        insert(&a),
        StoreOp::InsertOutgoing {
            item: b.clone(),
            transmitted: true,
        },
    ])
    .unwrap();
    let st = s.load().unwrap();
    assert_eq!(
        st.outbox,
        vec![(a.clone(), false), (b.clone(), true), (c.clone(), false)]
    );
    assert!(st.in_flight.is_empty());
    assert_eq!(st.max_local_seq, 3);
    assert_eq!(s.item(a.id).unwrap(), Some(a.clone()));
    assert_eq!(s.item(mid(99)).unwrap(), None);

    // Inserting the same id again keeps the first version.
    let mut changed = a.clone();
    changed.body = "changed".into();
    changed.local_seq = 9;
    s.apply(&[insert(&changed)]).unwrap();
    assert_eq!(s.item(a.id).unwrap(), Some(a));
    assert_eq!(s.load().unwrap().max_local_seq, 3);
}

fn check_mark_transmitted<S: ClientStore>(make: impl Fn() -> S) {
    let mut s = make();
    let a = outgoing(mid(1), conv(1), 1, "a");
    let b = outgoing(mid(2), conv(1), 2, "b");
    s.apply(&[insert(&a), insert(&b)]).unwrap();
    s.apply(&[StoreOp::MarkTransmitted(vec![b.id, mid(77)])])
        .unwrap();
    assert_eq!(
        s.load().unwrap().outbox,
        vec![(a.clone(), false), (b.clone(), true)]
    );
    // Idempotent.
    s.apply(&[StoreOp::MarkTransmitted(vec![a.id, b.id])])
        .unwrap();
    assert_eq!(s.load().unwrap().outbox, vec![(a, true), (b, true)]);
}

fn check_upsert_confirmed_moves_outgoing_to_in_flight<S: ClientStore>(make: impl Fn() -> S) {
    let mut s = make();
    let a = outgoing(mid(1), conv(1), 1, "a");
    let b = outgoing(mid(2), conv(1), 2, "b");
    let c = outgoing(mid(3), conv(2), 3, "c");
    s.apply(&[insert(&a), insert(&b), insert(&c)]).unwrap();
    // The ack carries the server's view; local fields stay as stored.
    let mut ack_b = acked(&b, 7, Status::InFlight);
    ack_b.local_seq = 0;
    ack_b.body = "ignored".into();
    s.apply(&[
        StoreOp::UpsertConfirmed(ack_b),
        StoreOp::UpsertConfirmed(acked(&c, 2, Status::InFlight)),
    ])
    .unwrap();
    let st = s.load().unwrap();
    assert_eq!(outbox_ids(&st), vec![a.id]);
    let expect_b = acked(&b, 7, Status::InFlight);
    let expect_c = acked(&c, 2, Status::InFlight);
    // In timeline order (by seq); c's seq 2 sorts before b's seq 7.
    assert_eq!(st.in_flight, vec![expect_c, expect_b.clone()]);
    assert_eq!(s.item(b.id).unwrap(), Some(expect_b.clone()));
    // max_local_seq still counts confirmed messages.
    assert_eq!(st.max_local_seq, 3);

    // Success stays in in_flight (it waits for Read); Read leaves it.
    s.apply(&[set_status(b.id, Status::Success)]).unwrap();
    assert_eq!(ids(&s.load().unwrap().in_flight), vec![c.id, b.id]);
    s.apply(&[set_status(b.id, Status::Read)]).unwrap();
    assert_eq!(ids(&s.load().unwrap().in_flight), vec![c.id]);

    // An incoming message inserted by UpsertConfirmed is neither outbox nor in-flight.
    let inc = incoming(mid(9), conv(1), 8, "hi");
    s.apply(&[StoreOp::UpsertConfirmed(inc.clone())]).unwrap();
    let st = s.load().unwrap();
    assert_eq!(outbox_ids(&st), vec![a.id]);
    assert_eq!(ids(&st.in_flight), vec![c.id]);
    assert_eq!(s.item(inc.id).unwrap(), Some(inc));
    // An own message from another device arrives In-Flight and counts.
    let other_dev = Item {
        own: true,
        status: Status::InFlight,
        ..incoming(mid(10), conv(1), 9, "from my phone")
    };
    s.apply(&[StoreOp::UpsertConfirmed(other_dev.clone())])
        .unwrap();
    assert_eq!(ids(&s.load().unwrap().in_flight), vec![c.id, other_dev.id]);
}

fn check_status_never_moves_back<S: ClientStore>(make: impl Fn() -> S) {
    let mut s = make();
    let a = outgoing(mid(1), conv(1), 1, "a");
    s.apply(&[insert(&a)]).unwrap();
    s.apply(&[StoreOp::SetStatus {
        id: a.id,
        status: Status::Success,
    }])
    .unwrap();
    // Sending → Success directly is allowed.
    assert_eq!(status(&s, a.id), Status::Success);
    s.apply(&[
        StoreOp::SetStatus {
            id: a.id,
            status: Status::InFlight,
        },
        StoreOp::SetStatus {
            id: a.id,
            status: Status::Sending,
        },
    ])
    .unwrap();
    assert_eq!(status(&s, a.id), Status::Success);
    // A late, repeated acknowledgement does not move it back either, but
    // does record the seq.
    s.apply(&[StoreOp::UpsertConfirmed(acked(&a, 4, Status::InFlight))])
        .unwrap();
    let got = s.item(a.id).unwrap().unwrap();
    assert_eq!(got.status, Status::Success);
    assert_eq!(got.seq, Some(Seq(4)));
    // A Success message still waits for Read.
    assert_eq!(s.load().unwrap().in_flight, vec![got]);
    // SetStatus on an unknown id is a no-op.
    s.apply(&[StoreOp::SetStatus {
        id: mid(50),
        status: Status::Success,
    }])
    .unwrap();
    assert_eq!(s.item(mid(50)).unwrap(), None);
}

fn check_failed_only_from_sending<S: ClientStore>(make: impl Fn() -> S) {
    let mut s = make();
    let a = outgoing(mid(1), conv(1), 1, "a");
    let b = outgoing(mid(2), conv(1), 2, "b");
    s.apply(&[insert(&a), insert(&b)]).unwrap();
    s.apply(&[StoreOp::UpsertConfirmed(acked(&b, 1, Status::InFlight))])
        .unwrap();
    s.apply(&[
        StoreOp::SetFailed {
            id: a.id,
            failure: failure(),
        },
        StoreOp::SetFailed {
            id: b.id,
            failure: failure(),
        },
        // SetStatus cannot reach Failed from a confirmed status either.
        StoreOp::SetStatus {
            id: b.id,
            status: Status::Failed,
        },
    ])
    .unwrap();
    let got_a = s.item(a.id).unwrap().unwrap();
    assert_eq!(got_a.status, Status::Failed);
    assert_eq!(got_a.failure, Some(failure()));
    let got_b = s.item(b.id).unwrap().unwrap();
    assert_eq!(got_b.status, Status::InFlight);
    assert_eq!(got_b.failure, None);
    // A Failed message stays in the outbox (it is unconfirmed), visible where it was.
    let st = s.load().unwrap();
    assert_eq!(st.outbox, vec![(got_a.clone(), false)]);
    // A second SetFailed does not overwrite the reason; status moves are refused.
    let other = Failure {
        code: ErrorCode::TooLarge,
        message: "too large".into(),
        retryable: false,
    };
    s.apply(&[
        StoreOp::SetFailed {
            id: a.id,
            failure: other,
        },
        StoreOp::SetStatus {
            id: a.id,
            status: Status::Success,
        },
    ])
    .unwrap();
    assert_eq!(s.item(a.id).unwrap(), Some(got_a.clone()));
    // The server confirming it after all takes the new status and clears the reason.
    s.apply(&[StoreOp::UpsertConfirmed(acked(&a, 2, Status::InFlight))])
        .unwrap();
    assert_eq!(s.item(a.id).unwrap(), Some(acked(&a, 2, Status::InFlight)));
}

fn check_requeue<S: ClientStore>(make: impl Fn() -> S) {
    let mut s = make();
    let a = outgoing(mid(1), conv(1), 1, "a");
    let b = outgoing(mid(2), conv(1), 2, "b");
    let c = outgoing(mid(3), conv(1), 3, "c");
    s.apply(&[insert(&a), insert(&b), insert(&c)]).unwrap();
    s.apply(&[StoreOp::SetFailed {
        id: a.id,
        failure: failure(),
    }])
    .unwrap();
    // Requeue of a non-Failed message does nothing.
    s.apply(&[StoreOp::Requeue {
        id: b.id,
        local_seq: 10,
    }])
    .unwrap();
    assert_eq!(s.item(b.id).unwrap(), Some(b.clone()));
    s.apply(&[StoreOp::Requeue {
        id: a.id,
        local_seq: 4,
    }])
    .unwrap();
    let requeued = Item {
        local_seq: 4,
        ..a.clone()
    };
    assert_eq!(s.item(a.id).unwrap(), Some(requeued.clone()));
    let st = s.load().unwrap();
    // Same id, now after every other local message.
    assert_eq!(outbox_ids(&st), vec![b.id, c.id, a.id]);
    assert_eq!(st.max_local_seq, 4);
    assert_eq!(
        ids(&s.timeline(conv(1), None, 10).unwrap()),
        vec![b.id, c.id, a.id]
    );
}

fn check_remove<S: ClientStore>(make: impl Fn() -> S) {
    let mut s = make();
    let a = outgoing(mid(1), conv(1), 1, "a");
    let b = outgoing(mid(2), conv(1), 2, "b");
    s.apply(&[insert(&a), insert(&b)]).unwrap();
    s.apply(&[StoreOp::Remove(a.id), StoreOp::Remove(mid(40))])
        .unwrap();
    assert_eq!(s.item(a.id).unwrap(), None);
    assert_eq!(outbox_ids(&s.load().unwrap()), vec![b.id]);
    assert_eq!(ids(&s.timeline(conv(1), None, 10).unwrap()), vec![b.id]);
    // Remove then insert in one batch: it is back.
    s.apply(&[StoreOp::Remove(b.id), insert(&b)]).unwrap();
    assert_eq!(s.item(b.id).unwrap(), Some(b));
}

fn check_timeline_order<S: ClientStore>(make: impl Fn() -> S) {
    let mut s = make();
    let c = conv(1);
    // Local messages with ids in reverse of their local order, and confirmed
    // ones inserted out of seq order: only seq, then local_seq, count.
    let l1 = outgoing(mid(20), c, 5, "local 1");
    let l2 = outgoing(mid(10), c, 6, "local 2");
    let mine = outgoing(mid(30), c, 1, "mine");
    s.apply(&[insert(&l2), insert(&mine)]).unwrap();
    s.apply(&[
        StoreOp::UpsertConfirmed(incoming(mid(3), c, 3, "s3")),
        StoreOp::UpsertConfirmed(incoming(mid(1), c, 1, "s1")),
    ])
    .unwrap();
    s.apply(&[
        insert(&l1),
        StoreOp::UpsertConfirmed(acked(&mine, 4, Status::InFlight)),
    ])
    .unwrap();
    s.apply(&[StoreOp::UpsertConfirmed(incoming(mid(2), c, 2, "s2"))])
        .unwrap();
    // Another conversation does not leak in.
    s.apply(&[
        insert(&outgoing(mid(40), conv(2), 7, "elsewhere")),
        StoreOp::UpsertConfirmed(incoming(mid(41), conv(2), 1, "elsewhere")),
    ])
    .unwrap();
    let tl = s.timeline(c, None, 100).unwrap();
    assert_eq!(
        ids(&tl),
        vec![mid(1), mid(2), mid(3), mine.id, l1.id, l2.id]
    );
    assert_eq!(tl[3], acked(&mine, 4, Status::InFlight));
    assert_eq!(s.timeline(conv(3), None, 100).unwrap(), vec![]);
}

fn check_timeline_limit_and_paging<S: ClientStore>(make: impl Fn() -> S) {
    let mut s = make();
    let c = conv(1);
    let mut ops: Vec<StoreOp> = (1..=10)
        .map(|n| StoreOp::UpsertConfirmed(incoming(mid(n as u128), c, n, &format!("m{n}"))))
        .collect();
    ops.push(insert(&outgoing(mid(100), c, 1, "l1")));
    ops.push(insert(&outgoing(mid(101), c, 2, "l2")));
    s.apply(&ops).unwrap();

    assert_eq!(s.timeline(c, None, 0).unwrap(), vec![]);
    // The newest page: local messages are the newest of all.
    assert_eq!(ids(&s.timeline(c, None, 1).unwrap()), vec![mid(101)]);
    assert_eq!(
        ids(&s.timeline(c, None, 5).unwrap()),
        vec![mid(8), mid(9), mid(10), mid(100), mid(101)]
    );
    // Paging back by seq: only confirmed messages before the given seq.
    assert_eq!(
        ids(&s.timeline(c, Some(Seq(8)), 3).unwrap()),
        vec![mid(5), mid(6), mid(7)]
    );
    let mut before = Seq(8);
    let mut seen = Vec::new();
    loop {
        let page = s.timeline(c, Some(before), 3).unwrap();
        let Some(first) = page.first() else { break };
        before = first.seq.unwrap();
        seen.splice(0..0, ids(&page));
    }
    assert_eq!(seen, (1..=7).map(mid).collect::<Vec<_>>());
    assert_eq!(s.timeline(c, Some(Seq(1)), 3).unwrap(), vec![]);
    assert_eq!(s.timeline(c, Some(Seq(100)), 2).unwrap().len(), 2);
    assert_eq!(s.timeline(c, None, usize::MAX).unwrap().len(), 12);
}

fn check_conversation_upsert_keeps_cursor<S: ClientStore>(make: impl Fn() -> S) {
    let mut s = make();
    let c = conv(1);
    assert_eq!(s.conversations().unwrap(), vec![]);
    s.apply(&[upsert_conv(c, "Team", vec![marks(1, 0), marks(2, 0)], 3)])
        .unwrap();
    assert_eq!(
        s.conversations().unwrap(),
        vec![Conversation {
            id: c,
            title: "Team".into(),
            members: vec![marks(1, 0), marks(2, 0)],
            cursor: Seq(0),
            last_seq: Seq(3),
        }]
    );
    s.apply(&[StoreOp::SetCursor {
        conversation: c,
        seq: Seq(5),
    }])
    .unwrap();
    // A later upsert replaces title and members, keeps the cursor, and
    // never lowers last_seq.
    s.apply(&[upsert_conv(c, "Renamed", vec![marks(2, 4)], 4)])
        .unwrap();
    assert_eq!(
        conversation(&s, c),
        Conversation {
            id: c,
            title: "Renamed".into(),
            members: vec![marks(2, 4)],
            cursor: Seq(5),
            last_seq: Seq(5),
        }
    );
    s.apply(&[upsert_conv(c, "Renamed", vec![marks(2, 4)], 9)])
        .unwrap();
    assert_eq!(conversation(&s, c).last_seq, Seq(9));
    // Several conversations, listed in id order, and in load() too.
    s.apply(&[upsert_conv(conv(0), "Zero", vec![], 0)]).unwrap();
    let all = s.conversations().unwrap();
    assert_eq!(
        all.iter().map(|x| x.id).collect::<Vec<_>>(),
        vec![conv(0), c]
    );
    assert_eq!(s.load().unwrap().conversations, all);
}

fn check_set_cursor_only_forward<S: ClientStore>(make: impl Fn() -> S) {
    let mut s = make();
    let c = conv(1);
    s.apply(&[upsert_conv(c, "t", vec![], 2)]).unwrap();
    s.apply(&[StoreOp::SetCursor {
        conversation: c,
        seq: Seq(6),
    }])
    .unwrap();
    let got = conversation(&s, c);
    assert_eq!((got.cursor, got.last_seq), (Seq(6), Seq(6)));
    s.apply(&[StoreOp::SetCursor {
        conversation: c,
        seq: Seq(4),
    }])
    .unwrap();
    let got = conversation(&s, c);
    assert_eq!((got.cursor, got.last_seq), (Seq(6), Seq(6)));
    // An unknown conversation is not created by a cursor.
    s.apply(&[StoreOp::SetCursor {
        conversation: conv(2),
        seq: Seq(1),
    }])
    .unwrap();
    assert_eq!(s.conversations().unwrap().len(), 1);
}

fn check_set_marks_keeps_max<S: ClientStore>(make: impl Fn() -> S) {
    let mut s = make();
    let c = conv(1);
    s.apply(&[upsert_conv(c, "t", vec![marks(1, 3), marks(2, 5)], 9)])
        .unwrap();
    s.apply(&[
        StoreOp::SetMarks {
            conversation: c,
            marks: marks(2, 4),
        },
        StoreOp::SetMarks {
            conversation: c,
            marks: marks(1, 7),
        },
        StoreOp::SetMarks {
            conversation: c,
            marks: marks(3, 1),
        },
        StoreOp::SetMarks {
            conversation: conv(2),
            marks: marks(3, 1),
        },
    ])
    .unwrap();
    assert_eq!(
        conversation(&s, c).members,
        vec![marks(1, 7), marks(2, 5), marks(3, 1)]
    );
    assert_eq!(s.conversations().unwrap().len(), 1);

    // Read and delivered each keep their own maximum: a read mark may come
    // with an older delivery mark (another device), and vice versa.
    s.apply(&[StoreOp::SetMarks {
        conversation: c,
        marks: marks_read(2, 3, 4),
    }])
    .unwrap();
    assert_eq!(conversation(&s, c).members[1], marks_read(2, 5, 4));
    s.apply(&[
        StoreOp::SetMarks {
            conversation: c,
            marks: marks_read(2, 8, 2),
        },
        StoreOp::SetMarks {
            conversation: c,
            marks: marks_read(3, 0, 1),
        },
    ])
    .unwrap();
    assert_eq!(
        conversation(&s, c).members,
        vec![marks(1, 7), marks_read(2, 8, 4), marks_read(3, 1, 1)]
    );
}

fn check_meta_round_trip<S: ClientStore>(make: impl Fn() -> S) {
    let mut s = make();
    assert_eq!(s.meta("token").unwrap(), None);
    s.apply(&[
        StoreOp::SetMeta {
            key: "token".into(),
            value: "abc".into(),
        },
        StoreOp::SetMeta {
            key: "limits".into(),
            value: r#"{"max_body_bytes":4096}"#.into(),
        },
    ])
    .unwrap();
    s.apply(&[StoreOp::SetMeta {
        key: "token".into(),
        value: "def".into(),
    }])
    .unwrap();
    assert_eq!(s.meta("token").unwrap().as_deref(), Some("def"));
    assert_eq!(
        s.meta("limits").unwrap().as_deref(),
        Some(r#"{"max_body_bytes":4096}"#)
    );
    assert_eq!(s.meta("TOKEN").unwrap(), None);
}

/// Texts that normalisation, trimming or a wrong encoding would alter.
const TRICKY: &[&str] = &[
    "😀🚀 4-byte emoji",
    "👨\u{200d}👩\u{200d}👧\u{200d}👦 ZWJ family",
    "e\u{301} vs \u{e9}",
    "שלום world مرحبا 123",
    "中文 日本語 한국어",
    "  leading and trailing spaces \n\ttab\r\n",
    "quote ' \" backslash \\ percent % underscore _",
    "\u{feff}BOM and \u{200b}zero width",
    "",
];

fn check_byte_identical_text<S: ClientStore>(make: impl Fn() -> S) {
    let mut s = make();
    let c = conv(1);
    let mut ops = Vec::new();
    for (n, text) in TRICKY.iter().enumerate() {
        let n = n as u64;
        let mut item = outgoing(mid(n as u128), c, n + 1, text);
        item.sender_name = (*text).into();
        ops.push(insert(&item));
        let mut inc = incoming(mid(100 + n as u128), c, n + 1, text);
        inc.sender_name = (*text).into();
        ops.push(StoreOp::UpsertConfirmed(inc));
    }
    ops.push(upsert_conv(
        c,
        TRICKY[1],
        vec![MemberMarks {
            username: TRICKY[3].into(),
            ..marks(1, 0)
        }],
        0,
    ));
    ops.push(StoreOp::SetMeta {
        key: TRICKY[2].into(),
        value: TRICKY[0].into(),
    });
    s.apply(&ops).unwrap();
    for (n, text) in TRICKY.iter().enumerate() {
        for id in [mid(n as u128), mid(100 + n as u128)] {
            let got = s.item(id).unwrap().unwrap();
            assert_eq!(got.body.as_bytes(), text.as_bytes());
            assert_eq!(got.sender_name.as_bytes(), text.as_bytes());
        }
    }
    let got = conversation(&s, c);
    assert_eq!(got.title.as_bytes(), TRICKY[1].as_bytes());
    assert_eq!(got.members[0].username.as_bytes(), TRICKY[3].as_bytes());
    assert_eq!(s.meta(TRICKY[2]).unwrap().as_deref(), Some(TRICKY[0]));
    // "é" precomposed and decomposed are different keys.
    assert_eq!(s.meta("\u{e9} vs \u{e9}").unwrap(), None);
    let bodies: Vec<String> = s
        .timeline(c, None, 100)
        .unwrap()
        .into_iter()
        .map(|i| i.body)
        .collect();
    assert_eq!(bodies.len(), 2 * TRICKY.len());
}

// ------------------------------------------- actions: edit, delete, react

fn check_timeline_hides_action_rows<S: ClientStore>(make: impl Fn() -> S) {
    let mut s = make();
    let c = conv(1);
    let mine = outgoing(mid(1), c, 1, "hello");
    let like = confirmed_action(mid(2), c, 2, 3, mine.id, ON, "👍");
    let my_like = own_action(mid(3), c, 2, mine.id, ON, "🎉");
    let theirs = incoming(mid(4), c, 3, "hi");
    s.apply(&[insert(&mine)]).unwrap();
    s.apply(&[
        upsert(&acked(&mine, 1, Status::InFlight)),
        upsert(&like),
        insert(&my_like),
        upsert(&theirs),
    ])
    .unwrap();
    assert_eq!(
        ids(&s.timeline(c, None, 100).unwrap()),
        vec![mine.id, theirs.id]
    );
    // The limit counts messages; paging back skips actions too.
    assert_eq!(ids(&s.timeline(c, None, 1).unwrap()), vec![theirs.id]);
    assert_eq!(
        ids(&s.timeline(c, Some(Seq(3)), 100).unwrap()),
        vec![mine.id]
    );
    // An action row is returned as stored.
    assert_eq!(s.item(like.id).unwrap(), Some(like.clone()));
    assert_eq!(s.item(my_like.id).unwrap(), Some(my_like.clone()));
    // An own action waits in the outbox like a message.
    assert_eq!(s.load().unwrap().outbox, vec![(my_like.clone(), false)]);
    assert_eq!(s.unread(c, Seq(0)).unwrap(), 1);
    // The message shows both reactions, the own one still pending.
    let got = s.timeline(c, None, 100).unwrap().remove(0);
    assert_eq!(
        got.reactions,
        vec![reaction("🎉", &[1]), reaction("👍", &[3])]
    );
    assert_eq!(got.pending, vec![pending(&my_like, None)]);
}

fn check_confirmed_edits_fold_by_seq<S: ClientStore>(make: impl Fn() -> S) {
    let mut s = make();
    let c = conv(1);
    let m = incoming(mid(1), c, 1, "helo");
    let e5 = confirmed_action(mid(5), c, 5, 2, m.id, ActionKind::Edit, "hello!");
    let e3 = confirmed_action(mid(3), c, 3, 2, m.id, ActionKind::Edit, "hello");
    // The newer edit arrives first: the older one must not overwrite it.
    s.apply(&[upsert(&m)]).unwrap();
    s.apply(&[upsert(&e5)]).unwrap();
    s.apply(&[upsert(&e3)]).unwrap();
    assert_eq!(only(&s, c), shown_as(&m, "hello!", true, false));
    assert_eq!(s.item(e3.id).unwrap(), Some(e3));
    assert_eq!(s.item(e5.id).unwrap(), Some(e5));

    // Edits stored before their message (any arrival order) apply too.
    let c2 = conv(2);
    let m2 = incoming(mid(10), c2, 1, "frist");
    let e = confirmed_action(mid(11), c2, 2, 2, m2.id, ActionKind::Edit, "first");
    s.apply(&[upsert(&e)]).unwrap();
    s.apply(&[upsert(&m2)]).unwrap();
    assert_eq!(only(&s, c2), shown_as(&m2, "first", true, false));
}

fn check_edit_from_non_author_ignored<S: ClientStore>(make: impl Fn() -> S) {
    let mut s = make();
    let c = conv(1);
    let m = incoming(mid(1), c, 1, "mine");
    s.apply(&[
        upsert(&m),
        upsert(&confirmed_action(
            mid(2),
            c,
            2,
            3,
            m.id,
            ActionKind::Edit,
            "hijacked",
        )),
        upsert(&confirmed_action(
            mid(3),
            c,
            3,
            3,
            m.id,
            ActionKind::Delete,
            "",
        )),
    ])
    .unwrap();
    assert_eq!(only(&s, c), m);
    assert_eq!(s.unread(c, Seq(0)).unwrap(), 1);
    // Nor does this device's own pending edit of someone else's message
    // change it (the server would refuse it); it is listed as pending.
    let mine = own_action(mid(4), c, 1, m.id, ActionKind::Edit, "mine now");
    s.apply(&[insert(&mine)]).unwrap();
    let got = only(&s, c);
    assert_eq!((got.body.as_str(), got.edited), ("mine", false));
    assert_eq!(got.pending, vec![pending(&mine, None)]);
}

fn check_delete_shows_placeholder_and_erases_text<S: ClientStore>(make: impl Fn() -> S) {
    let mut s = make();
    let c = conv(1);
    let m = incoming(mid(1), c, 1, "secret");
    let del = confirmed_action(mid(3), c, 3, 2, m.id, ActionKind::Delete, "");
    s.apply(&[
        upsert(&m),
        upsert(&confirmed_action(mid(2), c, 2, 3, m.id, ON, "👍")),
        upsert(&del),
        // Nothing applies after the delete.
        upsert(&confirmed_action(mid(4), c, 4, 3, m.id, ON, "❤")),
        upsert(&confirmed_action(
            mid(5),
            c,
            5,
            2,
            m.id,
            ActionKind::Edit,
            "back",
        )),
    ])
    .unwrap();
    let placeholder = shown_as(&m, "", false, true);
    assert_eq!(only(&s, c), placeholder);
    assert_eq!(s.unread(c, Seq(0)).unwrap(), 0);
    // The stored text is erased, not hidden: without the delete row (which
    // a confirmed row never loses in practice) it is still gone.
    s.apply(&[StoreOp::Remove(del.id)]).unwrap();
    let got = only(&s, c);
    assert!(got.deleted && got.body.is_empty() && got.reactions.is_empty());

    // A delete stored before its message erases it on arrival.
    let c2 = conv(2);
    let m2 = incoming(mid(10), c2, 1, "secret too");
    s.apply(&[upsert(&confirmed_action(
        mid(11),
        c2,
        2,
        2,
        m2.id,
        ActionKind::Delete,
        "",
    ))])
    .unwrap();
    s.apply(&[upsert(&m2)]).unwrap();
    assert_eq!(only(&s, c2), shown_as(&m2, "", false, true));
    assert_eq!(s.unread(c2, Seq(0)).unwrap(), 0);

    // This device's own delete: the placeholder at once, the text erased
    // once the server confirmed it.
    let c3 = conv(3);
    let own = outgoing(mid(20), c3, 1, "oops");
    let own_del = own_action(mid(21), c3, 2, own.id, ActionKind::Delete, "");
    s.apply(&[insert(&own)]).unwrap();
    s.apply(&[upsert(&acked(&own, 1, Status::InFlight)), insert(&own_del)])
        .unwrap();
    let got = only(&s, c3);
    assert!(got.deleted && got.body.is_empty());
    assert_eq!(got.pending, vec![pending(&own_del, None)]);
    s.apply(&[upsert(&acked(&own_del, 2, Status::InFlight))])
        .unwrap();
    s.apply(&[StoreOp::Remove(own_del.id)]).unwrap();
    assert_eq!(
        only(&s, c3),
        shown_as(&acked(&own, 1, Status::InFlight), "", false, true)
    );
}

/// Every version of a deleted message's text goes: its author's confirmed
/// edits are blanked too, whichever of the message, edit and delete came
/// first; this device's own edit still Sending keeps its text (for a retry).
fn check_delete_erases_the_text_of_edits<S: ClientStore>(make: impl Fn() -> S) {
    let mut s = make();
    let body = |s: &S, id| s.item(id).unwrap().unwrap().body;
    // In order: message, edit, delete.
    let c = conv(1);
    let m = incoming(mid(1), c, 1, "secret");
    let edit = confirmed_action(mid(2), c, 2, 2, m.id, ActionKind::Edit, "secret 2");
    let del = confirmed_action(mid(3), c, 3, 2, m.id, ActionKind::Delete, "");
    s.apply(&[upsert(&m), upsert(&edit)]).unwrap();
    assert_eq!(body(&s, edit.id), "secret 2");
    s.apply(&[upsert(&del)]).unwrap();
    assert_eq!(body(&s, edit.id), "");
    assert_eq!(only(&s, c), shown_as(&m, "", true, true));

    // The delete first (pushed above a gap), then the gap filled.
    let c2 = conv(2);
    let m2 = incoming(mid(10), c2, 1, "secret");
    let edit2 = confirmed_action(mid(11), c2, 2, 2, m2.id, ActionKind::Edit, "secret 2");
    let del2 = confirmed_action(mid(12), c2, 3, 2, m2.id, ActionKind::Delete, "");
    s.apply(&[upsert(&del2)]).unwrap();
    s.apply(&[upsert(&edit2)]).unwrap();
    s.apply(&[upsert(&m2)]).unwrap();
    assert_eq!(body(&s, edit2.id), "");
    assert_eq!(only(&s, c2), shown_as(&m2, "", true, true));
    // The delete before a late edit (the edit in a gap filled later).
    let c3 = conv(3);
    let m3 = incoming(mid(20), c3, 1, "secret");
    let edit3 = confirmed_action(mid(21), c3, 2, 2, m3.id, ActionKind::Edit, "secret 2");
    let del3 = confirmed_action(mid(22), c3, 3, 2, m3.id, ActionKind::Delete, "");
    s.apply(&[upsert(&m3), upsert(&del3)]).unwrap();
    s.apply(&[upsert(&edit3)]).unwrap();
    assert_eq!(body(&s, edit3.id), "");

    // Own message: a confirmed edit is blanked, one still Sending is kept.
    let c4 = conv(4);
    let own = acked(&outgoing(mid(30), c4, 1, "mine"), 1, Status::Success);
    let e1 = acked(
        &own_action(mid(31), c4, 2, own.id, ActionKind::Edit, "mine 2"),
        2,
        Status::InFlight,
    );
    let e2 = own_action(mid(32), c4, 3, own.id, ActionKind::Edit, "mine 3");
    let own_del = acked(
        &own_action(mid(33), c4, 4, own.id, ActionKind::Delete, ""),
        3,
        Status::InFlight,
    );
    s.apply(&[upsert(&own), upsert(&e1), insert(&e2)]).unwrap();
    s.apply(&[upsert(&own_del)]).unwrap();
    assert_eq!(body(&s, e1.id), "");
    assert_eq!(body(&s, e2.id), "mine 3");
    assert!(only(&s, c4).deleted);
}

fn check_reaction_toggles_end_in_one_state<S: ClientStore>(make: impl Fn() -> S) {
    let mut s = make();
    let c = conv(1);
    let m = incoming(mid(1), c, 1, "hi");
    // On, off, on, stored out of order: one reaction.
    s.apply(&[
        upsert(&m),
        upsert(&confirmed_action(mid(4), c, 4, 3, m.id, ON, "👍")),
        upsert(&confirmed_action(mid(2), c, 2, 3, m.id, ON, "👍")),
        upsert(&confirmed_action(mid(3), c, 3, 3, m.id, OFF, "👍")),
    ])
    .unwrap();
    assert_eq!(only(&s, c).reactions, vec![reaction("👍", &[3])]);
    // Sorted by emoji, users in id order.
    s.apply(&[
        upsert(&confirmed_action(mid(5), c, 5, 2, m.id, ON, "👍")),
        upsert(&confirmed_action(mid(6), c, 6, 3, m.id, ON, "🎉")),
        upsert(&confirmed_action(mid(7), c, 7, 1, m.id, ON, "👍")),
    ])
    .unwrap();
    assert_eq!(
        only(&s, c).reactions,
        vec![reaction("🎉", &[3]), reaction("👍", &[1, 2, 3])]
    );
    // This device's toggles show at once; a failed one does not.
    let off = own_action(mid(8), c, 1, m.id, OFF, "👍");
    let party = own_action(mid(9), c, 2, m.id, ON, "🎉");
    let heart = own_action(mid(10), c, 3, m.id, ON, "❤");
    s.apply(&[insert(&off), insert(&party), insert(&heart)])
        .unwrap();
    s.apply(&[StoreOp::SetFailed {
        id: heart.id,
        failure: failure(),
    }])
    .unwrap();
    let got = only(&s, c);
    assert_eq!(
        got.reactions,
        vec![reaction("🎉", &[1, 3]), reaction("👍", &[2, 3])]
    );
    assert_eq!(
        got.pending,
        vec![
            pending(&off, None),
            pending(&party, None),
            pending(&heart, Some(failure()))
        ]
    );
    // On then off while both pending: the last one wins.
    let on_again = own_action(mid(11), c, 4, m.id, ON, "👍");
    s.apply(&[insert(&on_again)]).unwrap();
    assert_eq!(only(&s, c).reactions[1], reaction("👍", &[1, 2, 3]));
}

fn check_pending_overlay<S: ClientStore>(make: impl Fn() -> S) {
    let mut s = make();
    let c = conv(1);
    let m = outgoing(mid(1), c, 1, "helo");
    let m_acked = acked(&m, 1, Status::InFlight);
    s.apply(&[insert(&m)]).unwrap();
    s.apply(&[upsert(&m_acked)]).unwrap();
    // A Sending edit shows at once.
    let e1 = own_action(mid(2), c, 2, m.id, ActionKind::Edit, "hello");
    s.apply(&[insert(&e1)]).unwrap();
    let expect = Item {
        pending: vec![pending(&e1, None)],
        ..shown_as(&m_acked, "hello", true, false)
    };
    assert_eq!(only(&s, c), expect);
    // A Failed one does not change the text, but is listed with its reason.
    let e2 = own_action(mid(3), c, 3, m.id, ActionKind::Edit, "hello!!");
    s.apply(&[insert(&e2)]).unwrap();
    assert_eq!(only(&s, c).body, "hello!!");
    s.apply(&[StoreOp::SetFailed {
        id: e2.id,
        failure: failure(),
    }])
    .unwrap();
    let expect = Item {
        pending: vec![pending(&e1, None), pending(&e2, Some(failure()))],
        ..shown_as(&m_acked, "hello", true, false)
    };
    assert_eq!(only(&s, c), expect);
    // The first one confirmed: folded by seq, no longer pending.
    s.apply(&[upsert(&acked(&e1, 2, Status::InFlight))])
        .unwrap();
    let expect = Item {
        pending: vec![pending(&e2, Some(failure()))],
        ..shown_as(&m_acked, "hello", true, false)
    };
    assert_eq!(only(&s, c), expect);
    // Retried, it shows again.
    s.apply(&[StoreOp::Requeue {
        id: e2.id,
        local_seq: 4,
    }])
    .unwrap();
    assert_eq!(only(&s, c).body, "hello!!");
    // A pending delete shows the placeholder; refused, the text is back.
    let d = own_action(mid(4), c, 5, m.id, ActionKind::Delete, "");
    s.apply(&[insert(&d)]).unwrap();
    let got = only(&s, c);
    assert!(got.deleted && got.body.is_empty() && got.edited);
    s.apply(&[StoreOp::SetFailed {
        id: d.id,
        failure: failure(),
    }])
    .unwrap();
    let got = only(&s, c);
    assert!(!got.deleted);
    assert_eq!(got.body, "hello!!");
    assert_eq!(
        got.pending.iter().map(|p| p.status).collect::<Vec<_>>(),
        vec![Status::Sending, Status::Failed]
    );
    // Discarded, it is gone from the message.
    s.apply(&[StoreOp::Remove(d.id)]).unwrap();
    assert_eq!(only(&s, c).pending.len(), 1);
}

fn check_update_outgoing_rewrites_queued_rows_only<S: ClientStore>(make: impl Fn() -> S) {
    let mut s = make();
    let c = conv(1);
    let draft = outgoing(mid(1), c, 1, "draft");
    let like = own_action(mid(2), c, 2, mid(9), ON, "👍");
    let sent = outgoing(mid(3), c, 3, "sent");
    s.apply(&[
        insert(&draft),
        StoreOp::InsertOutgoing {
            item: like.clone(),
            transmitted: true,
        },
        insert(&sent),
    ])
    .unwrap();
    s.apply(&[upsert(&acked(&sent, 1, Status::InFlight))])
        .unwrap();
    s.apply(&[
        StoreOp::UpdateOutgoing {
            id: draft.id,
            body: "final".into(),
            action: None,
        },
        StoreOp::UpdateOutgoing {
            id: like.id,
            body: "👍".into(),
            action: Some(ActionRef {
                target: mid(9),
                kind: OFF,
            }),
        },
        StoreOp::UpdateOutgoing {
            id: sent.id,
            body: "changed".into(),
            action: None,
        },
        StoreOp::UpdateOutgoing {
            id: mid(77),
            body: "nobody".into(),
            action: None,
        },
    ])
    .unwrap();
    let draft2 = Item {
        body: "final".into(),
        ..draft
    };
    let like2 = acting(like.clone(), mid(9), OFF);
    // In place: same id, same place, same transmitted flag.
    assert_eq!(
        s.load().unwrap().outbox,
        vec![(draft2.clone(), false), (like2.clone(), true)]
    );
    assert_eq!(s.item(draft2.id).unwrap(), Some(draft2));
    assert_eq!(s.item(like.id).unwrap(), Some(like2));
    // A confirmed row is what the server has: never rewritten.
    assert_eq!(
        s.item(sent.id).unwrap(),
        Some(acked(&sent, 1, Status::InFlight))
    );
    assert_eq!(s.item(mid(77)).unwrap(), None);
}

fn check_read_status_forward_only<S: ClientStore>(make: impl Fn() -> S) {
    let mut s = make();
    let c = conv(1);
    let a = outgoing(mid(1), c, 1, "a");
    let b = outgoing(mid(2), c, 2, "b");
    let f = outgoing(mid(3), c, 3, "f");
    s.apply(&[insert(&a), insert(&b), insert(&f)]).unwrap();
    s.apply(&[
        upsert(&acked(&a, 1, Status::InFlight)),
        set_status(a.id, Status::Read),
        // Sending → Read in one go is forward too.
        set_status(b.id, Status::Read),
        StoreOp::SetFailed {
            id: f.id,
            failure: failure(),
        },
        // Failed leaves only through a retry.
        set_status(f.id, Status::Read),
    ])
    .unwrap();
    assert_eq!(
        [status(&s, a.id), status(&s, b.id), status(&s, f.id)],
        [Status::Read, Status::Read, Status::Failed]
    );
    s.apply(&[
        set_status(a.id, Status::Success),
        set_status(a.id, Status::InFlight),
        set_status(a.id, Status::Failed),
        StoreOp::SetFailed {
            id: a.id,
            failure: failure(),
        },
        upsert(&acked(&a, 1, Status::Success)),
    ])
    .unwrap();
    let got = s.item(a.id).unwrap().unwrap();
    assert_eq!((got.status, got.failure), (Status::Read, None));
    // Read is settled: not waiting for anything.
    assert!(s.load().unwrap().in_flight.is_empty());
}

fn check_load_in_flight_waits_for_read<S: ClientStore>(make: impl Fn() -> S) {
    let mut s = make();
    let c = conv(1);
    let mut ops = Vec::new();
    let mut expect = Vec::new();
    for (n, st) in [Status::InFlight, Status::Success, Status::Read]
        .into_iter()
        .enumerate()
    {
        let n = n as u64;
        let m = Item {
            own: true,
            sender: user(1),
            status: st,
            ..incoming(mid(10 + n as u128), c, 1 + n, "m")
        };
        let a = Item {
            status: st,
            ..confirmed_action(mid(20 + n as u128), c, 10 + n, 1, m.id, ON, "👍")
        };
        // Messages In-Flight or Success; actions In-Flight only.
        if st != Status::Read {
            expect.push(m.id);
        }
        if st == Status::InFlight {
            expect.push(a.id);
        }
        ops.push(upsert(&m));
        ops.push(upsert(&a));
    }
    // Others' rows, and own rows still unconfirmed, are not in it.
    ops.push(upsert(&incoming(mid(30), c, 20, "theirs")));
    ops.push(insert(&outgoing(mid(31), c, 1, "queued")));
    s.apply(&ops).unwrap();
    expect.sort_by_key(|id| s.item(*id).unwrap().unwrap().seq);
    assert_eq!(ids(&s.load().unwrap().in_flight), expect);
}

fn check_unread_counts_others_messages_not_deleted<S: ClientStore>(make: impl Fn() -> S) {
    let mut s = make();
    let (c, c2) = (conv(1), conv(2));
    let mut ops: Vec<StoreOp> = (1..=5)
        .map(|n| upsert(&incoming(mid(n), c, n as u64, "hi")))
        .collect();
    ops.extend([
        // Own, from another device.
        upsert(&Item {
            own: true,
            sender: user(1),
            ..incoming(mid(6), c, 6, "mine")
        }),
        // Deleted by its author.
        upsert(&incoming(mid(7), c, 7, "gone")),
        upsert(&confirmed_action(
            mid(8),
            c,
            8,
            2,
            mid(7),
            ActionKind::Delete,
            "",
        )),
        // Actions are not messages.
        upsert(&confirmed_action(mid(9), c, 9, 3, mid(1), ON, "👍")),
        upsert(&Item {
            sender: user(3),
            ..incoming(mid(10), c, 10, "third")
        }),
        // A delete by someone else deletes nothing.
        upsert(&confirmed_action(
            mid(11),
            c,
            11,
            3,
            mid(1),
            ActionKind::Delete,
            "",
        )),
        insert(&outgoing(mid(12), c, 1, "queued")),
    ]);
    ops.extend((1..=3).map(|n| upsert(&incoming(mid(100 + n), c2, n as u64, "x"))));
    s.apply(&ops).unwrap();
    assert_eq!(s.unread(c, Seq(0)).unwrap(), 6);
    assert_eq!(s.unread(c, Seq(4)).unwrap(), 2);
    assert_eq!(s.unread(c, Seq(5)).unwrap(), 1);
    assert_eq!(s.unread(c, Seq(10)).unwrap(), 0);
    assert_eq!(s.unread(c, Seq(u64::MAX)).unwrap(), 0);
    assert_eq!(s.unread(c2, Seq(1)).unwrap(), 2);
    assert_eq!(s.unread(conv(3), Seq(0)).unwrap(), 0);
    // A delete that arrives before its message.
    s.apply(&[upsert(&confirmed_action(
        mid(14),
        c,
        14,
        2,
        mid(13),
        ActionKind::Delete,
        "",
    ))])
    .unwrap();
    s.apply(&[upsert(&incoming(mid(13), c, 13, "gone too"))])
        .unwrap();
    assert_eq!(s.unread(c, Seq(10)).unwrap(), 0);
}

// ------------------------------------------------------- backend matrix

/// A SQLite store on a file that is deleted with it.
struct FileStore {
    store: SqliteStore,
    _dir: TempDir,
}

impl FileStore {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("nested/dir/client.db")).unwrap();
        FileStore { store, _dir: dir }
    }
}

impl ClientStore for FileStore {
    fn apply(&mut self, ops: &[StoreOp]) -> Result<(), StoreError> {
        self.store.apply(ops)
    }
    fn load(&self) -> Result<LoadedState, StoreError> {
        self.store.load()
    }
    fn timeline(
        &self,
        c: ConversationId,
        before: Option<Seq>,
        limit: usize,
    ) -> Result<Vec<Item>, StoreError> {
        self.store.timeline(c, before, limit)
    }
    fn item(&self, id: MessageId) -> Result<Option<Item>, StoreError> {
        self.store.item(id)
    }
    fn unread(&self, c: ConversationId, after: Seq) -> Result<u64, StoreError> {
        self.store.unread(c, after)
    }
    fn conversations(&self) -> Result<Vec<Conversation>, StoreError> {
        self.store.conversations()
    }
    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.store.meta(key)
    }
}

macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        mod memory {
            $(#[test] fn $check() { super::$check(chatsync_client::store::MemoryStore::new); })*
        }
        mod sqlite_in_memory {
            $(#[test] fn $check() {
                super::$check(|| chatsync_client::store::SqliteStore::open_in_memory().unwrap());
            })*
        }
        mod sqlite_file {
            $(#[test] fn $check() { super::$check(super::FileStore::new); })*
        }
    };
}

conformance!(
    check_insert_outgoing_shows_in_outbox_in_local_order,
    check_mark_transmitted,
    check_upsert_confirmed_moves_outgoing_to_in_flight,
    check_status_never_moves_back,
    check_failed_only_from_sending,
    check_requeue,
    check_remove,
    check_timeline_order,
    check_timeline_limit_and_paging,
    check_conversation_upsert_keeps_cursor,
    check_set_cursor_only_forward,
    check_set_marks_keeps_max,
    check_meta_round_trip,
    check_byte_identical_text,
    check_timeline_hides_action_rows,
    check_confirmed_edits_fold_by_seq,
    check_edit_from_non_author_ignored,
    check_delete_shows_placeholder_and_erases_text,
    check_delete_erases_the_text_of_edits,
    check_reaction_toggles_end_in_one_state,
    check_pending_overlay,
    check_update_outgoing_rewrites_queued_rows_only,
    check_read_status_forward_only,
    check_load_in_flight_waits_for_read,
    check_unread_counts_others_messages_not_deleted,
);

// ------------------------------------------------ the twin stays honest

/// A random action on one of the pooled ids, or none (a message).
fn arb_action() -> impl Strategy<Value = Option<ActionRef>> {
    let kind = prop_oneof![
        Just(ActionKind::Edit),
        Just(ActionKind::Delete),
        any::<bool>().prop_map(|on| ActionKind::React { on }),
    ];
    prop::option::weighted(0.5, ((0u128..6).prop_map(mid), kind))
        .prop_map(|a| a.map(|(target, kind)| ActionRef { target, kind }))
}

/// A random op over small pools of ids, conversations, users and numbers,
/// so that ops collide on the same message, actions hit their targets (and
/// each other), and seqs tie, often.
fn arb_op() -> impl Strategy<Value = StoreOp> {
    let id = (0u128..6).prop_map(mid);
    let c = (0u128..2).prop_map(conv);
    let small = 0u64..8;
    let body = prop::sample::select(TRICKY.to_vec());
    let st = prop::sample::select(vec![
        Status::Sending,
        Status::InFlight,
        Status::Success,
        Status::Read,
        Status::Failed,
    ]);
    prop_oneof![
        4 => (id.clone(), c.clone(), small.clone(), body.clone(), any::<bool>(), arb_action()).prop_map(
            |(id, c, l, b, t, action)| StoreOp::InsertOutgoing {
                item: Item { action, ..outgoing(id, c, l, b) },
                transmitted: t,
            }
        ),
        1 => prop::collection::vec(id.clone(), 0..3).prop_map(StoreOp::MarkTransmitted),
        5 => (
            (id.clone(), c.clone(), small.clone(), st.clone()),
            (any::<bool>(), body.clone(), 1u128..4, arb_action()),
        ).prop_map(
            |((id, c, seq, status), (own, b, from, action))| {
                let mut i = incoming(id, c, seq, b);
                i.own = own;
                i.status = status;
                i.sender = user(from);
                i.action = action;
                StoreOp::UpsertConfirmed(i)
            }
        ),
        2 => (id.clone(), st).prop_map(|(id, status)| StoreOp::SetStatus { id, status }),
        2 => id.clone().prop_map(|id| StoreOp::SetFailed { id, failure: failure() }),
        2 => (id.clone(), small.clone()).prop_map(|(id, local_seq)| StoreOp::Requeue { id, local_seq }),
        1 => id.clone().prop_map(StoreOp::Remove),
        2 => (id, body, arb_action()).prop_map(|(id, b, action)| StoreOp::UpdateOutgoing {
            id,
            body: b.into(),
            action,
        }),
        1 => (c.clone(), prop::collection::vec((0u128..3, small.clone(), small.clone()), 0..3), small.clone()).prop_map(
            |(c, m, l)| upsert_conv(c, "t", m.into_iter().map(|(u, d, r)| marks_read(u, d, r)).collect(), l)
        ),
        2 => (c.clone(), 0u128..3, small.clone(), small.clone()).prop_map(|(c, u, d, r)| StoreOp::SetMarks {
            conversation: c,
            marks: marks_read(u, d, r),
        }),
        1 => (c, small).prop_map(|(c, seq)| StoreOp::SetCursor { conversation: c, seq: Seq(seq) }),
        1 => (0u8..2, "[a-z]{0,3}").prop_map(|(k, v)| StoreOp::SetMeta { key: format!("k{k}"), value: v }),
    ]
}

fn assert_same(mem: &MemoryStore, sql: &SqliteStore) -> Result<(), TestCaseError> {
    prop_assert_eq!(mem.load().unwrap(), sql.load().unwrap());
    prop_assert_eq!(mem.conversations().unwrap(), sql.conversations().unwrap());
    for c in 0..2 {
        for before in [None, Some(Seq(0)), Some(Seq(3)), Some(Seq(8))] {
            for limit in [0, 1, 3, 100] {
                prop_assert_eq!(
                    mem.timeline(conv(c), before, limit).unwrap(),
                    sql.timeline(conv(c), before, limit).unwrap(),
                    "conversation {} before {:?} limit {}",
                    c,
                    before,
                    limit
                );
            }
        }
        for after in [0, 2, 5, 8] {
            prop_assert_eq!(
                mem.unread(conv(c), Seq(after)).unwrap(),
                sql.unread(conv(c), Seq(after)).unwrap(),
                "unread in conversation {} after {}",
                c,
                after
            );
        }
    }
    for n in 0..6 {
        prop_assert_eq!(mem.item(mid(n)).unwrap(), sql.item(mid(n)).unwrap());
    }
    for k in ["k0", "k1"] {
        prop_assert_eq!(mem.meta(k).unwrap(), sql.meta(k).unwrap());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn sqlite_agrees_with_memory_twin(
        batches in prop::collection::vec(prop::collection::vec(arb_op(), 0..6), 1..12)
    ) {
        let mut mem = MemoryStore::new();
        let mut sql = SqliteStore::open_in_memory().unwrap();
        for batch in &batches {
            mem.apply(batch).unwrap();
            sql.apply(batch).unwrap();
            assert_same(&mem, &sql)?;
        }
    }
}

// ----------------------------------------------------- SQLite on a file

fn outbox_of_three(s: &mut SqliteStore) -> Vec<(Item, bool)> {
    let c = conv(1);
    let items = [
        outgoing(mid(7), c, 1, "one 😀"),
        outgoing(mid(5), c, 2, "two שלום"),
        outgoing(mid(6), c, 3, "three e\u{301}"),
    ];
    for item in &items {
        // One transaction per send, as `send` does.
        s.apply(&[insert(item)]).unwrap();
    }
    s.apply(&[
        StoreOp::MarkTransmitted(vec![mid(7)]),
        upsert_conv(c, "t", vec![marks(1, 0)], 0),
        StoreOp::SetMeta {
            key: "token".into(),
            value: "secret".into(),
        },
    ])
    .unwrap();
    vec![
        (items[0].clone(), true),
        (items[1].clone(), false),
        (items[2].clone(), false),
    ]
}

#[test]
fn sqlite_outbox_survives_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("client.db");
    let mut s = SqliteStore::open(&path).unwrap();
    let expect = outbox_of_three(&mut s);
    let before = s.load().unwrap();
    assert_eq!(before.outbox, expect);
    drop(s);

    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.load().unwrap(), before);
    assert_eq!(s.meta("token").unwrap().as_deref(), Some("secret"));
    assert_eq!(
        ids(&s.timeline(conv(1), None, 10).unwrap()),
        vec![mid(7), mid(5), mid(6)]
    );
}

/// Env var naming the database the child writes before aborting.
const CHILD_DB: &str = "CHATSYNC_STORE_CONFORMANCE_CHILD_DB";

/// Not a test by itself: run as a child process by
/// [`sqlite_outbox_survives_abort`], it writes and dies without closing
/// anything (no destructor, no checkpoint).
#[test]
fn child_write_then_abort() {
    let Some(path) = std::env::var_os(CHILD_DB) else {
        return;
    };
    let mut s = SqliteStore::open(std::path::Path::new(&path)).unwrap();
    outbox_of_three(&mut s);
    std::process::abort();
}

#[test]
fn sqlite_outbox_survives_abort() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("client.db");
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_write_then_abort",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DB, &path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child should have aborted");
    // The commits are in the WAL, which the reopening connection replays.
    assert!(dir.path().join("client.db-wal").exists());
    let s = SqliteStore::open(&path).unwrap();
    let mut reference = SqliteStore::open_in_memory().unwrap();
    let expect = outbox_of_three(&mut reference);
    let st = s.load().unwrap();
    assert_eq!(st.outbox, expect);
    assert_eq!(st.max_local_seq, 3);
    assert_eq!(s.meta("token").unwrap().as_deref(), Some("secret"));
}
