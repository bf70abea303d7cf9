//! `chatsync register` and `chatsync login`.

use crate::output::outln;
use crate::ClientArgs;
use anyhow::Context;
use chatsync_client::Client;
use std::process::ExitCode;

/// Arguments of `register`.
#[derive(clap::Args)]
pub struct RegisterArgs {
    /// Server address (host:port or ws:// URL).
    #[arg(long, env = "CHATSYNC_SERVER", default_value = "127.0.0.1:7878")]
    server: String,
    /// Account name.
    username: String,
    /// Password (at least 8 bytes).
    #[arg(long, env = "CHATSYNC_PASSWORD")]
    password: String,
}

/// Arguments of `login`.
#[derive(clap::Args)]
pub struct LoginArgs {
    /// Server address (host:port or ws:// URL).
    #[arg(long, env = "CHATSYNC_SERVER", default_value = "127.0.0.1:7878")]
    server: String,
    /// Account name.
    username: String,
    /// Password.
    #[arg(long, env = "CHATSYNC_PASSWORD")]
    password: String,
    /// Name for this device's session.
    #[arg(long, default_value = "cli")]
    device: String,
    #[command(flatten)]
    client: ClientArgs,
}

/// Creates an account.
pub async fn register(a: RegisterArgs) -> anyhow::Result<ExitCode> {
    let user = chatsync_client::register(&a.server, &a.username, &a.password)
        .await
        .with_context(|| format!("cannot register {:?}", a.username))?;
    outln!("registered {} ({user})", a.username)?;
    Ok(ExitCode::SUCCESS)
}

/// Logs in and stores the session.
pub async fn login(a: LoginArgs) -> anyhow::Result<ExitCode> {
    let client = Client::login(
        &a.client.data,
        &a.server,
        &a.username,
        &a.password,
        &a.device,
    )
    .await
    .with_context(|| format!("cannot log in as {:?}", a.username))?;
    // Learn the conversation list while we are here, so offline sends work.
    if client
        .wait_connected(std::time::Duration::from_secs(5))
        .await
        .is_ok()
    {
        let _ = client.refresh_conversations().await;
    }
    outln!(
        "logged in as {} ({}); session stored in {}",
        a.username,
        client.user(),
        a.client.data.display()
    )?;
    Ok(ExitCode::SUCCESS)
}
