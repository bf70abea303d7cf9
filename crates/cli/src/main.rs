//! `chatsync`: the server, client commands for people and scripts, and the
//! demo that replays real conversations through the syncer.

mod bench;
mod chaos;
mod commands;
mod demo;
mod output;
mod server_process;
mod stages;
mod stop_signals;
mod trace;
mod verify;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// chatsync: a message-sync engine for chat apps.
#[derive(Parser)]
#[command(name = "chatsync", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where a client keeps its storage.
#[derive(clap::Args, Clone)]
pub struct ClientArgs {
    /// Client data directory (its own SQLite file and session).
    #[arg(long, env = "CHATSYNC_DATA", default_value = ".chatsync")]
    pub data: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Run a server.
    Server(commands::server::Args),
    /// Create an account on a server.
    Register(commands::account::RegisterArgs),
    /// Log in and store the session in a client data directory.
    Login(commands::account::LoginArgs),
    /// Create a conversation with other accounts.
    Create(commands::conversations::CreateArgs),
    /// List this account's conversations.
    Conversations(commands::conversations::ListArgs),
    /// Send a message and follow its status until Success, Failed or a timeout.
    Send(commands::send::Args),
    /// Wait until every queued message of this device has left Sending.
    Flush(commands::send::FlushArgs),
    /// Print a conversation's history as stored on this device.
    History(commands::tail::HistoryArgs),
    /// Print incoming messages and status changes live.
    Tail(commands::tail::Args),
    /// Edit one of your messages (shown at once, confirmed by the server).
    Edit(commands::act::EditArgs),
    /// Delete one of your messages (a placeholder remains; its text is erased).
    Delete(commands::act::DeleteArgs),
    /// Set or remove a reaction on a message.
    React(commands::act::ReactArgs),
    /// Mark a conversation read (up to the newest message by default).
    Read(commands::act::ReadArgs),
    /// Send a Failed message or action again (same id, so never twice).
    Retry(commands::act::IdArgs),
    /// Drop a Failed message or action, or one that never left this device.
    Discard(commands::act::IdArgs),
    /// Full-screen terminal chat client on the stored session.
    Tui(commands::tui::Args),
    /// Replay real conversations through a live server and many clients,
    /// with a dropped connection and a server restart, then check the
    /// invariants.
    Demo(demo::Args),
    /// Measure latency and throughput of the syncer against a real server
    /// process.
    Bench(bench::Args),
    /// Fault-injection drill: real client processes behind fault proxies,
    /// server and client kills, then a check of every invariant.
    Chaos(chaos::Args),
    /// One chaos client process (started by `chaos`).
    #[command(hide = true)]
    ChaosAgent(chaos::AgentArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        // stderr belongs to the full-screen client: log to a file instead.
        Command::Tui(a) => a.init_logging(),
        Command::Bench(a) if a.stages => {
            let file = bench::stage_file();
            output::init_tracing(false, Some(&file));
        }
        c => output::init_tracing(matches!(c, Command::Server(_)), None),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Server(a) => commands::server::run(a).await,
            Command::Register(a) => commands::account::register(a).await,
            Command::Login(a) => commands::account::login(a).await,
            Command::Create(a) => commands::conversations::create(a).await,
            Command::Conversations(a) => commands::conversations::list(a).await,
            Command::Send(a) => commands::send::run(a).await,
            Command::Flush(a) => commands::send::flush(a).await,
            Command::History(a) => commands::tail::history(a).await,
            Command::Tail(a) => commands::tail::run(a).await,
            Command::Edit(a) => commands::act::edit(a).await,
            Command::Delete(a) => commands::act::delete(a).await,
            Command::React(a) => commands::act::react(a).await,
            Command::Read(a) => commands::act::read(a).await,
            Command::Retry(a) => commands::act::retry(a).await,
            Command::Discard(a) => commands::act::discard(a).await,
            Command::Tui(a) => commands::tui::run(a).await,
            Command::Demo(a) => demo::run(a).await,
            Command::Bench(a) => bench::run(a).await,
            Command::Chaos(a) => chaos::run(a).await,
            Command::ChaosAgent(a) => chaos::run_agent(a).await,
        }
    });
    match result {
        Ok(code) => code,
        // What a shell reports for a process ended by SIGPIPE.
        Err(e) if output::stdout_closed(&e) => ExitCode::from(141),
        Err(e) => {
            eprintln!("error: {}", output::error_line(&e));
            ExitCode::FAILURE
        }
    }
}
