//! Limits the server enforces and announces in its `welcome` frame.

use serde::{Deserialize, Serialize};

/// Longest account name, in UTF-8 bytes (not announced: fixed by the protocol).
pub const MAX_USERNAME_BYTES: usize = 64;

/// Longest password, in UTF-8 bytes (not announced: fixed by the protocol).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Worst-case growth of a string when JSON-encoded: a control character
/// such as U+0001 takes one byte of UTF-8 and six once escaped (`\u0001`).
pub const JSON_ESCAPE_FACTOR: usize = 6;

/// Room reserved in a frame for everything but its variable strings: the
/// `type` tag, field names, ids, quotes and punctuation.
pub const FRAME_OVERHEAD_BYTES: usize = 1024;

/// What the server accepts. Announced at connection so clients can refuse at
/// once, in `send`, what could only fail.
///
/// Fields added after the first release carry `#[serde(default)]` so that a
/// client decoding the `welcome` of an older server still succeeds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest message body, counted in UTF-8 bytes.
    pub max_body_bytes: usize,
    /// Largest WebSocket message the server reads, in bytes. After
    /// [`Limits::normalized`] it is at least [`Limits::min_frame_bytes`].
    pub max_frame_bytes: usize,
    /// Sustained sends per second allowed per connection.
    pub rate_per_sec: u32,
    /// Sends allowed in a burst above the sustained rate.
    pub rate_burst: u32,
    /// Largest page a `sync` request may ask for.
    pub max_page: u32,
    /// Longest conversation title, in UTF-8 bytes.
    #[serde(default = "default_max_title_bytes")]
    pub max_title_bytes: usize,
    /// Most members of a conversation, its creator included.
    #[serde(default = "default_max_members")]
    pub max_members: u32,
    /// Time a new connection has to authenticate with `hello`, in
    /// milliseconds. Announced for information (the server fills it in
    /// from its configuration); `None` when not announced (older servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handshake_timeout_ms: Option<u64>,
    /// Silence from an authenticated client after which the server closes
    /// the connection, in milliseconds; `None` when not announced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_ms: Option<u64>,
    /// Most simultaneous authenticated connections per account; `None`
    /// when not announced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections_per_user: Option<u32>,
    /// Lifetime of a session token from its `login`, in seconds; after it
    /// `hello` answers `unauthorized`. `None` when not announced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_ttl_secs: Option<u64>,
}

fn default_max_title_bytes() -> usize {
    256
}

fn default_max_members() -> u32 {
    100
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 4096,
            max_frame_bytes: 64 * 1024,
            rate_per_sec: 200,
            rate_burst: 400,
            max_page: 500,
            max_title_bytes: default_max_title_bytes(),
            max_members: default_max_members(),
            handshake_timeout_ms: None,
            idle_timeout_ms: None,
            max_connections_per_user: None,
            session_ttl_secs: None,
        }
    }
}

impl Limits {
    /// The smallest `max_frame_bytes` under which every request that passes
    /// the other limits still fits in one frame, whatever the encoder
    /// escapes: the largest of a `send` with a full body, a
    /// `create_conversation` with a full title and member list, and a
    /// `register` with the longest name and password. Each string counts
    /// [`JSON_ESCAPE_FACTOR`] bytes per byte, plus [`FRAME_OVERHEAD_BYTES`].
    pub fn min_frame_bytes(&self) -> usize {
        let escaped = |bytes: usize| bytes.saturating_mul(JSON_ESCAPE_FACTOR);
        let send = escaped(self.max_body_bytes);
        // Every name but the creator's, each with quotes and a comma.
        let names = usize::try_from(self.max_members.saturating_sub(1)).unwrap_or(usize::MAX);
        let create = escaped(self.max_title_bytes)
            .saturating_add(names.saturating_mul(escaped(MAX_USERNAME_BYTES).saturating_add(3)));
        let register = escaped(MAX_USERNAME_BYTES.saturating_add(MAX_PASSWORD_BYTES));
        send.max(create)
            .max(register)
            .saturating_add(FRAME_OVERHEAD_BYTES)
    }

    /// These limits made consistent, the one place where that is decided:
    /// `max_frame_bytes` is raised to [`Limits::min_frame_bytes`] if it is
    /// below it (so a valid request is never answered by closing the
    /// connection), and `max_members` is at least 1 (the creator). A server
    /// enforces and announces the normalized limits.
    pub fn normalized(&self) -> Limits {
        let mut limits = self.clone();
        limits.max_members = limits.max_members.max(1);
        limits.max_frame_bytes = limits.max_frame_bytes.max(limits.min_frame_bytes());
        limits
    }
}

/// Why a body is unacceptable, checked identically by client and server.
pub fn check_body(body: &str, limits: &Limits) -> Result<(), (crate::ErrorCode, String)> {
    use crate::ErrorCode;
    if body.is_empty() {
        return Err((ErrorCode::EmptyBody, "the message body is empty".into()));
    }
    if body.len() > limits.max_body_bytes {
        return Err((
            ErrorCode::TooLarge,
            format!(
                "the message body is {} bytes of UTF-8; the limit is {}",
                body.len(),
                limits.max_body_bytes
            ),
        ));
    }
    if body.contains('\0') {
        return Err((
            ErrorCode::InvalidBody,
            "the message body contains a NUL character (U+0000)".into(),
        ));
    }
    Ok(())
}

/// Why a `send` frame's body is unacceptable for what it carries: a message
/// or an edit is checked by [`check_body`]; a delete carries no text; a
/// reaction is one non-empty emoji of at most [`crate::MAX_REACTION_BYTES`].
pub fn check_send(
    body: &str,
    action: Option<&crate::ActionRef>,
    limits: &Limits,
) -> Result<(), (crate::ErrorCode, String)> {
    use crate::{ActionKind, ErrorCode, MAX_REACTION_BYTES};
    match action.map(|a| a.kind) {
        None | Some(ActionKind::Edit) => check_body(body, limits),
        Some(ActionKind::Delete) if body.is_empty() => Ok(()),
        Some(ActionKind::Delete) => {
            Err((ErrorCode::InvalidBody, "a delete carries no text".into()))
        }
        Some(ActionKind::React { .. }) => {
            if body.is_empty() || body.len() > MAX_REACTION_BYTES || body.contains('\0') {
                Err((
                    ErrorCode::InvalidBody,
                    format!("a reaction is one emoji of 1 to {MAX_REACTION_BYTES} bytes"),
                ))
            } else {
                Ok(())
            }
        }
    }
}

/// Why a `create_conversation` is unacceptable, checked identically by
/// client and server: a title over `max_title_bytes` UTF-8 bytes or
/// containing U+0000, or more than `max_members - 1` names listed (the
/// creator is always a member; repeated names count).
pub fn check_conversation(
    title: &str,
    members: &[String],
    limits: &Limits,
) -> Result<(), (crate::ErrorCode, String)> {
    use crate::ErrorCode;
    if title.len() > limits.max_title_bytes {
        return Err((
            ErrorCode::InvalidRequest,
            format!(
                "the conversation title is {} bytes of UTF-8; the limit is {}",
                title.len(),
                limits.max_title_bytes
            ),
        ));
    }
    if title.contains('\0') {
        return Err((
            ErrorCode::InvalidRequest,
            "the conversation title contains a NUL character (U+0000)".into(),
        ));
    }
    let max_others = usize::try_from(limits.max_members.saturating_sub(1)).unwrap_or(usize::MAX);
    if members.len() > max_others {
        return Err((
            ErrorCode::InvalidRequest,
            format!(
                "{} member names listed; a conversation has at most {} members, \
                 its creator included, so at most {max_others} names may be listed",
                members.len(),
                limits.max_members
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{encode, ClientFrame, MessageId};

    #[test]
    fn defaults_are_already_normalized() {
        assert_eq!(Limits::default().normalized(), Limits::default());
    }

    #[test]
    fn frame_limit_grows_with_the_body_limit() {
        let limits = Limits {
            max_body_bytes: 1 << 20,
            ..Limits::default()
        }
        .normalized();
        assert_eq!(limits.max_frame_bytes, (1 << 20) * 6 + 1024);
        // The worst case really fits: a full body of control characters.
        let body = "\u{1}".repeat(limits.max_body_bytes);
        assert!(check_body(&body, &limits).is_ok());
        let id = MessageId::new().0.to_string();
        let frame = serde_json::json!({
            "type": "send", "id": id, "conversation": id, "body": body
        })
        .to_string();
        assert!(crate::decode_client(&frame).is_ok());
        assert!(frame.len() <= limits.max_frame_bytes, "{}", frame.len());
        // A larger configured value is kept; extreme ones do not overflow.
        let big = Limits {
            max_frame_bytes: usize::MAX,
            ..Limits::default()
        };
        assert_eq!(big.normalized().max_frame_bytes, usize::MAX);
        let huge = Limits {
            max_body_bytes: usize::MAX,
            ..Limits::default()
        };
        assert_eq!(huge.normalized().max_frame_bytes, usize::MAX);
    }

    #[test]
    fn frame_limit_covers_a_full_create_conversation() {
        let limits = Limits {
            max_frame_bytes: 1,
            max_members: 0,
            ..Limits::default()
        }
        .normalized();
        assert_eq!(limits.max_members, 1);
        let limits = Limits {
            max_members: 1000,
            ..limits
        }
        .normalized();
        let title = "\u{1}".repeat(limits.max_title_bytes);
        let members: Vec<String> = (0..limits.max_members - 1)
            .map(|_| "\"".repeat(MAX_USERNAME_BYTES))
            .collect();
        assert!(check_conversation(&title, &members, &limits).is_ok());
        let frame = encode(&ClientFrame::CreateConversation {
            req: u64::MAX,
            title,
            members,
        });
        assert!(frame.len() <= limits.max_frame_bytes);
    }

    #[test]
    fn conversation_checks() {
        let limits = Limits {
            max_title_bytes: 4,
            max_members: 3,
            ..Limits::default()
        };
        let names = |n: usize| vec!["x".to_string(); n];
        assert!(check_conversation("abcd", &names(2), &limits).is_ok());
        assert!(check_conversation("", &[], &limits).is_ok());
        // Bytes, not characters.
        let (code, _) = check_conversation("abcé", &[], &limits).unwrap_err();
        assert_eq!(code, crate::ErrorCode::InvalidRequest);
        assert!(check_conversation("a\0", &[], &limits).is_err());
        assert!(check_conversation("a", &names(3), &limits).is_err());
    }

    #[test]
    fn limits_from_an_older_server_still_decode() {
        let old = r#"{"max_body_bytes":10,"max_frame_bytes":100,"rate_per_sec":1,"rate_burst":2,"max_page":3}"#;
        let limits: Limits = serde_json::from_str(old).unwrap();
        assert_eq!(limits.max_title_bytes, Limits::default().max_title_bytes);
        assert_eq!(limits.max_members, Limits::default().max_members);
    }
}
