//! Fan-out of marks stays linear: in a conversation of N members, one
//! message that every member reports `received` causes O(N) `marks`
//! frames in all (PROTOCOL.md §8.2), not N² (every report to every
//! member). Counts frames over real WebSocket connections; no timing.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use chatsync_protocol::{ClientFrame, ConversationId, MessageId, Seq, ServerFrame, UserId};
use chatsync_server::ServerStore;
use common::{start, Client};

/// Members of the conversation.
const N: usize = 40;

struct Member {
    client: Client,
    /// `marks` frames received.
    marks: usize,
    /// Highest `others.delivered` received.
    others: Seq,
    /// Highest own delivered mark received.
    own: Seq,
}

/// Seeds N accounts with sessions and one conversation of all of them,
/// straight into the store (no password hashing), before the server runs.
fn seed(dir: &std::path::Path) -> (Vec<(UserId, String)>, ConversationId) {
    let store = chatsync_server::open_store(dir).unwrap();
    let users: Vec<(UserId, String)> = (0..N)
        .map(|i| {
            let id = store.create_account(&format!("m{i}"), "!seeded").unwrap();
            let token = format!("token-of-member-{i}-{}", uuid::Uuid::new_v4().simple());
            store
                .create_session(id, "test", &chatsync_server::auth::token_hash(&token))
                .unwrap();
            (id, token)
        })
        .collect();
    let ids: Vec<UserId> = users.iter().map(|(u, _)| *u).collect();
    let info = store.create_conversation("crowd", &ids).unwrap();
    (users, info.id)
}

/// Member 0 sends one message; every member (the sender too, for its own
/// message) reports it `received` once it has it. Returns when every
/// member has seen its own mark and the others' lowest mark reach the
/// message, and every connection answered a ping (so every push those
/// commits caused was counted).
async fn one_message(members: &mut [Member], conv: ConversationId, seq: Seq) {
    let id = MessageId::new();
    members[0]
        .client
        .send(&ClientFrame::Send {
            id,
            conversation: conv,
            body: format!("message {seq}"),
            action: None,
        })
        .await;
    // Everyone gets it (the sender as its ack) and reports it.
    for (i, m) in members.iter_mut().enumerate() {
        loop {
            match m.client.recv().await {
                ServerFrame::Ack { id: got, .. } if i == 0 && got == id => break,
                ServerFrame::Message { message } if message.id == id => break,
                ServerFrame::Marks { .. } => m.marks += 1,
                other => panic!("member {i}: {other:?}"),
            }
        }
        m.client
            .send(&ClientFrame::Received {
                conversation: conv,
                seq,
            })
            .await;
    }
    for (i, m) in members.iter_mut().enumerate() {
        while m.others < seq || m.own < seq {
            match m.client.recv().await {
                ServerFrame::Marks { marks, others, .. } => {
                    m.marks += 1;
                    if marks.user == m.client.user {
                        m.own = m.own.max(marks.delivered);
                    }
                    let others = others.expect("a conversation of several has others");
                    m.others = m.others.max(others.delivered);
                }
                other => panic!("member {i}: {other:?}"),
            }
        }
    }
    for (i, m) in members.iter_mut().enumerate() {
        let nonce = 7;
        m.client.send(&ClientFrame::Ping { nonce }).await;
        loop {
            match m.client.recv().await {
                ServerFrame::Pong { nonce: n } if n == nonce => break,
                ServerFrame::Marks { .. } => m.marks += 1,
                other => panic!("member {i}: {other:?}"),
            }
        }
    }
}

#[tokio::test]
async fn a_storm_of_reports_costs_linear_marks_frames() {
    let dir = tempfile::tempdir().unwrap();
    let (users, conv) = seed(dir.path());
    let server = start(dir.path()).await;
    let mut members = Vec::new();
    for (user, token) in &users {
        let mut client = Client::connect(server.addr).await;
        match client.hello(token).await {
            ServerFrame::Welcome { user: u, .. } => assert_eq!(u, *user),
            other => panic!("{other:?}"),
        }
        client.user = *user;
        members.push(Member {
            client,
            marks: 0,
            others: Seq::ZERO,
            own: Seq::ZERO,
        });
    }

    // The first moves in a conversation tell every member (the server
    // starts without knowing what they were told); not counted.
    one_message(&mut members, conv, Seq(1)).await;
    let counts = |members: &mut [Member]| {
        members
            .iter_mut()
            .map(|m| std::mem::take(&mut m.marks))
            .collect::<Vec<_>>()
    };
    counts(&mut members);

    for seq in 2..=3 {
        one_message(&mut members, conv, Seq(seq)).await;
        let got = counts(&mut members);
        // Each member: its own mark (1), and the others' lowest when it
        // moves (1) — for the member that reports last, the others'
        // lowest moved when the one before it reported. Whatever the
        // order of the reports: exactly 2 per member, 2N in all, where
        // pushing every report to every member would be N².
        assert_eq!(got.iter().sum::<usize>(), 2 * N, "{got:?}");
        assert!(got.iter().all(|&n| n == 2), "{got:?}");
    }
    server.stop().await;
}
