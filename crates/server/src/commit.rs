//! The group committer: one thread owns every write of messages and marks.
//!
//! Writers submit a [`WriteOp`] and get a oneshot for its outcome. The thread
//! takes everything queued (up to [`MAX_BATCH`]), applies it with ONE
//! [`ServerStore::apply_batch`] call — one transaction, one fsync — and only
//! then lets each submitter be answered. Under load many messages share one
//! fsync, which is where the server's throughput comes from; under no load a
//! single message is committed at once, with no added wait.
//!
//! Under load the committer thread does storage only. Each committed batch
//! goes, in order, to a second thread (the fan-out thread) that runs the
//! `on_commit` hook for each write and then answers its submitter, while
//! the committer already applies the next batch. When nothing waits to be
//! committed and the fan-out thread has nothing left to do, the committer
//! answers the batch itself: the hand-off would only add a thread wake-up
//! to the latency of a lone message, and would buy no overlap. Either way
//! batches are answered one at a time, in commit order, so the pushes
//! keep commit order and each write's pushes leave before its answer; no
//! answer leaves before its batch is durable.
//!
//! The channel is FIFO and the batch is applied in order, so the order of
//! submission is the order of sequence numbers. A batch whose commit fails
//! is retried in place; if it keeps failing, the committer refuses every
//! later write too, so a failure can never let later writes overtake it. A
//! connection that submits its sends one after another therefore gets its
//! messages stored in that order, without waiting for each commit.

use crate::store::{ServerStore, WriteOp, WriteOutcome};
use crate::ServerError;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Most writes committed in one transaction.
pub const MAX_BATCH: usize = 1024;

/// Waits before each new attempt at a batch whose commit failed (about 3.5 s
/// in all): enough for a transient I/O error or a full disk being freed.
const RETRY_DELAYS: [Duration; 5] = [
    Duration::from_millis(10),
    Duration::from_millis(50),
    Duration::from_millis(200),
    Duration::from_millis(1000),
    Duration::from_millis(2000),
];

/// Submissions waiting for the thread; submitters wait (backpressure) when full.
const QUEUE: usize = 8192;

/// Committed batches waiting for the fan-out thread; the committer waits
/// when it is this far ahead.
const FANOUT_QUEUE: usize = 4;

/// What a submitter eventually learns.
pub type CommitResult = Result<WriteOutcome, ServerError>;

enum Msg<C> {
    Write {
        op: WriteOp,
        ctx: C,
        reply: Option<oneshot::Sender<CommitResult>>,
    },
    Stop,
}

/// Handle to the committer thread. `C` is caller context carried with each
/// write to the `on_commit` hook (the gateway uses it to fan out).
pub struct Committer<C> {
    tx: mpsc::Sender<Msg<C>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl<C: Send + 'static> Committer<C> {
    /// Starts the committer thread and its fan-out thread. `on_commit` runs
    /// for every write, in commit order, after the batch is durable and
    /// right before its submitter is answered: on the fan-out thread while
    /// the committer applies the next batch, or on the committer thread
    /// when there is no next batch to apply. It must not block (the
    /// gateway only does non-blocking channel sends there).
    pub fn start<F>(store: Arc<dyn ServerStore>, on_commit: F) -> Result<Self, ServerError>
    where
        F: FnMut(&WriteOp, &WriteOutcome, &C) + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel(FANOUT_QUEUE);
        let (spare_tx, spare_rx) = std::sync::mpsc::channel();
        let answerer = Arc::new(Answerer {
            hook: Mutex::new(on_commit),
            handed_off: AtomicUsize::new(0),
        });
        let fanout = {
            let answerer = answerer.clone();
            std::thread::Builder::new()
                .name("chatsync-fanout".into())
                .spawn(move || fan_out(&done_rx, &spare_tx, &answerer))?
        };
        let thread = std::thread::Builder::new()
            .name("chatsync-committer".into())
            .spawn(move || {
                run(store, rx, &done_tx, &spare_rx, &answerer);
                // Everything committed is answered before the thread ends.
                drop(done_tx);
                if fanout.join().is_err() {
                    tracing::error!("the committer's fan-out thread panicked");
                }
            })?;
        Ok(Committer {
            tx,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues a write; the returned receiver yields its outcome once the
    /// batch containing it is committed. Waits only if the queue is full.
    pub async fn submit(
        &self,
        op: WriteOp,
        ctx: C,
    ) -> Result<oneshot::Receiver<CommitResult>, ServerError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Write {
                op,
                ctx,
                reply: Some(reply),
            })
            .await
            .map_err(|_| ServerError::CommitterStopped)?;
        Ok(rx)
    }

    /// Queues a write whose outcome nobody awaits (the hook still runs).
    pub async fn submit_detached(&self, op: WriteOp, ctx: C) -> Result<(), ServerError> {
        self.tx
            .send(Msg::Write {
                op,
                ctx,
                reply: None,
            })
            .await
            .map_err(|_| ServerError::CommitterStopped)
    }

    /// Commits everything submitted so far, refuses later submissions, and
    /// waits for the thread to end.
    pub async fn stop(&self) -> Result<(), ServerError> {
        // If the thread is already gone the send fails; joining still works.
        let _ = self.tx.send(Msg::Stop).await;
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = handle {
            tokio::task::spawn_blocking(move || handle.join())
                .await?
                .map_err(|_| ServerError::Task("the committer thread panicked".into()))?;
        }
        Ok(())
    }
}

/// A submitter's context and where to send its outcome.
type Waiter<C> = (C, Option<oneshot::Sender<CommitResult>>);

/// Runs the hook and answers the submitters of committed batches, on
/// whichever thread answers a batch.
struct Answerer<F> {
    /// Only one thread answers at a time (see `handed_off`); the lock is
    /// never contended, it only makes the hook shareable.
    hook: Mutex<F>,
    /// Batches sent to the fan-out thread and not fully answered yet. The
    /// committer answers a batch itself only when this is 0: every earlier
    /// batch is answered then, and the fan-out thread waits for the next.
    handed_off: AtomicUsize,
}

impl<F> Answerer<F> {
    fn hook(&self) -> MutexGuard<'_, F> {
        // A hook that panicked ends its thread; the other one goes on.
        self.hook.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A batch handed from the committer thread to the fan-out thread.
struct Done<C> {
    ops: Vec<WriteOp>,
    waiters: Vec<Waiter<C>>,
    /// One outcome per op, or why none of them was stored.
    result: Result<Vec<WriteOutcome>, String>,
}

/// Vectors of an answered batch, to be reused for the next one.
type Spare<C> = (Vec<WriteOp>, Vec<Waiter<C>>);

/// The committer thread: batches, applies, and hands each batch, in
/// order, to the fan-out thread, or answers it itself when nothing else
/// is waiting (see the module docs). The vectors of a batch answered by
/// the fan-out thread come back through `spare` to be reused.
fn run<C, F>(
    store: Arc<dyn ServerStore>,
    mut rx: mpsc::Receiver<Msg<C>>,
    done: &SyncSender<Done<C>>,
    spare: &Receiver<Spare<C>>,
    answerer: &Answerer<F>,
) where
    F: FnMut(&WriteOp, &WriteOutcome, &C),
{
    let mut reuse = None;
    let mut poisoned = false;
    // After Stop the channel is closed: blocking_recv still yields what was
    // queued before, then None, so nothing submitted is dropped.
    while let Some(first) = rx.blocking_recv() {
        let (mut ops, mut waiters) = reuse
            .take()
            .or_else(|| spare.try_recv().ok())
            .unwrap_or_else(|| (Vec::with_capacity(MAX_BATCH), Vec::with_capacity(MAX_BATCH)));
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Write { op, ctx, reply } => {
                    ops.push(op);
                    waiters.push((ctx, reply));
                }
                Msg::Stop => rx.close(),
            }
            if ops.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if ops.is_empty() {
            continue;
        }
        crate::stage::stamp_all("server.commit", &ops);
        let result = if poisoned {
            Err("the store failed earlier; restart the server".to_owned())
        } else {
            // A failed batch is retried in place: writes queued behind it
            // wait rather than overtake it, which would reorder a
            // connection's sends.
            let result = with_retries(&RETRY_DELAYS, std::thread::sleep, || {
                store.apply_batch(&ops)
            });
            if result.is_err() {
                // Still failing: accept nothing more rather than commit
                // later writes before these (a resend of the refused ones
                // would land after them). Every later write is refused as
                // unavailable.
                poisoned = true;
            }
            match result {
                Ok(outcomes) if outcomes.len() == ops.len() => Ok(outcomes),
                Ok(outcomes) => {
                    tracing::error!(
                        ops = ops.len(),
                        outcomes = outcomes.len(),
                        "store returned the wrong number of outcomes"
                    );
                    Err("store returned the wrong number of outcomes".to_owned())
                }
                Err(e) => {
                    tracing::error!(ops = ops.len(), error = %e, "batch commit failed");
                    Err(e.to_string())
                }
            }
        };
        crate::stage::stamp_all("server.durable", &ops);
        let batch = Done {
            ops,
            waiters,
            result,
        };
        // Acquire: pairs with the fan-out thread's release once a batch is
        // answered, so 0 means every earlier batch is answered.
        if rx.is_empty() && answerer.handed_off.load(Ordering::Acquire) == 0 {
            reuse = Some(answer(answerer, batch));
            continue;
        }
        answerer.handed_off.fetch_add(1, Ordering::AcqRel);
        if done.send(batch).is_err() {
            // The fan-out thread is gone (its hook panicked): the batch's
            // submitters see the committer as stopped, and so does
            // everyone after them.
            tracing::error!("the committer's fan-out thread is gone; stopping");
            return;
        }
    }
    tracing::debug!("committer stopped");
}

/// The fan-out thread: answers the batches handed to it, in commit order.
fn fan_out<C, F>(done: &Receiver<Done<C>>, spare: &Sender<Spare<C>>, answerer: &Answerer<F>)
where
    F: FnMut(&WriteOp, &WriteOutcome, &C),
{
    for batch in done {
        let vectors = answer(answerer, batch);
        // Release: everything this batch's answering did happens before the
        // committer sees the count drop.
        answerer.handed_off.fetch_sub(1, Ordering::AcqRel);
        // The committer may have ended already; then the vectors just go.
        let _ = spare.send(vectors);
    }
}

/// Runs the hook for each write of a batch and then answers its
/// submitter, so the pushes of a write leave before its answer, and every
/// push of a batch before any push of the next. Returns the emptied
/// vectors.
fn answer<C, F>(answerer: &Answerer<F>, batch: Done<C>) -> Spare<C>
where
    F: FnMut(&WriteOp, &WriteOutcome, &C),
{
    let Done {
        mut ops,
        mut waiters,
        result,
    } = batch;
    match result {
        Ok(outcomes) => {
            let mut on_commit = answerer.hook();
            for ((op, outcome), (ctx, reply)) in ops.iter().zip(&outcomes).zip(waiters.drain(..)) {
                (*on_commit)(op, outcome, &ctx);
                if let WriteOp::Append { id, .. } = op {
                    crate::stage::stamp("server.answered", *id);
                }
                if let Some(reply) = reply {
                    // The submitter may be gone (connection closed); the
                    // write stands and a resend will be deduplicated.
                    let _ = reply.send(Ok(*outcome));
                }
            }
        }
        Err(why) => fail_all(&mut waiters, &why),
    }
    ops.clear();
    waiters.clear();
    (ops, waiters)
}

/// Runs `attempt` until it succeeds, sleeping `delays` between attempts;
/// returns the last result.
fn with_retries<T>(
    delays: &[Duration],
    mut sleep: impl FnMut(Duration),
    mut attempt: impl FnMut() -> Result<T, ServerError>,
) -> Result<T, ServerError> {
    let mut result = attempt();
    for &delay in delays {
        match &result {
            Ok(_) => break,
            Err(e) => tracing::warn!(error = %e, "batch commit failed; retrying in {delay:?}"),
        }
        sleep(delay);
        result = attempt();
    }
    result
}

fn fail_all<C>(waiters: &mut Vec<Waiter<C>>, why: &str) {
    for (_, reply) in waiters.drain(..) {
        if let Some(reply) = reply {
            let _ = reply.send(Err(ServerError::BatchFailed(why.to_owned())));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::SqliteStore;
    use chatsync_protocol::{MessageId, Seq};

    #[test]
    fn a_failing_commit_is_retried_in_place_then_given_up() {
        let delays = [Duration::from_millis(1), Duration::from_millis(2)];
        let mut slept = Vec::new();
        let mut calls = 0;
        let r = with_retries(
            &delays,
            |d| slept.push(d),
            || {
                calls += 1;
                if calls < 3 {
                    Err(ServerError::BatchFailed("disk".into()))
                } else {
                    Ok(calls)
                }
            },
        );
        assert_eq!(r.unwrap(), 3, "third attempt succeeds");
        assert_eq!(slept, delays);
        let mut calls = 0;
        let r: Result<(), _> = with_retries(
            &delays,
            |_| {},
            || {
                calls += 1;
                Err(ServerError::BatchFailed("disk".into()))
            },
        );
        assert!(r.is_err());
        assert_eq!(calls, 3, "one attempt plus one per delay, then it gives up");
    }

    #[tokio::test]
    async fn submissions_are_committed_in_order_and_hook_sees_each() {
        let (store, a, c) = one_member_conversation();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        let committer = Committer::start(store.clone(), move |_op, outcome, ctx: &u32| {
            if let WriteOutcome::Appended(ap) = outcome {
                seen2.lock().unwrap().push((*ctx, ap.seq));
            }
        })
        .unwrap();
        let mut pending = Vec::new();
        for i in 0..100u32 {
            let op = WriteOp::Append {
                sender: a,
                id: MessageId::new(),
                conversation: c,
                body: i.to_string(),
                action: None,
            };
            pending.push(committer.submit(op, i).await.unwrap());
        }
        for (i, rx) in pending.into_iter().enumerate() {
            match rx.await.unwrap().unwrap() {
                WriteOutcome::Appended(ap) => assert_eq!(ap.seq, Seq(i as u64 + 1)),
                other => panic!("{other:?}"),
            }
        }
        committer.stop().await.unwrap();
        assert_eq!(seen.lock().unwrap().len(), 100);
        let late = WriteOp::Delivered {
            conversation: c,
            user: a,
            seq: Seq(1),
        };
        assert!(matches!(
            committer.submit(late, 0).await,
            Err(ServerError::CommitterStopped)
        ));
    }

    /// An in-memory store with account `a` alone in conversation `t`.
    fn one_member_conversation() -> (
        Arc<SqliteStore>,
        chatsync_protocol::UserId,
        chatsync_protocol::ConversationId,
    ) {
        let store = Arc::new(SqliteStore::open_in_memory().unwrap());
        let a = store.create_account("a", "h").unwrap();
        let c = store.create_conversation("t", &[a]).unwrap().id;
        (store, a, c)
    }

    fn append(a: chatsync_protocol::UserId, c: chatsync_protocol::ConversationId) -> WriteOp {
        WriteOp::Append {
            sender: a,
            id: MessageId::new(),
            conversation: c,
            body: "x".into(),
            action: None,
        }
    }

    #[tokio::test]
    async fn the_hook_runs_in_commit_order_before_each_answer() {
        let (store, a, c) = one_member_conversation();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        let committer = Committer::start(store.clone(), move |op, _outcome, ctx: &u32| {
            let kind = matches!(op, WriteOp::Append { .. });
            seen2.lock().unwrap().push((*ctx, kind));
        })
        .unwrap();
        let mut pending = Vec::new();
        for i in 0..200u32 {
            if i % 10 == 9 {
                let mark = WriteOp::Read {
                    conversation: c,
                    user: a,
                    seq: Seq(u64::from(i)),
                };
                committer.submit_detached(mark, i).await.unwrap();
                continue;
            }
            pending.push((i, committer.submit(append(a, c), i).await.unwrap()));
        }
        for (i, rx) in pending {
            assert!(rx.await.unwrap().is_ok());
            // The hook of this write, and of every write before it, ran
            // before its answer.
            let seen = seen.lock().unwrap();
            assert!(seen.len() > i as usize);
            assert_eq!(seen[i as usize].0, i);
        }
        committer.stop().await.unwrap();
        let seen = seen.lock().unwrap();
        let order: Vec<u32> = seen.iter().map(|s| s.0).collect();
        assert_eq!(order, (0..200).collect::<Vec<_>>(), "commit order");
        assert_eq!(seen.iter().filter(|s| !s.1).count(), 20);
    }

    #[tokio::test]
    async fn a_lone_batch_is_answered_at_once_a_busy_one_by_the_fan_out_thread() {
        let (store, a, c) = one_member_conversation();
        let threads = Arc::new(Mutex::new(Vec::new()));
        let threads2 = threads.clone();
        let committer = Committer::start(store.clone(), move |_op, _outcome, ctx: &usize| {
            let name = std::thread::current().name().unwrap_or("").to_owned();
            threads2.lock().unwrap().push((*ctx, name));
            if *ctx == 0 {
                // Holds the first answer while more writes queue up.
                std::thread::sleep(Duration::from_millis(300));
            }
        })
        .unwrap();
        // Nothing else queued, the fan-out thread idle: the committer
        // answers it itself, without a hand-off.
        let first = committer.submit(append(a, c), 0).await.unwrap();
        while threads.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // More than one batch holds arrives meanwhile: when its first
        // batch is committed the queue is not empty, so the fan-out thread
        // answers it while the committer goes on with the rest.
        let n = MAX_BATCH + 200;
        let mut pending = Vec::new();
        for i in 1..=n {
            pending.push(committer.submit(append(a, c), i).await.unwrap());
        }
        assert!(first.await.unwrap().is_ok());
        for rx in pending {
            assert!(rx.await.unwrap().is_ok());
        }
        committer.stop().await.unwrap();
        let threads = threads.lock().unwrap();
        let order: Vec<usize> = threads.iter().map(|t| t.0).collect();
        assert_eq!(order, (0..=n).collect::<Vec<_>>(), "commit order");
        assert_eq!(threads[0].1, "chatsync-committer");
        assert_eq!(threads[1].1, "chatsync-fanout");
        assert!(threads
            .iter()
            .all(|t| t.1 == "chatsync-committer" || t.1 == "chatsync-fanout"));
    }
}
