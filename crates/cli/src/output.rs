//! Logging set-up and the way statuses are printed.

use chatsync_client::Status;

/// Logs go to stderr, coloured only when stderr is a terminal (a log file
/// gets plain text); `RUST_LOG` overrides the default level.
pub fn init_tracing(verbose: bool) {
    use std::io::IsTerminal;
    let default = if verbose { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// The terminal glyph of a status.
pub fn glyph(status: Status) -> &'static str {
    match status {
        Status::Sending => "◌",
        Status::InFlight => "✓",
        Status::Success => "✓✓",
        Status::Read => "✓✓●",
        Status::Failed => "!",
    }
}

/// The name of a status, as scripts see it.
pub fn name(status: Status) -> &'static str {
    match status {
        Status::Sending => "sending",
        Status::InFlight => "in-flight",
        Status::Success => "success",
        Status::Read => "read",
        Status::Failed => "failed",
    }
}
