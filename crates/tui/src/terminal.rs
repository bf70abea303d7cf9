//! Terminal set-up and restoration: raw mode, the alternate screen,
//! bracketed paste. The terminal is restored on every way out: a normal
//! return, an error (the guard's `Drop`) and a panic (the hook).

use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{
    DisableBracketedPaste, EnableBracketedPaste, KeyboardEnhancementFlags,
    PopKeyboardEnhancementFlags, PushKeyboardEnhancementFlags,
};
use ratatui::crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, supports_keyboard_enhancement, EnterAlternateScreen,
    LeaveAlternateScreen,
};
use ratatui::crossterm::{cursor, execute};
use ratatui::Terminal;
use std::io::{stdout, Stdout};
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether the terminal is currently set up (so restoring twice is harmless).
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Whether keyboard enhancement flags were pushed.
static ENHANCED: AtomicBool = AtomicBool::new(false);

/// Restores the terminal when dropped.
pub struct Guard(());

/// The terminal the client draws on.
pub type Tty = Terminal<CrosstermBackend<Stdout>>;

/// Puts the terminal in full-screen raw mode and installs the panic hook.
pub fn setup() -> anyhow::Result<(Guard, Tty)> {
    install_panic_hook();
    enable_raw_mode()?;
    ACTIVE.store(true, Ordering::SeqCst);
    let mut out = stdout();
    if let Err(e) = execute!(out, EnterAlternateScreen, EnableBracketedPaste) {
        restore();
        return Err(e.into());
    }
    // Terminals that speak the kitty keyboard protocol then report
    // Shift-Enter apart from Enter; others ignore this.
    if supports_keyboard_enhancement().unwrap_or(false)
        && execute!(
            out,
            PushKeyboardEnhancementFlags(KeyboardEnhancementFlags::DISAMBIGUATE_ESCAPE_CODES)
        )
        .is_ok()
    {
        ENHANCED.store(true, Ordering::SeqCst);
    }
    match Terminal::new(CrosstermBackend::new(out)) {
        Ok(terminal) => Ok((Guard(()), terminal)),
        Err(e) => {
            restore();
            Err(e.into())
        }
    }
}

/// Leaves raw mode and the alternate screen, shows the cursor. Idempotent.
pub fn restore() {
    if !ACTIVE.swap(false, Ordering::SeqCst) {
        return;
    }
    let mut out = stdout();
    if ENHANCED.swap(false, Ordering::SeqCst) {
        let _ = execute!(out, PopKeyboardEnhancementFlags);
    }
    let _ = execute!(
        out,
        DisableBracketedPaste,
        LeaveAlternateScreen,
        cursor::Show
    );
    let _ = disable_raw_mode();
}

impl Drop for Guard {
    fn drop(&mut self) {
        restore();
    }
}

fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        previous(info);
    }));
}
