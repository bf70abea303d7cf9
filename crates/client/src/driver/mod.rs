//! The tokio driver: one task owning the syncer core, the store and the
//! connection. It waits on an app command, a frame, a timer or a connection
//! attempt; feeds the core; and applies the core's outputs in the order the
//! core's calling contract demands. It makes no protocol decision itself.

pub mod connection;

use crate::core::{Event, Output, Syncer};
use crate::error::ClientError;
use crate::model::{ConnectionState, Conversation, Item, TimelineChange};
use crate::store::{ClientStore, StoreOp};
use chatsync_protocol::{
    encode, ClientFrame, ConversationId, ConversationInfo, MessageId, Refusal, Seq, ServerFrame,
};
use connection::{Welcome, Ws};
use futures_util::{FutureExt, SinkExt, StreamExt};
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// Most frames handled before the store writes are flushed (and app
/// commands get their turn again).
const MAX_FRAMES_PER_STEP: usize = 256;
/// Send a keep-alive after this long without hearing from the server.
const PING_AFTER: Duration = Duration::from_secs(10);
/// Consider the connection dead after this long without hearing from it.
const DEAD_AFTER: Duration = Duration::from_secs(30);
/// Send a keep-alive after this long without sending anything, so the
/// server's idle timeout never closes a connection that only receives.
const SPEAK_EVERY: Duration = Duration::from_secs(30);

type Reply<T> = oneshot::Sender<Result<T, ClientError>>;

/// A request from the app to the driver task.
pub(crate) enum Command {
    Send {
        conversation: ConversationId,
        body: String,
        reply: Reply<MessageId>,
    },
    Retry {
        id: MessageId,
        reply: Reply<()>,
    },
    Discard {
        id: MessageId,
        reply: Reply<()>,
    },
    Subscribe {
        conversation: ConversationId,
        limit: usize,
        reply: Reply<(Vec<Item>, mpsc::UnboundedReceiver<TimelineChange>)>,
    },
    Page {
        conversation: ConversationId,
        before: Option<Seq>,
        limit: usize,
        reply: Reply<Vec<Item>>,
    },
    Item {
        id: MessageId,
        reply: Reply<Option<Item>>,
    },
    Conversations {
        reply: Reply<Vec<Conversation>>,
    },
    CreateConversation {
        title: String,
        members: Vec<String>,
        reply: Reply<ConversationInfo>,
    },
    Refresh {
        reply: Reply<Vec<ConversationInfo>>,
    },
    Sending {
        reply: Reply<Vec<MessageId>>,
    },
    Act {
        target: MessageId,
        act: Act,
        reply: Reply<Option<MessageId>>,
    },
    MarkRead {
        conversation: ConversationId,
        seq: Seq,
        reply: Reply<()>,
    },
    Unread {
        conversation: ConversationId,
        reply: Reply<u64>,
    },
    Limits {
        reply: Reply<chatsync_protocol::Limits>,
    },
    ReconnectNow,
    /// Drops the connection as if the network failed (tests, chaos).
    DropConnection,
}

/// An action on a message.
pub(crate) enum Act {
    Edit(String),
    Delete,
    React { emoji: String, on: bool },
}

/// Everything the driver task owns.
pub(crate) struct Driver<S: ClientStore> {
    pub core: Syncer,
    pub store: S,
    pub server: String,
    pub token: String,
    pub commands: mpsc::Receiver<Command>,
    pub events: broadcast::Sender<Event>,
    pub state: watch::Sender<ConnectionState>,
    pub subscribers: HashMap<ConversationId, Vec<mpsc::UnboundedSender<TimelineChange>>>,
    pub answers: HashMap<u64, AnswerSlot>,
    pub ws: Option<Ws>,
    pub connecting: Option<JoinHandle<Result<(Ws, Welcome), ClientError>>>,
    pub last_rx: Instant,
    pub last_tx: Instant,
    pub pinged: bool,
}

pub(crate) enum AnswerSlot {
    Create(Reply<ConversationInfo>),
    List(Reply<Vec<ConversationInfo>>),
}

/// Target of the events that stamp a message's hand-offs (fields `stage`
/// and `id`), for a tool that times where the latency goes (`chatsync
/// bench --stages`).
pub const STAGE_TARGET: &str = "chatsync::stage";

/// Whether anyone records stage events.
fn stages_on() -> bool {
    tracing::enabled!(target: STAGE_TARGET, tracing::Level::TRACE)
}

/// Stamps a hand-off of message `id` (see [`STAGE_TARGET`]).
fn stage(stage: &'static str, id: MessageId) {
    tracing::trace!(target: STAGE_TARGET, stage, id = %id);
}

/// Milliseconds since the Unix epoch on this device's clock.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl<S: ClientStore> Driver<S> {
    /// Runs until every handle to the client is dropped or storage fails.
    pub async fn run(mut self) {
        if let Err(e) = self.flush().await {
            tracing::error!("client storage failed, stopping: {e}");
            return;
        }
        loop {
            let deadline = self.core.poll_timeout();
            let keepalive = self.ws.is_some().then(|| {
                let after = if self.pinged { DEAD_AFTER } else { PING_AFTER };
                (self.last_rx + after).min(self.last_tx + SPEAK_EVERY)
            });
            let wake = match (deadline, keepalive) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let step = tokio::select! {
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd).await,
                    None => break,
                },
                frame = next_ws(&mut self.ws) => self.on_ws(frame).await,
                done = join_connecting(&mut self.connecting) => self.on_connect_result(done).await,
                _ = sleep_until(wake) => self.on_tick().await,
            };
            if let Err(e) = step {
                tracing::error!("client storage failed, stopping: {e}");
                break;
            }
        }
        if let Some(mut ws) = self.ws.take() {
            let _ = ws.close(None).await;
        }
    }

    async fn on_command(&mut self, cmd: Command) -> Result<(), ClientError> {
        let now = Instant::now();
        match cmd {
            Command::Send {
                conversation,
                body,
                reply,
            } => {
                let id = MessageId::new();
                stage("client.send", id);
                match self.core.send(now, conversation, body, id, now_ms()) {
                    Ok(id) => {
                        // The reply goes out once the insert is committed,
                        // before anything is transmitted.
                        let frames = self.apply_outputs().await?;
                        stage("client.stored", id);
                        let _ = reply.send(Ok(id));
                        let _ = self.transmit(frames).await;
                        stage("client.transmitted", id);
                        // (a broken connection is handled by the flush below)
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                    }
                }
            }
            Command::Retry { id, reply } => {
                let r = self.core.retry(now, id).map_err(ClientError::from);
                let _ = reply.send(r);
            }
            Command::Discard { id, reply } => {
                let r = self.core.discard(id).map_err(ClientError::from);
                let _ = reply.send(r);
            }
            Command::Subscribe {
                conversation,
                limit,
                reply,
            } => {
                // Snapshot and registration happen in the same step of this
                // task, so no change can fall between them.
                let snapshot = self.store.timeline(conversation, None, limit);
                match snapshot {
                    Ok(items) => {
                        let (tx, rx) = mpsc::unbounded_channel();
                        self.subscribers.entry(conversation).or_default().push(tx);
                        let _ = reply.send(Ok((items, rx)));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                    }
                }
            }
            Command::Page {
                conversation,
                before,
                limit,
                reply,
            } => {
                let r = self.store.timeline(conversation, before, limit);
                let _ = reply.send(r.map_err(Into::into));
            }
            Command::Item { id, reply } => {
                let _ = reply.send(self.store.item(id).map_err(Into::into));
            }
            Command::Conversations { reply } => {
                let _ = reply.send(self.store.conversations().map_err(Into::into));
            }
            Command::CreateConversation {
                title,
                members,
                reply,
            } => match self.core.create_conversation(title, members) {
                Ok(req) => {
                    self.answers.insert(req, AnswerSlot::Create(reply));
                }
                Err(e) => {
                    let _ = reply.send(Err(e.into()));
                }
            },
            Command::Refresh { reply } => match self.core.list_conversations() {
                Ok(req) => {
                    self.answers.insert(req, AnswerSlot::List(reply));
                }
                Err(e) => {
                    let _ = reply.send(Err(e.into()));
                }
            },
            Command::Act { target, act, reply } => {
                let r = self.act(now, target, act);
                match r {
                    Ok(id) => {
                        let frames = self.apply_outputs().await?;
                        let _ = reply.send(Ok(id));
                        let _ = self.transmit(frames).await;
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Command::MarkRead {
                conversation,
                seq,
                reply,
            } => {
                let r = self.core.mark_read(conversation, seq).map_err(Into::into);
                let _ = reply.send(r);
            }
            Command::Unread {
                conversation,
                reply,
            } => {
                let me = self.core.identity().user;
                let after = self
                    .core
                    .conversations()
                    .find(|c| c.id == conversation)
                    .and_then(|c| c.members.iter().find(|m| m.user == me))
                    .map_or(Seq::ZERO, |m| m.read);
                let _ = reply.send(self.store.unread(conversation, after).map_err(Into::into));
            }
            Command::Sending { reply } => {
                let _ = reply.send(Ok(self.core.sending()));
            }
            Command::Limits { reply } => {
                let _ = reply.send(Ok(self.core.limits().clone()));
            }
            Command::ReconnectNow => self.core.reconnect_now(now),
            Command::DropConnection => {
                if let Some(mut ws) = self.ws.take() {
                    let _ = ws.close(None).await;
                    self.core.handle_disconnected(now);
                }
            }
        }
        self.flush().await
    }

    fn act(
        &mut self,
        now: Instant,
        target: MessageId,
        act: Act,
    ) -> Result<Option<MessageId>, ClientError> {
        let item = self
            .store
            .item(target)?
            .ok_or(crate::core::ActionError::UnknownMessage(target))?;
        let id = MessageId::new();
        let at = now_ms();
        Ok(match act {
            Act::Edit(body) => self.core.edit(now, &item, body, id, at)?,
            Act::Delete => self.core.delete(now, &item, id, at)?,
            Act::React { emoji, on } => Some(self.core.react(now, &item, emoji, on, id, at)?),
        })
    }

    async fn on_ws(
        &mut self,
        frame: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> Result<(), ClientError> {
        let now = Instant::now();
        self.last_rx = now;
        self.pinged = false;
        let mut next = Some(frame);
        let mut handled = 0;
        let mut acked = Vec::new();
        // Take every frame already received before flushing, so a burst of
        // acks or a catch-up page costs one store transaction, not one each.
        while let Some(frame) = next.take() {
            handled += 1;
            match frame {
                Some(Ok(Message::Text(text))) => {
                    match chatsync_protocol::decode_server(text.as_str()) {
                        Ok(frame) => {
                            if let ServerFrame::Ack { id, .. } = &frame {
                                if stages_on() {
                                    stage("client.ack", *id);
                                    acked.push(*id);
                                }
                            }
                            self.core.handle_frame(now, frame)
                        }
                        Err(e) => {
                            tracing::warn!("ignoring an undecodable frame from the server: {e}")
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    self.ws = None;
                    self.core.handle_disconnected(now);
                    break;
                }
                Some(Ok(_)) => {}
            }
            if handled < MAX_FRAMES_PER_STEP {
                next = self.ws.as_mut().and_then(|ws| ws.next().now_or_never());
            }
        }
        let flushed = self.flush().await;
        for id in acked {
            stage("client.ack_stored", id);
        }
        flushed
    }

    async fn on_connect_result(
        &mut self,
        done: Result<Result<(Ws, Welcome), ClientError>, tokio::task::JoinError>,
    ) -> Result<(), ClientError> {
        self.connecting = None;
        let now = Instant::now();
        match done {
            Ok(Ok((ws, welcome))) => {
                self.ws = Some(ws);
                self.last_rx = now;
                self.last_tx = now;
                self.pinged = false;
                self.core.handle_connected(now, welcome.limits);
            }
            Ok(Err(ClientError::Refused(refusal))) => {
                self.core.handle_frame(
                    now,
                    chatsync_protocol::ServerFrame::Error { req: None, refusal },
                );
                self.core.handle_disconnected(now);
            }
            Ok(Err(e)) => {
                tracing::debug!("connection attempt failed: {e}");
                self.core.handle_disconnected(now);
            }
            Err(e) => {
                // A cancelled attempt is the normal end of a client shut
                // down mid-connect; anything else is worth a warning.
                if e.is_cancelled() {
                    tracing::debug!("connection attempt cancelled: {e}");
                } else {
                    tracing::warn!("connection task failed: {e}");
                }
                self.core.handle_disconnected(now);
            }
        }
        self.flush().await
    }

    async fn on_tick(&mut self) -> Result<(), ClientError> {
        let now = Instant::now();
        if self.ws.is_some() {
            let silent = now.saturating_duration_since(self.last_rx);
            if silent >= DEAD_AFTER {
                tracing::info!("no word from the server for {silent:?}; reconnecting");
                self.ws = None;
                self.core.handle_disconnected(now);
            } else if (silent >= PING_AFTER && !self.pinged)
                || now.saturating_duration_since(self.last_tx) >= SPEAK_EVERY
            {
                self.pinged |= silent >= PING_AFTER;
                let nonce = now_ms() as u64;
                let _ = self.transmit(vec![ClientFrame::Ping { nonce }]).await;
            }
        }
        self.core.handle_timeout(now);
        self.flush().await
    }

    /// Applies every pending output of the core, then transmits.
    async fn flush(&mut self) -> Result<(), ClientError> {
        loop {
            let had_link = self.ws.is_some();
            let frames = self.apply_outputs().await?;
            if had_link && self.ws.is_none() {
                // Lost while sending a request ahead of the writes: the rest
                // cannot go, and the core's reaction waits to be drained.
                continue;
            }
            if frames.is_empty() || self.transmit(frames).await {
                return Ok(());
            }
            // The connection broke while sending: apply the core's reaction.
        }
    }

    /// Drains the core: store writes in one transaction, then timeline
    /// changes and events. Returns the frames to transmit afterwards.
    ///
    /// One exception to "frames after the store writes": a `sync` request
    /// depends on no write (it claims nothing, unlike `received`), so it
    /// leaves first. During catch-up the server then reads the next page
    /// while this device stores the current one.
    async fn apply_outputs(&mut self) -> Result<Vec<ClientFrame>, ClientError> {
        let mut ops: Vec<StoreOp> = Vec::new();
        let mut frames = Vec::new();
        let mut changes: Vec<(ConversationId, Option<TimelineChange>, MessageId)> = Vec::new();
        let mut events = Vec::new();
        let mut connect = false;
        while let Some(out) = self.core.poll_output() {
            match out {
                Output::Store(op) => ops.push(op),
                Output::Transmit(f) => frames.push(f),
                Output::Timeline {
                    conversation,
                    change,
                } => changes.push((conversation, Some(change), MessageId(uuid::Uuid::nil()))),
                Output::Touched { conversation, id } => changes.push((conversation, None, id)),
                Output::Connect => connect = true,
                Output::Event(e) => events.push(e),
            }
        }
        if !ops.is_empty() {
            if frames.iter().any(is_request) {
                let (early, rest): (Vec<_>, Vec<_>) = frames.into_iter().partition(is_request);
                frames = rest;
                // A broken connection is the core's to handle: it learns of
                // it here, and its reaction is drained by the next flush.
                let _ = self.transmit(early).await;
            }
            self.store.apply(&ops)?;
        }
        let mut reread = std::collections::HashSet::new();
        for (conversation, change, touched) in changes {
            let Some(subs) = self.subscribers.get_mut(&conversation) else {
                continue; // nobody watches: no need to read anything back
            };
            let change = match change {
                Some(c) => c,
                // Shown as storage folds it (actions applied, pending on top).
                None if reread.insert(touched) => match self.store.item(touched)? {
                    Some(item) if item.action.is_none() => TimelineChange::Upserted(item),
                    _ => continue,
                },
                None => continue,
            };
            subs.retain(|tx| tx.send(change.clone()).is_ok());
        }
        for e in events {
            self.on_event(&e);
            let _ = self.events.send(e);
        }
        if connect && self.connecting.is_none() {
            let server = self.server.clone();
            let token = self.token.clone();
            self.connecting = Some(tokio::spawn(async move {
                connection::connect(&server, &token).await
            }));
        }
        Ok(frames)
    }

    fn on_event(&mut self, e: &Event) {
        match e {
            Event::Connection(state) => {
                let _ = self.state.send(*state);
            }
            Event::Answer { req, result } => match self.answers.remove(req) {
                Some(AnswerSlot::Create(reply)) => {
                    let r = result
                        .clone()
                        .map_err(ClientError::Refused)
                        .and_then(|mut list| {
                            list.pop().ok_or_else(|| {
                                ClientError::Protocol("empty conversation answer".into())
                            })
                        });
                    let _ = reply.send(r);
                }
                Some(AnswerSlot::List(reply)) => {
                    let _ = reply.send(result.clone().map_err(ClientError::Refused));
                }
                None => {}
            },
            Event::SessionRejected(refusal) => {
                tracing::error!("the server rejected this session: {}", refusal.message);
                let _ = self
                    .state
                    .send(ConnectionState::Reconnecting { in_ms: u64::MAX });
                fail_answers(&mut self.answers, refusal);
            }
            Event::ConversationUpdated(_) => {}
        }
        if matches!(e, Event::Connection(ConnectionState::Reconnecting { .. })) {
            // Requests of the lost connection will never be answered.
            let lost = Refusal::transient(
                chatsync_protocol::ErrorCode::Unavailable,
                "the connection was lost before the server answered",
                None,
            );
            fail_answers(&mut self.answers, &lost);
        }
    }

    /// Sends frames in order; returns false when the connection broke.
    async fn transmit(&mut self, frames: Vec<ClientFrame>) -> bool {
        if frames.is_empty() {
            return true;
        }
        let Some(ws) = self.ws.as_mut() else {
            return true; // the core resends what matters after reconnecting
        };
        let mut result = Ok(());
        for f in &frames {
            result = ws.feed(Message::Text(encode(f).into())).await;
            if result.is_err() {
                break;
            }
        }
        if result.is_ok() {
            result = ws.flush().await;
        }
        self.last_tx = Instant::now();
        if let Err(e) = result {
            tracing::debug!("connection lost while sending: {e}");
            self.ws = None;
            self.core.handle_disconnected(Instant::now());
            return false;
        }
        true
    }
}

/// A frame that only asks the server for something (a catch-up page), and
/// so may leave before the store writes of its drain.
fn is_request(frame: &ClientFrame) -> bool {
    matches!(frame, ClientFrame::Sync { .. })
}

fn fail_answers(answers: &mut HashMap<u64, AnswerSlot>, refusal: &Refusal) {
    for (_, slot) in answers.drain() {
        match slot {
            AnswerSlot::Create(r) => {
                let _ = r.send(Err(ClientError::Refused(refusal.clone())));
            }
            AnswerSlot::List(r) => {
                let _ = r.send(Err(ClientError::Refused(refusal.clone())));
            }
        }
    }
}

async fn next_ws(
    ws: &mut Option<Ws>,
) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
    match ws {
        Some(ws) => ws.next().await,
        None => std::future::pending().await,
    }
}

async fn join_connecting(
    task: &mut Option<JoinHandle<Result<(Ws, Welcome), ClientError>>>,
) -> Result<Result<(Ws, Welcome), ClientError>, tokio::task::JoinError> {
    match task {
        Some(t) => t.await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
