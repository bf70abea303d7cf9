//! A deterministic world for the syncer core: syncers with in-memory stores,
//! a fake server, and a link the test controls, on virtual time.
//!
//! Nothing here does I/O or sleeps. Time is `base + elapsed`, moved only by
//! [`World::advance`] (which fires due timers) or [`World::skip`] (which
//! does not: a late timer). Each client's outputs are applied exactly as the
//! calling contract says: every store op of a drain in one batch, then
//! timeline changes and events, then frames, in order.
//!
//! The link of each client is two queues. Frames from the client to the
//! server stay in order and are never duplicated by the link (a WebSocket
//! runs on TCP: a lost frame means a lost connection, see [`World::cut`];
//! the client's own resends are its business). Frames from the server to the
//! client may be dropped, duplicated and reordered.

use crate::core::{ActionError, Config, Event, Identity, Output, Syncer};
use crate::model::{Item, Status, TimelineChange};
use crate::store::{ClientStore, LoadedState, MemoryStore, StoreOp};
use chatsync_protocol::{
    check_send, fold, ActionKind, ActionRef, ClientFrame, ConversationId, ConversationInfo,
    ErrorCode, FoldEvent, Folded, Limits, MemberMarks, MessageId, OthersMarks, Refusal, Seq,
    ServerFrame, UserId, WireMessage,
};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Account `n`.
pub fn user_id(n: usize) -> UserId {
    UserId(Uuid::from_u128(0x1000 + n as u128))
}

/// Conversation `n`.
pub fn conv_id(n: usize) -> ConversationId {
    ConversationId(Uuid::from_u128(0x2000 + n as u128))
}

fn username(n: usize) -> String {
    format!("user{n}")
}

/// A conversation as the fake server keeps it.
#[derive(Debug)]
pub struct ServerConv {
    pub title: String,
    pub members: Vec<UserId>,
    /// Messages in sequence order (`messages[i].seq == i + 1`).
    pub messages: Vec<WireMessage>,
    /// Per member: highest seq a device of theirs reported stored.
    pub delivered: HashMap<UserId, Seq>,
    /// Per member: highest seq they marked read (never above `delivered`).
    pub read: HashMap<UserId, Seq>,
}

impl ServerConv {
    /// Sequence number of the newest message.
    pub fn last_seq(&self) -> Seq {
        Seq(self.messages.len() as u64)
    }

    /// The message (not an action) with that id.
    pub fn message(&self, id: MessageId) -> Option<&WireMessage> {
        self.messages
            .iter()
            .find(|m| m.id == id && m.action.is_none())
    }

    /// Whether the author of `target` deleted it.
    pub fn is_deleted(&self, target: &WireMessage) -> bool {
        self.messages.iter().any(|m| {
            m.sender == target.sender
                && m.action
                    .as_ref()
                    .is_some_and(|a| a.target == target.id && a.kind == ActionKind::Delete)
        })
    }

    /// The state of message `id` after every action in the history: the
    /// rule every member applies.
    pub fn folded(&self, id: MessageId) -> Folded {
        let message = self.message(id).expect("a message of the history");
        let events: Vec<FoldEvent<'_>> = self
            .messages
            .iter()
            .filter(|m| m.action.as_ref().is_some_and(|a| a.target == id))
            .map(|m| FoldEvent {
                seq: m.seq,
                sender: m.sender,
                body: &m.body,
                action: m.action.as_ref(),
            })
            .collect();
        fold(message.sender, &message.body, &events)
    }
}

/// One open connection on the fake server.
#[derive(Debug)]
struct Conn {
    user: UserId,
    /// New sends are refused as rate-limited until then.
    throttle_until: Option<Instant>,
    /// The first send refused transiently. Until it comes again (the
    /// client resends in order, oldest first), every other new send of the
    /// connection is refused too: otherwise a send pipelined behind it, or
    /// a stale copy from an earlier resend, could be stored before it and
    /// break the sender's order. (A real server needs the same rule.)
    blocked_on: Option<MessageId>,
}

/// The minimal server the core talks to: per-conversation sequence numbers,
/// deduplication by (sender, id) answered with the original ack, delivered
/// marks per member, listing, catch-up and fan-out.
#[derive(Debug)]
pub struct FakeServer {
    base: Instant,
    pub limits: Limits,
    names: HashMap<UserId, String>,
    pub convs: BTreeMap<ConversationId, ServerConv>,
    acks: HashMap<(UserId, MessageId), (ConversationId, Seq, i64)>,
    /// Open connections, by client index.
    conns: BTreeMap<usize, Conn>,
    /// Refusals given, in order, to the next new (not deduplicated) sends.
    pub scripted: VecDeque<Refusal>,
    /// Push a moved mark the current way (to its own account, and to the
    /// members whose `others` it changed) rather than the old way (to
    /// every member, without `others`). Clients must work with both.
    pub summary_marks: bool,
    /// The `others` last pushed to each (conversation, member).
    others_sent: HashMap<(ConversationId, UserId), Option<OthersMarks>>,
}

impl FakeServer {
    fn new(base: Instant, users: usize, convs: &[&[usize]]) -> Self {
        let names = (0..users).map(|u| (user_id(u), username(u))).collect();
        let convs = convs
            .iter()
            .enumerate()
            .map(|(i, members)| {
                let conv = ServerConv {
                    title: format!("conv{i}"),
                    members: members.iter().map(|&u| user_id(u)).collect(),
                    messages: Vec::new(),
                    delivered: HashMap::new(),
                    read: HashMap::new(),
                };
                (conv_id(i), conv)
            })
            .collect();
        FakeServer {
            base,
            limits: Limits::default(),
            names,
            convs,
            acks: HashMap::new(),
            conns: BTreeMap::new(),
            scripted: VecDeque::new(),
            summary_marks: true,
            others_sent: HashMap::new(),
        }
    }

    fn connect(&mut self, client: usize, user: UserId) {
        let conn = Conn {
            user,
            throttle_until: None,
            blocked_on: None,
        };
        assert!(self.conns.insert(client, conn).is_none());
    }

    fn disconnect(&mut self, client: usize) {
        self.conns.remove(&client);
    }

    /// Refuses new sends of `client`'s connection as rate-limited until `until`.
    pub fn throttle(&mut self, client: usize, until: Instant) {
        let conn = self
            .conns
            .get_mut(&client)
            .expect("throttle needs a connection");
        conn.throttle_until = Some(until);
    }

    /// Ids of conversation `conv`'s messages, in server order.
    pub fn ids(&self, conv: ConversationId) -> Vec<MessageId> {
        self.convs[&conv].messages.iter().map(|m| m.id).collect()
    }

    /// The stored message with that id, if any.
    pub fn message(&self, id: MessageId) -> Option<&WireMessage> {
        self.convs
            .values()
            .flat_map(|c| &c.messages)
            .find(|m| m.id == id)
    }

    fn marks(&self, conv: &ServerConv, user: UserId) -> MemberMarks {
        MemberMarks {
            user,
            username: self.names[&user].clone(),
            delivered: conv.delivered.get(&user).copied().unwrap_or(Seq::ZERO),
            read: conv.read.get(&user).copied().unwrap_or(Seq::ZERO),
        }
    }

    fn info(&self, id: ConversationId) -> ConversationInfo {
        let conv = &self.convs[&id];
        ConversationInfo {
            id,
            title: conv.title.clone(),
            members: conv.members.iter().map(|&u| self.marks(conv, u)).collect(),
            last_seq: Seq(conv.messages.len() as u64),
        }
    }

    /// The lowest marks among the members of `conv` other than `x`.
    fn others(&self, conv: &ServerConv, x: UserId) -> Option<OthersMarks> {
        let others = conv.members.iter().filter(|&&u| u != x);
        let lowest = |marks: &HashMap<UserId, Seq>| {
            others
                .clone()
                .map(|u| marks.get(u).copied().unwrap_or(Seq::ZERO))
                .min()
        };
        Some(OthersMarks {
            delivered: lowest(&conv.delivered)?,
            read: lowest(&conv.read)?,
        })
    }

    /// The pushes of a moved mark of `user`. Old rule (`summary_marks`
    /// off): the member's marks to every member's connection, without
    /// `others`. Current rule (PROTOCOL.md §8.2): to the member's own
    /// connections, and to each other member whose `others` changed since
    /// it was last sent, with that member's `others`.
    fn marks_moved(
        &mut self,
        conversation: ConversationId,
        user: UserId,
    ) -> Vec<(usize, ServerFrame)> {
        let conv = &self.convs[&conversation];
        let marks = self.marks(conv, user);
        let frame = |others| ServerFrame::Marks {
            conversation,
            marks: marks.clone(),
            others,
        };
        let conns = self.member_conns(conversation);
        if !self.summary_marks {
            return conns.into_iter().map(|to| (to, frame(None))).collect();
        }
        let mut tell = Vec::new();
        for &x in &conv.members {
            let others = self.others(conv, x);
            // Before any push, members know the `others` of the empty
            // conversation from their snapshots: zero.
            let initial = (conv.members.len() > 1).then(OthersMarks::default);
            let last = self
                .others_sent
                .get(&(conversation, x))
                .copied()
                .unwrap_or(initial);
            if x == user || others != last {
                tell.push((x, others));
            }
        }
        let mut out = Vec::new();
        for (x, others) in tell {
            self.others_sent.insert((conversation, x), others);
            out.extend(
                conns
                    .iter()
                    .filter(|&&to| self.conns[&to].user == x)
                    .map(|&to| (to, frame(others))),
            );
        }
        out
    }

    /// Client indices connected as a member of `conv`.
    fn member_conns(&self, conv: ConversationId) -> Vec<usize> {
        let members = &self.convs[&conv].members;
        self.conns
            .iter()
            .filter(|(_, c)| members.contains(&c.user))
            .map(|(&i, _)| i)
            .collect()
    }

    /// Handles a frame from `client`; returns the frames to send, by client.
    fn handle(
        &mut self,
        now: Instant,
        client: usize,
        frame: ClientFrame,
    ) -> Vec<(usize, ServerFrame)> {
        let user = self.conns[&client].user;
        let mut out = Vec::new();
        match frame {
            ClientFrame::ListConversations { req } => {
                let conversations = self
                    .convs
                    .iter()
                    .filter(|(_, c)| c.members.contains(&user))
                    .map(|(&id, _)| self.info(id))
                    .collect();
                out.push((client, ServerFrame::Conversations { req, conversations }));
            }
            ClientFrame::Send {
                id,
                conversation,
                body,
                action,
            } => out.extend(self.on_send(now, client, user, id, conversation, body, action)),
            ClientFrame::Read { conversation, seq } => {
                let Some(conv) = self.convs.get_mut(&conversation) else {
                    return out;
                };
                if !conv.members.contains(&user) {
                    return out;
                }
                // The highest mark wins (a stale device cannot move it
                // back), never beyond the conversation, and what is read
                // is delivered.
                let last = conv.last_seq();
                let read = conv.read.entry(user).or_default();
                let new = (*read).max(seq.min(last));
                if new == *read {
                    return out;
                }
                *read = new;
                let delivered = conv.delivered.entry(user).or_default();
                *delivered = (*delivered).max(new);
                out.extend(self.marks_moved(conversation, user));
            }
            ClientFrame::Received { conversation, seq } => {
                let Some(conv) = self.convs.get_mut(&conversation) else {
                    return out;
                };
                assert!(
                    seq.0 <= conv.messages.len() as u64,
                    "client {client} acknowledged {seq}, beyond the last seq {}",
                    conv.messages.len()
                );
                let mark = conv.delivered.entry(user).or_default();
                if seq > *mark {
                    *mark = seq;
                    out.extend(self.marks_moved(conversation, user));
                }
            }
            ClientFrame::Sync {
                req,
                conversation,
                after,
                limit,
            } => {
                let conv = &self.convs[&conversation];
                let limit = limit.min(self.limits.max_page) as usize;
                let messages = conv
                    .messages
                    .iter()
                    .filter(|m| m.seq > after)
                    .take(limit)
                    .cloned()
                    .collect();
                let members = conv.members.iter().map(|&u| self.marks(conv, u)).collect();
                let frame = ServerFrame::Batch {
                    req,
                    conversation,
                    messages,
                    members,
                    last_seq: Seq(conv.messages.len() as u64),
                };
                out.push((client, frame));
            }
            ClientFrame::Ping { nonce } => out.push((client, ServerFrame::Pong { nonce })),
            other => panic!("the core sent an unexpected frame: {other:?}"),
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn on_send(
        &mut self,
        now: Instant,
        client: usize,
        user: UserId,
        id: MessageId,
        conversation: ConversationId,
        body: String,
        action: Option<ActionRef>,
    ) -> Vec<(usize, ServerFrame)> {
        let refused = |refusal| vec![(client, ServerFrame::Refused { id, refusal })];
        if let Some(&(conversation, seq, server_ts)) = self.acks.get(&(user, id)) {
            let ack = ServerFrame::Ack {
                id,
                conversation,
                seq,
                server_ts,
            };
            return vec![(client, ack)];
        }
        let conn = self.conns.get_mut(&client).expect("connected");
        if let Some(refusal) = self.scripted.pop_front() {
            if refusal.retryable {
                let wait = Duration::from_millis(refusal.retry_after_ms.unwrap_or(0));
                conn.throttle_until = Some(now + wait);
                conn.blocked_on.get_or_insert(id);
            }
            return refused(refusal);
        }
        let throttled = conn.throttle_until.is_some_and(|t| now < t);
        let refuse = match conn.blocked_on {
            Some(first) if first != id => true,
            Some(_) if throttled => true,
            Some(_) => {
                conn.blocked_on = None;
                false
            }
            None if throttled => {
                conn.blocked_on = Some(id);
                true
            }
            None => false,
        };
        if refuse {
            let wait = conn
                .throttle_until
                .map(|t| t.saturating_duration_since(now))
                .unwrap_or_default();
            let ms = wait.as_nanos().div_ceil(1_000_000).max(1) as u64;
            return refused(Refusal::transient(
                ErrorCode::RateLimited,
                "slow down",
                Some(ms),
            ));
        }
        let Some(conv) = self.convs.get_mut(&conversation) else {
            return refused(Refusal::permanent(
                ErrorCode::UnknownConversation,
                "no such conversation",
            ));
        };
        if !conv.members.contains(&user) {
            return refused(Refusal::permanent(ErrorCode::NotMember, "not a member"));
        }
        if body.starts_with("bad") {
            return refused(Refusal::permanent(
                ErrorCode::InvalidBody,
                "this server refuses bad bodies",
            ));
        }
        if let Err((code, message)) = check_send(&body, action.as_ref(), &self.limits) {
            return refused(Refusal::permanent(code, message));
        }
        if let Some(action) = &action {
            // What the real server checks: the target is a message of this
            // conversation; only its author edits or deletes it; a deleted
            // message takes no edit or reaction (deleting it again is
            // harmless and accepted).
            let Some(target) = conv.message(action.target) else {
                return refused(Refusal::permanent(
                    ErrorCode::NotFound,
                    "no such message in this conversation",
                ));
            };
            let author_only = matches!(action.kind, ActionKind::Edit | ActionKind::Delete);
            if author_only && target.sender != user {
                return refused(Refusal::permanent(
                    ErrorCode::NotAuthor,
                    "only the author may do that",
                ));
            }
            if action.kind != ActionKind::Delete && conv.is_deleted(target) {
                return refused(Refusal::permanent(ErrorCode::Gone, "it was deleted"));
            }
        }
        let seq = Seq(conv.messages.len() as u64 + 1);
        let server_ts = now.duration_since(self.base).as_millis() as i64;
        let message = WireMessage {
            id,
            conversation,
            seq,
            sender: user,
            sender_name: self.names[&user].clone(),
            body,
            server_ts,
            action,
        };
        conv.messages.push(message.clone());
        self.acks.insert((user, id), (conversation, seq, server_ts));
        let mut out = vec![(
            client,
            ServerFrame::Ack {
                id,
                conversation,
                seq,
                server_ts,
            },
        )];
        // Fan-out to every connected member, the sender's own device included
        // (an echo after its ack).
        for to in self.member_conns(conversation) {
            let frame = ServerFrame::Message {
                message: message.clone(),
            };
            out.push((to, frame));
        }
        out
    }
}

/// One device: a syncer, its storage, its link and what it was seen to do.
#[derive(Debug)]
pub struct Client {
    pub me: Identity,
    pub config: Config,
    pub syncer: Syncer,
    pub store: MemoryStore,
    /// Whether connection attempts succeed.
    pub network_up: bool,
    /// Whether a connection is open (the server has it too).
    pub connected: bool,
    pub to_server: VecDeque<ClientFrame>,
    pub to_client: VecDeque<ServerFrame>,
    /// Every frame the core transmitted (delivered or not), not yet taken.
    pub transmitted: Vec<ClientFrame>,
    /// Statuses each message went through, as timeline subscribers saw them.
    pub history: HashMap<MessageId, Vec<Status>>,
    pub removed: Vec<MessageId>,
    pub events: Vec<Event>,
    /// When the core asked for a connection.
    pub connects: Vec<Duration>,
    /// Raw outputs of every non-empty drain, in order.
    pub drains: Vec<Vec<Output>>,
    /// Successful `retry` calls per message.
    pub retried: HashMap<MessageId, usize>,
    /// Every (conversation, id) `send` accepted, in call order.
    pub sent: Vec<(ConversationId, MessageId)>,
    /// Every action queued (edit, delete, react), each id once, in the
    /// order of the calls that first returned it.
    pub actions: Vec<(ConversationId, MessageId)>,
    /// Messages and actions, each id once, in the order they were queued.
    pub queued: Vec<MessageId>,
    /// Messages as a subscriber shows them: built only from the timeline
    /// changes published, `Touched` ones re-read from storage after the
    /// drain's writes, exactly like the driver does.
    pub shown: HashMap<MessageId, Item>,
    /// Messages the core reported as touched, in order.
    pub touched: Vec<MessageId>,
    /// Statuses each row (message or action) went through in storage.
    pub stored_history: HashMap<MessageId, Vec<Status>>,
    /// Every row the core removed from storage.
    pub removed_rows: Vec<MessageId>,
    /// Rows written as confirmed, by conversation and seq.
    pub confirmed: HashMap<ConversationId, BTreeMap<Seq, MessageId>>,
}

impl Client {
    fn record(&mut self, change: &TimelineChange) {
        let (id, status) = match change {
            TimelineChange::Upserted(item) => {
                self.shown.insert(item.id, item.clone());
                (item.id, item.status)
            }
            TimelineChange::StatusChanged {
                id,
                status,
                failure,
            } => {
                if let Some(item) = self.shown.get_mut(id) {
                    item.status = *status;
                    item.failure.clone_from(failure);
                }
                (*id, *status)
            }
            TimelineChange::Removed(id) => {
                self.shown.remove(id);
                self.removed.push(*id);
                return;
            }
        };
        let history = self.history.entry(id).or_default();
        if history.last() != Some(&status) {
            history.push(status);
        }
    }

    /// A `Touched` output: the driver re-reads the message and publishes it.
    fn touch(&mut self, id: MessageId) {
        self.touched.push(id);
        let item = self.store.item(id).expect("item");
        match item {
            Some(item) if item.action.is_none() => self.record(&TimelineChange::Upserted(item)),
            Some(item) => panic!("the core touched an action: {item:?}"),
            None => {}
        }
    }

    /// After a drain's store writes: the statuses storage now holds.
    fn record_stored(&mut self, ops: &[StoreOp]) {
        for op in ops {
            if let StoreOp::UpsertConfirmed(item) = op {
                let seq = item.seq.expect("a confirmed row has a seq");
                let known = self
                    .confirmed
                    .entry(item.conversation)
                    .or_default()
                    .insert(seq, item.id);
                assert!(
                    known.is_none_or(|id| id == item.id),
                    "{seq} stored for two ids"
                );
            }
            let id = match op {
                StoreOp::InsertOutgoing { item, .. } | StoreOp::UpsertConfirmed(item) => item.id,
                StoreOp::SetStatus { id, .. }
                | StoreOp::SetFailed { id, .. }
                | StoreOp::Requeue { id, .. } => *id,
                StoreOp::Remove(id) => {
                    self.removed_rows.push(*id);
                    continue;
                }
                _ => continue,
            };
            let Some(item) = self.store.item(id).expect("item") else {
                continue;
            };
            let history = self.stored_history.entry(id).or_default();
            if history.last() != Some(&item.status) {
                history.push(item.status);
            }
        }
    }

    fn queue(&mut self, id: MessageId) {
        if !self.queued.contains(&id) {
            self.queued.push(id);
        }
    }

    /// Every message of the stored timelines as shown, compared with what a
    /// subscriber was told: the view never differs from storage.
    pub fn check_view(&self, c: usize) {
        let convs = self.store.conversations().expect("conversations");
        let mut stored = HashSet::new();
        for conv in convs {
            for item in self.timeline(conv.id) {
                stored.insert(item.id);
                assert_eq!(
                    self.shown.get(&item.id),
                    Some(&item),
                    "client {c}: the view of {} differs from storage",
                    item.id
                );
            }
        }
        for id in self.shown.keys() {
            assert!(
                stored.contains(id),
                "client {c} shows {id}, which storage does not have"
            );
        }
    }

    /// Rebuilds the view from storage (the app starting again).
    fn reload_view(&mut self) {
        self.shown.clear();
        for conv in self.store.conversations().expect("conversations") {
            for item in self.timeline(conv.id) {
                self.shown.insert(item.id, item);
            }
        }
    }

    /// Checks, once the drain's store ops are applied, what a frame claims.
    fn check_frame(&self, frame: &ClientFrame) {
        match frame {
            ClientFrame::Received { conversation, seq } => {
                // Every seq up to it is a row in storage, message or action
                // (action rows are not in the timeline: look each up by id).
                let rows = self.confirmed.get(conversation);
                let stored: BTreeSet<Seq> = rows
                    .into_iter()
                    .flatten()
                    .filter(|(s, _)| *s <= seq)
                    .filter(|(s, id)| {
                        self.store.item(**id).expect("item").and_then(|i| i.seq) == Some(**s)
                    })
                    .map(|(s, _)| *s)
                    .collect();
                assert_eq!(
                    stored.len() as u64,
                    seq.0,
                    "received {seq} transmitted while only {stored:?} are stored"
                );
                let cursor = self.stored_conversation(*conversation).map(|c| c.cursor);
                assert!(
                    cursor >= Some(*seq),
                    "received {seq} ahead of the stored cursor {cursor:?}"
                );
            }
            ClientFrame::Send {
                id, body, action, ..
            } => {
                let loaded = self.store.load().expect("load");
                let entry = loaded.outbox.iter().find(|(i, _)| i.id == *id);
                let Some((item, transmitted)) = entry else {
                    panic!("send of {id} which is not in the stored outbox");
                };
                assert!(*transmitted, "send of {id} before storage knows it left");
                assert_eq!(item.status, Status::Sending);
                // A confirmed delete from the author (another device of
                // this account) erases the stored text; the server has
                // the message then (it accepted a delete of it), so this
                // resend is answered from deduplication.
                let erased = self
                    .store
                    .item(*id)
                    .expect("item")
                    .is_some_and(|i| i.deleted);
                if !(erased && item.body.is_empty()) {
                    assert_eq!(&item.body, body);
                }
                assert_eq!(&item.action, action);
            }
            ClientFrame::Read { conversation, seq } => {
                let conv = self.stored_conversation(*conversation);
                let mine = conv
                    .iter()
                    .flat_map(|c| &c.members)
                    .find(|m| m.user == self.me.user)
                    .map(|m| m.read);
                assert!(
                    mine >= Some(*seq),
                    "read {seq} transmitted while storage holds the mark {mine:?}"
                );
            }
            _ => {}
        }
    }

    /// The whole stored timeline of a conversation.
    pub fn timeline(&self, conversation: ConversationId) -> Vec<Item> {
        self.store
            .timeline(conversation, None, usize::MAX)
            .expect("timeline")
    }

    pub fn stored_conversation(
        &self,
        conversation: ConversationId,
    ) -> Option<crate::model::Conversation> {
        self.store
            .conversations()
            .expect("conversations")
            .into_iter()
            .find(|c| c.id == conversation)
    }
}

/// Clients, a server and virtual time.
#[derive(Debug)]
pub struct World {
    base: Instant,
    pub elapsed: Duration,
    pub server: FakeServer,
    pub clients: Vec<Client>,
    next_msg: u128,
    restarts: u64,
}

impl World {
    /// `users` accounts, the first `clients` of which have one device each,
    /// and conversations with the given member lists. Nothing has run yet:
    /// call [`World::start`].
    pub fn new(users: usize, clients: usize, convs: &[&[usize]], config: Config) -> Self {
        let devices: Vec<usize> = (0..clients).collect();
        Self::with_devices(users, &devices, convs, config)
    }

    /// Like [`World::new`], with client `i` a device of account
    /// `devices[i]` (an account may have several).
    pub fn with_devices(
        users: usize,
        devices: &[usize],
        convs: &[&[usize]],
        config: Config,
    ) -> Self {
        let base = Instant::now();
        let clients = devices
            .iter()
            .enumerate()
            .map(|(i, &u)| {
                assert!(u < users, "device {i} of an unknown account {u}");
                let me = Identity {
                    user: user_id(u),
                    username: username(u),
                };
                let config = Config {
                    seed: config.seed.wrapping_add(i as u64),
                    ..config.clone()
                };
                Client {
                    syncer: Syncer::new(
                        base,
                        me.clone(),
                        Limits::default(),
                        config.clone(),
                        LoadedState::default(),
                    ),
                    me,
                    config,
                    store: MemoryStore::new(),
                    network_up: true,
                    connected: false,
                    to_server: VecDeque::new(),
                    to_client: VecDeque::new(),
                    transmitted: Vec::new(),
                    history: HashMap::new(),
                    removed: Vec::new(),
                    events: Vec::new(),
                    connects: Vec::new(),
                    drains: Vec::new(),
                    retried: HashMap::new(),
                    sent: Vec::new(),
                    actions: Vec::new(),
                    queued: Vec::new(),
                    shown: HashMap::new(),
                    touched: Vec::new(),
                    stored_history: HashMap::new(),
                    removed_rows: Vec::new(),
                    confirmed: HashMap::new(),
                }
            })
            .collect();
        World {
            base,
            elapsed: Duration::ZERO,
            server: FakeServer::new(base, users, convs),
            clients,
            next_msg: 0,
            restarts: 0,
        }
    }

    /// Connects everyone and runs until idle.
    pub fn start(mut self) -> Self {
        self.run_until_idle();
        for c in &mut self.clients {
            c.transmitted.clear();
        }
        self
    }

    pub fn now(&self) -> Instant {
        self.base + self.elapsed
    }

    // ---- user actions -------------------------------------------------

    pub fn send(
        &mut self,
        c: usize,
        conv: ConversationId,
        body: &str,
    ) -> Result<MessageId, ActionError> {
        self.next_msg += 1;
        let id = MessageId(Uuid::from_u128(0x3000_0000 + self.next_msg));
        let now = self.now();
        let created_at = self.elapsed.as_millis() as i64;
        let result = self.clients[c]
            .syncer
            .send(now, conv, body.into(), id, created_at);
        self.drain(c);
        if let Ok(id) = result {
            self.clients[c].sent.push((conv, id));
            self.clients[c].queue(id);
        }
        result
    }

    fn next_id(&mut self) -> (MessageId, Instant, i64) {
        self.next_msg += 1;
        let id = MessageId(Uuid::from_u128(0x3000_0000 + self.next_msg));
        (id, self.now(), self.elapsed.as_millis() as i64)
    }

    /// The message `target` as client `c` stores it (what the app hands to
    /// an action).
    fn target(&self, c: usize, target: MessageId) -> Item {
        self.item(c, target)
    }

    fn acted(&mut self, c: usize, conversation: ConversationId, id: MessageId) {
        let client = &mut self.clients[c];
        if !client.actions.iter().any(|(_, a)| *a == id) {
            client.actions.push((conversation, id));
        }
        client.queue(id);
    }

    /// Client `c`'s user edits `target`: `Some(action id)`, or `None` when
    /// the message was rewritten in place.
    pub fn edit(
        &mut self,
        c: usize,
        target: MessageId,
        body: &str,
    ) -> Result<Option<MessageId>, ActionError> {
        let item = self.target(c, target);
        let (id, now, created_at) = self.next_id();
        let result = self.clients[c]
            .syncer
            .edit(now, &item, body.into(), id, created_at);
        self.drain(c);
        if let Ok(Some(id)) = result {
            self.acted(c, item.conversation, id);
        }
        result
    }

    /// Client `c`'s user deletes `target`: `Some(action id)`, or `None`
    /// when the message never left the device and is gone.
    pub fn delete(
        &mut self,
        c: usize,
        target: MessageId,
    ) -> Result<Option<MessageId>, ActionError> {
        let item = self.target(c, target);
        let (id, now, created_at) = self.next_id();
        let result = self.clients[c].syncer.delete(now, &item, id, created_at);
        self.drain(c);
        if let Ok(Some(id)) = result {
            self.acted(c, item.conversation, id);
        }
        result
    }

    /// Client `c`'s user sets (`on`) or removes a reaction on `target`.
    pub fn react(
        &mut self,
        c: usize,
        target: MessageId,
        emoji: &str,
        on: bool,
    ) -> Result<MessageId, ActionError> {
        let item = self.target(c, target);
        let (id, now, created_at) = self.next_id();
        let result = self.clients[c]
            .syncer
            .react(now, &item, emoji.into(), on, id, created_at);
        self.drain(c);
        if let Ok(id) = result {
            self.acted(c, item.conversation, id);
        }
        result
    }

    /// Client `c`'s user has read `conversation` up to `seq`.
    pub fn mark_read(
        &mut self,
        c: usize,
        conversation: ConversationId,
        seq: Seq,
    ) -> Result<(), ActionError> {
        let result = self.clients[c].syncer.mark_read(conversation, seq);
        self.drain(c);
        result
    }

    pub fn retry(&mut self, c: usize, id: MessageId) -> Result<(), ActionError> {
        let now = self.now();
        let result = self.clients[c].syncer.retry(now, id);
        self.drain(c);
        if result.is_ok() {
            *self.clients[c].retried.entry(id).or_default() += 1;
        }
        result
    }

    pub fn discard(&mut self, c: usize, id: MessageId) -> Result<(), ActionError> {
        let result = self.clients[c].syncer.discard(id);
        self.drain(c);
        result
    }

    // ---- the core's outputs -------------------------------------------

    /// Applies the core's outputs per the calling contract, and answers
    /// `Connect` at once (success when the network is up).
    pub fn drain(&mut self, c: usize) {
        loop {
            let now = self.now();
            let elapsed = self.elapsed;
            let client = &mut self.clients[c];
            let outs: Vec<Output> = std::iter::from_fn(|| client.syncer.poll_output()).collect();
            if outs.is_empty() {
                return;
            }
            let ops: Vec<StoreOp> = outs
                .iter()
                .filter_map(|o| match o {
                    Output::Store(op) => Some(op.clone()),
                    _ => None,
                })
                .collect();
            client
                .store
                .apply(&ops)
                .expect("the memory store never fails");
            client.record_stored(&ops);
            let mut connect = false;
            for o in &outs {
                match o {
                    Output::Timeline { change, .. } => client.record(change),
                    Output::Touched { id, .. } => client.touch(*id),
                    Output::Event(e) => client.events.push(e.clone()),
                    Output::Connect => connect = true,
                    Output::Store(_) | Output::Transmit(_) => {}
                }
            }
            for o in &outs {
                if let Output::Transmit(frame) = o {
                    assert!(
                        client.connected,
                        "client {c} transmitted {frame:?} while offline"
                    );
                    client.check_frame(frame);
                    client.transmitted.push(frame.clone());
                    client.to_server.push_back(frame.clone());
                }
            }
            client.drains.push(outs);
            if connect {
                client.connects.push(elapsed);
                if client.network_up {
                    client.connected = true;
                    self.server.connect(c, client.me.user);
                    client
                        .syncer
                        .handle_connected(now, self.server.limits.clone());
                } else {
                    client.syncer.handle_disconnected(now);
                }
            }
        }
    }

    /// Frames transmitted by client `c` since the last call.
    pub fn take_transmitted(&mut self, c: usize) -> Vec<ClientFrame> {
        std::mem::take(&mut self.clients[c].transmitted)
    }

    // ---- time -----------------------------------------------------------

    /// Moves time forward by `d`, firing every timer that falls due.
    pub fn advance(&mut self, d: Duration) {
        let target = self.elapsed + d;
        self.advance_to(target);
    }

    /// Moves time to `target` (since the start), firing due timers in order.
    pub fn advance_to(&mut self, target: Duration) {
        for _ in 0..100_000 {
            let due = self
                .clients
                .iter()
                .filter_map(|c| c.syncer.poll_timeout())
                .map(|t| t.saturating_duration_since(self.base))
                .filter(|t| *t <= target)
                .min();
            let Some(t) = due else {
                self.elapsed = self.elapsed.max(target);
                return;
            };
            self.elapsed = self.elapsed.max(t);
            let now = self.now();
            for c in 0..self.clients.len() {
                if self.clients[c]
                    .syncer
                    .poll_timeout()
                    .is_some_and(|t| t <= now)
                {
                    self.clients[c].syncer.handle_timeout(now);
                    self.drain(c);
                }
            }
        }
        panic!("timers keep falling due without time moving");
    }

    /// Lets time pass without firing timers (a driver whose timer is late).
    pub fn skip(&mut self, d: Duration) {
        self.elapsed += d;
    }

    // ---- the link -------------------------------------------------------

    /// Delivers the oldest frame from client `c` to the server.
    pub fn deliver_to_server(&mut self, c: usize) -> Option<ClientFrame> {
        let frame = self.clients[c].to_server.pop_front()?;
        let now = self.now();
        for (to, reply) in self.server.handle(now, c, frame.clone()) {
            if self.clients[to].connected {
                self.clients[to].to_client.push_back(reply);
            }
        }
        Some(frame)
    }

    pub fn deliver_all_to_server(&mut self, c: usize) {
        while self.deliver_to_server(c).is_some() {}
    }

    /// Delivers the oldest frame from the server to client `c`.
    pub fn deliver_to_client(&mut self, c: usize) -> Option<ServerFrame> {
        let frame = self.clients[c].to_client.pop_front()?;
        self.inject(c, frame.clone());
        Some(frame)
    }

    pub fn deliver_all_to_client(&mut self, c: usize) {
        while self.deliver_to_client(c).is_some() {}
    }

    /// Hands client `c` a frame as if the server had sent it.
    pub fn inject(&mut self, c: usize, frame: ServerFrame) {
        let now = self.now();
        self.clients[c].syncer.handle_frame(now, frame);
        self.drain(c);
    }

    /// Loses the oldest frame on its way to client `c`.
    pub fn drop_to_client(&mut self, c: usize) -> Option<ServerFrame> {
        self.clients[c].to_client.pop_front()
    }

    /// Sends the oldest frame to client `c` again, after the others.
    pub fn dup_to_client(&mut self, c: usize) {
        if let Some(f) = self.clients[c].to_client.front().cloned() {
            self.clients[c].to_client.push_back(f);
        }
    }

    /// Swaps the two oldest frames on their way to client `c`.
    pub fn swap_to_client(&mut self, c: usize) {
        if self.clients[c].to_client.len() >= 2 {
            self.clients[c].to_client.swap(0, 1);
        }
    }

    /// Breaks client `c`'s connection: frames in transit are lost.
    pub fn cut(&mut self, c: usize) {
        if !self.close(c) {
            return;
        }
        let now = self.now();
        self.clients[c].syncer.handle_disconnected(now);
        self.drain(c);
    }

    fn close(&mut self, c: usize) -> bool {
        let client = &mut self.clients[c];
        if !client.connected {
            return false;
        }
        client.connected = false;
        client.to_server.clear();
        client.to_client.clear();
        self.server.disconnect(c);
        true
    }

    /// Network up or down for client `c` (down also cuts the connection).
    pub fn set_network(&mut self, c: usize, up: bool) {
        self.clients[c].network_up = up;
        if !up {
            self.cut(c);
        }
    }

    /// Kills client `c` and starts a new syncer from its storage: whatever
    /// was only in memory is lost; the store is kept.
    pub fn restart(&mut self, c: usize) {
        self.close(c);
        self.restarts += 1;
        let now = self.now();
        let limits = self.server.limits.clone();
        let client = &mut self.clients[c];
        let state = client.store.load().expect("load");
        let config = Config {
            seed: client.config.seed.wrapping_add(1000 * self.restarts),
            ..client.config.clone()
        };
        client.syncer = Syncer::new(now, client.me.clone(), limits, config, state);
        client.reload_view();
        self.advance(Duration::ZERO);
    }

    /// Delivers every frame both ways, in order, without moving time.
    pub fn flush(&mut self) {
        loop {
            let n = self.clients.len();
            if let Some(c) = (0..n).find(|&c| !self.clients[c].to_server.is_empty()) {
                self.deliver_to_server(c);
            } else if let Some(c) = (0..n).find(|&c| !self.clients[c].to_client.is_empty()) {
                self.deliver_to_client(c);
            } else {
                return;
            }
        }
    }

    /// Delivers everything and lets time run until no frame is in transit
    /// and no client with a working network waits for a timer.
    pub fn run_until_idle(&mut self) {
        for _ in 0..10_000 {
            self.flush();
            let next = self
                .clients
                .iter()
                .filter(|c| c.network_up)
                .filter_map(|c| c.syncer.poll_timeout())
                .min();
            match next {
                Some(t) => {
                    let t = t.saturating_duration_since(self.base);
                    self.advance_to(t);
                }
                None => return,
            }
        }
        panic!("the world never became idle");
    }

    // ---- what is stored -------------------------------------------------

    /// Client `c`'s stored item.
    pub fn item(&self, c: usize, id: MessageId) -> Item {
        self.clients[c]
            .store
            .item(id)
            .expect("item")
            .unwrap_or_else(|| panic!("client {c} has no item {id}"))
    }

    pub fn status(&self, c: usize, id: MessageId) -> Status {
        self.item(c, id).status
    }

    /// Client `c`'s stored cursor of conversation 0.
    pub fn stored_conversation_cursor(&self, c: usize) -> Seq {
        self.clients[c]
            .stored_conversation(conv_id(0))
            .map_or(Seq::ZERO, |conv| conv.cursor)
    }

    /// Checks every client's view against its storage.
    pub fn check_views(&self) {
        for (c, client) in self.clients.iter().enumerate() {
            client.check_view(c);
        }
    }

    /// Statuses row `id` (message or action) went through in client `c`'s
    /// storage.
    pub fn stored_history(&self, c: usize, id: MessageId) -> Vec<Status> {
        self.clients[c]
            .stored_history
            .get(&id)
            .cloned()
            .unwrap_or_default()
    }

    pub fn history(&self, c: usize, id: MessageId) -> Vec<Status> {
        self.clients[c]
            .history
            .get(&id)
            .cloned()
            .unwrap_or_default()
    }
}
