//! Shared pieces: a real server that can be stopped and started again on
//! the same address and data, a probe into the server's store, and users
//! with their own client storage.

use chatsync_client::core::Config;
use chatsync_client::{Client, ConnectionState, Item};
use chatsync_protocol::{ConversationId, MessageId, Seq, UserId, WireMessage};
use chatsync_server::{ServerConfig, ServerError, ServerStore, SqliteStore};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long any awaited condition may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// How long "nothing happens" is observed when a status must stay put.
pub const IDLE: Duration = Duration::from_millis(400);
pub const PASSWORD: &str = "correct horse battery staple";

/// Syncer tunables for tests: reconnect quickly.
pub fn config() -> Config {
    Config {
        reconnect_base: Duration::from_millis(20),
        reconnect_cap: Duration::from_millis(300),
        ..Config::default()
    }
}

/// Polls `check` until it yields a value; fails the test after [`TIMEOUT`].
pub async fn eventually<T, F>(what: &str, mut check: impl FnMut() -> F) -> T
where
    F: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {TIMEOUT:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---- server ------------------------------------------------------------

/// The stop signal and the task of a running server.
type Running = (oneshot::Sender<()>, JoinHandle<Result<(), ServerError>>);

/// A real server on 127.0.0.1 with its data in a temporary directory.
pub struct TestServer {
    pub addr: SocketAddr,
    pub config: ServerConfig,
    running: Option<Running>,
    _dir: TempDir,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServerConfig {
            data_dir: dir.path().join("server"),
            ..ServerConfig::default()
        };
        tweak(&mut config);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut server = TestServer {
            addr: listener.local_addr().unwrap(),
            config,
            running: None,
            _dir: dir,
        };
        server.spawn(listener);
        server
    }

    /// The address clients are given.
    pub fn url(&self) -> String {
        self.addr.to_string()
    }

    fn spawn(&mut self, listener: TcpListener) {
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(chatsync_server::serve(
            listener,
            self.config.clone(),
            async move {
                let _ = rx.await;
            },
        ));
        self.running = Some((tx, task));
    }

    /// Graceful shutdown; returns once `serve` returned.
    pub async fn stop(&mut self) {
        let (tx, task) = self.running.take().expect("the server is not running");
        let _ = tx.send(());
        tokio::time::timeout(Duration::from_secs(15), task)
            .await
            .expect("serve() did not return within 15 s of shutdown")
            .expect("the server task panicked")
            .expect("serve() returned an error");
    }

    /// Starts again on the same address with the same data directory.
    pub async fn restart(&mut self) {
        self.restart_with(|_| {}).await;
    }

    /// [`TestServer::restart`] with changed settings (limits...).
    pub async fn restart_with(&mut self, tweak: impl FnOnce(&mut ServerConfig)) {
        assert!(self.running.is_none(), "stop the server before restarting");
        tweak(&mut self.config);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                // The port is free once serve() returned; retry in case the
                // kernel still holds it for a moment.
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("cannot bind {} again: {e}", self.addr),
            }
        };
        self.spawn(listener);
    }

    /// A second handle on the server's SQLite store, to read what it holds.
    /// Opened once the server answers WebSocket upgrades, so it never
    /// races the server's own opening of the database.
    pub async fn probe(&self) -> Probe {
        let url = format!("ws://{}{}", self.addr, chatsync_protocol::WS_PATH);
        eventually("the server to accept WebSocket connections", || {
            let url = url.clone();
            async move { tokio_tungstenite::connect_async(url).await.ok().map(drop) }
        })
        .await;
        let dir = self.config.data_dir.clone();
        eventually("the server's store to open", move || {
            let dir = dir.clone();
            async move {
                let open = tokio::task::spawn_blocking(move || chatsync_server::open_store(&dir));
                open.await.unwrap().ok()
            }
        })
        .await
        .into()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some((tx, _)) = self.running.take() {
            let _ = tx.send(());
        }
    }
}

/// Reads the server's store directly (the server may be running).
#[derive(Clone)]
pub struct Probe(Arc<SqliteStore>);

impl From<SqliteStore> for Probe {
    fn from(store: SqliteStore) -> Self {
        Probe(Arc::new(store))
    }
}

impl Probe {
    /// Every message of the conversation, in sequence order.
    pub fn messages(&self, conv: ConversationId) -> Vec<WireMessage> {
        self.0.messages_after(conv, Seq::ZERO, 10_000).unwrap()
    }

    /// Where the server stored message `id`, if it did.
    pub fn seq_of(&self, conv: ConversationId, id: MessageId) -> Option<Seq> {
        self.messages(conv)
            .into_iter()
            .find(|m| m.id == id)
            .map(|m| m.seq)
    }

    /// The delivered mark of `user` in `conv`.
    pub fn delivered(&self, conv: ConversationId, user: UserId) -> Seq {
        let (members, _) = self.0.marks(conv).unwrap().expect("unknown conversation");
        members
            .iter()
            .find(|m| m.user == user)
            .map(|m| m.delivered)
            .expect("not a member")
    }

    /// Whether every member but `sender` has stored `seq`.
    pub fn delivered_to_others(&self, conv: ConversationId, sender: UserId, seq: Seq) -> bool {
        let (members, _) = self.0.marks(conv).unwrap().expect("unknown conversation");
        members
            .iter()
            .filter(|m| m.user != sender)
            .all(|m| m.delivered >= seq)
    }
}

// ---- users ---------------------------------------------------------------

/// Creates an account.
pub async fn register(server: &str, name: &str) -> UserId {
    chatsync_client::register(server, name, PASSWORD)
        .await
        .unwrap_or_else(|e| panic!("registering {name}: {e}"))
}

/// A logged-in user with its own client storage directory.
pub struct User {
    pub name: String,
    pub client: Client,
    dir: TempDir,
}

/// A user whose client was shut down; its storage is kept.
pub struct ClosedUser {
    pub name: String,
    dir: TempDir,
}

impl User {
    /// Registers and logs in; waits until connected.
    pub async fn new(server: &str, name: &str) -> User {
        register(server, name).await;
        Self::login(server, name).await
    }

    /// Logs in an existing account on a new device; waits until connected.
    pub async fn login(server: &str, name: &str) -> User {
        Self::login_with(server, name, config()).await
    }

    /// Registers and logs in with syncer tunables; waits until connected.
    #[allow(dead_code)]
    pub async fn new_with(server: &str, name: &str, config: Config) -> User {
        register(server, name).await;
        Self::login_with(server, name, config).await
    }

    /// [`User::login`] with syncer tunables.
    pub async fn login_with(server: &str, name: &str, config: Config) -> User {
        let dir = tempfile::tempdir().unwrap();
        let client = Client::login_with(dir.path(), server, name, PASSWORD, "e2e", config)
            .await
            .unwrap_or_else(|e| panic!("logging {name} in: {e}"));
        let user = User {
            name: name.to_string(),
            client,
            dir,
        };
        user.connected().await;
        user
    }

    pub fn id(&self) -> UserId {
        self.client.user()
    }

    pub async fn connected(&self) {
        if let Err(e) = self.client.wait_connected(TIMEOUT).await {
            panic!("{} did not connect: {e}", self.name);
        }
    }

    /// Waits until the connection is down (after a server stop, a cut...).
    pub async fn disconnected(&self) {
        let mut state = self.client.connection();
        let what = format!("{} to notice the connection is gone", self.name);
        tokio::time::timeout(
            TIMEOUT,
            state.wait_for(|s| *s != ConnectionState::Connected),
        )
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .unwrap();
    }

    /// Creates a conversation with the named accounts.
    pub async fn create_conversation(&self, title: &str, others: &[&str]) -> ConversationId {
        self.client
            .create_conversation(title, others)
            .await
            .unwrap_or_else(|e| panic!("{} creating {title:?}: {e}", self.name))
            .id
    }

    /// Waits until this device knows the conversation (pushed or listed).
    pub async fn knows(&self, conv: ConversationId) {
        let what = format!("{} to learn of conversation {conv}", self.name);
        let client = &self.client;
        eventually(&what, move || async move {
            let convs = client.conversations().await.unwrap();
            convs.iter().any(|c| c.id == conv).then_some(())
        })
        .await;
    }

    /// Waits until this device has stored message `id`; returns it.
    pub async fn has(&self, id: MessageId) -> Item {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            if let Some(item) = self.client.item(id).await.unwrap() {
                return item;
            }
            if tokio::time::Instant::now() >= deadline {
                let convs = self.client.conversations().await.unwrap();
                let state = *self.client.connection().borrow();
                panic!(
                    "timed out after {TIMEOUT:?} waiting for {} to have message {id}; \
                     connection {state:?}, conversations {convs:?}",
                    self.name
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The current timeline (newest 1000 items) in timeline order.
    pub async fn timeline(&self, conv: ConversationId) -> Vec<Item> {
        self.client.subscribe(conv, 1000).await.unwrap().snapshot
    }

    /// Waits until the timeline holds `n` confirmed items; returns it.
    pub async fn confirmed_timeline(&self, conv: ConversationId, n: usize) -> Vec<Item> {
        let what = format!("{} to have {n} confirmed messages", self.name);
        let me = self;
        eventually(&what, move || async move {
            let items = me.timeline(conv).await;
            (items.iter().filter(|i| i.seq.is_some()).count() >= n).then_some(items)
        })
        .await
    }

    /// Drops the client and waits until its syncer has stopped.
    pub async fn close(self) -> ClosedUser {
        let mut state = self.client.connection();
        drop(self.client);
        // The watch sender lives in the syncer task: closed means stopped.
        tokio::time::timeout(TIMEOUT, async { while state.changed().await.is_ok() {} })
            .await
            .unwrap_or_else(|_| panic!("{}'s client did not stop", self.name));
        ClosedUser {
            name: self.name,
            dir: self.dir,
        }
    }
}

impl ClosedUser {
    /// Opens the client again from its storage with syncer tunables,
    /// without waiting for a connection (the server may be unreachable).
    #[allow(dead_code)]
    pub async fn reopen_with(self, config: Config) -> User {
        let client = Client::open_with(self.dir.path(), config)
            .await
            .unwrap_or_else(|e| panic!("reopening {}: {e}", self.name));
        User {
            name: self.name,
            client,
            dir: self.dir,
        }
    }

    /// Opens the client again from its storage; waits until connected.
    pub async fn open(self) -> User {
        let client = Client::open_with(self.dir.path(), config())
            .await
            .unwrap_or_else(|e| panic!("reopening {}: {e}", self.name));
        let user = User {
            name: self.name,
            client,
            dir: self.dir,
        };
        user.connected().await;
        user
    }
}
