//! The bottom line: the connection indicator (always visible), who is
//! logged in, a notice, and the key hint.

use crate::app::{App, Connection, Focus};
use crate::text::{truncate, width};
use chatsync_client::ConnectionState;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use std::time::Instant;

/// The indicator's text and style.
pub fn indicator(conn: &Connection, rejected: bool, now: Instant) -> (String, Style) {
    let red = Style::new()
        .fg(Color::White)
        .bg(Color::Red)
        .add_modifier(Modifier::BOLD);
    if rejected {
        return (
            "○ offline · session refused: run chatsync login".into(),
            red,
        );
    }
    match conn.state {
        ConnectionState::Connected => (
            "● connected".into(),
            Style::new().fg(Color::Black).bg(Color::Green),
        ),
        ConnectionState::Connecting => (
            "◌ connecting…".into(),
            Style::new().fg(Color::Black).bg(Color::Yellow),
        ),
        ConnectionState::Reconnecting { .. } => match conn.retry_in(now) {
            Some(left) => {
                let secs = left.as_millis().div_ceil(1000);
                (format!("○ offline · reconnecting in {secs}s"), red)
            }
            None => ("○ offline".into(), red),
        },
    }
}

/// Draws the bar.
pub fn render(buf: &mut Buffer, area: Rect, app: &App, now: Instant) {
    let (text, style) = indicator(&app.connection, app.session_rejected, now);
    let hint = match app.focus {
        Focus::Compose | Focus::NewConversation => "F1 help · Esc browse · Ctrl-C quit",
        _ => "? help · q quit",
    };
    let mut spans = vec![
        Span::styled(format!(" {text} "), style),
        Span::styled(format!(" {} ", app.me), Style::new().fg(Color::LightBlue)),
    ];
    let used = width(&spans[0].content) + width(&spans[1].content) + width(hint) + 1;
    let room = usize::from(area.width).saturating_sub(used);
    let notice = app
        .notice(now)
        .map(|n| truncate(n, room))
        .unwrap_or_default();
    let gap = room.saturating_sub(width(&notice));
    spans.push(Span::styled(notice, Style::new().fg(Color::LightYellow)));
    spans.push(Span::raw(" ".repeat(gap)));
    spans.push(Span::styled(hint, Style::new().fg(Color::DarkGray)));
    buf.set_style(area, Style::new().bg(Color::Indexed(235)));
    buf.set_line(area.x, area.y, &Line::from(spans), area.width);
}
