//! The help overlay (`?` or F1): every key, and the status legend.

use crate::text::{fit, width};
use crate::view::style::{glyph, name, status_style};
use chatsync_client::Status;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Widget};
use ratatui::Frame;

/// Every key, by where it applies: (keys, what they do).
pub const KEYS: &[(&str, &[(&str, &str)])] = &[
    (
        "Everywhere",
        &[
            ("Ctrl-C, Ctrl-Q", "quit (the terminal is restored)"),
            (
                "F1",
                "this help (↑ ↓ PgUp PgDn scroll it; any other key closes it)",
            ),
        ],
    ),
    (
        "Conversation list",
        &[
            ("↑ ↓ / k j", "select a conversation"),
            ("Home End / g G", "first / last conversation"),
            ("Enter → l", "open it and write"),
            ("n", "new conversation (title, then members)"),
            ("Tab", "back to the open conversation's input"),
            ("c", "connect now (skip the reconnect wait)"),
            ("? / q", "help / quit"),
        ],
    ),
    (
        "Writing (input box)",
        &[
            ("Enter", "send"),
            (
                "Alt-Enter, Ctrl-J",
                "new line (Shift-Enter too, where the terminal reports it)",
            ),
            ("← → Home End", "move in the line (Ctrl-A / Ctrl-E too)"),
            (
                "↑ ↓",
                "move between lines; ↑ on the first line browses messages",
            ),
            ("Backspace Delete", "delete; Ctrl-U clears the box"),
            ("PgUp PgDn", "scroll the messages"),
            ("Esc", "browse messages; Tab goes to the list"),
        ],
    ),
    (
        "Browsing messages",
        &[
            (
                "↑ ↓ / k j",
                "select a message (older pages load as you go up)",
            ),
            ("PgUp PgDn", "scroll a screen"),
            ("Home / g", "oldest loaded message"),
            ("End / G", "newest message, follow new ones"),
            ("e", "edit your selected message (Enter saves, Esc cancels)"),
            ("x / Delete", "delete your selected message (y confirms)"),
            (
                "+",
                "react: 1–5 toggle 👍 ❤️ 😂 😮 🙏, or type an emoji and Enter",
            ),
            (
                "r",
                "retry the selected failed message, or its failed action",
            ),
            (
                "d",
                "discard the selected failed or unsent message, or its failed action",
            ),
            ("i Enter Tab", "write"),
            ("Esc ←", "back to the list"),
            ("c ? q", "connect now / help / quit"),
        ],
    ),
];

/// The help text.
pub fn lines() -> Vec<Line<'static>> {
    let bold = Style::new().add_modifier(Modifier::BOLD);
    let mut out = vec![Line::styled("Status of your messages", bold)];
    let legend = [
        (
            Status::Sending,
            "stored on this device, not yet confirmed (waits while offline)",
        ),
        (Status::InFlight, "the server stored it"),
        (Status::Success, "every other member's device has it"),
        (Status::Read, "every other member has read it"),
        (
            Status::Failed,
            "refused: the reason is shown; r retries, d discards",
        ),
    ];
    for (status, meaning) in legend {
        out.push(Line::from(vec![
            Span::raw("  "),
            Span::styled(glyph(status), status_style(status)),
            Span::raw(" ".repeat(3 - width(glyph(status)))),
            Span::styled(format!("{:<10}", name(status)), bold),
            Span::raw(meaning),
        ]));
    }
    let marks = [
        (
            "(edited)",
            "the text was changed; ◌ next to it while the edit is sent",
        ),
        ("message deleted", "the text is erased for everyone"),
        ("👍 × 2", "reactions, with yours highlighted"),
    ];
    for (mark, meaning) in marks {
        out.push(Line::from(vec![
            Span::raw("  "),
            Span::styled(fit(mark, 16), bold),
            Span::raw(meaning),
        ]));
    }
    for (section, keys) in KEYS {
        out.push(Line::raw(""));
        out.push(Line::styled(*section, bold));
        for (key, what) in *keys {
            out.push(Line::from(vec![
                Span::styled(
                    format!("  {key:<20}"),
                    Style::new().fg(ratatui::style::Color::LightBlue),
                ),
                Span::raw(*what),
            ]));
        }
    }
    out
}

/// Draws the overlay centred in `area`, from line `scroll` (clamped).
pub fn render(frame: &mut Frame, area: Rect, scroll: &mut u16) {
    let lines = lines();
    let total = u16::try_from(lines.len()).unwrap_or(u16::MAX);
    let rows = area.height.saturating_sub(2);
    *scroll = (*scroll).min(total.saturating_sub(rows));
    let h = u16::try_from(lines.len() + 2)
        .unwrap_or(u16::MAX)
        .min(area.height);
    let w = 92.min(area.width);
    let r = Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    );
    Clear.render(r, frame.buffer_mut());
    let title = if total > rows {
        " help · ↑ ↓ scroll · any other key closes "
    } else {
        " help · any key closes "
    };
    Paragraph::new(lines)
        .scroll((*scroll, 0))
        .block(Block::default().borders(Borders::ALL).title(title))
        .render(r, frame.buffer_mut());
}
