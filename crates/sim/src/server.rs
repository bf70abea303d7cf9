//! The simulated server: the real [`chatsync_server`] store behind the
//! gateway's frame dispatch, with group commit and crashes.
//!
//! Everything that decides what is stored runs the real code:
//! [`SqliteStore`] (in memory) through the [`ServerStore`] trait does
//! deduplication, sequence numbers, action validation and marks inside
//! `apply_batch`. What the gateway adds around it is reproduced here with
//! the same checks, in the same order (PROTOCOL.md §7.2): membership
//! (`store.members`), the body ([`chatsync_protocol::check_send`] against the
//! server's limits), then the write; a send that would be refused is first
//! looked up with `find_sent`, so a resend of a stored message always gets
//! its original ack. Not modelled: authentication beyond a session lookup,
//! the rate limit (the simulated server announces `rate_per_sec: 0`), frame
//! decoding (frames are typed values here).
//!
//! Answers leave each connection in the order of the frames they answer
//! (the gateway's ordered responder): a send's answer waits for its commit,
//! and `sync`, `list_conversations` and `create_conversation` are computed
//! when the responder reaches them, so they see every earlier write of the
//! connection. Writes are queued and committed together by [`SimServer::commit`]
//! (group commit); pushes of a commit leave before its acks.
//!
//! A crash ([`SimServer::crash`]) loses every queued write, every pending
//! answer and every connection, and keeps the store: what was committed is
//! what an fsync made durable.

use chatsync_protocol::{
    check_conversation, check_send, ActionRef, ClientFrame, ConversationId, ConversationInfo,
    ErrorCode, Limits, MessageId, Refusal, Seq, ServerFrame, UserId, PROTOCOL_VERSION,
};
use chatsync_server::push::{Audience, PushRule};
use chatsync_server::store::{WriteOp, WriteOutcome};
use chatsync_server::{ServerError, ServerStore, SqliteStore};
use std::collections::{BTreeMap, VecDeque};

/// A connection, as numbered by the world.
pub type ConnId = u64;

/// Frames the server wants to send, in order.
pub type Out = Vec<(ConnId, ServerFrame)>;

/// A deliberate defect, to prove that the checker notices (see the tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sabotage {
    /// The server acknowledges a send as soon as it is queued, before the
    /// commit, guessing its seq: an ack no longer means durable.
    AckBeforeCommit,
    /// A send that fails a check is refused without looking up whether it
    /// is already stored (no dedup before refusing).
    NoDedupFirst,
    /// Client side: the insert of a new outgoing message is not written to
    /// client storage (send returns before the message is durable).
    VolatileSend,
    /// Client side: the gap-free cursor is reported (`received`) for
    /// messages that were never written to storage.
    ReceiveWithoutStore,
}

enum Slot {
    Ready(ServerFrame),
    Commit(u64),
    Sync {
        req: u64,
        conversation: ConversationId,
        after: Seq,
        limit: u32,
    },
    List {
        req: u64,
    },
    Create {
        req: u64,
        title: String,
        names: Vec<String>,
    },
}

struct Conn {
    user: UserId,
    username: String,
    slots: VecDeque<Slot>,
}

struct Queued {
    op: WriteOp,
    origin: ConnId,
    username: String,
    ticket: Option<u64>,
}

/// The simulated server. See the module docs.
pub struct SimServer {
    store: SqliteStore,
    /// Limits enforced and announced (normalized).
    pub limits: Limits,
    /// Whether the process is running.
    pub up: bool,
    conns: BTreeMap<ConnId, Conn>,
    queue: Vec<Queued>,
    resolved: BTreeMap<u64, ServerFrame>,
    next_ticket: u64,
    /// Creation order of conversations: `list_conversations` is "oldest
    /// first", and the store breaks ties of its millisecond clock by the
    /// (random) id, which would make runs differ.
    conv_order: BTreeMap<ConversationId, usize>,
    /// Every append ever committed, with its place: the checker's record of
    /// what an ack may claim.
    pub committed: BTreeMap<MessageId, (ConversationId, Seq)>,
    /// Planted defect, if any.
    pub sabotage: Option<Sabotage>,
    sessions: BTreeMap<[u8; 32], (UserId, String)>,
    /// The next commit fails (a full disk, an I/O error): nothing of its
    /// batch is stored, and every send in it gets a retryable refusal.
    pub fail_next_commit: bool,
    /// The real server's push rule and its state (lost in a crash).
    rule: PushRule,
}

fn refused(id: MessageId, refusal: Refusal) -> ServerFrame {
    ServerFrame::Refused { id, refusal }
}

fn error(req: Option<u64>, code: ErrorCode, message: &str) -> ServerFrame {
    ServerFrame::Error {
        req,
        refusal: Refusal::permanent(code, message),
    }
}

fn failure(req: Option<u64>, e: &ServerError) -> ServerFrame {
    ServerFrame::Error {
        req,
        refusal: e.refusal(),
    }
}

/// The gateway's refusal for a write the store rejected.
fn rejection(code: ErrorCode) -> Refusal {
    Refusal::permanent(code, format!("rejected by the store: {code:?}"))
}

impl SimServer {
    /// A server with an empty in-memory store.
    pub fn new(limits: Limits) -> Result<SimServer, ServerError> {
        Ok(SimServer {
            store: SqliteStore::open_in_memory()?,
            limits: limits.normalized(),
            up: true,
            conns: BTreeMap::new(),
            queue: Vec::new(),
            resolved: BTreeMap::new(),
            next_ticket: 1,
            conv_order: BTreeMap::new(),
            committed: BTreeMap::new(),
            sabotage: None,
            sessions: BTreeMap::new(),
            fail_next_commit: false,
            rule: PushRule::new(),
        })
    }

    /// The real store, for setup and for the checker.
    pub fn store(&self) -> &dyn ServerStore {
        &self.store
    }

    /// Creates an account and one session per `tokens` entry (set-up, as
    /// `register` and `login` would).
    pub fn create_account(
        &mut self,
        username: &str,
        tokens: &[[u8; 32]],
    ) -> Result<UserId, ServerError> {
        let user = self.store.create_account(username, "not-a-real-hash")?;
        for (i, token) in tokens.iter().enumerate() {
            self.store
                .create_session(user, &format!("device {i}"), token)?;
            self.sessions.insert(*token, (user, username.to_owned()));
        }
        Ok(user)
    }

    /// Creates a conversation directly in the store (set-up).
    pub fn create_conversation(
        &mut self,
        title: &str,
        members: &[UserId],
    ) -> Result<ConversationInfo, ServerError> {
        let info = self.store.create_conversation(title, members)?;
        let n = self.conv_order.len();
        self.conv_order.insert(info.id, n);
        Ok(info)
    }

    /// Conversations in creation order.
    pub fn conversations(&self) -> Vec<ConversationId> {
        let mut v: Vec<_> = self.conv_order.iter().map(|(c, n)| (*n, *c)).collect();
        v.sort();
        v.into_iter().map(|(_, c)| c).collect()
    }

    /// Whether writes wait for a commit.
    pub fn has_queued(&self) -> bool {
        !self.queue.is_empty()
    }

    /// A `hello` with the session token `token` on connection `conn`.
    pub fn hello(&mut self, conn: ConnId, token: &[u8; 32], out: &mut Out) {
        let session = self
            .store
            .session_by_token_hash(token)
            .ok()
            .flatten()
            .map(|s| (s.user, s.username));
        let Some((user, username)) = session else {
            out.push((
                conn,
                error(None, ErrorCode::Unauthorized, "unknown session token"),
            ));
            return;
        };
        out.push((
            conn,
            ServerFrame::Welcome {
                version: PROTOCOL_VERSION,
                user,
                username: username.clone(),
                device: chatsync_protocol::DeviceId(uuid::Uuid::nil()),
                limits: self.limits.clone(),
                server_time: 0,
            },
        ));
        self.conns.insert(
            conn,
            Conn {
                user,
                username,
                slots: VecDeque::new(),
            },
        );
    }

    /// The server saw connection `conn` close: its pending answers are lost.
    pub fn detach(&mut self, conn: ConnId) {
        self.conns.remove(&conn);
    }

    /// Whether `conn` is attached.
    pub fn is_attached(&self, conn: ConnId) -> bool {
        self.conns.contains_key(&conn)
    }

    /// The process dies: queued writes, pending answers and connections are
    /// lost; the store keeps what was committed. Returns the connections
    /// that were open.
    pub fn crash(&mut self) -> Vec<ConnId> {
        self.up = false;
        self.queue.clear();
        self.resolved.clear();
        self.rule = PushRule::new();
        let conns = self.conns.keys().copied().collect();
        self.conns.clear();
        conns
    }

    /// The process starts again with `limits`.
    pub fn restart(&mut self, limits: Limits) {
        self.up = true;
        self.limits = limits.normalized();
    }

    /// Handles one frame of an authenticated connection.
    pub fn handle(&mut self, conn: ConnId, frame: ClientFrame, out: &mut Out) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let (user, username) = (c.user, c.username.clone());
        match frame {
            ClientFrame::Send {
                id,
                conversation,
                body,
                action,
            } => self.send(conn, user, username, id, conversation, body, action),
            ClientFrame::Received { conversation, seq } => {
                let op = WriteOp::Delivered {
                    conversation,
                    user,
                    seq,
                };
                self.mark(conn, user, username, conversation, op);
            }
            ClientFrame::Read { conversation, seq } => {
                let op = WriteOp::Read {
                    conversation,
                    user,
                    seq,
                };
                self.mark(conn, user, username, conversation, op);
            }
            ClientFrame::Sync {
                req,
                conversation,
                after,
                limit,
            } => self.slot(
                conn,
                Slot::Sync {
                    req,
                    conversation,
                    after,
                    limit,
                },
            ),
            ClientFrame::ListConversations { req } => self.slot(conn, Slot::List { req }),
            ClientFrame::CreateConversation {
                req,
                title,
                members,
            } => match check_conversation(&title, &members, &self.limits) {
                Err((code, message)) => {
                    self.slot(conn, Slot::Ready(error(Some(req), code, &message)))
                }
                Ok(()) => self.slot(
                    conn,
                    Slot::Create {
                        req,
                        title,
                        names: members,
                    },
                ),
            },
            ClientFrame::Ping { nonce } => {
                self.slot(conn, Slot::Ready(ServerFrame::Pong { nonce }))
            }
            // The syncer core never sends these on an authenticated
            // connection; the real gateway answers `hello` with an error.
            _ => self.slot(
                conn,
                Slot::Ready(error(None, ErrorCode::Malformed, "not modelled")),
            ),
        }
        self.flush(conn, out);
    }

    fn slot(&mut self, conn: ConnId, slot: Slot) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.slots.push_back(slot);
        }
    }

    fn membership(&self, conversation: ConversationId, user: UserId) -> Option<Refusal> {
        match self.store.members(conversation) {
            Ok(Some(m)) if m.contains(&user) => None,
            Ok(Some(_)) => Some(Refusal::permanent(
                ErrorCode::NotMember,
                "you are not a member of this conversation",
            )),
            Ok(None) => Some(Refusal::permanent(
                ErrorCode::UnknownConversation,
                "no such conversation",
            )),
            Err(e) => Some(e.refusal()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn send(
        &mut self,
        conn: ConnId,
        user: UserId,
        username: String,
        id: MessageId,
        conversation: ConversationId,
        body: String,
        action: Option<ActionRef>,
    ) {
        let refusal = self.membership(conversation, user).or_else(|| {
            check_send(&body, action.as_ref(), &self.limits)
                .err()
                .map(|(code, message)| Refusal::permanent(code, message))
        });
        if let Some(refusal) = refusal {
            // Dedup before refusing: a stored message is acknowledged.
            let stored = if self.sabotage == Some(Sabotage::NoDedupFirst) {
                None
            } else {
                self.store.find_sent(user, id).ok().flatten()
            };
            let frame = match stored {
                Some(a) => ServerFrame::Ack {
                    id,
                    conversation: a.conversation,
                    seq: a.seq,
                    server_ts: a.server_ts,
                },
                None => refused(id, refusal),
            };
            self.slot(conn, Slot::Ready(frame));
            return;
        }
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        if self.sabotage == Some(Sabotage::AckBeforeCommit) {
            let guess = match self.store.find_sent(user, id).ok().flatten() {
                Some(a) => a.seq,
                None => {
                    let last = self
                        .store
                        .marks(conversation)
                        .ok()
                        .flatten()
                        .map_or(Seq::ZERO, |(_, s)| s);
                    let queued = self
                        .queue
                        .iter()
                        .filter(|q| {
                            matches!(&q.op, WriteOp::Append { conversation: c, .. } if *c == conversation)
                        })
                        .count() as u64;
                    Seq(last.0 + queued + 1)
                }
            };
            self.resolved.insert(
                ticket,
                ServerFrame::Ack {
                    id,
                    conversation,
                    seq: guess,
                    server_ts: 0,
                },
            );
        }
        self.queue.push(Queued {
            op: WriteOp::Append {
                sender: user,
                id,
                conversation,
                body,
                action,
            },
            origin: conn,
            username,
            ticket: Some(ticket),
        });
        self.slot(conn, Slot::Commit(ticket));
    }

    fn mark(
        &mut self,
        conn: ConnId,
        user: UserId,
        username: String,
        conversation: ConversationId,
        op: WriteOp,
    ) {
        match self.membership(conversation, user) {
            // No answer on success; a moved mark is pushed after the commit.
            None => self.queue.push(Queued {
                op,
                origin: conn,
                username,
                ticket: None,
            }),
            Some(refusal) => {
                self.slot(conn, Slot::Ready(ServerFrame::Error { req: None, refusal }))
            }
        }
    }

    /// Commits every queued write in one `apply_batch` (one transaction),
    /// publishes pushes, then releases the answers, in order.
    pub fn commit(&mut self, out: &mut Out) {
        let batch = std::mem::take(&mut self.queue);
        if batch.is_empty() {
            return;
        }
        if std::mem::take(&mut self.fail_next_commit) {
            // Like the real committer: a failed batch is retried in place at
            // the next commit, with everything queued behind it waiting.
            let mut queue = batch;
            queue.append(&mut self.queue);
            self.queue = queue;
            return;
        }
        let ops: Vec<WriteOp> = batch.iter().map(|q| q.op.clone()).collect();
        let result = self.store.apply_batch(&ops);
        match result {
            Ok(outcomes) if outcomes.len() == ops.len() => {
                for (q, outcome) in batch.iter().zip(outcomes) {
                    self.publish(q, &outcome, out);
                    let Some(ticket) = q.ticket else { continue };
                    let WriteOp::Append { id, .. } = &q.op else {
                        continue;
                    };
                    let answer = match outcome {
                        WriteOutcome::Appended(a) => {
                            self.committed.insert(*id, (a.conversation, a.seq));
                            ServerFrame::Ack {
                                id: *id,
                                conversation: a.conversation,
                                seq: a.seq,
                                server_ts: a.server_ts,
                            }
                        }
                        WriteOutcome::Rejected(code) => refused(*id, rejection(code)),
                        WriteOutcome::Marks { .. } => refused(
                            *id,
                            Refusal::transient(ErrorCode::Internal, "mismatched outcome", None),
                        ),
                    };
                    self.resolved.entry(ticket).or_insert(answer);
                }
            }
            Ok(_) => self.fail_batch(&batch, &ServerError::Task("outcome count".into())),
            Err(e) => self.fail_batch(&batch, &e),
        }
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in conns {
            self.flush(conn, out);
        }
    }

    fn fail_batch(&mut self, batch: &[Queued], e: &ServerError) {
        for q in batch {
            if let (Some(ticket), WriteOp::Append { id, .. }) = (q.ticket, &q.op) {
                self.resolved.insert(ticket, refused(*id, e.refusal()));
            }
        }
    }

    /// The commit hook, with the real server's rule for what a commit
    /// pushes and to whom (`chatsync_server::push`): a new message to every
    /// member's connection but the sender's; a moved mark to the member's
    /// own connections and to the members whose lowest-of-the-others moved.
    fn publish(&mut self, q: &Queued, outcome: &WriteOutcome, out: &mut Out) {
        for push in self.rule.pushes(&self.store, &q.op, outcome, &q.username) {
            match push.to {
                Audience::Accounts(users) => self.push(&users, None, &push.frame, out),
                Audience::MembersButOrigin => {
                    if let Ok(Some(members)) = self.store.members(push.conversation) {
                        self.push(&members, Some(q.origin), &push.frame, out);
                    }
                }
            }
        }
    }

    fn push(&self, users: &[UserId], except: Option<ConnId>, frame: &ServerFrame, out: &mut Out) {
        for (id, c) in &self.conns {
            if Some(*id) != except && users.contains(&c.user) {
                out.push((*id, frame.clone()));
            }
        }
    }

    /// Sends the answers at the head of `conn`'s queue that are ready.
    fn flush(&mut self, conn: ConnId, out: &mut Out) {
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            let Some(slot) = c.slots.pop_front() else {
                return;
            };
            let user = c.user;
            let frame = match slot {
                Slot::Ready(f) => f,
                Slot::Commit(t) => match self.resolved.remove(&t) {
                    Some(f) => f,
                    None => {
                        c.slots.push_front(Slot::Commit(t));
                        return;
                    }
                },
                Slot::Sync {
                    req,
                    conversation,
                    after,
                    limit,
                } => self.sync(user, req, conversation, after, limit),
                Slot::List { req } => self.list(user, req),
                Slot::Create { req, title, names } => {
                    self.create(conn, user, req, &title, &names, out)
                }
            };
            out.push((conn, frame));
        }
    }

    fn sync(
        &self,
        user: UserId,
        req: u64,
        conversation: ConversationId,
        after: Seq,
        limit: u32,
    ) -> ServerFrame {
        if let Some(refusal) = self.membership(conversation, user) {
            return ServerFrame::Error {
                req: Some(req),
                refusal,
            };
        }
        match self
            .store
            .page(conversation, after, limit.min(self.limits.max_page))
        {
            Ok(Some(page)) => ServerFrame::Batch {
                req,
                conversation,
                messages: page.messages,
                members: page.members,
                last_seq: page.last_seq,
            },
            Ok(None) => error(
                Some(req),
                ErrorCode::UnknownConversation,
                "no such conversation",
            ),
            Err(e) => failure(Some(req), &e),
        }
    }

    fn list(&self, user: UserId, req: u64) -> ServerFrame {
        match self.store.conversations_of(user) {
            Ok(mut conversations) => {
                conversations.sort_by_key(|c| self.conv_order.get(&c.id).copied());
                ServerFrame::Conversations { req, conversations }
            }
            Err(e) => failure(Some(req), &e),
        }
    }

    fn create(
        &mut self,
        origin: ConnId,
        me: UserId,
        req: u64,
        title: &str,
        names: &[String],
        out: &mut Out,
    ) -> ServerFrame {
        let mut ids = vec![me];
        for name in names {
            match self.store.account_by_name(name) {
                Ok(Some(a)) => {
                    if !ids.contains(&a.id) {
                        ids.push(a.id);
                    }
                }
                Ok(None) => {
                    return error(Some(req), ErrorCode::UnknownUser, "no such account");
                }
                Err(e) => return failure(Some(req), &e),
            }
        }
        let info = match self.create_conversation(title, &ids) {
            Ok(info) => info,
            Err(e) => return failure(Some(req), &e),
        };
        let push = ServerFrame::Conversation {
            req: None,
            conversation: info.clone(),
        };
        self.push(&ids, Some(origin), &push, out);
        ServerFrame::Conversation {
            req: Some(req),
            conversation: info,
        }
    }
}
