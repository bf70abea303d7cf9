//! What a subscription shows: the statuses each message goes through,
//! checked against the server's store as they are seen.

use crate::support::{Probe, User, IDLE, TIMEOUT};
use chatsync_client::{Item, Status, TimelineChange};
use chatsync_protocol::{ConversationId, MessageId, Seq, UserId, WireMessage};
use std::collections::HashMap;
use tokio::sync::mpsc;

/// Everything a subscription showed, per message: the sequence of distinct
/// statuses, in the order they were shown. With a probe, every own message
/// shown In-Flight must already be in the server's store, and every one
/// shown Success must also be marked delivered to every other member.
pub struct StatusLog {
    conv: ConversationId,
    changes: mpsc::UnboundedReceiver<TimelineChange>,
    history: HashMap<MessageId, Vec<Status>>,
    items: HashMap<MessageId, Item>,
    removed: Vec<MessageId>,
    probe: Option<(Probe, UserId)>,
}

impl StatusLog {
    /// Subscribes to `user`'s timeline of `conv`.
    pub async fn watch(user: &User, conv: ConversationId) -> StatusLog {
        let timeline = user.client.subscribe(conv, 1000).await.unwrap();
        let mut log = StatusLog {
            conv,
            changes: timeline.changes,
            history: HashMap::new(),
            items: HashMap::new(),
            removed: Vec::new(),
            probe: None,
        };
        for item in timeline.snapshot {
            log.items.insert(item.id, item);
        }
        log
    }

    /// Checks every confirmed status against the server's store as it is seen.
    pub fn with_probe(mut self, probe: &Probe, me: UserId) -> StatusLog {
        self.probe = Some((probe.clone(), me));
        self
    }

    /// The statuses shown for `id`, in order, without repeats.
    pub fn history(&self, id: MessageId) -> Vec<Status> {
        self.history.get(&id).cloned().unwrap_or_default()
    }

    /// The last status shown for `id`.
    pub fn status(&self, id: MessageId) -> Option<Status> {
        self.history.get(&id).and_then(|h| h.last().copied())
    }

    /// The latest version of the item, as the subscription showed it.
    pub fn item(&self, id: MessageId) -> Option<&Item> {
        self.items.get(&id)
    }

    pub fn removed(&self) -> &[MessageId] {
        &self.removed
    }

    /// Number of changes received so far, for "nothing changed" checks.
    pub fn seen(&self) -> usize {
        self.history.values().map(Vec::len).sum::<usize>() + self.removed.len()
    }

    /// Applies every change already received.
    pub fn drain(&mut self) {
        while let Ok(change) = self.changes.try_recv() {
            self.apply(change);
        }
    }

    /// Lets `IDLE` pass, then applies what arrived meanwhile.
    pub async fn idle(&mut self) {
        tokio::time::sleep(IDLE).await;
        self.drain();
    }

    /// Waits until `done` holds; fails with `what` after [`TIMEOUT`].
    pub async fn wait_for(&mut self, what: &str, mut done: impl FnMut(&StatusLog) -> bool) {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            self.drain();
            if done(self) {
                return;
            }
            match tokio::time::timeout_at(deadline, self.changes.recv()).await {
                Ok(Some(change)) => self.apply(change),
                Ok(None) => panic!("the timeline closed while waiting for {what}"),
                Err(_) => panic!(
                    "timed out after {TIMEOUT:?} waiting for {what}; statuses seen: {:?}",
                    self.history
                ),
            }
        }
    }

    /// Waits until every id in `ids` shows `status`.
    pub async fn wait_all(&mut self, ids: &[MessageId], status: Status) {
        let what = format!("{} messages to become {status:?}", ids.len());
        self.wait_for(&what, |log| {
            ids.iter().all(|id| log.status(*id) == Some(status))
        })
        .await;
    }

    fn apply(&mut self, change: TimelineChange) {
        // `if let` rather than `match`: kinds of change added later (for
        // edits, reactions...) carry no status and are ignored here.
        if let TimelineChange::Upserted(item) = change {
            let (id, status) = (item.id, item.status);
            self.items.insert(id, item);
            self.record(id, status);
        } else if let TimelineChange::StatusChanged {
            id,
            status,
            failure,
            ..
        } = change
        {
            if let Some(item) = self.items.get_mut(&id) {
                item.status = status;
                item.failure = failure;
            }
            self.record(id, status);
        } else if let TimelineChange::Removed(id) = change {
            self.items.remove(&id);
            self.removed.push(id);
        }
    }

    fn record(&mut self, id: MessageId, status: Status) {
        let history = self.history.entry(id).or_default();
        if history.last() == Some(&status) {
            return;
        }
        history.push(status);
        let own = self.items.get(&id).is_some_and(|i| i.own);
        let Some((probe, me)) = &self.probe else {
            return;
        };
        if !own || !status.is_confirmed() {
            return;
        }
        let Some(seq) = probe.seq_of(self.conv, id) else {
            panic!("message {id} was shown {status:?} but the server has not stored it");
        };
        if status == Status::Success {
            assert!(
                probe.delivered_to_others(self.conv, *me, seq),
                "message {id} (seq {seq}) was shown Success before every recipient stored it"
            );
        }
    }
}

/// Asserts a sender's history: starts Sending, only moves forward, never
/// Failed, ends Success (In-Flight may be skipped, as the design allows).
pub fn assert_delivered_path(id: MessageId, history: &[Status]) {
    let ok = history == [Status::Sending, Status::InFlight, Status::Success]
        || history == [Status::Sending, Status::Success];
    assert!(
        ok,
        "message {id}: expected Sending → In-Flight → Success (or Sending → Success), saw {history:?}"
    );
}

/// The conversation's `(id, seq, body)` as a device stores it.
pub fn view(items: &[Item]) -> Vec<(MessageId, Option<Seq>, String)> {
    items
        .iter()
        .map(|i| (i.id, i.seq, i.body.clone()))
        .collect()
}

/// The conversation's `(id, seq, body)` as the server stores it.
pub fn server_view(messages: &[WireMessage]) -> Vec<(MessageId, Option<Seq>, String)> {
    messages
        .iter()
        .map(|m| (m.id, Some(m.seq), m.body.clone()))
        .collect()
}
