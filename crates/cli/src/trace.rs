//! Records when each message reached each status, on every device.

use chatsync_client::{Status, TimelineChange};
use chatsync_protocol::MessageId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What happened to one message, as seen by its sender.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    /// `send` called.
    pub started: Option<Instant>,
    /// `send` returned (durable in client storage).
    pub durable: Option<Instant>,
    /// The subscription showed it as Sending.
    pub visible: Option<Instant>,
    /// In-Flight seen.
    pub in_flight: Option<Instant>,
    /// Success seen.
    pub success: Option<Instant>,
    /// Every status the sender's subscription reported, in order.
    pub statuses: Vec<Status>,
    /// Failure reason, if any.
    pub failed: Option<String>,
    /// Sender's account name and the text, once seen.
    pub label: Option<(String, String)>,
}

/// Shared between the replay tasks and the subscription tasks.
#[derive(Clone, Default)]
pub struct Recorder {
    inner: Arc<Mutex<HashMap<MessageId, Trace>>>,
}

impl Recorder {
    /// Runs `f` on the trace of `id`.
    pub fn with<R>(&self, id: MessageId, f: impl FnOnce(&mut Trace) -> R) -> R {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(map.entry(id).or_default())
    }

    /// Applies a change seen by the sender's own subscription.
    pub fn own_change(&self, change: &TimelineChange) -> Option<(MessageId, Status)> {
        let now = Instant::now();
        let (id, status, failure) = match change {
            TimelineChange::Upserted(item) if item.own => {
                (item.id, item.status, item.failure.clone())
            }
            TimelineChange::StatusChanged {
                id,
                status,
                failure,
            } => (*id, *status, failure.clone()),
            _ => return None,
        };
        let label = match change {
            TimelineChange::Upserted(item) => Some((item.sender_name.clone(), item.body.clone())),
            _ => None,
        };
        self.with(id, |t| {
            if t.label.is_none() {
                t.label = label;
            }
            if t.statuses.last() == Some(&status) {
                return None;
            }
            t.statuses.push(status);
            if status == Status::InFlight {
                tracing::trace!(target: crate::stages::TARGET, stage = "app.in_flight", id = %id);
            }
            let slot = match status {
                Status::Sending => &mut t.visible,
                Status::InFlight => &mut t.in_flight,
                Status::Success | Status::Read => {
                    // Sending → Success directly also passes In-Flight's bar.
                    t.in_flight.get_or_insert(now);
                    &mut t.success
                }
                Status::Failed => {
                    t.failed = failure.map(|f| f.message);
                    return Some((id, status));
                }
            };
            slot.get_or_insert(now);
            Some((id, status))
        })
    }

    /// Runs `f` on every trace, without copying them: for a progress poll
    /// during a measurement, which must not hold up the subscription tasks
    /// (they wait for the same lock to timestamp a status).
    pub fn read<R>(&self, f: impl FnOnce(&HashMap<MessageId, Trace>) -> R) -> R {
        f(&self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// A copy of every trace.
    pub fn snapshot(&self) -> HashMap<MessageId, Trace> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
