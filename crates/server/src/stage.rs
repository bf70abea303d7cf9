//! Stage stamps: `TRACE` events marking each hand-off of a message inside
//! the server, for a tool that times where the latency goes (`chatsync
//! bench --stages`). They cost one disabled-callsite check when nobody
//! records them.

use crate::store::WriteOp;
use chatsync_protocol::MessageId;

/// Target of the stage events (fields `stage` and `id`).
pub const STAGE_TARGET: &str = "chatsync::stage";

/// Stamps a hand-off of message `id`.
pub(crate) fn stamp(stage: &'static str, id: MessageId) {
    tracing::trace!(target: STAGE_TARGET, stage, id = %id);
}

/// Stamps a hand-off of every message among `ops`.
pub(crate) fn stamp_all(stage: &'static str, ops: &[WriteOp]) {
    if !tracing::enabled!(target: STAGE_TARGET, tracing::Level::TRACE) {
        return;
    }
    for op in ops {
        if let WriteOp::Append { id, .. } = op {
            stamp(stage, *id);
        }
    }
}
