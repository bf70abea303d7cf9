//! Refusals and bad input: each gets a clear error, nothing is queued or
//! stored by mistake, and real clients keep working meanwhile.

use crate::raw::RawWs;
use crate::status::{assert_delivered_path, StatusLog};
use crate::support::{TestServer, User};
use chatsync_client::core::ActionError;
use chatsync_client::{ClientError, Status};
use chatsync_protocol::{
    ClientFrame, ConversationId, ErrorCode, MessageId, ServerFrame, PROTOCOL_VERSION,
};

/// A body of exactly `bytes` UTF-8 bytes, mostly 3- and 2-byte characters,
/// so its length in characters is far from its length in bytes.
fn body_of_bytes(bytes: usize) -> String {
    let mut body = "€".repeat(bytes / 3);
    if bytes % 3 == 2 {
        body.push('é');
    } else if bytes % 3 == 1 {
        body.push('a');
    }
    assert_eq!(body.len(), bytes);
    assert!(body.chars().count() < bytes);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_to_a_conversation_of_others_is_refused() {
    let server = TestServer::start().await;
    let probe = server.probe().await;
    let alice = User::new(&server.url(), "alice").await;
    let bob = User::new(&server.url(), "bob").await;
    let _carol = User::new(&server.url(), "carol").await;
    let theirs = bob.create_conversation("bob and carol", &["carol"]).await;

    // The client only knows its own conversations: refused at once.
    let err = alice.client.send(theirs, "let me in").await.unwrap_err();
    assert!(
        matches!(err, ClientError::Action(ActionError::UnknownConversation(c)) if c == theirs),
        "unexpected error {err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("unknown conversation") && text.contains(&theirs.to_string()),
        "unclear error: {text}"
    );
    assert!(alice.client.sending().await.unwrap().is_empty());

    // The server refuses it too, for a client that sends it anyway.
    let mut raw = RawWs::login(&server.url(), "alice").await;
    let id = MessageId::new();
    raw.send_message(id, theirs, "let me in").await;
    match raw.recv().await {
        ServerFrame::Refused {
            id: got, refusal, ..
        } => {
            assert_eq!(got, id);
            assert_eq!(refusal.code, ErrorCode::NotMember);
            assert!(!refusal.retryable);
            assert!(!refusal.message.is_empty(), "a refusal needs a reason");
        }
        other => panic!("expected refused not_member, got {other:?}"),
    }
    let nowhere = ConversationId::new();
    raw.send_message(MessageId::new(), nowhere, "hello?").await;
    match raw.recv().await {
        ServerFrame::Refused { refusal, .. } => {
            assert_eq!(refusal.code, ErrorCode::UnknownConversation);
        }
        other => panic!("expected refused unknown_conversation, got {other:?}"),
    }
    assert!(
        probe.messages(theirs).is_empty(),
        "a refused message was stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_is_refused_at_send_and_a_body_at_the_limit_goes_through() {
    const LIMIT: usize = 300;
    let server = TestServer::start_with(|c| c.limits.max_body_bytes = LIMIT).await;
    let probe = server.probe().await;
    let alice = User::new(&server.url(), "alice").await;
    let bob = User::new(&server.url(), "bob").await;
    let conv = alice.create_conversation("limits", &["bob"]).await;
    bob.knows(conv).await;
    let mut log = StatusLog::watch(&alice, conv)
        .await
        .with_probe(&probe, alice.id());

    // The client learnt the server's limit (not its built-in 4096).
    let over = body_of_bytes(LIMIT + 1);
    let err = alice.client.send(conv, over.clone()).await.unwrap_err();
    match &err {
        ClientError::Action(ActionError::InvalidBody { code, message }) => {
            assert_eq!(*code, ErrorCode::TooLarge);
            assert!(
                message.contains(&(LIMIT + 1).to_string()) && message.contains(&LIMIT.to_string()),
                "unclear error: {message}"
            );
        }
        other => panic!("expected a too_large refusal at send, got {other:?}"),
    }
    assert!(alice.client.sending().await.unwrap().is_empty());
    assert!(alice.timeline(conv).await.is_empty());
    log.drain();
    assert_eq!(log.seen(), 0, "a refused send showed up in the timeline");

    let exact = body_of_bytes(LIMIT);
    let id = alice.client.send(conv, exact.clone()).await.unwrap();
    log.wait_all(&[id], Status::Success).await;
    assert_delivered_path(id, &log.history(id));
    assert_eq!(bob.has(id).await.body.as_bytes(), exact.as_bytes());

    // The server enforces the same limit on a client that ignores it.
    let mut raw = RawWs::login(&server.url(), "alice").await;
    let id = MessageId::new();
    raw.send_message(id, conv, &over).await;
    match raw.recv().await {
        ServerFrame::Refused { refusal, .. } => assert_eq!(refusal.code, ErrorCode::TooLarge),
        other => panic!("expected refused too_large, got {other:?}"),
    }
    assert!(probe.seq_of(conv, id).is_none());
}

/// Sends malformed frames and a wrong token from raw clients.
async fn abuse(server: &str) {
    let mut raw = RawWs::connect(server).await;
    for bad in [
        "{not json",
        r#"{"type":"send"}"#,
        r#"{"type":"teleport","to":"mars"}"#,
    ] {
        raw.send_text(bad).await;
        let answer = raw
            .recv_text()
            .await
            .expect("closed after a malformed frame");
        let json: serde_json::Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(json["type"], "error", "answer to {bad:?}: {answer}");
        assert_eq!(json["code"], "malformed", "answer to {bad:?}: {answer}");
        assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    raw.send_binary(&[0xff, 0x00, 0x13]).await;
    match raw.recv().await {
        ServerFrame::Error { refusal, .. } => assert_eq!(refusal.code, ErrorCode::Malformed),
        other => panic!("expected error malformed, got {other:?}"),
    }
    // Still served after all that.
    raw.send(&ClientFrame::Ping { nonce: 7 }).await;
    assert_eq!(raw.recv().await, ServerFrame::Pong { nonce: 7 });

    let mut intruder = RawWs::connect(server).await;
    intruder
        .send(&ClientFrame::Hello {
            version: PROTOCOL_VERSION,
            token: "not-a-real-token".into(),
        })
        .await;
    let before_close = intruder.until_closed().await;
    assert_eq!(
        before_close.len(),
        1,
        "expected one error then a close: {before_close:?}"
    );
    match chatsync_protocol::decode_server(&before_close[0]).unwrap() {
        ServerFrame::Error { refusal, .. } => {
            assert_eq!(refusal.code, ErrorCode::Unauthorized);
            assert!(!refusal.message.is_empty());
        }
        other => panic!("expected error unauthorized, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors_while_real_clients_keep_working() {
    let server = TestServer::start().await;
    let probe = server.probe().await;
    let alice = User::new(&server.url(), "alice").await;
    let bob = User::new(&server.url(), "bob").await;
    let conv = alice.create_conversation("busy", &["bob"]).await;
    bob.knows(conv).await;
    let mut alice_log = StatusLog::watch(&alice, conv)
        .await
        .with_probe(&probe, alice.id());
    let mut bob_log = StatusLog::watch(&bob, conv)
        .await
        .with_probe(&probe, bob.id());

    let url = server.url();
    let talk = async {
        let mut ids = Vec::new();
        for i in 0..10 {
            ids.push(
                alice
                    .client
                    .send(conv, format!("still here {i}"))
                    .await
                    .unwrap(),
            );
        }
        ids
    };
    let (alice_ids, ()) = tokio::join!(talk, abuse(&url));
    let reply = bob.client.send(conv, "me too").await.unwrap();

    alice_log.wait_all(&alice_ids, Status::Success).await;
    bob_log.wait_all(&[reply], Status::Success).await;
    for id in &alice_ids {
        assert_delivered_path(*id, &alice_log.history(*id));
    }
    assert_delivered_path(reply, &bob_log.history(reply));
    assert_eq!(alice.has(reply).await.body, "me too");
    assert_eq!(probe.messages(conv).len(), 11);
}
