//! The input box: multi-line, wraps at its width, grows up to a few lines.

use crate::app::{App, Focus};
use crate::view::style::dim;
use ratatui::layout::{Position, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph, Widget};
use ratatui::Frame;

/// Most text lines the box shows at once.
const MAX_LINES: usize = 6;

/// Height of the box (borders included) for a pane `width` wide.
pub fn height(app: &App, width: u16) -> u16 {
    let lines = app.input.layout(inner_width(width)).lines.len();
    u16::try_from(lines.clamp(1, MAX_LINES) + 2).unwrap_or(3)
}

fn inner_width(width: u16) -> usize {
    usize::from(width.saturating_sub(2)).max(2)
}

/// Draws the box; places the terminal cursor in it when it has the focus.
pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let editing = matches!(app.focus, Focus::Compose | Focus::NewConversation);
    let title = match app.focus {
        Focus::NewConversation => " new conversation: TITLE MEMBER… (Enter create · Esc cancel) ",
        Focus::Compose => " message (Enter send · Alt-Enter newline · Esc browse) ",
        _ => " message (i or Enter to write) ",
    };
    let border = if editing {
        Style::new().fg(Color::LightBlue)
    } else {
        dim()
    };
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(border)
        .title(title);
    let inner = block.inner(area);
    block.render(area, frame.buffer_mut());
    let layout = app.input.layout(inner_width(area.width));
    let rows = usize::from(inner.height).max(1);
    let first = (layout.cursor.0 + 1).saturating_sub(rows);
    let lines: Vec<Line> = layout
        .lines
        .iter()
        .skip(first)
        .take(rows)
        .map(|l| Line::raw(l.clone()))
        .collect();
    let style = if editing { Style::new() } else { dim() };
    Paragraph::new(lines)
        .style(style)
        .render(inner, frame.buffer_mut());
    if editing {
        let (row, col) = layout.cursor;
        let x = inner.x + u16::try_from(col).unwrap_or(0);
        let y = inner.y + u16::try_from(row - first).unwrap_or(0);
        frame.set_cursor_position(Position::new(x.min(inner.right()), y.min(inner.bottom())));
    }
}
