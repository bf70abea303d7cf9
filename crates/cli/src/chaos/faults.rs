//! The fault schedule, drawn from the seed, and the log of faults that
//! actually fired.
//!
//! The schedule is deterministic: the same seed and knobs give the same
//! faults at the same offsets from the start of the workload. What they hit
//! depends on timing (which frame is next when a fault is armed), so a run
//! is reproducible in its plan, not frame for frame.

use super::proxy::{Dir, FrameFault};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Every kind of fault, as named in the report.
pub const KINDS: &[&str] = &[
    "drop-ack",
    "hold-ack",
    "drop+cut",
    "cut-after",
    "cut",
    "delay",
    "black-hole",
    "kill-client",
    "kill-server",
];

/// Who a fault is aimed at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The client with this index (its proxy, or its process).
    Client(usize),
    /// The server process.
    Server,
}

/// One planned fault.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Armed on the client's proxy; fires on the frame it waits for.
    Frame(FrameFault),
    /// Cut the client's connection now.
    Cut,
    /// Delay every frame of the client's connection for a while.
    Delay {
        /// Added to every frame.
        base: Duration,
        /// Up to this much more, at random per frame.
        jitter: Duration,
        /// How long.
        window: Duration,
    },
    /// Swallow one direction of the client's connection for a while.
    BlackHole {
        /// Which way.
        dir: Dir,
        /// How long.
        window: Duration,
    },
    /// SIGKILL the client's process, start it again after `down`.
    KillClient {
        /// Time dead.
        down: Duration,
    },
    /// SIGKILL the server's process, start it again after `down`.
    KillServer {
        /// Time dead.
        down: Duration,
    },
}

impl Fault {
    /// The fault's kind, as counted in the report.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Frame(f) => f.kind(),
            Fault::Cut => "cut",
            Fault::Delay { .. } => "delay",
            Fault::BlackHole { .. } => "black-hole",
            Fault::KillClient { .. } => "kill-client",
            Fault::KillServer { .. } => "kill-server",
        }
    }
}

/// A fault and when to inject it.
#[derive(Clone, Debug, PartialEq)]
pub struct Planned {
    /// Offset from the start of the workload.
    pub at: Duration,
    /// Aimed at.
    pub target: Target,
    /// What.
    pub fault: Fault,
}

/// What the schedule may contain.
#[derive(Clone, Debug)]
pub struct Knobs {
    /// Number of clients.
    pub clients: usize,
    /// Mean time between two faults.
    pub every: Duration,
    /// Kinds left out (names from [`KINDS`]).
    pub disabled: Vec<&'static str>,
}

/// An endless, seeded stream of faults.
pub struct Schedule {
    rng: fastrand::Rng,
    knobs: Knobs,
    /// Kinds not drawn yet: the first faults cover every enabled kind once
    /// (in a seeded order), so even a short run injects all of them.
    first_round: Vec<&'static str>,
    at: Duration,
}

/// Frames a fault can wait for before cutting, by direction.
const CUT_FRAMES: &[(Dir, &str)] = &[
    (Dir::Up, "send"),
    (Dir::Up, "send"),
    (Dir::Down, "ack"),
    (Dir::Down, "ack"),
    (Dir::Down, "message"),
    (Dir::Up, "received"),
    (Dir::Down, "marks"),
    (Dir::Up, "hello"),
    (Dir::Down, "welcome"),
    (Dir::Down, "batch"),
];

impl Schedule {
    /// A schedule for `seed`.
    pub fn new(seed: u64, knobs: Knobs) -> Schedule {
        let mut rng = fastrand::Rng::with_seed(seed ^ 0xC4A0_5EED);
        let mut first_round: Vec<&'static str> = KINDS
            .iter()
            .copied()
            .filter(|k| !knobs.disabled.contains(k))
            .collect();
        rng.shuffle(&mut first_round);
        Schedule {
            rng,
            knobs,
            first_round,
            at: Duration::ZERO,
        }
    }

    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.rng.u64(lo..=hi))
    }

    /// Draws a kind: the first round in order, then by weight.
    fn kind(&mut self) -> Option<&'static str> {
        if let Some(k) = self.first_round.pop() {
            return Some(k);
        }
        const WEIGHTS: &[(&str, u32)] = &[
            ("drop-ack", 8),
            ("hold-ack", 6),
            ("drop+cut", 8),
            ("cut-after", 10),
            ("cut", 8),
            ("delay", 10),
            ("black-hole", 6),
            ("kill-client", 7),
            ("kill-server", 4),
        ];
        let enabled: Vec<(&str, u32)> = WEIGHTS
            .iter()
            .copied()
            .filter(|(k, _)| !self.knobs.disabled.contains(k))
            .collect();
        let total: u32 = enabled.iter().map(|(_, w)| w).sum();
        if total == 0 {
            return None;
        }
        let mut pick = self.rng.u32(0..total);
        for (k, w) in enabled {
            if pick < w {
                return Some(k);
            }
            pick -= w;
        }
        None
    }
}

impl Iterator for Schedule {
    type Item = Planned;

    fn next(&mut self) -> Option<Planned> {
        let mean = u64::try_from(self.knobs.every.as_millis())
            .unwrap_or(u64::MAX)
            .max(10);
        let step = self.ms(mean * 3 / 10, mean * 17 / 10);
        self.at += step;
        let client = Target::Client(self.rng.usize(0..self.knobs.clients.max(1)));
        let (target, fault) = match self.kind()? {
            "drop-ack" => (client, Fault::Frame(FrameFault::DropAck)),
            // Sometimes shorter, sometimes longer than the ack timeout.
            "hold-ack" => (
                client,
                Fault::Frame(FrameFault::HoldAck(self.ms(300, 4500))),
            ),
            "drop+cut" => {
                let (d, ty) = CUT_FRAMES[self.rng.usize(0..CUT_FRAMES.len())];
                (client, Fault::Frame(FrameFault::DropAndCut(d, ty)))
            }
            "cut-after" => {
                let (d, ty) = CUT_FRAMES[self.rng.usize(0..CUT_FRAMES.len())];
                (client, Fault::Frame(FrameFault::CutAfter(d, ty)))
            }
            "cut" => (client, Fault::Cut),
            "delay" => (
                client,
                Fault::Delay {
                    base: self.ms(0, 150),
                    jitter: self.ms(0, 400),
                    window: self.ms(1000, 4000),
                },
            ),
            "black-hole" => {
                let dir = if self.rng.bool() { Dir::Up } else { Dir::Down };
                (
                    client,
                    Fault::BlackHole {
                        dir,
                        window: self.ms(300, 3000),
                    },
                )
            }
            "kill-client" => (
                client,
                Fault::KillClient {
                    down: self.ms(50, 1500),
                },
            ),
            _ => (
                Target::Server,
                Fault::KillServer {
                    down: self.ms(50, 1500),
                },
            ),
        };
        Some(Planned {
            at: self.at,
            target,
            fault,
        })
    }
}

/// Faults that fired, counted by kind, with a progress line for each.
pub struct FaultLog {
    start: Mutex<Instant>,
    quiet: bool,
    counts: Mutex<BTreeMap<&'static str, usize>>,
}

impl FaultLog {
    /// An empty log; `quiet` suppresses the line printed per fault.
    pub fn new(quiet: bool) -> FaultLog {
        FaultLog {
            start: Mutex::new(Instant::now()),
            quiet,
            counts: Mutex::new(BTreeMap::new()),
        }
    }

    /// Times progress lines from now on.
    pub fn restart_clock(&self) {
        *self.start.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    /// Seconds since the clock started.
    pub fn elapsed(&self) -> f64 {
        self.start
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
            .as_secs_f64()
    }

    /// Records that a fault of `kind` hit `who`.
    pub fn fired(&self, kind: &'static str, who: &str, what: String) {
        *self
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(kind)
            .or_default() += 1;
        if !self.quiet {
            println!("[{:>5.1}s] ⚡ {who}: {what}", self.elapsed());
        }
    }

    /// Prints a line about a fault's aftermath (unless quiet).
    pub fn detail(&self, what: &str) {
        if !self.quiet {
            println!("[{:>5.1}s] {what}", self.elapsed());
        }
    }

    /// Prints a progress line (even when quiet).
    pub fn note(&self, what: &str) {
        println!("[{:>5.1}s] {what}", self.elapsed());
    }

    /// Faults fired so far, by kind.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn knobs() -> Knobs {
        Knobs {
            clients: 3,
            every: Duration::from_millis(500),
            disabled: Vec::new(),
        }
    }

    #[test]
    fn same_seed_same_plan_and_every_kind_comes_first() {
        let a: Vec<Planned> = Schedule::new(7, knobs()).take(40).collect();
        let b: Vec<Planned> = Schedule::new(7, knobs()).take(40).collect();
        assert_eq!(a, b);
        let c: Vec<Planned> = Schedule::new(8, knobs()).take(40).collect();
        assert_ne!(a, c);
        let mut first: Vec<&str> = a[..KINDS.len()].iter().map(|p| p.fault.kind()).collect();
        first.sort_unstable();
        let mut all = KINDS.to_vec();
        all.sort_unstable();
        assert_eq!(first, all);
        assert!(a.windows(2).all(|w| w[0].at < w[1].at));
        for p in &a {
            match p.target {
                Target::Client(i) => assert!(i < 3),
                Target::Server => assert_eq!(p.fault.kind(), "kill-server"),
            }
        }
    }

    #[test]
    fn disabled_kinds_never_appear() {
        let k = Knobs {
            disabled: vec!["kill-server", "kill-client"],
            ..knobs()
        };
        assert!(Schedule::new(1, k)
            .take(200)
            .all(|p| !matches!(p.fault, Fault::KillServer { .. } | Fault::KillClient { .. })));
    }
}
