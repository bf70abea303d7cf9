//! An in-process server without sockets, for fuzzing and simulation.
//!
//! [`InMemoryServer`] runs the real server — HTTP upgrade, gateway,
//! per-connection processing, group committer, fan-out — over in-memory
//! byte pipes ([`tokio::io::duplex`]) instead of TCP. Each
//! [`InMemoryServer::connect`] returns the client end of a new pipe; the
//! caller speaks HTTP and WebSocket on it, e.g. with
//! `tokio_tungstenite::client_async("ws://chatsync/v1/ws", pipe)`.
//!
//! Not a stable API: hidden from the docs, for the project's own fuzz
//! targets and test harnesses.

use crate::{serve_on, ServerConfig, ServerError, ServerStore};
use std::io;
use std::sync::Arc;
use tokio::io::DuplexStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Bytes buffered in each direction of a pipe.
const PIPE_BYTES: usize = 1 << 20;

/// A running server reachable through in-memory pipes.
pub struct InMemoryServer {
    dial: mpsc::UnboundedSender<DuplexStream>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServerError>>,
}

impl InMemoryServer {
    /// Starts serving `store` with `config` (its `data_dir` is unused) on
    /// the current tokio runtime.
    pub fn start(config: ServerConfig, store: Arc<dyn ServerStore>) -> Self {
        let (dial, incoming) = mpsc::unbounded_channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let listener = PipeListener { incoming, next: 0 };
        let task = tokio::spawn(serve_on(listener, config, store, async move {
            let _ = stopped.await;
        }));
        InMemoryServer {
            dial,
            stop: Some(stop),
            task,
        }
    }

    /// Opens a connection: the client end of a new pipe, on which nothing
    /// has been sent yet (not even the HTTP upgrade request).
    pub fn connect(&self) -> DuplexStream {
        let (client, server) = tokio::io::duplex(PIPE_BYTES);
        // If the server is gone the pipe's other end is dropped, and the
        // client sees end-of-file: the same as a refused connection.
        let _ = self.dial.send(server);
        client
    }

    /// Shuts down like [`crate::serve`] (pending answers delivered, every
    /// accepted write committed) and returns its result.
    pub async fn stop(mut self) -> Result<(), ServerError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await?
    }
}

/// Accepts the server ends of the pipes [`InMemoryServer::connect`] makes.
struct PipeListener {
    incoming: mpsc::UnboundedReceiver<DuplexStream>,
    next: u64,
}

impl axum::serve::Listener for PipeListener {
    type Io = DuplexStream;
    /// A connection number, for the logs.
    type Addr = u64;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.incoming.recv().await {
            Some(pipe) => {
                self.next += 1;
                (pipe, self.next)
            }
            // No handle can dial any more: wait for shutdown.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(0)
    }
}
