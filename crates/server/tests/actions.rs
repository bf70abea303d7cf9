//! Actions (edit, delete, react) and read marks over real WebSocket
//! connections and a real SQLite store in a temporary directory.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use chatsync_protocol::{
    ActionKind, ActionRef, ClientFrame, ConversationId, ErrorCode, MemberMarks, MessageId, Refusal,
    Seq, ServerFrame, WireMessage,
};
use common::{account, device, error_code, start, Client};
use std::time::Duration;

const SILENCE: Duration = Duration::from_millis(300);

fn message(id: MessageId, conversation: ConversationId, body: &str) -> ClientFrame {
    ClientFrame::Send {
        id,
        conversation,
        body: body.into(),
        action: None,
    }
}

fn action(
    id: MessageId,
    conversation: ConversationId,
    body: &str,
    target: MessageId,
    kind: ActionKind,
) -> ClientFrame {
    ClientFrame::Send {
        id,
        conversation,
        body: body.into(),
        action: Some(ActionRef { target, kind }),
    }
}

const LIKE: ActionKind = ActionKind::React { on: true };

fn ack_seq(frame: &ServerFrame, want_id: MessageId) -> Seq {
    match frame {
        ServerFrame::Ack { id, seq, .. } if *id == want_id => *seq,
        other => panic!("expected ack of {want_id}, got {other:?}"),
    }
}

fn refusal_of(frame: &ServerFrame, want_id: MessageId) -> Refusal {
    match frame {
        ServerFrame::Refused { id, refusal } if *id == want_id => refusal.clone(),
        other => panic!("expected refused of {want_id}, got {other:?}"),
    }
}

/// Sends `frame` and returns the seq of its ack.
async fn acked(c: &mut Client, frame: ClientFrame) -> Seq {
    let id = match &frame {
        ClientFrame::Send { id, .. } => *id,
        other => panic!("not a send: {other:?}"),
    };
    c.send(&frame).await;
    ack_seq(&c.recv().await, id)
}

/// Sends `frame` and returns the code of its refusal (never retryable here).
async fn refused(c: &mut Client, frame: ClientFrame) -> ErrorCode {
    let id = match &frame {
        ClientFrame::Send { id, .. } => *id,
        other => panic!("not a send: {other:?}"),
    };
    c.send(&frame).await;
    let refusal = refusal_of(&c.recv().await, id);
    assert!(!refusal.retryable, "{refusal:?}");
    assert!(!refusal.message.is_empty());
    refusal.code
}

async fn pushed(c: &mut Client) -> WireMessage {
    match c.recv().await {
        ServerFrame::Message { message } => message,
        other => panic!("expected a message push, got {other:?}"),
    }
}

async fn pushed_marks(c: &mut Client) -> (ConversationId, MemberMarks) {
    match c.recv().await {
        ServerFrame::Marks {
            conversation,
            marks,
            ..
        } => (conversation, marks),
        other => panic!("expected a marks push, got {other:?}"),
    }
}

/// Every stored message and action of a conversation, and the marks.
async fn sync_all(
    c: &mut Client,
    conversation: ConversationId,
) -> (Vec<WireMessage>, Vec<MemberMarks>) {
    let req = c.req();
    c.send(&ClientFrame::Sync {
        req,
        conversation,
        after: Seq::ZERO,
        limit: 500,
    })
    .await;
    loop {
        match c.recv().await {
            ServerFrame::Batch {
                req: r,
                messages,
                members,
                ..
            } if r == req => return (messages, members),
            ServerFrame::Message { .. } | ServerFrame::Marks { .. } => continue,
            other => panic!("expected batch, got {other:?}"),
        }
    }
}

/// Alice and bob in one conversation, bob having seen its push.
async fn pair(addr: std::net::SocketAddr) -> (Client, Client, ConversationId) {
    let mut alice = account(addr, "alice").await;
    let mut bob = account(addr, "bob").await;
    let conv = alice.create("pair", &["bob"]).await;
    assert!(matches!(
        bob.recv().await,
        ServerFrame::Conversation { req: None, .. }
    ));
    (alice, bob, conv)
}

/// Alice posts `body`; bob gets its push. Returns its id.
async fn post(alice: &mut Client, bob: &mut Client, conv: ConversationId, body: &str) -> MessageId {
    let id = MessageId::new();
    acked(alice, message(id, conv, body)).await;
    assert_eq!(pushed(bob).await.id, id);
    id
}

#[tokio::test]
async fn edit_by_the_author_is_acked_and_pushed_with_its_action() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let (mut alice, mut bob, conv) = pair(server.addr).await;
    let m = post(&mut alice, &mut bob, conv, "helo").await;

    // As a client in another language would write it.
    let edit = MessageId::new();
    let text = serde_json::json!({
        "type": "send",
        "id": edit.to_string(),
        "conversation": conv.to_string(),
        "body": "hello",
        "action": {"target": m.to_string(), "action": "edit"},
    })
    .to_string();
    alice.send_text(&text).await;
    assert_eq!(ack_seq(&alice.recv().await, edit), Seq(2));
    let push = pushed(&mut bob).await;
    assert_eq!((push.id, push.seq, push.sender), (edit, Seq(2), alice.user));
    assert_eq!(push.body, "hello");
    assert_eq!(
        push.action,
        Some(ActionRef {
            target: m,
            kind: ActionKind::Edit
        })
    );
    // Catch-up returns it the same way, after the original.
    let (history, _) = sync_all(&mut bob, conv).await;
    assert_eq!(history.len(), 2);
    assert_eq!(
        (history[0].body.as_str(), &history[0].action),
        ("helo", &None)
    );
    assert_eq!(history[1], push);
    server.stop().await;
}

#[tokio::test]
async fn only_the_author_edits_or_deletes_and_anyone_reacts() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let (mut alice, mut bob, conv) = pair(server.addr).await;
    let m = post(&mut alice, &mut bob, conv, "alice's").await;

    let code = refused(
        &mut bob,
        action(MessageId::new(), conv, "bob's now", m, ActionKind::Edit),
    )
    .await;
    assert_eq!(code, ErrorCode::NotAuthor);
    let code = refused(
        &mut bob,
        action(MessageId::new(), conv, "", m, ActionKind::Delete),
    )
    .await;
    assert_eq!(code, ErrorCode::NotAuthor);
    alice.expect_silence(SILENCE).await;

    let like = MessageId::new();
    assert_eq!(
        acked(&mut bob, action(like, conv, "👍", m, LIKE)).await,
        Seq(2)
    );
    let push = pushed(&mut alice).await;
    assert_eq!((push.id, push.body.as_str()), (like, "👍"));
    assert_eq!(push.action.map(|a| a.kind), Some(LIKE));
    // Removing it is a reaction too.
    let unlike = action(
        MessageId::new(),
        conv,
        "👍",
        m,
        ActionKind::React { on: false },
    );
    assert_eq!(acked(&mut bob, unlike).await, Seq(3));
    server.stop().await;
}

#[tokio::test]
async fn delete_erases_the_text_and_is_final() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let (mut alice, mut bob, conv) = pair(server.addr).await;
    let m = post(&mut alice, &mut bob, conv, "a secret").await;
    let edit = action(
        MessageId::new(),
        conv,
        "a bigger secret",
        m,
        ActionKind::Edit,
    );
    assert_eq!(acked(&mut alice, edit).await, Seq(2));
    pushed(&mut bob).await;
    let like = action(MessageId::new(), conv, "😮", m, LIKE);
    assert_eq!(acked(&mut bob, like).await, Seq(3));
    pushed(&mut alice).await;

    let del = MessageId::new();
    assert_eq!(
        acked(&mut alice, action(del, conv, "", m, ActionKind::Delete)).await,
        Seq(4)
    );
    let push = pushed(&mut bob).await;
    assert_eq!(push.id, del);
    assert_eq!(push.body, "");
    assert_eq!(
        push.action.map(|a| (a.target, a.kind)),
        Some((m, ActionKind::Delete))
    );

    // The server keeps no version of the text: the message and its edit
    // come back empty, followed by the delete.
    let (history, _) = sync_all(&mut bob, conv).await;
    let seen: Vec<(u64, &str, Option<ActionKind>)> = history
        .iter()
        .map(|w| (w.seq.0, w.body.as_str(), w.action.as_ref().map(|a| a.kind)))
        .collect();
    assert_eq!(
        seen,
        vec![
            (1, "", None),
            (2, "", Some(ActionKind::Edit)),
            (3, "😮", Some(LIKE)),
            (4, "", Some(ActionKind::Delete)),
        ]
    );
    assert_eq!(history[0].id, m);

    // Nothing applies to it any more...
    let code = refused(
        &mut alice,
        action(MessageId::new(), conv, "back", m, ActionKind::Edit),
    )
    .await;
    assert_eq!(code, ErrorCode::Gone);
    let code = refused(&mut bob, action(MessageId::new(), conv, "👍", m, LIKE)).await;
    assert_eq!(code, ErrorCode::Gone);
    // ...except another delete by its author (a second device deleting it
    // too), which is accepted; a non-author is still told not_author.
    let code = refused(
        &mut bob,
        action(MessageId::new(), conv, "", m, ActionKind::Delete),
    )
    .await;
    assert_eq!(code, ErrorCode::NotAuthor);
    let mut phone = device(server.addr, "alice").await;
    let again = MessageId::new();
    assert_eq!(
        acked(&mut phone, action(again, conv, "", m, ActionKind::Delete)).await,
        Seq(5)
    );
    assert_eq!(pushed(&mut bob).await.id, again);
    assert_eq!(pushed(&mut alice).await.id, again);
    server.stop().await;
}

#[tokio::test]
async fn an_action_needs_a_message_of_the_same_conversation() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let (mut alice, mut bob, conv) = pair(server.addr).await;
    let elsewhere_conv = alice.create("elsewhere", &[]).await;
    let elsewhere = MessageId::new();
    acked(&mut alice, message(elsewhere, elsewhere_conv, "elsewhere")).await;
    let m = post(&mut alice, &mut bob, conv, "here").await;
    let like = MessageId::new();
    acked(&mut bob, action(like, conv, "👍", m, LIKE)).await;
    pushed(&mut alice).await;

    for (target, kind) in [
        (MessageId::new(), ActionKind::Edit),
        (MessageId::new(), LIKE),
        (MessageId::new(), ActionKind::Delete),
        (elsewhere, ActionKind::Edit),
        (elsewhere, LIKE),
        (like, LIKE),
    ] {
        let body = match kind {
            ActionKind::Edit => "x",
            ActionKind::Delete => "",
            ActionKind::React { .. } => "👍",
        };
        let code = refused(
            &mut alice,
            action(MessageId::new(), conv, body, target, kind),
        )
        .await;
        assert_eq!(code, ErrorCode::NotFound, "{target} {kind:?}");
    }
    // Bob is not a member of the other conversation: membership comes first.
    let code = refused(
        &mut bob,
        action(MessageId::new(), elsewhere_conv, "👍", elsewhere, LIKE),
    )
    .await;
    assert_eq!(code, ErrorCode::NotMember);
    // Nothing took a seq or was pushed.
    bob.expect_silence(SILENCE).await;
    let next = MessageId::new();
    assert_eq!(acked(&mut alice, message(next, conv, "next")).await, Seq(3));
    server.stop().await;
}

#[tokio::test]
async fn the_body_of_an_action_follows_its_kind() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let (mut alice, mut bob, conv) = pair(server.addr).await;
    let m = post(&mut alice, &mut bob, conv, "text").await;
    let cases = [
        ("", ActionKind::Edit, Some(ErrorCode::EmptyBody)),
        ("a\0b", ActionKind::Edit, Some(ErrorCode::InvalidBody)),
        (
            "not empty",
            ActionKind::Delete,
            Some(ErrorCode::InvalidBody),
        ),
        ("", LIKE, Some(ErrorCode::InvalidBody)),
        ("👍", ActionKind::React { on: false }, None),
    ];
    for (body, kind, want) in cases {
        let id = MessageId::new();
        alice.send(&action(id, conv, body, m, kind)).await;
        let answer = alice.recv().await;
        match want {
            None => {
                ack_seq(&answer, id);
            }
            Some(code) => assert_eq!(refusal_of(&answer, id).code, code, "{body:?} {kind:?}"),
        }
    }
    let long = "👍".repeat(17); // 68 bytes
    let code = refused(&mut alice, action(MessageId::new(), conv, &long, m, LIKE)).await;
    assert_eq!(code, ErrorCode::InvalidBody);
    server.stop().await;
}

#[tokio::test]
async fn an_action_resend_gets_its_original_ack_even_after_a_delete() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let (mut alice, mut bob, conv) = pair(server.addr).await;
    let m = post(&mut alice, &mut bob, conv, "hi").await;
    let edit = action(MessageId::new(), conv, "hi!", m, ActionKind::Edit);
    alice.send(&edit).await;
    let original = alice.recv().await;
    assert!(matches!(original, ServerFrame::Ack { seq: Seq(2), .. }));
    pushed(&mut bob).await;
    // A lost ack: resent, same ack, nothing pushed again.
    alice.send(&edit).await;
    assert_eq!(alice.recv().await, original);
    bob.expect_silence(SILENCE).await;
    // Deleted since: dedup still comes first.
    acked(
        &mut alice,
        action(MessageId::new(), conv, "", m, ActionKind::Delete),
    )
    .await;
    pushed(&mut bob).await;
    alice.send(&edit).await;
    assert_eq!(alice.recv().await, original);
    // And from another device of the account.
    let mut phone = device(server.addr, "alice").await;
    phone.send(&edit).await;
    assert_eq!(phone.recv().await, original);
    bob.expect_silence(SILENCE).await;
    server.stop().await;
}

#[tokio::test]
async fn pipelined_actions_keep_their_order_and_never_race_their_target() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let (mut alice, mut bob, conv) = pair(server.addr).await;
    // A message and two edits of it, all sent before any answer.
    let (m, e1, e2) = (MessageId::new(), MessageId::new(), MessageId::new());
    alice.send(&message(m, conv, "v1")).await;
    alice
        .send(&action(e1, conv, "v2", m, ActionKind::Edit))
        .await;
    alice
        .send(&action(e2, conv, "v3", m, ActionKind::Edit))
        .await;
    assert_eq!(ack_seq(&alice.recv().await, m), Seq(1));
    assert_eq!(ack_seq(&alice.recv().await, e1), Seq(2));
    assert_eq!(ack_seq(&alice.recv().await, e2), Seq(3));
    let order: Vec<(MessageId, String)> = [
        pushed(&mut bob).await,
        pushed(&mut bob).await,
        pushed(&mut bob).await,
    ]
    .into_iter()
    .map(|w| (w.id, w.body))
    .collect();
    assert_eq!(
        order,
        vec![(m, "v1".into()), (e1, "v2".into()), (e2, "v3".into())]
    );
    // A message and its delete, pipelined: the delete sees its target.
    let (n, d) = (MessageId::new(), MessageId::new());
    alice.send(&message(n, conv, "oops")).await;
    alice
        .send(&action(d, conv, "", n, ActionKind::Delete))
        .await;
    assert_eq!(ack_seq(&alice.recv().await, n), Seq(4));
    assert_eq!(ack_seq(&alice.recv().await, d), Seq(5));
    server.stop().await;
}

#[tokio::test]
async fn read_marks_move_forward_only_and_are_pushed() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let (mut alice, mut bob, conv) = pair(server.addr).await;
    for body in ["one", "two", "three"] {
        post(&mut alice, &mut bob, conv, body).await;
    }

    // Bob reads up to 3 without having reported delivery: reading implies
    // having, so both marks move, and both members are told.
    bob.send(&ClientFrame::Read {
        conversation: conv,
        seq: Seq(3),
    })
    .await;
    let want = MemberMarks {
        user: bob.user,
        username: "bob".into(),
        delivered: Seq(3),
        read: Seq(3),
    };
    assert_eq!(pushed_marks(&mut alice).await, (conv, want.clone()));
    assert_eq!(pushed_marks(&mut bob).await, (conv, want.clone()));

    // Bob's stale phone reads up to 1: no change, nothing published.
    let mut phone = device(server.addr, "bob").await;
    phone
        .send(&ClientFrame::Read {
            conversation: conv,
            seq: Seq(1),
        })
        .await;
    // A delivery report below the read mark changes nothing either.
    phone
        .send(&ClientFrame::Received {
            conversation: conv,
            seq: Seq(2),
        })
        .await;
    phone.roundtrip().await;
    alice.expect_silence(SILENCE).await;
    bob.expect_silence(Duration::from_millis(50)).await;

    // Beyond the newest message: clamped, so no change either.
    bob.send(&ClientFrame::Read {
        conversation: conv,
        seq: Seq(99),
    })
    .await;
    bob.roundtrip().await;
    alice.expect_silence(SILENCE).await;

    // Every snapshot carries the read mark.
    let (_, members) = sync_all(&mut alice, conv).await;
    assert!(members.contains(&want), "{members:?}");
    let req = alice.req();
    alice.send(&ClientFrame::ListConversations { req }).await;
    match alice.recv().await {
        ServerFrame::Conversations { conversations, .. } => {
            assert!(conversations[0].members.contains(&want));
            let me = conversations[0]
                .members
                .iter()
                .find(|m| m.user == alice.user)
                .unwrap();
            assert_eq!((me.delivered, me.read), (Seq::ZERO, Seq::ZERO));
        }
        other => panic!("{other:?}"),
    }

    // A later message, then a delivery report: read stays, delivered moves.
    post(&mut alice, &mut bob, conv, "four").await;
    bob.send(&ClientFrame::Received {
        conversation: conv,
        seq: Seq(4),
    })
    .await;
    let (_, marks) = pushed_marks(&mut alice).await;
    assert_eq!((marks.delivered, marks.read), (Seq(4), Seq(3)));
    server.stop().await;
}

#[tokio::test]
async fn read_is_for_members_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let (mut alice, mut bob, conv) = pair(server.addr).await;
    post(&mut alice, &mut bob, conv, "members only").await;
    let mut carol = account(server.addr, "carol").await;
    carol
        .send(&ClientFrame::Read {
            conversation: conv,
            seq: Seq(1),
        })
        .await;
    match carol.recv().await {
        ServerFrame::Error { req, refusal } => {
            assert_eq!(req, None);
            assert_eq!(refusal.code, ErrorCode::NotMember);
            assert!(!refusal.retryable);
        }
        other => panic!("{other:?}"),
    }
    carol
        .send(&ClientFrame::Read {
            conversation: ConversationId::new(),
            seq: Seq(1),
        })
        .await;
    assert_eq!(
        error_code(&carol.recv().await),
        Some(ErrorCode::UnknownConversation)
    );
    // Nothing moved, nothing was published.
    alice.expect_silence(SILENCE).await;
    let (_, members) = sync_all(&mut alice, conv).await;
    assert!(members.iter().all(|m| m.read == Seq::ZERO));
    // Before hello: not authenticated.
    let mut anon = Client::connect(server.addr).await;
    anon.send(&ClientFrame::Read {
        conversation: conv,
        seq: Seq(1),
    })
    .await;
    assert_eq!(
        error_code(&anon.recv().await),
        Some(ErrorCode::NotAuthenticated)
    );
    server.stop().await;
}
