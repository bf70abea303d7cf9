//! `chatsync server`.

use crate::output::outln;
use anyhow::Context;
use chatsync_protocol::Limits;
use chatsync_server::ServerConfig;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Arguments of `server`.
#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, env = "CHATSYNC_LISTEN", default_value = "127.0.0.1:7878")]
    listen: String,
    /// Directory holding the server's database.
    #[arg(
        long,
        env = "CHATSYNC_SERVER_DATA",
        default_value = "chatsync-server-data"
    )]
    data: PathBuf,
    /// Largest message body, in UTF-8 bytes.
    #[arg(long, default_value_t = Limits::default().max_body_bytes)]
    max_body_bytes: usize,
    /// Sustained sends per second allowed per connection.
    #[arg(long, default_value_t = Limits::default().rate_per_sec)]
    rate: u32,
    /// Sends allowed in a burst above the sustained rate.
    #[arg(long, default_value_t = Limits::default().rate_burst)]
    burst: u32,
    /// Seconds a new connection has to authenticate.
    #[arg(long, default_value_t = 10)]
    handshake_timeout: u64,
    /// Seconds of silence after which a connection is closed.
    #[arg(long, default_value_t = 120)]
    idle_timeout: u64,
    /// Most simultaneous connections per account.
    #[arg(long, default_value_t = 16)]
    max_connections_per_user: usize,
    /// Largest WebSocket message read from a client, in bytes (raised if
    /// below what a valid request needs).
    #[arg(long, default_value_t = Limits::default().max_frame_bytes)]
    max_frame_bytes: usize,
    /// Days a session token stays valid after its login.
    #[arg(long, default_value_t = 30)]
    session_ttl_days: u64,
}

/// Runs a server until Ctrl-C or SIGTERM.
pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    let listener = tokio::net::TcpListener::bind(&a.listen)
        .await
        .with_context(|| format!("cannot listen on {}", a.listen))?;
    let addr = listener.local_addr()?;
    // Opened before announcing the address: once it says it listens, it
    // serves.
    anyhow::ensure!(
        !a.data.exists() || a.data.is_dir(),
        "the data directory {} is a file, not a directory",
        a.data.display()
    );
    let dir = a.data.clone();
    let store = tokio::task::spawn_blocking(move || chatsync_server::open_store(&dir))
        .await?
        .with_context(|| format!("cannot open the data directory {}", a.data.display()))?;
    let limits = Limits {
        max_body_bytes: a.max_body_bytes,
        max_frame_bytes: a.max_frame_bytes,
        rate_per_sec: a.rate,
        rate_burst: a.burst,
        ..Limits::default()
    };
    outln!(
        "chatsync server listening on ws://{addr}{} with data in {} (max body {} bytes, {} sends/s per connection)",
        chatsync_protocol::WS_PATH,
        a.data.display(),
        limits.max_body_bytes,
        limits.rate_per_sec
    )?;
    let config = ServerConfig {
        data_dir: a.data,
        limits,
        handshake_timeout: Duration::from_secs(a.handshake_timeout),
        idle_timeout: Duration::from_secs(a.idle_timeout),
        max_connections_per_user: a.max_connections_per_user,
        session_ttl: Duration::from_secs(a.session_ttl_days.saturating_mul(86_400)),
    };
    chatsync_server::serve_with_store(listener, config, Arc::new(store), shutdown_signal()).await?;
    outln!("chatsync server stopped")?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
