//! A simulated device: a real [`Syncer`] over a [`MemoryStore`], driven as
//! the calling contract of `chatsync_client::core` says.
//!
//! After every input the outputs are drained; every store write of the
//! drain is applied in one batch (one transaction), before the frames of
//! the drain are handed to the link. A crash drops the syncer — everything
//! in memory — and keeps the store; the restart rebuilds the syncer from
//! [`ClientStore::load`], as the real driver does from SQLite.

use crate::server::{ConnId, Sabotage};
use chatsync_client::core::{Config, Event, Identity, Output, Syncer};
use chatsync_client::store::{ClientStore, MemoryStore, StoreOp, META_LIMITS};
use chatsync_client::{Item, Status};
use chatsync_protocol::{ClientFrame, Limits, MessageId};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// A status change of one of this device's rows, as storage shows it.
#[derive(Clone, Debug)]
pub struct StatusChange {
    /// The row.
    pub id: MessageId,
    /// Before the batch (`None`: no such row).
    pub before: Option<Status>,
    /// After the batch (`None`: removed).
    pub after: Option<Item>,
}

/// What one drain produced, for the world.
#[derive(Debug, Default)]
pub struct Drained {
    /// Frames to transmit, in order.
    pub frames: Vec<ClientFrame>,
    /// The syncer asked for a connection.
    pub connect: bool,
    /// Rows whose status changed in storage.
    pub changes: Vec<StatusChange>,
    /// The session was rejected (never expected).
    pub rejected: bool,
}

/// One device.
pub struct SimClient {
    /// Index of the account in the world.
    pub user: usize,
    /// Who it is logged in as.
    pub identity: Identity,
    /// Session token (its hash, as the server stores it).
    pub token: [u8; 32],
    /// Client storage; survives crashes.
    pub store: MemoryStore,
    /// The syncer; `None` while the device is down.
    pub syncer: Option<Syncer>,
    /// Configuration of the next syncer (its seed changes on each restart).
    pub config: Config,
    /// The connection being opened or open.
    pub conn: Option<ConnId>,
    /// Whether the welcome arrived on `conn`.
    pub online: bool,
    /// When the timer is armed for.
    pub timer: Option<Instant>,
    /// Every row id ever written to storage (the store has no listing of
    /// action rows; the checker enumerates through this).
    pub ids: BTreeSet<MessageId>,
    /// Status of each row as last seen in storage.
    pub statuses: BTreeMap<MessageId, Status>,
    /// Planted defect, if any.
    pub sabotage: Option<Sabotage>,
}

impl SimClient {
    /// A device with empty storage; the syncer starts at once.
    pub fn new(
        now: Instant,
        user: usize,
        identity: Identity,
        token: [u8; 32],
        config: Config,
    ) -> Self {
        let mut c = SimClient {
            user,
            identity,
            token,
            store: MemoryStore::new(),
            syncer: None,
            config,
            conn: None,
            online: false,
            timer: None,
            ids: BTreeSet::new(),
            statuses: BTreeMap::new(),
            sabotage: None,
        };
        c.start(now);
        c
    }

    /// Starts (or restarts) the syncer from storage.
    pub fn start(&mut self, now: Instant) {
        let state = self.store.load().unwrap_or_default();
        let limits = self
            .store
            .meta(META_LIMITS)
            .ok()
            .flatten()
            .and_then(|json| decode_limits(&json))
            .unwrap_or_default();
        self.syncer = Some(Syncer::new(
            now,
            self.identity.clone(),
            limits,
            self.config.clone(),
            state,
        ));
        self.config.seed = self
            .config
            .seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1);
    }

    /// The device dies: memory is lost, storage stays.
    pub fn crash(&mut self) {
        self.syncer = None;
        self.conn = None;
        self.online = false;
        self.timer = None;
    }

    /// Drains the syncer's outputs and applies them per the calling
    /// contract.
    pub fn drain(&mut self) -> Drained {
        let mut d = Drained::default();
        let Some(syncer) = self.syncer.as_mut() else {
            return d;
        };
        let mut ops = Vec::new();
        while let Some(output) = syncer.poll_output() {
            match output {
                Output::Store(op) => ops.push(op),
                Output::Transmit(frame) => d.frames.push(frame),
                Output::Connect => d.connect = true,
                Output::Event(Event::SessionRejected(_)) => d.rejected = true,
                // Subscribers and app events: nothing to check here; the
                // store is read directly.
                Output::Timeline { .. } | Output::Touched { .. } | Output::Event(_) => {}
            }
        }
        if self.sabotage == Some(Sabotage::VolatileSend) {
            ops.retain(|op| !matches!(op, StoreOp::InsertOutgoing { .. }));
        }
        if self.sabotage == Some(Sabotage::ReceiveWithoutStore) {
            ops.retain(|op| match op {
                StoreOp::UpsertConfirmed(item) => {
                    item.own || item.seq.is_some_and(|s| s.0 % 7 != 3)
                }
                _ => true,
            });
        }
        let mut touched = BTreeSet::new();
        for op in &ops {
            match op {
                StoreOp::InsertOutgoing { item, .. } | StoreOp::UpsertConfirmed(item) => {
                    self.ids.insert(item.id);
                    touched.insert(item.id);
                }
                StoreOp::SetStatus { id, .. }
                | StoreOp::SetFailed { id, .. }
                | StoreOp::Requeue { id, .. }
                | StoreOp::Remove(id)
                | StoreOp::UpdateOutgoing { id, .. } => {
                    touched.insert(*id);
                }
                StoreOp::MarkTransmitted(_)
                | StoreOp::UpsertConversation { .. }
                | StoreOp::SetMarks { .. }
                | StoreOp::SetCursor { .. }
                | StoreOp::SetMeta { .. } => {}
            }
        }
        if !ops.is_empty() {
            // One batch, one transaction, before anything is transmitted.
            if let Err(e) = self.store.apply(&ops) {
                panic!("the in-memory store cannot fail: {e}");
            }
        }
        for id in touched {
            let after = self.store.item(id).ok().flatten();
            let before = self.statuses.get(&id).copied();
            let now = after.as_ref().map(|i| i.status);
            if before != now {
                match now {
                    Some(s) => self.statuses.insert(id, s),
                    None => self.statuses.remove(&id),
                };
                d.changes.push(StatusChange { id, before, after });
            }
        }
        d
    }
}

/// Decodes the limits the driver stores as JSON in the meta table.
fn decode_limits(json: &str) -> Option<Limits> {
    serde_json::from_str(json).ok()
}
