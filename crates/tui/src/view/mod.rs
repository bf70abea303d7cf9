//! Drawing: one function per pane; [`draw`] puts them together.

pub mod conversations;
pub mod help;
pub mod input;
pub mod status_bar;
pub mod style;
pub mod timeline;

use crate::app::{App, Focus};
use crate::text::{fit, sanitize};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::widgets::{Block, Borders, Widget};
use ratatui::Frame;
use std::time::Instant;

/// Width of the conversation list pane.
const LIST_W: u16 = 30;
/// Below this width only one pane is shown.
const TWO_PANES: u16 = 70;

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, app: &mut App, now: Instant) {
    let area = frame.area();
    // The timeline says whether it was drawn (see [`crate::app::Visible`]).
    if let Some(open) = app.open.as_mut() {
        open.visible.shown = false;
    }
    let [main, bar] = Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(area);
    status_bar::render(frame.buffer_mut(), bar, app, now);
    if main.width >= TWO_PANES {
        let [list, right] =
            Layout::horizontal([Constraint::Length(LIST_W), Constraint::Min(1)]).areas(main);
        let block = Block::default()
            .borders(Borders::RIGHT)
            .border_style(style::dim());
        let inner = block.inner(list);
        block.render(list, frame.buffer_mut());
        conversations::render(frame.buffer_mut(), inner, app);
        conversation(frame, right, app);
    } else if app.focus == Focus::List {
        conversations::render(frame.buffer_mut(), main, app);
    } else {
        conversation(frame, main, app);
    }
    if app.help {
        help::render(frame, area, &mut app.help_scroll);
        // The help covers the messages: none of them counts as seen.
        if let Some(open) = app.open.as_mut() {
            open.visible.shown = false;
        }
    }
}

fn conversation(frame: &mut Frame, area: Rect, app: &mut App) {
    let input_h = input::height(app, area.width).min(area.height.saturating_sub(2));
    let [title, timeline, input_area] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(input_h),
    ])
    .areas(area);
    let w = usize::from(title.width);
    let text = match app.open_summary() {
        Some(s) => format!(
            " # {} — {}",
            sanitize(&s.title),
            sanitize(&s.members.join(", "))
        ),
        None => String::from(" chatsync"),
    };
    let style = Style::new().add_modifier(Modifier::REVERSED);
    frame
        .buffer_mut()
        .set_stringn(title.x, title.y, fit(&text, w), w, style);
    timeline::render(frame.buffer_mut(), timeline, app);
    input::render(frame, input_area, app);
}
