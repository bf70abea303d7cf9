//! What each client frame does. Handlers only see typed frames; answers go
//! through the connection's ordered reply queue.

use super::connection::{Authed, Conn, Flow, Reply, CLOSE_NORMAL, CLOSE_POLICY};
use super::members::Membership;
use super::CommitCtx;
use crate::fanout::{Subscriber, TooManyConnections};
use crate::store::{WriteOp, WriteOutcome};
use crate::{auth, ServerError};
use axum::extract::ws::Utf8Bytes;
use chatsync_protocol::{
    check_conversation, encode, ActionRef, ClientFrame, ConversationId, ErrorCode, MessageId,
    Refusal, Seq, ServerFrame, UserId, PROTOCOL_VERSION,
};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

/// An error frame answering `req`, logging internal failures (the client
/// only learns that something went wrong).
fn failure(req: Option<u64>, e: &ServerError) -> ServerFrame {
    let refusal = e.refusal();
    if refusal.code == ErrorCode::Internal {
        tracing::error!(error = %e, "request failed");
    }
    ServerFrame::Error { req, refusal }
}

fn error(req: Option<u64>, code: ErrorCode, message: impl Into<String>) -> ServerFrame {
    ServerFrame::Error {
        req,
        refusal: Refusal::permanent(code, message),
    }
}

fn refused(id: MessageId, refusal: Refusal) -> ServerFrame {
    ServerFrame::Refused { id, refusal }
}

/// The refusal for a send the store could not apply.
fn rejection(code: ErrorCode) -> Refusal {
    let message = match code {
        ErrorCode::IdConflict => {
            "this message id is already used by a message of another account; \
             a new message needs a new id"
        }
        ErrorCode::UnknownConversation => "no such conversation",
        ErrorCode::NotMember => "you are not a member of this conversation",
        ErrorCode::NotFound => {
            "the target of this action is not a message of this conversation \
             (unknown id, another conversation's message, or itself an action)"
        }
        ErrorCode::NotAuthor => "only the author of a message may edit or delete it",
        ErrorCode::Gone => "the target of this action was deleted",
        _ => "the message was not stored",
    };
    Refusal::permanent(code, message)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Which mark a report moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mark {
    /// `received`: stored on a device.
    Delivered,
    /// `read`: read by the account.
    Read,
}

/// The `req` of a request frame, so even a refusal can be correlated.
fn request_id(frame: &ClientFrame) -> Option<u64> {
    match frame {
        ClientFrame::Register { req, .. }
        | ClientFrame::Login { req, .. }
        | ClientFrame::Sync { req, .. }
        | ClientFrame::CreateConversation { req, .. }
        | ClientFrame::ListConversations { req }
        | ClientFrame::Logout { req } => Some(*req),
        ClientFrame::Hello { .. }
        | ClientFrame::Send { .. }
        | ClientFrame::Read { .. }
        | ClientFrame::Received { .. }
        | ClientFrame::Ping { .. } => None,
    }
}

impl Conn {
    /// Handles one frame, in arrival order.
    pub(super) async fn handle(&mut self, frame: ClientFrame) -> Flow {
        match frame {
            ClientFrame::Ping { nonce } => self.reply(ServerFrame::Pong { nonce }).await,
            ClientFrame::Register {
                req,
                username,
                password,
            } => {
                let store = self.state.store.clone();
                // Lazy: runs when the responder reaches it, so a pipelined
                // login after it sees the account.
                self.later(async move {
                    Some(match auth::register(store, username, password).await {
                        Ok(user) => ServerFrame::Registered { req, user },
                        Err(e) => failure(Some(req), &e),
                    })
                })
                .await
            }
            ClientFrame::Login {
                req,
                username,
                password,
                device_name,
            } => {
                let store = self.state.store.clone();
                self.later(async move {
                    Some(
                        match auth::login(store, username, password, device_name).await {
                            Ok(ok) => ServerFrame::LoggedIn {
                                req,
                                user: ok.user,
                                device: ok.device,
                                token: ok.token,
                            },
                            Err(e) => failure(Some(req), &e),
                        },
                    )
                })
                .await
            }
            ClientFrame::Hello { version, token } => self.hello(version, token).await,
            frame => match self.auth.clone() {
                None => {
                    let req = request_id(&frame);
                    self.reply(error(
                        req,
                        ErrorCode::NotAuthenticated,
                        "send hello with a session token first",
                    ))
                    .await
                }
                Some(me) => self.handle_authenticated(me, frame).await,
            },
        }
    }

    async fn handle_authenticated(&mut self, me: Authed, frame: ClientFrame) -> Flow {
        match frame {
            ClientFrame::Send {
                id,
                conversation,
                body,
                action,
            } => self.send(me, id, conversation, body, action).await,
            ClientFrame::Read { conversation, seq } => {
                self.mark(me, conversation, seq, Mark::Read).await
            }
            ClientFrame::Received { conversation, seq } => {
                self.mark(me, conversation, seq, Mark::Delivered).await
            }
            ClientFrame::Sync {
                req,
                conversation,
                after,
                limit,
            } => self.sync(me, req, conversation, after, limit).await,
            ClientFrame::CreateConversation {
                req,
                title,
                members,
            } => self.create_conversation(me, req, title, members).await,
            ClientFrame::ListConversations { req } => {
                let store = self.state.store.clone();
                self.later(async move {
                    let listed =
                        tokio::task::spawn_blocking(move || store.conversations_of(me.user)).await;
                    Some(match listed.map_err(ServerError::from).and_then(|r| r) {
                        Ok(conversations) => ServerFrame::Conversations { req, conversations },
                        Err(e) => failure(Some(req), &e),
                    })
                })
                .await
            }
            ClientFrame::Logout { req } => self.logout(me, req).await,
            // Handled before authentication is looked at.
            ClientFrame::Ping { .. }
            | ClientFrame::Register { .. }
            | ClientFrame::Login { .. }
            | ClientFrame::Hello { .. } => Flow::Continue,
        }
    }

    async fn hello(&mut self, version: u32, token: String) -> Flow {
        if self.auth.is_some() {
            return self
                .reply(error(
                    None,
                    ErrorCode::Malformed,
                    "this connection is already authenticated",
                ))
                .await;
        }
        if version != PROTOCOL_VERSION {
            let refusal = Refusal::permanent(
                ErrorCode::UnsupportedVersion,
                format!("this server speaks protocol version {PROTOCOL_VERSION}, not {version}"),
            );
            return self
                .fatal(refusal, CLOSE_POLICY, "unsupported protocol version")
                .await;
        }
        let ttl = self.state.config.session_ttl;
        let session = match auth::authenticate(self.state.store.clone(), token, ttl).await {
            Ok(Some(session)) => session,
            Ok(None) => {
                tracing::info!(conn = self.id.0, "hello with an unknown token");
                let refusal = Refusal::permanent(
                    ErrorCode::Unauthorized,
                    "unknown, expired or revoked session token",
                );
                return self.fatal(refusal, CLOSE_POLICY, "unauthorized").await;
            }
            Err(e) => {
                tracing::error!(conn = self.id.0, error = %e, "authentication failed");
                return self
                    .fatal(e.refusal(), CLOSE_POLICY, "authentication failed")
                    .await;
            }
        };
        let ready = Arc::new(AtomicBool::new(false));
        let sub = Subscriber {
            conn: self.id,
            tx: self.out.clone(),
            kick: self.kick.clone(),
            device: session.device,
            ready: ready.clone(),
        };
        match self.state.hub.attach(session.user, sub) {
            Ok(attachment) => self.attachment = Some(attachment),
            Err(TooManyConnections) => {
                let max = self.state.config.max_connections_per_user;
                let refusal = Refusal::transient(
                    ErrorCode::Unavailable,
                    format!("this account already has the maximum of {max} open connections"),
                    Some(5000),
                );
                return self
                    .fatal(refusal, CLOSE_POLICY, "too many connections")
                    .await;
            }
        }
        let me = Authed {
            user: session.user,
            username: Arc::from(session.username.as_str()),
            device: session.device,
            token_hash: session.token_hash,
        };
        tracing::debug!(conn = self.id.0, user = %me.user, device = %me.device, "authenticated");
        let welcome = ServerFrame::Welcome {
            version: PROTOCOL_VERSION,
            user: me.user,
            username: session.username,
            device: me.device,
            limits: self.state.config.limits.clone(),
            server_time: now_ms(),
        };
        self.auth = Some(me);
        self.push(Reply::Welcome(welcome, ready)).await
    }

    /// `logout`: revokes the connection's session, so its token never
    /// authenticates again, drops the session's other connections, answers
    /// `logged_out` and closes this connection (1000, "logged out"). Frames
    /// after it are not read. If the revocation fails the answer is a
    /// retryable `error` and the connection closes all the same.
    async fn logout(&mut self, me: Authed, req: u64) -> Flow {
        let state = self.state.clone();
        let conn = self.id;
        self.later(async move {
            Some(
                match auth::logout(state.store.clone(), me.token_hash).await {
                    Ok(()) => {
                        tracing::info!(conn = conn.0, device = %me.device, "session revoked");
                        state.hub.kick_session(me.user, me.device, conn);
                        ServerFrame::LoggedOut { req }
                    }
                    Err(e) => failure(Some(req), &e),
                },
            )
        })
        .await;
        self.push(Reply::Close(CLOSE_NORMAL, "logged out")).await;
        Flow::Close
    }

    /// Checks a send in the documented order (membership, body, rate),
    /// submits it to the committer and queues its pending answer without
    /// waiting for the commit. A send that would be refused is first looked
    /// up: if this account already stored this id, the answer is the
    /// original ack, never a refusal. An action's target is validated by
    /// the store, inside the commit (so it sees every earlier write,
    /// including its target sent just before on this connection).
    async fn send(
        &mut self,
        me: Authed,
        id: MessageId,
        conversation: ConversationId,
        body: String,
        action: Option<ActionRef>,
    ) -> Flow {
        crate::stage::stamp("server.read", id);
        if let Some(refusal) = self
            .check_send(&me, id, conversation, &body, action.as_ref())
            .await
        {
            return match self.stored_ack(me.user, id).await {
                Some(ack) => {
                    // It cannot be overtaken any more, and the client will
                    // not resend it: it must not block the connection.
                    self.gate.release(id);
                    self.reply(ack).await
                }
                None => self.reply(refused(id, refusal)).await,
            };
        }
        let state = &self.state;
        let op = WriteOp::Append {
            sender: me.user,
            id,
            conversation,
            body,
            action,
        };
        let ctx = CommitCtx {
            origin: self.id,
            username: me.username,
        };
        let pending = match state.committer.submit(op, ctx).await {
            Ok(pending) => pending,
            Err(e) => return self.reply(refused(id, e.refusal())).await,
        };
        self.later(async move {
            let outcome = pending.await;
            crate::stage::stamp("server.reply", id);
            let frame = match outcome {
                Ok(Ok(WriteOutcome::Appended(a))) => ServerFrame::Ack {
                    id,
                    conversation: a.conversation,
                    seq: a.seq,
                    server_ts: a.server_ts,
                },
                Ok(Ok(WriteOutcome::Rejected(code))) => refused(id, rejection(code)),
                Ok(Ok(WriteOutcome::Marks { .. })) => {
                    tracing::error!("committer answered a send with a marks outcome");
                    refused(id, ServerError::Task("mismatched outcome".into()).refusal())
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "commit failed");
                    refused(id, e.refusal())
                }
                Err(_) => refused(id, ServerError::CommitterStopped.refusal()),
            };
            Some(frame)
        })
        .await
    }

    /// Why a send must be refused, checked in the documented order:
    /// membership, body (by the rules of what it carries: message, edit,
    /// delete or reaction), then rate (only a send that passed the others
    /// takes a token or can block the connection); `None` if it may go on.
    async fn check_send(
        &mut self,
        me: &Authed,
        id: MessageId,
        conversation: ConversationId,
        body: &str,
        action: Option<&ActionRef>,
    ) -> Option<Refusal> {
        let state = &self.state;
        match state
            .members
            .check(&state.store, conversation, me.user)
            .await
        {
            Ok(Membership::Member) => {}
            Ok(Membership::NotMember) => {
                return Some(Refusal::permanent(
                    ErrorCode::NotMember,
                    "you are not a member of this conversation",
                ));
            }
            Ok(Membership::Unknown) => {
                return Some(Refusal::permanent(
                    ErrorCode::UnknownConversation,
                    "no such conversation",
                ));
            }
            Err(e) => {
                tracing::error!(error = %e, "membership check failed");
                return Some(e.refusal());
            }
        }
        if let Err((code, message)) =
            chatsync_protocol::check_send(body, action, &state.config.limits)
        {
            return Some(Refusal::permanent(code, message));
        }
        if let Err(wait_ms) = self.gate.admit(id, Instant::now()) {
            return Some(Refusal::transient(
                ErrorCode::RateLimited,
                "too many messages; resend this one first, after the wait",
                Some(wait_ms),
            ));
        }
        None
    }

    /// The original ack of the message `user` stored under `id`, if any.
    /// Only called on the refusal path; a failed read just means the
    /// refusal stands.
    async fn stored_ack(&self, user: UserId, id: MessageId) -> Option<ServerFrame> {
        let store = self.state.store.clone();
        let found = tokio::task::spawn_blocking(move || store.find_sent(user, id)).await;
        match found.map_err(ServerError::from).and_then(|r| r) {
            Ok(found) => found.map(|a| ServerFrame::Ack {
                id,
                conversation: a.conversation,
                seq: a.seq,
                server_ts: a.server_ts,
            }),
            Err(e) => {
                tracing::warn!(error = %e, "dedup lookup before a refusal failed");
                None
            }
        }
    }

    /// A `received` or `read` report of the connection's own account:
    /// checks membership, then submits the write without awaiting it. No
    /// answer on success; a moved mark is pushed to every member. A
    /// non-member or an unknown conversation gets an `error` without `req`.
    async fn mark(
        &mut self,
        me: Authed,
        conversation: ConversationId,
        seq: Seq,
        mark: Mark,
    ) -> Flow {
        let user = me.user;
        let op = match mark {
            Mark::Delivered => WriteOp::Delivered {
                conversation,
                user,
                seq,
            },
            Mark::Read => WriteOp::Read {
                conversation,
                user,
                seq,
            },
        };
        let state = &self.state;
        match state
            .members
            .check(&state.store, conversation, me.user)
            .await
        {
            Ok(Membership::Member) => {
                let ctx = CommitCtx {
                    origin: self.id,
                    username: me.username,
                };
                // No answer: a moved mark is published to every member by
                // the committer's hook. If the server is stopping the report
                // is lost, and the client repeats it on its next connection.
                if let Err(e) = state.committer.submit_detached(op, ctx).await {
                    tracing::debug!(error = %e, "mark report dropped");
                }
                Flow::Continue
            }
            Ok(Membership::NotMember) => {
                self.reply(error(
                    None,
                    ErrorCode::NotMember,
                    "you are not a member of this conversation",
                ))
                .await
            }
            Ok(Membership::Unknown) => {
                self.reply(error(
                    None,
                    ErrorCode::UnknownConversation,
                    "no such conversation",
                ))
                .await
            }
            Err(e) => self.reply(failure(None, &e)).await,
        }
    }

    async fn sync(
        &mut self,
        me: Authed,
        req: u64,
        conversation: ConversationId,
        after: Seq,
        limit: u32,
    ) -> Flow {
        let (store, members) = (self.state.store.clone(), self.state.members.clone());
        let limit = limit.min(self.state.config.limits.max_page);
        // Lazy, so a sync pipelined after sends sees them committed.
        self.later(async move {
            match members.check(&store, conversation, me.user).await {
                Ok(Membership::Member) => {}
                Ok(Membership::NotMember) => {
                    return Some(error(
                        Some(req),
                        ErrorCode::NotMember,
                        "you are not a member of this conversation",
                    ))
                }
                Ok(Membership::Unknown) => {
                    return Some(error(
                        Some(req),
                        ErrorCode::UnknownConversation,
                        "no such conversation",
                    ))
                }
                Err(e) => return Some(failure(Some(req), &e)),
            }
            let read =
                tokio::task::spawn_blocking(move || store.page(conversation, after, limit)).await;
            Some(match read.map_err(ServerError::from).and_then(|r| r) {
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
            })
        })
        .await
    }

    async fn create_conversation(
        &mut self,
        me: Authed,
        req: u64,
        title: String,
        names: Vec<String>,
    ) -> Flow {
        // Checked before any account lookup: the member list bounds the
        // reads one frame can cause.
        if let Err((code, message)) = check_conversation(&title, &names, &self.state.config.limits)
        {
            return self.reply(error(Some(req), code, message)).await;
        }
        let state = self.state.clone();
        let origin = self.id;
        self.later(async move {
            let store = state.store.clone();
            let resolved = tokio::task::spawn_blocking(move || {
                let mut ids: Vec<UserId> = vec![me.user];
                for name in &names {
                    match store.account_by_name(name)? {
                        Some(account) => {
                            if !ids.contains(&account.id) {
                                ids.push(account.id);
                            }
                        }
                        None => return Ok(Err(name.clone())),
                    }
                }
                let info = store.create_conversation(&title, &ids)?;
                Ok::<_, ServerError>(Ok((info, ids)))
            })
            .await;
            let (info, ids) = match resolved.map_err(ServerError::from).and_then(|r| r) {
                Ok(Ok(created)) => created,
                Ok(Err(unknown)) => {
                    return Some(error(
                        Some(req),
                        ErrorCode::UnknownUser,
                        format!("no account is named {unknown:?}"),
                    ))
                }
                Err(e) => return Some(failure(Some(req), &e)),
            };
            state.members.insert(info.id, ids.clone().into());
            let push = ServerFrame::Conversation {
                req: None,
                conversation: info.clone(),
            };
            state
                .hub
                .publish(&ids, Some(origin), &Utf8Bytes::from(encode(&push)));
            Some(ServerFrame::Conversation {
                req: Some(req),
                conversation: info,
            })
        })
        .await
    }
}
