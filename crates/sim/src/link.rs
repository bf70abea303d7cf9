//! A simulated connection: two one-way pipes with latency, jitter, loss and
//! stalls, in the manner of netem, on virtual time.
//!
//! A chatsync connection is a WebSocket over TCP, so the link never
//! duplicates a frame and, in the faithful mode, never reorders or loses
//! one without the connection itself breaking: a lost segment is
//! retransmitted, which shows up as extra delay that also holds back every
//! frame behind it (head-of-line blocking). What TCP cannot hide is a cut:
//! [`Link::cut`] ends the connection; frames already on the wire towards
//! the server may still arrive (a random prefix of them), frames towards
//! the client that have not arrived are lost.
//!
//! The *hostile* mode models a misbehaving middlebox on the server → client
//! direction only: a frame may vanish, or overtake earlier ones, while the
//! connection stays up. Client → server stays in order and lossless, because
//! a server fed a send stream with holes could store a sender's messages out
//! of order, which no real transport can cause.

use fastrand::Rng;
use std::time::{Duration, Instant};

/// The fault knobs of one link.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    /// Fixed one-way delay.
    pub latency: Duration,
    /// Uniform extra delay, 0 to this, per frame.
    pub jitter: Duration,
    /// Probability that a frame's segment is lost and retransmitted.
    pub loss: f64,
    /// Retransmission delay added to a lost segment.
    pub rto: Duration,
    /// Hostile mode, server → client: probability that a frame vanishes.
    pub drop: f64,
    /// Hostile mode, server → client: probability that a frame is not held
    /// behind earlier ones (so it may overtake them).
    pub reorder: f64,
}

impl Profile {
    /// A fast link with no fault, used once the world is healed.
    pub fn perfect() -> Profile {
        Profile {
            latency: Duration::from_millis(2),
            jitter: Duration::ZERO,
            loss: 0.0,
            rto: Duration::ZERO,
            drop: 0.0,
            reorder: 0.0,
        }
    }

    /// A random profile; `hostile` enables drops and reorders towards the
    /// client.
    pub fn random(rng: &mut Rng, hostile: bool) -> Profile {
        let ms = |rng: &mut Rng, lo: u64, hi: u64| Duration::from_millis(rng.u64(lo..=hi));
        Profile {
            latency: ms(rng, 1, 80),
            jitter: ms(rng, 0, 60),
            loss: [0.0, 0.01, 0.05, 0.15][rng.usize(0..4)],
            rto: ms(rng, 200, 1000),
            drop: if hostile { 0.03 + rng.f64() * 0.1 } else { 0.0 },
            reorder: if hostile { rng.f64() * 0.3 } else { 0.0 },
        }
    }
}

/// One connection's two directions.
#[derive(Debug)]
pub struct Link {
    /// Current fault knobs (replaced by [`Profile::perfect`] on healing).
    pub profile: Profile,
    up_last: Instant,
    down_last: Instant,
    /// Client → server frames arriving after this instant are lost.
    up_cutoff: Option<Instant>,
    /// Server → client frames arriving after this instant are lost.
    down_cutoff: Option<Instant>,
    /// Nothing arrives before this instant (a stall of the path).
    stall_until: Option<Instant>,
}

impl Link {
    /// A fresh connection opened at `now`.
    pub fn new(now: Instant, profile: Profile) -> Link {
        Link {
            profile,
            up_last: now,
            down_last: now,
            up_cutoff: None,
            down_cutoff: None,
            stall_until: None,
        }
    }

    fn one_way(&self, rng: &mut Rng) -> Duration {
        let p = &self.profile;
        let mut d = p.latency + p.jitter.mul_f64(rng.f64());
        while p.loss > 0.0 && rng.f64() < p.loss {
            d += p.rto;
        }
        d
    }

    fn after_stall(&self, at: Instant) -> Instant {
        self.stall_until.map_or(at, |s| at.max(s))
    }

    /// Arrival time at the server of a frame the client sends at `now`:
    /// in order behind every earlier one.
    pub fn up(&mut self, now: Instant, rng: &mut Rng) -> Instant {
        let at = self.after_stall((now + self.one_way(rng)).max(self.up_last));
        self.up_last = at;
        at
    }

    /// Arrival time at the client of a frame the server sends at `now`, or
    /// `None` if the hostile path eats it. `reliable` frames (the welcome)
    /// are never dropped or reordered.
    pub fn down(&mut self, now: Instant, rng: &mut Rng, reliable: bool) -> Option<Instant> {
        let p = &self.profile;
        if !reliable && p.drop > 0.0 && rng.f64() < p.drop {
            return None;
        }
        let raw = now + self.one_way(rng);
        let overtakes = !reliable && p.reorder > 0.0 && rng.f64() < p.reorder;
        let at = self.after_stall(if overtakes {
            raw
        } else {
            raw.max(self.down_last)
        });
        self.down_last = self.down_last.max(at);
        Some(at)
    }

    /// Whether a client → server frame arriving at `at` gets through.
    pub fn up_open(&self, at: Instant) -> bool {
        self.up_cutoff.is_none_or(|c| at <= c)
    }

    /// Whether a server → client frame arriving at `at` gets through.
    pub fn down_open(&self, at: Instant) -> bool {
        self.down_cutoff.is_none_or(|c| at <= c)
    }

    /// Whether the connection has been cut.
    pub fn is_cut(&self) -> bool {
        self.down_cutoff.is_some()
    }

    /// Cuts the connection at `now`. Client → server frames arriving up to
    /// `now + grace` still get through (they were on the wire); nothing more
    /// reaches the client. Returns the instant after which the server can
    /// see nothing more from this connection.
    pub fn cut(&mut self, now: Instant, grace: Duration) -> Instant {
        let up = now + grace;
        self.up_cutoff = Some(self.up_cutoff.map_or(up, |c| c.min(up)));
        self.down_cutoff = Some(self.down_cutoff.map_or(now, |c| c.min(now)));
        self.up_cutoff.unwrap_or(up)
    }

    /// Holds both directions until `until` (a path stall: acks arrive after
    /// the client's timeout).
    pub fn stall(&mut self, until: Instant) {
        self.stall_until = Some(self.stall_until.map_or(until, |s| s.max(until)));
    }

    /// Removes the faults: the link behaves perfectly from now on.
    pub fn heal(&mut self) {
        self.profile = Profile::perfect();
        self.stall_until = None;
    }
}
