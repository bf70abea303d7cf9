//! The conversation list: title, unread count, last message.

use crate::app::{App, Focus};
use crate::text::{fit, one_line, sanitize, truncate, width};
use crate::view::style::{dim, glyph, selected, status_style};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};

/// Lines per conversation.
const ENTRY_H: usize = 2;

/// Draws the list into `area`.
pub fn render(buf: &mut Buffer, area: Rect, app: &App) {
    let w = usize::from(area.width);
    let header_style = if app.focus == Focus::List {
        Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED)
    } else {
        Style::new().add_modifier(Modifier::REVERSED)
    };
    buf.set_style(Rect::new(area.x, area.y, area.width, 1), header_style);
    buf.set_stringn(
        area.x,
        area.y,
        fit(&format!(" Conversations ({})", app.conversations.len()), w),
        w,
        header_style,
    );
    let rows = usize::from(area.height.saturating_sub(1));
    if app.conversations.is_empty() {
        buf.set_stringn(area.x + 1, area.y + 1, "none yet · n: new", w, dim());
        return;
    }
    let per_screen = (rows / ENTRY_H).max(1);
    let first = app.list_selected.saturating_sub(per_screen - 1);
    let open_id = app.open.as_ref().map(|o| o.id);
    let mut y = area.y + 1;
    for (i, s) in app
        .conversations
        .iter()
        .enumerate()
        .skip(first)
        .take(per_screen)
    {
        let is_selected = i == app.list_selected;
        let base = if is_selected && app.focus == Focus::List {
            selected()
        } else {
            Style::new()
        };
        let badge = match s.unread {
            0 => String::new(),
            n if n > 99 => " 99+".into(),
            n => format!(" {n}"),
        };
        let marker = if open_id == Some(s.id) { "▸" } else { " " };
        let title_w = w.saturating_sub(1 + width(&badge));
        let title_style = if s.unread > 0 {
            base.add_modifier(Modifier::BOLD)
        } else {
            base
        };
        let line1 = Line::from(vec![
            Span::styled(marker, base.fg(Color::LightBlue)),
            Span::styled(fit(&sanitize(&s.title), title_w), title_style),
            Span::styled(
                badge,
                base.fg(Color::Black)
                    .bg(Color::LightYellow)
                    .add_modifier(Modifier::BOLD),
            ),
        ]);
        let mut preview = vec![Span::styled(" ", base)];
        if let Some(last) = &s.last {
            if last.own {
                preview.push(Span::styled(
                    format!("{} ", glyph(last.status)),
                    status_style(last.status).patch(base),
                ));
            }
            let who = if last.own {
                "you".to_string()
            } else {
                sanitize(&last.sender_name)
            };
            let body = if last.deleted {
                crate::view::timeline::DELETED.to_string()
            } else {
                one_line(&sanitize(&last.body))
            };
            let text = format!("{who}: {body}");
            let used: usize = preview.iter().map(|s| width(&s.content)).sum();
            preview.push(Span::styled(
                truncate(&text, w.saturating_sub(used)),
                dim().patch(base),
            ));
        } else {
            preview.push(Span::styled("no messages", dim().patch(base)));
        }
        for line in [line1, Line::from(preview)] {
            if y >= area.bottom() {
                return;
            }
            buf.set_style(Rect::new(area.x, y, area.width, 1), base);
            buf.set_line(area.x, y, &line, area.width);
            y += 1;
        }
    }
}
