//! The `chatsync server` child of a suite, and the accounts, sessions and
//! conversations some suites write straight into its store before it
//! starts (registering a thousand accounts through the protocol would
//! spend minutes in Argon2 and measure nothing of interest).

use super::stats;
use crate::server_process::Spawned;
use anyhow::Context;
use chatsync_protocol::{ConversationId, UserId};
use chatsync_server::{ServerStore, SqliteStore};
use std::path::Path;

/// A server process started for one suite.
pub struct BenchServer {
    /// `host:port`.
    pub addr: String,
    /// Its pid, for CPU and memory (found by its data directory).
    pub pid: Option<u32>,
    spawned: Spawned,
}

impl BenchServer {
    /// Starts `chatsync server` on a free loopback port with data in `dir`,
    /// no rate limit, and `extra` arguments.
    pub async fn start(dir: &Path, extra: &[&str]) -> anyhow::Result<BenchServer> {
        let spawned = if extra.is_empty() {
            // `--rate 0`: no rate limit.
            Spawned::start(dir).await?
        } else {
            let mut args = vec!["--rate", "0"];
            args.extend_from_slice(extra);
            Spawned::start_with(dir, "127.0.0.1:0", &args).await?
        };
        let dir_s = dir.to_string_lossy();
        let pid = stats::find_pid(&["server", "--data", &dir_s]);
        if pid.is_none() {
            eprintln!("note: cannot find the server's pid; CPU and RSS will be missing");
        }
        Ok(BenchServer {
            addr: spawned.addr.clone(),
            pid,
            spawned,
        })
    }

    /// Starts `chatsync server` with data in `dir`, no rate limit, on
    /// `listen` (`host:port`): a server started again on the address its
    /// clients stored.
    pub async fn start_on(dir: &Path, listen: &str) -> anyhow::Result<BenchServer> {
        let spawned = Spawned::start_with(dir, listen, &["--rate", "0"]).await?;
        let dir_s = dir.to_string_lossy();
        let pid = stats::find_pid(&["server", "--data", &dir_s]);
        Ok(BenchServer {
            addr: spawned.addr.clone(),
            pid,
            spawned,
        })
    }

    /// Resident memory of the server now, in bytes.
    pub fn rss(&self) -> Option<u64> {
        self.pid.and_then(stats::rss_bytes)
    }

    /// Stops it.
    pub async fn stop(self) {
        self.spawned.stop().await;
    }
}

/// An account created in the store, with a session token for `hello`.
#[derive(Clone, Debug)]
pub struct SeedUser {
    /// Account name.
    pub name: String,
    /// Account id.
    pub id: UserId,
    /// Session token (its SHA-256 is what the store keeps).
    pub token: String,
}

/// Writes accounts, sessions and conversations into a server data
/// directory before the server starts.
pub struct Seeder {
    store: SqliteStore,
}

/// Password hash of seeded accounts: not a valid PHC string, so nobody can
/// log in with a password; the bench uses the sessions it creates.
const NO_PASSWORD: &str = "!seeded-by-chatsync-bench";

impl Seeder {
    /// Opens (creating) the store in `dir`.
    pub fn open(dir: &Path) -> anyhow::Result<Seeder> {
        let store = chatsync_server::open_store(dir)
            .with_context(|| format!("cannot open a server store in {}", dir.display()))?;
        Ok(Seeder { store })
    }

    /// Creates `n` accounts named `{prefix}{i}`, each with one session.
    pub fn users(&self, prefix: &str, n: usize) -> anyhow::Result<Vec<SeedUser>> {
        tokio::task::block_in_place(|| {
            let mut out = Vec::with_capacity(n);
            for i in 0..n {
                let name = format!("{prefix}{i}");
                let id = self
                    .store
                    .create_account(&name, NO_PASSWORD)
                    .with_context(|| format!("seed account {name}"))?;
                let token = format!(
                    "bench{}{}",
                    uuid::Uuid::new_v4().simple(),
                    uuid::Uuid::new_v4().simple()
                );
                self.store
                    .create_session(id, "bench", &chatsync_server::auth::token_hash(&token))
                    .with_context(|| format!("seed session of {name}"))?;
                out.push(SeedUser { name, id, token });
            }
            Ok(out)
        })
    }

    /// Creates a conversation with exactly these members (no member limit:
    /// the store does not apply the protocol's `max_members`).
    pub fn conversation(&self, title: &str, members: &[UserId]) -> anyhow::Result<ConversationId> {
        let info = tokio::task::block_in_place(|| self.store.create_conversation(title, members))
            .context("seed conversation")?;
        Ok(info.id)
    }
}

/// Password of every account the bench registers through the protocol.
const CLIENT_PASSWORD: &str = "bench-password";

/// Registers `name` on the server at `addr`, then opens a real client
/// library instance for it with its storage in `data`, and waits until it
/// is connected.
pub async fn bench_client(
    addr: &str,
    name: &str,
    data: &Path,
    config: chatsync_client::core::Config,
) -> anyhow::Result<chatsync_client::Client> {
    chatsync_client::register(addr, name, CLIENT_PASSWORD)
        .await
        .with_context(|| format!("register {name}"))?;
    let client =
        chatsync_client::Client::login_with(data, addr, name, CLIENT_PASSWORD, "bench", config)
            .await
            .with_context(|| format!("log in as {name}"))?;
    client
        .wait_connected(std::time::Duration::from_secs(10))
        .await?;
    Ok(client)
}
