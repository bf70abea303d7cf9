//! Glyphs and colours of statuses, shared by every pane.

use chatsync_client::Status;
use ratatui::style::{Color, Modifier, Style};

/// The terminal glyph of a status (DESIGN.md's table).
pub fn glyph(status: Status) -> &'static str {
    match status {
        Status::Sending => "◌",
        Status::InFlight => "✓",
        Status::Success | Status::Read => "✓✓",
        Status::Failed => "!",
    }
}

/// Human name of a status.
pub fn name(status: Status) -> &'static str {
    match status {
        Status::Sending => "sending",
        Status::InFlight => "in-flight",
        Status::Success => "delivered",
        Status::Read => "read",
        Status::Failed => "failed",
    }
}

/// Colour of a status glyph.
pub fn status_style(status: Status) -> Style {
    match status {
        Status::Sending => Style::new().fg(Color::Yellow),
        Status::InFlight => Style::new().fg(Color::Cyan),
        Status::Success => Style::new().fg(Color::Green),
        Status::Read => Style::new()
            .fg(Color::LightBlue)
            .add_modifier(Modifier::BOLD | Modifier::REVERSED),
        Status::Failed => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
    }
}

/// Dim secondary text.
pub fn dim() -> Style {
    Style::new().fg(Color::DarkGray)
}

/// A stable colour per account name, so each person keeps theirs.
pub fn name_style(name: &str, own: bool) -> Style {
    if own {
        return Style::new()
            .fg(Color::LightBlue)
            .add_modifier(Modifier::BOLD);
    }
    const PALETTE: [Color; 5] = [
        Color::Magenta,
        Color::LightGreen,
        Color::LightYellow,
        Color::LightMagenta,
        Color::LightCyan,
    ];
    let h = name.bytes().fold(0usize, |h, b| {
        h.wrapping_mul(31).wrapping_add(usize::from(b))
    });
    Style::new()
        .fg(PALETTE[h % PALETTE.len()])
        .add_modifier(Modifier::BOLD)
}

/// Background of the selected message or conversation.
pub fn selected() -> Style {
    Style::new().bg(Color::Indexed(237))
}

/// A reaction this account set.
pub fn own_reaction() -> Style {
    Style::new()
        .fg(Color::Black)
        .bg(Color::LightBlue)
        .add_modifier(Modifier::BOLD)
}
