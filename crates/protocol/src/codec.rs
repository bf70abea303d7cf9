//! Pure encoding and decoding of frames.
//!
//! Frames are internally tagged JSON objects (`{"type": "send", …}`).
//! serde decodes such an enum by first buffering the whole object, since
//! the tag may come anywhere in it; that buffering was the largest part of
//! decoding the two frames sent once per message, `send` and `ack`. Every
//! encoder of this crate writes the tag first, so those two frames are
//! decoded straight into their fields when they begin with their tag. Any
//! other text, and any text the direct decoding refuses, goes through the
//! general decoder, which gives the same answer for every input (a
//! property test holds them to it) and the canonical error.

use crate::{ActionRef, ClientFrame, ConversationId, MessageId, Seq, ServerFrame};
use serde::{Deserialize, Serialize};

/// A frame that could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("malformed frame: {0}")]
pub struct DecodeError(#[from] serde_json::Error);

/// Encodes a frame as JSON text.
pub fn encode<F: Serialize>(frame: &F) -> String {
    // Serialising these plain data types cannot fail: no maps with non-string
    // keys, no fallible Serialize impls.
    serde_json::to_string(frame).unwrap_or_else(|e| unreachable!("frame serialisation: {e}"))
}

/// Decodes a frame sent by a client.
pub fn decode_client(text: &str) -> Result<ClientFrame, DecodeError> {
    if text.starts_with(SEND_PREFIX) {
        if let Ok(send) = serde_json::from_str::<SendFields>(text) {
            return Ok(ClientFrame::Send {
                id: send.id,
                conversation: send.conversation,
                body: send.body,
                action: send.action,
            });
        }
    }
    Ok(serde_json::from_str(text)?)
}

/// Decodes a frame sent by a server.
pub fn decode_server(text: &str) -> Result<ServerFrame, DecodeError> {
    if text.starts_with(ACK_PREFIX) {
        if let Ok(ack) = serde_json::from_str::<AckFields>(text) {
            return Ok(ServerFrame::Ack {
                id: ack.id,
                conversation: ack.conversation,
                seq: ack.seq,
                server_ts: ack.server_ts,
            });
        }
    }
    Ok(serde_json::from_str(text)?)
}

/// How [`encode`] begins a `send` frame.
const SEND_PREFIX: &str = r#"{"type":"send","#;
/// How [`encode`] begins an `ack` frame.
const ACK_PREFIX: &str = r#"{"type":"ack","#;

/// The one tag value [`SendFields`] accepts.
#[derive(Deserialize)]
enum SendTag {
    #[serde(rename = "send")]
    Send,
}

/// The one tag value [`AckFields`] accepts.
#[derive(Deserialize)]
enum AckTag {
    #[serde(rename = "ack")]
    Ack,
}

/// [`ClientFrame::Send`] with its tag as a field: the same fields, the same
/// defaults, unknown fields refused as in every client frame.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendFields {
    #[serde(rename = "type")]
    _tag: SendTag,
    id: MessageId,
    conversation: ConversationId,
    body: String,
    #[serde(default)]
    action: Option<ActionRef>,
}

/// [`ServerFrame::Ack`] with its tag as a field; unknown fields are
/// ignored, as in every server frame.
#[derive(Deserialize)]
struct AckFields {
    #[serde(rename = "type")]
    _tag: AckTag,
    id: MessageId,
    conversation: ConversationId,
    seq: Seq,
    server_ts: i64,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const ID: &str = "01a23ceb-fa88-73ca-960f-9dabe3160671";
    const CONV: &str = "01a23ceb-fb02-74cf-91e3-18cbc57133b4";

    /// The fast path and the general decoder agree: the same frame, or
    /// both an error.
    fn same_client(text: &str) {
        let general = serde_json::from_str::<ClientFrame>(text);
        match (decode_client(text), general) {
            (Ok(fast), Ok(general)) => assert_eq!(fast, general, "{text}"),
            (Err(_), Err(_)) => {}
            (fast, general) => panic!("{text}: fast {fast:?}, general {general:?}"),
        }
    }

    fn same_server(text: &str) {
        let general = serde_json::from_str::<ServerFrame>(text);
        match (decode_server(text), general) {
            (Ok(fast), Ok(general)) => assert_eq!(fast, general, "{text}"),
            (Err(_), Err(_)) => {}
            (fast, general) => panic!("{text}: fast {fast:?}, general {general:?}"),
        }
    }

    #[test]
    fn send_frames_decode_as_the_general_decoder_does() {
        let send = format!(r#"{{"type":"send","id":"{ID}","conversation":"{CONV}""#);
        for rest in [
            r#","body":"hi"}"#,
            r#","body":"a \"quoted\" \\ \u00e9 \ud83c\udf5c"}"#,
            r#","body":"x","action":null}"#,
            &format!(r#","body":"","action":{{"target":"{ID}","action":"delete"}}}}"#),
            &format!(r#","body":"👍","action":{{"target":"{ID}","action":"react","on":true}}}}"#),
            &format!(r#","body":"","action":{{"target":"{ID}","action":"shout"}}}}"#),
            r#","body":"x","extra":1}"#,
            r#","body":"x","type":"send"}"#,
            r#","body":"x","body":"y"}"#,
            r#","body":5}"#,
            r#"}"#,
            r#","body":"x"} trailing"#,
            r#","body":"x""#,
        ] {
            same_client(&format!("{send}{rest}"));
        }
        same_client(r#"{"type":"send","id":"not a uuid","conversation":"x","body":""}"#);
        same_client(&format!(
            r#"{{"type":"sendx","id":"{ID}","conversation":"{CONV}","body":""}}"#
        ));
        same_client(&format!(
            r#"{{"id":"{ID}","type":"send","conversation":"{CONV}","body":""}}"#
        ));
    }

    #[test]
    fn ack_frames_decode_as_the_general_decoder_does() {
        let ack = format!(r#"{{"type":"ack","id":"{ID}","conversation":"{CONV}""#);
        for rest in [
            r#","seq":7,"server_ts":-3}"#,
            r#","seq":18446744073709551615,"server_ts":0}"#,
            r#","seq":-1,"server_ts":0}"#,
            r#","seq":7,"server_ts":0,"newer_field":{"a":[1]}}"#,
            r#","seq":7}"#,
            r#","seq":7,"server_ts":0,"seq":8}"#,
            r#","seq":"7","server_ts":0}"#,
        ] {
            same_server(&format!("{ack}{rest}"));
        }
    }

    #[test]
    fn the_prefixes_are_what_encode_writes() {
        let id = MessageId::new();
        let conversation = ConversationId::new();
        let send = encode(&ClientFrame::Send {
            id,
            conversation,
            body: "b".into(),
            action: None,
        });
        assert!(send.starts_with(SEND_PREFIX), "{send}");
        let ack = encode(&ServerFrame::Ack {
            id,
            conversation,
            seq: Seq(1),
            server_ts: 2,
        });
        assert!(ack.starts_with(ACK_PREFIX), "{ack}");
    }
}
