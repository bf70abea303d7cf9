//! Property tests: every frame, client or server, survives encode → decode
//! unchanged, whatever its strings (any Unicode, control characters, quotes,
//! backslashes) and numbers (the full u64 range). The cargo-fuzz targets in
//! `fuzz/` check the other direction (arbitrary text → decode → encode).
#![allow(clippy::unwrap_used, missing_docs)]

use chatsync_protocol::{
    decode_client, decode_server, encode, ActionKind, ActionRef, ClientFrame, ConversationId,
    ConversationInfo, DeviceId, ErrorCode, Limits, MemberMarks, MessageId, OthersMarks, Refusal,
    Seq, ServerFrame, UserId, WireMessage,
};
use proptest::prelude::*;
use uuid::Uuid;

fn uuid() -> impl Strategy<Value = Uuid> {
    any::<u128>().prop_map(Uuid::from_u128)
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z\"\\\\\u{0}-\u{1f}é🍜\u{200d}\u{202e}]{0,12}",
    ]
}

fn seq() -> impl Strategy<Value = Seq> {
    any::<u64>().prop_map(Seq)
}

fn action() -> impl Strategy<Value = ActionRef> {
    (
        uuid(),
        prop_oneof![
            Just(ActionKind::Edit),
            Just(ActionKind::Delete),
            any::<bool>().prop_map(|on| ActionKind::React { on }),
        ],
    )
        .prop_map(|(t, kind)| ActionRef {
            target: MessageId(t),
            kind,
        })
}

fn client_frame() -> impl Strategy<Value = ClientFrame> {
    prop_oneof![
        (any::<u64>(), text(), text()).prop_map(|(req, username, password)| {
            ClientFrame::Register {
                req,
                username,
                password,
            }
        }),
        (any::<u64>(), text(), text(), text()).prop_map(|(req, username, password, d)| {
            ClientFrame::Login {
                req,
                username,
                password,
                device_name: d,
            }
        }),
        (any::<u32>(), text()).prop_map(|(version, token)| ClientFrame::Hello { version, token }),
        (uuid(), uuid(), text(), proptest::option::of(action())).prop_map(|(i, c, body, a)| {
            ClientFrame::Send {
                id: MessageId(i),
                conversation: ConversationId(c),
                body,
                action: a,
            }
        }),
        (uuid(), seq()).prop_map(|(c, seq)| ClientFrame::Read {
            conversation: ConversationId(c),
            seq
        }),
        (uuid(), seq()).prop_map(|(c, seq)| ClientFrame::Received {
            conversation: ConversationId(c),
            seq
        }),
        (any::<u64>(), uuid(), seq(), any::<u32>()).prop_map(|(req, c, after, limit)| {
            ClientFrame::Sync {
                req,
                conversation: ConversationId(c),
                after,
                limit,
            }
        }),
        (
            any::<u64>(),
            text(),
            proptest::collection::vec(text(), 0..4)
        )
            .prop_map(|(req, title, members)| ClientFrame::CreateConversation {
                req,
                title,
                members,
            }),
        any::<u64>().prop_map(|req| ClientFrame::ListConversations { req }),
        any::<u64>().prop_map(|nonce| ClientFrame::Ping { nonce }),
        any::<u64>().prop_map(|req| ClientFrame::Logout { req }),
    ]
}

fn wire_message() -> impl Strategy<Value = WireMessage> {
    (
        (uuid(), uuid(), seq(), uuid()),
        (text(), text(), any::<i64>(), proptest::option::of(action())),
    )
        .prop_map(
            |((id, c, seq, sender), (sender_name, body, server_ts, action))| WireMessage {
                id: MessageId(id),
                conversation: ConversationId(c),
                seq,
                sender: UserId(sender),
                sender_name,
                body,
                server_ts,
                action,
            },
        )
}

fn marks() -> impl Strategy<Value = MemberMarks> {
    (uuid(), text(), seq(), seq()).prop_map(|(u, username, delivered, read)| MemberMarks {
        user: UserId(u),
        username,
        delivered,
        read,
    })
}

fn info() -> impl Strategy<Value = ConversationInfo> {
    (
        uuid(),
        text(),
        proptest::collection::vec(marks(), 0..3),
        seq(),
    )
        .prop_map(|(id, title, members, last_seq)| ConversationInfo {
            id: ConversationId(id),
            title,
            members,
            last_seq,
        })
}

fn refusal() -> impl Strategy<Value = Refusal> {
    let codes = [
        ErrorCode::Malformed,
        ErrorCode::FrameTooLarge,
        ErrorCode::Unauthorized,
        ErrorCode::NotMember,
        ErrorCode::RateLimited,
        ErrorCode::IdConflict,
        ErrorCode::Gone,
        ErrorCode::Internal,
    ];
    (
        proptest::sample::select(codes.to_vec()),
        text(),
        any::<bool>(),
        proptest::option::of(any::<u64>()),
    )
        .prop_map(|(code, message, retryable, retry_after_ms)| Refusal {
            code,
            message,
            retryable,
            retry_after_ms,
        })
}

fn limits() -> impl Strategy<Value = Limits> {
    (
        (any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>()),
        (
            proptest::option::of(any::<u64>()),
            proptest::option::of(any::<u32>()),
            proptest::option::of(any::<u64>()),
        ),
    )
        .prop_map(|((body, rate, burst, page), (idle, conns, ttl))| Limits {
            max_body_bytes: body as usize,
            rate_per_sec: rate,
            rate_burst: burst,
            max_page: page,
            idle_timeout_ms: idle,
            max_connections_per_user: conns,
            session_ttl_secs: ttl,
            ..Limits::default()
        })
}

fn server_frame() -> impl Strategy<Value = ServerFrame> {
    prop_oneof![
        (any::<u64>(), uuid()).prop_map(|(req, u)| ServerFrame::Registered {
            req,
            user: UserId(u)
        }),
        (any::<u64>(), uuid(), uuid(), text()).prop_map(|(req, u, d, token)| {
            ServerFrame::LoggedIn {
                req,
                user: UserId(u),
                device: DeviceId(d),
                token,
            }
        }),
        (any::<u32>(), uuid(), text(), uuid(), limits(), any::<i64>()).prop_map(
            |(version, u, username, d, limits, server_time)| ServerFrame::Welcome {
                version,
                user: UserId(u),
                username,
                device: DeviceId(d),
                limits,
                server_time,
            }
        ),
        (uuid(), uuid(), seq(), any::<i64>()).prop_map(|(i, c, seq, server_ts)| {
            ServerFrame::Ack {
                id: MessageId(i),
                conversation: ConversationId(c),
                seq,
                server_ts,
            }
        }),
        (uuid(), refusal()).prop_map(|(i, refusal)| ServerFrame::Refused {
            id: MessageId(i),
            refusal
        }),
        wire_message().prop_map(|message| ServerFrame::Message { message }),
        (uuid(), marks(), proptest::option::of((seq(), seq()))).prop_map(|(c, marks, others)| {
            ServerFrame::Marks {
                conversation: ConversationId(c),
                marks,
                others: others.map(|(delivered, read)| OthersMarks { delivered, read }),
            }
        }),
        (
            any::<u64>(),
            uuid(),
            proptest::collection::vec(wire_message(), 0..3),
            proptest::collection::vec(marks(), 0..3),
            seq()
        )
            .prop_map(|(req, c, messages, members, last_seq)| ServerFrame::Batch {
                req,
                conversation: ConversationId(c),
                messages,
                members,
                last_seq,
            }),
        (proptest::option::of(any::<u64>()), info())
            .prop_map(|(req, conversation)| ServerFrame::Conversation { req, conversation }),
        (any::<u64>(), proptest::collection::vec(info(), 0..3))
            .prop_map(|(req, conversations)| ServerFrame::Conversations { req, conversations }),
        any::<u64>().prop_map(|nonce| ServerFrame::Pong { nonce }),
        any::<u64>().prop_map(|req| ServerFrame::LoggedOut { req }),
        (proptest::option::of(any::<u64>()), refusal())
            .prop_map(|(req, refusal)| ServerFrame::Error { req, refusal }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn client_frames_round_trip(frame in client_frame()) {
        let text = encode(&frame);
        prop_assert_eq!(decode_client(&text).unwrap(), frame);
    }

    #[test]
    fn server_frames_round_trip(frame in server_frame()) {
        let text = encode(&frame);
        prop_assert_eq!(decode_server(&text).unwrap(), frame);
    }

    /// A client frame never decodes as a server frame: the two directions
    /// share no `type` tag.
    #[test]
    fn client_frames_are_not_server_frames(frame in client_frame()) {
        prop_assert!(decode_server(&encode(&frame)).is_err());
    }
}

/// `others` in `marks` is optional both ways: a frame from a server older
/// than the field decodes with `others: None`, `None` is not written, and
/// unknown fields inside `others` are ignored like anywhere in a server
/// frame.
#[test]
fn marks_others_is_optional_and_open() {
    let user = "01a23ceb-fa88-73ca-960f-9dabe3160671";
    let conv = "01a23ceb-fb02-74cf-91e3-18cbc57133b4";
    let old = format!(
        r#"{{"type":"marks","conversation":"{conv}","marks":{{"user":"{user}","username":"bob","delivered":2}}}}"#
    );
    let ServerFrame::Marks { marks, others, .. } = decode_server(&old).unwrap() else {
        panic!("not a marks frame");
    };
    assert_eq!(
        (marks.delivered, marks.read, others),
        (Seq(2), Seq(0), None)
    );
    let text = encode(&ServerFrame::Marks {
        conversation: ConversationId(Uuid::parse_str(conv).unwrap()),
        marks: marks.clone(),
        others: None,
    });
    assert!(!text.contains("others"), "{text}");

    let new = format!(
        r#"{{"type":"marks","conversation":"{conv}","marks":{{"user":"{user}","username":"bob","delivered":2,"read":1}},"others":{{"delivered":5,"read":3,"later":true}}}}"#
    );
    let ServerFrame::Marks { others, .. } = decode_server(&new).unwrap() else {
        panic!("not a marks frame");
    };
    assert_eq!(
        others,
        Some(OthersMarks {
            delivered: Seq(5),
            read: Seq(3)
        })
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The codec decodes `send` and `ack` by a fast path; it must give what
    /// serde's general decoding of the enums gives, for every frame and
    /// for the same text cut short or with a byte changed.
    #[test]
    fn fast_paths_agree_with_the_general_decoder(
        frame in client_frame(),
        ack in (uuid(), uuid(), seq(), any::<i64>()),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let ack = ServerFrame::Ack {
            id: MessageId(ack.0),
            conversation: ConversationId(ack.1),
            seq: ack.2,
            server_ts: ack.3,
        };
        for text in variants(&encode(&frame), cut, flip, byte) {
            let general = serde_json::from_str::<ClientFrame>(&text).ok();
            prop_assert_eq!(decode_client(&text).ok(), general, "{}", text);
        }
        for text in variants(&encode(&ack), cut, flip, byte) {
            let general = serde_json::from_str::<ServerFrame>(&text).ok();
            prop_assert_eq!(decode_server(&text).ok(), general, "{}", text);
        }
    }
}

/// The text itself, cut short at some char boundary, and with one byte
/// replaced by an ASCII one (kept valid UTF-8).
fn variants(
    text: &str,
    cut: prop::sample::Index,
    flip: prop::sample::Index,
    byte: u8,
) -> Vec<String> {
    let mut out = vec![text.to_string()];
    let at = cut.index(text.len() + 1);
    if text.is_char_boundary(at) {
        out.push(text[..at].to_string());
    }
    let i = flip.index(text.len().max(1));
    let mut bytes = text.as_bytes().to_vec();
    if i < bytes.len() && bytes[i].is_ascii() {
        bytes[i] = byte & 0x7f;
        if let Ok(s) = String::from_utf8(bytes) {
            out.push(s);
        }
    }
    out
}
