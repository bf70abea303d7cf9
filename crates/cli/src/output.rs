//! Logging set-up and the way statuses are printed.

use chatsync_client::Status;

/// Logs go to stderr, coloured only when stderr is a terminal (a log file
/// gets plain text); `RUST_LOG` overrides the default level. Stage stamps
/// (see [`crate::stages`]) go to `stages`, or to the file the
/// `CHATSYNC_STAGES` environment variable names, if either is given.
pub fn init_tracing(verbose: bool, stages: Option<&std::path::Path>) {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let default = if verbose { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter(filter);
    let from_env = std::env::var_os(crate::stages::ENV).map(std::path::PathBuf::from);
    let recorder = stages
        .map(std::path::Path::to_path_buf)
        .or(from_env)
        .and_then(|path| match crate::stages::Recorder::to(&path) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("warning: cannot record stages to {}: {e}", path.display());
                None
            }
        })
        .map(|r| {
            let only_stages = tracing_subscriber::filter::Targets::new()
                .with_target(crate::stages::TARGET, tracing::Level::TRACE);
            r.with_filter(only_stages)
        });
    let _ = tracing_subscriber::registry()
        .with(logs)
        .with(recorder)
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

/// The reader of stdout went away (`chatsync … | head`): the command stops
/// printing and ends quietly.
#[derive(Debug)]
pub struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stdout was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// Whether `e` comes from a closed stdout.
pub fn stdout_closed(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<StdoutClosed>())
}

/// Writes one line to stdout. A closed stdout is [`StdoutClosed`] rather
/// than the panic of `println!`.
pub fn write_line(args: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    use std::io::Write;
    writeln!(std::io::stdout().lock(), "{args}").map_err(|e| {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            anyhow::Error::new(StdoutClosed)
        } else {
            anyhow::Error::new(e).context("cannot write to stdout")
        }
    })
}

/// `println!` through [`write_line`]: evaluates to `anyhow::Result<()>`.
macro_rules! outln {
    () => {
        $crate::output::write_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::output::write_line(format_args!($($arg)*))
    };
}
pub(crate) use outln;

/// An error and its causes on one line, each message once: a cause whose
/// text is already on the line (a `"i/o error: {0}"` variant, or a context
/// that formatted its cause) is not repeated.
pub fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let msg = cause.to_string();
        if msg.is_empty() || line.contains(&msg) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&msg);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_line_says_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::AlreadyExists, "File exists");
        #[derive(Debug)]
        struct Wrap(std::io::Error);
        impl std::fmt::Display for Wrap {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "i/o error: {}", self.0)
            }
        }
        impl std::error::Error for Wrap {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = anyhow::Error::new(Wrap(io)).context("cannot open /x");
        assert_eq!(error_line(&e), "cannot open /x: i/o error: File exists");
        let plain = anyhow::anyhow!("timed out").context("no answer");
        assert_eq!(error_line(&plain), "no answer: timed out");
    }
}
