//! Pure encoding and decoding of frames.

use crate::{ClientFrame, ServerFrame};
use serde::Serialize;

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
    Ok(serde_json::from_str(text)?)
}

/// Decodes a frame sent by a server.
pub fn decode_server(text: &str) -> Result<ServerFrame, DecodeError> {
    Ok(serde_json::from_str(text)?)
}
