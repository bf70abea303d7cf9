//! Hostile clients (issue 5, §5) against a real server over real sockets.
//!
//! Each test has a normal pair of users (alice and bob, one conversation,
//! a few messages) whose history is recorded before the attack and checked
//! after it: every attack must get a clear error or a disconnection, must
//! not disturb anyone else, and must not lose or change anything stored.
//! Some attacks cannot be made with a WebSocket library (invalid UTF-8 in a
//! text message, a frame header announcing terabytes, a million frames
//! written in one go): those speak raw RFC 6455 over a `TcpStream`.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use base64::Engine;
use chatsync_protocol::{
    encode, ActionKind, ActionRef, ClientFrame, ConversationId, ErrorCode, MessageId, Seq,
    ServerFrame, UserId, WS_PATH,
};
use common::{account, device, error_code, start, start_with, Client, PASSWORD};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// ---------------------------------------------------------------------------
// The normal users and their history.

/// One stored entry as a member reads it back: (seq, id, sender, body,
/// is an action).
type Entry = (Seq, MessageId, UserId, String, bool);

/// Alice and bob, a conversation between them with three messages from
/// each, everything delivered; bob has seen every push.
struct Normal {
    alice: Client,
    bob: Client,
    conv: ConversationId,
    history: Vec<Entry>,
}

async fn normal(addr: SocketAddr) -> Normal {
    let mut alice = account(addr, "alice").await;
    let mut bob = account(addr, "bob").await;
    let conv = alice.create("normal", &["bob"]).await;
    assert!(matches!(
        bob.recv().await,
        ServerFrame::Conversation { req: None, .. }
    ));
    for i in 0..3 {
        acked(
            &mut alice,
            message(MessageId::new(), conv, &format!("alice {i}")),
        )
        .await;
        pushed(&mut bob).await;
        acked(
            &mut bob,
            message(MessageId::new(), conv, &format!("bob {i}")),
        )
        .await;
        pushed(&mut alice).await;
    }
    let history = history(&mut alice, conv).await;
    assert_eq!(history.len(), 6);
    Normal {
        alice,
        bob,
        conv,
        history,
    }
}

impl Normal {
    /// Nobody else was affected: both users still get answers, a new
    /// message still goes through to the other, and the history is what it
    /// was plus that message, as both read it.
    async fn still_intact(&mut self) {
        let id = MessageId::new();
        let seq = acked(&mut self.alice, message(id, self.conv, "still here")).await;
        assert_eq!(seq, Seq(self.history.len() as u64 + 1));
        let push = pushed(&mut self.bob).await;
        assert_eq!((push.id, push.seq), (id, seq));
        let mut want = self.history.clone();
        want.push((seq, id, self.alice.user, "still here".into(), false));
        assert_eq!(history(&mut self.alice, self.conv).await, want);
        assert_eq!(history(&mut self.bob, self.conv).await, want);
        self.history = want;
    }
}

fn message(id: MessageId, conversation: ConversationId, body: &str) -> ClientFrame {
    ClientFrame::Send {
        id,
        conversation,
        body: body.into(),
        action: None,
    }
}

fn action(
    conversation: ConversationId,
    target: MessageId,
    kind: ActionKind,
    body: &str,
) -> ClientFrame {
    ClientFrame::Send {
        id: MessageId::new(),
        conversation,
        body: body.into(),
        action: Some(ActionRef { target, kind }),
    }
}

/// Sends a message and returns the seq of its ack.
async fn acked(c: &mut Client, frame: ClientFrame) -> Seq {
    c.send(&frame).await;
    match c.recv().await {
        ServerFrame::Ack { seq, .. } => seq,
        other => panic!("expected an ack, got {other:?}"),
    }
}

/// The next `message` push, skipping marks.
async fn pushed(c: &mut Client) -> chatsync_protocol::WireMessage {
    loop {
        match c.recv().await {
            ServerFrame::Message { message } => return message,
            ServerFrame::Marks { .. } => continue,
            other => panic!("expected a message push, got {other:?}"),
        }
    }
}

/// The whole conversation, paged with `sync`.
async fn history(c: &mut Client, conversation: ConversationId) -> Vec<Entry> {
    let mut out = Vec::new();
    loop {
        let req = c.req();
        let after = Seq(out.len() as u64);
        c.send(&ClientFrame::Sync {
            req,
            conversation,
            after,
            limit: 500,
        })
        .await;
        let (messages, last_seq) = loop {
            match c.recv().await {
                ServerFrame::Batch {
                    req: r,
                    messages,
                    last_seq,
                    ..
                } if r == req => break (messages, last_seq),
                ServerFrame::Message { .. } | ServerFrame::Marks { .. } => continue,
                other => panic!("expected a batch, got {other:?}"),
            }
        };
        for m in messages {
            out.push((m.seq, m.id, m.sender, m.body, m.action.is_some()));
        }
        if out.len() as u64 >= last_seq.0 {
            return out;
        }
    }
}

/// The refusal code of the next frame, skipping pushes.
async fn refusal(c: &mut Client) -> ErrorCode {
    loop {
        let frame = c.recv().await;
        match &frame {
            ServerFrame::Message { .. } | ServerFrame::Marks { .. } => continue,
            _ => {
                return error_code(&frame)
                    .unwrap_or_else(|| panic!("expected a refusal, got {frame:?}"))
            }
        }
    }
}

/// A hello with `token` on a new connection: the error code and close code
/// of a refusal, or `None` for a welcome.
async fn try_hello(addr: SocketAddr, token: &str) -> Option<(ErrorCode, Option<u16>)> {
    let mut c = Client::connect(addr).await;
    match c.hello(token).await {
        ServerFrame::Welcome { .. } => None,
        frame => {
            let code = error_code(&frame).unwrap_or_else(|| panic!("{frame:?}"));
            let (_, close) = c.recv_until_closed().await;
            Some((code, close))
        }
    }
}

// ---------------------------------------------------------------------------
// Raw RFC 6455, for what a WebSocket library refuses to send.

/// A raw TCP connection that did the WebSocket upgrade by hand.
struct Raw {
    tcp: TcpStream,
    buf: Vec<u8>,
}

const UPGRADE: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// A client frame: FIN set (unless `more`), masked as RFC 6455 requires.
fn ws_frame(opcode: u8, payload: &[u8], more: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(if more { 0 } else { 0x80 } | opcode);
    ws_len(&mut out, payload.len() as u64);
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// The length bytes of a masked frame header.
fn ws_len(out: &mut Vec<u8>, len: u64) {
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xffff {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Raw {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let request = format!("GET {WS_PATH} HTTP/1.1\r\nHost: {addr}\r\n{UPGRADE}");
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Raw {
            tcp,
            buf: Vec::new(),
        };
        let head = loop {
            if let Some(end) = raw.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break raw.buf.drain(..end + 4).collect::<Vec<u8>>();
            }
            assert!(raw.fill().await, "closed during the upgrade");
        };
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
        raw
    }

    /// Reads more bytes; false at end of stream or on an error.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout(common::TIMEOUT, self.tcp.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => false,
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(_) => panic!("the server neither answered nor closed"),
        }
    }

    /// The next server frame as (opcode, payload); `None` once the
    /// connection ended.
    async fn next(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if self.buf.len() >= 2 {
                let opcode = self.buf[0] & 0x0f;
                let (len, at) = match self.buf[1] & 0x7f {
                    126 if self.buf.len() >= 4 => {
                        (u64::from(u16::from_be_bytes([self.buf[2], self.buf[3]])), 4)
                    }
                    127 if self.buf.len() >= 10 => {
                        (u64::from_be_bytes(self.buf[2..10].try_into().unwrap()), 10)
                    }
                    126 | 127 => (u64::MAX, 0),
                    n => (u64::from(n), 2),
                };
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                if at > 0 && self.buf.len() >= at + len {
                    let payload = self.buf[at..at + len].to_vec();
                    self.buf.drain(..at + len);
                    return Some((opcode, payload));
                }
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// Every text frame decoded, until the server closes: (frames, close
    /// code if a close frame came).
    async fn until_closed(&mut self) -> (Vec<ServerFrame>, Option<u16>) {
        let mut frames = Vec::new();
        while let Some((opcode, payload)) = self.next().await {
            match opcode {
                0x1 => frames.push(
                    chatsync_protocol::decode_server(std::str::from_utf8(&payload).unwrap())
                        .unwrap(),
                ),
                0x8 => {
                    let code =
                        (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    return (frames, code);
                }
                _ => {}
            }
        }
        (frames, None)
    }

    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.tcp.write_all(bytes).await
    }
}

// ---------------------------------------------------------------------------
// Authentication.

#[tokio::test]
async fn missing_wrong_and_forged_tokens_get_unauthorized() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut n = normal(server.addr).await;

    // No hello at all: every request is refused, nothing is stored.
    let mut anon = Client::connect(server.addr).await;
    anon.send(&message(MessageId::new(), n.conv, "anonymous"))
        .await;
    assert_eq!(refusal(&mut anon).await, ErrorCode::NotAuthenticated);
    for frame in [
        ClientFrame::Received {
            conversation: n.conv,
            seq: Seq(100),
        },
        ClientFrame::Read {
            conversation: n.conv,
            seq: Seq(100),
        },
        ClientFrame::Logout { req: 7 },
    ] {
        anon.send(&frame).await;
        assert_eq!(refusal(&mut anon).await, ErrorCode::NotAuthenticated);
    }

    // An empty token, a random token of the right shape, a real token with
    // one character changed, a token's hash instead of the token, and an
    // oversized one.
    let mut altered = n.alice.token.clone().into_bytes();
    altered[10] = if altered[10] == b'A' { b'B' } else { b'A' };
    let random = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 32]);
    let hashed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(chatsync_server::auth::token_hash(&n.alice.token));
    for token in [
        String::new(),
        random,
        String::from_utf8(altered).unwrap(),
        hashed,
        "x".repeat(10_000),
    ] {
        assert_eq!(
            try_hello(server.addr, &token).await,
            Some((ErrorCode::Unauthorized, Some(1008))),
            "token {token:.50}"
        );
    }
    n.still_intact().await;
    // bob's marks did not move for the anonymous reports.
    let marks = list_marks(&mut n.alice, n.conv).await;
    assert!(marks.iter().all(|m| m.delivered.0 <= 7));
    server.stop().await;
}

async fn list_marks(c: &mut Client, conv: ConversationId) -> Vec<chatsync_protocol::MemberMarks> {
    let req = c.req();
    c.send(&ClientFrame::ListConversations { req }).await;
    loop {
        match c.recv().await {
            ServerFrame::Conversations { conversations, .. } => {
                return conversations
                    .into_iter()
                    .find(|i| i.id == conv)
                    .unwrap()
                    .members
            }
            ServerFrame::Message { .. } | ServerFrame::Marks { .. } => continue,
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn an_expired_token_is_unauthorized() {
    let dir = tempfile::tempdir().unwrap();
    let ttl = Duration::from_millis(1500);
    let server = start_with(dir.path(), |c| c.session_ttl = ttl).await;
    let mut n = normal(server.addr).await;
    // Logged in before the wait: still valid now, expired after it.
    let mut carol = Client::connect(server.addr).await;
    carol.register("carol").await;
    let token = carol.login("carol").await;
    match carol.hello(&token).await {
        ServerFrame::Welcome { limits, .. } => assert_eq!(limits.session_ttl_secs, Some(1)),
        other => panic!("{other:?}"),
    }
    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    assert_eq!(
        try_hello(server.addr, &token).await,
        Some((ErrorCode::Unauthorized, Some(1008)))
    );
    // A fresh login works again.
    let fresh = device(server.addr, "carol").await;
    assert_ne!(fresh.token, token);
    // The normal users' sessions are expired too (same lifetime) but their
    // open connections stay authenticated: authentication is per
    // connection.
    n.still_intact().await;
    server.stop().await;
}

#[tokio::test]
async fn logout_revokes_the_session_and_only_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut n = normal(server.addr).await;
    // Alice's phone: two connections on one session (two tabs); her laptop
    // is another session.
    let mut phone = device(server.addr, "alice").await;
    let mut tab = Client::connect(server.addr).await;
    assert!(matches!(
        tab.hello(&phone.token).await,
        ServerFrame::Welcome { .. }
    ));
    let mut laptop = device(server.addr, "alice").await;

    // Pipelined after the logout: never read.
    let req = phone.req();
    phone.send(&ClientFrame::Logout { req }).await;
    let late = MessageId::new();
    phone.send(&message(late, n.conv, "after logout")).await;
    let (frames, code) = phone.recv_until_closed().await;
    assert_eq!(frames, vec![ServerFrame::LoggedOut { req }]);
    assert_eq!(code, Some(1000));
    // The other connection of the same session is dropped at once.
    let (_, code) = tab.recv_until_closed().await;
    assert_eq!(code, None, "dropped without a close frame");
    // The token is dead; the other sessions are not.
    assert_eq!(
        try_hello(server.addr, &phone.token).await,
        Some((ErrorCode::Unauthorized, Some(1008)))
    );
    laptop.roundtrip().await;
    assert!(try_hello(server.addr, &laptop.token).await.is_none());
    n.still_intact().await;
    assert!(
        n.history.iter().all(|e| e.1 != late),
        "a frame after logout was handled"
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------
// Authorization.

#[tokio::test]
async fn a_non_member_can_neither_write_nor_read_nor_mark() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut n = normal(server.addr).await;
    let target = n.history[0].1;
    let mut mallory = account(server.addr, "mallory").await;
    let own = mallory.create("mallory's", &[]).await;

    let attempts = [
        message(MessageId::new(), n.conv, "let me in"),
        action(n.conv, target, ActionKind::React { on: true }, "👍"),
        action(n.conv, target, ActionKind::Edit, "rewritten"),
        action(n.conv, target, ActionKind::Delete, ""),
    ];
    for frame in attempts {
        mallory.send(&frame).await;
        assert_eq!(refusal(&mut mallory).await, ErrorCode::NotMember);
    }
    // Through her own conversation, naming a target of the other one.
    for frame in [
        action(own, target, ActionKind::React { on: true }, "👍"),
        action(own, target, ActionKind::Delete, ""),
    ] {
        mallory.send(&frame).await;
        assert_eq!(refusal(&mut mallory).await, ErrorCode::NotFound);
    }
    // Reading and catching up.
    for after in [Seq::ZERO, Seq(3)] {
        let req = mallory.req();
        mallory
            .send(&ClientFrame::Sync {
                req,
                conversation: n.conv,
                after,
                limit: 500,
            })
            .await;
        match mallory.recv().await {
            ServerFrame::Error { req: r, refusal } => {
                assert_eq!((r, refusal.code), (Some(req), ErrorCode::NotMember))
            }
            other => panic!("{other:?}"),
        }
    }
    // Marks.
    for frame in [
        ClientFrame::Received {
            conversation: n.conv,
            seq: Seq(6),
        },
        ClientFrame::Read {
            conversation: n.conv,
            seq: Seq(6),
        },
    ] {
        mallory.send(&frame).await;
        assert_eq!(refusal(&mut mallory).await, ErrorCode::NotMember);
    }
    // She is not in the listing and got no push of it.
    let req = mallory.req();
    mallory.send(&ClientFrame::ListConversations { req }).await;
    match mallory.recv().await {
        ServerFrame::Conversations { conversations, .. } => {
            assert_eq!(conversations.len(), 1);
            assert_eq!(conversations[0].id, own);
        }
        other => panic!("{other:?}"),
    }
    n.still_intact().await;
    mallory.expect_silence(Duration::from_millis(200)).await;
    // Nothing she sent moved anyone's marks or reached anyone.
    let marks = list_marks(&mut n.bob, n.conv).await;
    assert!(marks.iter().all(|m| m.read == Seq::ZERO));
    server.stop().await;
}

#[tokio::test]
async fn someone_elses_message_cannot_be_edited_deleted_or_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut n = normal(server.addr).await;
    let (alices, alices_body) = (n.history[0].1, n.history[0].3.clone());
    for kind in [ActionKind::Edit, ActionKind::Delete] {
        let body = if kind == ActionKind::Edit {
            "bob was here"
        } else {
            ""
        };
        n.bob.send(&action(n.conv, alices, kind, body)).await;
        assert_eq!(refusal(&mut n.bob).await, ErrorCode::NotAuthor);
    }
    // From bob's second device too.
    let mut bob2 = device(server.addr, "bob").await;
    bob2.send(&action(n.conv, alices, ActionKind::Delete, ""))
        .await;
    assert_eq!(refusal(&mut bob2).await, ErrorCode::NotAuthor);
    // Reusing alice's id as his own message (to replace it on devices that
    // key by id) is refused for good.
    n.bob.send(&message(alices, n.conv, "impostor")).await;
    assert_eq!(refusal(&mut n.bob).await, ErrorCode::IdConflict);
    n.still_intact().await;
    assert_eq!(n.history[0].3, alices_body);
    server.stop().await;
}

#[tokio::test]
async fn a_forged_sender_is_malformed_and_the_sender_is_always_the_author() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut n = normal(server.addr).await;
    let id = MessageId::new();
    let forged = [
        format!(
            r#"{{"type":"send","id":"{id}","conversation":"{}","body":"from bob","sender":"{}"}}"#,
            n.conv, n.bob.user
        ),
        format!(
            r#"{{"type":"send","id":"{id}","conversation":"{}","body":"from bob","sender_name":"bob"}}"#,
            n.conv
        ),
        format!(
            r#"{{"type":"send","id":"{id}","conversation":"{}","body":"x","action":{{"target":"{}","action":"edit","sender":"{}"}}}}"#,
            n.conv, n.history[1].1, n.bob.user
        ),
        format!(
            r#"{{"type":"received","conversation":"{}","seq":6,"user":"{}"}}"#,
            n.conv, n.bob.user
        ),
    ];
    for text in forged {
        n.alice.send_text(&text).await;
        match n.alice.recv().await {
            ServerFrame::Error { req, refusal } => {
                assert_eq!((req, refusal.code), (None, ErrorCode::Malformed), "{text}")
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    n.bob.expect_silence(Duration::from_millis(200)).await;
    // Whatever the frame, the stored sender is the authenticated account.
    n.still_intact().await;
    let last = n.history.last().unwrap();
    assert_eq!(last.2, n.alice.user);
    assert!(n.history.iter().all(|e| e.1 != id));
    server.stop().await;
}

// ---------------------------------------------------------------------------
// Garbage.

#[tokio::test]
async fn malformed_json_and_unknown_frames_get_malformed() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut n = normal(server.addr).await;
    let conv = n.conv;
    // Nesting far beyond the decoder's recursion limit, within the frame
    // limit.
    let deep = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
    let deep_object = format!(
        r#"{}"type":"ping","nonce":1{}"#,
        "{\"a\":".repeat(5_000) + "{",
        "}".repeat(5_001)
    );
    let garbage = [
        String::new(),
        " ".into(),
        "null".into(),
        "[]".into(),
        "\"send\"".into(),
        "42".into(),
        "\u{feff}{\"type\":\"ping\",\"nonce\":1}".into(),
        "{\"type\":\"ping\",\"nonce\":1}{\"type\":\"ping\",\"nonce\":2}".into(),
        "{\"type\":\"ping\",\"nonce\":1,\"type\":\"ping\"}".into(),
        "{\"type\":\"ping\",\"nonce\":1,\"nonce\":2}".into(),
        "{\"type\":\"PING\",\"nonce\":1}".into(),
        "{\"type\":1,\"nonce\":1}".into(),
        "{\"type\":\"logout\"}".into(),
        "{\"type\":\"admin\",\"req\":1}".into(),
        "{\"type\":\"ping\",\"nonce\":-1}".into(),
        "{\"type\":\"ping\",\"nonce\":1e3}".into(),
        "{\"type\":\"ping\",\"nonce\":18446744073709551616}".into(),
        "{\"type\":\"ping\",\"nonce\":99999999999999999999999999999999999999}".into(),
        format!("{{\"type\":\"send\",\"id\":\"{}\",\"conversation\":\"{conv}\",\"body\":\"\\ud800\"}}", MessageId::new()),
        format!("{{\"type\":\"send\",\"id\":\"not-a-uuid\",\"conversation\":\"{conv}\",\"body\":\"x\"}}"),
        format!("{{\"type\":\"send\",\"id\":\"{}\",\"conversation\":\"{conv}\",\"body\":null}}", MessageId::new()),
        format!("{{\"type\":\"send\",\"id\":\"{}\",\"conversation\":\"{conv}\",\"body\":\"x\",\"action\":null,\"action\":null}}", MessageId::new()),
        format!("{{\"type\":\"sync\",\"req\":1,\"conversation\":\"{conv}\",\"after\":0,\"limit\":4294967296}}"),
        "{\"type\":\"ping\",\"nonce\":1".into(),
        "\0\0\0".into(),
        deep,
        deep_object,
    ];
    for text in &garbage {
        n.alice.send_text(text).await;
        match n.alice.recv().await {
            ServerFrame::Error { req, refusal } => {
                assert_eq!(
                    (req, refusal.code, refusal.retryable),
                    (None, ErrorCode::Malformed, false),
                    "{text:.80}"
                )
            }
            other => panic!("{text:.80}: {other:?}"),
        }
    }
    n.alice.roundtrip().await;
    n.still_intact().await;
    server.stop().await;
}

#[tokio::test]
async fn invalid_utf8_in_a_text_message_closes_only_that_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut n = normal(server.addr).await;
    for payload in [
        &b"\xff\xfe\xfd"[..],
        b"{\"type\":\"ping\",\"nonce\":1}\xc3",
        b"{\"type\":\"send\",\"body\":\"\xed\xa0\x80\"}", // an encoded surrogate
    ] {
        let mut raw = Raw::connect(server.addr).await;
        // Before authentication and after it.
        raw.write(&ws_frame(0x1, payload, false)).await.unwrap();
        let (frames, code) = raw.until_closed().await;
        assert_eq!(code, Some(1007), "{payload:?}: {frames:?}");
        assert_eq!(
            frames.iter().map(error_code).collect::<Vec<_>>(),
            vec![Some(ErrorCode::Malformed)]
        );
    }
    // Split across fragments, the invalid sequence straddling them.
    let mut raw = Raw::connect(server.addr).await;
    let mut bytes = ws_frame(0x1, b"{\"type\":\"ping\",\"nonce\":1}\xe2\x82", true);
    bytes.extend(ws_frame(0x0, b"\x28", false));
    raw.write(&bytes).await.unwrap();
    let (_, code) = raw.until_closed().await;
    assert_eq!(code, Some(1007));
    n.still_intact().await;
    server.stop().await;
}

#[tokio::test]
async fn huge_frames_are_refused_without_being_read() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut n = normal(server.addr).await;
    let mut probe = Client::connect(server.addr).await;
    let max = match probe.hello(&n.alice.token).await {
        ServerFrame::Welcome { limits, .. } => limits.max_frame_bytes,
        other => panic!("{other:?}"),
    };

    // A header announcing 1 TiB: refused from the header, before any
    // payload (none is ever sent).
    let mut raw = Raw::connect(server.addr).await;
    let mut header = vec![0x81];
    ws_len(&mut header, 1 << 40);
    header.extend_from_slice(&[1, 2, 3, 4]);
    raw.write(&header).await.unwrap();
    let (frames, code) = raw.until_closed().await;
    assert_eq!(code, Some(1009));
    assert_eq!(error_code(&frames[0]), Some(ErrorCode::FrameTooLarge));

    // Many fragments, each under the limit, together over it.
    let mut raw = Raw::connect(server.addr).await;
    let chunk = vec![b' '; max / 4];
    let mut closed = false;
    for i in 0..64 {
        let opcode = if i == 0 { 0x1 } else { 0x0 };
        if raw.write(&ws_frame(opcode, &chunk, true)).await.is_err() {
            closed = true;
            break;
        }
    }
    let (frames, code) = raw.until_closed().await;
    assert!(closed || code == Some(1009), "{code:?}");
    if let Some(first) = frames.first() {
        assert_eq!(error_code(first), Some(ErrorCode::FrameTooLarge));
    }

    // A 16 MiB binary message: the server closes while it is being
    // written.
    let mut raw = Raw::connect(server.addr).await;
    let _ = raw.write(&ws_frame(0x2, &vec![0u8; 16 << 20], false)).await;
    let (frames, code) = raw.until_closed().await;
    assert_eq!(code, Some(1009));
    assert_eq!(error_code(&frames[0]), Some(ErrorCode::FrameTooLarge));
    n.still_intact().await;
    server.stop().await;
}

// ---------------------------------------------------------------------------
// Floods.

/// Sends `count` messages from alice, each waiting for its ack and bob's
/// push; returns the latencies.
async fn latencies(n: &mut Normal, count: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let start = Instant::now();
        let id = MessageId::new();
        let seq = acked(&mut n.alice, message(id, n.conv, &format!("during {i}"))).await;
        out.push(start.elapsed());
        let push = pushed(&mut n.bob).await;
        assert_eq!(push.id, id);
        n.history
            .push((seq, id, n.alice.user, format!("during {i}"), false));
    }
    out
}

fn summary(mut l: Vec<Duration>) -> String {
    l.sort();
    format!(
        "median {:?}, max {:?} over {}",
        l[l.len() / 2],
        l[l.len() - 1],
        l.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_tiny_frames_throttle_only_their_connection() {
    const FRAMES: u64 = 1_000_000;
    // Built first: in a debug build this takes a while.
    let flood = ping_flood(FRAMES);
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut n = normal(server.addr).await;
    let before = summary(latencies(&mut n, 20).await);

    // Mallory authenticates, then writes a million pings at once.
    let token = {
        let mut c = Client::connect(server.addr).await;
        c.register("mallory").await;
        c.login("mallory").await
    };
    let mut raw = Raw::connect(server.addr).await;
    let hello = encode(&ClientFrame::Hello {
        version: chatsync_protocol::PROTOCOL_VERSION,
        token,
    });
    raw.write(&ws_frame(0x1, hello.as_bytes(), false))
        .await
        .unwrap();
    let (_, welcome) = raw.next().await.unwrap();
    assert!(String::from_utf8(welcome).unwrap().contains("welcome"));
    let (mut rd, mut wr) = raw.tcp.into_split();
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        wr.write_all(&flood).await.unwrap();
        // Then a close: the server answers everything, then closes.
        wr.write_all(&ws_frame(0x8, &1000u16.to_be_bytes(), false))
            .await
            .unwrap();
        started.elapsed()
    });
    // She does not read at first: the server must stop reading her flood
    // (backpressure), not buffer it, and serve everyone else.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = summary(latencies(&mut n, 20).await);
    let reader = tokio::spawn(async move {
        let mut total = raw.buf.len() as u64;
        let mut chunk = vec![0u8; 1 << 16];
        loop {
            match tokio::time::timeout(Duration::from_secs(120), rd.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return total,
                Ok(Ok(k)) => total += k as u64,
            }
        }
    });
    let while_draining = summary(latencies(&mut n, 50).await);
    let wrote_in = writer.await.unwrap();
    let answered = reader.await.unwrap();
    eprintln!(
        "1M pings written in {wrote_in:?}; alice's send latency before {before}, \
         while the flood was held back {during}, while it drained {while_draining}"
    );
    // Every ping was answered (a pong frame is at least 27 bytes).
    assert!(answered >= 27 * FRAMES, "{answered} bytes of answers");
    n.still_intact().await;

    // A million malformed frames: the connection is closed after 100 and
    // the rest is never processed.
    let mut raw = Raw::connect(server.addr).await;
    let bad = ws_frame(0x1, b"{", false);
    let flood: Vec<u8> = bad
        .iter()
        .copied()
        .cycle()
        .take(bad.len() * FRAMES as usize)
        .collect();
    let write = raw.write(&flood).await;
    let (frames, code) = raw.until_closed().await;
    assert!(frames.len() <= 101, "{} answers", frames.len());
    assert!(code == Some(1008) || write.is_err(), "{code:?}");
    n.still_intact().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_handshakes_are_closed_and_do_not_starve_anyone() {
    let dir = tempfile::tempdir().unwrap();
    let timeout = Duration::from_millis(800);
    let server = start_with(dir.path(), |c| c.handshake_timeout = timeout).await;
    let mut n = normal(server.addr).await;
    const EACH: usize = 100;
    let opened = Instant::now();
    let mut idle = Vec::new();
    // Connect and send nothing.
    for _ in 0..EACH {
        idle.push(TcpStream::connect(server.addr).await.unwrap());
    }
    // Start a request and never finish its headers.
    for _ in 0..EACH {
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(format!("GET {WS_PATH} HTTP/1.1\r\nHost: x\r\n").as_bytes())
            .await
            .unwrap();
        idle.push(tcp);
    }
    // Upgrade and never send hello.
    let mut upgraded = Vec::new();
    for _ in 0..EACH {
        upgraded.push(Raw::connect(server.addr).await);
    }
    // A drip-feeding client: one header byte every 100 ms, forever.
    let mut drip = TcpStream::connect(server.addr).await.unwrap();
    let dripping = tokio::spawn(async move {
        let request = format!("GET {WS_PATH} HTTP/1.1\r\nHost: x\r\nX-Slow: ");
        drip.write_all(request.as_bytes()).await.unwrap();
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if drip.write_all(b"a").await.is_err() {
                return;
            }
        }
    });
    // Meanwhile everyone else is served, and new clients get in.
    let during = summary(latencies(&mut n, 20).await);
    let mut carol = account(server.addr, "carol").await;
    carol.roundtrip().await;

    for mut tcp in idle {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(timeout * 4, tcp.read(&mut byte)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "a connection without an upgrade is still open after {:?}",
            opened.elapsed()
        );
    }
    for mut raw in upgraded {
        let (frames, code) = raw.until_closed().await;
        assert_eq!(error_code(&frames[0]), Some(ErrorCode::NotAuthenticated));
        assert_eq!(code, Some(1008));
    }
    tokio::time::timeout(timeout * 4, dripping)
        .await
        .expect("the drip-feeding client is still connected")
        .unwrap();
    eprintln!(
        "{} slow connections closed within {:?}; alice's send latency meanwhile {during}",
        3 * EACH + 1,
        opened.elapsed()
    );
    n.still_intact().await;
    server.stop().await;
}

// ---------------------------------------------------------------------------
// Secrets at rest and the code that handles them.

#[tokio::test]
async fn tokens_are_random_and_hashed_and_passwords_use_argon2id() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut tokens = Vec::new();
    let mut c = Client::connect(server.addr).await;
    c.register("alice").await;
    for _ in 0..4 {
        tokens.push(c.login("alice").await);
    }
    for t in &tokens {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(t)
            .unwrap();
        assert!(raw.len() * 8 >= 128, "a {}-bit token", raw.len() * 8);
    }
    let distinct: std::collections::HashSet<_> = tokens.iter().collect();
    assert_eq!(distinct.len(), tokens.len());
    server.stop().await;

    let db = rusqlite::Connection::open(dir.path().join(chatsync_server::DATABASE_FILE)).unwrap();
    let hashes: Vec<Vec<u8>> = db
        .prepare("SELECT token_hash FROM sessions")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut want: Vec<Vec<u8>> = tokens
        .iter()
        .map(|t| chatsync_server::auth::token_hash(t).to_vec())
        .collect();
    let mut got = hashes.clone();
    want.sort();
    got.sort();
    assert_eq!(
        got, want,
        "sessions store exactly the SHA-256 of each token"
    );
    let password_hash: String = db
        .query_row("SELECT password_hash FROM accounts", [], |r| r.get(0))
        .unwrap();
    assert!(password_hash.starts_with("$argon2id$"), "{password_hash}");
    drop(db);
    // No file of the data directory (database, WAL) holds a token or the
    // password in the clear.
    for file in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(file.unwrap().path()).unwrap();
        for secret in tokens.iter().map(String::as_str).chain([PASSWORD]) {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "a secret is stored in the clear"
            );
        }
    }
}

/// Every SQL statement of the server is a string literal (or a migration
/// constant) with `?N` parameters: no SQL is ever built from values. Checks
/// every call that takes SQL text in the server's sources.
#[test]
fn every_sql_statement_is_a_literal_with_parameters() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![root];
    let mut checked = 0;
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for call in [
            ".execute(",
            ".execute_batch(",
            ".prepare(",
            ".prepare_cached(",
            ".query_row(",
            ".query_map(",
            ".query(",
        ] {
            for (at, _) in text.match_indices(call) {
                let arg = text[at + call.len()..].trim_start();
                // SQL text as a literal; or a statement's parameters
                // (`params![…]`, `[]`); or the migration being applied
                // (`sql`, taken from the `MIGRATIONS` literals).
                let ok = ["\"", "r\"", "r#\"", "params![", "[]", "sql)", "MIGRATIONS["]
                    .iter()
                    .any(|p| arg.starts_with(p));
                assert!(
                    ok,
                    "{}: {call}{:.60} is not a literal statement",
                    path.display(),
                    arg
                );
                checked += 1;
            }
        }
        assert!(
            !text.contains("format!(\"SELECT")
                && !text.contains("format!(\"INSERT")
                && !text.contains("format!(\"UPDATE")
                && !text.contains("format!(\"DELETE"),
            "{}: SQL built with format!",
            path.display()
        );
    }
    assert!(checked > 30, "only {checked} statements found");
}

#[tokio::test]
async fn limits_are_configurable_and_announced() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), |c| {
        c.limits.max_body_bytes = 1000;
        c.limits.max_frame_bytes = 200_000;
        c.limits.rate_per_sec = 7;
        c.limits.rate_burst = 9;
        c.handshake_timeout = Duration::from_millis(2500);
        c.idle_timeout = Duration::from_secs(33);
        c.max_connections_per_user = 3;
        c.session_ttl = Duration::from_secs(3600);
    })
    .await;
    let mut c = Client::connect(server.addr).await;
    c.register("alice").await;
    let token = c.login("alice").await;
    match c.hello(&token).await {
        ServerFrame::Welcome { limits, .. } => {
            assert_eq!(limits.max_body_bytes, 1000);
            assert_eq!(limits.max_frame_bytes, 200_000);
            assert_eq!((limits.rate_per_sec, limits.rate_burst), (7, 9));
            assert_eq!(limits.handshake_timeout_ms, Some(2500));
            assert_eq!(limits.idle_timeout_ms, Some(33_000));
            assert_eq!(limits.max_connections_per_user, Some(3));
            assert_eq!(limits.session_ttl_secs, Some(3600));
        }
        other => panic!("{other:?}"),
    }
    server.stop().await;
}

/// A million pings, framed and masked, as one buffer.
fn ping_flood(count: u64) -> Vec<u8> {
    let mut flood = Vec::with_capacity(40 * count as usize);
    for nonce in 0..count {
        flood.extend(ws_frame(
            0x1,
            encode(&ClientFrame::Ping { nonce }).as_bytes(),
            false,
        ));
    }
    flood
}

/// Writes `flood` on `raw` and never reads: returns once the write ends,
/// with how long it took and whether the server cut it off.
async fn write_without_reading(raw: Raw, flood: Vec<u8>) -> (Duration, bool) {
    let started = Instant::now();
    let (_rd, mut wr) = raw.tcp.into_split();
    let cut = wr.write_all(&flood).await.is_err();
    (started.elapsed(), cut)
}

/// Regression: a client that writes requests but never reads the answers
/// used to stop the server's reader for good (backpressure) before its
/// handshake or idle timeout could fire, holding the connection forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_cannot_hold_its_connection() {
    let dir = tempfile::tempdir().unwrap();
    let timeout = Duration::from_secs(1);
    let server = start_with(dir.path(), |c| c.handshake_timeout = timeout).await;
    let mut n = normal(server.addr).await;
    // Before hello: cut at the handshake timeout.
    let raw = Raw::connect(server.addr).await;
    let (took, cut) = tokio::time::timeout(
        Duration::from_secs(20),
        write_without_reading(raw, ping_flood(1_000_000)),
    )
    .await
    .expect("a client that never reads still holds its connection");
    assert!(
        cut,
        "the server read a million pings without any answer read"
    );
    eprintln!("unauthenticated non-reader cut after {took:?}");
    n.still_intact().await;
    server.stop().await;

    // After hello: cut once its answers have not moved for the idle
    // timeout.
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), |c| c.idle_timeout = timeout).await;
    let token = {
        let mut c = Client::connect(server.addr).await;
        c.register("mallory").await;
        c.login("mallory").await
    };
    let mut raw = Raw::connect(server.addr).await;
    let hello = encode(&ClientFrame::Hello {
        version: chatsync_protocol::PROTOCOL_VERSION,
        token,
    });
    raw.write(&ws_frame(0x1, hello.as_bytes(), false))
        .await
        .unwrap();
    let (opcode, payload) = raw.next().await.unwrap();
    assert_eq!(opcode, 0x1);
    assert!(String::from_utf8(payload).unwrap().contains("welcome"));
    let (took, cut) = tokio::time::timeout(
        Duration::from_secs(20),
        write_without_reading(raw, ping_flood(1_000_000)),
    )
    .await
    .expect("an authenticated client that never reads still holds its connection");
    assert!(cut);
    eprintln!("authenticated non-reader cut after {took:?}");
    server.stop().await;
}

/// Regression (found by the `server_frames` fuzz target): a connection was
/// registered for pushes when its `hello` was read, while its `welcome`
/// waited behind the answers queued before it, so a push could reach the
/// client before its `welcome` — which the reference client rejects as a
/// protocol error. Here bob's new connection pipelines a slow `login` and
/// a `hello` while alice keeps sending: the answers come first, in order.
#[tokio::test]
async fn no_push_precedes_the_welcome() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut n = normal(server.addr).await;
    for round in 0..5 {
        let mut bob = Client::connect(server.addr).await;
        // Answered one after the other: a hash each.
        const LOGINS: usize = 10;
        let first = bob.req();
        for _ in 0..LOGINS {
            let req = bob.req();
            bob.send(&ClientFrame::Login {
                req,
                username: "bob".into(),
                password: PASSWORD.into(),
                device_name: "race".into(),
            })
            .await;
        }
        bob.send(&ClientFrame::Hello {
            version: chatsync_protocol::PROTOCOL_VERSION,
            token: n.bob.token.clone(),
        })
        .await;
        // Committed once the hello is handled (this test client has Nagle
        // on: its frames may take a delayed-ACK round), while the logins
        // are still being hashed.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let id = MessageId::new();
        let body = format!("race {round}");
        let seq = acked(&mut n.alice, message(id, n.conv, &body)).await;
        n.history.push((seq, id, n.alice.user, body, false));
        pushed(&mut n.bob).await;
        for i in 1..=LOGINS as u64 {
            let frame = bob.recv().await;
            assert!(
                matches!(frame, ServerFrame::LoggedIn { req, .. } if req == first + i),
                "round {round}: {frame:?} came before logged_in"
            );
        }
        assert!(
            matches!(bob.recv().await, ServerFrame::Welcome { .. }),
            "round {round}: something came before welcome"
        );
        // A message committed after the welcome is pushed.
        let id = MessageId::new();
        let seq = acked(&mut n.alice, message(id, n.conv, "after")).await;
        n.history
            .push((seq, id, n.alice.user, "after".into(), false));
        pushed(&mut n.bob).await;
        assert_eq!(pushed(&mut bob).await.id, id);
    }
    n.still_intact().await;
    server.stop().await;
}
