//! Helpers for process-level tests: the real `chatsync` binary, a real
//! server process, real SQLite files in temporary directories, loopback.
//!
//! Every child process is owned by a [`Proc`], whose `Drop` kills and
//! reaps it, so a failing test leaves nothing running. Waits are bounded
//! and poll for an observable condition; a timeout panics with what the
//! process printed.
#![allow(dead_code, clippy::unwrap_used, missing_docs)]

use serde_json::Value;
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_chatsync");

/// Upper bound for a one-shot command (login, history, ...).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// A running child process whose stdout arrives line by line and whose
/// stderr is collected. Dropping it kills (SIGKILL) and reaps the child.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    lines: Receiver<String>,
    /// Every stdout line received so far.
    pub out: Vec<String>,
    stderr: Arc<Mutex<String>>,
    stderr_reader: Option<thread::JoinHandle<()>>,
    stdout_closed: bool,
}

impl Proc {
    /// Starts `chatsync ARGS...`.
    pub fn spawn<S: AsRef<str>>(name: &str, args: &[S]) -> Proc {
        let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
        let mut child = Command::new(BIN)
            .args(&args)
            .env_remove("RUST_LOG")
            .env_remove("CHATSYNC_DATA")
            .env_remove("CHATSYNC_SERVER")
            .env_remove("CHATSYNC_PASSWORD")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BIN} {args:?}: {e}"));
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let mut err = child.stderr.take().unwrap();
        let stderr_reader = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match err.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => sink
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n])),
                }
            }
        });
        Proc {
            name: format!(
                "{name} ({})",
                args.join(" ").chars().take(120).collect::<String>()
            ),
            child: Some(child),
            lines,
            out: Vec::new(),
            stderr,
            stderr_reader: Some(stderr_reader),
            stdout_closed: false,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// What the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn context(&self) -> String {
        let tail: Vec<&String> = self.out.iter().rev().take(10).collect();
        let tail: Vec<&String> = tail.into_iter().rev().collect();
        let err = self.stderr();
        let err: String = err
            .lines()
            .rev()
            .take(15)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        format!(
            "{}: {} stdout lines, last ones: {tail:#?}\nstderr (tail):\n{err}",
            self.name,
            self.out.len()
        )
    }

    /// The next stdout line, or `None` at end of output or at the deadline.
    fn next_line(&mut self, deadline: Instant) -> Option<String> {
        if self.stdout_closed {
            return None;
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(wait) {
            Ok(line) => {
                self.out.push(line.clone());
                Some(line)
            }
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                self.stdout_closed = true;
                None
            }
        }
    }

    /// Reads stdout until `done` holds for the lines read so far (all of
    /// them, including earlier ones); panics after `timeout` or at end of
    /// output.
    pub fn read_until(
        &mut self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&[String]) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        while !done(&self.out) {
            if self.next_line(deadline).is_none() {
                let why = if self.stdout_closed {
                    "its output ended"
                } else {
                    "timed out"
                };
                panic!(
                    "waiting for {what} after {timeout:?}: {why}\n{}",
                    self.context()
                );
            }
        }
    }

    /// Waits until stderr contains `needle`; panics after `timeout`.
    pub fn wait_stderr(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.stderr().contains(needle) {
            if Instant::now() >= deadline {
                panic!(
                    "waiting for {needle:?} on stderr after {timeout:?}\n{}",
                    self.context()
                );
            }
            // Keep stdout moving meanwhile.
            let step = Instant::now() + Duration::from_millis(20);
            while self.next_line(step).is_some() {}
            if self.stdout_closed {
                thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Collects whatever stdout is already available or arrives within
    /// `grace`, without blocking past it.
    pub fn drain(&mut self, grace: Duration) {
        let deadline = Instant::now() + grace;
        while self.next_line(deadline).is_some() {}
    }

    /// SIGKILL, then reap. Returns once the process is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM (without waiting).
    pub fn terminate(&self) {
        send_signal(self.pid(), "-TERM");
    }

    /// Waits for the process to exit by itself within `timeout`; panics
    /// (after killing it) otherwise. Reads all remaining stdout.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut().expect("process already reaped");
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                // The pipe closes when the process is gone; take what is left.
                self.drain(Duration::from_secs(5));
                // Its stderr pipe closed too: collect the rest.
                if let Some(reader) = self.stderr_reader.take() {
                    let _ = reader.join();
                }
                return status;
            }
            if Instant::now() >= deadline {
                self.kill();
                panic!(
                    "{} did not exit within {timeout:?}\n{}",
                    self.name,
                    self.context()
                );
            }
            // Keep stdout moving so the child never blocks on a full pipe.
            let step = Instant::now() + Duration::from_millis(20);
            while self.next_line(step).is_some() {}
            if self.stdout_closed {
                thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What a finished command printed.
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<String>,
    pub stderr: String,
}

impl Output {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// Sends `signal` (as kill(1) spells it, e.g. `-INT`) to process `pid`.
pub fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("cannot run kill(1)");
    assert!(status.success(), "kill {signal} {pid} failed");
}

/// Takes the child's piped stdout and reads its first line; the rest of
/// the output goes with the reader (a later write finds the pipe closed).
pub fn first_line(child: &mut Child) -> String {
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    line
}

/// Runs `chatsync ARGS...` to completion (bounded).
pub fn run<S: AsRef<str>>(args: &[S]) -> Output {
    let mut p = Proc::spawn("command", args);
    let status = p.wait(COMMAND_TIMEOUT);
    Output {
        status,
        stdout: std::mem::take(&mut p.out),
        stderr: p.stderr(),
    }
}

/// Runs `chatsync ARGS...` and panics unless it exits 0.
pub fn run_ok<S: AsRef<str>>(args: &[S]) -> Vec<String> {
    let out = run(args);
    let shown: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    assert!(
        out.status.success(),
        "chatsync {} exited with {}\nstdout: {:#?}\nstderr: {}",
        shown.join(" "),
        out.status,
        out.stdout,
        out.stderr
    );
    out.stdout
}

/// A `chatsync server` process and where it keeps its data.
pub struct Server {
    pub proc: Proc,
    /// host:port it listens on.
    pub addr: String,
    pub data: PathBuf,
    extra: Vec<String>,
}

impl Server {
    /// Starts a server on a free loopback port (the kernel picks it; the
    /// server prints the address it bound).
    pub fn start(data: &Path, extra: &[&str]) -> Server {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let (proc, addr) = Self::launch(data, "127.0.0.1:0", &extra)
            .unwrap_or_else(|e| panic!("server did not start: {e}"));
        Server {
            proc,
            addr,
            data: data.to_path_buf(),
            extra,
        }
    }

    /// Starts the server again on the same port and data directory (the
    /// clients have the address stored). Retries for a while if the port
    /// is momentarily unavailable.
    pub fn restart(&mut self) {
        self.proc.kill();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match Self::launch(&self.data, &self.addr, &self.extra) {
                Ok((proc, addr)) => {
                    assert_eq!(addr, self.addr, "restarted server bound another address");
                    self.proc = proc;
                    return;
                }
                Err(e) if Instant::now() < deadline => {
                    eprintln!("restart on {} failed, retrying: {e}", self.addr);
                    thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("server did not restart on {}: {e}", self.addr),
            }
        }
    }

    /// [`Server::restart`] with other extra flags (say, other limits).
    pub fn restart_with(&mut self, extra: &[&str]) {
        self.extra = extra.iter().map(|s| s.to_string()).collect();
        self.restart();
    }

    fn launch(data: &Path, listen: &str, extra: &[String]) -> Result<(Proc, String), String> {
        let mut args = vec![
            "server".to_string(),
            "--listen".into(),
            listen.into(),
            "--data".into(),
            data.display().to_string(),
        ];
        args.extend(extra.iter().cloned());
        let mut proc = Proc::spawn("server", &args);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match proc.next_line(deadline) {
                Some(line) => {
                    if let Some(rest) = line.split("listening on ws://").nth(1) {
                        let addr = rest.split('/').next().unwrap_or_default().to_string();
                        return Ok((proc, addr));
                    }
                }
                None => {
                    let why = proc.context();
                    proc.kill();
                    return Err(why);
                }
            }
        }
    }

    /// The server's SQLite file.
    pub fn db_path(&self) -> PathBuf {
        self.data.join("chatsync.sqlite3")
    }
}

/// One message as stored in the server's database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerMessage {
    pub seq: i64,
    pub sender: String,
    pub id: String,
    pub body: String,
}

/// Reads a conversation's messages, in seq order, straight from the
/// server's database file (read-only; works while the server runs).
pub fn server_messages(db: &Path, conversation: &str) -> Vec<ServerMessage> {
    use rusqlite::{Connection, OpenFlags};
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", db.display()));
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let conv = uuid::Uuid::parse_str(conversation).unwrap();
    let mut stmt = conn
        .prepare("SELECT seq, sender, id, body FROM messages WHERE conversation = ?1 ORDER BY seq")
        .unwrap();
    let uuid = |b: Vec<u8>| uuid::Uuid::from_slice(&b).unwrap().to_string();
    stmt.query_map([conv.as_bytes().as_slice()], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, Vec<u8>>(1)?,
            r.get::<_, Vec<u8>>(2)?,
            r.get::<_, String>(3)?,
        ))
    })
    .unwrap()
    .map(|r| {
        let (seq, sender, id, body) = r.unwrap();
        ServerMessage {
            seq,
            sender: uuid(sender),
            id: uuid(id),
            body,
        }
    })
    .collect()
}

/// A line `chatsync send` prints: `<id> <glyph> <status> +<ms>ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusLine {
    pub id: String,
    pub status: String,
}

pub fn parse_status_line(line: &str) -> Option<StatusLine> {
    let mut words = line.split_whitespace();
    let id = words.next()?;
    uuid::Uuid::parse_str(id).ok()?;
    let _glyph = words.next()?;
    let status = words.next()?;
    Some(StatusLine {
        id: id.to_string(),
        status: status.trim_end_matches(':').to_string(),
    })
}

/// The ids printed with a given status, in the order printed.
pub fn ids_with_status(lines: &[String], status: &str) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| parse_status_line(l))
        .filter(|s| s.status == status)
        .map(|s| s.id)
        .collect()
}

/// A conversation item as `chatsync history --json` prints it.
pub type Item = Value;

pub fn item_id(item: &Item) -> &str {
    item["id"].as_str().unwrap()
}
pub fn item_body(item: &Item) -> &str {
    item["body"].as_str().unwrap()
}
pub fn item_status(item: &Item) -> &str {
    item["status"].as_str().unwrap()
}
pub fn item_seq(item: &Item) -> Option<i64> {
    item["seq"].as_i64()
}

/// A conversation as stored on a device (no network needed).
pub fn history(data: &Path, conversation: &str) -> Vec<Item> {
    let dir = data.display().to_string();
    run_ok(&[
        "history",
        conversation,
        "--data",
        &dir,
        "--limit",
        "100000",
        "--json",
    ])
    .iter()
    .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad history line {l:?}: {e}")))
    .collect()
}

/// Lets a device sync (by running a command that connects) until its
/// stored history satisfies `done`; returns that history. Panics with the
/// last history seen after `timeout`.
pub fn sync_until(
    data: &Path,
    conversation: &str,
    what: &str,
    timeout: Duration,
    mut done: impl FnMut(&[Item]) -> bool,
) -> Vec<Item> {
    let dir = data.display().to_string();
    let deadline = Instant::now() + timeout;
    loop {
        let items = history(data, conversation);
        if done(&items) {
            return items;
        }
        if Instant::now() >= deadline {
            let summary: Vec<String> = items
                .iter()
                .map(|i| {
                    format!(
                        "{} seq={:?} {} {:?}",
                        item_id(i),
                        item_seq(i),
                        item_status(i),
                        item_body(i).chars().take(20).collect::<String>()
                    )
                })
                .collect();
            panic!(
                "{} never reached: {what} (after {timeout:?}); it holds {} items: {summary:#?}",
                data.display(),
                items.len()
            );
        }
        // `conversations` connects, catches up and asks for the list.
        let _ = run(&["conversations", "--data", &dir]);
    }
}

/// Panics if an id occurs twice.
pub fn assert_unique<'a>(what: &str, ids: impl IntoIterator<Item = &'a str>) {
    let mut seen = HashSet::new();
    for id in ids {
        assert!(seen.insert(id), "{what}: id {id} appears twice");
    }
}

/// Two accounts on one server, each logged in on its own device
/// directory, sharing a conversation titled "room".
pub struct World {
    pub dir: tempfile::TempDir,
    pub server: Server,
    /// alice's device.
    pub a: PathBuf,
    /// bob's device.
    pub b: PathBuf,
    pub alice: String,
    pub bob: String,
    /// The conversation id.
    pub conv: String,
}

pub const TITLE: &str = "room";

impl World {
    pub fn new(server_args: &[&str]) -> World {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(&dir.path().join("server"), server_args);
        let a = dir.path().join("alice");
        let b = dir.path().join("bob");
        let mut ids = Vec::new();
        for (user, data) in [("alice", &a), ("bob", &b)] {
            run_ok(&[
                "register",
                user,
                "--password",
                "password-of-a-test",
                "--server",
                &server.addr,
            ]);
            let out = run_ok(&[
                "login",
                user,
                "--password",
                "password-of-a-test",
                "--server",
                &server.addr,
                "--data",
                &data.display().to_string(),
            ]);
            // "logged in as NAME (USER-ID); ..."
            let id = out
                .iter()
                .find_map(|l| l.split('(').nth(1)?.split(')').next())
                .unwrap_or_else(|| panic!("no user id in {out:?}"))
                .to_string();
            ids.push(id);
        }
        let out = run_ok(&["create", TITLE, "bob", "--data", &a.display().to_string()]);
        let conv = out
            .first()
            .and_then(|l| l.split('\t').next())
            .unwrap_or_else(|| panic!("no conversation id in {out:?}"))
            .to_string();
        let bob = ids.pop().unwrap();
        let alice = ids.pop().unwrap();
        World {
            dir,
            server,
            a,
            b,
            alice,
            bob,
            conv,
        }
    }

    pub fn a_dir(&self) -> String {
        self.a.display().to_string()
    }

    pub fn b_dir(&self) -> String {
        self.b.display().to_string()
    }
}
