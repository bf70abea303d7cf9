//! Chaos clients as processes: the hidden `chatsync chaos-agent`
//! subcommand (one real client library instance with its own SQLite data
//! directory) and the handle `chatsync chaos` drives it with.
//!
//! Running each client in its own process is what lets chaos kill it
//! honestly: SIGKILL at any instant, with no destructor, no graceful close
//! and no chance to flush anything that was not already committed.
//!
//! The agent reads one JSON command per line on stdin and answers one JSON
//! line on stdout (`done` or `error`, with the command's `req`); in between
//! it reports every status its subscriptions show for its own messages.
//! It exits when stdin closes.

use crate::trace::Recorder;
use anyhow::Context;
use chatsync_client::core::Config;
use chatsync_client::{Client, Conversation, Item, Status, TimelineChange};
use chatsync_protocol::{ConversationId, MessageId, Seq, UserId};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::oneshot;

/// Arguments of the hidden `chaos-agent` subcommand (started by `chaos`).
#[derive(clap::Args)]
pub struct Args {
    /// Client data directory.
    #[arg(long)]
    data: PathBuf,
    /// Log in first, through this `host:port` (the client's proxy), and
    /// store the session; without it, open the session already stored.
    #[arg(long)]
    login: Option<String>,
    /// Account name (with --login).
    #[arg(long, default_value = "")]
    user: String,
    /// Password (with --login).
    #[arg(long, default_value = "")]
    password: String,
    /// Seed of the client's retry jitter.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Client ack timeout, in ms.
    #[arg(long, default_value_t = 3000)]
    ack_timeout_ms: u64,
    /// Longest reconnect backoff, in ms.
    #[arg(long, default_value_t = 2000)]
    reconnect_cap_ms: u64,
}

/// A command to an agent.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Cmd {
    /// Create a conversation (needs a connection); answers its id.
    Create {
        /// Title.
        title: String,
        /// Other members' account names.
        members: Vec<String>,
    },
    /// Wait (up to 15 s) until this device knows the conversation.
    Known {
        /// Conversation.
        conv: ConversationId,
    },
    /// Subscribe and report the statuses of own messages.
    Watch {
        /// Conversation.
        conv: ConversationId,
    },
    /// `send`; answers the id.
    Send {
        /// Conversation.
        conv: ConversationId,
        /// Text.
        body: String,
    },
    /// `edit`; answers the edit's id, or null when rewritten in place.
    Edit {
        /// Message.
        id: MessageId,
        /// New text.
        body: String,
    },
    /// `react`; answers the reaction's id.
    React {
        /// Message.
        id: MessageId,
        /// Emoji.
        emoji: String,
        /// Set or remove.
        on: bool,
    },
    /// `mark_read` up to the newest confirmed message; answers the seq.
    Read {
        /// Conversation.
        conv: ConversationId,
    },
    /// Reports what is not settled yet (see [`Unsettled`]).
    Settled {
        /// Conversations to look at.
        convs: Vec<ConversationId>,
        /// Own actions to look at.
        actions: Vec<MessageId>,
    },
    /// Everything stored about these conversations and actions (see
    /// [`Dump`]).
    Dump {
        /// Conversations.
        convs: Vec<ConversationId>,
        /// Own actions.
        actions: Vec<MessageId>,
    },
}

/// A command with its correlation number, as written to the agent.
#[derive(Serialize, Deserialize)]
struct Request {
    req: u64,
    #[serde(flatten)]
    cmd: Cmd,
}

/// A line from the agent.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
enum Event {
    /// The client is open.
    Ready { user: UserId },
    /// A command succeeded.
    Done { req: u64, value: serde_json::Value },
    /// A command failed.
    Error { req: u64, message: String },
    /// An own message's status, as the subscription showed it.
    Status {
        id: MessageId,
        status: Status,
        failure: Option<String>,
    },
}

/// What an agent has not settled yet.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Unsettled {
    /// Own messages and actions still Sending.
    pub sending: usize,
    /// One line per other thing not settled (In-Flight, a cursor behind).
    pub waiting: Vec<String>,
}

/// What an agent stored.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Dump {
    /// Each conversation's timeline (`Client::page` of all of it).
    pub views: Vec<(ConversationId, Vec<Item>)>,
    /// Each asked action as stored (None when unknown).
    pub actions: Vec<(MessageId, Option<Item>)>,
    /// The conversations as this device knows them.
    pub conversations: Vec<Conversation>,
}

/// Writes one line to stdout; a parent that went away ends the agent.
fn emit(event: &Event) {
    let Ok(line) = serde_json::to_string(event) else {
        return;
    };
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        std::process::exit(0);
    }
}

/// Runs an agent until stdin closes.
pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    let config = Config {
        reconnect_base: Duration::from_millis(100),
        reconnect_cap: Duration::from_millis(a.reconnect_cap_ms),
        ack_timeout: Duration::from_millis(a.ack_timeout_ms),
        seed: a.seed,
        ..Config::default()
    };
    let client = match &a.login {
        Some(server) => {
            Client::login_with(&a.data, server, &a.user, &a.password, "chaos", config).await?
        }
        None => Client::open_with(&a.data, config).await?,
    };
    emit(&Event::Ready {
        user: client.user(),
    });
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let Request { req, cmd } = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => anyhow::bail!("bad command {line:?}: {e}"),
        };
        match handle(&client, cmd).await {
            Ok(value) => emit(&Event::Done { req, value }),
            Err(e) => emit(&Event::Error {
                req,
                message: format!("{e:#}"),
            }),
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn handle(client: &Client, cmd: Cmd) -> anyhow::Result<serde_json::Value> {
    let value = match cmd {
        Cmd::Create { title, members } => {
            client
                .wait_connected(Duration::from_secs(15))
                .await
                .context("no connection")?;
            let members: Vec<&str> = members.iter().map(String::as_str).collect();
            serde_json::to_value(client.create_conversation(&title, &members).await?.id)?
        }
        Cmd::Known { conv } => {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
            loop {
                if client.conversations().await?.iter().any(|c| c.id == conv) {
                    break;
                }
                anyhow::ensure!(
                    tokio::time::Instant::now() < deadline,
                    "conversation {conv} never showed up"
                );
                if client
                    .wait_connected(Duration::from_millis(200))
                    .await
                    .is_ok()
                {
                    let _ = client.refresh_conversations().await;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            serde_json::Value::Null
        }
        Cmd::Watch { conv } => {
            let mut timeline = client.subscribe(conv, 1 << 20).await?;
            for item in timeline.snapshot.iter().filter(|i| i.own) {
                report_status(item.id, item.status, item.failure.as_ref());
            }
            tokio::spawn(async move {
                while let Some(change) = timeline.changes.recv().await {
                    match change {
                        TimelineChange::Upserted(item) if item.own && item.action.is_none() => {
                            report_status(item.id, item.status, item.failure.as_ref());
                        }
                        TimelineChange::StatusChanged {
                            id,
                            status,
                            failure,
                        } => report_status(id, status, failure.as_ref()),
                        _ => {}
                    }
                }
            });
            serde_json::Value::Null
        }
        Cmd::Send { conv, body } => serde_json::to_value(client.send(conv, body).await?)?,
        Cmd::Edit { id, body } => serde_json::to_value(client.edit(id, body).await?)?,
        Cmd::React { id, emoji, on } => serde_json::to_value(client.react(id, &emoji, on).await?)?,
        Cmd::Read { conv } => {
            let newest = client.page(conv, None, 1).await?;
            let seq = newest
                .iter()
                .filter_map(|i| i.seq)
                .max()
                .unwrap_or(Seq::ZERO);
            if seq > Seq::ZERO {
                client.mark_read(conv, seq).await?;
            }
            serde_json::to_value(seq)?
        }
        Cmd::Settled { convs, actions } => {
            serde_json::to_value(unsettled(client, &convs, &actions).await?)?
        }
        Cmd::Dump { convs, actions } => {
            let mut dump = Dump::default();
            for conv in convs {
                dump.views
                    .push((conv, client.page(conv, None, usize::MAX >> 2).await?));
            }
            for id in actions {
                dump.actions.push((id, client.item(id).await?));
            }
            dump.conversations = client.conversations().await?;
            serde_json::to_value(dump)?
        }
    };
    Ok(value)
}

fn report_status(id: MessageId, status: Status, failure: Option<&chatsync_client::Failure>) {
    emit(&Event::Status {
        id,
        status,
        failure: failure.map(|f| format!("{:?}: {}", f.code, f.message)),
    });
}

async fn unsettled(
    client: &Client,
    convs: &[ConversationId],
    actions: &[MessageId],
) -> anyhow::Result<Unsettled> {
    let mut out = Unsettled {
        sending: client.sending().await?.len(),
        waiting: Vec::new(),
    };
    let known = client.conversations().await?;
    for &conv in convs {
        match known.iter().find(|c| c.id == conv) {
            None => out.waiting.push(format!("{conv} unknown")),
            Some(c) if c.cursor < c.last_seq => out.waiting.push(format!(
                "{conv} stored up to {} of {}",
                c.cursor, c.last_seq
            )),
            Some(_) => {}
        }
        for item in client.page(conv, None, usize::MAX >> 2).await? {
            if item.own && !matches!(item.status, Status::Success | Status::Read | Status::Failed) {
                out.waiting
                    .push(format!("{} is {:?}", item.id, item.status));
            }
            if !item.pending.is_empty() {
                out.waiting.push(format!(
                    "{} has {} pending actions",
                    item.id,
                    item.pending.len()
                ));
            }
        }
    }
    for &id in actions {
        match client.item(id).await? {
            Some(i) if i.status.is_confirmed() || i.status == Status::Failed => {}
            Some(i) => out.waiting.push(format!("action {id} is {:?}", i.status)),
            None => out.waiting.push(format!("action {id} unknown")),
        }
    }
    Ok(out)
}

/// Why a command to an agent did not succeed.
#[derive(Debug)]
pub enum CallError {
    /// The agent process is gone (killed, or not running): whether the
    /// command took effect is unknown.
    Gone,
    /// The agent answered with an error.
    Failed(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Gone => write!(f, "the client process is gone"),
            CallError::Failed(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for CallError {}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<serde_json::Value, String>>>>>;

/// A running agent process.
struct Running {
    child: Child,
    stdin: Arc<tokio::sync::Mutex<ChildStdin>>,
    pending: Pending,
}

/// The chaos side of one agent: starts, kills and restarts its process,
/// and calls it. Statuses it reports go to the shared [`Recorder`].
pub struct Agent {
    /// Account name.
    pub name: String,
    /// Client data directory.
    pub data: PathBuf,
    /// Account id, once known.
    pub user: Mutex<Option<UserId>>,
    seed: u64,
    ack_timeout_ms: u64,
    reconnect_cap_ms: u64,
    recorder: Recorder,
    running: Mutex<Option<Running>>,
    next_req: std::sync::atomic::AtomicU64,
    /// Set while chaos has it killed (or is restarting it).
    pub down: std::sync::atomic::AtomicBool,
}

impl Agent {
    /// A handle; nothing runs until [`Agent::start`].
    pub fn new(
        name: &str,
        data: &Path,
        seed: u64,
        ack_timeout_ms: u64,
        reconnect_cap_ms: u64,
        recorder: Recorder,
    ) -> Agent {
        Agent {
            name: name.to_string(),
            data: data.to_path_buf(),
            user: Mutex::new(None),
            seed,
            ack_timeout_ms,
            reconnect_cap_ms,
            recorder,
            running: Mutex::new(None),
            next_req: 0.into(),
            down: false.into(),
        }
    }

    /// Starts the process (logging in through `login` first, if given) and
    /// waits until its client is open.
    pub async fn start(&self, login: Option<(&str, &str)>) -> anyhow::Result<()> {
        let exe = std::env::current_exe().context("cannot find the chatsync binary")?;
        std::fs::create_dir_all(&self.data)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.join("agent.log"))?;
        let mut cmd = Command::new(exe);
        cmd.arg("chaos-agent")
            .arg("--data")
            .arg(&self.data)
            .arg("--seed")
            .arg(self.seed.to_string())
            .arg("--ack-timeout-ms")
            .arg(self.ack_timeout_ms.to_string())
            .arg("--reconnect-cap-ms")
            .arg(self.reconnect_cap_ms.to_string());
        if let Some((server, password)) = login {
            cmd.args([
                "--login",
                server,
                "--user",
                &self.name,
                "--password",
                password,
            ]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .context("cannot start a chaos client process")?;
        let stdin = child.stdin.take().context("agent stdin")?;
        let stdout = child.stdout.take().context("agent stdout")?;
        let pending: Pending = Arc::default();
        let (ready_tx, ready_rx) = oneshot::channel();
        let mut ready_tx = Some(ready_tx);
        let p = pending.clone();
        let recorder = self.recorder.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(event) = serde_json::from_str::<Event>(&line) else {
                    continue;
                };
                match event {
                    Event::Ready { user } => {
                        if let Some(tx) = ready_tx.take() {
                            let _ = tx.send(user);
                        }
                    }
                    Event::Done { req, value } => {
                        if let Some(tx) = take(&p, req) {
                            let _ = tx.send(Ok(value));
                        }
                    }
                    Event::Error { req, message } => {
                        if let Some(tx) = take(&p, req) {
                            let _ = tx.send(Err(message));
                        }
                    }
                    Event::Status {
                        id,
                        status,
                        failure,
                    } => {
                        let failure = failure.map(|message| chatsync_client::Failure {
                            code: chatsync_protocol::ErrorCode::Internal,
                            message,
                            retryable: false,
                        });
                        recorder.own_change(&TimelineChange::StatusChanged {
                            id,
                            status,
                            failure,
                        });
                    }
                }
            }
            // The process is gone: every call still waiting learns it.
            p.lock().unwrap_or_else(|e| e.into_inner()).clear();
        });
        let user = tokio::time::timeout(Duration::from_secs(30), ready_rx)
            .await
            .with_context(|| format!("{} did not start within 30 s", self.name))?
            .with_context(|| {
                format!(
                    "{} exited at start (see {})",
                    self.name,
                    self.data.join("agent.log").display()
                )
            })?;
        *self.user.lock().unwrap_or_else(|e| e.into_inner()) = Some(user);
        *self.running.lock().unwrap_or_else(|e| e.into_inner()) = Some(Running {
            child,
            stdin: Arc::new(tokio::sync::Mutex::new(stdin)),
            pending,
        });
        Ok(())
    }

    /// Kills the process with SIGKILL and reaps it. Calls in progress end
    /// with [`CallError::Gone`].
    pub async fn kill(&self) {
        let running = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(mut r) = running {
            let _ = r.child.kill().await;
        }
    }

    /// Sends a command and waits for its answer.
    pub async fn call(&self, cmd: Cmd) -> Result<serde_json::Value, CallError> {
        let req = self
            .next_req
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let stdin = {
            let guard = self.running.lock().unwrap_or_else(|e| e.into_inner());
            let Some(r) = guard.as_ref() else {
                return Err(CallError::Gone);
            };
            r.pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(req, tx);
            r.stdin.clone()
        };
        let mut line = serde_json::to_string(&Request { req, cmd })
            .map_err(|e| CallError::Failed(e.to_string()))?;
        line.push('\n');
        {
            let mut stdin = stdin.lock().await;
            if stdin.write_all(line.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
                return Err(CallError::Gone);
            }
        }
        match rx.await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(m)) => Err(CallError::Failed(m)),
            Err(_) => Err(CallError::Gone),
        }
    }

    /// [`Agent::call`], decoding the answer.
    pub async fn call_as_result<T: serde::de::DeserializeOwned>(
        &self,
        cmd: Cmd,
    ) -> Result<T, CallError> {
        let value = self.call(cmd).await?;
        serde_json::from_value(value).map_err(|e| CallError::Failed(format!("bad answer: {e}")))
    }

    /// [`Agent::call`], decoding the answer, as an `anyhow` error.
    pub async fn call_as<T: serde::de::DeserializeOwned>(&self, cmd: Cmd) -> anyhow::Result<T> {
        let value = self
            .call(cmd)
            .await
            .with_context(|| format!("client {}", self.name))?;
        Ok(serde_json::from_value(value)?)
    }
}

fn take(pending: &Pending, req: u64) -> Option<oneshot::Sender<Result<serde_json::Value, String>>> {
    pending
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&req)
}
