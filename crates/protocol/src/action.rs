//! Actions on an existing message: edit, delete, react.
//!
//! An action travels exactly like a message (a `send` frame with an `action`
//! field), gets its own id, its own acknowledgement and its own place in the
//! conversation's sequence. Every member folds the actions of a message in
//! sequence order, so everyone ends with the same state; [`fold`] is that
//! rule, shared by the client and the tests.

use crate::{MessageId, Seq, UserId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What an action does to its target message.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "StrictAction")]
pub struct ActionRef {
    /// The message acted on (in the same conversation).
    pub target: MessageId,
    /// What is done to it.
    #[serde(flatten)]
    pub kind: ActionKind,
}

/// The kinds of action. The frame's `body` carries the new text of an
/// edit, the emoji of a reaction, and is empty for a delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ActionKind {
    /// Replace the text (author only).
    Edit,
    /// Delete the message (author only); its text is erased everywhere and
    /// a placeholder remains in its place.
    Delete,
    /// Add (`on: true`) or remove (`on: false`) the sender's reaction.
    React {
        /// Whether the reaction is set.
        on: bool,
    },
}

/// The wire form of [`ActionRef`] as read: strict, like every client frame
/// (`serde(flatten)` cannot refuse unknown fields, so the check is here).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StrictAction {
    target: MessageId,
    action: StrictKind,
    #[serde(default)]
    on: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum StrictKind {
    Edit,
    Delete,
    React,
}

impl TryFrom<StrictAction> for ActionRef {
    type Error = String;

    fn try_from(raw: StrictAction) -> Result<Self, Self::Error> {
        let kind = match (raw.action, raw.on) {
            (StrictKind::Edit, None) => ActionKind::Edit,
            (StrictKind::Delete, None) => ActionKind::Delete,
            (StrictKind::React, Some(on)) => ActionKind::React { on },
            (StrictKind::React, None) => return Err("a react action needs `on`".into()),
            (_, Some(_)) => return Err("only a react action carries `on`".into()),
        };
        Ok(ActionRef {
            target: raw.target,
            kind,
        })
    }
}

/// Largest reaction, in UTF-8 bytes (an emoji with modifiers and joiners).
pub const MAX_REACTION_BYTES: usize = 64;

/// One confirmed event of a conversation, as far as folding is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoldEvent<'a> {
    /// Its place.
    pub seq: Seq,
    /// Its author.
    pub sender: UserId,
    /// Text (message, edit), emoji (react) or empty (delete).
    pub body: &'a str,
    /// The action, if it is one.
    pub action: Option<&'a ActionRef>,
}

/// The state of a message after its actions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Folded {
    /// Current text (empty once deleted).
    pub body: String,
    /// Whether an edit applied.
    pub edited: bool,
    /// Whether it was deleted.
    pub deleted: bool,
    /// Reactions set: emoji → users, each once.
    pub reactions: BTreeMap<String, Vec<UserId>>,
}

/// Folds the actions targeting one message, in any order, into its state.
/// The rule: actions apply in sequence order; an edit or delete counts only
/// from the message's author; after a delete nothing else applies; for each
/// (user, emoji) the reaction with the highest sequence number wins.
pub fn fold(author: UserId, body: &str, actions: &[FoldEvent<'_>]) -> Folded {
    let mut ordered: Vec<&FoldEvent<'_>> = actions.iter().collect();
    ordered.sort_by_key(|e| e.seq);
    let mut out = Folded {
        body: body.to_string(),
        ..Folded::default()
    };
    let mut reactions: BTreeMap<(String, UserId), bool> = BTreeMap::new();
    for e in ordered {
        let Some(action) = e.action else { continue };
        if out.deleted {
            break;
        }
        match action.kind {
            ActionKind::Edit if e.sender == author => {
                out.body = e.body.to_string();
                out.edited = true;
            }
            ActionKind::Delete if e.sender == author => {
                out.body.clear();
                out.deleted = true;
            }
            ActionKind::React { on } => {
                reactions.insert((e.body.to_string(), e.sender), on);
            }
            _ => {}
        }
    }
    if !out.deleted {
        for ((emoji, user), on) in reactions {
            if on {
                out.reactions.entry(emoji).or_default().push(user);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev<'a>(seq: u64, sender: UserId, body: &'a str, action: &'a ActionRef) -> FoldEvent<'a> {
        FoldEvent {
            seq: Seq(seq),
            sender,
            body,
            action: Some(action),
        }
    }

    #[test]
    fn the_newest_edit_wins_whatever_the_arrival_order() {
        let (a, target) = (UserId::new(), MessageId::new());
        let edit = ActionRef {
            target,
            kind: ActionKind::Edit,
        };
        let events = [ev(5, a, "hello!", &edit), ev(3, a, "hello", &edit)];
        let f = fold(a, "helo", &events);
        assert_eq!(f.body, "hello!");
        assert!(f.edited);
    }

    #[test]
    fn only_the_author_edits_or_deletes() {
        let (a, b, target) = (UserId::new(), UserId::new(), MessageId::new());
        let edit = ActionRef {
            target,
            kind: ActionKind::Edit,
        };
        let del = ActionRef {
            target,
            kind: ActionKind::Delete,
        };
        let f = fold(
            a,
            "mine",
            &[ev(2, b, "hijacked", &edit), ev(3, b, "", &del)],
        );
        assert_eq!(f.body, "mine");
        assert!(!f.edited && !f.deleted);
    }

    #[test]
    fn delete_is_final_and_erases_text_and_reactions() {
        let (a, b, target) = (UserId::new(), UserId::new(), MessageId::new());
        let del = ActionRef {
            target,
            kind: ActionKind::Delete,
        };
        let edit = ActionRef {
            target,
            kind: ActionKind::Edit,
        };
        let like = ActionRef {
            target,
            kind: ActionKind::React { on: true },
        };
        let f = fold(
            a,
            "secret",
            &[
                ev(2, b, "👍", &like),
                ev(3, a, "", &del),
                ev(4, a, "back", &edit),
            ],
        );
        assert!(f.deleted);
        assert_eq!(f.body, "");
        assert!(f.reactions.is_empty());
    }

    #[test]
    fn reaction_toggles_end_in_the_last_state_once() {
        let (a, b, target) = (UserId::new(), UserId::new(), MessageId::new());
        let on = ActionRef {
            target,
            kind: ActionKind::React { on: true },
        };
        let off = ActionRef {
            target,
            kind: ActionKind::React { on: false },
        };
        let f = fold(
            a,
            "hi",
            &[
                ev(4, b, "👍", &on),
                ev(2, b, "👍", &on),
                ev(3, b, "👍", &off),
            ],
        );
        assert_eq!(f.reactions.get("👍"), Some(&vec![b]));
        let f = fold(a, "hi", &[ev(2, b, "👍", &on), ev(3, b, "👍", &off)]);
        assert!(f.reactions.is_empty());
    }

    #[test]
    fn action_wire_form() {
        let r = ActionRef {
            target: MessageId(uuid::Uuid::nil()),
            kind: ActionKind::React { on: true },
        };
        let json = serde_json::to_string(&r).expect("encode");
        assert_eq!(
            json,
            r#"{"target":"00000000-0000-0000-0000-000000000000","action":"react","on":true}"#
        );
        assert_eq!(serde_json::from_str::<ActionRef>(&json).expect("decode"), r);
    }

    #[test]
    fn action_decoding_is_strict() {
        let t = "00000000-0000-0000-0000-000000000000";
        for bad in [
            format!(r#"{{"target":"{t}","action":"edit","on":true}}"#),
            format!(r#"{{"target":"{t}","action":"react"}}"#),
            format!(r#"{{"target":"{t}","action":"delete","extra":1}}"#),
            format!(r#"{{"target":"{t}","action":"shout"}}"#),
        ] {
            assert!(
                serde_json::from_str::<ActionRef>(&bad).is_err(),
                "accepted {bad}"
            );
        }
        let ok = format!(r#"{{"target":"{t}","action":"delete"}}"#);
        assert!(serde_json::from_str::<ActionRef>(&ok).is_ok());
    }
}
