//! `chatsync chaos`: a fault-injection run against a real server.
//!
//! A real `chatsync server` process (or an existing deployment), several
//! real client processes (`chatsync chaos-agent`, each the full client
//! library with its own SQLite data directory), each connected through its
//! own frame-aware fault proxy ([`proxy`]). A seeded workload of sends,
//! edits, reactions and read marks runs while a seeded schedule of faults
//! ([`faults`]) drops, holds and delays frames, cuts connections, and
//! SIGKILLs clients and the server. Then everything is healed, the run
//! waits for the system to settle, and every invariant is checked from what
//! each client and the server stored ([`report`]).

mod agent;
mod faults;
mod proxy;
mod report;

pub use agent::{run as run_agent, Args as AgentArgs};

use crate::server_process::Spawned;
use crate::trace::Recorder;
use crate::verify::Sent;
use agent::{Agent, CallError, Cmd, Dump, Unsettled};
use anyhow::Context;
use chatsync_protocol::{ConversationId, MessageId};
use faults::{Fault, FaultLog, Knobs, Schedule, Target, KINDS};
use proxy::FaultProxy;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

const ABOUT: &str = "\
Run a fault-injection drill: real client processes talk through frame-aware \
fault proxies to a real server while faults are injected, then every \
invariant is checked from what the clients and the server stored.

What runs:
  * a `chatsync server` in its own process (data in --data or a temporary
    directory), or the deployment given with --server;
  * --clients client processes (hidden `chatsync chaos-agent` mode), each the
    full client library with its own SQLite data directory, each connected
    through its own fault proxy on loopback; they share a group conversation
    and, with three or more clients, a ring of one-to-one conversations;
  * a seeded workload (--seed) of sends, edits, reactions and read marks,
    --rate operations per second per client, for --duration seconds or until
    --messages messages were sent.

Faults (a seeded schedule, about one every --fault-every-ms; the first ones
cover every kind once, so even a short run injects each kind):
  drop-ack     the ack of one chosen message is dropped, the link stays up
               (the client must resend after its ack timeout)
  hold-ack     the ack of one chosen message is held 0.3-4.5 s; frames behind
               it wait, as behind a stalled TCP segment
  drop+cut     a chosen frame (send, ack, message, received, marks, hello,
               welcome, batch) is dropped and the connection cut
  cut-after    the connection is cut right after a chosen frame went through
               (e.g. the server got a send, the client never gets its ack)
  cut          the connection is cut now
  delay        every frame delayed 0-150 ms plus up to 400 ms jitter, order
               kept, for 1-4 s
  black-hole   one direction swallows every frame for 0.3-3 s, then the
               connection is cut (a stream cannot skip data)
  kill-client  the client process gets SIGKILL at a random moment and is
               started again from the same data directory 0.05-1.5 s later
  kill-server  the server process gets SIGKILL and is started again on the
               same port and data 0.05-1.5 s later (not with --server)
A cut closes both TCP connections without a WebSocket close frame. Clients
are separate processes because a process kill is the honest test: nothing
runs after SIGKILL, so only what the client had committed to SQLite
survives, exactly as when a phone kills an app.

At the end every fault is healed, dead processes are started again, and the
run waits (at most --settle-timeout) until nothing is Sending, every message
is Success and every device has caught up. Then the server is stopped (kill
-9 too) and its SQLite database is read; with --server, its history is read
through a fresh device of each account instead (what any new device would
receive; actions are then only checked on the devices).

The report counts sent, acknowledged (In-Flight seen), delivered, lost,
duplicated, reordered, stuck (still Sending), failed, statuses that moved
back, edits and reactions that do not match, the longest time a message
stayed Sending, and the faults injected by kind. The last two lines,
`chaos-result:` and `chaos-faults:`, are key=value pairs for scripts. The
exit status is 1 if any invariant was violated.

The fault plan is a function of --seed and the knobs; which frame a fault
hits depends on timing, so a replay repeats the plan, not every frame.";

/// Arguments of `chaos`.
#[derive(clap::Args)]
#[command(after_long_help = ABOUT)]
pub struct Args {
    /// Seconds of workload while faults are injected (settling comes after).
    #[arg(long, default_value_t = 15)]
    duration: u64,
    /// Stop the workload once this many messages were sent (or when
    /// --duration is over, whichever comes first).
    #[arg(long)]
    messages: Option<usize>,
    /// Seed of the workload and the fault schedule (default: random; it is
    /// printed so a run can be repeated).
    #[arg(long)]
    seed: Option<u64>,
    /// Number of client processes (at least 2).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(2..=64))]
    clients: u64,
    /// Operations (send, edit, react, mark read) per second per client.
    #[arg(long, default_value_t = 5.0)]
    rate: f64,
    /// Mean time between two faults, in ms.
    #[arg(long, default_value_t = 600)]
    fault_every_ms: u64,
    /// Leave out a kind of fault (repeatable), e.g. --no-fault kill-server.
    #[arg(long = "no-fault", value_name = "KIND",
          value_parser = clap::builder::PossibleValuesParser::new(KINDS))]
    no_fault: Vec<String>,
    /// No faults at all: a baseline run through the same proxies.
    #[arg(long)]
    calm: bool,
    /// Drill an existing server at HOST:PORT (plain ws) instead of starting
    /// one; accounts get unique names, and server kills are disabled.
    #[arg(long, value_name = "HOST:PORT")]
    server: Option<String>,
    /// Directory for the server's and the clients' data (default: a new
    /// temporary directory, deleted at the end unless --keep).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Keep the temporary data directory (its path is printed).
    #[arg(long)]
    keep: bool,
    /// Seconds to wait, after healing, for everything to settle.
    #[arg(long, default_value_t = 60)]
    settle_timeout: u64,
    /// The clients' ack timeout in ms: with no answer for this long they
    /// resend (the library's default is 10000; shorter makes a dropped ack
    /// recover within a short run).
    #[arg(long, default_value_t = 3000)]
    ack_timeout_ms: u64,
    /// The clients' longest reconnect backoff, in ms.
    #[arg(long, default_value_t = 2000)]
    reconnect_cap_ms: u64,
    /// Print progress summaries only, not a line per fault.
    #[arg(long, short)]
    quiet: bool,
}

const PASSWORD: &str = "chaos-password-1";

/// A conversation of the run.
#[derive(Clone, Debug)]
pub struct Conv {
    /// Id.
    pub id: ConversationId,
    /// Member clients, by index; the first created it.
    pub members: Vec<usize>,
}

/// What the workload did, to compare with what was stored.
#[derive(Default)]
pub struct Model {
    /// Messages whose `send` returned, with the sender's index.
    pub sent: Vec<(usize, Sent)>,
    /// Sends interrupted by a kill of their client: (client, conversation,
    /// body, how many sends had returned before it). Committed or not,
    /// nobody knows until the end.
    pub in_doubt: Vec<(usize, ConversationId, String, usize)>,
    /// Per message: its text, then each edit, with whether the call
    /// returned (`true`) or was interrupted by a kill (`false`).
    pub bodies: BTreeMap<MessageId, Vec<(String, bool)>>,
    /// Actions (edits that left the device, reactions) with their client.
    pub actions: Vec<(usize, MessageId)>,
    /// Reaction toggles per (message, client, emoji), with certainty.
    pub reactions: BTreeMap<(MessageId, usize, String), Vec<(bool, bool)>>,
    /// Operations by kind: sends, edits, reactions, read marks.
    pub ops: BTreeMap<&'static str, usize>,
    /// Operations interrupted by a kill, by kind.
    pub interrupted: BTreeMap<&'static str, usize>,
    /// Operations the client refused (never expected).
    pub errors: Vec<String>,
}

/// Everything the run drives.
struct Rig {
    seed: u64,
    agents: Vec<Arc<Agent>>,
    proxies: Vec<FaultProxy>,
    server: Option<tokio::sync::Mutex<Spawned>>,
    server_down: AtomicBool,
    convs: Vec<Conv>,
    log: Arc<FaultLog>,
    recorder: Recorder,
    model: Mutex<Model>,
    stop: AtomicBool,
    rate: f64,
    messages: Option<usize>,
}

impl Rig {
    fn model(&self) -> std::sync::MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ids of the actions client `client` made.
    fn actions_of(&self, client: usize) -> Vec<MessageId> {
        self.model()
            .actions
            .iter()
            .filter(|(c, _)| *c == client)
            .map(|(_, id)| *id)
            .collect()
    }

    fn convs_of(&self, client: usize) -> Vec<ConversationId> {
        self.convs
            .iter()
            .filter(|c| c.members.contains(&client))
            .map(|c| c.id)
            .collect()
    }

    /// Starts client `i` again from its data directory and resubscribes.
    async fn restart_client(&self, i: usize) -> anyhow::Result<()> {
        let agent = &self.agents[i];
        agent.start(None).await?;
        for conv in self.convs_of(i) {
            agent
                .call_as::<serde_json::Value>(Cmd::Watch { conv })
                .await?;
        }
        Ok(())
    }
}

/// Runs the drill.
pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let seed = a.seed.unwrap_or_else(|| fastrand::u64(1..1_000_000));
    let clients = usize::try_from(a.clients).unwrap_or(2);
    let mut tmp = None;
    let root = match &a.data {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            dir.clone()
        }
        None => {
            let dir = tempfile::Builder::new()
                .prefix("chatsync-chaos-")
                .tempdir()?;
            let path = dir.path().to_path_buf();
            tmp = Some(dir);
            path
        }
    };
    let log = Arc::new(FaultLog::new(a.quiet));
    println!(
        "chatsync chaos: seed {seed}, {clients} client processes, {}, data in {}",
        match a.messages {
            Some(n) => format!("{n} messages or {} s", a.duration),
            None => format!("{} s of workload", a.duration),
        },
        root.display()
    );

    // The server.
    let (server, upstream) = match &a.server {
        Some(addr) => {
            println!("target: the existing server at ws://{addr} (server kills are disabled)");
            (None, addr.clone())
        }
        None => {
            let s = Spawned::start_with(&root.join("server"), "127.0.0.1:0", &[]).await?;
            println!(
                "server: its own process on ws://{} (data in {})",
                s.addr,
                root.join("server").display()
            );
            let addr = s.addr.clone();
            (Some(tokio::sync::Mutex::new(s)), addr)
        }
    };

    // Accounts, proxies and client processes.
    let prefix = match &a.server {
        Some(_) => format!("chaos{seed}x{:04x}", fastrand::u16(..)),
        None => "chaos".to_string(),
    };
    let recorder = Recorder::default();
    let mut agents = Vec::new();
    let mut proxies = Vec::new();
    for i in 0..clients {
        let name = format!("{prefix}-u{}", i + 1);
        chatsync_client::register(&upstream, &name, PASSWORD)
            .await
            .with_context(|| format!("cannot register {name} on {upstream}"))?;
        let proxy = FaultProxy::start(&name, &upstream, seed ^ (i as u64 + 1), log.clone()).await?;
        let agent = Agent::new(
            &name,
            &root.join("clients").join(&name),
            seed.wrapping_mul(31).wrapping_add(i as u64),
            a.ack_timeout_ms,
            a.reconnect_cap_ms,
            recorder.clone(),
        );
        agent
            .start(Some((&proxy.addr.to_string(), PASSWORD)))
            .await?;
        agents.push(Arc::new(agent));
        proxies.push(proxy);
    }
    println!(
        "{clients} clients logged in, each a process with its own SQLite storage behind its own fault proxy"
    );

    // Conversations: everyone, and a ring of pairs.
    let mut plan: Vec<Vec<usize>> = vec![(0..clients).collect()];
    if clients >= 3 {
        plan.extend((0..clients).map(|i| vec![i, (i + 1) % clients]));
    }
    let mut convs = Vec::new();
    for (n, members) in plan.into_iter().enumerate() {
        let others = members[1..]
            .iter()
            .map(|&m| agents[m].name.clone())
            .collect();
        let id: ConversationId = agents[members[0]]
            .call_as(Cmd::Create {
                title: format!("chaos-{n}"),
                members: others,
            })
            .await?;
        for &m in &members {
            agents[m]
                .call_as::<serde_json::Value>(Cmd::Known { conv: id })
                .await?;
            agents[m]
                .call_as::<serde_json::Value>(Cmd::Watch { conv: id })
                .await?;
        }
        convs.push(Conv { id, members });
    }
    println!("{} conversations", convs.len());

    let mut disabled: Vec<&'static str> = KINDS
        .iter()
        .copied()
        .filter(|k| a.no_fault.iter().any(|n| n == k))
        .collect();
    if a.server.is_some() {
        disabled.push("kill-server");
    }
    let rig = Arc::new(Rig {
        seed,
        agents,
        proxies,
        server,
        server_down: AtomicBool::new(false),
        convs,
        log: log.clone(),
        recorder,
        model: Mutex::new(Model::default()),
        stop: AtomicBool::new(false),
        rate: a.rate.max(0.1),
        messages: a.messages,
    });

    // Workload, faults and progress.
    log.restart_clock();
    let work_start = Instant::now();
    let workers: Vec<JoinHandle<()>> = (0..clients)
        .map(|i| tokio::spawn(workload(rig.clone(), i)))
        .collect();
    let restarts: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
    let injector = (!a.calm).then(|| {
        let knobs = Knobs {
            clients,
            every: Duration::from_millis(a.fault_every_ms),
            disabled,
        };
        tokio::spawn(inject(rig.clone(), knobs, work_start, restarts.clone()))
    });
    let end = work_start + Duration::from_secs(a.duration);
    let mut last_progress = Instant::now();
    while Instant::now() < end && !rig.stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if last_progress.elapsed() >= Duration::from_secs(2) {
            last_progress = Instant::now();
            progress(&rig);
        }
    }
    rig.stop.store(true, Ordering::SeqCst);

    // Heal.
    log.note("workload over; healing every fault");
    for w in workers {
        let _ = w.await;
    }
    if let Some(i) = injector {
        let _ = i.await;
    }
    let pending: Vec<JoinHandle<()>> =
        std::mem::take(&mut *restarts.lock().unwrap_or_else(|p| p.into_inner()));
    for r in pending {
        let _ = r.await;
    }
    for p in &rig.proxies {
        p.heal();
    }
    if let Some(s) = &rig.server {
        let mut s = s.lock().await;
        if rig.server_down.load(Ordering::SeqCst) {
            s.start_again().await?;
            rig.server_down.store(false, Ordering::SeqCst);
        }
    }
    for (i, agent) in rig.agents.iter().enumerate() {
        if agent
            .call(Cmd::Settled {
                convs: Vec::new(),
                actions: Vec::new(),
            })
            .await
            .is_err()
        {
            rig.restart_client(i).await?;
        }
        agent.down.store(false, Ordering::SeqCst);
    }
    let settle_start = Instant::now();
    log.note(&format!(
        "healed; waiting for every message to settle (at most {} s)",
        a.settle_timeout
    ));
    let leftovers = settle(&rig, Duration::from_secs(a.settle_timeout)).await?;
    let settle_time = settle_start.elapsed();
    progress(&rig);
    if leftovers.is_empty() {
        log.note(&format!("settled in {:.1}s", settle_time.as_secs_f64()));
    } else {
        log.note(&format!(
            "NOT settled after {} s: {}",
            a.settle_timeout,
            leftovers.join("; ")
        ));
    }

    // Collect what every client stored, then what the server stored.
    let mut dumps = Vec::new();
    for (i, agent) in rig.agents.iter().enumerate() {
        let actions = rig.actions_of(i);
        let dump: Dump = agent
            .call_as(Cmd::Dump {
                convs: rig.convs_of(i),
                actions,
            })
            .await?;
        dumps.push(dump);
    }
    for agent in &rig.agents {
        agent.kill().await;
    }
    let conv_ids: Vec<ConversationId> = rig.convs.iter().map(|c| c.id).collect();
    let (history, actions_on_server) = match &rig.server {
        Some(s) => {
            s.lock().await.kill().await;
            let store = chatsync_server::open_store(&root.join("server"))
                .context("cannot open the server's database")?;
            (crate::verify::read_history(&store, &conv_ids)?, true)
        }
        None => (
            report::audit_history(&upstream, &rig, &root.join("audit"), PASSWORD).await?,
            false,
        ),
    };

    let users: Vec<Option<chatsync_protocol::UserId>> = rig
        .agents
        .iter()
        .map(|a| *a.user.lock().unwrap_or_else(|p| p.into_inner()))
        .collect();
    let model = std::mem::take(&mut *rig.model());
    let outcome = report::check(report::Input {
        history: &history,
        actions_on_server,
        model: &model,
        convs: &rig.convs,
        names: rig.agents.iter().map(|a| a.name.clone()).collect(),
        users,
        dumps: &dumps,
        traces: &rig.recorder.snapshot(),
        leftovers,
        faults: log.counts(),
        now: Instant::now(),
    });
    report::print(
        &outcome,
        seed,
        started.elapsed(),
        settle_time,
        a.server.is_some(),
    );
    if let Some(dir) = tmp.take().filter(|_| a.keep) {
        println!("data kept in {}", dir.keep().display());
    }
    Ok(if outcome.violations() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Waits until no client has anything unsettled; returns what is left
/// when the time is up (empty when everything settled).
async fn settle(rig: &Rig, timeout: Duration) -> anyhow::Result<Vec<String>> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut left = Vec::new();
        for (i, agent) in rig.agents.iter().enumerate() {
            let actions = rig.actions_of(i);
            let u: Unsettled = agent
                .call_as(Cmd::Settled {
                    convs: rig.convs_of(i),
                    actions,
                })
                .await?;
            if u.sending > 0 {
                left.push(format!("{}: {} still Sending", agent.name, u.sending));
            }
            if let Some(first) = u.waiting.first() {
                left.push(format!(
                    "{}: {first}{}",
                    agent.name,
                    if u.waiting.len() > 1 {
                        format!(" (+{} more)", u.waiting.len() - 1)
                    } else {
                        String::new()
                    }
                ));
            }
        }
        if left.is_empty() || Instant::now() >= deadline {
            return Ok(left);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Words the workload builds messages from: ASCII, accents (composed and
/// decomposed), right-to-left text, emoji with joiners.
const WORDS: &[&str] = &[
    "hello",
    "lunch",
    "at",
    "noon",
    "café",
    "naïve",
    "e\u{301}",
    "שלום",
    "🍜",
    "👋",
    "👨\u{200d}👩\u{200d}👧",
    "ok",
    "see",
    "you",
    "soon",
    "🇫🇷",
    "tomorrow",
    "?",
    "!",
];
const EMOJI: &[&str] = &["👍", "❤️", "😂", "🎉", "👨\u{200d}💻"];

/// One client's workload: an operation every 1/rate s (jittered).
async fn workload(rig: Arc<Rig>, i: usize) {
    let mut rng = fastrand::Rng::with_seed(rig.seed ^ (0x9E37_79B9 * (i as u64 + 1)));
    let agent = rig.agents[i].clone();
    let convs = rig.convs_of(i);
    let gap = Duration::from_secs_f64(1.0 / rig.rate);
    let mut next = tokio::time::Instant::now();
    let mut k = 0usize;
    while !rig.stop.load(Ordering::SeqCst) {
        next += gap.mul_f64(0.5 + rng.f64());
        tokio::time::sleep_until(next).await;
        if rig.stop.load(Ordering::SeqCst) {
            break;
        }
        if agent.down.load(Ordering::SeqCst) {
            continue; // a killed app does nothing
        }
        if let Some(limit) = rig.messages {
            if rig.model().sent.len() >= limit {
                rig.stop.store(true, Ordering::SeqCst);
                break;
            }
        }
        let roll = rng.u32(0..10);
        if roll < 6 || rig.model().sent.is_empty() {
            k += 1;
            let conv = convs[rng.usize(0..convs.len())];
            let words: Vec<&str> = (0..rng.usize(1..8))
                .map(|_| WORDS[rng.usize(0..WORDS.len())])
                .collect();
            let body = format!("{} #{k} {}", agent.name, words.join(" "));
            let t0 = Instant::now();
            match agent
                .call_as_result::<MessageId>(Cmd::Send {
                    conv,
                    body: body.clone(),
                })
                .await
            {
                Ok(id) => {
                    let t1 = Instant::now();
                    rig.recorder.with(id, |t| {
                        t.started = Some(t0);
                        t.durable = Some(t1);
                    });
                    let mut m = rig.model();
                    *m.ops.entry("send").or_default() += 1;
                    m.bodies.insert(id, vec![(body.clone(), true)]);
                    m.sent.push((
                        i,
                        Sent {
                            id,
                            conversation: conv,
                            sender: agent.name.clone(),
                            body,
                        },
                    ));
                }
                Err(CallError::Gone) => {
                    let mut m = rig.model();
                    *m.interrupted.entry("send").or_default() += 1;
                    let before = m.sent.len();
                    m.in_doubt.push((i, conv, body, before));
                }
                Err(CallError::Failed(e)) => rig.model().errors.push(format!("send: {e}")),
            }
        } else if roll < 7 {
            // Edit one of this client's recent messages.
            let target = {
                let m = rig.model();
                let own: Vec<MessageId> = m
                    .sent
                    .iter()
                    .rev()
                    .filter(|(c, _)| *c == i)
                    .take(20)
                    .map(|(_, s)| s.id)
                    .collect();
                (!own.is_empty()).then(|| own[rng.usize(0..own.len())])
            };
            let Some(target) = target else { continue };
            k += 1;
            let body = format!(
                "{} edit #{k} {}",
                agent.name,
                WORDS[rng.usize(0..WORDS.len())]
            );
            let r = agent
                .call_as_result::<Option<MessageId>>(Cmd::Edit {
                    id: target,
                    body: body.clone(),
                })
                .await;
            let mut m = rig.model();
            match r {
                Ok(action) => {
                    *m.ops.entry("edit").or_default() += 1;
                    m.bodies.entry(target).or_default().push((body, true));
                    if let Some(action) = action {
                        m.actions.push((i, action));
                    }
                }
                Err(CallError::Gone) => {
                    *m.interrupted.entry("edit").or_default() += 1;
                    m.bodies.entry(target).or_default().push((body, false));
                }
                Err(CallError::Failed(e)) => m.errors.push(format!("edit: {e}")),
            }
        } else if roll < 8 {
            // React to a message this client's device holds: its own once
            // the server has it, another's once it is Success (every member
            // has it stored).
            let target = {
                let m = rig.model();
                let candidates: Vec<MessageId> = m
                    .sent
                    .iter()
                    .rev()
                    .filter(|(_, s)| convs.contains(&s.conversation))
                    .take(30)
                    .filter(|(from, s)| {
                        rig.recorder.with(s.id, |t| {
                            t.success.is_some() || (*from == i && t.in_flight.is_some())
                        })
                    })
                    .map(|(_, s)| s.id)
                    .collect();
                (!candidates.is_empty()).then(|| candidates[rng.usize(0..candidates.len())])
            };
            let Some(target) = target else { continue };
            let emoji = EMOJI[rng.usize(0..EMOJI.len())].to_string();
            let key = (target, i, emoji.clone());
            let on = !rig
                .model()
                .reactions
                .get(&key)
                .and_then(|v| v.last())
                .is_some_and(|(on, _)| *on);
            let r = agent
                .call_as_result::<MessageId>(Cmd::React {
                    id: target,
                    emoji,
                    on,
                })
                .await;
            let mut m = rig.model();
            match r {
                Ok(action) => {
                    *m.ops.entry("react").or_default() += 1;
                    m.actions.push((i, action));
                    m.reactions.entry(key).or_default().push((on, true));
                }
                Err(CallError::Gone) => {
                    *m.interrupted.entry("react").or_default() += 1;
                    m.reactions.entry(key).or_default().push((on, false));
                }
                Err(CallError::Failed(e)) => m.errors.push(format!("react: {e}")),
            }
        } else {
            let conv = convs[rng.usize(0..convs.len())];
            match agent
                .call_as_result::<serde_json::Value>(Cmd::Read { conv })
                .await
            {
                Ok(_) => *rig.model().ops.entry("read").or_default() += 1,
                Err(CallError::Gone) => *rig.model().interrupted.entry("read").or_default() += 1,
                Err(CallError::Failed(e)) => rig.model().errors.push(format!("read: {e}")),
            }
        }
    }
}

/// Injects the schedule's faults until the workload stops.
async fn inject(
    rig: Arc<Rig>,
    knobs: Knobs,
    start: Instant,
    restarts: Arc<Mutex<Vec<JoinHandle<()>>>>,
) {
    for planned in Schedule::new(rig.seed, knobs) {
        let at = tokio::time::Instant::from_std(start + planned.at);
        while tokio::time::Instant::now() < at {
            if rig.stop.load(Ordering::SeqCst) {
                return;
            }
            tokio::time::sleep_until(
                at.min(tokio::time::Instant::now() + Duration::from_millis(50)),
            )
            .await;
        }
        if rig.stop.load(Ordering::SeqCst) {
            return;
        }
        let i = match planned.target {
            Target::Client(i) => i,
            Target::Server => 0,
        };
        tracing::debug!("fault {} on {:?}", planned.fault.kind(), planned.target);
        let proxy = &rig.proxies[i];
        let name = rig.agents[i].name.clone();
        match planned.fault {
            Fault::Frame(f) => proxy.arm(f),
            Fault::Cut => {
                if proxy.cut_all() > 0 {
                    rig.log.fired("cut", &name, "cut the connection".into());
                }
            }
            Fault::Delay {
                base,
                jitter,
                window,
            } => proxy.delay(base, jitter, window),
            Fault::BlackHole { dir, window } => proxy.black_hole(dir, window),
            Fault::KillClient { down } => {
                if rig.agents[i].down.swap(true, Ordering::SeqCst) {
                    continue;
                }
                let rig = rig.clone();
                let task = tokio::spawn(async move {
                    let agent = rig.agents[i].clone();
                    agent.kill().await;
                    rig.log.fired(
                        "kill-client",
                        &agent.name,
                        format!("SIGKILL; restarting in {:.2}s", down.as_secs_f64()),
                    );
                    tokio::time::sleep(down).await;
                    match rig.restart_client(i).await {
                        Ok(()) => rig.log.detail(&format!("{} is back", agent.name)),
                        Err(e) => rig
                            .log
                            .note(&format!("{} did not restart: {e:#}", agent.name)),
                    }
                    agent.down.store(false, Ordering::SeqCst);
                });
                restarts
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(task);
            }
            Fault::KillServer { down } => {
                if rig.server.is_none() || rig.server_down.swap(true, Ordering::SeqCst) {
                    continue;
                }
                let rig = rig.clone();
                let task = tokio::spawn(async move {
                    let Some(server) = &rig.server else { return };
                    let mut s = server.lock().await;
                    s.kill().await;
                    rig.log.fired(
                        "kill-server",
                        "server",
                        format!("SIGKILL; restarting in {:.2}s", down.as_secs_f64()),
                    );
                    tokio::time::sleep(down).await;
                    match s.start_again().await {
                        Ok(()) => {
                            rig.server_down.store(false, Ordering::SeqCst);
                            rig.log.detail("server is back on the same port and data");
                        }
                        Err(e) => rig.log.note(&format!("server did not restart: {e:#}")),
                    }
                });
                restarts
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(task);
            }
        }
    }
}

/// One progress line: messages by status, actions, faults, who is up.
fn progress(rig: &Rig) {
    use chatsync_client::Status;
    let traces = rig.recorder.snapshot();
    let m = rig.model();
    let mut counts = [0usize; 4];
    for (_, s) in &m.sent {
        let i = match traces.get(&s.id).and_then(|t| t.statuses.last()) {
            Some(Status::Sending) | None => 0,
            Some(Status::InFlight) => 1,
            Some(Status::Success | Status::Read) => 2,
            Some(Status::Failed) => 3,
        };
        counts[i] += 1;
    }
    let faults: usize = rig.log.counts().values().sum();
    let up = rig
        .agents
        .iter()
        .filter(|a| !a.down.load(Ordering::SeqCst))
        .count();
    let server = match (&rig.server, rig.server_down.load(Ordering::SeqCst)) {
        (None, _) => "remote",
        (Some(_), false) => "up",
        (Some(_), true) => "DOWN",
    };
    rig.log.note(&format!(
        "sent {:>4}  ◌ {:>3}  ✓ {:>3}  ✓✓ {:>4}  ! {}   edits {} reactions {} reads {}   faults {faults}   server {server}, clients {up}/{} up",
        m.sent.len(),
        counts[0],
        counts[1],
        counts[2],
        counts[3],
        m.ops.get("edit").unwrap_or(&0),
        m.ops.get("react").unwrap_or(&0),
        m.ops.get("read").unwrap_or(&0),
        rig.agents.len()
    ));
}
