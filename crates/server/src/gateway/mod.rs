//! The WebSocket gateway: HTTP routes, per-connection processing, and the
//! glue between connections, the committer and the fan-out hub.
//!
//! - [`connection`] moves frames: a reader loop, an ordered responder, and
//!   a socket writer per connection.
//! - [`handlers`] decides what each client frame does.
//! - [`members`] caches conversation membership; [`rate`] is the send gate.

mod connection;
mod handlers;
mod members;
mod rate;
pub(crate) mod upgrade_deadline;

use crate::commit::Committer;
use crate::fanout::{ConnId, Hub};
use crate::push::{Audience, PushRule};
use crate::store::{ServerStore, WriteOp, WriteOutcome};
use crate::ServerConfig;
use axum::extract::ws::Utf8Bytes;
use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use chatsync_protocol::encode;
use members::MembersCache;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{watch, Notify};
use upgrade_deadline::UpgradeLatch;

/// Context carried with each write to the committer, for the fan-out that
/// follows the commit. For a mark, the submitting user is the member whose
/// mark moved.
pub(crate) struct CommitCtx {
    /// Connection that submitted it; it gets an ack instead of a push.
    origin: ConnId,
    /// Account name of the submitting user.
    username: Arc<str>,
}

/// Everything connections share.
pub(crate) struct AppState {
    pub(crate) config: ServerConfig,
    pub(crate) store: Arc<dyn ServerStore>,
    pub(crate) committer: Committer<CommitCtx>,
    pub(crate) hub: Arc<Hub>,
    pub(crate) members: Arc<MembersCache>,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) tracker: Arc<Tracker>,
    next_conn: AtomicU64,
}

impl AppState {
    /// Builds the state and starts the committer, whose hook fans out every
    /// new message and every moved mark right after its commit. The hook
    /// runs on the committer's single fan-out thread, fed in commit order,
    /// so pushes leave in sequence order.
    pub(crate) fn new(
        config: ServerConfig,
        store: Arc<dyn ServerStore>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<Self>, crate::ServerError> {
        let config = config.normalized();
        let hub = Hub::new(config.max_connections_per_user);
        let members = Arc::new(MembersCache::default());
        let hook = {
            let (hub, members, store) = (hub.clone(), members.clone(), store.clone());
            // The push rule's state lives on the committer thread, which
            // sees every committed write in commit order.
            let mut rule = PushRule::new();
            move |op: &WriteOp, outcome: &WriteOutcome, ctx: &CommitCtx| {
                publish_committed(&hub, &members, &*store, &mut rule, op, outcome, ctx)
            }
        };
        let committer = Committer::start(store.clone(), hook)?;
        Ok(Arc::new(AppState {
            config,
            store,
            committer,
            hub,
            members,
            shutdown,
            tracker: Arc::new(Tracker::default()),
            next_conn: AtomicU64::new(1),
        }))
    }

    fn next_conn_id(&self) -> ConnId {
        ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed))
    }
}

fn publish_committed(
    hub: &Hub,
    members: &MembersCache,
    store: &dyn ServerStore,
    rule: &mut PushRule,
    op: &WriteOp,
    outcome: &WriteOutcome,
    ctx: &CommitCtx,
) {
    for push in rule.pushes(store, op, outcome, &ctx.username) {
        let frame = Utf8Bytes::from(encode(&push.frame));
        match push.to {
            Audience::Accounts(users) => hub.publish(&users, None, &frame),
            Audience::MembersButOrigin => match members.load_blocking(store, push.conversation) {
                Ok(Some(users)) => hub.publish(&users, Some(ctx.origin), &frame),
                Ok(None) => {}
                // The write is committed; recipients will get it on their
                // next sync.
                Err(e) => tracing::error!(error = %e, "fan-out: could not read members"),
            },
        }
    }
}

/// The router: the WebSocket endpoint and a health check.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(chatsync_protocol::WS_PATH, get(upgrade))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

async fn upgrade(
    ws: WebSocketUpgrade,
    State(state): State<Arc<AppState>>,
    ConnectInfo(latch): ConnectInfo<UpgradeLatch>,
) -> impl IntoResponse {
    // From here on the WebSocket handshake timeout (no `hello`) applies
    // instead of the HTTP deadline.
    latch.open();
    let max = state.config.limits.max_frame_bytes;
    // Counted from here, so that shutdown waits for a connection whose
    // upgrade is still completing.
    let guard = state.tracker.enter();
    // tungstenite preallocates a 128 KiB read buffer per connection by
    // default, which made idle connections cost ~150 KB of RSS each; frames
    // are small, and the buffer still grows for a large one.
    ws.read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| connection::run(socket, state, guard))
}

/// Initial read buffer of a connection (see `upgrade`).
const READ_BUFFER_BYTES: usize = 4096;

/// Counts live connections so that shutdown can wait for them.
#[derive(Default)]
pub(crate) struct Tracker {
    live: AtomicUsize,
    idle: Notify,
}

/// One live connection; dropping it decrements the count.
pub(crate) struct TrackerGuard(Arc<Tracker>);

impl Tracker {
    fn enter(self: &Arc<Self>) -> TrackerGuard {
        self.live.fetch_add(1, Ordering::SeqCst);
        TrackerGuard(self.clone())
    }

    /// Waits until no connection is live.
    pub(crate) async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            // Register before checking, so a drop in between is not missed.
            notified.as_mut().enable();
            if self.live.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for TrackerGuard {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}
