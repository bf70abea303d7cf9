//! The application state and what each key does. Pure: no terminal, no
//! client. Keys and data changes go in; [`Action`]s for the runtime to
//! carry out come out (see `session.rs`), so all of it is unit-testable.

pub mod input;
mod message;
pub mod window;

pub use message::QUICK_REACTIONS;

use chatsync_client::{ConnectionState, Item, TimelineChange};
use chatsync_protocol::{ConversationId, MessageId, Seq, UserId};
use input::Editor;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use window::{Window, PAGE};

/// Which part of the screen takes the keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Focus {
    /// The conversation list.
    List,
    /// The open conversation's messages (one is selected).
    Timeline,
    /// The input box.
    Compose,
    /// The input box, asking for a new conversation's title and members.
    NewConversation,
}

/// Something the runtime must do with the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Open a conversation (load its newest page).
    Open(ConversationId),
    /// Send a message.
    Send {
        /// Conversation.
        conversation: ConversationId,
        /// Text.
        body: String,
    },
    /// Retry a Failed message or action (by its id).
    Retry(MessageId),
    /// Discard a Failed (or never transmitted) message or action.
    Discard(MessageId),
    /// Replace the text of an own message.
    Edit {
        /// The message.
        message: MessageId,
        /// New text.
        body: String,
    },
    /// Delete an own message for everyone.
    Delete(MessageId),
    /// Set (`on`) or remove this account's reaction on a message.
    React {
        /// The message.
        message: MessageId,
        /// The emoji.
        emoji: String,
        /// Set or remove.
        on: bool,
    },
    /// Load the page before `before`.
    LoadOlder {
        /// Conversation.
        conversation: ConversationId,
        /// Exclusive end.
        before: Seq,
    },
    /// Load the page ending before `before` (newer items, when detached).
    LoadNewer {
        /// Conversation.
        conversation: ConversationId,
        /// Exclusive end.
        before: Seq,
    },
    /// Reload the newest page and follow new messages again.
    Reload(ConversationId),
    /// Mark the conversation read up to `seq` (server-synced read mark).
    MarkRead {
        /// Conversation.
        conversation: ConversationId,
        /// Newest sequence number on screen.
        seq: Seq,
    },
    /// Create a conversation.
    Create {
        /// Title.
        title: String,
        /// Account names of the other members.
        members: Vec<String>,
    },
    /// Try to connect now instead of waiting out the backoff.
    ReconnectNow,
}

/// One line of the conversation list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Id.
    pub id: ConversationId,
    /// Title.
    pub title: String,
    /// Member account names.
    pub members: Vec<String>,
    /// Newest message.
    pub last: Option<Item>,
    /// Messages from others above this account's read mark
    /// ([`chatsync_client::Client::unread`]).
    pub unread: usize,
}

impl Summary {
    /// Time of the newest message, for ordering the list.
    pub fn last_ts(&self) -> i64 {
        self.last
            .as_ref()
            .map_or(0, |i| i.server_ts.unwrap_or(i.created_at))
    }
}

/// What the timeline pane last showed (filled in by the view).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Visible {
    /// Index of the top item on screen.
    pub top: usize,
    /// Index of the bottom item on screen.
    pub bottom: usize,
    /// The messages were on screen in the last frame (not hidden behind
    /// the list on a narrow terminal, nor behind the help).
    pub shown: bool,
}

/// A question asked in the input box's place while browsing messages.
#[derive(Clone, Debug)]
pub enum Prompt {
    /// Delete this own message for everyone? (y/n)
    Delete(MessageId),
    /// Which reaction to toggle on this message.
    React {
        /// The message.
        message: MessageId,
        /// An emoji typed so far (empty: the quick picks 1–5 apply).
        emoji: Editor,
    },
}

/// An own message whose text is being edited in the input box.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Editing {
    /// The message.
    pub message: MessageId,
    /// What the input box held before, given back when the edit ends.
    pub draft: String,
}

/// The open conversation.
#[derive(Debug)]
pub struct Open {
    /// Id.
    pub id: ConversationId,
    /// The loaded part of its timeline.
    pub window: Window,
    /// Selected message (Timeline focus).
    pub selected: Option<MessageId>,
    /// Item drawn at the bottom of the pane; `None` follows the newest.
    pub anchor: Option<MessageId>,
    /// What the last frame showed.
    pub visible: Visible,
    /// An older page is being loaded.
    pub loading_older: bool,
    /// A newer page is being loaded.
    pub loading_newer: bool,
}

/// The connection as the indicator shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connection {
    /// Last state reported.
    pub state: ConnectionState,
    /// When it was reported (for the "reconnecting in Ns" countdown).
    pub since: Instant,
}

impl Connection {
    /// Whether messages can go out now.
    pub fn is_up(&self) -> bool {
        self.state == ConnectionState::Connected
    }

    /// Time left before the next attempt, when waiting; `None` when the
    /// server refused the session (no more attempts).
    pub fn retry_in(&self, now: Instant) -> Option<Duration> {
        match self.state {
            ConnectionState::Reconnecting { in_ms } if in_ms != u64::MAX => {
                let at = self.since + Duration::from_millis(in_ms);
                Some(at.saturating_duration_since(now))
            }
            _ => None,
        }
    }
}

/// The whole state of the terminal client.
pub struct App {
    /// Account of this client (to tell its own reactions).
    pub user: UserId,
    /// Account name of this client.
    pub me: String,
    /// Which pane takes the keys.
    pub focus: Focus,
    /// Conversations, newest activity first.
    pub conversations: Vec<Summary>,
    /// Selected line of the list.
    pub list_selected: usize,
    /// The open conversation.
    pub open: Option<Open>,
    /// The input box.
    pub input: Editor,
    /// Connection indicator.
    pub connection: Connection,
    /// The server refused the session: a new login is needed.
    pub session_rejected: bool,
    /// Help overlay shown.
    pub help: bool,
    /// First help line shown (the help scrolls on small screens).
    pub help_scroll: u16,
    /// A short message for the status bar, and until when to show it.
    pub notice: Option<(String, Instant)>,
    /// A question shown in the input box's place (delete? which reaction?).
    pub prompt: Option<Prompt>,
    /// The input box edits an own message instead of composing a new one.
    pub editing: Option<Editing>,
    /// The person asked to leave.
    pub quit: bool,
    /// Highest read mark asked for, per conversation (so each mark is
    /// asked once).
    read_asked: HashMap<ConversationId, Seq>,
    actions: Vec<Action>,
}

/// How long a notice stays in the status bar.
const NOTICE_FOR: Duration = Duration::from_secs(6);
/// Start loading another page when this few items are left off screen.
const PREFETCH: usize = 10;

impl App {
    /// A fresh state for account `user`, named `me`.
    pub fn new(user: UserId, me: impl Into<String>, now: Instant) -> App {
        App {
            user,
            me: me.into(),
            focus: Focus::List,
            conversations: Vec::new(),
            list_selected: 0,
            open: None,
            input: Editor::default(),
            connection: Connection {
                state: ConnectionState::Connecting,
                since: now,
            },
            session_rejected: false,
            help: false,
            help_scroll: 0,
            notice: None,
            prompt: None,
            editing: None,
            quit: false,
            read_asked: HashMap::new(),
            actions: Vec::new(),
        }
    }

    fn show_help(&mut self) {
        self.help = true;
        self.help_scroll = 0;
    }

    /// Takes the actions produced so far.
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    /// Shows a short message in the status bar.
    pub fn notify(&mut self, text: impl Into<String>, now: Instant) {
        self.notice = Some((text.into(), now + NOTICE_FOR));
    }

    /// The notice still to show.
    pub fn notice(&self, now: Instant) -> Option<&str> {
        self.notice
            .as_ref()
            .filter(|(_, until)| now < *until)
            .map(|(t, _)| t.as_str())
    }

    /// Records a new connection state.
    pub fn set_connection(&mut self, state: ConnectionState, now: Instant) {
        if state == ConnectionState::Connected {
            self.session_rejected = false;
        }
        self.connection = Connection { state, since: now };
    }

    /// Replaces the conversation list, keeping the selected conversation.
    pub fn set_conversations(&mut self, mut list: Vec<Summary>) {
        let selected = self.conversations.get(self.list_selected).map(|s| s.id);
        list.sort_by(|a, b| {
            b.last_ts()
                .cmp(&a.last_ts())
                .then_with(|| a.title.cmp(&b.title))
        });
        self.conversations = list;
        self.list_selected = selected
            .and_then(|id| self.conversations.iter().position(|s| s.id == id))
            .unwrap_or(0);
    }

    /// Replaces one conversation's summary; true when it changed.
    pub fn set_summary(&mut self, summary: Summary) -> bool {
        match self.conversations.iter().position(|s| s.id == summary.id) {
            Some(at) if self.conversations[at] == summary => false,
            Some(at) => {
                let mut list = std::mem::take(&mut self.conversations);
                list[at] = summary;
                self.set_conversations(list);
                true
            }
            None => {
                let mut list = std::mem::take(&mut self.conversations);
                list.push(summary);
                self.set_conversations(list);
                true
            }
        }
    }

    /// The open conversation's summary.
    pub fn open_summary(&self) -> Option<&Summary> {
        let id = self.open.as_ref()?.id;
        self.conversations.iter().find(|s| s.id == id)
    }

    /// A conversation's newest page arrived: open it (or refresh it).
    pub fn opened(&mut self, id: ConversationId, snapshot: Vec<Item>) {
        let keep = self.open.as_ref().filter(|o| o.id == id);
        let selected = keep.and_then(|o| o.selected);
        self.open = Some(Open {
            id,
            window: Window::new(snapshot, PAGE),
            selected,
            anchor: None,
            visible: Visible::default(),
            loading_older: false,
            loading_newer: false,
        });
    }

    /// A change from a conversation's subscription.
    pub fn apply(&mut self, conversation: ConversationId, change: TimelineChange) {
        let Some(open) = self.open.as_mut().filter(|o| o.id == conversation) else {
            return;
        };
        let removed = match &change {
            TimelineChange::Removed(id) => Some(*id),
            _ => None,
        };
        if let Some(id) = removed {
            // Keep a selection near where the removed item was.
            if open.selected == Some(id) || open.anchor == Some(id) {
                let at = open.window.index_of(id).unwrap_or(0);
                let items = open.window.items();
                let near = items
                    .get(at + 1)
                    .or_else(|| at.checked_sub(1).and_then(|p| items.get(p)))
                    .map(|i| i.id);
                if open.selected == Some(id) {
                    open.selected = near;
                }
                if open.anchor == Some(id) {
                    open.anchor = near;
                }
            }
        }
        if open.window.apply(change) {
            let keep = open.visible.top.min(
                open.selected
                    .and_then(|s| open.window.index_of(s))
                    .unwrap_or(usize::MAX),
            );
            if open.anchor.is_none() {
                open.window.trim_front(keep);
            }
        }
    }

    /// An older page arrived.
    pub fn older_loaded(&mut self, id: ConversationId, page: Vec<Item>, requested: usize) {
        if let Some(open) = self.open.as_mut().filter(|o| o.id == id) {
            open.loading_older = false;
            let keep = open
                .anchor
                .and_then(|a| open.window.index_of(a))
                .unwrap_or(open.visible.bottom)
                .max(
                    open.selected
                        .and_then(|s| open.window.index_of(s))
                        .unwrap_or(0),
                );
            if open.anchor.is_none() {
                // Pin the view before the newest items may be dropped.
                open.anchor = open.window.items().last().map(|i| i.id);
            }
            open.window.add_older(page, requested, keep);
        }
    }

    /// A newer page arrived (`reached_end` when it includes the newest).
    pub fn newer_loaded(&mut self, id: ConversationId, page: Vec<Item>, reached_end: bool) {
        if let Some(open) = self.open.as_mut().filter(|o| o.id == id) {
            open.loading_newer = false;
            let keep = open.visible.top.min(
                open.selected
                    .and_then(|s| open.window.index_of(s))
                    .unwrap_or(usize::MAX),
            );
            open.window.add_newer(page, reached_end, keep);
        }
    }

    /// Call after drawing: marks what is now on screen read and asks for
    /// pages the view is about to need.
    pub fn after_draw(&mut self) {
        self.mark_read();
        let Some(open) = self.open.as_mut() else {
            return;
        };
        let len = open.window.items().len();
        if open.window.has_older() && !open.loading_older && open.visible.top < PREFETCH {
            open.loading_older = true;
            self.actions.push(Action::LoadOlder {
                conversation: open.id,
                before: open.window.older_before(),
            });
        }
        if !open.window.attached() && !open.loading_newer && open.visible.bottom + PREFETCH >= len {
            open.loading_newer = true;
            self.actions.push(Action::LoadNewer {
                conversation: open.id,
                before: open.window.newer_before(),
            });
        }
    }

    /// Marks the open conversation read up to the newest message the last
    /// frame showed (asking the client once per new mark).
    fn mark_read(&mut self) {
        let Some(open) = self.open.as_ref().filter(|o| o.visible.shown) else {
            return;
        };
        let Visible { top, bottom, .. } = open.visible;
        let Some(newest) = open
            .window
            .items()
            .get(top..=bottom)
            .and_then(|on_screen| on_screen.iter().filter_map(|i| i.seq).max())
        else {
            return;
        };
        let asked = self.read_asked.entry(open.id).or_default();
        if newest > *asked {
            *asked = newest;
            self.actions.push(Action::MarkRead {
                conversation: open.id,
                seq: newest,
            });
        }
    }

    /// What client storage holds for this account's read mark of a
    /// conversation, and its gap-free cursor. The client clamps a mark to
    /// the cursor; when it did, the mark is asked again once more is stored.
    pub fn read_stored(&mut self, conversation: ConversationId, mark: Seq, cursor: Seq) {
        if let Some(asked) = self.read_asked.get_mut(&conversation) {
            if *asked > mark && mark < cursor {
                *asked = mark;
            }
        }
    }

    /// Text pasted into the terminal (bracketed paste).
    pub fn paste(&mut self, text: &str) {
        if let Some(Prompt::React { emoji, .. }) = self.prompt.as_mut() {
            emoji.insert_str(text);
        } else if matches!(self.focus, Focus::Compose | Focus::NewConversation) {
            self.input.insert_str(text);
        }
    }

    /// Handles one key.
    pub fn key(&mut self, key: KeyEvent, now: Instant) {
        if key.kind == KeyEventKind::Release {
            return;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && matches!(key.code, KeyCode::Char('c') | KeyCode::Char('q')) {
            self.quit = true;
            return;
        }
        if self.help {
            match key.code {
                KeyCode::Up | KeyCode::Char('k') => {
                    self.help_scroll = self.help_scroll.saturating_sub(1)
                }
                KeyCode::Down | KeyCode::Char('j') => self.help_scroll += 1,
                KeyCode::PageUp => self.help_scroll = self.help_scroll.saturating_sub(10),
                KeyCode::PageDown => self.help_scroll += 10,
                _ => self.help = false,
            }
            return;
        }
        if key.code == KeyCode::F(1) {
            self.show_help();
            return;
        }
        if self.prompt.is_some() {
            self.prompt_key(key, now);
            return;
        }
        match self.focus {
            Focus::List => self.list_key(key),
            Focus::Timeline => self.timeline_key(key, now),
            Focus::Compose | Focus::NewConversation => self.compose_key(key, now),
        }
    }

    /// Keys that mean the same outside the input box.
    fn common_key(&mut self, key: KeyEvent) -> bool {
        match key.code {
            KeyCode::Char('q') => self.quit = true,
            KeyCode::Char('?') => self.show_help(),
            KeyCode::Char('c') => self.actions.push(Action::ReconnectNow),
            _ => return false,
        }
        true
    }

    fn list_key(&mut self, key: KeyEvent) {
        if self.common_key(key) {
            return;
        }
        let n = self.conversations.len();
        match key.code {
            KeyCode::Up | KeyCode::Char('k') => {
                self.list_selected = self.list_selected.saturating_sub(1)
            }
            KeyCode::Down | KeyCode::Char('j') => {
                self.list_selected = (self.list_selected + 1).min(n.saturating_sub(1));
            }
            KeyCode::Home | KeyCode::Char('g') => self.list_selected = 0,
            KeyCode::End | KeyCode::Char('G') => self.list_selected = n.saturating_sub(1),
            KeyCode::Enter | KeyCode::Right | KeyCode::Char('l') => {
                if let Some(s) = self.conversations.get(self.list_selected) {
                    let id = s.id;
                    self.focus = Focus::Compose;
                    if self.open.as_ref().is_none_or(|o| o.id != id) {
                        self.actions.push(Action::Open(id));
                    }
                }
            }
            KeyCode::Tab if self.open.is_some() => self.focus = Focus::Compose,
            KeyCode::Char('n') => {
                self.focus = Focus::NewConversation;
                self.input.take();
            }
            _ => {}
        }
    }

    fn timeline_key(&mut self, key: KeyEvent, now: Instant) {
        if self.common_key(key) {
            return;
        }
        match key.code {
            KeyCode::Up | KeyCode::Char('k') => self.select_by(-1),
            KeyCode::Down | KeyCode::Char('j') => self.select_by(1),
            KeyCode::PageUp => self.page(true),
            KeyCode::PageDown => self.page(false),
            KeyCode::Home | KeyCode::Char('g') => self.select_at(Some(0)),
            KeyCode::End | KeyCode::Char('G') => self.follow(),
            KeyCode::Char('r') => self.retry_selected(now),
            KeyCode::Char('d') => self.discard_selected(now),
            KeyCode::Char('e') => self.start_edit(now),
            KeyCode::Char('x') | KeyCode::Delete => self.ask_delete(now),
            KeyCode::Char('+') => self.ask_react(now),
            KeyCode::Char('i') | KeyCode::Enter | KeyCode::Tab => {
                self.focus = Focus::Compose;
                if let Some(o) = self.open.as_mut() {
                    o.selected = None;
                }
            }
            KeyCode::Esc | KeyCode::Left => {
                self.focus = Focus::List;
                if let Some(o) = self.open.as_mut() {
                    o.selected = None;
                }
            }
            _ => {}
        }
    }

    fn compose_key(&mut self, key: KeyEvent, now: Instant) {
        let m = key.modifiers;
        let newline = (key.code == KeyCode::Enter
            && m.intersects(KeyModifiers::ALT | KeyModifiers::SHIFT | KeyModifiers::CONTROL))
            || (key.code == KeyCode::Char('j') && m.contains(KeyModifiers::CONTROL));
        if newline {
            self.input.insert('\n');
            return;
        }
        match key.code {
            KeyCode::Enter => self.submit(now),
            KeyCode::Esc if self.editing.is_some() => self.cancel_edit(),
            // While editing, the input box keeps the focus until Enter or Esc.
            KeyCode::Tab if self.editing.is_some() => {}
            KeyCode::Esc => {
                if self.focus == Focus::NewConversation || self.open.is_none() {
                    self.input.take();
                    self.focus = Focus::List;
                } else {
                    self.focus = Focus::Timeline;
                    self.select_at(None);
                }
            }
            KeyCode::Tab => self.focus = Focus::List,
            KeyCode::Char('u') if m.contains(KeyModifiers::CONTROL) => {
                self.input.take();
            }
            KeyCode::Char('a') if m.contains(KeyModifiers::CONTROL) => self.input.home(),
            KeyCode::Char('e') if m.contains(KeyModifiers::CONTROL) => self.input.end(),
            KeyCode::Char(c) if !m.intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) => {
                self.input.insert(c);
            }
            KeyCode::Backspace => self.input.backspace(),
            KeyCode::Delete => self.input.delete(),
            KeyCode::Left => self.input.left(),
            KeyCode::Right => self.input.right(),
            KeyCode::Home => self.input.home(),
            KeyCode::End => self.input.end(),
            KeyCode::Up
                if self.input.on_first_line()
                    && self.focus == Focus::Compose
                    && self.editing.is_none()
                    && self.open.is_some() =>
            {
                self.focus = Focus::Timeline;
                self.select_at(None);
            }
            KeyCode::Up => self.input.vertical(true),
            KeyCode::Down => self.input.vertical(false),
            KeyCode::PageUp => self.page(true),
            KeyCode::PageDown => self.page(false),
            _ => {}
        }
    }

    fn submit(&mut self, now: Instant) {
        if self.editing.is_some() {
            self.submit_edit(now);
            return;
        }
        if self.input.text().trim().is_empty() {
            return;
        }
        if self.focus == Focus::NewConversation {
            let text = self.input.take();
            let mut words = text.split_whitespace().map(str::to_string);
            let title = words.next().unwrap_or_default();
            let members: Vec<String> = words.collect();
            if members.is_empty() {
                self.notify("type a title, then the members' account names", now);
                self.input.set(text);
                return;
            }
            self.actions.push(Action::Create { title, members });
            self.focus = Focus::List;
            return;
        }
        let Some(open) = self.open.as_mut() else {
            self.notify("open a conversation first (Tab, then Enter)", now);
            return;
        };
        let body = self.input.take();
        // Show the newest messages, where this one appears.
        open.anchor = None;
        open.selected = None;
        if !open.window.attached() {
            self.actions.push(Action::Reload(open.id));
        }
        self.actions.push(Action::Send {
            conversation: open.id,
            body,
        });
    }

    /// The text of a message the client refused: give it back for editing.
    pub fn send_refused(&mut self, body: String, why: &str, now: Instant) {
        if self.input.is_empty() {
            self.input.set(body);
        }
        self.notify(format!("not sent: {why}"), now);
    }

    fn select_at(&mut self, index: Option<usize>) {
        let Some(open) = self.open.as_mut() else {
            return;
        };
        let items = open.window.items();
        let at = index.unwrap_or(items.len().saturating_sub(1));
        open.selected = items.get(at).map(|i| i.id);
    }

    fn select_by(&mut self, delta: isize) {
        let Some(open) = self.open.as_ref() else {
            return;
        };
        let len = open.window.items().len();
        let current = open
            .selected
            .and_then(|s| open.window.index_of(s))
            .unwrap_or(len.saturating_sub(1));
        let next = current
            .saturating_add_signed(delta)
            .min(len.saturating_sub(1));
        self.select_at(Some(next));
    }

    /// Page up or down: the top item becomes the bottom one, or back.
    fn page(&mut self, up: bool) {
        let focus = self.focus;
        let Some(open) = self.open.as_mut() else {
            return;
        };
        let items = open.window.items();
        if items.is_empty() {
            return;
        }
        let last = items.len() - 1;
        let Visible { top, bottom, .. } = open.visible;
        let target = if up {
            top.min(bottom.saturating_sub(1))
        } else {
            (bottom + bottom.saturating_sub(top).max(1)).min(last)
        };
        if !up && target == last && open.window.attached() {
            open.anchor = None;
        } else {
            open.anchor = Some(items[target].id);
        }
        if focus == Focus::Timeline {
            open.selected = Some(items[target].id);
        }
    }

    /// Back to the newest messages, following new ones.
    fn follow(&mut self) {
        let Some(open) = self.open.as_mut() else {
            return;
        };
        open.anchor = None;
        if !open.window.attached() {
            self.actions.push(Action::Reload(open.id));
        }
        self.select_at(None);
    }
}

#[cfg(test)]
mod tests;
