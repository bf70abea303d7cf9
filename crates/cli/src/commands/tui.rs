//! `chatsync tui`: the full-screen terminal client.

use crate::ClientArgs;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `tui`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    client: ClientArgs,
    /// Append each sent message's keystroke-to-screen time to this file
    /// (measurement aid).
    #[arg(long, hide = true)]
    timing_log: Option<PathBuf>,
}

impl Args {
    /// Sends logs to `tui.log` in the data directory (`RUST_LOG` sets the
    /// level), since the screen is the client's.
    pub fn init_logging(&self) {
        let path = self.client.data.join("tui.log");
        let _ = std::fs::create_dir_all(&self.client.data);
        let Ok(file) = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&path)
        else {
            return;
        };
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(file))
            .try_init();
    }
}

/// Runs the terminal client on the stored session.
pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    chatsync_tui::run(chatsync_tui::Options {
        data: a.client.data,
        timing_log: a.timing_log,
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}
