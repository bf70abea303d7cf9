//! Storage conformance suite: every [`ClientStore`] backend must pass every
//! check here. Each `check_*` function is generic over the backend and runs
//! against [`MemoryStore`], [`SqliteStore::open_in_memory`] and a
//! [`SqliteStore`] on a file; a property test then drives the in-memory twin
//! and SQLite with the same random ops and requires identical answers.
//! SQLite-file specifics (reopen, kill) come last.

#![allow(clippy::unwrap_used, missing_docs)]

use chatsync_client::store::{
    ClientStore, LoadedState, MemoryStore, SqliteStore, StoreError, StoreOp,
};
use chatsync_client::{Conversation, Failure, Item, Status};
use chatsync_protocol::{ConversationId, ErrorCode, MemberMarks, MessageId, Seq, UserId};
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

/// An own message as `send` stores it: Sending, no seq.
fn outgoing(id: MessageId, c: ConversationId, local_seq: u64, body: &str) -> Item {
    Item {
        id,
        conversation: c,
        sender: user(1),
        sender_name: "me".into(),
        body: body.into(),
        own: true,
        status: Status::Sending,
        seq: None,
        local_seq,
        created_at: 1_700_000_000_000 + local_seq as i64,
        server_ts: None,
        failure: None,
    }
}

/// Someone else's message as catch-up stores it.
fn incoming(id: MessageId, c: ConversationId, seq: u64, body: &str) -> Item {
    Item {
        id,
        conversation: c,
        sender: user(2),
        sender_name: "them".into(),
        body: body.into(),
        own: false,
        status: Status::Success,
        seq: Some(Seq(seq)),
        local_seq: 0,
        created_at: 1_600_000_000_000,
        server_ts: Some(1_700_000_000_000 + seq as i64),
        failure: None,
    }
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
    MemberMarks {
        user: user(u),
        username: format!("user{u}"),
        delivered: Seq(delivered),
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

    // Success leaves in_flight.
    s.apply(&[StoreOp::SetStatus {
        id: b.id,
        status: Status::Success,
    }])
    .unwrap();
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
    assert!(s.load().unwrap().in_flight.is_empty());
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
);

// ------------------------------------------------ the twin stays honest

/// A random op over small pools of ids, conversations and numbers, so that
/// ops collide on the same message, and seqs tie, often.
fn arb_op() -> impl Strategy<Value = StoreOp> {
    let id = (0u128..6).prop_map(mid);
    let c = (0u128..2).prop_map(conv);
    let small = 0u64..8;
    let body = prop::sample::select(TRICKY.to_vec());
    let st = prop::sample::select(vec![
        Status::Sending,
        Status::InFlight,
        Status::Success,
        Status::Failed,
    ]);
    prop_oneof![
        4 => (id.clone(), c.clone(), small.clone(), body.clone(), any::<bool>()).prop_map(
            |(id, c, l, b, t)| StoreOp::InsertOutgoing { item: outgoing(id, c, l, b), transmitted: t }
        ),
        1 => prop::collection::vec(id.clone(), 0..3).prop_map(StoreOp::MarkTransmitted),
        4 => (id.clone(), c.clone(), small.clone(), st.clone(), any::<bool>(), body).prop_map(
            |(id, c, seq, status, own, b)| {
                let mut i = incoming(id, c, seq, b);
                i.own = own;
                i.status = status;
                StoreOp::UpsertConfirmed(i)
            }
        ),
        2 => (id.clone(), st).prop_map(|(id, status)| StoreOp::SetStatus { id, status }),
        2 => id.clone().prop_map(|id| StoreOp::SetFailed { id, failure: failure() }),
        2 => (id.clone(), small.clone()).prop_map(|(id, local_seq)| StoreOp::Requeue { id, local_seq }),
        1 => id.prop_map(StoreOp::Remove),
        1 => (c.clone(), prop::collection::vec((0u128..3, small.clone()), 0..3), small.clone()).prop_map(
            |(c, m, l)| upsert_conv(c, "t", m.into_iter().map(|(u, d)| marks(u, d)).collect(), l)
        ),
        1 => (c.clone(), 0u128..3, small.clone()).prop_map(|(c, u, d)| StoreOp::SetMarks { conversation: c, marks: marks(u, d) }),
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
