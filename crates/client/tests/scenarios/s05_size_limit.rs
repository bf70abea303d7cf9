//! S5 size limit: L = the server's limit, counted in UTF-8 bytes on both
//! sides (PROTOCOL.md §11, `check_send`). A body of L−1 bytes of ASCII and
//! 4-byte emoji goes through byte-identical; L+1 bytes is refused at `send`
//! with a clear reason, never queued, never stuck; the next short message
//! goes through.

use crate::proxy::Dir;
use crate::status::{assert_delivered_path, StatusLog};
use crate::world::{ids, short_ack, World};
use chatsync_client::core::ActionError;
use chatsync_client::{ClientError, Status};
use chatsync_protocol::{ErrorCode, Limits};

/// `bytes` bytes of UTF-8: ASCII then 4-byte emoji, the last one ending
/// exactly at the end.
fn body_of(bytes: usize) -> String {
    let emoji = "😀🎉🧪🚀";
    let tail = emoji.repeat(3); // 12 emoji, 48 bytes
    let body = format!("{}{tail}", "a".repeat(bytes - tail.len()));
    assert_eq!(body.len(), bytes);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s05_size_limit_counted_in_utf8_bytes() {
    let w = World::new(short_ack()).await;
    let limit = Limits::default().max_body_bytes;
    let mut log = StatusLog::watch(&w.alice, w.conv)
        .await
        .with_probe(&w.probe, w.alice.id());

    let under = body_of(limit - 1);
    let at = body_of(limit);
    let over = body_of(limit + 1);
    let m_under = w.alice.client.send(w.conv, under.clone()).await.unwrap();
    let m_at = w.alice.client.send(w.conv, at.clone()).await.unwrap();

    let refused = w.alice.client.send(w.conv, over.clone()).await;
    match refused {
        Err(ClientError::Action(ActionError::InvalidBody { code, message })) => {
            assert_eq!(code, ErrorCode::TooLarge);
            assert!(
                message.contains(&(limit + 1).to_string()) && message.contains(&limit.to_string()),
                "the reason should give the size and the limit: {message:?}"
            );
        }
        other => panic!("L+1 bytes must be refused at send, got {other:?}"),
    }
    let next = w.alice.client.send(w.conv, "short").await.unwrap();

    let sent = [m_under, m_at, next];
    log.wait_all(&sent, Status::Success).await;
    for id in sent {
        assert_delivered_path(id, &log.history(id));
    }
    // Never queued: nothing Sending, nothing in the timeline, nothing sent.
    assert!(w.alice.client.sending().await.unwrap().is_empty());
    assert_eq!(ids(&w.alice.timeline(w.conv).await), sent);
    let big_frames = w
        .proxy
        .delivered(Dir::ToServer, "send")
        .into_iter()
        .filter(|f| f.json()["body"].as_str().unwrap().len() > limit)
        .count();
    assert_eq!(big_frames, 0, "a body over the limit reached the server");

    // Byte-identical on the server and at the recipient.
    let server = w.probe.messages(w.conv);
    assert_eq!(server.len(), 3);
    assert_eq!(server[0].body.as_bytes(), under.as_bytes());
    assert_eq!(server[1].body.as_bytes(), at.as_bytes());
    let at_bob = w.bob.confirmed_timeline(w.conv, 3).await;
    assert_eq!(ids(&at_bob), sent);
    assert_eq!(at_bob[0].body.as_bytes(), under.as_bytes());
    assert_eq!(at_bob[1].body.as_bytes(), at.as_bytes());
    assert_eq!(at_bob[2].body, "short");
}
