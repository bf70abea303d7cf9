//! `chatsync tail` and `chatsync history`.

use super::{open_client, resolve_conversation};
use crate::output::{glyph, name, outln};
use crate::ClientArgs;
use chatsync_client::core::Event;
use chatsync_client::{Item, TimelineChange};
use chatsync_protocol::ConversationId;
use std::collections::{HashMap, HashSet};
use std::process::ExitCode;
use tokio::sync::mpsc;

/// Arguments of `tail`.
#[derive(clap::Args)]
pub struct Args {
    /// Only this conversation (id or title); all when omitted.
    conversation: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
}

/// Arguments of `history`.
#[derive(clap::Args)]
pub struct HistoryArgs {
    /// Conversation id or title.
    conversation: String,
    /// How many of the newest messages.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Print JSON lines instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

fn line(item: &Item, title: &str) -> String {
    let seq = item
        .seq
        .map(|s| s.to_string())
        .unwrap_or_else(|| "-".into());
    let status = if item.own {
        format!(" {} {}", glyph(item.status), name(item.status))
    } else {
        String::new()
    };
    let body = if item.deleted {
        "(deleted)".to_string()
    } else if item.edited {
        format!("{} (edited)", item.body)
    } else {
        item.body.clone()
    };
    let mut extras = String::new();
    for r in &item.reactions {
        extras.push_str(&format!(" {}×{}", r.emoji, r.users.len()));
    }
    for p in &item.pending {
        let why = p
            .failure
            .as_ref()
            .map(|f| format!(": {}", f.message))
            .unwrap_or_default();
        extras.push_str(&format!(" [{:?} {} {}{why}]", p.kind, name(p.status), p.id));
    }
    format!(
        "#{title} [{seq}] {} {}: {body}{status}{extras}",
        item.id, item.sender_name
    )
}

/// Prints a conversation as stored on this device.
pub async fn history(a: HistoryArgs) -> anyhow::Result<ExitCode> {
    let client = open_client(&a.client.data).await?;
    let conv = resolve_conversation(&client, &a.conversation).await?;
    let title = client
        .conversations()
        .await?
        .into_iter()
        .find(|c| c.id == conv)
        .map(|c| c.title)
        .unwrap_or_default();
    for item in client.page(conv, None, a.limit).await? {
        if a.json {
            outln!("{}", serde_json::to_string(&item)?)?;
        } else {
            outln!("{}", line(&item, &title))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints messages and status changes as they happen, until Ctrl-C.
pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    let client = open_client(&a.client.data).await?;
    let only = match &a.conversation {
        Some(c) => Some(resolve_conversation(&client, c).await?),
        None => None,
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<(ConversationId, TimelineChange)>();
    let mut subscribed = HashSet::new();
    let mut titles = HashMap::new();
    let mut events = client.events();
    let mut state = client.connection();
    eprintln!("connection: {}", connection_line(*state.borrow()));
    let mut refresh = true;
    loop {
        // Subscribe to every conversation we know; new ones appear as the
        // syncer learns them.
        let known = if std::mem::take(&mut refresh) {
            client.conversations().await?
        } else {
            Vec::new()
        };
        for c in known {
            titles.insert(c.id, c.title.clone());
            if only.is_some_and(|o| o != c.id) || !subscribed.insert(c.id) {
                continue;
            }
            let mut timeline = client.subscribe(c.id, 0).await?;
            let tx = tx.clone();
            let id = c.id;
            tokio::spawn(async move {
                while let Some(change) = timeline.changes.recv().await {
                    if tx.send((id, change)).is_err() {
                        break;
                    }
                }
            });
        }
        tokio::select! {
            Some((conv, change)) = rx.recv() => {
                let title = titles.get(&conv).cloned().unwrap_or_default();
                match change {
                    TimelineChange::Upserted(item) => outln!("{}", line(&item, &title))?,
                    TimelineChange::StatusChanged { id, status, failure } => {
                        let why = failure.map(|f| format!(": {}", f.message)).unwrap_or_default();
                        outln!("#{title} status {id} {} {}{why}", glyph(status), name(status))?;
                    }
                    TimelineChange::Removed(id) => outln!("#{title} removed {id}")?,
                }
            }
            Ok(ev) = events.recv() => match ev {
                Event::SessionRejected(r) => {
                    anyhow::bail!("the server rejected this session: {}; log in again", r.message);
                }
                Event::ConversationUpdated(id) => refresh = !subscribed.contains(&id),
                _ => {}
            },
            Ok(()) = state.changed() => {
                eprintln!("connection: {}", connection_line(*state.borrow()));
            }
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        }
    }
}

/// How `tail` reports the connection, for people rather than for Debug.
fn connection_line(state: chatsync_client::ConnectionState) -> String {
    use chatsync_client::ConnectionState::*;
    match state {
        Connected => "connected".into(),
        Connecting => "connecting".into(),
        Reconnecting { in_ms: u64::MAX } => {
            "stopped: the server refused this session (log in again)".into()
        }
        Reconnecting { in_ms } => format!("offline, retrying in {:.1}s", in_ms as f64 / 1000.0),
    }
}
