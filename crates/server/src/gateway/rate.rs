//! Per-connection send rate limit that never reorders a sender's messages.
//!
//! A plain token bucket would let a client that pipelines sends have message
//! X refused for rate and the following message Y accepted, so Y would get
//! an earlier seq than X's resend. To keep invariant 3 (a device's messages
//! are stored in send order), once X is refused for rate every later send
//! with another id is refused too, until X itself comes back and is
//! accepted. A client that resends its unconfirmed messages in their
//! original order (as the design requires) therefore never sees a reorder.
//! The state is per connection: a reconnect starts afresh.
//!
//! The block does not outlive a client that gave up on X: it expires when X
//! has not been resent within its `retry_after` plus [`BLOCK_GRACE`],
//! counted from X's latest refusal. A resend of X that is refused again
//! restarts that clock; refusals of other ids do not.
//!
//! A send whose id turns out to be stored already is answered with its
//! original ack instead of a refusal (the handler looks it up); if that id
//! was the one blocking the connection, [`SendGate::release`] lifts the
//! block, since a stored message can no longer be overtaken.

use chatsync_protocol::MessageId;
use std::time::{Duration, Instant};

/// How long past its `retry_after` a blocking id has to be resent before the
/// block lapses.
pub const BLOCK_GRACE: Duration = Duration::from_secs(5);

/// The connection is blocked on `id` until it is accepted or `until`.
#[derive(Debug, Clone, Copy)]
struct Block {
    id: MessageId,
    until: Instant,
}

/// Token bucket plus the ordering rule. See the module docs.
#[derive(Debug)]
pub struct SendGate {
    rate_per_sec: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
    blocked_on: Option<Block>,
}

impl SendGate {
    /// A full bucket. A rate of 0 disables the limit.
    pub fn new(rate_per_sec: u32, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        SendGate {
            rate_per_sec: f64::from(rate_per_sec),
            burst,
            tokens: burst,
            last: now,
            blocked_on: None,
        }
    }

    /// Admits the send of `id`, or says how many milliseconds to wait.
    pub fn admit(&mut self, id: MessageId, now: Instant) -> Result<(), u64> {
        if self.rate_per_sec <= 0.0 {
            return Ok(());
        }
        self.refill(now);
        if let Some(block) = self.blocked_on {
            if now >= block.until {
                // The client gave up on the blocking id: let others through.
                self.blocked_on = None;
            } else if block.id != id {
                return Err(self.wait_ms());
            }
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.blocked_on = None;
            Ok(())
        } else {
            // Blocked on `id` now: either it is the first refusal, or it is
            // the blocking id itself, resent too early, which restarts the
            // clock.
            let wait = self.wait_ms();
            let until = now + Duration::from_millis(wait) + BLOCK_GRACE;
            self.blocked_on = Some(Block { id, until });
            Err(wait)
        }
    }

    /// Lifts the block if it is on `id`: the handler found `id` already
    /// stored, answered it with its ack, and the client will not resend it.
    pub fn release(&mut self, id: MessageId) {
        if self.blocked_on.is_some_and(|b| b.id == id) {
            self.blocked_on = None;
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate_per_sec).min(self.burst);
        self.last = now;
    }

    /// Time until one token is available, at least 1 ms.
    fn wait_ms(&self) -> u64 {
        let missing = (1.0 - self.tokens).max(0.0);
        ((missing / self.rate_per_sec * 1000.0).ceil() as u64).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn refused_id_blocks_others_until_it_is_accepted() {
        let t0 = Instant::now();
        let mut gate = SendGate::new(10, 2, t0);
        let ids: Vec<MessageId> = (0..4).map(|_| MessageId::new()).collect();
        assert!(gate.admit(ids[0], t0).is_ok());
        assert!(gate.admit(ids[1], t0).is_ok());
        let wait = gate.admit(ids[2], t0).expect_err("bucket is empty");
        assert!((1..=100).contains(&wait), "{wait}");
        // Time passes, tokens are back, but id 3 must wait for id 2.
        let t1 = t0 + Duration::from_millis(500);
        assert!(gate.admit(ids[3], t1).is_err());
        assert!(gate.admit(ids[2], t1).is_ok());
        assert!(gate.admit(ids[3], t1).is_ok());
    }

    #[test]
    fn block_lapses_when_the_blocking_id_is_not_resent() {
        let t0 = Instant::now();
        let mut gate = SendGate::new(10, 1, t0);
        let (x, y, z) = (MessageId::new(), MessageId::new(), MessageId::new());
        assert!(gate.admit(x, t0).is_ok());
        let wait = gate.admit(y, t0).expect_err("bucket is empty");
        let lapse = Duration::from_millis(wait) + BLOCK_GRACE;
        // Refusals of other ids do not extend the block.
        let t1 = t0 + lapse - Duration::from_millis(1);
        assert!(gate.admit(z, t1).is_err());
        // y never came back: past the grace, z goes through.
        assert!(gate.admit(z, t0 + lapse).is_ok());
    }

    #[test]
    fn releasing_the_blocking_id_lifts_the_block() {
        let t0 = Instant::now();
        let mut gate = SendGate::new(1, 1, t0);
        let (x, y, z) = (MessageId::new(), MessageId::new(), MessageId::new());
        assert!(gate.admit(x, t0).is_ok());
        assert!(gate.admit(y, t0).is_err());
        let t1 = t0 + Duration::from_millis(1500);
        // Releasing another id changes nothing; releasing y lifts the block.
        gate.release(z);
        assert!(gate.admit(z, t1).is_err());
        gate.release(y);
        assert!(gate.admit(z, t1).is_ok());
    }

    #[test]
    fn zero_rate_means_unlimited() {
        let t0 = Instant::now();
        let mut gate = SendGate::new(0, 0, t0);
        for _ in 0..10_000 {
            assert!(gate.admit(MessageId::new(), t0).is_ok());
        }
    }
}
