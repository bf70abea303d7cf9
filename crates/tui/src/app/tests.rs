#![allow(clippy::unwrap_used)]

use super::*;
use chatsync_protocol::UserId;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

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
        UserId::new(),
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
    let mut app = App::new("me", now);
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

#[test]
fn viewing_the_newest_messages_marks_them_seen() {
    let conv = ConversationId::new();
    let (mut app, _) = open_app(vec![msg(conv, Some(7), false, Status::Success)]);
    assert_eq!(app.seen.get(&conv), Some(&Seq(7)));
    app.apply(
        conv,
        TimelineChange::Upserted(msg(conv, Some(8), false, Status::Success)),
    );
    assert_eq!(
        app.take_actions(),
        vec![Action::MarkSeen {
            conversation: conv,
            seq: Seq(8)
        }]
    );
}

#[test]
fn scrolling_near_the_top_asks_for_an_older_page() {
    let conv = ConversationId::new();
    let items: Vec<Item> = (1000..1000 + PAGE as u64)
        .map(|s| msg(conv, Some(s), false, Status::Success))
        .collect();
    let (mut app, _) = open_app(items);
    app.open.as_mut().unwrap().visible = Visible { top: 3, bottom: 20 };
    app.after_draw();
    assert_eq!(
        app.take_actions(),
        vec![Action::LoadOlder {
            conversation: conv,
            before: Seq(1000)
        }]
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
    let mut app = App::new("me", now);
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
    let mut app = App::new("me", now);
    app.set_connection(ConnectionState::Reconnecting { in_ms: 3000 }, now);
    let left = app
        .connection
        .retry_in(now + Duration::from_millis(1000))
        .unwrap();
    assert_eq!(left, Duration::from_millis(2000));
    app.set_connection(ConnectionState::Reconnecting { in_ms: u64::MAX }, now);
    assert_eq!(app.connection.retry_in(now), None);
}
