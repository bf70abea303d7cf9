//! Starting `chatsync server` as its own process for a benchmark.

use anyhow::Context;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A server child process.
pub struct Spawned {
    /// `host:port` it listens on.
    pub addr: String,
    child: Child,
}

impl Spawned {
    /// Starts `chatsync server` on a free loopback port with data in `dir`.
    pub async fn start(dir: &Path) -> anyhow::Result<Spawned> {
        let exe = std::env::current_exe().context("cannot find the chatsync binary")?;
        let mut child = Command::new(exe)
            .args(["server", "--listen", "127.0.0.1:0", "--rate", "0", "--data"])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start the server process")?;
        let stdout = child.stdout.take().context("server stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .context("the server did not start within 10 s")??
            .context("the server exited at start")?;
        // "chatsync server listening on ws://127.0.0.1:PORT/v1/ws ..."
        let addr = first
            .split("ws://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .with_context(|| format!("unexpected server banner: {first}"))?
            .to_string();
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Spawned { addr, child })
    }

    /// Stops it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
