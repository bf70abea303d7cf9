//! The syncer core: a deterministic state machine with no I/O.
//!
//! # Calling contract
//!
//! The driver owns one [`Syncer`] and, after **every** input, drains
//! [`Syncer::poll_output`] until it returns `None`, then arms a timer for
//! [`Syncer::poll_timeout`] and calls [`Syncer::handle_timeout`] when it fires.
//! Outputs are applied in this order: every [`Output::Store`] of the drained
//! batch in **one transaction** first, then timeline changes and events, then
//! [`Output::Transmit`] frames in order. That order is what makes the
//! guarantees hold: a message is durable before `send` returns, and a
//! delivery acknowledgement (`received`) only leaves once the messages it
//! covers are stored. A `sync` request depends on no write, so a driver may
//! transmit it before the store writes of its drain: during catch-up the
//! core asks for the next page as soon as a page arrives, and the server
//! reads it while the device stores this one.
//!
//! Inputs:
//! * user actions: [`Syncer::send`], [`Syncer::retry`], [`Syncer::discard`],
//!   [`Syncer::create_conversation`], [`Syncer::list_conversations`];
//! * the link: [`Syncer::handle_connected`] (after the server's `welcome`),
//!   [`Syncer::handle_disconnected`] (lost, or an attempt failed),
//!   [`Syncer::handle_frame`];
//! * time: [`Syncer::handle_timeout`]. Time is always passed in, so tests and
//!   the simulation run on virtual time; jitter comes from a seeded generator.
//!
//! [`Output::Connect`] asks the driver to open a connection; it answers with
//! `handle_connected` or `handle_disconnected`.

mod backoff;
mod conversation;
mod outbox;

pub use backoff::Backoff;

use crate::model::{ConnectionState, Conversation, Failure, Item, Status, TimelineChange};
use crate::store::{LoadedState, StoreOp};
use chatsync_protocol::{
    check_send, ActionKind, ActionRef, ClientFrame, ConversationId, ConversationInfo, ErrorCode,
    Limits, MemberMarks, MessageId, OthersMarks, Refusal, Seq, ServerFrame, UserId, WireMessage,
};
use conversation::ConvState;
use outbox::{Entry, Outbox};
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// Tunables of the syncer.
#[derive(Clone, Debug)]
pub struct Config {
    /// First reconnect delay.
    pub reconnect_base: Duration,
    /// Largest reconnect delay.
    pub reconnect_cap: Duration,
    /// Without any answer for this long, unconfirmed messages are resent
    /// (the server deduplicates, so this is always safe).
    pub ack_timeout: Duration,
    /// Most messages transmitted and not yet answered.
    pub window: usize,
    /// Page size of catch-up requests.
    pub sync_page: u32,
    /// Transient refusals (rate limit, server busy) a message may receive
    /// before it is marked Failed.
    pub retry_budget: u32,
    /// Seed of the jitter generator.
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            reconnect_base: Duration::from_millis(200),
            reconnect_cap: Duration::from_secs(10),
            ack_timeout: Duration::from_secs(10),
            window: 1024,
            sync_page: 500,
            retry_budget: 20,
            seed: 0x5EED,
        }
    }
}

/// Who this device is logged in as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Account id.
    pub user: UserId,
    /// Account name.
    pub username: String,
}

/// Something the driver must do, in drain order (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Write to client storage.
    Store(StoreOp),
    /// Send a frame on the current connection.
    Transmit(ClientFrame),
    /// Tell timeline subscribers of `conversation`.
    Timeline {
        /// Conversation.
        conversation: ConversationId,
        /// Change.
        change: TimelineChange,
    },
    /// The message `id` of `conversation` looks different now (one of its
    /// actions was queued, confirmed or refused): the driver re-reads it
    /// from storage, after the store writes, and publishes it as
    /// [`TimelineChange::Upserted`].
    Touched {
        /// Conversation.
        conversation: ConversationId,
        /// The message (never an action).
        id: MessageId,
    },
    /// Open a connection now.
    Connect,
    /// Something the app may want to know.
    Event(Event),
}

/// Notifications for the app.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The connection changed state.
    Connection(ConnectionState),
    /// A conversation was added or its members or marks changed.
    ConversationUpdated(ConversationId),
    /// The answer to a request made with `create_conversation` or
    /// `list_conversations`.
    Answer {
        /// Request number returned when it was made.
        req: u64,
        /// The conversation created, the list, or why it failed.
        result: Result<Vec<ConversationInfo>, Refusal>,
    },
    /// The server refused the session (bad or revoked token): the syncer
    /// stops reconnecting until a new session is given.
    SessionRejected(Refusal),
}

/// Why a user action was refused at once.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// The body can only fail on the server; nothing was queued.
    #[error("{message}")]
    InvalidBody {
        /// Same code the server would give.
        code: ErrorCode,
        /// Human-readable reason.
        message: String,
    },
    /// This device does not know that conversation.
    #[error("unknown conversation {0}")]
    UnknownConversation(ConversationId),
    /// No such message among this device's unconfirmed ones.
    #[error("message {0} is not an unconfirmed message of this device")]
    NotFound(MessageId),
    /// Only a Failed message can be retried.
    #[error("message {0} is not Failed; only Failed messages can be retried")]
    NotFailed(MessageId),
    /// The message may already be on the server, so it cannot be discarded.
    #[error("message {0} may already have reached the server; it cannot be discarded")]
    AlreadyTransmitted(MessageId),
    /// The request needs a connection.
    #[error("not connected to the server")]
    Offline,
    /// No message with this id is stored on this device.
    #[error("no message {0} on this device (it may not have synced yet)")]
    UnknownMessage(MessageId),
    /// Only the author of a message may edit or delete it.
    #[error("only the author of a message may edit or delete it")]
    NotAuthor,
    /// The message was deleted.
    #[error("the message was deleted")]
    Deleted,
    /// Actions apply to messages, not to other actions.
    #[error("{0} is an action, not a message")]
    NotAMessage(MessageId),
}

#[derive(Debug)]
enum Link {
    /// No connection; the next attempt at `retry_at`.
    Offline { retry_at: Option<Instant> },
    /// An attempt is under way.
    Connecting,
    /// Authenticated.
    Online(OnlineState),
    /// The server rejected the session; nothing more is attempted.
    Stopped,
}

#[derive(Debug, Default)]
struct OnlineState {
    /// Transmission is paused until then (the server asked to slow down).
    paused_until: Option<Instant>,
    /// Unanswered sends are resent at this time.
    ack_deadline: Option<Instant>,
    /// Request number of the conversation listing of this connection.
    list_req: Option<u64>,
}

/// The syncer core. See the module docs for the calling contract.
#[derive(Debug)]
pub struct Syncer {
    me: Identity,
    config: Config,
    limits: Limits,
    link: Link,
    backoff: Backoff,
    outbox: Outbox,
    convs: HashMap<ConversationId, ConvState>,
    next_local_seq: u64,
    next_req: u64,
    /// Requests made by the app, answered with [`Event::Answer`].
    app_reqs: HashSet<u64>,
    /// The server asked us to wait at least this long before reconnecting.
    not_before: Option<Duration>,
    out: VecDeque<Output>,
}

impl Syncer {
    /// A syncer resuming from `state`, that will connect at once.
    pub fn new(
        now: Instant,
        me: Identity,
        limits: Limits,
        config: Config,
        state: LoadedState,
    ) -> Self {
        let mut convs = HashMap::new();
        for conv in state.conversations {
            let mut c = ConvState::new(conv);
            c.reported = c.info.cursor;
            convs.insert(c.info.id, c);
        }
        for c in convs.values_mut() {
            c.read_reported = c.my_read(me.user);
        }
        for item in state.in_flight {
            if let (Some(seq), Some(c)) = (item.seq, convs.get_mut(&item.conversation)) {
                match item.status {
                    Status::InFlight => {
                        c.in_flight_own
                            .insert(seq, (item.id, item.action.is_some()));
                    }
                    Status::Success if item.action.is_none() => {
                        c.unread_own.insert(seq, item.id);
                    }
                    _ => {}
                }
            }
        }
        let mut outbox = Outbox::default();
        for (item, transmitted) in state.outbox {
            outbox.insert(Entry {
                item,
                persisted_transmitted: transmitted,
                on_link: false,
                transient_refusals: 0,
                answers_due: 0,
            });
        }
        Syncer {
            backoff: Backoff::new(config.reconnect_base, config.reconnect_cap, config.seed),
            me,
            config,
            limits,
            link: Link::Offline {
                retry_at: Some(now),
            },
            outbox,
            convs,
            next_local_seq: state.max_local_seq + 1,
            next_req: 1,
            app_reqs: HashSet::new(),
            not_before: None,
            out: VecDeque::new(),
        }
    }

    /// Next output to apply, in order.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Syncer::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.link {
            Link::Offline { retry_at } => *retry_at,
            Link::Online(o) => match (o.paused_until, o.ack_deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            Link::Connecting | Link::Stopped => None,
        }
    }

    /// Limits in force (the last ones the server announced).
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The account this syncer runs for.
    pub fn identity(&self) -> &Identity {
        &self.me
    }

    /// Whether a connection is up and authenticated.
    pub fn is_online(&self) -> bool {
        matches!(self.link, Link::Online(_))
    }

    /// Number of own messages not yet confirmed (Sending or Failed).
    pub fn unconfirmed(&self) -> usize {
        self.outbox.len()
    }

    /// Ids of own messages still Sending, in send order.
    pub fn sending(&self) -> Vec<MessageId> {
        self.outbox
            .iter()
            .filter(|e| e.item.status == Status::Sending)
            .map(|e| e.item.id)
            .collect()
    }

    /// Conversations as this device knows them.
    pub fn conversations(&self) -> impl Iterator<Item = &Conversation> {
        self.convs.values().map(|c| &c.info)
    }

    // ---- user actions -------------------------------------------------

    /// Queues a new message. On success the outputs hold the store write that
    /// must be committed before the caller is told the id.
    pub fn send(
        &mut self,
        now: Instant,
        conversation: ConversationId,
        body: String,
        id: MessageId,
        created_at: i64,
    ) -> Result<MessageId, ActionError> {
        self.enqueue(now, conversation, body, None, id, created_at)
    }

    /// Edits an own message. `target` is the message as stored. A message
    /// that never left this device (not yet transmitted, or Failed) is
    /// rewritten in place and `None` is returned; otherwise an edit action
    /// is queued behind it and its id returned. A queued edit that has not
    /// left yet is rewritten instead of queuing another.
    pub fn edit(
        &mut self,
        now: Instant,
        target: &Item,
        body: String,
        id: MessageId,
        created_at: i64,
    ) -> Result<Option<MessageId>, ActionError> {
        self.check_target(target, true)?;
        if let Err((code, message)) = check_send(&body, None, &self.limits) {
            return Err(ActionError::InvalidBody { code, message });
        }
        if self.still_local(target.id) {
            let entry = self
                .outbox
                .get_mut(target.id)
                .ok_or(ActionError::NotFound(target.id))?;
            entry.item.body.clone_from(&body);
            let item = entry.item.clone();
            self.out.push_back(Output::Store(StoreOp::UpdateOutgoing {
                id: target.id,
                body,
                action: None,
            }));
            self.upsert_own(item);
            return Ok(None);
        }
        let action = ActionRef {
            target: target.id,
            kind: ActionKind::Edit,
        };
        if let Some(queued) = self.queued_action(target.id, |a, _| a.kind == ActionKind::Edit) {
            self.rewrite_action(queued, body, action);
            return Ok(Some(queued));
        }
        self.enqueue(now, target.conversation, body, Some(action), id, created_at)
            .map(Some)
    }

    /// Deletes an own message. One that never left this device is removed
    /// for good (nothing ever reaches the server) and `None` is returned;
    /// otherwise a delete action is queued behind it and its id returned.
    pub fn delete(
        &mut self,
        now: Instant,
        target: &Item,
        id: MessageId,
        created_at: i64,
    ) -> Result<Option<MessageId>, ActionError> {
        self.check_target(target, true)?;
        if self.still_local(target.id) {
            // Queued actions on it go with it.
            let doomed: Vec<MessageId> = self
                .outbox
                .iter()
                .filter(|e| {
                    e.item
                        .action
                        .as_ref()
                        .is_some_and(|a| a.target == target.id)
                })
                .map(|e| e.item.id)
                .chain([target.id])
                .collect();
            for d in doomed {
                self.outbox.remove(d);
                self.out.push_back(Output::Store(StoreOp::Remove(d)));
            }
            self.timeline(target.conversation, TimelineChange::Removed(target.id));
            return Ok(None);
        }
        let action = ActionRef {
            target: target.id,
            kind: ActionKind::Delete,
        };
        self.enqueue(
            now,
            target.conversation,
            String::new(),
            Some(action),
            id,
            created_at,
        )
        .map(Some)
    }

    /// Sets (`on`) or removes this account's reaction `emoji` on any
    /// message. A toggle of the same emoji still queued and not yet
    /// transmitted is rewritten rather than followed by another one.
    pub fn react(
        &mut self,
        now: Instant,
        target: &Item,
        emoji: String,
        on: bool,
        id: MessageId,
        created_at: i64,
    ) -> Result<MessageId, ActionError> {
        self.check_target(target, false)?;
        let action = ActionRef {
            target: target.id,
            kind: ActionKind::React { on },
        };
        if let Err((code, message)) = check_send(&emoji, Some(&action), &self.limits) {
            return Err(ActionError::InvalidBody { code, message });
        }
        if let Some(queued) = self.queued_action(target.id, |a, body| {
            matches!(a.kind, ActionKind::React { .. }) && body == emoji
        }) {
            self.rewrite_action(queued, emoji, action);
            return Ok(queued);
        }
        self.enqueue(
            now,
            target.conversation,
            emoji,
            Some(action),
            id,
            created_at,
        )
    }

    /// Marks `conversation` read up to `seq` for this account. Only ever
    /// moves the mark forward; sent at once when online, else on the next
    /// connection (collapsed to the highest mark). The mark never passes
    /// what this device stored without a gap: a read mark also counts as
    /// delivered, and must not let a sender see Success for a message no
    /// device of this account has.
    pub fn mark_read(&mut self, conversation: ConversationId, seq: Seq) -> Result<(), ActionError> {
        let me = self.me.user;
        let conv = self
            .convs
            .get_mut(&conversation)
            .ok_or(ActionError::UnknownConversation(conversation))?;
        let seq = seq.min(conv.info.cursor);
        if seq <= conv.my_read(me) {
            return Ok(());
        }
        let mut marks = conv
            .info
            .members
            .iter()
            .find(|m| m.user == me)
            .cloned()
            .unwrap_or(MemberMarks {
                user: me,
                username: self.me.username.clone(),
                delivered: Seq::ZERO,
                read: Seq::ZERO,
            });
        marks.read = seq;
        marks.delivered = marks.delivered.max(seq);
        conv.merge_marks(&marks);
        self.out.push_back(Output::Store(StoreOp::SetMarks {
            conversation,
            marks,
        }));
        self.report_read(conversation);
        Ok(())
    }

    fn check_target(&self, target: &Item, author_only: bool) -> Result<(), ActionError> {
        if target.action.is_some() {
            return Err(ActionError::NotAMessage(target.id));
        }
        if author_only && target.sender != self.me.user {
            return Err(ActionError::NotAuthor);
        }
        if target.deleted {
            return Err(ActionError::Deleted);
        }
        if !self.convs.contains_key(&target.conversation) {
            return Err(ActionError::UnknownConversation(target.conversation));
        }
        Ok(())
    }

    /// Whether an own message is queued and certainly not on the server:
    /// Failed, or Sending and never transmitted.
    fn still_local(&self, id: MessageId) -> bool {
        self.outbox.get(id).is_some_and(|e| {
            e.item.status == Status::Failed || (!e.persisted_transmitted && !e.on_link)
        })
    }

    /// A queued action on `target`, Sending and never transmitted, that
    /// `matches`.
    fn queued_action(
        &self,
        target: MessageId,
        matches: impl Fn(&ActionRef, &str) -> bool,
    ) -> Option<MessageId> {
        self.outbox
            .iter()
            .filter(|e| e.item.status == Status::Sending && !e.persisted_transmitted && !e.on_link)
            .find(|e| {
                e.item
                    .action
                    .as_ref()
                    .is_some_and(|a| a.target == target && matches(a, &e.item.body))
            })
            .map(|e| e.item.id)
    }

    fn rewrite_action(&mut self, id: MessageId, body: String, action: ActionRef) {
        let Some(entry) = self.outbox.get_mut(id) else {
            return;
        };
        entry.item.body.clone_from(&body);
        entry.item.action = Some(action.clone());
        let conversation = entry.item.conversation;
        self.out.push_back(Output::Store(StoreOp::UpdateOutgoing {
            id,
            body,
            action: Some(action.clone()),
        }));
        self.touched(conversation, action.target);
    }

    /// Sends the read mark of `conversation` when it is ahead of what the
    /// server was told.
    fn report_read(&mut self, conversation: ConversationId) {
        let online = self.is_online();
        let me = self.me.user;
        let Some(conv) = self.convs.get_mut(&conversation) else {
            return;
        };
        let mine = conv.my_read(me);
        if online && mine > conv.read_reported {
            conv.read_reported = mine;
            self.transmit(ClientFrame::Read {
                conversation,
                seq: mine,
            });
        }
    }

    /// Queues a new message or action.
    fn enqueue(
        &mut self,
        now: Instant,
        conversation: ConversationId,
        body: String,
        action: Option<ActionRef>,
        id: MessageId,
        created_at: i64,
    ) -> Result<MessageId, ActionError> {
        if let Err((code, message)) = check_send(&body, action.as_ref(), &self.limits) {
            return Err(ActionError::InvalidBody { code, message });
        }
        if !self.convs.contains_key(&conversation) {
            return Err(ActionError::UnknownConversation(conversation));
        }
        let local_seq = self.take_local_seq();
        let mut item = Item::message(
            id,
            conversation,
            self.me.user,
            self.me.username.clone(),
            body,
            true,
            Status::Sending,
            None,
            local_seq,
            created_at,
            None,
        );
        item.action = action;
        // When it will leave on this very drain, record that in the insert
        // itself rather than with a second write.
        let transmitted = self.can_transmit(now) && !self.outbox.has_unsent();
        self.out.push_back(Output::Store(StoreOp::InsertOutgoing {
            item: item.clone(),
            transmitted,
        }));
        self.show(&item, TimelineChange::Upserted(item.clone()));
        self.outbox.insert(Entry {
            item,
            persisted_transmitted: transmitted,
            on_link: false,
            transient_refusals: 0,
            answers_due: 0,
        });
        self.pump(now);
        Ok(id)
    }

    /// Sends a Failed message again, with the same id, after everything
    /// already queued.
    pub fn retry(&mut self, now: Instant, id: MessageId) -> Result<(), ActionError> {
        let entry = self.outbox.get(id).ok_or(ActionError::NotFound(id))?;
        if entry.item.status != Status::Failed {
            return Err(ActionError::NotFailed(id));
        }
        let local_seq = self.take_local_seq();
        self.outbox.reorder(id, local_seq);
        let Some(entry) = self.outbox.get_mut(id) else {
            return Err(ActionError::NotFound(id));
        };
        entry.item.status = Status::Sending;
        entry.item.failure = None;
        entry.transient_refusals = 0;
        let item = entry.item.clone();
        self.out
            .push_back(Output::Store(StoreOp::Requeue { id, local_seq }));
        match &item.action {
            Some(_) => self.show(&item, TimelineChange::Upserted(item.clone())),
            None => self.upsert_own(item),
        }
        self.pump(now);
        Ok(())
    }

    /// Drops a message that is Failed, or Sending and never transmitted.
    pub fn discard(&mut self, id: MessageId) -> Result<(), ActionError> {
        let entry = self.outbox.get(id).ok_or(ActionError::NotFound(id))?;
        let may_be_on_server = entry.persisted_transmitted || entry.on_link;
        if entry.item.status != Status::Failed && may_be_on_server {
            return Err(ActionError::AlreadyTransmitted(id));
        }
        let item = entry.item.clone();
        self.outbox.remove(id);
        self.out.push_back(Output::Store(StoreOp::Remove(id)));
        self.show(&item, TimelineChange::Removed(id));
        Ok(())
    }

    /// Asks the server to create a conversation; answered by
    /// [`Event::Answer`] with the request number returned.
    pub fn create_conversation(
        &mut self,
        title: String,
        members: Vec<String>,
    ) -> Result<u64, ActionError> {
        if !self.is_online() {
            return Err(ActionError::Offline);
        }
        let req = self.take_req();
        self.app_reqs.insert(req);
        self.transmit(ClientFrame::CreateConversation {
            req,
            title,
            members,
        });
        Ok(req)
    }

    /// Asks the server for the conversation list (also refreshes local
    /// state); answered by [`Event::Answer`].
    pub fn list_conversations(&mut self) -> Result<u64, ActionError> {
        if !self.is_online() {
            return Err(ActionError::Offline);
        }
        let req = self.take_req();
        self.app_reqs.insert(req);
        self.transmit(ClientFrame::ListConversations { req });
        Ok(req)
    }

    /// Connects now instead of waiting out the backoff (the app learnt that
    /// the network is back).
    pub fn reconnect_now(&mut self, now: Instant) {
        if let Link::Offline { retry_at } = &mut self.link {
            *retry_at = Some(now);
        }
    }

    // ---- link events -------------------------------------------------

    /// The connection is up and the server answered `hello` with `welcome`.
    pub fn handle_connected(&mut self, now: Instant, limits: Limits) {
        self.backoff.reset();
        if limits != self.limits {
            self.limits = limits;
            if let Ok(json) = serde_json::to_string(&self.limits) {
                self.out.push_back(Output::Store(StoreOp::SetMeta {
                    key: crate::store::META_LIMITS.into(),
                    value: json,
                }));
            }
        }
        // A fresh connection: nothing is on it yet.
        self.outbox.link_lost();
        let req = self.take_req();
        self.link = Link::Online(OnlineState {
            list_req: Some(req),
            ..OnlineState::default()
        });
        self.event(Event::Connection(ConnectionState::Connected));
        self.transmit(ClientFrame::ListConversations { req });
        self.pump(now);
    }

    /// The connection was lost, or an attempt to open one failed.
    pub fn handle_disconnected(&mut self, now: Instant) {
        if matches!(self.link, Link::Stopped) {
            return;
        }
        self.outbox.link_lost();
        for c in self.convs.values_mut() {
            c.sync_req = None;
        }
        let mut delay = self.backoff.next_delay();
        if let Some(wait) = self.not_before.take() {
            delay = delay.max(wait);
        }
        self.link = Link::Offline {
            retry_at: Some(now + delay),
        };
        self.event(Event::Connection(ConnectionState::Reconnecting {
            in_ms: delay.as_millis() as u64,
        }));
    }

    /// Time has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        match &mut self.link {
            Link::Offline { retry_at: Some(at) } if *at <= now => {
                self.link = Link::Connecting;
                self.event(Event::Connection(ConnectionState::Connecting));
                self.out.push_back(Output::Connect);
            }
            Link::Online(o) => {
                let mut resume = false;
                if o.paused_until.is_some_and(|t| t <= now) {
                    o.paused_until = None;
                    resume = true;
                }
                if o.ack_deadline.is_some_and(|t| t <= now) {
                    // No answer for a whole ack timeout: resend every
                    // unconfirmed message, oldest first. The server answers
                    // a resend of a stored message with its original ack.
                    o.ack_deadline = None;
                    self.outbox.reset_link();
                    resume = true;
                }
                if resume {
                    self.pump(now);
                }
            }
            _ => {}
        }
    }

    /// A frame arrived from the server.
    pub fn handle_frame(&mut self, now: Instant, frame: ServerFrame) {
        match frame {
            ServerFrame::Ack {
                id,
                conversation,
                seq,
                server_ts,
            } => self.on_ack(now, id, conversation, seq, server_ts),
            ServerFrame::Refused { id, refusal } => self.on_refused(now, id, refusal),
            ServerFrame::Message { message } => {
                let conversation = message.conversation;
                self.on_confirmed(now, message);
                self.after_stored(conversation);
            }
            ServerFrame::Marks {
                conversation,
                marks,
                others,
            } => self.on_marks(conversation, &marks, others),
            ServerFrame::Batch {
                req,
                conversation,
                messages,
                members,
                last_seq,
            } => self.on_batch(now, req, conversation, messages, members, last_seq),
            ServerFrame::Conversation { req, conversation } => {
                self.upsert_conversation(&conversation);
                if let Some(req) = req {
                    self.answer(req, Ok(vec![conversation]));
                }
            }
            ServerFrame::Conversations { req, conversations } => {
                for c in &conversations {
                    self.upsert_conversation(c);
                }
                if let Link::Online(o) = &mut self.link {
                    if o.list_req == Some(req) {
                        o.list_req = None;
                    }
                }
                self.answer(req, Ok(conversations));
            }
            ServerFrame::Error { req, refusal } => self.on_error(req, refusal),
            ServerFrame::Pong { .. }
            | ServerFrame::Welcome { .. }
            | ServerFrame::Registered { .. }
            | ServerFrame::LoggedIn { .. }
            | ServerFrame::LoggedOut { .. } => {}
        }
    }

    // ---- frame handlers ----------------------------------------------

    fn on_ack(
        &mut self,
        now: Instant,
        id: MessageId,
        conversation: ConversationId,
        seq: Seq,
        server_ts: i64,
    ) {
        // A late or repeated ack for a confirmed message finds nothing here
        // and changes nothing: statuses never move back.
        let Some(entry) = self.outbox.get(id) else {
            return;
        };
        let wire = WireMessage {
            id,
            conversation,
            seq,
            sender: self.me.user,
            sender_name: self.me.username.clone(),
            body: entry.item.body.clone(),
            server_ts,
            action: entry.item.action.clone(),
        };
        self.on_confirmed(now, wire);
        self.after_stored(conversation);
        self.rearm_ack_deadline(now);
        self.pump(now);
    }

    fn on_refused(&mut self, now: Instant, id: MessageId, refusal: Refusal) {
        let Some(entry) = self.outbox.get_mut(id) else {
            return;
        };
        entry.answers_due = entry.answers_due.saturating_sub(1);
        if entry.item.status != Status::Sending {
            return;
        }
        if !refusal.retryable && entry.answers_due > 0 {
            // A permanent refusal of an older transmission, while a newer
            // one is unanswered: that one decides. It may carry other
            // content (edited in place, then retried) and be stored; a
            // Failed taken from the old answer would then move back.
            return;
        }
        if refusal.retryable {
            if !entry.on_link || entry.answers_due > 0 {
                // It answers a transmission made before the link was last
                // reset (collateral of the refusal that paused us, or of an
                // ack timeout): the message is resent in order anyway. The
                // link state, not `paused_until`, tells: a pause that has
                // expired before its timer fired lets new transmissions out,
                // and their refusals must pause again. A refusal that
                // arrives after the message was transmitted again answers
                // the older transmission (`answers_due`): counting it would
                // spend the retry budget on refusals that are not attempts.
                return;
            }
            entry.transient_refusals += 1;
            if entry.transient_refusals <= self.config.retry_budget {
                let wait = refusal
                    .retry_after_ms
                    .map(Duration::from_millis)
                    .unwrap_or_else(|| self.backoff.next_delay());
                if let Link::Online(o) = &mut self.link {
                    o.paused_until = Some(now + wait);
                }
                // Everything after it was refused too or will be
                // deduplicated: resend all unconfirmed, in order.
                self.outbox.reset_link();
                return;
            }
        }
        let failure = Failure {
            code: refusal.code,
            message: if refusal.retryable {
                format!(
                    "{} (gave up after {} attempts)",
                    refusal.message, self.config.retry_budget
                )
            } else {
                refusal.message
            },
            retryable: refusal.retryable,
        };
        entry.item.status = Status::Failed;
        entry.item.failure = Some(failure.clone());
        let item = entry.item.clone();
        self.outbox.clear_on_link(id);
        self.out.push_back(Output::Store(StoreOp::SetFailed {
            id,
            failure: failure.clone(),
        }));
        // A refused action disappears from the message's look (rolled back)
        // and shows as a failed pending action on it.
        self.show(
            &item,
            TimelineChange::StatusChanged {
                id,
                status: Status::Failed,
                failure: Some(failure),
            },
        );
        self.rearm_ack_deadline(now);
        self.pump(now);
    }

    /// Stores a confirmed message (ack, push or catch-up), once.
    fn on_confirmed(&mut self, now: Instant, msg: WireMessage) {
        let me = self.me.user;
        let Some(conv) = self.convs.get_mut(&msg.conversation) else {
            // A conversation we have not heard of yet: learn it, and its
            // messages come through catch-up.
            if let Link::Online(o) = &mut self.link {
                if o.list_req.is_none() {
                    let req = self.next_req;
                    self.next_req += 1;
                    o.list_req = Some(req);
                    self.transmit(ClientFrame::ListConversations { req });
                }
            }
            return;
        };
        let own = msg.sender == me;
        let from_outbox = own.then(|| self.outbox.remove(msg.id)).flatten();
        if conv.has(msg.seq) && from_outbox.is_none() {
            return;
        }
        let is_action = msg.action.is_some();
        let delivered = conv.delivered_to_others(me).is_some_and(|d| d >= msg.seq);
        let read = conv.read_by_others(me).is_some_and(|r| r >= msg.seq);
        let status = if !own {
            Status::Success
        } else if read && !is_action {
            Status::Read
        } else if delivered {
            if !is_action {
                conv.unread_own.insert(msg.seq, msg.id);
            }
            Status::Success
        } else {
            conv.in_flight_own.insert(msg.seq, (msg.id, is_action));
            Status::InFlight
        };
        let (local_seq, created_at) = match &from_outbox {
            Some(e) => (e.item.local_seq, e.item.created_at),
            None => (0, msg.server_ts),
        };
        let mut item = Item::message(
            msg.id,
            msg.conversation,
            msg.sender,
            msg.sender_name,
            msg.body,
            own,
            status,
            Some(msg.seq),
            local_seq,
            created_at,
            Some(msg.server_ts),
        );
        item.action = msg.action;
        // An action stored ahead of a gap may target a message that is not
        // here yet; that message must then be shown as storage folds it.
        let early = match &item.action {
            Some(a) if msg.seq > conv.info.cursor.next() => {
                conv.early_targets.insert(a.target);
                false
            }
            Some(_) => false,
            None => conv.early_targets.remove(&item.id),
        };
        conv.stored(msg.seq);
        self.out
            .push_back(Output::Store(StoreOp::UpsertConfirmed(item.clone())));
        match &item.action {
            Some(a) => self.touched(item.conversation, a.target),
            None if early => self.touched(item.conversation, item.id),
            None if from_outbox.is_some() => self.upsert_own(item.clone()),
            // Own, from another device of this account or stored here
            // already (above a gap the syncer forgot when it restarted):
            // storage keeps this device's fields and a status that never
            // goes back, so show what it has.
            None if own => self.touched(item.conversation, item.id),
            None => self.timeline(item.conversation, TimelineChange::Upserted(item.clone())),
        }
        if from_outbox.is_some() {
            self.rearm_ack_deadline(now);
            // Confirmed by a push or a catch-up page rather than its ack:
            // its slot in the window is free, and nothing else may come to
            // wake the syncer (the ack deadline is gone when the link is
            // empty), so what waited for room leaves now.
            self.pump(now);
        }
    }

    /// After messages of `conversation` were stored: move the cursor in
    /// storage, acknowledge delivery, and catch up if there is a gap.
    fn after_stored(&mut self, conversation: ConversationId) {
        let online = self.is_online();
        let Some(conv) = self.convs.get_mut(&conversation) else {
            return;
        };
        let cursor = conv.info.cursor;
        if cursor > conv.reported {
            self.out.push_back(Output::Store(StoreOp::SetCursor {
                conversation,
                seq: cursor,
            }));
            if online {
                conv.reported = cursor;
                self.out.push_back(Output::Transmit(ClientFrame::Received {
                    conversation,
                    seq: cursor,
                }));
            }
        }
        if conv.has_gap() {
            self.ensure_sync(conversation);
        }
    }

    fn on_marks(
        &mut self,
        conversation: ConversationId,
        marks: &MemberMarks,
        others: Option<OthersMarks>,
    ) {
        let Some(conv) = self.convs.get_mut(&conversation) else {
            return;
        };
        conv.merge_marks(marks);
        if let Some(others) = others {
            conv.merge_others(others);
        }
        self.out.push_back(Output::Store(StoreOp::SetMarks {
            conversation,
            marks: marks.clone(),
        }));
        self.settle_delivered(conversation);
        self.event(Event::ConversationUpdated(conversation));
    }

    fn on_batch(
        &mut self,
        now: Instant,
        req: u64,
        conversation: ConversationId,
        messages: Vec<WireMessage>,
        members: Vec<MemberMarks>,
        last_seq: Seq,
    ) {
        let Some(conv) = self.convs.get_mut(&conversation) else {
            return;
        };
        if conv.sync_req != Some(req) {
            return; // an answer to a request of an earlier connection
        }
        conv.sync_req = None;
        conv.info.last_seq = conv.info.last_seq.max(last_seq);
        let empty = messages.is_empty();
        // Pipelining: when this page is exactly the run cursor+1..=end and
        // more remains, ask for the page after `end` now, before this one
        // is stored. Once it is stored the cursor is `end`, so the next
        // page extends it without a gap; meanwhile the server reads it
        // while this device writes (the driver may transmit a `sync` ahead
        // of the store writes of the same drain: it depends on none).
        let cursor = conv.info.cursor.0;
        let consecutive = messages
            .iter()
            .zip(cursor + 1..)
            .all(|(m, seq)| m.conversation == conversation && m.seq.0 == seq);
        let end = Seq(cursor + messages.len() as u64);
        let next = (!empty && consecutive && end < conv.info.last_seq).then_some(end);
        for m in &members {
            conv.merge_marks(m);
        }
        let members = conv.info.members.clone();
        let title = conv.info.title.clone();
        let last = conv.info.last_seq;
        self.out
            .push_back(Output::Store(StoreOp::UpsertConversation {
                id: conversation,
                title,
                members,
                last_seq: last,
            }));
        if let Some(after) = next {
            self.request_page(conversation, after);
        }
        for m in messages {
            if m.conversation == conversation {
                self.on_confirmed(now, m);
            }
        }
        self.settle_delivered(conversation);
        if empty {
            // The server has nothing after our cursor: trust it rather than
            // asking again forever.
            if let Some(conv) = self.convs.get_mut(&conversation) {
                conv.info.last_seq = conv.info.cursor;
                conv.above.clear();
            }
        }
        self.after_stored(conversation);
    }

    fn on_error(&mut self, req: Option<u64>, refusal: Refusal) {
        if let Some(req) = req {
            if self.app_reqs.contains(&req) {
                self.answer(req, Err(refusal));
                return;
            }
            for c in self.convs.values_mut() {
                if c.sync_req == Some(req) {
                    c.sync_req = None;
                }
            }
            return;
        }
        match refusal.code {
            // Trying again cannot help: stop until the app acts.
            ErrorCode::Unauthorized | ErrorCode::UnsupportedVersion => {
                self.outbox.reset_link();
                self.link = Link::Stopped;
                self.event(Event::SessionRejected(refusal));
            }
            // The server is about to close the connection and says when to
            // come back (shutting down, too many connections): honour it.
            _ => {
                if let Some(ms) = refusal.retry_after_ms {
                    self.not_before = Some(Duration::from_millis(ms));
                }
            }
        }
    }

    // ---- helpers -------------------------------------------------------

    fn upsert_conversation(&mut self, info: &ConversationInfo) {
        let id = info.id;
        let conv = self.convs.entry(id).or_insert_with(|| {
            ConvState::new(Conversation {
                id,
                title: info.title.clone(),
                members: Vec::new(),
                cursor: Seq::ZERO,
                last_seq: Seq::ZERO,
            })
        });
        conv.info.title.clone_from(&info.title);
        for m in &info.members {
            conv.merge_marks(m);
        }
        conv.info.last_seq = conv.info.last_seq.max(info.last_seq);
        // The server may have missed our last `received` (lost with a
        // connection): report the cursor again when it is behind.
        let server_mine = info.members.iter().find(|m| m.user == self.me.user);
        let (delivered, read) =
            server_mine.map_or((Seq::ZERO, Seq::ZERO), |m| (m.delivered, m.read));
        if delivered < conv.info.cursor {
            conv.reported = Seq::ZERO;
        }
        // Likewise a read mark made offline or lost with a connection.
        if read < conv.my_read(self.me.user) {
            conv.read_reported = read;
        }
        self.out
            .push_back(Output::Store(StoreOp::UpsertConversation {
                id,
                title: conv.info.title.clone(),
                members: conv.info.members.clone(),
                last_seq: conv.info.last_seq,
            }));
        self.settle_delivered(id);
        self.after_stored(id);
        self.report_read(id);
        self.event(Event::ConversationUpdated(id));
    }

    /// Moves own In-Flight rows that every other member now has to Success,
    /// and own messages every other member has read to Read.
    fn settle_delivered(&mut self, conversation: ConversationId) {
        let me = self.me.user;
        let Some(conv) = self.convs.get_mut(&conversation) else {
            return;
        };
        let delivered = conv.take_delivered(me);
        for &(id, is_action, seq) in &delivered {
            if !is_action {
                conv.unread_own.insert(seq, id);
            }
        }
        let read = conv.take_read(me);
        let mut changes = Vec::new();
        for (id, is_action, _) in delivered {
            if is_action || !read.contains(&id) {
                changes.push((id, is_action, Status::Success));
            }
        }
        changes.extend(read.into_iter().map(|id| (id, false, Status::Read)));
        for (id, is_action, status) in changes {
            self.out
                .push_back(Output::Store(StoreOp::SetStatus { id, status }));
            if !is_action {
                self.timeline(
                    conversation,
                    TimelineChange::StatusChanged {
                        id,
                        status,
                        failure: None,
                    },
                );
            }
        }
    }

    /// Starts paging from the cursor, unless a page is already asked for.
    fn ensure_sync(&mut self, conversation: ConversationId) {
        let Some(conv) = self.convs.get(&conversation) else {
            return;
        };
        if conv.sync_req.is_some() {
            return;
        }
        let after = conv.info.cursor;
        self.request_page(conversation, after);
    }

    /// Asks for the page after `after` (online only); it becomes the one
    /// request of the conversation whose answer is taken.
    fn request_page(&mut self, conversation: ConversationId, after: Seq) {
        if !self.is_online() {
            return;
        }
        let req = self.next_req;
        let limit = self.config.sync_page.min(self.limits.max_page.max(1));
        let Some(conv) = self.convs.get_mut(&conversation) else {
            return;
        };
        self.next_req += 1;
        conv.sync_req = Some(req);
        self.transmit(ClientFrame::Sync {
            req,
            conversation,
            after,
            limit,
        });
    }

    fn can_transmit(&self, now: Instant) -> bool {
        match &self.link {
            Link::Online(o) => {
                o.paused_until.is_none_or(|t| t <= now) && self.outbox.on_link < self.config.window
            }
            _ => false,
        }
    }

    /// Transmits queued messages in send order, as many as the window allows.
    fn pump(&mut self, now: Instant) {
        if !self.can_transmit(now) {
            return;
        }
        let room = self.config.window - self.outbox.on_link;
        let mut frames = Vec::new();
        let mut newly = Vec::new();
        for e in self.outbox.unsent_mut().take(room) {
            e.on_link = true;
            e.answers_due += 1;
            if !e.persisted_transmitted {
                e.persisted_transmitted = true;
                newly.push(e.item.id);
            }
            frames.push(ClientFrame::Send {
                id: e.item.id,
                conversation: e.item.conversation,
                body: e.item.body.clone(),
                action: e.item.action.clone(),
            });
        }
        if frames.is_empty() {
            return;
        }
        self.outbox.on_link += frames.len();
        if !newly.is_empty() {
            self.out
                .push_back(Output::Store(StoreOp::MarkTransmitted(newly)));
        }
        for f in frames {
            self.transmit(f);
        }
        if let Link::Online(o) = &mut self.link {
            if o.ack_deadline.is_none() {
                o.ack_deadline = Some(now + self.config.ack_timeout);
            }
        }
    }

    fn rearm_ack_deadline(&mut self, now: Instant) {
        let waiting = self.outbox.on_link > 0;
        if let Link::Online(o) = &mut self.link {
            o.ack_deadline = waiting.then(|| now + self.config.ack_timeout);
        }
    }

    fn answer(&mut self, req: u64, result: Result<Vec<ConversationInfo>, Refusal>) {
        if self.app_reqs.remove(&req) {
            self.event(Event::Answer { req, result });
        }
    }

    fn transmit(&mut self, frame: ClientFrame) {
        self.out.push_back(Output::Transmit(frame));
    }

    /// Publishes a change of an own row: as itself for a message, as a
    /// change of its target for an action.
    fn show(&mut self, item: &Item, change: TimelineChange) {
        match &item.action {
            Some(a) => self.touched(item.conversation, a.target),
            None => self.timeline(item.conversation, change),
        }
    }

    /// Publishes a new version of an own message. When actions of this
    /// device on it are still unconfirmed or refused, storage shows them on
    /// top of it (a pending edit's text, a failed one in `pending`), so it
    /// is re-read from there rather than shown bare.
    fn upsert_own(&mut self, item: Item) {
        let acted_on = self
            .outbox
            .iter()
            .any(|e| e.item.action.as_ref().is_some_and(|a| a.target == item.id));
        if acted_on {
            self.touched(item.conversation, item.id);
        } else {
            self.timeline(item.conversation, TimelineChange::Upserted(item));
        }
    }

    fn touched(&mut self, conversation: ConversationId, id: MessageId) {
        self.out.push_back(Output::Touched { conversation, id });
    }

    fn timeline(&mut self, conversation: ConversationId, change: TimelineChange) {
        self.out.push_back(Output::Timeline {
            conversation,
            change,
        });
    }

    fn event(&mut self, event: Event) {
        self.out.push_back(Output::Event(event));
    }

    fn take_local_seq(&mut self) -> u64 {
        let s = self.next_local_seq;
        self.next_local_seq += 1;
        s
    }

    fn take_req(&mut self) -> u64 {
        let r = self.next_req;
        self.next_req += 1;
        r
    }
}

#[cfg(test)]
mod tests;
