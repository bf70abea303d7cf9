//! `--stages`: where the time of `send` → In-Flight goes, stage by stage,
//! from the stamps the client library and the server wrote (see
//! [`crate::stages`]).

use super::report::{Report, Table};
use super::stats::{Lat, LatHist};
use crate::output::outln;
use crate::stages::ORDER;
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

/// One stage: from the stamp before it to its own.
#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    /// The stamp that ends the stage.
    pub stage: &'static str,
    /// What happens in it.
    pub what: &'static str,
    /// Its duration, over the messages stamped at every stage.
    pub lat: Lat,
}

/// Reads the stage file, prints the breakdown and adds it to the report
/// (`syncer_stages`). Messages missing a stamp (a resend after a lost
/// connection, say) are left out and counted.
pub fn report(path: &Path, report: &mut Report) -> anyhow::Result<()> {
    let stamps = crate::stages::read(path)?;
    let complete: Vec<Vec<u128>> = stamps
        .values()
        .filter_map(|by_stage| {
            ORDER
                .iter()
                .map(|(stage, _)| by_stage.get(*stage).copied())
                .collect::<Option<Vec<u128>>>()
        })
        .collect();
    let mut stages = Vec::new();
    let mut whole = LatHist::new();
    for (i, (stage, what)) in ORDER.iter().enumerate().skip(1) {
        let mut h = LatHist::new();
        for t in &complete {
            h.record(elapsed(t[i - 1], t[i]));
        }
        stages.push(Stage {
            stage,
            what,
            lat: h.summary(),
        });
    }
    for t in &complete {
        whole.record(elapsed(t[0], t[ORDER.len() - 1]));
    }
    let mut table = Table::new(
        format!(
            "where send → In-Flight goes: {} messages stamped at every stage ({} left out: resent, or straight to Success)",
            complete.len(),
            stamps.len() - complete.len()
        ),
        &["stage", "count", "p50", "p90", "p99", "p99.9", "max"],
    );
    for s in &stages {
        table.lat_row(s.what, &s.lat);
    }
    let total = whole.summary();
    table.lat_row("whole: send command → app sees In-Flight", &total);
    table.print()?;
    outln!("(the p50s of the stages need not add up to the p50 of the whole)")?;
    report.add(
        "syncer_stages",
        serde_json::json!({ "stages": stages, "whole": total }),
    );
    Ok(())
}

/// From one wall-clock stamp to a later one; a clock step backwards counts
/// as zero.
fn elapsed(from_ns: u128, to_ns: u128) -> Duration {
    let ns = to_ns.saturating_sub(from_ns);
    Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
}
