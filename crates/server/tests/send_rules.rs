//! Sending rules over real WebSocket connections and a real SQLite store:
//! ids unique across senders, dedup before any refusal, frame limit derived
//! from the body limit, expiry of the rate-limit block, conversation limits.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use chatsync_protocol::{
    ClientFrame, ConversationId, ErrorCode, Limits, MessageId, Seq, ServerFrame,
};
use common::{account, error_code, start, start_with, Client};
use std::time::{Duration, Instant};

/// A `send` frame as JSON text (built by hand, so these tests do not depend
/// on the shape of the Rust frame type).
fn send(id: MessageId, conversation: ConversationId, body: &str) -> String {
    serde_json::json!({
        "type": "send",
        "id": id.to_string(),
        "conversation": conversation.to_string(),
        "body": body,
    })
    .to_string()
}

fn ack_seq(frame: &ServerFrame, want_id: MessageId) -> Seq {
    match frame {
        ServerFrame::Ack { id, seq, .. } if *id == want_id => *seq,
        other => panic!("expected ack of {want_id}, got {other:?}"),
    }
}

fn refusal_of(frame: &ServerFrame, want_id: MessageId) -> chatsync_protocol::Refusal {
    match frame {
        ServerFrame::Refused { id, refusal } if *id == want_id => refusal.clone(),
        other => panic!("expected refused of {want_id}, got {other:?}"),
    }
}

async fn sync_all(c: &mut Client, conversation: ConversationId) -> Vec<(MessageId, String)> {
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
                req: r, messages, ..
            } if r == req => return messages.into_iter().map(|m| (m.id, m.body)).collect(),
            // Pushes may come first.
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

#[tokio::test]
async fn an_id_used_by_another_sender_is_refused_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let (mut alice, mut bob, conv) = pair(server.addr).await;

    let x = MessageId::new();
    alice.send_text(&send(x, conv, "alice's words")).await;
    let original = alice.recv().await;
    assert_eq!(ack_seq(&original, x), Seq(1));
    match bob.recv().await {
        ServerFrame::Message { message } => assert_eq!(message.id, x),
        other => panic!("{other:?}"),
    }
    // Bob tries to shadow alice's message on everyone's device.
    bob.send_text(&send(x, conv, "words put in alice's mouth"))
        .await;
    let refusal = refusal_of(&bob.recv().await, x);
    assert_eq!(refusal.code, ErrorCode::IdConflict);
    assert!(!refusal.retryable);
    assert!(refusal.retry_after_ms.is_none());
    assert!(!refusal.message.is_empty());
    // Nothing was pushed to alice, and her own resend still gets her ack.
    alice.send_text(&send(x, conv, "alice's words")).await;
    assert_eq!(alice.recv().await, original);
    // Bob's next message is unaffected.
    let y = MessageId::new();
    bob.send_text(&send(y, conv, "hello")).await;
    assert_eq!(ack_seq(&bob.recv().await, y), Seq(2));

    // Both race for a fresh id: exactly one of them stores it.
    let z = MessageId::new();
    alice.send_text(&send(z, conv, "alice z")).await;
    bob.send_text(&send(z, conv, "bob z")).await;
    let mut acked = 0;
    for c in [&mut alice, &mut bob] {
        loop {
            match c.recv().await {
                ServerFrame::Ack { id, .. } if id == z => acked += 1,
                ServerFrame::Refused { id, refusal } if id == z => {
                    assert_eq!(refusal.code, ErrorCode::IdConflict)
                }
                ServerFrame::Message { .. } => continue,
                other => panic!("{other:?}"),
            }
            break;
        }
    }
    assert_eq!(acked, 1);
    let stored = sync_all(&mut alice, conv).await;
    let ids: Vec<MessageId> = stored.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, vec![x, y, z]);
    assert_eq!(stored[0].1, "alice's words");
    server.stop().await;
}

#[tokio::test]
async fn a_resend_gets_its_ack_even_when_it_would_be_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), |c| c.limits.max_body_bytes = 100).await;
    let mut alice = account(server.addr, "alice").await;
    let conv = alice.create("c", &[]).await;
    let x = MessageId::new();
    let body = "a body of forty bytes, under the limit..";
    alice.send_text(&send(x, conv, body)).await;
    let original = alice.recv().await;
    ack_seq(&original, x);
    let token = alice.token.clone();
    drop(alice);
    server.stop().await;

    // The operator lowers the body limit and the rate; the client, which
    // never got the ack (say), resends.
    let server = start_with(dir.path(), |c| {
        c.limits.max_body_bytes = 10;
        c.limits.rate_per_sec = 2;
        c.limits.rate_burst = 1;
    })
    .await;
    let mut alice = Client::connect(server.addr).await;
    assert!(matches!(
        alice.hello(&token).await,
        ServerFrame::Welcome { .. }
    ));
    // Body check: too large now, but stored already.
    alice.send_text(&send(x, conv, body)).await;
    assert_eq!(alice.recv().await, original);
    // Membership check: a resend naming another (unknown) conversation
    // still gets the original ack, with the original conversation.
    alice.send_text(&send(x, ConversationId::new(), body)).await;
    assert_eq!(alice.recv().await, original);
    // A new message over the limit is still refused.
    let big = MessageId::new();
    alice.send_text(&send(big, conv, "eleven bytes")).await;
    assert_eq!(
        refusal_of(&alice.recv().await, big).code,
        ErrorCode::TooLarge
    );

    // Rate: the bucket (1 token) goes to y; resending y at once would be
    // rate limited, but y is stored: original ack, and no block on y.
    let y = MessageId::new();
    alice.send_text(&send(y, conv, "y")).await;
    let y_ack = alice.recv().await;
    assert_eq!(ack_seq(&y_ack, y), Seq(2));
    alice.send_text(&send(y, conv, "y")).await;
    assert_eq!(alice.recv().await, y_ack);
    // A fresh z is refused for rate (blocking the connection on z)...
    let z = MessageId::new();
    alice.send_text(&send(z, conv, "z")).await;
    let refusal = refusal_of(&alice.recv().await, z);
    assert_eq!(refusal.code, ErrorCode::RateLimited);
    // ...but an already stored y is acknowledged even while blocked on z.
    alice.send_text(&send(y, conv, "y")).await;
    assert_eq!(alice.recv().await, y_ack);
    // The ordering rule is intact: after the wait, w may not overtake z.
    tokio::time::sleep(Duration::from_millis(refusal.retry_after_ms.unwrap() + 50)).await;
    let w = MessageId::new();
    alice.send_text(&send(w, conv, "w")).await;
    assert_eq!(
        refusal_of(&alice.recv().await, w).code,
        ErrorCode::RateLimited
    );
    alice.send_text(&send(z, conv, "z")).await;
    assert_eq!(ack_seq(&alice.recv().await, z), Seq(3));
    server.stop().await;
}

#[tokio::test]
async fn a_stored_resend_does_not_leave_the_connection_blocked() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), |c| {
        c.limits.rate_per_sec = 4;
        c.limits.rate_burst = 1;
    })
    .await;
    let mut alice = account(server.addr, "alice").await;
    let conv = alice.create("c", &[]).await;
    let x = MessageId::new();
    alice.send_text(&send(x, conv, "x")).await;
    ack_seq(&alice.recv().await, x);
    // The bucket is empty: without dedup first, this resend would be
    // refused and block the connection on x, which the client (having its
    // ack) would never resend.
    alice.send_text(&send(x, conv, "x")).await;
    ack_seq(&alice.recv().await, x);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let y = MessageId::new();
    alice.send_text(&send(y, conv, "y")).await;
    assert_eq!(ack_seq(&alice.recv().await, y), Seq(2));
    server.stop().await;
}

#[tokio::test]
async fn the_frame_limit_always_fits_a_valid_send() {
    let dir = tempfile::tempdir().unwrap();
    let max_body = 20_000;
    let server = start_with(dir.path(), |c| c.limits.max_body_bytes = max_body).await;
    let mut alice = Client::connect(server.addr).await;
    alice.register("alice").await;
    let token = alice.login("alice").await;
    let limits = match alice.hello(&token).await {
        ServerFrame::Welcome { limits, .. } => limits,
        other => panic!("{other:?}"),
    };
    assert_eq!(limits.max_body_bytes, max_body);
    assert_eq!(limits.max_frame_bytes, max_body * 6 + 1024);
    let conv = alice.create("c", &[]).await;
    // The worst case: every byte a control character, escaped as \u0001.
    let body = "\u{1}".repeat(max_body);
    let id = MessageId::new();
    let text = send(id, conv, &body);
    assert!(text.len() > Limits::default().max_frame_bytes);
    assert!(text.len() <= limits.max_frame_bytes);
    alice.send_text(&text).await;
    assert_eq!(ack_seq(&alice.recv().await, id), Seq(1));
    let stored = sync_all(&mut alice, conv).await;
    assert_eq!(stored[0].1, body);
    server.stop().await;
}

#[tokio::test]
async fn a_rate_limit_block_lapses_when_its_message_is_abandoned() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), |c| {
        c.limits.rate_per_sec = 20;
        c.limits.rate_burst = 1;
    })
    .await;
    let mut alice = account(server.addr, "alice").await;
    let conv = alice.create("c", &[]).await;
    let (x, abandoned, z) = (MessageId::new(), MessageId::new(), MessageId::new());
    alice.send_text(&send(x, conv, "x")).await;
    alice.send_text(&send(abandoned, conv, "given up on")).await;
    ack_seq(&alice.recv().await, x);
    let refusal = refusal_of(&alice.recv().await, abandoned);
    let refused_at = Instant::now();
    assert_eq!(refusal.code, ErrorCode::RateLimited);
    let retry_after = Duration::from_millis(refusal.retry_after_ms.unwrap());
    // Tokens are back, but the connection is blocked on the abandoned id.
    tokio::time::sleep(retry_after * 4).await;
    alice.send_text(&send(z, conv, "z")).await;
    assert_eq!(
        refusal_of(&alice.recv().await, z).code,
        ErrorCode::RateLimited
    );
    // Once retry_after + 5 s have passed without a resend, it lapses.
    let lapse = retry_after + Duration::from_secs(5) + Duration::from_millis(100);
    tokio::time::sleep(lapse.saturating_sub(refused_at.elapsed())).await;
    alice.send_text(&send(z, conv, "z")).await;
    assert_eq!(ack_seq(&alice.recv().await, z), Seq(2));
    // The abandoned message can still be sent later; it simply comes after.
    tokio::time::sleep(retry_after * 2).await;
    alice.send_text(&send(abandoned, conv, "given up on")).await;
    assert_eq!(ack_seq(&alice.recv().await, abandoned), Seq(3));
    server.stop().await;
}

#[tokio::test]
async fn conversation_title_and_member_count_are_limited() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut alice = Client::connect(server.addr).await;
    alice.register("alice").await;
    let token = alice.login("alice").await;
    let limits = match alice.hello(&token).await {
        ServerFrame::Welcome { limits, .. } => limits,
        other => panic!("{other:?}"),
    };
    assert_eq!(limits.max_title_bytes, 256);
    assert_eq!(limits.max_members, 100);

    // 255 × 'a' + 'é' is 257 bytes (256 characters).
    let (req, answer) = create_raw(&mut alice, format!("{}é", "a".repeat(255)), vec![]).await;
    match answer {
        ServerFrame::Error { req: r, refusal } => {
            assert_eq!(r, Some(req));
            assert_eq!(refusal.code, ErrorCode::InvalidRequest);
            assert!(!refusal.retryable);
            assert!(refusal.message.contains("256"), "{}", refusal.message);
        }
        other => panic!("{other:?}"),
    }
    // 100 names is one too many (the creator is the 100th member); 99 pass
    // the limit and fail only because the accounts do not exist.
    let names = |n: usize| (0..n).map(|i| format!("user{i}")).collect::<Vec<_>>();
    let (req, answer) = create_raw(&mut alice, "t".into(), names(100)).await;
    assert_eq!(error_code(&answer), Some(ErrorCode::InvalidRequest));
    assert!(matches!(answer, ServerFrame::Error { req: Some(r), .. } if r == req));
    let (_, answer) = create_raw(&mut alice, "t".into(), names(99)).await;
    assert_eq!(error_code(&answer), Some(ErrorCode::UnknownUser));
    // A title at the limit is fine.
    alice.create(&"é".repeat(128), &[]).await;
    server.stop().await;
}

/// Sends a `create_conversation` and returns its `req` and the answer.
async fn create_raw(c: &mut Client, title: String, members: Vec<String>) -> (u64, ServerFrame) {
    let req = c.req();
    c.send(&ClientFrame::CreateConversation {
        req,
        title,
        members,
    })
    .await;
    (req, c.recv().await)
}
