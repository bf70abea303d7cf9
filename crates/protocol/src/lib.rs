//! The chatsync wire protocol, version [`PROTOCOL_VERSION`].
//!
//! Frames are JSON objects carried one per WebSocket text message. Every frame
//! has a `"type"` field naming its variant; the rest of the fields are those of
//! the variant. [`ClientFrame`] goes from client to server, [`ServerFrame`]
//! from server to client. Encoding and decoding are pure functions
//! ([`encode`], [`decode_client`], [`decode_server`]) so that the connection
//! code only moves frames and the handlers only see typed values.
//!
//! `PROTOCOL.md` at the repository root is the normative description.

mod action;
mod codec;
mod frames;
mod ids;
mod limits;

pub use action::{fold, ActionKind, ActionRef, FoldEvent, Folded, MAX_REACTION_BYTES};
pub use codec::{decode_client, decode_server, encode, DecodeError};
pub use frames::{
    ClientFrame, ConversationInfo, ErrorCode, MemberMarks, OthersMarks, Refusal, ServerFrame,
    WireMessage,
};
pub use ids::{ConversationId, DeviceId, MessageId, Seq, UserId};
pub use limits::{
    check_body, check_conversation, check_send, Limits, FRAME_OVERHEAD_BYTES, JSON_ESCAPE_FACTOR,
    MAX_PASSWORD_BYTES, MAX_USERNAME_BYTES,
};

/// Version of the protocol spoken by this crate. A server refuses a `hello`
/// carrying another version with [`ErrorCode::UnsupportedVersion`].
pub const PROTOCOL_VERSION: u32 = 1;

/// Path of the WebSocket endpoint on a chatsync server.
pub const WS_PATH: &str = "/v1/ws";
