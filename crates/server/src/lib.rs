//! chatsync server: accepts WebSocket connections speaking the chatsync
//! protocol, stores messages durably, and fans them out.
//!
//! # Shape
//!
//! ```text
//! connection (reader ─► ordered responder ─► writer)   gateway/
//!      │ submit write                 ▲ push
//!      ▼                              │
//! group committer thread ── apply_batch (1 txn, 1 fsync) ── store/ (SQLite)
//!      │ after commit, in order: its fan-out thread pushes, then answers
//!      └─► fan-out hub (non-blocking, drops slow consumers)  fanout.rs
//! ```
//!
//! - Every write of messages, actions (edit, delete, react, stored as
//!   entries of the conversation's sequence) and marks (delivered, read)
//!   goes through one thread, [`commit`], which commits whatever is queued
//!   in a single transaction and only then answers. An `ack` therefore always means "on disk".
//! - Each connection handles its frames strictly in order but does not wait
//!   for one commit before reading the next frame: answers are queued in
//!   order and sent as their commits complete (pipelining).
//! - Deduplication is on (sender, message id), for as long as the message
//!   exists: a resend gets the original `ack`, even one that would otherwise
//!   be refused. Message ids are unique across senders: another account's
//!   id is refused with `id_conflict`.
//!
//! # Using it
//!
//! Bind a listener and pass it to [`serve`] with a shutdown future; the
//! call returns once the future resolved, every connection is closed and
//! every accepted write is committed.
//!
//! ```no_run
//! # async fn run() -> Result<(), chatsync_server::ServerError> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let config = chatsync_server::ServerConfig {
//!     data_dir: "data".into(),
//!     ..Default::default()
//! };
//! chatsync_server::serve(listener, config, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await
//! # }
//! ```

pub mod auth;
pub mod commit;
mod error;
pub mod fanout;
mod gateway;
pub mod push;
mod stage;
pub mod store;
#[doc(hidden)]
pub mod testing;

pub use error::ServerError;
pub use stage::STAGE_TARGET;
pub use store::{ServerStore, SqliteStore};

use chatsync_protocol::Limits;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Name of the database file inside the data directory.
pub const DATABASE_FILE: &str = "chatsync.sqlite3";

/// How long shutdown waits for connections to deliver pending answers.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Server settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Directory holding the database; created if missing.
    pub data_dir: PathBuf,
    /// Limits enforced and announced in `welcome`, after
    /// [`ServerConfig::normalized`].
    pub limits: Limits,
    /// A connection that has not authenticated with `hello` within this
    /// time gets an error and is closed.
    pub handshake_timeout: Duration,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// Most simultaneous connections one account may have.
    pub max_connections_per_user: usize,
    /// Lifetime of a session token, from its `login`: an older token is
    /// refused at `hello` with `unauthorized` (the user logs in again).
    pub session_ttl: Duration,
}

/// Default [`ServerConfig::session_ttl`]: 30 days.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            data_dir: PathBuf::from("chatsync-data"),
            limits: Limits::default(),
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            max_connections_per_user: 16,
            session_ttl: DEFAULT_SESSION_TTL,
        }
    }
}

impl ServerConfig {
    /// This configuration with consistent limits ([`Limits::normalized`]):
    /// in particular `max_frame_bytes` is raised, if needed, so that every
    /// `send` whose body fits `max_body_bytes` also fits in one frame. The
    /// server runs with, and announces in `welcome`, the normalized limits,
    /// which also carry the timeouts, the connection cap and the session
    /// lifetime of this configuration (whatever `limits` held for those).
    pub fn normalized(mut self) -> Self {
        let mut limits = self.limits.normalized();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        limits.handshake_timeout_ms = Some(ms(self.handshake_timeout));
        limits.idle_timeout_ms = Some(ms(self.idle_timeout));
        limits.max_connections_per_user =
            Some(u32::try_from(self.max_connections_per_user).unwrap_or(u32::MAX));
        limits.session_ttl_secs = Some(self.session_ttl.as_secs());
        if limits.max_frame_bytes != self.limits.max_frame_bytes {
            tracing::info!(
                configured = self.limits.max_frame_bytes,
                effective = limits.max_frame_bytes,
                max_body_bytes = limits.max_body_bytes,
                "max_frame_bytes raised so that every valid request fits in one frame"
            );
        }
        self.limits = limits;
        self
    }
}

/// Opens (creating if needed) the SQLite store in `data_dir`.
pub fn open_store(data_dir: &Path) -> Result<SqliteStore, ServerError> {
    std::fs::create_dir_all(data_dir)?;
    SqliteStore::open(&data_dir.join(DATABASE_FILE))
}

/// Serves on `listener` with the SQLite store in `config.data_dir` until
/// `shutdown` resolves. See [`serve_with_store`].
pub async fn serve(
    listener: TcpListener,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let dir = config.data_dir.clone();
    let store = tokio::task::spawn_blocking(move || open_store(&dir)).await??;
    serve_with_store(listener, config, Arc::new(store), shutdown).await
}

/// Serves on `listener` with any store until `shutdown` resolves.
///
/// Shutdown: stop accepting; tell every connection to finish (each sends
/// the answers still pending, then an `unavailable` error and a close);
/// wait for them (at most a grace period); then stop the committer after it
/// committed everything submitted. `config.data_dir` is not used.
pub async fn serve_with_store(
    listener: TcpListener,
    config: ServerConfig,
    store: Arc<dyn ServerStore>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "chatsync server listening");
    }
    // Frames are small and latency matters more than packet count: no Nagle.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
    });
    serve_on(listener, config, store, shutdown).await
}

/// [`serve_with_store`] on any listener: TCP, or the in-memory pipes of
/// [`testing`].
async fn serve_on<L>(
    listener: L,
    config: ServerConfig,
    store: Arc<dyn ServerStore>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let state = gateway::AppState::new(config, store, stop_rx)?;
    let app = gateway::router(state.clone())
        .into_make_service_with_connect_info::<gateway::upgrade_deadline::UpgradeLatch>();
    let stop_signal = async move {
        shutdown.await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    };
    // Connections that do not reach the WebSocket upgrade in time are
    // closed (slow-loris defence); see `gateway::upgrade_deadline`.
    let listener =
        gateway::upgrade_deadline::UpgradeDeadline::new(listener, state.config.handshake_timeout);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(stop_signal)
        .await;
    // Upgraded WebSocket connections live outside axum's bookkeeping; wait
    // for them here.
    if tokio::time::timeout(SHUTDOWN_GRACE, state.tracker.wait_idle())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not close within the grace period");
    }
    state.committer.stop().await?;
    served?;
    tracing::info!("server stopped");
    Ok(())
}
