//! `chatsync bench`: chatsync measured side by side with its floors and its
//! peers, in one run on one machine.
//!
//! Suites (`--suite a,b,…`, default all but none skipped silently):
//!
//! | suite | what | module |
//! |---|---|---|
//! | `floors` | bare WebSocket echo, bare SQLite commit with fsync | [`floors`] |
//! | `syncer` | open-loop sends through real client library instances: send, visible as Sending, In-Flight, delivered, Success | [`syncer`] |
//! | `throughput` | the server's acknowledged (fsynced) messages/s at max rate, protocol-level senders | [`throughput`] |
//! | `nats`, `redis`, `synapse` (or `peers`) | the same workload against NATS JetStream, Redis `XADD` with `appendfsync always`, Matrix Synapse | [`peers`] |
//! | `fanout` | one message to every member of 10, 100, 1,000-member conversations | [`fanout`] |
//! | `catchup` | a real client reconnecting after missing 100,000 messages | [`catchup`] |
//! | `connections` | many idle authenticated connections: server RSS per connection | [`connections`] |
//! | `history` | send and timeline paging with 10 M messages in the server store and 1 M in a client store, against empty stores | [`history`] |
//!
//! Every suite starts its own `chatsync server` process (fresh data
//! directory) so that its CPU and memory are the suite's own. Each prints
//! a table, then come the side-by-side comparison and the verdicts on the
//! goals of issue 6, with the rows this run measured; `--json FILE` writes
//! everything, with the machine and every goal. Every option of the
//! selected suites is checked before the first one starts.

mod breakdown;
mod catchup;
mod connections;
mod fanout;
mod floors;
mod history;
mod lite;
mod load;
mod peers;
mod report;
mod server;
mod stats;
mod syncer;
mod throughput;

use crate::output::outln;
use anyhow::Context;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// A part of the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Suite {
    /// Every suite below.
    All,
    /// Bare WebSocket echo and bare SQLite fsync.
    Floors,
    /// Real client library instances, open loop.
    Syncer,
    /// Server acknowledged messages/s at max rate.
    Throughput,
    /// NATS, Redis and Synapse.
    Peers,
    /// NATS JetStream publish-with-ack.
    Nats,
    /// Redis XADD with appendfsync always.
    Redis,
    /// Matrix Synapse client API.
    Synapse,
    /// One message to many members.
    Fanout,
    /// Reconnect after missing many messages.
    Catchup,
    /// Many idle connections.
    Connections,
    /// Send and paging with a large history, against empty stores.
    History,
}

/// Arguments of `bench`.
#[derive(clap::Args, Clone, Debug)]
#[command(allow_negative_numbers = true)]
pub struct Args {
    /// Suites to run, comma-separated. The default, all, is the full run of
    /// BENCHMARKS.md: about 9 minutes, and 2 GiB of temporary stores.
    #[arg(long, value_delimiter = ',', default_value = "all")]
    pub suite: Vec<Suite>,
    /// Write every figure as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,

    /// Messages of the open-loop runs (syncer, and the peers' open loop).
    #[arg(long, default_value_t = 5000)]
    pub messages: usize,
    /// Open-loop rate, messages per second over all senders.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Sender clients of the syncer run, each in a conversation with its
    /// own recipient client (every client is a full client library
    /// instance with its own SQLite storage); also the number of
    /// conversations (streams, rooms) of the peers' open loop.
    #[arg(long, default_value_t = 1)]
    pub senders: usize,
    /// Members of each syncer conversation: its sender and `members - 1`
    /// recipients, each a full client library instance with its own
    /// SQLite storage. Success waits for every recipient.
    #[arg(long, default_value_t = 2)]
    pub members: usize,
    /// Syncer suite only: use this running server instead of starting one
    /// (`host:port`; its CPU and memory are then not reported).
    #[arg(long)]
    pub server: Option<String>,

    /// Messages of the WebSocket echo floor.
    #[arg(long, default_value_t = 10_000)]
    pub echo_messages: usize,
    /// Single-row commits of the SQLite floor.
    #[arg(long, default_value_t = 2000)]
    pub sqlite_commits: usize,
    /// Batched commits of the SQLite floor.
    #[arg(long, default_value_t = 200)]
    pub sqlite_batches: usize,
    /// Rows per batched commit of the SQLite floor.
    #[arg(long, default_value_t = 100)]
    pub sqlite_batch: usize,

    /// Messages of each max-rate run (chatsync server, NATS, Redis). Long
    /// enough (about a second each) that one scheduling hiccup of this
    /// shared machine does not decide the rate.
    #[arg(long, default_value_t = 200_000)]
    pub max_messages: usize,
    /// Connections (streams) of each max-rate run, each to its own
    /// conversation.
    #[arg(long, default_value_t = 4)]
    pub max_senders: usize,
    /// Appends outstanding per connection in max-rate runs and the
    /// pipelined echo floor.
    #[arg(long, default_value_t = 256)]
    pub window: usize,

    /// Synapse: messages of its open loop and of its max-rate run.
    #[arg(long, default_value_t = 300)]
    pub synapse_messages: usize,
    /// Synapse: open-loop rate (it cannot take chatsync's).
    #[arg(long, default_value_t = 20.0)]
    pub synapse_rate: f64,
    /// Synapse: requests outstanding per room in the max-rate run.
    #[arg(long, default_value_t = 8)]
    pub synapse_window: usize,

    /// Concurrent idle connections of the connections suite.
    #[arg(long, default_value_t = 5000)]
    pub connections: usize,
    /// Seconds between protocol pings of each idle connection.
    #[arg(long, default_value_t = 30)]
    pub ping_interval: u64,
    /// Seconds to hold the connections open before measuring.
    #[arg(long, default_value_t = 3)]
    pub hold: u64,

    /// Conversation sizes of the fan-out suite.
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000")]
    pub fanout_sizes: Vec<usize>,
    /// Messages sent per size in the fan-out suite.
    #[arg(long, default_value_t = 20)]
    pub fanout_messages: usize,

    /// Messages missed before the catch-up client reconnects.
    #[arg(long, default_value_t = 100_000)]
    pub catchup_messages: usize,

    /// History suite: messages in the full server store.
    #[arg(long, default_value_t = 10_000_000)]
    pub history_server: usize,
    /// History suite: messages of the full server store in the measured
    /// conversation, which its client catches up (so its store holds them).
    #[arg(long, default_value_t = 1_000_000)]
    pub history_client: usize,
    /// History suite: conversations sharing the rest of the server's messages.
    #[arg(long, default_value_t = 1000)]
    pub history_conversations: usize,
    /// History suite: messages sent per side (empty, full).
    #[arg(long, default_value_t = 2000)]
    pub history_messages: usize,
    /// History suite: open-loop rate of those sends, messages per second.
    #[arg(long, default_value_t = 200.0)]
    pub history_rate: f64,
    /// History suite: timeline pages read per kind (newest, deep) and side.
    #[arg(long, default_value_t = 1000)]
    pub history_pages: usize,
    /// Syncer suite alone: also time each hand-off of send → In-Flight,
    /// in the client library and in the server, and print where the time
    /// goes (both processes stamp the wall clock into one file; the stamps
    /// themselves add a few µs per message).
    #[arg(long)]
    pub stages: bool,
}

/// Where `--stages` stamps go: a file of this process in the temporary
/// directory, removed by the syncer suite once read.
pub fn stage_file() -> PathBuf {
    std::env::temp_dir().join(format!("chatsync-stages-{}.log", std::process::id()))
}

/// Stops a suite's blocking loop when the suite's future is dropped (an
/// interrupted run), rather than letting it write on into a removed
/// directory: the loop holds the [`Cancelled`] half and checks it.
pub struct CancelOnDrop(Arc<std::sync::atomic::AtomicBool>);

/// The loop's half of a [`CancelOnDrop`].
pub struct Cancelled(Arc<std::sync::atomic::AtomicBool>);

impl CancelOnDrop {
    /// A guard for the async side and the flag for the blocking loop.
    pub fn new() -> (CancelOnDrop, Cancelled) {
        let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
        (CancelOnDrop(flag.clone()), Cancelled(flag))
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Cancelled {
    /// An error once the run was interrupted.
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.0.load(std::sync::atomic::Ordering::Relaxed),
            "the run was interrupted"
        );
        Ok(())
    }
}

/// Removes a file when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What every suite gets.
pub struct Ctx {
    /// The arguments.
    pub args: Args,
    /// Temporary directory of the run (server data, client storage).
    pub tmp: PathBuf,
    bodies: Arc<[String]>,
    progress: MultiProgress,
}

impl Ctx {
    /// The message bodies of the corpus excerpt, shared (for tasks that
    /// outlive a borrow of the context): body `i` is `[i % len]`.
    pub fn bodies(&self) -> Arc<[String]> {
        self.bodies.clone()
    }

    /// The `i`-th message body, from the chitchat corpus excerpt.
    pub fn body(&self, i: usize) -> &str {
        &self.bodies[i % self.bodies.len()]
    }

    /// A progress bar of `len` steps (drawn on stderr when it is a terminal).
    pub fn bar(&self, len: u64, label: &str) -> ProgressBar {
        let bar = self.progress.add(ProgressBar::new(len));
        let style = ProgressStyle::with_template(
            "{prefix:<32} [{bar:30}] {pos:>7}/{len:7} {per_sec:>12} {elapsed:>4}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(label.to_string());
        bar
    }
}

impl Args {
    fn wants(&self, s: Suite) -> bool {
        let peer = matches!(s, Suite::Nats | Suite::Redis | Suite::Synapse);
        self.suite
            .iter()
            .any(|x| *x == s || *x == Suite::All || (peer && *x == Suite::Peers))
    }

    /// Whether every suite was asked for (one by one or as `all`).
    fn wants_every_suite(&self) -> bool {
        use clap::ValueEnum;
        Suite::value_variants()
            .iter()
            .filter(|s| !matches!(s, Suite::All | Suite::Peers))
            .all(|s| self.wants(*s))
    }

    /// Checks the options of the selected suites, so that a wrong one
    /// fails at once rather than after the suites before its own ran.
    fn validate(&self) -> anyhow::Result<()> {
        use anyhow::ensure;
        fn rate(flag: &str, v: f64) -> anyhow::Result<()> {
            ensure!(
                (MIN_RATE..=MAX_RATE).contains(&v),
                "{flag} must be between {MIN_RATE} and {MAX_RATE} messages per second, not {v}"
            );
            Ok(())
        }
        fn window(flag: &str, v: usize) -> anyhow::Result<()> {
            ensure!(
                (1..=MAX_WINDOW).contains(&v),
                "{flag} must be between 1 and {MAX_WINDOW} messages in flight, not {v}"
            );
            Ok(())
        }
        fn at_least(flag: &str, v: usize, min: usize) -> anyhow::Result<()> {
            ensure!(v >= min, "{flag} must be at least {min}, not {v}");
            Ok(())
        }
        ensure!(
            !self.stages || self.suite == [Suite::Syncer],
            "--stages goes with --suite syncer alone (other suites' clients would stamp too)"
        );
        ensure!(
            !(self.stages && self.server.is_some()),
            "--stages needs the server the suite starts itself (it records that process's stamps), not --server"
        );
        // The open loop's options: the syncer, throughput and peers use them.
        at_least("--senders", self.senders, 1)?;
        ensure!(
            self.members >= 2,
            "--members must be at least 2 (a sender and a recipient), not {}",
            self.members
        );
        rate("--rate", self.rate)?;
        at_least("--messages", self.messages, 1)?;
        let max_rate = [Suite::Throughput, Suite::Nats, Suite::Redis];
        if max_rate.iter().any(|s| self.wants(*s)) {
            at_least("--max-messages", self.max_messages, 1)?;
            at_least("--max-senders", self.max_senders, 1)?;
        }
        if [Suite::Floors, Suite::Catchup]
            .iter()
            .chain(&max_rate)
            .any(|s| self.wants(*s))
        {
            window("--window", self.window)?;
        }
        if self.wants(Suite::Floors) {
            at_least("--sqlite-batch", self.sqlite_batch, 1)?;
            at_least("--echo-messages", self.echo_messages, 1)?;
            at_least("--sqlite-commits", self.sqlite_commits, 1)?;
            at_least("--sqlite-batches", self.sqlite_batches, 1)?;
        }
        if self.wants(Suite::Synapse) {
            rate("--synapse-rate", self.synapse_rate)?;
            at_least("--synapse-messages", self.synapse_messages, 1)?;
            window("--synapse-window", self.synapse_window)?;
        }
        if self.wants(Suite::Fanout) {
            ensure!(
                !self.fanout_sizes.is_empty() && self.fanout_sizes.iter().all(|&n| n >= 2),
                "--fanout-sizes must each be at least 2 (a sender and a member), not {:?}",
                self.fanout_sizes
            );
            at_least("--fanout-messages", self.fanout_messages, 1)?;
        }
        if self.wants(Suite::Catchup) {
            at_least("--catchup-messages", self.catchup_messages, 1)?;
        }
        if self.wants(Suite::Connections) {
            at_least("--connections", self.connections, 1)?;
            ensure!(
                self.ping_interval >= 1,
                "--ping-interval must be at least 1 second, not {}",
                self.ping_interval
            );
        }
        if self.wants(Suite::History) {
            at_least("--history-client", self.history_client, 2 * history::PAGE)?;
            ensure!(
                self.history_server >= self.history_client,
                "--history-server ({}) must be at least --history-client ({})",
                self.history_server,
                self.history_client
            );
            ensure!(
                self.history_conversations >= 1 || self.history_server == self.history_client,
                "--history-conversations must be at least 1 when --history-server is above --history-client"
            );
            rate("--history-rate", self.history_rate)?;
            at_least("--history-messages", self.history_messages, 1)?;
            at_least("--history-pages", self.history_pages, 1)?;
        }
        Ok(())
    }
}

/// The `--json` file: opened before the run, written after it. A file the
/// run created is removed again when the run ends without writing it
/// (interrupted, or stdout closed), rather than left empty; a file that
/// was there before keeps its old figures.
struct JsonOut {
    path: PathBuf,
    file: std::fs::File,
    created: bool,
    written: bool,
}

impl JsonOut {
    fn open(path: &Path) -> anyhow::Result<JsonOut> {
        let created = !path.exists();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("cannot write the JSON file {}", path.display()))?;
        Ok(JsonOut {
            path: path.to_path_buf(),
            file,
            created,
            written: false,
        })
    }

    fn write(&mut self, text: &str) -> anyhow::Result<()> {
        // A regular file loses its old figures; a device (`/dev/stdout`)
        // cannot be truncated and is just written.
        let regular = self.file.metadata().is_ok_and(|m| m.is_file());
        (if regular {
            self.file.set_len(0)
        } else {
            Ok(())
        })
        .and_then(|()| self.file.write_all(text.as_bytes()))
        .with_context(|| format!("cannot write {}", self.path.display()))?;
        self.written = true;
        Ok(())
    }
}

impl Drop for JsonOut {
    fn drop(&mut self) {
        if self.created && !self.written {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Slowest open-loop rate accepted (one message every 100 s).
const MIN_RATE: f64 = 0.01;
/// Fastest open-loop rate accepted.
const MAX_RATE: f64 = 10_000_000.0;
/// Most messages in flight on one connection at max rate.
const MAX_WINDOW: usize = 65_536;

/// Runs the selected suites.
pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    // The stamps file exists from the start (see `main`); it goes however
    // the run ends, refused or interrupted included.
    let _stamps = a.stages.then(|| RemoveOnDrop(stage_file()));
    a.validate()?;
    // Opened (not truncated) now, so that an unwritable path fails before
    // minutes of measuring rather than after; written at the end.
    let mut json = a.json.as_deref().map(JsonOut::open).transpose()?;
    // Listening from now on: a Ctrl-C that comes while a suite is busy is
    // kept and acted on at its next step, never lost to the default action.
    let mut stop = crate::stop_signals::StopSignals::listen()?;
    let tmp = tempfile::Builder::new()
        .prefix("chatsync-bench-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let bodies: Arc<[String]> = crate::demo::transcript::load(None, None)?
        .into_iter()
        .flat_map(|s| s.lines.into_iter().map(|l| l.text))
        .filter(|t| !t.is_empty())
        .collect();
    anyhow::ensure!(!bodies.is_empty(), "the corpus excerpt has no message");
    let machine = stats::Machine::probe(tmp.path());
    outln!(
        "chatsync bench on {} × {} ({:.0} GiB), disk {}, load average {} at start",
        machine.nproc,
        machine.cpu_model,
        machine.memory_gib,
        machine.disk,
        machine.loadavg_at_start
    )?;
    let mut report = report::Report::new(machine);
    let ctx = Ctx {
        args: a.clone(),
        tmp: tmp.path().to_path_buf(),
        bodies,
        progress: MultiProgress::new(),
    };

    let mut failed = Vec::new();
    // Ctrl-C stops the run cleanly: the suite in progress is dropped (its
    // server processes are killed) and the temporary directory, which may
    // hold gigabytes of stores, is removed on the way out.
    let suites = async {
        macro_rules! suite {
            ($s:expr, $name:literal, $call:expr) => {
                if a.wants($s) {
                    match $call.await {
                        Ok(()) => {}
                        // Nobody reads the tables any more: stop.
                        Err(e) if crate::output::stdout_closed(&e) => return Err(e),
                        Err(e) => {
                            let why = crate::output::error_line(&e);
                            eprintln!("bench suite {}: error: {why}", $name);
                            report.add($name, serde_json::json!({ "error": why }));
                            failed.push($name);
                        }
                    }
                }
            };
        }
        suite!(Suite::Floors, "floors", floors::run(&ctx, &mut report));
        suite!(Suite::Syncer, "syncer", syncer::run(&ctx, &mut report));
        suite!(
            Suite::Throughput,
            "throughput",
            throughput::run(&ctx, &mut report)
        );
        suite!(Suite::Nats, "nats", peers::nats::run(&ctx, &mut report));
        suite!(Suite::Redis, "redis", peers::redis::run(&ctx, &mut report));
        suite!(
            Suite::Synapse,
            "synapse",
            peers::synapse::run(&ctx, &mut report)
        );
        suite!(Suite::Fanout, "fanout", fanout::run(&ctx, &mut report));
        suite!(Suite::Catchup, "catchup", catchup::run(&ctx, &mut report));
        suite!(
            Suite::Connections,
            "connections",
            connections::run(&ctx, &mut report)
        );
        suite!(Suite::History, "history", history::run(&ctx, &mut report));
        anyhow::Ok(())
    };
    tokio::select! {
        done = suites => done?,
        (how, code) = stop.recv() => {
            eprintln!("bench: {how}; removing {}", tmp.path().display());
            return Ok(ExitCode::from(code));
        }
    }

    report.finish(a.wants_every_suite())?;
    if let Some(out) = json.as_mut() {
        out.write(&serde_json::to_string_pretty(&report)?)?;
        outln!("figures written to {}", out.path.display())?;
    }
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("suites that failed: {}", failed.join(", "));
        Ok(ExitCode::FAILURE)
    }
}
