//! The public API a chat app uses.

use crate::core::{Config, Event, Identity, Syncer};
use crate::driver::connection;
use crate::driver::{Act, AnswerSlot, Command, Driver};
use crate::error::ClientError;
use crate::model::{ConnectionState, Conversation, Item, TimelineChange};
use crate::store::{ClientStore, SqliteStore, StoreOp, META_LIMITS};
use chatsync_protocol::{
    ClientFrame, ConversationId, ConversationInfo, DeviceId, Limits, MessageId, Seq, ServerFrame,
    UserId,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

/// Name of the client storage file inside a data directory.
pub const DB_FILE: &str = "client.db";

const META_SERVER: &str = "server";
const META_TOKEN: &str = "token";
const META_USER: &str = "user";
const META_USERNAME: &str = "username";
const META_DEVICE: &str = "device";

/// A conversation's timeline: a snapshot, then every change after it.
pub struct Timeline {
    /// The newest items at subscription time, in timeline order.
    pub snapshot: Vec<Item>,
    /// Changes after the snapshot, in the order they happened.
    pub changes: mpsc::UnboundedReceiver<TimelineChange>,
}

/// A chatsync client: one account on one device, with its own storage.
///
/// Cloning is cheap; every clone drives the same syncer. The syncer runs
/// until the last clone is dropped.
#[derive(Clone)]
pub struct Client {
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<Event>,
    state: watch::Receiver<ConnectionState>,
    identity: Identity,
    device: Option<DeviceId>,
}

/// Creates an account on the server.
pub async fn register(server: &str, username: &str, password: &str) -> Result<UserId, ClientError> {
    let frame = ClientFrame::Register {
        req: 1,
        username: username.into(),
        password: password.into(),
    };
    match connection::request(server, frame).await? {
        ServerFrame::Registered { user, .. } => Ok(user),
        ServerFrame::Error { refusal, .. } => Err(ClientError::Refused(refusal)),
        other => Err(ClientError::Protocol(format!(
            "unexpected answer {other:?}"
        ))),
    }
}

impl Client {
    /// Logs in to `server` and stores the new session in `data_dir`, then
    /// opens the client. Messages already queued in `data_dir` are kept.
    pub async fn login(
        data_dir: &Path,
        server: &str,
        username: &str,
        password: &str,
        device_name: &str,
    ) -> Result<Client, ClientError> {
        Self::login_with(
            data_dir,
            server,
            username,
            password,
            device_name,
            Config::default(),
        )
        .await
    }

    /// [`Client::login`] with syncer tunables.
    pub async fn login_with(
        data_dir: &Path,
        server: &str,
        username: &str,
        password: &str,
        device_name: &str,
        config: Config,
    ) -> Result<Client, ClientError> {
        let frame = ClientFrame::Login {
            req: 1,
            username: username.into(),
            password: password.into(),
            device_name: device_name.into(),
        };
        let (user, device, token) = match connection::request(server, frame).await? {
            ServerFrame::LoggedIn {
                user,
                device,
                token,
                ..
            } => (user, device, token),
            ServerFrame::Error { refusal, .. } => return Err(ClientError::Refused(refusal)),
            other => {
                return Err(ClientError::Protocol(format!(
                    "unexpected answer {other:?}"
                )))
            }
        };
        let mut store = open_store(data_dir)?;
        let meta = |k: &str, v: String| StoreOp::SetMeta {
            key: k.into(),
            value: v,
        };
        store.apply(&[
            meta(META_SERVER, server.to_string()),
            meta(META_TOKEN, token),
            meta(META_USER, user.to_string()),
            meta(META_USERNAME, username.to_string()),
            meta(META_DEVICE, device.to_string()),
        ])?;
        Self::start(store, config)
    }

    /// Opens the client stored in `data_dir` (logged in earlier). Works
    /// offline: queued messages are shown and go out once the server is up.
    pub async fn open(data_dir: &Path) -> Result<Client, ClientError> {
        Self::open_with(data_dir, Config::default()).await
    }

    /// [`Client::open`] with syncer tunables.
    pub async fn open_with(data_dir: &Path, config: Config) -> Result<Client, ClientError> {
        let store = open_store(data_dir)?;
        Self::start(store, config)
    }

    fn start(store: SqliteStore, config: Config) -> Result<Client, ClientError> {
        let no_session = || ClientError::NoSession("this data directory".into());
        let server = store.meta(META_SERVER)?.ok_or_else(no_session)?;
        let token = store.meta(META_TOKEN)?.ok_or_else(no_session)?;
        let user: UserId = parse_meta(&store, META_USER)?;
        let username = store.meta(META_USERNAME)?.ok_or_else(no_session)?;
        let device = parse_meta::<DeviceId>(&store, META_DEVICE).ok();
        let limits = match store.meta(META_LIMITS)? {
            Some(json) => serde_json::from_str(&json).unwrap_or_default(),
            None => Limits::default(),
        };
        let identity = Identity { user, username };
        let state = store.load()?;
        let core = Syncer::new(Instant::now(), identity.clone(), limits, config, state);
        let (cmd_tx, cmd_rx) = mpsc::channel(1024);
        let (events, _) = broadcast::channel(4096);
        let (state_tx, state_rx) = watch::channel(ConnectionState::Connecting);
        let driver = Driver {
            core,
            store,
            server,
            token,
            commands: cmd_rx,
            events: events.clone(),
            state: state_tx,
            subscribers: HashMap::new(),
            answers: HashMap::<u64, AnswerSlot>::new(),
            ws: None,
            connecting: None,
            last_rx: Instant::now(),
            last_tx: Instant::now(),
            pinged: false,
        };
        tokio::spawn(driver.run());
        Ok(Client {
            commands: cmd_tx,
            events,
            state: state_rx,
            identity,
            device,
        })
    }

    /// The account this client is logged in as.
    pub fn user(&self) -> UserId {
        self.identity.user
    }

    /// The account name.
    pub fn username(&self) -> &str {
        &self.identity.username
    }

    /// This device's session id, when known.
    pub fn device(&self) -> Option<DeviceId> {
        self.device
    }

    /// Queues a message: returns its id once it is committed to client
    /// storage with status Sending. A body that can only fail (empty, over
    /// the server's limit, containing U+0000) is refused here and nothing is
    /// queued.
    pub async fn send(
        &self,
        conversation: ConversationId,
        body: impl Into<String>,
    ) -> Result<MessageId, ClientError> {
        let body = body.into();
        self.call(|reply| Command::Send {
            conversation,
            body,
            reply,
        })
        .await
    }

    /// Sends a Failed message again, with the same id.
    pub async fn retry(&self, id: MessageId) -> Result<(), ClientError> {
        self.call(|reply| Command::Retry { id, reply }).await
    }

    /// Drops a Failed message, or one never transmitted.
    pub async fn discard(&self, id: MessageId) -> Result<(), ClientError> {
        self.call(|reply| Command::Discard { id, reply }).await
    }

    /// Subscribes to a conversation: the newest `limit` items, then changes.
    pub async fn subscribe(
        &self,
        conversation: ConversationId,
        limit: usize,
    ) -> Result<Timeline, ClientError> {
        let (snapshot, changes) = self
            .call(|reply| Command::Subscribe {
                conversation,
                limit,
                reply,
            })
            .await?;
        Ok(Timeline { snapshot, changes })
    }

    /// Older history: up to `limit` confirmed items before `before`.
    pub async fn page(
        &self,
        conversation: ConversationId,
        before: Option<Seq>,
        limit: usize,
    ) -> Result<Vec<Item>, ClientError> {
        self.call(|reply| Command::Page {
            conversation,
            before,
            limit,
            reply,
        })
        .await
    }

    /// One item as stored on this device.
    pub async fn item(&self, id: MessageId) -> Result<Option<Item>, ClientError> {
        self.call(|reply| Command::Item { id, reply }).await
    }

    /// Conversations as stored on this device.
    pub async fn conversations(&self) -> Result<Vec<Conversation>, ClientError> {
        self.call(|reply| Command::Conversations { reply }).await
    }

    /// Asks the server for the conversation list (needs a connection).
    pub async fn refresh_conversations(&self) -> Result<Vec<ConversationInfo>, ClientError> {
        self.call(|reply| Command::Refresh { reply }).await
    }

    /// Creates a conversation with the named accounts (needs a connection).
    pub async fn create_conversation(
        &self,
        title: &str,
        members: &[&str],
    ) -> Result<ConversationInfo, ClientError> {
        let title = title.to_string();
        let members = members.iter().map(|m| m.to_string()).collect();
        self.call(|reply| Command::CreateConversation {
            title,
            members,
            reply,
        })
        .await
    }

    /// Edits an own message: the new text shows at once, marked edited.
    /// Returns the edit's id, or `None` when the message had not left the
    /// device yet and was rewritten in place.
    pub async fn edit(
        &self,
        message: MessageId,
        body: impl Into<String>,
    ) -> Result<Option<MessageId>, ClientError> {
        let act = Act::Edit(body.into());
        self.call(|reply| Command::Act {
            target: message,
            act,
            reply,
        })
        .await
    }

    /// Deletes an own message: it shows as deleted at once, and its text is
    /// erased everywhere. Returns the delete's id, or `None` when the message
    /// had not left the device yet (then nothing ever reaches the server).
    pub async fn delete(&self, message: MessageId) -> Result<Option<MessageId>, ClientError> {
        self.call(|reply| Command::Act {
            target: message,
            act: Act::Delete,
            reply,
        })
        .await
    }

    /// Sets (`on`) or removes this account's reaction on a message.
    pub async fn react(
        &self,
        message: MessageId,
        emoji: &str,
        on: bool,
    ) -> Result<MessageId, ClientError> {
        let act = Act::React {
            emoji: emoji.to_string(),
            on,
        };
        let id = self
            .call(|reply| Command::Act {
                target: message,
                act,
                reply,
            })
            .await?;
        id.ok_or_else(|| ClientError::Protocol("a reaction always has an id".into()))
    }

    /// Marks a conversation read up to `seq` (the newest message shown).
    pub async fn mark_read(
        &self,
        conversation: ConversationId,
        seq: Seq,
    ) -> Result<(), ClientError> {
        self.call(|reply| Command::MarkRead {
            conversation,
            seq,
            reply,
        })
        .await
    }

    /// Messages of others in a conversation above this account's read mark.
    pub async fn unread(&self, conversation: ConversationId) -> Result<u64, ClientError> {
        self.call(|reply| Command::Unread {
            conversation,
            reply,
        })
        .await
    }

    /// The limits `send` checks against: the last ones the server
    /// announced (defaults before the first connection).
    pub async fn limits(&self) -> Result<chatsync_protocol::Limits, ClientError> {
        self.call(|reply| Command::Limits { reply }).await
    }

    /// Ids of this device's messages still Sending, in send order.
    pub async fn sending(&self) -> Result<Vec<MessageId>, ClientError> {
        self.call(|reply| Command::Sending { reply }).await
    }

    /// Events: connection changes, conversation updates.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Connection state, for an indicator.
    pub fn connection(&self) -> watch::Receiver<ConnectionState> {
        self.state.clone()
    }

    /// Waits until connected, at most `timeout`.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), ClientError> {
        let mut state = self.state.clone();
        let result = tokio::time::timeout(timeout, async {
            state
                .wait_for(|s| *s == ConnectionState::Connected)
                .await
                .map(|_| ())
        })
        .await;
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(ClientError::Closed),
            Err(_) => Err(ClientError::Timeout("waiting for a connection".into())),
        }
    }

    /// Tries to connect now instead of waiting out the backoff.
    pub async fn reconnect_now(&self) -> Result<(), ClientError> {
        self.commands
            .send(Command::ReconnectNow)
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// Drops the current connection as a network failure would (for tests
    /// and fault drills); the syncer reconnects by itself.
    pub async fn drop_connection(&self) -> Result<(), ClientError> {
        self.commands
            .send(Command::DropConnection)
            .await
            .map_err(|_| ClientError::Closed)
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, ClientError>>) -> Command,
    ) -> Result<T, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| ClientError::Closed)?;
        rx.await.map_err(|_| ClientError::Closed)?
    }
}

fn open_store(data_dir: &Path) -> Result<SqliteStore, ClientError> {
    std::fs::create_dir_all(data_dir).map_err(crate::store::StoreError::from)?;
    let path: PathBuf = data_dir.join(DB_FILE);
    Ok(SqliteStore::open(&path)?)
}

fn parse_meta<T: std::str::FromStr>(store: &SqliteStore, key: &str) -> Result<T, ClientError> {
    let raw = store
        .meta(key)?
        .ok_or_else(|| ClientError::NoSession("this data directory".into()))?;
    raw.parse()
        .map_err(|_| ClientError::Store(crate::store::StoreError::Corrupt(format!("meta {key}"))))
}
