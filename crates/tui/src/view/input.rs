//! The input box: multi-line, wraps at its width, grows up to a few lines.
//! It also edits an own message (its title says so), and gives its place
//! to the one-line prompts of message actions (delete? which reaction?).

use crate::app::{App, Focus, Prompt, QUICK_REACTIONS};
use crate::text::{one_line, sanitize, truncate, width};
use crate::view::style::{dim, own_reaction};
use ratatui::layout::{Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Widget};
use ratatui::Frame;

/// Most text lines the box shows at once.
const MAX_LINES: usize = 6;

/// Height of the box (borders included) for a pane `width` wide.
pub fn height(app: &App, width: u16) -> u16 {
    if app.prompt.is_some() {
        return 3;
    }
    let lines = app.input.layout(inner_width(width)).lines.len();
    u16::try_from(lines.clamp(1, MAX_LINES) + 2).unwrap_or(3)
}

fn inner_width(width: u16) -> usize {
    usize::from(width.saturating_sub(2)).max(2)
}

/// Draws the box; places the terminal cursor in it when it has the focus.
pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    if let Some(prompt) = &app.prompt {
        render_prompt(frame, area, app, prompt);
        return;
    }
    let editing = matches!(app.focus, Focus::Compose | Focus::NewConversation);
    let title = match app.focus {
        Focus::NewConversation => " new conversation: TITLE MEMBER… (Enter create · Esc cancel) ",
        Focus::Compose if app.editing.is_some() => {
            " editing your message (Enter save · Alt-Enter newline · Esc cancel) "
        }
        Focus::Compose => " message (Enter send · Alt-Enter newline · Esc browse) ",
        _ => " message (i or Enter to write) ",
    };
    let border = if app.editing.is_some() {
        Style::new().fg(Color::LightYellow)
    } else if editing {
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

/// Draws a prompt in the box's place: a y/n question before deleting, or
/// the reaction picker (quick picks 1–5, or an emoji typed in).
fn render_prompt(frame: &mut Frame, area: Rect, app: &App, prompt: &Prompt) {
    let key = Style::new()
        .fg(Color::LightBlue)
        .add_modifier(Modifier::BOLD);
    let (title, border, spans, cursor) = match prompt {
        Prompt::Delete(id) => {
            let preview = app
                .item(*id)
                .map(|i| truncate(&one_line(&sanitize(&i.body)), 30))
                .unwrap_or_default();
            let spans = vec![
                Span::raw(format!("Delete \u{201c}{preview}\u{201d} for everyone? ")),
                Span::styled("y", key),
                Span::raw(" delete · "),
                Span::styled("n", key),
                Span::raw(" keep"),
            ];
            (" delete message ", Color::Red, spans, None)
        }
        Prompt::React { message, emoji } => {
            let item = app.item(*message);
            let mut spans = Vec::new();
            for (n, e) in QUICK_REACTIONS.iter().enumerate() {
                spans.push(Span::styled(format!("{}", n + 1), key));
                spans.push(Span::raw(" "));
                let set = item.is_some_and(|i| app.reacted(i, e));
                spans.push(if set {
                    Span::styled(*e, own_reaction())
                } else {
                    Span::raw(*e)
                });
                spans.push(Span::raw("  "));
            }
            spans.push(Span::styled("or type one: ", dim()));
            let before: usize = spans.iter().map(|s| width(&s.content)).sum();
            let typed = sanitize(emoji.text());
            let col = emoji.layout(usize::MAX / 2).cursor.1;
            spans.push(Span::raw(typed));
            (
                " react: toggle your reaction (Enter · Esc cancel) ",
                Color::LightYellow,
                spans,
                Some(before + col),
            )
        }
    };
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(Style::new().fg(border))
        .title(title);
    let inner = block.inner(area);
    block.render(area, frame.buffer_mut());
    Paragraph::new(Line::from(spans)).render(inner, frame.buffer_mut());
    if let Some(col) = cursor {
        let x = inner.x + u16::try_from(col).unwrap_or(u16::MAX);
        frame.set_cursor_position(Position::new(x.min(inner.right()), inner.y));
    }
}
