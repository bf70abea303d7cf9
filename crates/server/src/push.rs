//! What a committed write tells the members of its conversation.

use crate::store::{WriteOp, WriteOutcome};
use chatsync_protocol::{ConversationId, MemberMarks, ServerFrame, WireMessage};

/// The push a committed write causes, if any: its conversation, the frame,
/// and whether the connection that submitted it is left out (a new message
/// is not echoed to its own connection; moved marks go to everyone). A
/// duplicate append or an unchanged mark pushes nothing. `username` is the
/// submitting account's name.
pub fn push_for(
    op: &WriteOp,
    outcome: &WriteOutcome,
    username: &str,
) -> Option<(ConversationId, ServerFrame, bool)> {
    match (op, outcome) {
        (
            WriteOp::Append {
                sender,
                id,
                conversation,
                body,
                action,
            },
            WriteOutcome::Appended(a),
        ) if !a.duplicate => {
            let message = WireMessage {
                id: *id,
                conversation: *conversation,
                seq: a.seq,
                sender: *sender,
                sender_name: username.to_string(),
                body: body.clone(),
                server_ts: a.server_ts,
                action: action.clone(),
            };
            Some((*conversation, ServerFrame::Message { message }, true))
        }
        (
            WriteOp::Delivered {
                conversation, user, ..
            }
            | WriteOp::Read {
                conversation, user, ..
            },
            WriteOutcome::Marks {
                delivered,
                read,
                changed: true,
            },
        ) => {
            let marks = MemberMarks {
                user: *user,
                username: username.to_string(),
                delivered: *delivered,
                read: *read,
            };
            let frame = ServerFrame::Marks {
                conversation: *conversation,
                marks,
            };
            Some((*conversation, frame, false))
        }
        _ => None,
    }
}
