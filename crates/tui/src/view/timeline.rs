//! The open conversation's messages, bottom-anchored like a chat: only the
//! items that fit on screen are laid out, whatever the window holds.

use crate::app::{App, Focus, Open, Visible};
use crate::text::{fit, sanitize, width, wrap};
use crate::view::style::{dim, glyph, name_style, own_reaction, selected, status_style};
use chatsync_client::model::PendingAction;
use chatsync_client::{Failure, Item, Status};
use chatsync_protocol::{ActionKind, UserId};
use chrono::{DateTime, Local, TimeZone};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};

/// Cells of the time column (`HH:MM`).
const TIME_W: usize = 5;
/// Narrowest body column.
const MIN_BODY: usize = 8;

/// Column widths for a pane width.
#[derive(Clone, Copy, Debug)]
pub struct Columns {
    name: usize,
    body: usize,
}

impl Columns {
    /// Columns for a pane `width` cells wide.
    pub fn new(width: usize) -> Columns {
        let name = match width {
            w if w >= 60 => 10,
            w if w >= 40 => 6,
            _ => 3,
        };
        let body = width.saturating_sub(Self::prefix_for(name)).max(MIN_BODY);
        Columns { name, body }
    }

    fn prefix_for(name: usize) -> usize {
        TIME_W + 1 + name + 1 + 2 + 1
    }

    fn prefix(&self) -> usize {
        Self::prefix_for(self.name)
    }
}

/// What every item's lines depend on besides the item.
pub struct Context {
    /// Column widths.
    pub cols: Columns,
    /// Messages can go out now (else Sending ones are shown as waiting).
    pub online: bool,
    /// This account (its own reactions are highlighted).
    pub me: UserId,
}

/// Text of a deleted message's placeholder.
pub const DELETED: &str = "message deleted";
/// Marker after the text of an edited message.
pub const EDITED: &str = "(edited)";

/// Local time of an item: the server's time when known, else the device's.
pub fn local_time(item: &Item) -> Option<DateTime<Local>> {
    let ms = item.server_ts.unwrap_or(item.created_at);
    Local.timestamp_millis_opt(ms).single()
}

/// The lines of one item (a day separator first when the day changes).
pub fn item_lines(
    item: &Item,
    previous: Option<&Item>,
    ctx: &Context,
    is_selected: bool,
) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    let when = local_time(item);
    let day = when.map(|t| t.date_naive());
    if previous.is_none() || previous.and_then(local_time).map(|t| t.date_naive()) != day {
        let label = when.map_or_else(
            || "unknown date".to_string(),
            |t| t.format("%a %-d %b %Y").to_string(),
        );
        let total = ctx.cols.prefix() + ctx.cols.body;
        let side = total.saturating_sub(width(&label) + 2) / 2;
        lines.push(Line::styled(
            format!("{} {label} {}", "─".repeat(side), "─".repeat(side)),
            dim(),
        ));
    }
    let time = when.map_or_else(|| "--:--".into(), |t| t.format("%H:%M").to_string());
    let (text, text_style) = if item.deleted {
        (DELETED.to_string(), dim().add_modifier(Modifier::ITALIC))
    } else {
        (sanitize(&item.body), Style::new())
    };
    let mut body = wrap(&text, ctx.cols.body);
    let indent = " ".repeat(ctx.cols.prefix());
    let (mark, mark_style) = if item.own {
        (glyph(item.status), status_style(item.status))
    } else {
        ("", Style::new())
    };
    // "(edited)", and ◌ while an edit or the delete is being sent: after
    // the text when they fit on its last line, else on a line of their own.
    let mut marks: Vec<Span<'static>> = Vec::new();
    if item.edited && !item.deleted {
        marks.push(Span::styled(EDITED, dim()));
    }
    let changing = item.pending.iter().any(|p| {
        p.status == Status::Sending && matches!(p.kind, ActionKind::Edit | ActionKind::Delete)
    });
    if changing {
        marks.push(Span::styled("◌", status_style(Status::Sending)));
    }
    let marks_w: usize = marks.iter().map(|s| width(&s.content) + 1).sum();
    let last_w = body.last().map_or(0, |l| width(l));
    let marks_own_line = !marks.is_empty() && last_w + marks_w > ctx.cols.body;
    if marks_own_line {
        body.push(String::new());
    }
    let rows = body.len();
    for (n, text) in body.into_iter().enumerate() {
        let mut spans = if n == 0 {
            vec![
                Span::styled(time.clone(), dim()),
                Span::raw(" "),
                Span::styled(
                    fit(&sanitize(&item.sender_name), ctx.cols.name),
                    name_style(&item.sender_name, item.own),
                ),
                Span::raw(" "),
                Span::styled(fit(mark, 2), mark_style),
                Span::raw(" "),
                Span::styled(text, text_style),
            ]
        } else {
            vec![Span::raw(indent.clone()), Span::styled(text, text_style)]
        };
        if n + 1 == rows {
            for (i, m) in marks.iter().enumerate() {
                if i > 0 || !marks_own_line {
                    spans.push(Span::raw(" "));
                }
                spans.push(m.clone());
            }
        }
        lines.push(Line::from(spans));
    }
    let note = |text: String, style: Style| -> Vec<Line<'static>> {
        wrap(&text, ctx.cols.body)
            .into_iter()
            .map(|t| Line::from(vec![Span::raw(indent.clone()), Span::styled(t, style)]))
            .collect()
    };
    lines.extend(reaction_lines(item, ctx, &indent));
    if item.own && item.status == Status::Failed {
        let why = failure_reason(item.failure.as_ref());
        let hint = failure_hint(item.failure.as_ref());
        lines.extend(note(
            format!("! failed: {why} — {hint}"),
            Style::new().fg(Color::Red),
        ));
    } else if item.own && item.status == Status::Sending && !ctx.online {
        lines.extend(note(
            "◌ waiting for the connection — goes out by itself".into(),
            Style::new()
                .fg(Color::Yellow)
                .add_modifier(Modifier::ITALIC),
        ));
    }
    for p in item.pending.iter().filter(|p| p.status == Status::Failed) {
        let why = failure_reason(p.failure.as_ref());
        let hint = failure_hint(p.failure.as_ref());
        lines.extend(note(
            format!("! {} failed: {why} — {hint}", action_name(p)),
            Style::new().fg(Color::Red),
        ));
    }
    if is_selected {
        for l in &mut lines {
            l.style = selected();
        }
    }
    lines
}

/// Why something failed, for a person.
fn failure_reason(failure: Option<&Failure>) -> String {
    failure.map_or_else(
        || "refused by the server".to_string(),
        |f| sanitize(&f.message),
    )
}

/// The keys that apply to a failed message or action.
fn failure_hint(failure: Option<&Failure>) -> &'static str {
    match failure {
        Some(f) if !f.retryable => "retrying will not help · d discard",
        _ => "r retry · d discard",
    }
}

/// What a pending action does, in a few words ("edit", "reaction 👍").
pub fn action_name(action: &PendingAction) -> String {
    match action.kind {
        ActionKind::Edit => "edit".into(),
        ActionKind::Delete => "delete".into(),
        ActionKind::React { on: true } => format!("reaction {}", sanitize(&action.body)),
        ActionKind::React { on: false } => {
            format!("removing reaction {}", sanitize(&action.body))
        }
    }
}

/// The reactions under a message: `emoji × count` each, this account's
/// own highlighted, ◌ while one of its toggles is being sent; wrapped at
/// the text column.
fn reaction_lines(item: &Item, ctx: &Context, indent: &str) -> Vec<Line<'static>> {
    let mut chips: Vec<Span<'static>> = item
        .reactions
        .iter()
        .filter(|r| !r.users.is_empty())
        .map(|r| {
            let text = format!("{} × {}", sanitize(&r.emoji), r.users.len());
            if r.users.contains(&ctx.me) {
                Span::styled(text, own_reaction())
            } else {
                Span::raw(text)
            }
        })
        .collect();
    if chips.is_empty() {
        return Vec::new();
    }
    let toggling = item
        .pending
        .iter()
        .any(|p| p.status == Status::Sending && matches!(p.kind, ActionKind::React { .. }));
    if toggling {
        chips.push(Span::styled("◌", status_style(Status::Sending)));
    }
    let mut lines = Vec::new();
    let mut line: Vec<Span<'static>> = Vec::new();
    let mut used = 0;
    for chip in chips {
        let w = width(&chip.content);
        let gap = if line.is_empty() { 0 } else { 2 };
        if !line.is_empty() && used + gap + w > ctx.cols.body {
            lines.push(std::mem::take(&mut line));
            used = 0;
        }
        if !line.is_empty() {
            line.push(Span::raw("  "));
            used += 2;
        }
        line.push(chip);
        used += w;
    }
    lines.push(line);
    lines
        .into_iter()
        .map(|chips| {
            let mut spans = vec![Span::raw(indent.to_string())];
            spans.extend(chips);
            Line::from(spans)
        })
        .collect()
}

/// Draws the open conversation into `area`; updates the view's anchor and
/// what is visible.
pub fn render(buf: &mut Buffer, area: Rect, app: &mut App) {
    let online = app.connection.is_up();
    let me = app.user;
    // The selection is highlighted while browsing, and while the selected
    // message is being edited.
    let highlight = app.focus == Focus::Timeline || app.editing.is_some();
    let Some(open) = app.open.as_mut() else {
        let hint = if app.conversations.is_empty() {
            "No conversation yet: press n to start one."
        } else {
            "Select a conversation and press Enter."
        };
        buf.set_stringn(area.x + 1, area.y, hint, usize::from(area.width), dim());
        return;
    };
    let ctx = Context {
        cols: Columns::new(usize::from(area.width)),
        online,
        me,
    };
    if open.window.items().is_empty() {
        buf.set_stringn(
            area.x + 1,
            area.bottom().saturating_sub(1),
            "No messages yet — say hello.",
            usize::from(area.width),
            dim(),
        );
        open.visible = Visible::default();
        return;
    }
    let blocks = layout(open, &ctx, usize::from(area.height), highlight);
    let mut y = area.bottom();
    for (_, lines) in &blocks {
        for line in lines.iter().rev() {
            if y <= area.y {
                break;
            }
            y -= 1;
            buf.set_style(Rect::new(area.x, y, area.width, 1), line.style);
            buf.set_line(area.x, y, line, area.width);
        }
    }
    if y > area.y && !open.window.has_older() {
        let top = blocks.last().map_or(0, |(i, _)| *i);
        if top == 0 {
            y -= 1;
            buf.set_stringn(
                area.x + 1,
                y,
                "— beginning of the conversation —",
                usize::from(area.width),
                dim(),
            );
        }
    }
}

/// Lays out the items that fit, bottom first: `(index, lines)` pairs.
/// Moves the anchor so the selection is on screen.
fn layout(
    open: &mut Open,
    ctx: &Context,
    height: usize,
    highlight: bool,
) -> Vec<(usize, Vec<Line<'static>>)> {
    let items = open.window.items();
    let last = items.len() - 1;
    let selected = open.selected.and_then(|s| open.window.index_of(s));
    let selected = selected.filter(|_| highlight);
    let lines_of = |i: usize| {
        let prev = i.checked_sub(1).map(|p| &items[p]);
        item_lines(&items[i], prev, ctx, selected == Some(i))
    };
    let mut anchor = open
        .anchor
        .and_then(|a| open.window.index_of(a))
        .unwrap_or(last);
    if let Some(s) = selected {
        anchor = anchor.max(s);
    }
    let mut blocks = upward(anchor, height, &lines_of);
    let top = blocks.last().map_or(anchor, |(i, _)| *i);
    if let Some(s) = selected {
        let clipped = s == top && blocks.iter().map(|(_, l)| l.len()).sum::<usize>() > height;
        if s < top || (clipped && s != anchor) {
            // The selection went above the screen: put it at the top.
            let mut used = 0;
            let mut end = s;
            for i in s..=last {
                let h = lines_of(i).len();
                if i > s && used + h > height {
                    break;
                }
                used += h;
                end = i;
            }
            anchor = end;
            blocks = upward(anchor, height, &lines_of);
        }
    }
    let top = blocks.last().map_or(anchor, |(i, _)| *i);
    open.visible = Visible {
        top,
        bottom: anchor,
        shown: true,
    };
    open.anchor = if anchor == last && open.window.attached() {
        None
    } else {
        Some(items[anchor].id)
    };
    blocks
}

fn upward(
    anchor: usize,
    height: usize,
    lines_of: &dyn Fn(usize) -> Vec<Line<'static>>,
) -> Vec<(usize, Vec<Line<'static>>)> {
    let mut blocks = Vec::new();
    let mut used = 0;
    let mut i = anchor;
    loop {
        let lines = lines_of(i);
        used += lines.len();
        blocks.push((i, lines));
        if used >= height || i == 0 {
            break;
        }
        i -= 1;
    }
    blocks
}
