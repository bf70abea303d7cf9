#![allow(clippy::unwrap_used)]

use super::*;
use chatsync_client::model::{PendingAction, Reaction};
use chatsync_client::{Failure, Status};
use chatsync_protocol::{ActionKind, ErrorCode, UserId};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// The account of the app under test.
fn me() -> UserId {
    UserId(uuid::Uuid::from_u128(7))
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn with(code: KeyCode, m: KeyModifiers) -> KeyEvent {
    KeyEvent::new(code, m)
}

fn msg(conv: ConversationId, seq: Option<u64>, own: bool, status: Status) -> Item {
    Item::message(
        MessageId::new(),
        conv,
        if own { me() } else { UserId::new() },
        if own { "me" } else { "bob" }.into(),
        "hi".into(),
        own,
        status,
        seq.map(Seq),
        1,
        0,
        None,
    )
}

fn type_str(app: &mut App, s: &str, now: Instant) {
    for c in s.chars() {
        app.key(key(KeyCode::Char(c)), now);
    }
}

/// An app with one conversation open and focus in the input box.
fn open_app(items: Vec<Item>) -> (App, ConversationId) {
    let now = Instant::now();
    let conv = items.first().map(|i| i.conversation).unwrap_or_default();
    let mut app = App::new(me(), "me", now);
    app.set_conversations(vec![Summary {
        id: conv,
        title: "room".into(),
        members: vec!["me".into(), "bob".into()],
        last: None,
        unread: 0,
    }]);
    app.key(key(KeyCode::Enter), now);
    assert_eq!(app.take_actions(), vec![Action::Open(conv)]);
    app.opened(conv, items);
    app.take_actions();
    (app, conv)
}

#[test]
fn enter_sends_and_alt_enter_makes_a_new_line() {
    let (mut app, conv) = open_app(vec![]);
    let now = Instant::now();
    type_str(&mut app, "one", now);
    app.key(with(KeyCode::Enter, KeyModifiers::ALT), now);
    type_str(&mut app, "two", now);
    app.key(with(KeyCode::Char('j'), KeyModifiers::CONTROL), now);
    type_str(&mut app, "three", now);
    app.key(key(KeyCode::Enter), now);
    assert_eq!(
        app.take_actions(),
        vec![Action::Send {
            conversation: conv,
            body: "one\ntwo\nthree".into()
        }]
    );
    assert!(app.input.is_empty());
    // Blank input sends nothing.
    type_str(&mut app, "  ", now);
    app.key(key(KeyCode::Enter), now);
    assert!(app.take_actions().is_empty());
}

#[test]
fn q_types_in_the_input_but_quits_elsewhere() {
    let (mut app, _) = open_app(vec![]);
    let now = Instant::now();
    type_str(&mut app, "q?", now);
    assert!(!app.quit && !app.help);
    assert_eq!(app.input.text(), "q?");
    app.key(key(KeyCode::Esc), now);
    assert_eq!(app.focus, Focus::Timeline);
    app.key(key(KeyCode::Char('?')), now);
    assert!(app.help);
    app.key(key(KeyCode::Char('x')), now);
    assert!(!app.help);
    app.key(key(KeyCode::Char('q')), now);
    assert!(app.quit);
}

#[test]
fn ctrl_c_quits_from_anywhere() {
    let (mut app, _) = open_app(vec![]);
    app.key(
        with(KeyCode::Char('c'), KeyModifiers::CONTROL),
        Instant::now(),
    );
    assert!(app.quit);
}

#[test]
fn retry_and_discard_act_on_the_selected_failed_message() {
    let conv = ConversationId::new();
    let ok = msg(conv, Some(1), true, Status::Success);
    let failed = msg(conv, None, true, Status::Failed);
    let (mut app, _) = open_app(vec![ok.clone(), failed.clone()]);
    let now = Instant::now();
    app.key(key(KeyCode::Esc), now); // browse: newest selected
    assert_eq!(app.selected_item().unwrap().id, failed.id);
    app.key(key(KeyCode::Char('r')), now);
    app.key(key(KeyCode::Char('d')), now);
    assert_eq!(
        app.take_actions(),
        vec![Action::Retry(failed.id), Action::Discard(failed.id)]
    );
    app.key(key(KeyCode::Up), now);
    assert_eq!(app.selected_item().unwrap().id, ok.id);
    app.key(key(KeyCode::Char('r')), now);
    assert!(app.take_actions().is_empty());
    assert!(app.notice(now).is_some());
}

#[test]
fn changes_move_statuses_live() {
    let conv = ConversationId::new();
    let m = msg(conv, None, true, Status::Sending);
    let (mut app, _) = open_app(vec![m.clone()]);
    for status in [Status::InFlight, Status::Success] {
        app.apply(
            conv,
            TimelineChange::StatusChanged {
                id: m.id,
                status,
                failure: None,
            },
        );
        let open = app.open.as_ref().unwrap();
        assert_eq!(open.window.items()[0].status, status);
    }
}

/// What the view reports after drawing items `top..=bottom`.
fn drawn(app: &mut App, top: usize, bottom: usize) {
    app.open.as_mut().unwrap().visible = Visible {
        top,
        bottom,
        shown: true,
    };
    app.after_draw();
}

#[test]
fn messages_on_screen_are_marked_read_once() {
    let conv = ConversationId::new();
    let (mut app, _) = open_app(vec![
        msg(conv, Some(6), false, Status::Success),
        msg(conv, Some(7), false, Status::Success),
    ]);
    // Not drawn yet: nothing is read.
    app.after_draw();
    assert!(app.take_actions().is_empty());
    drawn(&mut app, 0, 1);
    let read = |seq| Action::MarkRead {
        conversation: conv,
        seq: Seq(seq),
    };
    assert_eq!(app.take_actions(), vec![read(7)]);
    // The same screen again asks nothing.
    drawn(&mut app, 0, 1);
    assert!(app.take_actions().is_empty());
    // A new message while the newest are on screen: read up to it.
    app.apply(
        conv,
        TimelineChange::Upserted(msg(conv, Some(8), false, Status::Success)),
    );
    drawn(&mut app, 0, 2);
    assert_eq!(app.take_actions(), vec![read(8)]);
    // One that arrives below the screen (scrolled up) is not read.
    app.apply(
        conv,
        TimelineChange::Upserted(msg(conv, Some(9), false, Status::Success)),
    );
    drawn(&mut app, 0, 2);
    assert!(app.take_actions().is_empty());
    // Hidden (behind the list or the help): not read either.
    app.open.as_mut().unwrap().visible.shown = false;
    app.after_draw();
    assert!(app.take_actions().is_empty());
}

#[test]
fn a_mark_the_client_clamped_is_asked_again() {
    let conv = ConversationId::new();
    let (mut app, _) = open_app(vec![msg(conv, Some(9), false, Status::Success)]);
    drawn(&mut app, 0, 0);
    assert_eq!(app.take_actions().len(), 1);
    // Storage had a gap below 9: the client kept the mark at its cursor 5.
    app.read_stored(conv, Seq(5), Seq(5));
    drawn(&mut app, 0, 0);
    assert!(app.take_actions().is_empty(), "nothing new stored yet");
    // The gap filled: the mark is asked again.
    app.read_stored(conv, Seq(5), Seq(9));
    drawn(&mut app, 0, 0);
    assert_eq!(
        app.take_actions(),
        vec![Action::MarkRead {
            conversation: conv,
            seq: Seq(9)
        }]
    );
}

/// An app browsing `items`, the last one selected.
fn browsing(items: Vec<Item>) -> (App, ConversationId) {
    let (mut app, conv) = open_app(items);
    app.key(key(KeyCode::Esc), Instant::now());
    assert_eq!(app.focus, Focus::Timeline);
    (app, conv)
}

#[test]
fn e_edits_an_own_message_in_the_input_box() {
    let conv = ConversationId::new();
    let mine = msg(conv, Some(1), true, Status::Success);
    let (mut app, _) = browsing(vec![mine.clone()]);
    let now = Instant::now();
    // A draft typed before is kept aside.
    app.input.set("half-typed draft".into());
    app.key(key(KeyCode::Char('e')), now);
    assert_eq!(app.focus, Focus::Compose);
    assert_eq!(app.input.text(), "hi");
    assert_eq!(app.editing.as_ref().unwrap().message, mine.id);
    type_str(&mut app, " there", now);
    app.key(key(KeyCode::Enter), now);
    assert_eq!(
        app.take_actions(),
        vec![Action::Edit {
            message: mine.id,
            body: "hi there".into()
        }]
    );
    assert!(app.editing.is_none());
    assert_eq!(app.input.text(), "half-typed draft");
    assert_eq!(app.focus, Focus::Timeline);
    assert_eq!(app.selected_item().unwrap().id, mine.id);
}

#[test]
fn esc_cancels_an_edit_and_unchanged_text_sends_nothing() {
    let conv = ConversationId::new();
    let mine = msg(conv, Some(1), true, Status::Success);
    let (mut app, _) = browsing(vec![mine]);
    let now = Instant::now();
    app.key(key(KeyCode::Char('e')), now);
    type_str(&mut app, "!!!", now);
    app.key(key(KeyCode::Esc), now);
    assert!(app.editing.is_none());
    assert!(app.input.is_empty());
    assert_eq!(app.focus, Focus::Timeline);
    // Tab does not leave an edit half-done; Enter on the same text is a no-op.
    app.key(key(KeyCode::Char('e')), now);
    app.key(key(KeyCode::Tab), now);
    assert!(app.editing.is_some());
    app.key(key(KeyCode::Enter), now);
    assert!(app.take_actions().is_empty());
    // An empty edit is refused with a hint.
    app.key(key(KeyCode::Char('e')), now);
    app.key(with(KeyCode::Char('u'), KeyModifiers::CONTROL), now);
    app.key(key(KeyCode::Enter), now);
    assert!(app.take_actions().is_empty());
    assert!(app.editing.is_some());
    assert!(app.notice(now).unwrap().contains("x deletes"));
}

#[test]
fn only_own_messages_can_be_edited_or_deleted() {
    let conv = ConversationId::new();
    let theirs = msg(conv, Some(1), false, Status::Success);
    let (mut app, _) = browsing(vec![theirs]);
    let now = Instant::now();
    app.key(key(KeyCode::Char('e')), now);
    assert!(app.editing.is_none());
    assert_eq!(app.focus, Focus::Timeline);
    assert!(app.notice(now).unwrap().contains("own"));
    app.key(key(KeyCode::Char('x')), now);
    assert!(app.prompt.is_none());
    assert!(app.take_actions().is_empty());
}

#[test]
fn a_refused_edit_gives_the_text_back() {
    let conv = ConversationId::new();
    let mine = msg(conv, Some(1), true, Status::Success);
    let (mut app, _) = browsing(vec![mine.clone()]);
    let now = Instant::now();
    app.edit_refused(mine.id, "too long".into(), "over the limit", now);
    assert_eq!(app.input.text(), "too long");
    assert_eq!(app.editing.as_ref().unwrap().message, mine.id);
    assert!(app.notice(now).unwrap().contains("over the limit"));
}

#[test]
fn x_and_delete_ask_before_deleting() {
    let conv = ConversationId::new();
    let mine = msg(conv, Some(1), true, Status::Success);
    let (mut app, _) = browsing(vec![mine.clone()]);
    let now = Instant::now();
    app.key(key(KeyCode::Char('x')), now);
    assert!(matches!(app.prompt, Some(Prompt::Delete(id)) if id == mine.id));
    // Anything but y keeps it (q does not quit here).
    app.key(key(KeyCode::Char('q')), now);
    assert!(app.prompt.is_none() && !app.quit);
    assert!(app.take_actions().is_empty());
    app.key(key(KeyCode::Delete), now);
    assert!(app.prompt.is_some());
    app.key(key(KeyCode::Char('y')), now);
    assert_eq!(app.take_actions(), vec![Action::Delete(mine.id)]);
    assert!(app.prompt.is_none());
}

#[test]
fn plus_toggles_this_accounts_reaction() {
    let conv = ConversationId::new();
    let mut theirs = msg(conv, Some(1), false, Status::Success);
    theirs.reactions = vec![Reaction {
        emoji: "👍".into(),
        users: vec![UserId::new(), me()],
    }];
    let (mut app, _) = browsing(vec![theirs.clone()]);
    let now = Instant::now();
    let react = |emoji: &str, on| Action::React {
        message: theirs.id,
        emoji: emoji.into(),
        on,
    };
    // 1 is 👍, already set by this account: off.
    app.key(key(KeyCode::Char('+')), now);
    app.key(key(KeyCode::Char('1')), now);
    assert!(app.prompt.is_none());
    // 2 is ❤️, not set: on.
    app.key(key(KeyCode::Char('+')), now);
    app.key(key(KeyCode::Char('2')), now);
    // A typed emoji, then Enter.
    app.key(key(KeyCode::Char('+')), now);
    type_str(&mut app, "🎉", now);
    app.key(key(KeyCode::Enter), now);
    // Esc cancels.
    app.key(key(KeyCode::Char('+')), now);
    app.key(key(KeyCode::Esc), now);
    assert_eq!(
        app.take_actions(),
        vec![react("👍", false), react("❤️", true), react("🎉", true)]
    );
    assert!(app.prompt.is_none());
    assert_eq!(app.focus, Focus::Timeline);
}

#[test]
fn another_members_reaction_is_not_this_accounts() {
    // Another member's 👍 does not count as this account's.
    let conv = ConversationId::new();
    let mut theirs = msg(conv, Some(1), false, Status::Success);
    theirs.reactions = vec![Reaction {
        emoji: "👍".into(),
        users: vec![UserId::new()],
    }];
    let (mut app, _) = browsing(vec![theirs.clone()]);
    let now = Instant::now();
    app.key(key(KeyCode::Char('+')), now);
    app.key(key(KeyCode::Char('1')), now);
    assert_eq!(
        app.take_actions(),
        vec![Action::React {
            message: theirs.id,
            emoji: "👍".into(),
            on: true
        }]
    );
}

fn failed_action(kind: ActionKind, body: &str) -> PendingAction {
    PendingAction {
        id: MessageId::new(),
        kind,
        body: body.into(),
        status: Status::Failed,
        failure: Some(Failure {
            code: ErrorCode::NotMember,
            message: "refused".into(),
            retryable: true,
        }),
    }
}

#[test]
fn retry_and_discard_act_on_the_latest_failed_action() {
    let conv = ConversationId::new();
    let mut mine = msg(conv, Some(1), true, Status::Success);
    let older = failed_action(ActionKind::React { on: true }, "👍");
    let newer = failed_action(ActionKind::Edit, "new text");
    let mut sending = failed_action(ActionKind::Delete, "");
    sending.status = Status::Sending;
    sending.failure = None;
    mine.pending = vec![older, newer.clone(), sending];
    let (mut app, _) = browsing(vec![mine]);
    let now = Instant::now();
    app.key(key(KeyCode::Char('r')), now);
    app.key(key(KeyCode::Char('d')), now);
    assert_eq!(
        app.take_actions(),
        vec![Action::Retry(newer.id), Action::Discard(newer.id)]
    );
}

#[test]
fn scrolling_near_the_top_asks_for_an_older_page() {
    let conv = ConversationId::new();
    let items: Vec<Item> = (1000..1000 + PAGE as u64)
        .map(|s| msg(conv, Some(s), false, Status::Success))
        .collect();
    let (mut app, _) = open_app(items);
    drawn(&mut app, 3, 20);
    assert_eq!(
        app.take_actions(),
        vec![
            Action::MarkRead {
                conversation: conv,
                seq: Seq(1020)
            },
            Action::LoadOlder {
                conversation: conv,
                before: Seq(1000)
            }
        ]
    );
    // Only once while it loads.
    app.after_draw();
    assert!(app.take_actions().is_empty());
}

#[test]
fn a_refused_send_gives_the_text_back() {
    let (mut app, _) = open_app(vec![]);
    let now = Instant::now();
    app.send_refused("long text".into(), "too large", now);
    assert_eq!(app.input.text(), "long text");
    assert!(app.notice(now).unwrap().contains("too large"));
}

#[test]
fn new_conversation_needs_a_title_and_members() {
    let now = Instant::now();
    let mut app = App::new(me(), "me", now);
    app.key(key(KeyCode::Char('n')), now);
    assert_eq!(app.focus, Focus::NewConversation);
    type_str(&mut app, "lunch bob carol", now);
    app.key(key(KeyCode::Enter), now);
    assert_eq!(
        app.take_actions(),
        vec![Action::Create {
            title: "lunch".into(),
            members: vec!["bob".into(), "carol".into()]
        }]
    );
}

#[test]
fn reconnect_countdown() {
    let now = Instant::now();
    let mut app = App::new(me(), "me", now);
    app.set_connection(ConnectionState::Reconnecting { in_ms: 3000 }, now);
    let left = app
        .connection
        .retry_in(now + Duration::from_millis(1000))
        .unwrap();
    assert_eq!(left, Duration::from_millis(2000));
    app.set_connection(ConnectionState::Reconnecting { in_ms: u64::MAX }, now);
    assert_eq!(app.connection.retry_in(now), None);
}
