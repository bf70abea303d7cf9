//! `chatsync tui`: a full-screen terminal chat client on the chatsync
//! client library.
//!
//! Everything it knows about messages comes from the library's public API
//! (`subscribe`, `page`, `send`, `edit`, `delete`, `react`, `retry`,
//! `discard`, `mark_read`, `unread`, the connection state), so it is also
//! the proof that this API suffices for a real app.
//!
//! * [`app`]: state and key handling, pure and unit-tested;
//! * [`view`]: rendering with ratatui, tested on its `TestBackend`;
//! * [`session`]: the event loop tying the app to a [`chatsync_client::Client`];
//! * [`terminal`]: raw mode and alternate screen, restored on exit and on panic.

pub mod app;
pub mod session;
pub mod terminal;
pub mod text;
pub mod view;

use anyhow::Context;
use chatsync_client::{Client, ClientError};
use std::path::PathBuf;

/// Set in the environment, the client panics right after its first frame:
/// the end-to-end test checks that the panic hook restores the terminal.
pub const TEST_PANIC_ENV: &str = "CHATSYNC_TUI_TEST_PANIC";

/// What `chatsync tui` is given.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Client data directory holding the session (`chatsync login --data`).
    pub data: PathBuf,
    /// Append keystroke-to-screen timings of sent messages to this file.
    pub timing_log: Option<PathBuf>,
}

/// Runs the terminal client until the person quits.
pub async fn run(opts: Options) -> anyhow::Result<()> {
    let client = match Client::open(&opts.data).await {
        Ok(c) => c,
        Err(ClientError::NoSession(_)) => anyhow::bail!(
            "no session in {}: run `chatsync login USER --data {}` first",
            opts.data.display(),
            opts.data.display()
        ),
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot open the client in {}", opts.data.display()))
        }
    };
    let (guard, tty) = terminal::setup()?;
    let result = async {
        let mut session = session::Session::new(client, tty).await?;
        if let Some(path) = &opts.timing_log {
            session.log_timings(path)?;
        }
        if std::env::var_os(TEST_PANIC_ENV).is_some() {
            session.step().await?;
            panic!("{TEST_PANIC_ENV} is set: panicking on purpose after the first frame");
        }
        session.run(session::spawn_input()).await
    }
    .await;
    drop(guard);
    result
}
