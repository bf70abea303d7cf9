//! The peers a user would pick instead, driven with the same workload as
//! chatsync (same bodies, same open loop, same max-rate shape): NATS
//! JetStream publish-with-ack, Redis `XADD` with `appendfsync always`, and
//! Matrix Synapse's client API. Each is skipped with a clear message when
//! it is not there.

pub mod nats;
pub mod redis;
pub mod synapse;

use super::load::{MaxRate, OpenLoop};
use super::report::{per_sec, Table};
use super::stats::ProcFigures;
use crate::output::outln;
use serde::Serialize;

/// What a peer run measured.
#[derive(Serialize)]
pub struct PeerFigures {
    /// Which system and how it was set up.
    pub system: String,
    /// What its acknowledgement means (durability).
    pub durability: &'static str,
    /// Open loop at the syncer run's rate.
    pub open_loop: OpenLoop,
    /// As fast as acknowledgements allow.
    pub max_rate: MaxRate,
    /// CPU and memory of the peer's process, when the bench started it.
    pub process: Option<ProcFigures>,
}

impl PeerFigures {
    /// Prints the peer's table.
    pub fn print(&self, title: &str) -> anyhow::Result<()> {
        let mut t = Table::new(
            format!("{title}: {}", self.system),
            &["run", "count", "p50", "p90", "p99", "p99.9", "max"],
        );
        t.lat_row(
            &format!(
                "open loop {:.0}/s (achieved {:.0}/s)",
                self.open_loop.rate_target, self.open_loop.rate_achieved
            ),
            &self.open_loop.ack,
        );
        t.lat_row(
            &format!(
                "max rate, {} conn × window {}",
                self.max_rate.senders, self.max_rate.window
            ),
            &self.max_rate.ack,
        );
        t.print()?;
        let first = self
            .open_loop
            .first_error
            .as_ref()
            .or(self.max_rate.first_error.as_ref());
        outln!(
            "max rate: {} acknowledged; errors {} open loop, {} max rate{}",
            per_sec(self.max_rate.acked_per_s),
            self.open_loop.errors,
            self.max_rate.errors,
            first.map(|e| format!(" (first: {e})")).unwrap_or_default()
        )?;
        outln!("durability: {}", self.durability)?;
        if let Some(p) = &self.process {
            outln!(
                "process: CPU {:.1}s ({:.0}% of one core over both runs), RSS {:.1} MiB",
                p.cpu_seconds,
                p.cpu_percent,
                p.rss_mib
            )?;
        }
        Ok(())
    }
}
