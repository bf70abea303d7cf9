//! End-to-end tests of the server over real WebSocket connections.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use chatsync_protocol::{ClientFrame, ErrorCode, Limits, MessageId, Seq, ServerFrame};
use common::{account, device, error_code, start, start_with, Client};
use std::time::Duration;

fn send(id: MessageId, conversation: chatsync_protocol::ConversationId, body: &str) -> ClientFrame {
    ClientFrame::Send {
        id,
        conversation,
        body: body.into(),
        action: None,
    }
}

fn ack_seq(frame: &ServerFrame, want_id: MessageId) -> Seq {
    match frame {
        ServerFrame::Ack { id, seq, .. } if *id == want_id => *seq,
        other => panic!("expected ack of {want_id}, got {other:?}"),
    }
}

#[tokio::test]
async fn handshake_and_pre_hello_rules() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::connect(server.addr).await;
    c.roundtrip().await; // ping is allowed before hello
    let req = c.req();
    c.send(&ClientFrame::ListConversations { req }).await;
    match c.recv().await {
        ServerFrame::Error { req: r, refusal } => {
            assert_eq!(r, Some(req));
            assert_eq!(refusal.code, ErrorCode::NotAuthenticated);
        }
        other => panic!("{other:?}"),
    }
    let user = c.register("alice").await;
    // Taken name and short password.
    let req = c.req();
    c.send(&ClientFrame::Register {
        req,
        username: "alice".into(),
        password: "whatever-long".into(),
    })
    .await;
    assert_eq!(error_code(&c.recv().await), Some(ErrorCode::UsernameTaken));
    let req = c.req();
    c.send(&ClientFrame::Login {
        req,
        username: "alice".into(),
        password: "wrong password".into(),
        device_name: "d".into(),
    })
    .await;
    assert_eq!(error_code(&c.recv().await), Some(ErrorCode::BadCredentials));

    let token = c.login("alice").await;
    match c.hello(&token).await {
        ServerFrame::Welcome {
            version,
            user: u,
            username,
            device,
            limits,
            server_time,
        } => {
            assert_eq!(version, chatsync_protocol::PROTOCOL_VERSION);
            assert_eq!(u, user);
            assert_eq!(username, "alice");
            assert_eq!(device, c.device);
            // The defaults, plus the timeouts, connection cap and session
            // lifetime the server announces with them.
            assert_eq!(
                limits,
                chatsync_server::ServerConfig::default().normalized().limits
            );
            assert_eq!(limits.handshake_timeout_ms, Some(10_000));
            assert_eq!(limits.idle_timeout_ms, Some(120_000));
            assert_eq!(limits.max_connections_per_user, Some(16));
            assert!(server_time > 0);
        }
        other => panic!("{other:?}"),
    }
    server.stop().await;
}

#[tokio::test]
async fn pipelined_sends_are_acked_in_order_and_pushed() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut alice = account(server.addr, "alice").await;
    let mut bob = account(server.addr, "bob").await;
    let conv = alice.create("chat", &["bob"]).await;
    match bob.recv().await {
        ServerFrame::Conversation {
            req: None,
            conversation,
        } => assert_eq!(conversation.id, conv),
        other => panic!("{other:?}"),
    }
    let mut alice2 = device(server.addr, "alice").await;

    let ids: Vec<MessageId> = (0..50).map(|_| MessageId::new()).collect();
    for (i, id) in ids.iter().enumerate() {
        alice.send(&send(*id, conv, &format!("m{i}"))).await;
    }
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(ack_seq(&alice.recv().await, *id), Seq(i as u64 + 1));
    }
    // Bob, and Alice's other device, get every message as a push, in order.
    for peer in [&mut bob, &mut alice2] {
        for (i, id) in ids.iter().enumerate() {
            match peer.recv().await {
                ServerFrame::Message { message } => {
                    assert_eq!(message.id, *id);
                    assert_eq!(message.seq, Seq(i as u64 + 1));
                    assert_eq!(message.sender_name, "alice");
                    assert_eq!(message.body, format!("m{i}"));
                }
                other => panic!("{other:?}"),
            }
        }
    }
    // The originating connection gets acks only, no echo.
    alice.expect_silence(Duration::from_millis(100)).await;
    server.stop().await;
}

#[tokio::test]
async fn resend_gets_the_original_ack_and_one_copy() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut alice = account(server.addr, "alice").await;
    let conv = alice.create("solo", &[]).await;
    let first = MessageId::new();
    alice.send(&send(first, conv, "hello")).await;
    let original = alice.recv().await;
    for i in 0..3 {
        let id = MessageId::new();
        alice.send(&send(id, conv, &format!("other {i}"))).await;
        alice.recv().await;
    }
    alice.send(&send(first, conv, "hello")).await;
    assert_eq!(alice.recv().await, original);
    let req = alice.req();
    alice
        .send(&ClientFrame::Sync {
            req,
            conversation: conv,
            after: Seq::ZERO,
            limit: 100,
        })
        .await;
    match alice.recv().await {
        ServerFrame::Batch {
            messages, last_seq, ..
        } => {
            assert_eq!(last_seq, Seq(4));
            assert_eq!(messages.iter().filter(|m| m.id == first).count(), 1);
        }
        other => panic!("{other:?}"),
    }
    server.stop().await;
}

#[tokio::test]
async fn received_moves_marks_and_sync_pages_without_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), |c| c.limits.max_page = 10).await;
    let mut alice = account(server.addr, "alice").await;
    let mut bob = account(server.addr, "bob").await;
    let conv = alice.create("chat", &["bob"]).await;
    bob.recv().await; // conversation push
    for i in 0..25 {
        let id = MessageId::new();
        alice.send(&send(id, conv, &format!("{i}"))).await;
        ack_seq(&alice.recv().await, id);
    }
    for _ in 0..25 {
        assert!(matches!(bob.recv().await, ServerFrame::Message { .. }));
    }
    bob.send(&ClientFrame::Received {
        conversation: conv,
        seq: Seq(25),
    })
    .await;
    for who in [&mut alice, &mut bob] {
        match who.recv().await {
            ServerFrame::Marks {
                conversation,
                marks,
                ..
            } => {
                assert_eq!(conversation, conv);
                assert_eq!(marks.username, "bob");
                assert_eq!(marks.delivered, Seq(25));
            }
            other => panic!("{other:?}"),
        }
    }
    // A repeated report does not move the mark: nothing is published.
    bob.send(&ClientFrame::Received {
        conversation: conv,
        seq: Seq(3),
    })
    .await;
    alice.expect_silence(Duration::from_millis(100)).await;

    // Paging with a limit above max_page: pages of 10, 10, 5, gap-free.
    let mut after = Seq::ZERO;
    let mut pages = Vec::new();
    loop {
        let req = bob.req();
        bob.send(&ClientFrame::Sync {
            req,
            conversation: conv,
            after,
            limit: 1000,
        })
        .await;
        let ServerFrame::Batch {
            req: r,
            messages,
            members,
            last_seq,
            ..
        } = bob.recv().await
        else {
            panic!("expected batch")
        };
        assert_eq!(r, req);
        assert_eq!(last_seq, Seq(25));
        assert_eq!(members.len(), 2);
        for m in &messages {
            after = after.next();
            assert_eq!(m.seq, after);
        }
        pages.push(messages.len());
        if after == last_seq {
            break;
        }
    }
    assert_eq!(pages, vec![10, 10, 5]);
    server.stop().await;
}

#[tokio::test]
async fn refusals_are_permanent_and_specific() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut alice = account(server.addr, "alice").await;
    let mut carol = account(server.addr, "carol").await;
    let conv = alice.create("private", &[]).await;

    let id = MessageId::new();
    carol.send(&send(id, conv, "let me in")).await;
    match carol.recv().await {
        ServerFrame::Refused { id: rid, refusal } => {
            assert_eq!(rid, id);
            assert_eq!(refusal.code, ErrorCode::NotMember);
            assert!(!refusal.retryable);
        }
        other => panic!("{other:?}"),
    }
    let req = carol.req();
    carol
        .send(&ClientFrame::Sync {
            req,
            conversation: conv,
            after: Seq::ZERO,
            limit: 10,
        })
        .await;
    match carol.recv().await {
        ServerFrame::Error { req: r, refusal } => {
            assert_eq!((r, refusal.code), (Some(req), ErrorCode::NotMember));
        }
        other => panic!("{other:?}"),
    }
    carol
        .send(&send(
            MessageId::new(),
            chatsync_protocol::ConversationId::new(),
            "x",
        ))
        .await;
    assert_eq!(
        error_code(&carol.recv().await),
        Some(ErrorCode::UnknownConversation)
    );

    let big = "é".repeat(Limits::default().max_body_bytes / 2 + 1);
    alice.send(&send(MessageId::new(), conv, &big)).await;
    assert_eq!(error_code(&alice.recv().await), Some(ErrorCode::TooLarge));
    alice.send(&send(MessageId::new(), conv, "")).await;
    assert_eq!(error_code(&alice.recv().await), Some(ErrorCode::EmptyBody));
    alice.send(&send(MessageId::new(), conv, "a\0b")).await;
    assert_eq!(
        error_code(&alice.recv().await),
        Some(ErrorCode::InvalidBody)
    );
    // A refused message does not block the next one.
    let ok = MessageId::new();
    alice.send(&send(ok, conv, "fine")).await;
    assert_eq!(ack_seq(&alice.recv().await, ok), Seq(1));

    let req = alice.req();
    alice
        .send(&ClientFrame::CreateConversation {
            req,
            title: "x".into(),
            members: vec!["nobody".into()],
        })
        .await;
    assert_eq!(
        error_code(&alice.recv().await),
        Some(ErrorCode::UnknownUser)
    );
    server.stop().await;
}

#[tokio::test]
async fn malformed_frames_get_an_error_and_the_connection_survives() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut alice = account(server.addr, "alice").await;
    for bad in [
        "not json",
        r#"{"type":"teleport"}"#,
        r#"{"type":"ping"}"#,
        r#"{"type":"ping","nonce":1,"extra":2}"#,
    ] {
        alice.send_text(bad).await;
        match alice.recv().await {
            ServerFrame::Error { req, refusal } => {
                assert_eq!(req, None);
                assert_eq!(refusal.code, ErrorCode::Malformed);
                assert!(!refusal.retryable);
            }
            other => panic!("{other:?}"),
        }
    }
    alice.send_binary(vec![1, 2, 3]).await;
    assert_eq!(error_code(&alice.recv().await), Some(ErrorCode::Malformed));
    alice.roundtrip().await;
    let conv = alice.create("still works", &[]).await;
    let id = MessageId::new();
    alice.send(&send(id, conv, "yes")).await;
    ack_seq(&alice.recv().await, id);
    server.stop().await;
}

#[tokio::test]
async fn too_many_malformed_frames_close_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::connect(server.addr).await;
    for _ in 0..101 {
        c.send_text("{").await;
    }
    let (frames, code) = c.recv_until_closed().await;
    assert_eq!(frames.len(), 101);
    assert_eq!(code, Some(1008));
    server.stop().await;
}

#[tokio::test]
async fn bad_hello_closes_only_that_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut alice = account(server.addr, "alice").await;

    let mut intruder = Client::connect(server.addr).await;
    intruder
        .send(&ClientFrame::Hello {
            version: chatsync_protocol::PROTOCOL_VERSION,
            token: "forged".into(),
        })
        .await;
    let (frames, code) = intruder.recv_until_closed().await;
    assert_eq!(frames.len(), 1);
    assert_eq!(error_code(&frames[0]), Some(ErrorCode::Unauthorized));
    assert_eq!(code, Some(1008));

    let mut old = Client::connect(server.addr).await;
    old.send(&ClientFrame::Hello {
        version: 99,
        token: alice.token.clone(),
    })
    .await;
    let (frames, _) = old.recv_until_closed().await;
    assert_eq!(error_code(&frames[0]), Some(ErrorCode::UnsupportedVersion));

    alice.roundtrip().await;
    server.stop().await;
}

#[tokio::test]
async fn oversized_frame_closes_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    // Below what valid requests need: raised (and announced) by the server.
    let server = start_with(dir.path(), |c| c.limits.max_frame_bytes = 2048).await;
    let mut alice = Client::connect(server.addr).await;
    alice.register("alice").await;
    let token = alice.login("alice").await;
    let max = match alice.hello(&token).await {
        ServerFrame::Welcome { limits, .. } => limits.max_frame_bytes,
        other => panic!("{other:?}"),
    };
    assert_eq!(max, Limits::default().min_frame_bytes());
    let mut other = device(server.addr, "alice").await;
    let conv = alice.create("c", &[]).await;
    assert!(matches!(
        other.recv().await,
        ServerFrame::Conversation { req: None, .. }
    ));
    let huge = "x".repeat(max + 1);
    alice.send(&send(MessageId::new(), conv, &huge)).await;
    let (frames, code) = alice.recv_until_closed().await;
    assert_eq!(error_code(&frames[0]), Some(ErrorCode::FrameTooLarge));
    assert_eq!(code, Some(1009));
    other.roundtrip().await;
    server.stop().await;
}

#[tokio::test]
async fn handshake_timeout_and_connection_cap() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), |c| {
        c.handshake_timeout = Duration::from_millis(300);
        c.max_connections_per_user = 1;
    })
    .await;
    let mut lazy = Client::connect(server.addr).await;
    let (frames, code) = lazy.recv_until_closed().await;
    assert_eq!(error_code(&frames[0]), Some(ErrorCode::NotAuthenticated));
    assert_eq!(code, Some(1008));

    let alice = account(server.addr, "alice").await;
    let mut second = Client::connect(server.addr).await;
    let token = second.login("alice").await;
    second
        .send(&ClientFrame::Hello {
            version: chatsync_protocol::PROTOCOL_VERSION,
            token,
        })
        .await;
    let (frames, _) = second.recv_until_closed().await;
    assert_eq!(error_code(&frames[0]), Some(ErrorCode::Unavailable));
    drop(alice);
    server.stop().await;
}

#[tokio::test]
async fn rate_limit_never_reorders() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), |c| {
        c.limits.rate_per_sec = 20;
        c.limits.rate_burst = 3;
    })
    .await;
    let mut alice = account(server.addr, "alice").await;
    let conv = alice.create("c", &[]).await;
    let ids: Vec<MessageId> = (0..6).map(|_| MessageId::new()).collect();
    for id in &ids {
        alice.send(&send(*id, conv, "x")).await;
    }
    for id in &ids[..3] {
        alice.recv().await;
        let _ = id;
    }
    let mut wait = 0;
    for id in &ids[3..] {
        match alice.recv().await {
            ServerFrame::Refused { id: rid, refusal } => {
                assert_eq!(rid, *id);
                assert_eq!(refusal.code, ErrorCode::RateLimited);
                assert!(refusal.retryable);
                wait = wait.max(refusal.retry_after_ms.unwrap());
            }
            other => panic!("{other:?}"),
        }
    }
    tokio::time::sleep(Duration::from_millis(wait.max(200))).await;
    // Tokens are back, but message 5 may not overtake message 4.
    alice.send(&send(ids[4], conv, "x")).await;
    assert_eq!(
        error_code(&alice.recv().await),
        Some(ErrorCode::RateLimited)
    );
    for (i, id) in ids[3..].iter().enumerate() {
        alice.send(&send(*id, conv, "x")).await;
        assert_eq!(ack_seq(&alice.recv().await, *id), Seq(4 + i as u64));
    }
    server.stop().await;
}

#[tokio::test]
async fn data_and_dedup_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut alice = account(server.addr, "alice").await;
    let conv = alice.create("c", &[]).await;
    let ids: Vec<MessageId> = (0..5).map(|_| MessageId::new()).collect();
    let mut acks = Vec::new();
    for id in &ids {
        alice.send(&send(*id, conv, "kept")).await;
    }
    for _ in &ids {
        acks.push(alice.recv().await);
    }
    let token = alice.token.clone();
    // Shutdown tells connected clients why.
    let stopping = tokio::spawn(server.stop());
    let (frames, code) = alice.recv_until_closed().await;
    assert_eq!(error_code(&frames[0]), Some(ErrorCode::Unavailable));
    assert_eq!(code, Some(1001));
    stopping.await.unwrap();

    let server = start(dir.path()).await;
    let mut again = Client::connect(server.addr).await;
    assert!(matches!(
        again.hello(&token).await,
        ServerFrame::Welcome { .. }
    ));
    again.send(&send(ids[0], conv, "kept")).await;
    assert_eq!(again.recv().await, acks[0]);
    let req = again.req();
    again
        .send(&ClientFrame::Sync {
            req,
            conversation: conv,
            after: Seq::ZERO,
            limit: 100,
        })
        .await;
    match again.recv().await {
        ServerFrame::Batch { messages, .. } => {
            let got: Vec<MessageId> = messages.iter().map(|m| m.id).collect();
            assert_eq!(got, ids);
        }
        other => panic!("{other:?}"),
    }
    let req = again.req();
    again.send(&ClientFrame::ListConversations { req }).await;
    match again.recv().await {
        ServerFrame::Conversations { conversations, .. } => {
            assert_eq!(conversations.len(), 1);
            assert_eq!(conversations[0].last_seq, Seq(5));
        }
        other => panic!("{other:?}"),
    }
    server.stop().await;
}

#[tokio::test]
async fn healthz_answers() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.ends_with("ok"));
    server.stop().await;
}

#[tokio::test]
async fn concurrent_senders_share_one_gap_free_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let names = ["s0", "s1", "s2", "s3"];
    let mut clients = Vec::new();
    for name in names {
        clients.push(account(server.addr, name).await);
    }
    let mut watcher = account(server.addr, "watcher").await;
    let conv = watcher.create("busy", &names).await;
    for c in &mut clients {
        assert!(matches!(
            c.recv().await,
            ServerFrame::Conversation { req: None, .. }
        ));
    }
    const EACH: usize = 100;
    let mut tasks = Vec::new();
    for mut c in clients {
        tasks.push(tokio::spawn(async move {
            let ids: Vec<MessageId> = (0..EACH).map(|_| MessageId::new()).collect();
            for id in &ids {
                c.send(&send(*id, conv, "x")).await;
            }
            let mut seqs = Vec::new();
            while seqs.len() < EACH {
                // Other senders' messages arrive as pushes in between.
                match c.recv().await {
                    ServerFrame::Ack { id, seq, .. } => {
                        assert_eq!(id, ids[seqs.len()]);
                        seqs.push(seq.0);
                    }
                    ServerFrame::Message { .. } => {}
                    other => panic!("{other:?}"),
                }
            }
            // One device's messages are stored in the order it sent them.
            assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
            seqs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (1..=(EACH * names.len()) as u64).collect::<Vec<_>>());
    // The watcher gets every push, in sequence order.
    for want in 1..=(EACH * names.len()) as u64 {
        match watcher.recv().await {
            ServerFrame::Message { message } => assert_eq!(message.seq, Seq(want)),
            other => panic!("{other:?}"),
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), |c| c.idle_timeout = Duration::from_millis(300)).await;
    let mut alice = account(server.addr, "alice").await;
    // Activity keeps it open.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        alice.roundtrip().await;
    }
    let (frames, code) = alice.recv_until_closed().await;
    assert!(frames.is_empty());
    assert_eq!(code, Some(1000));
    server.stop().await;
}
