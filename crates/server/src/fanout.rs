//! In-process fan-out: who is online, and pushing frames to them.
//!
//! Each authenticated connection registers its outbound queue under its
//! user. Publishing never waits: a frame is offered to each queue with
//! `try_send`; a connection whose queue is full is a slow consumer and is
//! disconnected (it catches up from its cursor when it reconnects), so one
//! stuck client can never hold back everyone else.

use axum::extract::ws::Utf8Bytes;
use chatsync_protocol::{DeviceId, UserId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, Notify};

/// Identifies one WebSocket connection for the life of the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId(pub u64);

/// What a connection's writer task sends on its socket.
#[derive(Clone, Debug)]
pub enum Outbound {
    /// A frame, already encoded (shared by every recipient of a fan-out).
    Frame(Utf8Bytes),
    /// Send a close frame with this code and reason, then stop.
    Close(u16, &'static str),
}

/// A connection's registration in the hub.
#[derive(Clone, Debug)]
pub struct Subscriber {
    /// The connection.
    pub conn: ConnId,
    /// Its outbound queue.
    pub tx: mpsc::Sender<Outbound>,
    /// Notified when the hub drops it for being slow, or because its
    /// session was revoked.
    pub kick: Arc<Notify>,
    /// The session (device) it authenticated with.
    pub device: DeviceId,
    /// Raised once the connection's `welcome` is queued; until then it is
    /// offered no push, so no push can precede its `welcome`. What it
    /// misses meanwhile was committed before the client could read the
    /// `welcome`, so the catch-up that follows it returns it.
    pub ready: Arc<AtomicBool>,
}

/// The account already has as many connections as allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyConnections;

/// Online connections by user.
pub struct Hub {
    users: Mutex<HashMap<UserId, Vec<Subscriber>>>,
    max_per_user: usize,
}

/// Keeps a connection registered; dropping it unregisters.
pub struct Attachment {
    hub: Arc<Hub>,
    user: UserId,
    conn: ConnId,
}

impl Hub {
    /// An empty hub allowing `max_per_user` connections per account.
    pub fn new(max_per_user: usize) -> Arc<Self> {
        Arc::new(Hub {
            users: Mutex::new(HashMap::new()),
            max_per_user,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, Vec<Subscriber>>> {
        // The map stays consistent across a panic (each change is a single
        // push or retain), so a poisoned lock is still usable.
        self.users.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a connection of `user`.
    pub fn attach(
        self: &Arc<Self>,
        user: UserId,
        sub: Subscriber,
    ) -> Result<Attachment, TooManyConnections> {
        let mut users = self.lock();
        let subs = users.entry(user).or_default();
        // Entries whose queue closed are leftovers; do not count them.
        subs.retain(|s| !s.tx.is_closed());
        if subs.len() >= self.max_per_user {
            return Err(TooManyConnections);
        }
        let conn = sub.conn;
        subs.push(sub);
        Ok(Attachment {
            hub: self.clone(),
            user,
            conn,
        })
    }

    /// Number of connections `user` has open.
    pub fn online(&self, user: UserId) -> usize {
        self.lock().get(&user).map_or(0, Vec::len)
    }

    /// Offers `frame` to every connection of every user in `users`, except
    /// `except`. Never waits.
    pub fn publish(&self, users: &[UserId], except: Option<ConnId>, frame: &Utf8Bytes) {
        let mut map = self.lock();
        for user in users {
            let Some(subs) = map.get_mut(user) else {
                continue;
            };
            subs.retain(|sub| {
                if Some(sub.conn) == except || !sub.ready.load(Ordering::Acquire) {
                    return true;
                }
                match sub.tx.try_send(Outbound::Frame(frame.clone())) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        tracing::warn!(
                            conn = sub.conn.0,
                            "disconnecting slow consumer: outbound queue full"
                        );
                        sub.kick.notify_one();
                        false
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                }
            });
            if subs.is_empty() {
                map.remove(user);
            }
        }
    }

    /// Drops every connection of `user` authenticated with session
    /// `device`, except `except` (a revoked session: logout). They end at
    /// once, like slow consumers.
    pub fn kick_session(&self, user: UserId, device: DeviceId, except: ConnId) {
        let mut map = self.lock();
        if let Some(subs) = map.get_mut(&user) {
            subs.retain(|sub| {
                if sub.device != device || sub.conn == except {
                    return true;
                }
                tracing::info!(conn = sub.conn.0, "disconnecting: its session was revoked");
                sub.kick.notify_one();
                false
            });
            if subs.is_empty() {
                map.remove(&user);
            }
        }
    }

    fn detach(&self, user: UserId, conn: ConnId) {
        let mut map = self.lock();
        if let Some(subs) = map.get_mut(&user) {
            subs.retain(|s| s.conn != conn);
            if subs.is_empty() {
                map.remove(&user);
            }
        }
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        self.hub.detach(self.user, self.conn);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sub(conn: u64, cap: usize) -> (Subscriber, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(cap);
        (
            Subscriber {
                conn: ConnId(conn),
                tx,
                kick: Arc::new(Notify::new()),
                device: DeviceId(uuid::Uuid::from_u128(u128::from(conn))),
                ready: Arc::new(AtomicBool::new(true)),
            },
            rx,
        )
    }

    #[tokio::test]
    async fn publish_skips_origin_and_kicks_slow_consumers() {
        let hub = Hub::new(2);
        let user = UserId::new();
        let (s1, mut r1) = sub(1, 8);
        let (s2, _r2) = sub(2, 1);
        let kick2 = s2.kick.clone();
        let _a1 = hub.attach(user, s1).unwrap();
        let _a2 = hub.attach(user, s2).unwrap();
        let (s3, _r3) = sub(3, 1);
        assert!(hub.attach(user, s3).is_err());

        let frame = Utf8Bytes::from("x");
        hub.publish(&[user], Some(ConnId(1)), &frame);
        assert!(r1.try_recv().is_err());
        hub.publish(&[user], None, &frame);
        assert!(matches!(r1.try_recv(), Ok(Outbound::Frame(_))));
        // Connection 2's queue (capacity 1) is now full: next publish kicks it.
        hub.publish(&[user], None, &frame);
        tokio::time::timeout(std::time::Duration::from_secs(1), kick2.notified())
            .await
            .unwrap();
        assert_eq!(hub.online(user), 1);
        drop(_a1);
        assert_eq!(hub.online(user), 0);
    }

    #[tokio::test]
    async fn kick_session_drops_only_that_sessions_other_connections() {
        let hub = Hub::new(4);
        let user = UserId::new();
        let (s1, _r1) = sub(1, 8);
        let (mut s2, _r2) = sub(2, 8);
        let (s3, _r3) = sub(3, 8);
        s2.device = s1.device;
        let (session, kick2, kick3) = (s1.device, s2.kick.clone(), s3.kick.clone());
        let _a = [
            hub.attach(user, s1).unwrap(),
            hub.attach(user, s2).unwrap(),
            hub.attach(user, s3).unwrap(),
        ];
        hub.kick_session(user, session, ConnId(1));
        tokio::time::timeout(std::time::Duration::from_secs(1), kick2.notified())
            .await
            .unwrap();
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), kick3.notified())
                .await
                .is_err()
        );
        assert_eq!(hub.online(user), 2);
    }
}
