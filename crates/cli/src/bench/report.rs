//! Tables on stdout and the JSON document of a run: every suite adds its
//! section and its headline figures; at the end come the side-by-side
//! comparison with the floors and peers, and the verdict on each goal of
//! issue 6.

use super::stats::{Lat, Machine};
use crate::output::outln;
use serde::Serialize;
use serde_json::Value;

/// A plain text table: the first column left-aligned, the others right.
pub struct Table {
    title: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with a title line and column names.
    pub fn new(title: impl Into<String>, header: &[&str]) -> Self {
        Table {
            title: title.into(),
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// A row of latency percentiles under `name`.
    pub fn lat_row(&mut self, name: &str, l: &Lat) {
        self.row(vec![
            name.to_string(),
            l.count.to_string(),
            us(l.p50_us),
            us(l.p90_us),
            us(l.p99_us),
            us(l.p999_us),
            us(l.max_us),
        ]);
    }

    /// Prints it to stdout.
    pub fn print(&self) -> anyhow::Result<()> {
        let cols = self
            .rows
            .iter()
            .map(Vec::len)
            .chain([self.header.len()])
            .max()
            .unwrap_or(0);
        let mut width = vec![0usize; cols];
        for r in self.rows.iter().chain([&self.header]) {
            for (i, c) in r.iter().enumerate() {
                width[i] = width[i].max(c.chars().count());
            }
        }
        outln!()?;
        outln!("== {}", self.title)?;
        let line = |r: &Vec<String>| {
            let mut s = String::new();
            for (i, c) in r.iter().enumerate() {
                let pad = width[i].saturating_sub(c.chars().count());
                if i == 0 {
                    s.push_str(c);
                    s.push_str(&" ".repeat(pad));
                } else {
                    s.push_str("  ");
                    s.push_str(&" ".repeat(pad));
                    s.push_str(c);
                }
            }
            s
        };
        outln!("{}", line(&self.header))?;
        for r in &self.rows {
            outln!("{}", line(r))?;
        }
        Ok(())
    }
}

/// A duration given in µs, printed with a unit that keeps 3 digits.
pub fn us(v: f64) -> String {
    if v <= 0.0 {
        "-".into()
    } else if v < 1000.0 {
        format!("{v:.1}µs")
    } else if v < 1_000_000.0 {
        format!("{:.2}ms", v / 1000.0)
    } else {
        format!("{:.2}s", v / 1_000_000.0)
    }
}

/// A rate, per second, with thousands separators.
pub fn per_sec(v: f64) -> String {
    if v <= 0.0 {
        return "-".into();
    }
    format!("{}/s", thousands(v.round() as u64))
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `a / b` printed as `12.3×`, or `-` when either is missing.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match ratio_value(a, b) {
        Some(r) if r >= 100.0 => format!("{r:.0}×"),
        Some(r) => format!("{r:.2}×"),
        None => "-".into(),
    }
}

fn ratio_value(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if a > 0.0 && b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// Headline figures that the comparison and the goals use; `None` when the
/// suite that measures it did not run or was skipped.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Key {
    /// Open-loop rate of the syncer run, msgs/s.
    pub syncer_rate: Option<f64>,
    /// `send` (durable insert) p99 / p99.9, µs.
    pub send_p99_us: Option<f64>,
    /// See [`Key::send_p99_us`].
    pub send_p999_us: Option<f64>,
    /// Send → visible as Sending, p99, µs.
    pub visible_p99_us: Option<f64>,
    /// Send → In-Flight (durable ack), p50 / p99, µs.
    pub in_flight_p50_us: Option<f64>,
    /// See [`Key::in_flight_p50_us`].
    pub in_flight_p99_us: Option<f64>,
    /// Send → Success, p50, µs.
    pub success_p50_us: Option<f64>,
    /// Bare WebSocket echo round trip p50 / p99, µs.
    pub ws_rtt_p50_us: Option<f64>,
    /// See [`Key::ws_rtt_p50_us`].
    pub ws_rtt_p99_us: Option<f64>,
    /// Bare WebSocket echo, pipelined, msgs/s.
    pub ws_msgs_per_s: Option<f64>,
    /// Bare SQLite single-row commit with fsync, p50 µs and commits/s.
    pub fsync_commit_p50_us: Option<f64>,
    /// See [`Key::fsync_commit_p50_us`].
    pub sqlite_commits_per_s: Option<f64>,
    /// Bare SQLite rows/s in batches (one fsync per batch).
    pub sqlite_rows_per_s: Option<f64>,
    /// NATS JetStream publish → ack in the open loop, p50 / p99 µs.
    pub nats_p50_us: Option<f64>,
    /// See [`Key::nats_p50_us`].
    pub nats_p99_us: Option<f64>,
    /// NATS JetStream acknowledged publishes per second at max rate.
    pub nats_max_per_s: Option<f64>,
    /// Redis XADD (appendfsync always) in the open loop, p50 / p99 µs.
    pub redis_p50_us: Option<f64>,
    /// See [`Key::redis_p50_us`].
    pub redis_p99_us: Option<f64>,
    /// Redis XADD replies per second at max rate.
    pub redis_max_per_s: Option<f64>,
    /// Synapse send → 200 OK, p50 / p99 µs.
    pub synapse_p50_us: Option<f64>,
    /// See [`Key::synapse_p50_us`].
    pub synapse_p99_us: Option<f64>,
    /// Synapse sustained sends/s at max rate.
    pub synapse_max_per_s: Option<f64>,
    /// chatsync server: acknowledged (fsynced) messages/s at max rate.
    pub chatsync_max_per_s: Option<f64>,
    /// chatsync server: send → ack p50 at max rate, µs.
    pub chatsync_max_ack_p50_us: Option<f64>,
    /// chatsync server, protocol-level client in the open loop: send → ack
    /// p50 / p99, µs.
    pub chatsync_lite_p50_us: Option<f64>,
    /// See [`Key::chatsync_lite_p50_us`].
    pub chatsync_lite_p99_us: Option<f64>,
    /// Connections held at once.
    pub connections: Option<f64>,
    /// Server RSS with them, MiB.
    pub connections_rss_mib: Option<f64>,
    /// Server RSS growth per connection, bytes.
    pub bytes_per_connection: Option<f64>,
    /// Connections asked for.
    pub connections_target: Option<f64>,
    /// Server RSS projected at the asked count when the open-file limit
    /// capped the run, MiB.
    pub connections_projected_rss_mib: Option<f64>,
    /// Fan-out: (members, p50 µs, p99 µs) of the time to the last member.
    pub fanout: Vec<(usize, f64, f64)>,
    /// Catch-up: messages/s until current.
    pub catchup_per_s: Option<f64>,
    /// Catch-up: messages missed.
    pub catchup_messages: Option<f64>,
    /// History: messages in the full server store.
    pub history_server_messages: Option<f64>,
    /// History: messages in the full client store.
    pub history_client_messages: Option<f64>,
    /// History: (figure, full / empty p50) for send, In-Flight and paging.
    pub history_ratios: Vec<(&'static str, f64)>,
}

/// A side-by-side row: name, p50, p99, max acked/s.
type Row<'a> = (&'a str, Option<f64>, Option<f64>, Option<f64>);

/// The verdict on one goal of issue 6.
#[derive(Clone, Debug, Serialize)]
pub struct Goal {
    /// The goal as written in the issue.
    pub goal: String,
    /// What was measured, with the floor or peer it is compared to.
    pub measured: String,
    /// `met`, `missed` or `not measured`.
    pub verdict: &'static str,
}

/// Everything a run measured.
#[derive(Serialize)]
pub struct Report {
    /// Where.
    pub machine: Machine,
    /// The command line.
    pub command: String,
    /// One section per suite (or `{"skipped": reason}`).
    pub suites: serde_json::Map<String, Value>,
    /// Headline figures.
    pub key: Key,
    /// Goal verdicts (filled by [`Report::finish`]).
    pub goals: Vec<Goal>,
}

impl Report {
    /// An empty report.
    pub fn new(machine: Machine) -> Self {
        Report {
            machine,
            command: std::env::args().collect::<Vec<_>>().join(" "),
            suites: serde_json::Map::new(),
            key: Key::default(),
            goals: Vec::new(),
        }
    }

    /// Adds a suite's section.
    pub fn add(&mut self, name: &str, value: impl Serialize) {
        let v = serde_json::to_value(value).unwrap_or_else(|e| Value::String(e.to_string()));
        self.suites.insert(name.to_string(), v);
    }

    /// Records that a suite or peer was skipped, and says why on stdout.
    pub fn skip(&mut self, name: &str, why: impl Into<String>) -> anyhow::Result<()> {
        let why = why.into();
        outln!()?;
        outln!("== {name}: SKIPPED — {why}")?;
        self.suites
            .insert(name.to_string(), serde_json::json!({ "skipped": why }));
        Ok(())
    }

    /// Judges the goals and prints the side-by-side comparison and the
    /// verdicts, with only the rows this run measured (the JSON keeps them
    /// all). `every_suite`: whether the run asked for every suite, which
    /// decides what the line about the goals left out suggests.
    pub fn finish(&mut self, every_suite: bool) -> anyhow::Result<()> {
        let k = &self.key;
        let rate = k
            .syncer_rate
            .map(|r| format!(" at {r:.0}/s"))
            .unwrap_or_default();
        let mut t = Table::new(
            format!("side by side: durable acknowledgement (same run, same machine){rate}"),
            &[
                "system",
                "ack p50",
                "ack p99",
                "max acked/s",
                "chatsync faster (p50)",
                "chatsync more (max/s)",
            ],
        );
        let floor_p50 = match (k.ws_rtt_p50_us, k.fsync_commit_p50_us) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
        // Peers are driven by protocol-level clients: compare them with the
        // server driven the same way, or with the client library's
        // In-Flight when that is all there is.
        let reference = k.chatsync_lite_p50_us.or(k.in_flight_p50_us);
        let rows: [Row; 6] = [
            (
                "chatsync send → In-Flight (client library)",
                k.in_flight_p50_us,
                k.in_flight_p99_us,
                None,
            ),
            (
                "chatsync server ack (protocol client)",
                k.chatsync_lite_p50_us,
                k.chatsync_lite_p99_us,
                k.chatsync_max_per_s,
            ),
            (
                "floor: one WS round trip + one fsync",
                floor_p50,
                None,
                k.sqlite_rows_per_s,
            ),
            (
                "NATS JetStream publish-ack",
                k.nats_p50_us,
                k.nats_p99_us,
                k.nats_max_per_s,
            ),
            (
                "Redis XADD, appendfsync always",
                k.redis_p50_us,
                k.redis_p99_us,
                k.redis_max_per_s,
            ),
            (
                "Matrix Synapse send",
                k.synapse_p50_us,
                k.synapse_p99_us,
                k.synapse_max_per_s,
            ),
        ];
        let measured = rows
            .into_iter()
            .filter(|(_, p50, p99, max)| p50.is_some() || p99.is_some() || max.is_some());
        for (name, p50, p99, max) in measured {
            t.row(vec![
                name.to_string(),
                p50.map(us).unwrap_or_else(|| "-".into()),
                p99.map(us).unwrap_or_else(|| "-".into()),
                max.map(per_sec).unwrap_or_else(|| "-".into()),
                ratio(p50, reference),
                ratio(k.chatsync_max_per_s, max),
            ]);
        }
        if !t.rows.is_empty() {
            t.print()?;
            outln!("(ratios above 1× mean chatsync is ahead: the system's p50 over chatsync's server-ack p50, chatsync's max acked/s over the system's; the floor row is a bound, not a peer)")?;
        }

        self.goals = goals(&self.key);
        let mut g = Table::new("goals of issue 6", &["goal", "measured", "verdict"]);
        for goal in self.goals.iter().filter(|g| g.verdict != NOT_MEASURED) {
            g.row(vec![
                goal.goal.clone(),
                goal.measured.clone(),
                goal.verdict.to_string(),
            ]);
        }
        let left_out = self.goals.len() - g.rows.len();
        if !g.rows.is_empty() {
            g.print()?;
        }
        if left_out > 0 {
            let more = if g.rows.is_empty() { "" } else { " more" };
            let goals = if left_out == 1 { "goal" } else { "goals" };
            let hint = if every_suite {
                "not measured in this run: their suites were skipped, failed or ran below the goal's sizes"
            } else {
                "not measured: not among these suites, or run below the goal's sizes; --suite all with its defaults measures every one"
            };
            outln!("({left_out}{more} {goals} {hint})")?;
        }
        Ok(())
    }
}

/// The verdict on a goal that this run did not measure.
const NOT_MEASURED: &str = "not measured";

fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "met",
        Some(false) => "missed",
        None => NOT_MEASURED,
    }
}

fn opt_us(v: Option<f64>) -> String {
    v.map(us).unwrap_or_else(|| "-".into())
}

/// Judges every goal that the run measured.
fn goals(k: &Key) -> Vec<Goal> {
    let mut out = Vec::new();
    let both = |a: Option<f64>, b: Option<f64>| a.zip(b);
    out.push(Goal {
        goal: "send p99 ≤ 1 ms, p99.9 ≤ 5 ms".into(),
        measured: format!(
            "p99 {}, p99.9 {}",
            opt_us(k.send_p99_us),
            opt_us(k.send_p999_us)
        ),
        verdict: verdict(
            both(k.send_p99_us, k.send_p999_us).map(|(a, b)| a <= 1000.0 && b <= 5000.0),
        ),
    });
    out.push(Goal {
        goal: "visible as Sending p99 ≤ 1 ms".into(),
        measured: opt_us(k.visible_p99_us),
        verdict: verdict(k.visible_p99_us.map(|v| v <= 1000.0)),
    });
    let bound = both(k.ws_rtt_p50_us, k.fsync_commit_p50_us).map(|(w, f)| 2.0 * w + f);
    out.push(Goal {
        goal: "send → In-Flight p50 ≤ 2× WS round trip + one fsync".into(),
        measured: format!(
            "{} vs bound {} (2 × {} + {})",
            opt_us(k.in_flight_p50_us),
            opt_us(bound),
            opt_us(k.ws_rtt_p50_us),
            opt_us(k.fsync_commit_p50_us)
        ),
        verdict: verdict(both(k.in_flight_p50_us, bound).map(|(m, b)| m <= b)),
    });
    out.push(Goal {
        goal: "send → Success p50 ≤ 3 ms".into(),
        measured: opt_us(k.success_p50_us),
        verdict: verdict(k.success_p50_us.map(|v| v <= 3000.0)),
    });
    let lat_ratio = ratio_value(k.synapse_p50_us, k.in_flight_p50_us);
    let thr_ratio = ratio_value(k.chatsync_max_per_s, k.synapse_max_per_s);
    out.push(Goal {
        goal: "≥ 100× Synapse: ack latency and sustained sends/s".into(),
        measured: format!(
            "latency {} ({} vs {}), throughput {} ({} vs {})",
            ratio(k.synapse_p50_us, k.in_flight_p50_us),
            opt_us(k.in_flight_p50_us),
            opt_us(k.synapse_p50_us),
            ratio(k.chatsync_max_per_s, k.synapse_max_per_s),
            k.chatsync_max_per_s
                .map(per_sec)
                .unwrap_or_else(|| "-".into()),
            k.synapse_max_per_s
                .map(per_sec)
                .unwrap_or_else(|| "-".into()),
        ),
        verdict: verdict(
            lat_ratio
                .zip(thr_ratio)
                .map(|(l, t)| l >= 100.0 && t >= 100.0),
        ),
    });
    out.push(Goal {
        goal: "acked msgs/s ≥ NATS JetStream publish-ack rate".into(),
        measured: format!(
            "{} vs {} ({})",
            k.chatsync_max_per_s
                .map(per_sec)
                .unwrap_or_else(|| "-".into()),
            k.nats_max_per_s.map(per_sec).unwrap_or_else(|| "-".into()),
            ratio(k.chatsync_max_per_s, k.nats_max_per_s)
        ),
        verdict: verdict(both(k.chatsync_max_per_s, k.nats_max_per_s).map(|(c, n)| c >= n)),
    });
    out.push(Goal {
        goal: "50,000 connections, server RSS ≤ 1 GiB".into(),
        measured: match (k.connections, k.connections_rss_mib, k.bytes_per_connection) {
            (Some(n), Some(rss), Some(b)) => format!(
                "{} connections, RSS {rss:.0} MiB, {} B/connection{}",
                thousands(n as u64),
                thousands(b.max(0.0) as u64),
                match (k.connections_projected_rss_mib, k.connections_target) {
                    (Some(p), Some(t)) => format!(
                        " (capped by the open-file limit; {p:.0} MiB projected at {})",
                        thousands(t as u64)
                    ),
                    _ => String::new(),
                }
            ),
            _ => "-".into(),
        },
        verdict: match (
            k.connections,
            k.connections_rss_mib,
            k.connections_projected_rss_mib,
        ) {
            (Some(n), Some(rss), _) if n >= 50_000.0 => verdict(Some(rss <= 1024.0)),
            (Some(_), _, Some(p)) if p <= 1024.0 => "met (projected)",
            (Some(_), _, Some(_)) => "missed (projected)",
            _ => NOT_MEASURED,
        },
    });
    let growth = fanout_growth(&k.fanout);
    out.push(Goal {
        goal: "fan-out to 1,000 members, linear or better from 10 to 1,000".into(),
        measured: if k.fanout.is_empty() {
            "-".into()
        } else {
            k.fanout
                .iter()
                .map(|(n, p50, p99)| format!("{n}: p50 {} p99 {}", us(*p50), us(*p99)))
                .collect::<Vec<_>>()
                .join("; ")
        },
        verdict: verdict(if k.fanout.iter().any(|f| f.0 >= 1000) {
            growth
        } else {
            None
        }),
    });
    out.push(Goal {
        goal: "catch-up after 100,000 missed ≥ 100,000 msgs/s".into(),
        measured: match (k.catchup_per_s, k.catchup_messages) {
            (Some(r), Some(n)) => format!("{} over {} messages", per_sec(r), thousands(n as u64)),
            _ => "-".into(),
        },
        verdict: verdict(match (k.catchup_per_s, k.catchup_messages) {
            (Some(r), Some(n)) if n >= 100_000.0 => Some(r >= 100_000.0),
            _ => None,
        }),
    });
    out.push(history_goal(k));
    out
}

/// Scale of history: every p50 with the full stores within 10% of the
/// empty ones, measured at 10 M / 1 M messages or more.
fn history_goal(k: &Key) -> Goal {
    let measured = match (k.history_server_messages, k.history_client_messages) {
        (Some(s), Some(c)) if !k.history_ratios.is_empty() => format!(
            "{} server / {} client, full/empty p50: {}",
            thousands(s as u64),
            thousands(c as u64),
            k.history_ratios
                .iter()
                .map(|(f, r)| format!("{f} {r:.2}×"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => "-".into(),
    };
    let ok = match (k.history_server_messages, k.history_client_messages) {
        (Some(s), Some(c)) if s >= 1e7 && c >= 1e6 && !k.history_ratios.is_empty() => {
            Some(k.history_ratios.iter().all(|(_, r)| *r <= 1.10))
        }
        _ => None,
    };
    Goal {
        goal: "10 M server / 1 M client history within 10% of empty".into(),
        measured,
        verdict: verdict(ok),
    }
}

/// Linear or better: from each size to the next, the p50 time to the last
/// member grows at most in proportion to the members (with 20% slack for
/// noise). `None` with fewer than two sizes.
fn fanout_growth(f: &[(usize, f64, f64)]) -> Option<bool> {
    if f.len() < 2 {
        return None;
    }
    Some(f.windows(2).all(|w| {
        let (n0, t0, _) = w[0];
        let (n1, t1, _) = w[1];
        t0 > 0.0 && t1 / t0 <= 1.2 * (n1 as f64 / n0 as f64)
    }))
}
