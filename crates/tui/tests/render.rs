//! Rendering tests on ratatui's `TestBackend`: what a person would see for
//! each status, a failure reason, the connection indicator in each state,
//! wide or right-to-left text that must not break the layout, and the
//! results of actions (edited, deleted, reactions, a refused action).
#![allow(clippy::unwrap_used, missing_docs)]

use chatsync_client::model::{PendingAction, Reaction};
use chatsync_client::{ConnectionState, Failure, Item, Status, TimelineChange};
use chatsync_protocol::{ActionKind, ConversationId, ErrorCode, MessageId, Seq, UserId};
use chatsync_tui::app::{App, Focus, Summary};
use chatsync_tui::text::grapheme_width;
use chatsync_tui::view;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::style::Color;
use ratatui::Terminal;
use std::time::{Duration, Instant};

const ME: &str = "alice";

/// alice's account id.
fn me() -> UserId {
    UserId(uuid::Uuid::from_u128(1))
}

fn msg(conv: ConversationId, seq: u64, own: bool, status: Status, body: &str) -> Item {
    let mut item = Item::message(
        MessageId::new(),
        conv,
        if own { me() } else { UserId::new() },
        if own { ME } else { "bob" }.into(),
        body.into(),
        own,
        status,
        (status != Status::Sending && status != Status::Failed).then_some(Seq(seq)),
        seq,
        1_700_000_000_000 + i64::try_from(seq).unwrap() * 60_000,
        None,
    );
    if status == Status::Failed {
        item.failure = Some(Failure {
            code: ErrorCode::NotMember,
            message: "you are not a member of this conversation".into(),
            retryable: false,
        });
    }
    item
}

/// An app with one conversation holding `items`, open.
fn app_with(items: Vec<Item>, state: ConnectionState) -> App {
    let now = Instant::now();
    let conv = items[0].conversation;
    let mut app = App::new(me(), ME, now);
    app.set_connection(state, now);
    app.set_conversations(vec![Summary {
        id: conv,
        title: "lunch".into(),
        members: vec![ME.into(), "bob".into()],
        last: items.last().cloned(),
        unread: 2,
    }]);
    app.key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE), now);
    app.take_actions();
    app.opened(conv, items);
    app
}

fn render(app: &mut App, w: u16, h: u16) -> Buffer {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
    let now = Instant::now();
    terminal.draw(|f| view::draw(f, app, now)).unwrap();
    terminal.backend().buffer().clone()
}

/// A row as a person sees it: each grapheme once (the cell a wide one
/// hides is skipped), plus its width in cells.
fn row(buf: &Buffer, y: u16) -> (String, usize) {
    let mut text = String::new();
    let mut width = 0;
    let mut x = 0;
    while x < buf.area.width {
        let sym = buf[(x, y)].symbol();
        let w = grapheme_width(sym).max(1);
        text.push_str(sym);
        width += w;
        x += u16::try_from(w).unwrap();
    }
    (text, width)
}

fn rows(buf: &Buffer) -> Vec<String> {
    (0..buf.area.height).map(|y| row(buf, y).0).collect()
}

/// The first row whose conversation pane (right of the list, when both
/// panes are shown) contains `needle`, and that pane's text.
fn find_row(buf: &Buffer, needle: &str) -> (u16, String) {
    for y in 0..buf.area.height {
        let (text, _) = row(buf, y);
        let pane = match text.split_once('│') {
            Some((_, right)) if buf.area.width >= 70 => right.to_string(),
            _ => text,
        };
        if pane.contains(needle) {
            return (y, pane);
        }
    }
    panic!("{needle:?} is not on screen:\n{}", rows(buf).join("\n"));
}

/// Colour of the first cell of `glyph` on row `y`.
fn colour_of(buf: &Buffer, y: u16, glyph: &str) -> Color {
    let first = glyph.chars().next().unwrap().to_string();
    let x = (0..buf.area.width)
        .find(|x| buf[(*x, y)].symbol() == first)
        .unwrap_or_else(|| panic!("no {glyph} on row {y}"));
    buf[(x, y)].fg
}

#[test]
fn each_status_shows_its_glyph_and_colour() {
    let conv = ConversationId::new();
    let items = vec![
        msg(conv, 1, false, Status::Success, "msg-from-bob"),
        msg(conv, 2, true, Status::InFlight, "msg-in-flight"),
        msg(conv, 3, true, Status::Success, "msg-success"),
        msg(conv, 4, true, Status::Read, "msg-read"),
        msg(conv, 5, true, Status::Sending, "msg-sending"),
        msg(conv, 6, true, Status::Failed, "msg-failed"),
    ];
    let mut app = app_with(items, ConnectionState::Connected);
    let buf = render(&mut app, 120, 30);

    let glyph_of = |body: &str| -> (u16, String) {
        let (y, text) = find_row(&buf, body);
        let before = text.split(body).next().unwrap().trim_end().to_string();
        (y, before)
    };
    let (y, text) = glyph_of("msg-sending");
    assert!(text.ends_with('◌'), "{text}");
    assert_eq!(colour_of(&buf, y, "◌"), Color::Yellow);
    let (y, text) = glyph_of("msg-in-flight");
    assert!(text.ends_with(" ✓"), "{text}");
    assert_eq!(colour_of(&buf, y, "✓"), Color::Cyan);
    let (y, text) = glyph_of("msg-success");
    assert!(text.ends_with("✓✓"), "{text}");
    assert_eq!(colour_of(&buf, y, "✓"), Color::Green);
    let (y, text) = glyph_of("msg-read");
    assert!(text.ends_with("✓✓"), "{text}");
    assert_eq!(colour_of(&buf, y, "✓"), Color::LightBlue);
    let (y, text) = glyph_of("msg-failed");
    assert!(text.ends_with('!'), "{text}");
    assert_eq!(colour_of(&buf, y, "!"), Color::Red);
    // Others' messages carry no status glyph.
    let (_, text) = glyph_of("msg-from-bob");
    assert!(text.ends_with("bob"), "{text}");
}

#[test]
fn a_failed_message_shows_its_reason_and_the_keys() {
    let conv = ConversationId::new();
    let mut app = app_with(
        vec![msg(conv, 1, true, Status::Failed, "refused one")],
        ConnectionState::Connected,
    );
    let buf = render(&mut app, 120, 20);
    let (y, _) = find_row(&buf, "refused one");
    let (y2, reason) = find_row(&buf, "failed: you are not a member of this conversation");
    assert_eq!(y2, y + 1, "the reason is right under the message");
    let (more, _) = row(&buf, y2 + 1);
    let note = format!(
        "{} {}",
        reason.trim(),
        more.split_once('│').unwrap().1.trim()
    );
    assert!(note.contains("retrying will not help"), "{note}");
    assert!(note.contains("d discard"), "{note}");
}

#[test]
fn a_retryable_failure_offers_retry() {
    let conv = ConversationId::new();
    let mut m = msg(conv, 1, true, Status::Failed, "limited");
    m.failure = Some(Failure {
        code: ErrorCode::RateLimited,
        message: "too many messages; retry budget spent".into(),
        retryable: true,
    });
    let mut app = app_with(vec![m], ConnectionState::Connected);
    let buf = render(&mut app, 120, 20);
    let (_, line) = find_row(&buf, "retry budget spent");
    assert!(line.contains("r retry · d discard"), "{line}");
}

#[test]
fn a_waiting_message_says_it_waits_not_that_it_failed() {
    let conv = ConversationId::new();
    let items = vec![msg(conv, 1, true, Status::Sending, "queued offline")];
    let mut app = app_with(items.clone(), ConnectionState::Reconnecting { in_ms: 4000 });
    let buf = render(&mut app, 120, 20);
    let (y, text) = find_row(&buf, "queued offline");
    assert!(text.contains('◌'));
    let (y2, _) = find_row(&buf, "waiting for the connection");
    assert_eq!(y2, y + 1);
    assert!(!rows(&buf).join("\n").contains("failed"));
    // Online, a Sending message is just Sending.
    let mut app = app_with(items, ConnectionState::Connected);
    let buf = render(&mut app, 120, 20);
    assert!(!rows(&buf).join("\n").contains("waiting for the connection"));
}

#[test]
fn connection_indicator_in_each_state() {
    let conv = ConversationId::new();
    let items = vec![msg(conv, 1, false, Status::Success, "x")];
    let cases = [
        (ConnectionState::Connected, "● connected", Color::Green),
        (ConnectionState::Connecting, "◌ connecting…", Color::Yellow),
        (
            ConnectionState::Reconnecting { in_ms: 3000 },
            "○ offline · reconnecting in 3s",
            Color::Red,
        ),
    ];
    for (state, text, bg) in cases {
        let mut app = app_with(items.clone(), state);
        let buf = render(&mut app, 100, 20);
        let (bar, _) = row(&buf, 19);
        assert!(bar.contains(text), "{state:?}: status bar is {bar:?}");
        assert_eq!(buf[(1, 19)].bg, bg, "{state:?}");
    }
    // The countdown runs down.
    let mut app = app_with(items.clone(), ConnectionState::Reconnecting { in_ms: 3000 });
    app.connection.since -= Duration::from_millis(1500);
    let buf = render(&mut app, 100, 20);
    assert!(row(&buf, 19).0.contains("reconnecting in 2s"));
    // A refused session: offline for good, with what to do.
    let mut app = app_with(items, ConnectionState::Reconnecting { in_ms: u64::MAX });
    app.session_rejected = true;
    let buf = render(&mut app, 100, 20);
    assert!(row(&buf, 19).0.contains("offline · session refused"));
}

#[test]
fn indicator_stays_visible_on_a_small_screen() {
    let conv = ConversationId::new();
    let items = (1..50)
        .map(|s| msg(conv, s, false, Status::Success, "many lines"))
        .collect();
    let mut app = app_with(items, ConnectionState::Reconnecting { in_ms: 9000 });
    let buf = render(&mut app, 40, 8);
    assert!(row(&buf, 7).0.contains("○ offline · reconnecting in 9s"));
}

#[test]
fn wide_characters_do_not_break_the_layout() {
    let conv = ConversationId::new();
    let bodies = [
        "日本語のテキストはスペースなしで長く続きますので途中で折り返す必要があります。中文也一样需要正确地换行。",
        "emoji 👋👋👋👋👋👋👋👋👋👋👋👋👋👋👋👋👋👋👋👋 family 👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵🇧🇷 done",
        "עברית: שלום לכולם, זו הודעה ארוכה מימין לשמאל — العربية: مرحبا بالجميع، هذه رسالة طويلة",
        "combining: e\u{301}e\u{301}e\u{301} zero\u{200B}width \u{202E}override\u{202C} tab\there \u{1b}[31mescape",
    ];
    let mut items: Vec<Item> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| msg(conv, i as u64 + 1, i % 2 == 0, Status::Success, b))
        .collect();
    items[1].sender_name = "李小龍🐉長い名前".into();
    for (w, h) in [(120u16, 40u16), (80, 30), (72, 40), (50, 40), (30, 40)] {
        let mut app = app_with(items.clone(), ConnectionState::Connected);
        let buf = render(&mut app, w, h);
        let all = rows(&buf);
        for y in 0..h {
            let (text, width) = row(&buf, y);
            assert_eq!(
                width,
                usize::from(w),
                "row {y} at {w}x{h} is {width} wide: {text:?}"
            );
            assert!(
                !text.contains('\u{1b}') && !text.contains('\t'),
                "control character drawn on row {y}: {text:?}"
            );
        }
        if w >= 70 {
            // The list pane's border stays in its column on every row.
            for y in 0..h - 1 {
                assert_eq!(
                    buf[(29, y)].symbol(),
                    "│",
                    "border broken on row {y}:\n{}",
                    all.join("\n")
                );
            }
        }
        // Every grapheme of each message is on screen, in order.
        let screen: String = all
            .concat()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        for b in &bodies[..3] {
            let want: String = b.chars().filter(|c| !c.is_whitespace()).collect();
            assert!(
                screen.contains(&want) || wrapped_contains(&all, b),
                "{b:?} not fully shown at {w}x{h}:\n{}",
                all.join("\n")
            );
        }
    }
}

/// Whether the body's visible graphemes appear in order across the rows
/// (they are split by the indentation of wrapped lines).
fn wrapped_contains(rows: &[String], body: &str) -> bool {
    use unicode_segmentation::UnicodeSegmentation;
    let screen: Vec<&str> = rows
        .iter()
        .flat_map(|r| r.graphemes(true))
        .filter(|g| !g.trim().is_empty())
        .collect();
    let want: Vec<&str> = body
        .graphemes(true)
        .filter(|g| !g.trim().is_empty())
        .collect();
    screen.windows(want.len()).any(|w| w == want.as_slice()) || {
        // Allow the wrapped lines' indentation between graphemes.
        let mut it = screen.iter();
        want.iter().all(|g| it.any(|s| s == g))
    }
}

#[test]
fn long_lines_wrap_under_the_text_column() {
    let conv = ConversationId::new();
    let long = "word ".repeat(60);
    let mut app = app_with(
        vec![msg(conv, 1, true, Status::Success, &long)],
        ConnectionState::Connected,
    );
    let buf = render(&mut app, 100, 30);
    let (y, first) = find_row(&buf, "✓✓ word");
    let col = |t: &str| chatsync_tui::text::width(t.split("word").next().unwrap());
    let (next, _) = row(&buf, y + 1);
    let next = next.split_once('│').unwrap().1.to_string();
    assert_eq!(col(&next), col(&first), "wrapped line is indented:\n{next}");
    let words: usize = rows(&buf)
        .iter()
        .filter_map(|r| r.split_once('│'))
        .map(|(_, pane)| pane.matches("word").count())
        .sum();
    assert_eq!(words, 60);
}

#[test]
fn resize_redraws_for_the_new_size() {
    let conv = ConversationId::new();
    let mut app = app_with(
        vec![msg(
            conv,
            1,
            true,
            Status::Success,
            "still here after resize",
        )],
        ConnectionState::Connected,
    );
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    let now = Instant::now();
    terminal.draw(|f| view::draw(f, &mut app, now)).unwrap();
    terminal.backend_mut().resize(60, 15);
    terminal.draw(|f| view::draw(f, &mut app, now)).unwrap();
    let buf = terminal.backend().buffer().clone();
    assert_eq!(buf.area.width, 60);
    find_row(&buf, "still here after resize");
    assert!(row(&buf, 14).0.contains("connected"));
    for y in 0..15 {
        assert_eq!(row(&buf, y).1, 60);
    }
}

#[test]
fn conversation_list_shows_unread_count_and_last_message() {
    let conv = ConversationId::new();
    let items = vec![msg(conv, 1, false, Status::Success, "see you at noon")];
    let mut app = app_with(items, ConnectionState::Connected);
    app.open = None;
    app.conversations[0].unread = 2;
    let buf = render(&mut app, 100, 20);
    let (y, title) = (0..20)
        .map(|y| (y, row(&buf, y).0))
        .find(|(_, t)| t.starts_with(" lunch"))
        .unwrap();
    let list: String = title.chars().take(29).collect();
    assert!(list.trim_end().ends_with(" 2"), "{list:?}");
    assert!(row(&buf, y + 1).0.starts_with(" bob: see you at noon"));
}

#[test]
fn help_lists_every_key_and_the_legend() {
    let conv = ConversationId::new();
    let mut app = app_with(
        vec![msg(conv, 1, false, Status::Success, "x")],
        ConnectionState::Connected,
    );
    app.key(
        KeyEvent::new(KeyCode::F(1), KeyModifiers::NONE),
        Instant::now(),
    );
    assert!(app.help);
    let buf = render(&mut app, 120, 60);
    let screen = rows(&buf).join("\n");
    for needle in [
        "◌  sending",
        "✓  in-flight",
        "✓✓ delivered",
        "✓✓ read",
        "!  failed",
        "(edited)",
        "message deleted",
    ] {
        assert!(screen.contains(needle), "legend lacks {needle}:\n{screen}");
    }
    for (_, keys) in view::help::KEYS {
        for (key, _) in *keys {
            assert!(screen.contains(key), "help lacks {key}:\n{screen}");
        }
    }
}

#[test]
fn status_changes_redraw_the_glyph() {
    let conv = ConversationId::new();
    let m = msg(conv, 1, true, Status::Sending, "moving");
    let id = m.id;
    let mut app = app_with(vec![m], ConnectionState::Connected);
    let glyph_before = |buf: &Buffer| {
        let (_, t) = find_row(buf, "moving");
        t.split("moving").next().unwrap().trim_end().to_string()
    };
    assert!(glyph_before(&render(&mut app, 100, 10)).ends_with('◌'));
    app.apply(
        conv,
        TimelineChange::StatusChanged {
            id,
            status: Status::InFlight,
            failure: None,
        },
    );
    assert!(glyph_before(&render(&mut app, 100, 10)).ends_with(" ✓"));
    app.apply(
        conv,
        TimelineChange::StatusChanged {
            id,
            status: Status::Success,
            failure: None,
        },
    );
    assert!(glyph_before(&render(&mut app, 100, 10)).ends_with("✓✓"));
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

#[test]
fn an_edited_message_shows_its_new_text_and_the_marker() {
    let conv = ConversationId::new();
    let mut m = msg(conv, 1, true, Status::Success, "the new text");
    m.edited = true;
    let mut app = app_with(vec![m.clone()], ConnectionState::Connected);
    let buf = render(&mut app, 120, 20);
    let (_, line) = find_row(&buf, "the new text");
    assert!(line.contains("the new text (edited)"), "{line}");
    assert!(!line.contains('◌'), "{line}");
    // While an edit is being sent, ◌ stands next to the marker.
    m.pending = vec![PendingAction {
        id: MessageId::new(),
        kind: ActionKind::Edit,
        body: "the new text".into(),
        status: Status::Sending,
        failure: None,
    }];
    app.apply(conv, TimelineChange::Upserted(m));
    let buf = render(&mut app, 120, 20);
    let (y, line) = find_row(&buf, "the new text");
    assert!(line.contains("(edited) ◌"), "{line}");
    assert_eq!(colour_of(&buf, y, "◌"), Color::Yellow);
}

#[test]
fn the_edited_marker_wraps_with_the_text() {
    let conv = ConversationId::new();
    // At 50 columns the text column is 30 cells: fill it exactly.
    let mut m = msg(conv, 1, false, Status::Success, &"x".repeat(30));
    m.edited = true;
    let mut app = app_with(vec![m], ConnectionState::Connected);
    let buf = render(&mut app, 50, 12);
    let (y, line) = find_row(&buf, &"x".repeat(30));
    assert!(!line.contains("(edited)"), "{line}");
    let (next, width) = row(&buf, y + 1);
    assert!(next.trim_start().starts_with("(edited)"), "{next}");
    assert_eq!(width, 50);
}

#[test]
fn a_deleted_message_leaves_a_placeholder() {
    let conv = ConversationId::new();
    let mut gone = msg(conv, 1, false, Status::Success, "");
    gone.deleted = true;
    let mut mine = msg(conv, 2, true, Status::Success, "");
    mine.deleted = true;
    mine.edited = true;
    let mut app = app_with(vec![gone, mine], ConnectionState::Connected);
    let buf = render(&mut app, 120, 20);
    let screen = rows(&buf).join("\n");
    assert_eq!(screen.matches("message deleted").count(), 2 + 1, "{screen}");
    assert!(!screen.contains("(edited)"), "{screen}");
    let (y, line) = find_row(&buf, "✓✓ message deleted");
    assert!(line.contains("alice"), "{line}");
    let x = (0..buf.area.width)
        .rev()
        .find(|x| buf[(*x, y)].symbol() == "m")
        .unwrap();
    assert_eq!(buf[(x, y)].fg, Color::DarkGray, "the placeholder is dim");
    // The list's preview says so too (the third occurrence above).
    let (list, _) = row(&buf, 2);
    assert!(list.contains("you: message deleted"), "{list}");
}

#[test]
fn reactions_show_under_the_message_with_own_highlighted() {
    let conv = ConversationId::new();
    let mut m = msg(conv, 1, false, Status::Success, "lunch at noon?");
    m.reactions = vec![
        Reaction {
            emoji: "👍".into(),
            users: vec![me(), UserId::new()],
        },
        Reaction {
            emoji: "😂".into(),
            users: vec![UserId::new()],
        },
    ];
    let mut app = app_with(vec![m], ConnectionState::Connected);
    let buf = render(&mut app, 120, 20);
    let (y, _) = find_row(&buf, "lunch at noon?");
    let (y2, line) = find_row(&buf, "👍 × 2");
    assert_eq!(y2, y + 1, "the reactions are right under the message");
    assert!(line.contains("👍 × 2  😂 × 1"), "{line}");
    let cell = |glyph: &str| {
        let x = (0..buf.area.width)
            .find(|x| buf[(*x, y2)].symbol() == glyph)
            .unwrap();
        buf[(x, y2)].bg
    };
    assert_eq!(cell("👍"), Color::LightBlue, "own reaction highlighted");
    assert_ne!(cell("😂"), Color::LightBlue);
}

#[test]
fn many_reactions_wrap_in_the_text_column() {
    let conv = ConversationId::new();
    let mut m = msg(conv, 1, false, Status::Success, "party");
    m.reactions = ["🎉", "👍", "❤️", "😂", "😮", "🙏", "🔥", "👀"]
        .iter()
        .map(|e| Reaction {
            emoji: (*e).into(),
            users: vec![UserId::new()],
        })
        .collect();
    let mut app = app_with(vec![m], ConnectionState::Connected);
    let buf = render(&mut app, 50, 15);
    let shown: usize = (0..15)
        .map(|y| row(&buf, y))
        .inspect(|(text, w)| assert_eq!(*w, 50, "{text}"))
        .map(|(text, _)| text.matches("× 1").count())
        .sum();
    assert_eq!(shown, 8, "{}", rows(&buf).join("\n"));
}

#[test]
fn a_failed_action_shows_its_reason_and_the_keys() {
    let conv = ConversationId::new();
    let mut m = msg(conv, 1, true, Status::Read, "original text");
    m.pending = vec![PendingAction {
        id: MessageId::new(),
        kind: ActionKind::Edit,
        body: "refused text".into(),
        status: Status::Failed,
        failure: Some(Failure {
            code: ErrorCode::RateLimited,
            message: "slow down".into(),
            retryable: true,
        }),
    }];
    let mut app = app_with(vec![m], ConnectionState::Connected);
    let buf = render(&mut app, 120, 20);
    let (y, line) = find_row(&buf, "original text");
    assert!(line.contains("✓✓ original text"), "{line}");
    assert_eq!(colour_of(&buf, y, "✓"), Color::LightBlue, "Read");
    let (y2, note) = find_row(&buf, "edit failed");
    assert_eq!(y2, y + 1);
    assert!(
        note.contains("! edit failed: slow down — r retry · d discard"),
        "{note}"
    );
    assert_eq!(colour_of(&buf, y2, "!"), Color::Red);
}

#[test]
fn the_input_box_says_when_it_edits_a_message() {
    let conv = ConversationId::new();
    let mut app = app_with(
        vec![msg(conv, 1, true, Status::Success, "typo heer")],
        ConnectionState::Connected,
    );
    let now = Instant::now();
    app.key(key(KeyCode::Esc), now);
    app.key(key(KeyCode::Char('e')), now);
    assert_eq!(app.focus, Focus::Compose);
    let buf = render(&mut app, 120, 20);
    let (y, title) = find_row(&buf, "editing your message");
    assert!(title.contains("Enter save") && title.contains("Esc cancel"));
    let (inside, _) = row(&buf, y + 1);
    assert!(inside.contains("typo heer"), "{inside}");
}

#[test]
fn prompts_replace_the_input_box() {
    let conv = ConversationId::new();
    let mut m = msg(conv, 1, true, Status::Success, "to be removed");
    m.reactions = vec![Reaction {
        emoji: "😂".into(),
        users: vec![me()],
    }];
    let mut app = app_with(vec![m], ConnectionState::Connected);
    let now = Instant::now();
    app.key(key(KeyCode::Esc), now);
    app.key(key(KeyCode::Char('x')), now);
    let buf = render(&mut app, 120, 20);
    let (_, line) = find_row(&buf, "for everyone?");
    assert!(
        line.contains("Delete “to be removed” for everyone? y delete · n keep"),
        "{line}"
    );
    app.key(key(KeyCode::Char('n')), now);
    app.key(key(KeyCode::Char('+')), now);
    let buf = render(&mut app, 120, 20);
    let (y, line) = find_row(&buf, "1 👍");
    assert!(line.contains("1 👍  2 ❤️  3 😂  4 😮  5 🙏"), "{line}");
    let x = (0..buf.area.width)
        .find(|x| buf[(*x, y)].symbol() == "😂")
        .unwrap();
    assert_eq!(
        buf[(x, y)].bg,
        Color::LightBlue,
        "set by alice: highlighted"
    );
}
