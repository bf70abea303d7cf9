//! S14 hard text: a body whose last emoji straddles the size limit; a ZWJ
//! family emoji; a decomposed accent (e + U+0301); mixed right-to-left and
//! left-to-right; a body with U+0000. Valid text arrives byte-identical (no
//! normalisation); nothing is ever cut inside a character; U+0000 is
//! refused by both sides, consistently (`invalid_body`).

use crate::raw::RawWs;
use crate::status::StatusLog;
use crate::world::{ids, short_ack, World};
use chatsync_client::core::ActionError;
use chatsync_client::{ClientError, Status};
use chatsync_protocol::{ErrorCode, Limits, MessageId, ServerFrame};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s14_hard_text_byte_identical_or_refused_consistently() {
    let w = World::new(short_ack()).await;
    let limit = Limits::default().max_body_bytes;
    let mut log = StatusLog::watch(&w.alice, w.conv)
        .await
        .with_probe(&w.probe, w.alice.id());

    // The last emoji (4 bytes) starts 2 bytes before the limit.
    let straddling = format!("{}🦀", "s".repeat(limit - 2));
    assert_eq!(straddling.len(), limit + 2);
    match w.alice.client.send(w.conv, straddling).await {
        Err(ClientError::Action(ActionError::InvalidBody { code, .. })) => {
            assert_eq!(code, ErrorCode::TooLarge)
        }
        other => panic!("a body over the limit must be refused whole, got {other:?}"),
    }
    // The same emoji ending exactly at the limit fits.
    let fitting = format!("{}🦀", "s".repeat(limit - 4));
    let valid = [
        fitting,
        "👨\u{200D}👩\u{200D}👧\u{200D}👦 family".to_string(),
        "cafe\u{301} vs caf\u{e9}".to_string(),
        "abc \u{5e9}\u{5dc}\u{5d5}\u{5dd} def \u{645}\u{631}\u{62d}\u{628}\u{627} 123 \u{200F}!"
            .to_string(),
        " \t leading and trailing spaces, \r\n kept \u{FEFF}".to_string(),
    ];
    let mut sent: Vec<MessageId> = Vec::new();
    for body in &valid {
        sent.push(w.alice.client.send(w.conv, body.clone()).await.unwrap());
    }

    // U+0000: refused at send by the client ...
    match w.alice.client.send(w.conv, "nul\0inside").await {
        Err(ClientError::Action(ActionError::InvalidBody { code, .. })) => {
            assert_eq!(code, ErrorCode::InvalidBody)
        }
        other => panic!("U+0000 must be refused at send, got {other:?}"),
    }
    // ... and by the server, with the same code, for a raw frame.
    let mut raw = RawWs::login(&w.server.url(), "alice").await;
    let nul_id = MessageId::new();
    raw.send_message(nul_id, w.conv, "nul\0inside").await;
    loop {
        match raw.recv().await {
            ServerFrame::Refused { id, refusal } if id == nul_id => {
                assert_eq!(refusal.code, ErrorCode::InvalidBody);
                assert!(!refusal.retryable);
                break;
            }
            ServerFrame::Ack { id, .. } if id == nul_id => panic!("the server stored U+0000"),
            _ => {}
        }
    }

    log.wait_all(&sent, Status::Success).await;
    let server = w.probe.messages(w.conv);
    assert_eq!(ids_of(&server), sent, "nothing else was stored");
    let at_bob = w.bob.confirmed_timeline(w.conv, sent.len()).await;
    assert_eq!(ids(&at_bob), sent);
    for ((body, stored), received) in valid.iter().zip(&server).zip(&at_bob) {
        assert_eq!(stored.body.as_bytes(), body.as_bytes(), "server bytes");
        assert_eq!(received.body.as_bytes(), body.as_bytes(), "bob's bytes");
    }
    for item in w.alice.timeline(w.conv).await {
        let body = &valid[sent.iter().position(|id| *id == item.id).unwrap()];
        assert_eq!(item.body.as_bytes(), body.as_bytes(), "alice's bytes");
    }
}

fn ids_of(messages: &[chatsync_protocol::WireMessage]) -> Vec<MessageId> {
    messages.iter().map(|m| m.id).collect()
}
