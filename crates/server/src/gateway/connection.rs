//! One WebSocket connection: three cooperating parts.
//!
//! - The **reader** (this task) reads frames one at a time and handles them
//!   in order. It never waits for a commit: a send is checked, submitted to
//!   the committer, and its pending answer is pushed onto the reply queue.
//! - The **responder** task takes the reply queue in order and awaits each
//!   pending answer in turn, so answers leave in frame order even though
//!   many commits are in flight (pipelining).
//! - The **writer** task owns the socket's sink; it receives both the
//!   responder's answers and frames pushed by the fan-out hub, and flushes
//!   them in batches.
//!
//! The connection ends when the peer leaves, on a fatal error (an error
//! frame is queued and then a close frame), at idle or handshake timeout, at
//! server shutdown (pending answers are still delivered), or when the hub
//! drops it as a slow consumer (then everything is torn down at once).

use super::rate::SendGate;
use super::{AppState, TrackerGuard};
use crate::fanout::{Attachment, ConnId, Outbound};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use chatsync_protocol::{decode_client, encode, DeviceId, ErrorCode, Refusal, ServerFrame, UserId};
use futures_util::future::BoxFuture;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, Notify};

/// Answers that may be pending at once on one connection; when full the
/// reader stops reading, which pushes back on the client.
const PIPELINE_DEPTH: usize = 1024;
/// Frames waiting for the socket; a full queue marks a slow consumer.
const OUTBOUND_QUEUE: usize = 2048;
/// Frames written before one flush.
const WRITE_BATCH: usize = 128;
/// Malformed frames tolerated before the connection is closed.
const MAX_MALFORMED: u32 = 100;
/// How long pending answers may take to drain when a connection ends.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// WebSocket close codes (RFC 6455 §7.4.1).
pub(super) const CLOSE_NORMAL: u16 = 1000;
pub(super) const CLOSE_GOING_AWAY: u16 = 1001;
pub(super) const CLOSE_INVALID_DATA: u16 = 1007;
pub(super) const CLOSE_POLICY: u16 = 1008;
pub(super) const CLOSE_TOO_BIG: u16 = 1009;

/// One entry of the ordered reply queue.
pub(super) enum Reply {
    /// A frame known at once.
    Now(ServerFrame),
    /// A frame known later (a commit, a password hash, a read); `None`
    /// when there is nothing to say.
    Later(BoxFuture<'static, Option<ServerFrame>>),
    /// Close the connection after everything before it.
    Close(u16, &'static str),
    /// `welcome`: once it is in the outbound queue, the flag is raised and
    /// the hub starts offering pushes to this connection, so that no push
    /// ever overtakes it (nor the answers queued before it).
    Welcome(ServerFrame, Arc<AtomicBool>),
}

/// Whether to keep reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flow {
    Continue,
    Close,
}

/// The authenticated identity of a connection.
#[derive(Clone, Debug)]
pub(super) struct Authed {
    pub(super) user: UserId,
    pub(super) username: Arc<str>,
    pub(super) device: DeviceId,
    /// SHA-256 of the session token, to revoke it on `logout`.
    pub(super) token_hash: [u8; 32],
}

/// The reader's state.
pub(super) struct Conn {
    pub(super) id: ConnId,
    pub(super) state: Arc<AppState>,
    replies: mpsc::Sender<Reply>,
    pub(super) out: mpsc::Sender<Outbound>,
    pub(super) kick: Arc<Notify>,
    pub(super) auth: Option<Authed>,
    /// Registration in the hub; dropped with the connection.
    pub(super) attachment: Option<Attachment>,
    pub(super) gate: SendGate,
    malformed: u32,
    /// When the handshake timeout of this connection expires.
    handshake_deadline: tokio::time::Instant,
    /// Set when the client stopped reading its answers for too long: the
    /// connection is then torn down without draining (see [`Conn::push`]).
    stalled: AtomicBool,
}

/// Runs a connection to its end.
pub(super) async fn run(socket: WebSocket, state: Arc<AppState>, _guard: TrackerGuard) {
    let id = state.next_conn_id();
    tracing::debug!(conn = id.0, "connection opened");
    let (sink, mut stream) = socket.split();
    let (out_tx, out_rx) = mpsc::channel(OUTBOUND_QUEUE);
    let mut writer = tokio::spawn(write_loop(sink, out_rx));
    let (reply_tx, reply_rx) = mpsc::channel(PIPELINE_DEPTH);
    let mut responder = tokio::spawn(respond_loop(reply_rx, out_tx.clone()));
    let kick = Arc::new(Notify::new());
    let limits = &state.config.limits;
    let gate = SendGate::new(limits.rate_per_sec, limits.rate_burst, Instant::now());
    let mut conn = Conn {
        id,
        state: state.clone(),
        replies: reply_tx,
        out: out_tx,
        kick: kick.clone(),
        auth: None,
        attachment: None,
        gate,
        malformed: 0,
        handshake_deadline: tokio::time::Instant::now() + state.config.handshake_timeout,
        stalled: AtomicBool::new(false),
    };
    let kicked = tokio::select! {
        () = conn.read_loop(&mut stream) => false,
        () = kick.notified() => true,
    };
    // A client that does not read gets nothing more: no drain.
    let kicked = kicked || conn.stalled.load(Ordering::Relaxed);
    // Leaves the hub and closes the reply queue: the responder finishes what
    // is pending, then the writer sends it and stops.
    drop(conn);
    if kicked {
        responder.abort();
        writer.abort();
    } else {
        if tokio::time::timeout(DRAIN_TIMEOUT, &mut responder)
            .await
            .is_err()
        {
            responder.abort();
        }
        if tokio::time::timeout(DRAIN_TIMEOUT, &mut writer)
            .await
            .is_err()
        {
            writer.abort();
        }
    }
    tracing::debug!(conn = id.0, kicked, "connection closed");
}

impl Conn {
    async fn read_loop(&mut self, stream: &mut SplitStream<WebSocket>) {
        let mut shutdown = self.state.shutdown.clone();
        let (handshake, idle) = (
            self.state.config.handshake_timeout,
            self.state.config.idle_timeout,
        );
        let handshake_deadline = self.handshake_deadline;
        loop {
            let deadline = if self.auth.is_some() {
                tokio::time::Instant::now() + idle
            } else {
                handshake_deadline
            };
            let next = tokio::select! {
                biased;
                () = stopping(&mut shutdown) => {
                    let refusal = Refusal::transient(
                        ErrorCode::Unavailable,
                        "the server is shutting down",
                        Some(1000),
                    );
                    self.fatal(refusal, CLOSE_GOING_AWAY, "server shutting down").await;
                    return;
                }
                next = tokio::time::timeout_at(deadline, stream.next()) => next,
            };
            let flow = match next {
                Err(_) if self.auth.is_none() => {
                    let why = format!("no hello within {} ms", handshake.as_millis());
                    let refusal = Refusal::permanent(ErrorCode::NotAuthenticated, why);
                    self.fatal(refusal, CLOSE_POLICY, "handshake timeout").await
                }
                Err(_) => {
                    tracing::debug!(conn = self.id.0, "closing idle connection");
                    self.push(Reply::Close(CLOSE_NORMAL, "idle timeout")).await;
                    Flow::Close
                }
                Ok(None) | Ok(Some(Ok(Message::Close(_)))) => Flow::Close,
                Ok(Some(Err(e))) => self.read_error(e).await,
                Ok(Some(Ok(Message::Text(text)))) => match decode_client(&text) {
                    Ok(frame) => self.handle(frame).await,
                    Err(e) => self.malformed(e.to_string()).await,
                },
                Ok(Some(Ok(Message::Binary(_)))) => {
                    self.malformed("binary messages are not part of the protocol".into())
                        .await
                }
                // Control frames: tungstenite answers pings itself.
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => Flow::Continue,
            };
            if flow == Flow::Close {
                return;
            }
        }
    }

    async fn read_error(&mut self, e: axum::Error) -> Flow {
        let text = e.to_string();
        // axum hides tungstenite's error type; its capacity error is the
        // only one that says "too long" / "Space limit exceeded".
        if text.contains("too long") || text.contains("Space limit") {
            let max = self.state.config.limits.max_frame_bytes;
            tracing::warn!(
                conn = self.id.0,
                max_frame_bytes = max,
                "closing connection: client sent a frame larger than max_frame_bytes ({text})"
            );
            let refusal = Refusal::permanent(
                ErrorCode::FrameTooLarge,
                format!("a WebSocket message exceeded the {max}-byte limit"),
            );
            return self.fatal(refusal, CLOSE_TOO_BIG, "frame too large").await;
        }
        // A text message that is not UTF-8 (tungstenite's `Utf8` error):
        // the client is told why, with the close code RFC 6455 assigns.
        if text.contains("UTF-8") {
            tracing::debug!(
                conn = self.id.0,
                "closing connection: text message not UTF-8"
            );
            let refusal =
                Refusal::permanent(ErrorCode::Malformed, "a text message is not valid UTF-8");
            return self
                .fatal(refusal, CLOSE_INVALID_DATA, "invalid UTF-8")
                .await;
        }
        tracing::debug!(conn = self.id.0, error = %text, "read error; closing connection");
        Flow::Close
    }

    async fn malformed(&mut self, why: String) -> Flow {
        self.malformed += 1;
        let refusal = Refusal::permanent(ErrorCode::Malformed, why);
        if self.malformed > MAX_MALFORMED {
            tracing::warn!(
                conn = self.id.0,
                "closing connection: too many malformed frames"
            );
            return self
                .fatal(refusal, CLOSE_POLICY, "too many malformed frames")
                .await;
        }
        self.reply(ServerFrame::Error { req: None, refusal }).await
    }

    /// Queues a reply; `Flow::Close` if the connection is already gone.
    ///
    /// When the reply queue is full (the client does not read its answers)
    /// this waits, which stops the reader: backpressure. The wait is
    /// bounded, so that a client that writes without ever reading cannot
    /// hold a connection forever and defeat both timeouts: before `hello`
    /// it ends at the handshake deadline, after it when the queue has not
    /// moved for the idle timeout. The connection is then torn down at once
    /// (`Flow::Close`, nothing drained).
    pub(super) async fn push(&self, reply: Reply) -> Flow {
        let deadline = match self.auth {
            None => self.handshake_deadline,
            Some(_) => tokio::time::Instant::now() + self.state.config.idle_timeout,
        };
        match tokio::time::timeout_at(deadline, self.replies.send(reply)).await {
            Ok(Ok(())) => Flow::Continue,
            Ok(Err(_)) => Flow::Close,
            Err(_) => {
                tracing::warn!(
                    conn = self.id.0,
                    "closing connection: the client does not read its answers"
                );
                self.stalled.store(true, Ordering::Relaxed);
                Flow::Close
            }
        }
    }

    /// Queues a frame known now.
    pub(super) async fn reply(&self, frame: ServerFrame) -> Flow {
        self.push(Reply::Now(frame)).await
    }

    /// Queues a frame that a future will produce, in order.
    pub(super) async fn later<F>(&self, fut: F) -> Flow
    where
        F: std::future::Future<Output = Option<ServerFrame>> + Send + 'static,
    {
        self.push(Reply::Later(Box::pin(fut))).await
    }

    /// Queues an error and a close: the connection ends after them.
    pub(super) async fn fatal(&self, refusal: Refusal, code: u16, reason: &'static str) -> Flow {
        self.reply(ServerFrame::Error { req: None, refusal }).await;
        self.push(Reply::Close(code, reason)).await;
        Flow::Close
    }
}

/// Resolves once shutdown is requested (or its sender is gone).
async fn stopping(rx: &mut watch::Receiver<bool>) {
    // The borrow returned by wait_for is dropped right here, not held.
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn respond_loop(mut replies: mpsc::Receiver<Reply>, out: mpsc::Sender<Outbound>) {
    while let Some(reply) = replies.recv().await {
        let item = match reply {
            Reply::Now(frame) => Outbound::Frame(Utf8Bytes::from(encode(&frame))),
            Reply::Later(fut) => match fut.await {
                Some(frame) => Outbound::Frame(Utf8Bytes::from(encode(&frame))),
                None => continue,
            },
            Reply::Close(code, reason) => Outbound::Close(code, reason),
            Reply::Welcome(frame, ready) => {
                let item = Outbound::Frame(Utf8Bytes::from(encode(&frame)));
                if out.send(item).await.is_err() {
                    return;
                }
                ready.store(true, Ordering::Release);
                continue;
            }
        };
        if out.send(item).await.is_err() {
            return;
        }
    }
}

async fn write_loop(mut sink: SplitSink<WebSocket, Message>, mut rx: mpsc::Receiver<Outbound>) {
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        let mut written = 0;
        while let Some(item) = next.take() {
            match item {
                Outbound::Frame(text) => {
                    if sink.feed(Message::Text(text)).await.is_err() {
                        return;
                    }
                }
                Outbound::Close(code, reason) => {
                    let frame = CloseFrame {
                        code,
                        reason: Utf8Bytes::from(reason),
                    };
                    let _ = sink.send(Message::Close(Some(frame))).await;
                    return;
                }
            }
            written += 1;
            // Everything already queued goes out with one flush.
            if written < WRITE_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
    // Every sender is gone without an explicit close: close normally.
    let frame = CloseFrame {
        code: CLOSE_NORMAL,
        reason: Utf8Bytes::from_static(""),
    };
    let _ = sink.send(Message::Close(Some(frame))).await;
}
