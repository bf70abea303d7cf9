//! An embedded server the demo can stop and start again on the same address.

use anyhow::Context;
use chatsync_server::ServerConfig;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running server task.
pub struct Embedded {
    /// Where it listens.
    pub addr: SocketAddr,
    dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), chatsync_server::ServerError>>,
}

impl Embedded {
    /// Starts a server on `addr` (port 0 picks one) with data in `dir`.
    pub async fn start(dir: &Path, addr: SocketAddr) -> anyhow::Result<Embedded> {
        // The port of a stopped server may take a moment to be free again.
        let mut tries = 0;
        let listener = loop {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    tracing::debug!("bind {addr}: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e).with_context(|| format!("cannot listen on {addr}")),
            }
        };
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let config = ServerConfig {
            data_dir: dir.to_path_buf(),
            ..ServerConfig::default()
        };
        let task = tokio::spawn(chatsync_server::serve(listener, config, async move {
            let _ = stopped.await;
        }));
        Ok(Embedded {
            addr,
            dir: dir.to_path_buf(),
            stop: Some(stop),
            task,
        })
    }

    /// Stops it gracefully and waits until it is down.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.context("server task")??;
        Ok(())
    }

    /// Stops it and starts it again on the same address and data.
    pub async fn restart(self) -> anyhow::Result<Embedded> {
        let (dir, addr) = (self.dir.clone(), self.addr);
        self.stop().await?;
        Embedded::start(&dir, addr).await
    }
}
