//! The terminal client on a real client with a conversation of 100,000
//! messages (written straight into client storage; the server address is
//! unreachable, so it also runs offline): it opens and scrolls without lag
//! because only a bounded window is kept and only the screen is drawn.
//! Also measures keystroke-to-screen for a sent message in process, and
//! drives edit, react and delete through the session and the client.
#![allow(clippy::unwrap_used, missing_docs)]

use chatsync_client::store::{ClientStore, SqliteStore, StoreOp};
use chatsync_client::{Client, Item, Status};
use chatsync_protocol::{ConversationId, MemberMarks, MessageId, Seq, UserId};
use chatsync_tui::app::window::MAX_ITEMS;
use chatsync_tui::session::Session;
use chatsync_tui::text::grapheme_width;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use std::path::Path;
use std::time::{Duration, Instant};

const MESSAGES: u64 = 100_000;

fn key(code: KeyCode) -> Event {
    Event::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

/// A data directory with a session for "alice" (server unreachable) and
/// one conversation of `n` messages.
fn seed(dir: &Path, n: u64) -> ConversationId {
    let mut store = SqliteStore::open(&dir.join(chatsync_client::DB_FILE)).unwrap();
    let conv = ConversationId::new();
    let alice = UserId::new();
    let bob = UserId::new();
    let meta = |k: &str, v: String| StoreOp::SetMeta {
        key: k.into(),
        value: v,
    };
    let mut ops = vec![
        // Port 9 on loopback: nothing listens; connecting fails at once.
        meta("server", "127.0.0.1:9".into()),
        meta("token", "t".into()),
        meta("user", alice.to_string()),
        meta("username", "alice".into()),
        StoreOp::UpsertConversation {
            id: conv,
            title: "big".into(),
            members: vec![
                MemberMarks {
                    user: alice,
                    username: "alice".into(),
                    delivered: Seq(n),
                    read: Seq(0),
                },
                MemberMarks {
                    user: bob,
                    username: "bob".into(),
                    delivered: Seq(n),
                    read: Seq(0),
                },
            ],
            last_seq: Seq(n),
        },
    ];
    for seq in 1..=n {
        let own = seq % 3 == 0;
        let mut item = Item::message(
            MessageId::new(),
            conv,
            if own { alice } else { bob },
            if own { "alice" } else { "bob" }.into(),
            format!("message number {seq} with some text to wrap around the screen"),
            own,
            Status::Success,
            Some(Seq(seq)),
            0,
            1_700_000_000_000 + i64::try_from(seq).unwrap() * 1000,
            Some(1_700_000_000_000 + i64::try_from(seq).unwrap() * 1000),
        );
        item.sender = if own { alice } else { bob };
        ops.push(StoreOp::UpsertConfirmed(item));
    }
    ops.push(StoreOp::SetCursor {
        conversation: conv,
        seq: Seq(n),
    });
    store.apply(&ops).unwrap();
    conv
}

/// The screen as a person sees it: each grapheme once (the cell a wide
/// one hides is skipped: the backend keeps what was there before).
fn screen(session: &Session<TestBackend>) -> String {
    let buf = session.terminal().backend().buffer();
    (0..buf.area.height)
        .map(|y| {
            let mut row = String::new();
            let mut x = 0;
            while x < buf.area.width {
                let symbol = buf[(x, y)].symbol();
                row.push_str(symbol);
                x += u16::try_from(grapheme_width(symbol).max(1)).unwrap();
            }
            row
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_of_100k_messages_opens_and_scrolls_without_lag() {
    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    seed(dir.path(), MESSAGES);
    eprintln!("seeded {MESSAGES} messages in {:?}", t.elapsed());

    let client = Client::open(dir.path()).await.unwrap();
    let terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    let mut session = Session::new(client, terminal).await.unwrap();
    session.step().await.unwrap();
    assert!(screen(&session).contains("big"), "{}", screen(&session));
    assert!(screen(&session).contains("99+"), "unread count capped");

    let t = Instant::now();
    session.handle(key(KeyCode::Enter)).await.unwrap();
    let open = t.elapsed();
    assert!(
        screen(&session).contains(&format!("message number {MESSAGES} ")),
        "{}",
        screen(&session)
    );
    // Opening it marked it read up to the newest message on screen: the
    // count (the client's, from the read mark) is gone.
    assert!(!screen(&session).contains("99+"), "{}", screen(&session));

    // Browse upwards a long way: every key is one step, pages load as needed.
    session.handle(key(KeyCode::Esc)).await.unwrap();
    let mut times = Vec::new();
    for _ in 0..400 {
        let t = Instant::now();
        session.handle(key(KeyCode::PageUp)).await.unwrap();
        times.push(t.elapsed());
        let held = session.app.open.as_ref().unwrap().window.items().len();
        assert!(held <= MAX_ITEMS + 100, "window holds {held} items");
    }
    // 400 screens of 2-line items: about 7,000 messages up.
    let top = session.app.selected_item().unwrap().seq.unwrap().0;
    assert!(top < MESSAGES - 5_000, "only reached seq {top}");
    let shown = screen(&session);
    assert!(shown.contains(&format!("message number {top} ")), "{shown}");
    // And back down to the newest, following again.
    for _ in 0..3 {
        let t = Instant::now();
        session.handle(key(KeyCode::PageDown)).await.unwrap();
        times.push(t.elapsed());
    }
    let t = Instant::now();
    session.handle(key(KeyCode::End)).await.unwrap();
    times.push(t.elapsed());
    assert!(screen(&session).contains(&format!("message number {MESSAGES} ")));
    assert!(session.app.open.as_ref().unwrap().window.attached());

    times.sort();
    let max = *times.last().unwrap();
    eprintln!(
        "100k conversation: open {open:?}; per scroll key p50 {:?} p99 {:?} max {max:?}",
        percentile(&times, 0.5),
        percentile(&times, 0.99)
    );
    // Speed is reported, not asserted (shared, noisy machines): what this
    // test guarantees is that only a bounded window is ever held and drawn.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keystroke_to_screen_for_a_sent_message() {
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path(), 1_000);
    let client = Client::open(dir.path()).await.unwrap();
    let terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    let mut session = Session::new(client, terminal).await.unwrap();
    let log = dir.path().join("timing.log");
    session.log_timings(&log).unwrap();
    session.step().await.unwrap();
    session.handle(key(KeyCode::Enter)).await.unwrap();
    for i in 0..50 {
        for c in format!("typed {i}").chars() {
            session.handle(key(KeyCode::Char(c))).await.unwrap();
        }
        session.handle(key(KeyCode::Enter)).await.unwrap();
        let shown = screen(&session);
        assert!(shown.contains(&format!("◌  typed {i}")), "{shown}");
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let mut times: Vec<Duration> = text
        .lines()
        .filter_map(|l| l.strip_prefix("keystroke_to_screen_us="))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .map(Duration::from_micros)
        .collect();
    assert_eq!(times.len(), 50);
    times.sort();
    eprintln!(
        "keystroke-to-screen (in process, TestBackend): p50 {:?} p99 {:?} max {:?}",
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times.last().unwrap()
    );
}

/// The session on a real client (offline): edit, react and delete from
/// the keyboard go through the client and come back through the
/// subscription, pending (◌) since nothing can be sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_from_the_keyboard_reach_the_client_and_the_screen() {
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path(), 3); // seq 3 is alice's own
    let client = Client::open(dir.path()).await.unwrap();
    let terminal = Terminal::new(TestBackend::new(120, 30)).unwrap();
    let mut session = Session::new(client, terminal).await.unwrap();
    session.step().await.unwrap();
    session.handle(key(KeyCode::Enter)).await.unwrap();
    session.handle(key(KeyCode::Esc)).await.unwrap();
    let own = session.app.selected_item().unwrap().clone();
    assert!(own.own && own.seq == Some(Seq(3)), "{own:?}");

    // e, clear, type, Enter: the new text at once, marked, ◌ while unsent.
    session.handle(key(KeyCode::Char('e'))).await.unwrap();
    session
        .handle(Event::Key(KeyEvent::new(
            KeyCode::Char('u'),
            KeyModifiers::CONTROL,
        )))
        .await
        .unwrap();
    for c in "fixed text".chars() {
        session.handle(key(KeyCode::Char(c))).await.unwrap();
    }
    session.handle(key(KeyCode::Enter)).await.unwrap();
    let shown = screen(&session);
    assert!(shown.contains("fixed text (edited) ◌"), "{shown}");

    // + 1 twice in a row: on, then off again (the second key sees the first).
    for _ in 0..2 {
        session.handle(key(KeyCode::Char('+'))).await.unwrap();
        session.handle(key(KeyCode::Char('1'))).await.unwrap();
    }
    let item = session.app.selected_item().unwrap();
    assert!(
        item.reactions.iter().all(|r| r.users.is_empty()),
        "{:?}",
        item.reactions
    );
    session.handle(key(KeyCode::Char('+'))).await.unwrap();
    session.handle(key(KeyCode::Char('1'))).await.unwrap();
    assert!(screen(&session).contains("👍 × 1"), "{}", screen(&session));

    // x, y: the placeholder.
    session.handle(key(KeyCode::Char('x'))).await.unwrap();
    assert!(screen(&session).contains("for everyone?"));
    session.handle(key(KeyCode::Char('y'))).await.unwrap();
    let shown = screen(&session);
    assert!(shown.contains("message deleted"), "{shown}");
    assert!(!shown.contains("fixed text"), "{shown}");
}
