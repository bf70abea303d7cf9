//! Limits the server enforces and announces in its `welcome` frame.

use serde::{Deserialize, Serialize};

/// What the server accepts. Announced at connection so clients can refuse at
/// once, in `send`, what could only fail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest message body, counted in UTF-8 bytes.
    pub max_body_bytes: usize,
    /// Largest WebSocket message the server reads, in bytes.
    pub max_frame_bytes: usize,
    /// Sustained sends per second allowed per connection.
    pub rate_per_sec: u32,
    /// Sends allowed in a burst above the sustained rate.
    pub rate_burst: u32,
    /// Largest page a `sync` request may ask for.
    pub max_page: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 4096,
            max_frame_bytes: 64 * 1024,
            rate_per_sec: 200,
            rate_burst: 400,
            max_page: 500,
        }
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
