//! Running `chatsync server` as its own process (bench, chaos): started on a
//! loopback port, killed with SIGKILL, started again on the same port and
//! data.

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A server child process.
pub struct Spawned {
    /// `host:port` it listens on.
    pub addr: String,
    dir: PathBuf,
    extra: Vec<String>,
    child: Child,
}

impl Spawned {
    /// Starts `chatsync server` on a free loopback port with data in `dir`
    /// and no rate limit (for benchmarks).
    pub async fn start(dir: &Path) -> anyhow::Result<Spawned> {
        Self::start_with(dir, "127.0.0.1:0", &["--rate", "0"]).await
    }

    /// Starts `chatsync server --listen LISTEN --data DIR EXTRA...`. A
    /// fixed port that is still held by a process just killed is retried
    /// for a few seconds.
    pub async fn start_with(dir: &Path, listen: &str, extra: &[&str]) -> anyhow::Result<Spawned> {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let mut tries = 0;
        loop {
            match Self::try_start(dir, listen, &extra).await {
                Ok(s) => return Ok(s),
                Err(e) if tries < 50 => {
                    tries += 1;
                    tracing::debug!("server start on {listen}: {e:#}; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn try_start(dir: &Path, listen: &str, extra: &[String]) -> anyhow::Result<Spawned> {
        let exe = std::env::current_exe().context("cannot find the chatsync binary")?;
        let mut command = Command::new(exe);
        command
            .args(["server", "--listen", listen])
            .args(extra)
            .arg("--data")
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        // A process that records stage stamps has its server record too.
        if let Some(file) = crate::stages::file() {
            command.env(crate::stages::ENV, file);
        }
        let mut child = command.spawn().context("cannot start the server process")?;
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
        Ok(Spawned {
            addr,
            dir: dir.to_path_buf(),
            extra: extra.to_vec(),
            child,
        })
    }

    /// Kills it with SIGKILL (no chance to flush or close anything) and
    /// reaps it.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Starts it again (after [`Spawned::kill`]) on the same address and
    /// data; kills it first if it still runs.
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        self.kill().await;
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        *self = Self::start_with(&self.dir, &self.addr, &extra).await?;
        Ok(())
    }

    /// Stops it.
    pub async fn stop(mut self) {
        self.kill().await;
    }
}
