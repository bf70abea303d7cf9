//! Regression tests for defects the simulation found, reduced to the
//! smallest sequence of syncer inputs.

use chatsync_client::core::{Config, Identity, Output, Syncer};
use chatsync_client::store::LoadedState;
use chatsync_protocol::{
    ClientFrame, ConversationId, ConversationInfo, Limits, MemberMarks, MessageId, Seq,
    ServerFrame, UserId, WireMessage,
};
use std::time::{Duration, Instant};
use uuid::Uuid;

fn uid(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

fn drain(s: &mut Syncer) -> Vec<ClientFrame> {
    let mut frames = Vec::new();
    while let Some(o) = s.poll_output() {
        if let Output::Transmit(f) = o {
            frames.push(f);
        }
    }
    frames
}

fn sends(frames: &[ClientFrame]) -> Vec<MessageId> {
    frames
        .iter()
        .filter_map(|f| match f {
            ClientFrame::Send { id, .. } => Some(*id),
            _ => None,
        })
        .collect()
}

/// Seed 5014: with the window full, an own message confirmed by a `batch`
/// or a `message` push (rather than its `ack`) freed its slot but nothing
/// transmitted the next queued message, and the ack deadline was cleared:
/// the delete queued behind it stayed Sending forever (a lost wake-up,
/// invariant 5).
#[test]
fn confirmation_by_push_transmits_what_waited_for_the_window() {
    let me = UserId(uid(1));
    let other = UserId(uid(2));
    let conv = ConversationId(uid(3));
    let t0 = Instant::now();
    let config = Config {
        window: 1,
        ack_timeout: Duration::from_secs(1),
        ..Config::default()
    };
    let identity = Identity {
        user: me,
        username: "me".into(),
    };
    let mut s = Syncer::new(
        t0,
        identity,
        Limits::default(),
        config,
        LoadedState::default(),
    );
    s.handle_timeout(t0);
    drain(&mut s);
    s.handle_connected(t0, Limits::default());
    let list = drain(&mut s);
    let Some(ClientFrame::ListConversations { req }) = list.first().cloned() else {
        panic!("expected a listing first, got {list:?}");
    };
    let marks = |user, username: &str| MemberMarks {
        user,
        username: username.into(),
        delivered: Seq::ZERO,
        read: Seq::ZERO,
    };
    s.handle_frame(
        t0,
        ServerFrame::Conversations {
            req,
            conversations: vec![ConversationInfo {
                id: conv,
                title: "t".into(),
                members: vec![marks(me, "me"), marks(other, "other")],
                last_seq: Seq::ZERO,
            }],
        },
    );
    drain(&mut s);
    let (m1, m2) = (MessageId(uid(10)), MessageId(uid(11)));
    s.send(t0, conv, "one".into(), m1, 0).expect("queued");
    assert_eq!(sends(&drain(&mut s)), vec![m1]);
    s.send(t0, conv, "two".into(), m2, 0).expect("queued");
    assert!(sends(&drain(&mut s)).is_empty(), "the window holds one");
    // m1 comes back as a push (e.g. committed from an earlier connection)
    // before its ack.
    let t1 = t0 + Duration::from_millis(10);
    s.handle_frame(
        t1,
        ServerFrame::Message {
            message: WireMessage {
                id: m1,
                conversation: conv,
                seq: Seq(1),
                sender: me,
                sender_name: "me".into(),
                body: "one".into(),
                server_ts: 0,
                action: None,
            },
        },
    );
    let frames = drain(&mut s);
    assert!(
        sends(&frames) == vec![m2] || s.poll_timeout().is_some(),
        "m2 waits for the window with nothing left to wake the syncer: {frames:?}"
    );
    assert_eq!(sends(&frames), vec![m2], "the freed slot is used at once");
}
