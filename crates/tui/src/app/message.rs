//! What the keys of message-browsing mode do to the selected message:
//! retry and discard (of the message or of a failed action on it), edit,
//! delete (after a y/n confirmation) and react (a small emoji prompt).

use super::input::Editor;
use super::{Action, App, Editing, Focus, Prompt};
use chatsync_client::model::PendingAction;
use chatsync_client::{Item, Status};
use chatsync_protocol::MessageId;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::time::Instant;

/// The reactions under the keys 1–5 of the reaction prompt.
pub const QUICK_REACTIONS: [&str; 5] = ["👍", "❤️", "😂", "😮", "🙏"];

/// The most recent of this device's refused actions on `item`.
fn last_failed_action(item: &Item) -> Option<&PendingAction> {
    item.pending
        .iter()
        .rev()
        .find(|p| p.status == Status::Failed)
}

impl App {
    /// The selected message, if any.
    pub fn selected_item(&self) -> Option<&Item> {
        let open = self.open.as_ref()?;
        self.item(open.selected?)
    }

    /// A message of the open conversation's loaded window.
    pub fn item(&self, id: MessageId) -> Option<&Item> {
        let open = self.open.as_ref()?;
        open.window.index_of(id).map(|i| &open.window.items()[i])
    }

    /// Whether this account has set `emoji` on `item` (its own toggle
    /// still being sent included).
    pub fn reacted(&self, item: &Item, emoji: &str) -> bool {
        item.reactions
            .iter()
            .any(|r| r.emoji == emoji && r.users.contains(&self.user))
    }

    /// `r`: retries the selected message when it failed, else the most
    /// recent failed action on it.
    pub(super) fn retry_selected(&mut self, now: Instant) {
        let Some(item) = self.selected_item() else {
            return;
        };
        let id = if item.own && item.status == Status::Failed {
            Some(item.id)
        } else {
            last_failed_action(item).map(|p| p.id)
        };
        match id {
            Some(id) => self.actions.push(Action::Retry(id)),
            None => self.notify("only a failed message or action (!) can be retried", now),
        }
    }

    /// `d`: discards the selected message when it failed, else the most
    /// recent failed action on it, else the message when it is still
    /// unsent.
    pub(super) fn discard_selected(&mut self, now: Instant) {
        let Some(item) = self.selected_item() else {
            return;
        };
        let id = if item.own && item.status == Status::Failed {
            Some(item.id)
        } else if let Some(p) = last_failed_action(item) {
            Some(p.id)
        } else if item.own && item.status == Status::Sending {
            Some(item.id)
        } else {
            None
        };
        match id {
            Some(id) => self.actions.push(Action::Discard(id)),
            None => self.notify(
                "only a failed action, or your failed or unsent messages, can be discarded",
                now,
            ),
        }
    }

    /// `e`: loads the selected own message into the input box for editing
    /// (what was typed there is kept aside and given back afterwards).
    pub(super) fn start_edit(&mut self, now: Instant) {
        let Some(item) = self.selected_item() else {
            return;
        };
        if !item.own {
            self.notify("only your own messages can be edited", now);
            return;
        }
        if item.deleted {
            self.notify("a deleted message cannot be edited", now);
            return;
        }
        let (message, body) = (item.id, item.body.clone());
        self.begin_edit(message, body);
    }

    fn begin_edit(&mut self, message: MessageId, body: String) {
        let draft = self.input.take();
        self.input.set(body);
        self.editing = Some(Editing { message, draft });
        self.focus = Focus::Compose;
        if let Some(open) = self.open.as_mut() {
            open.selected = Some(message);
        }
    }

    /// Leaves the editing state: the draft goes back into the input box
    /// and the edited message stays selected.
    fn end_edit(&mut self) -> Option<Editing> {
        let editing = self.editing.take()?;
        self.input.set(editing.draft.clone());
        self.focus = Focus::Timeline;
        if let Some(open) = self.open.as_mut() {
            open.selected = Some(editing.message);
        }
        Some(editing)
    }

    /// Esc while editing: nothing changes.
    pub(super) fn cancel_edit(&mut self) {
        self.end_edit();
    }

    /// Enter while editing: the new text goes out (unless it is unchanged).
    pub(super) fn submit_edit(&mut self, now: Instant) {
        let body = self.input.text().to_string();
        if body.trim().is_empty() {
            self.notify("an edit cannot be empty (x deletes the message)", now);
            return;
        }
        let Some(editing) = self.end_edit() else {
            return;
        };
        let unchanged = self
            .item(editing.message)
            .is_some_and(|i| i.body == body && !i.deleted);
        if !unchanged {
            self.actions.push(Action::Edit {
                message: editing.message,
                body,
            });
        }
    }

    /// The client refused an edit before queueing it: give the text back
    /// for another try.
    pub fn edit_refused(&mut self, message: MessageId, body: String, why: &str, now: Instant) {
        if self.editing.is_none() && self.item(message).is_some() {
            self.begin_edit(message, body);
        }
        self.notify(format!("not edited: {why}"), now);
    }

    /// `x` or Delete: asks to confirm deleting the selected own message.
    pub(super) fn ask_delete(&mut self, now: Instant) {
        let Some(item) = self.selected_item() else {
            return;
        };
        if !item.own {
            self.notify("only your own messages can be deleted", now);
        } else if item.deleted {
            self.notify("this message is already deleted", now);
        } else {
            self.prompt = Some(Prompt::Delete(item.id));
        }
    }

    /// `+`: asks which reaction to toggle on the selected message.
    pub(super) fn ask_react(&mut self, now: Instant) {
        let Some(item) = self.selected_item() else {
            return;
        };
        if item.deleted {
            self.notify("a deleted message cannot get reactions", now);
            return;
        }
        self.prompt = Some(Prompt::React {
            message: item.id,
            emoji: Editor::default(),
        });
    }

    /// Sets this account's `emoji` on the message when it is not set,
    /// removes it when it is.
    pub fn toggle_reaction(&mut self, message: MessageId, emoji: &str, now: Instant) {
        let Some(item) = self.item(message) else {
            self.notify("that message is no longer loaded", now);
            return;
        };
        let on = !self.reacted(item, emoji);
        self.actions.push(Action::React {
            message,
            emoji: emoji.to_string(),
            on,
        });
    }

    /// A key while a prompt is shown.
    pub(super) fn prompt_key(&mut self, key: KeyEvent, now: Instant) {
        let Some(prompt) = self.prompt.take() else {
            return;
        };
        match prompt {
            Prompt::Delete(message) => {
                if matches!(key.code, KeyCode::Char('y' | 'Y')) {
                    self.actions.push(Action::Delete(message));
                } else {
                    self.notify("not deleted", now);
                }
            }
            Prompt::React { message, mut emoji } => {
                let plain = !key
                    .modifiers
                    .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT);
                match key.code {
                    KeyCode::Esc => {}
                    KeyCode::Enter => {
                        let typed = emoji.text().trim().to_string();
                        if typed.is_empty() {
                            self.prompt = Some(Prompt::React { message, emoji });
                        } else {
                            self.toggle_reaction(message, &typed, now);
                        }
                    }
                    KeyCode::Char(c @ '1'..='5') if plain && emoji.is_empty() => {
                        let at = usize::from(c as u8 - b'1');
                        self.toggle_reaction(message, QUICK_REACTIONS[at], now);
                    }
                    code => {
                        match code {
                            KeyCode::Char(c) if plain => emoji.insert(c),
                            KeyCode::Backspace => emoji.backspace(),
                            KeyCode::Delete => emoji.delete(),
                            KeyCode::Left => emoji.left(),
                            KeyCode::Right => emoji.right(),
                            _ => {}
                        }
                        self.prompt = Some(Prompt::React { message, emoji });
                    }
                }
            }
        }
    }
}
