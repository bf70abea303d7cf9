//! `chatsync edit`, `delete`, `react` and `read`: every user action, each
//! applied locally at once and followed to the server's answer.

use super::{open_client, resolve_conversation};
use crate::output::outln;
use crate::ClientArgs;
use anyhow::{bail, Context};
use chatsync_client::{Client, Status, TimelineChange};
use chatsync_protocol::{MessageId, Seq};
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `edit`.
#[derive(clap::Args)]
pub struct EditArgs {
    /// Id of one of your messages (as printed by `send` or `history`).
    message: MessageId,
    /// The new text.
    body: String,
    /// Seconds to wait for the server's answer.
    #[arg(long, default_value_t = 10.0, value_parser = super::seconds)]
    timeout: f64,
    #[command(flatten)]
    client: ClientArgs,
}

/// Arguments of `delete`.
#[derive(clap::Args)]
pub struct DeleteArgs {
    /// Id of one of your messages.
    message: MessageId,
    /// Seconds to wait for the server's answer.
    #[arg(long, default_value_t = 10.0, value_parser = super::seconds)]
    timeout: f64,
    #[command(flatten)]
    client: ClientArgs,
}

/// Arguments of `react`.
#[derive(clap::Args)]
pub struct ReactArgs {
    /// Id of any message.
    message: MessageId,
    /// The emoji.
    emoji: String,
    /// Remove the reaction instead of setting it.
    #[arg(long)]
    off: bool,
    /// Seconds to wait for the server's answer.
    #[arg(long, default_value_t = 10.0, value_parser = super::seconds)]
    timeout: f64,
    #[command(flatten)]
    client: ClientArgs,
}

/// Arguments of `retry` and `discard`.
#[derive(clap::Args)]
pub struct IdArgs {
    /// Id of a Failed message or action of this device.
    id: MessageId,
    #[command(flatten)]
    client: ClientArgs,
}

/// Arguments of `read`.
#[derive(clap::Args)]
pub struct ReadArgs {
    /// Conversation id or title.
    conversation: String,
    /// Read up to this sequence number (default: the newest stored).
    #[arg(long)]
    seq: Option<u64>,
    #[command(flatten)]
    client: ClientArgs,
}

/// Edits a message.
pub async fn edit(a: EditArgs) -> anyhow::Result<ExitCode> {
    let client = open_client(&a.client.data).await?;
    let action = client
        .edit(a.message, a.body)
        .await
        .context("cannot edit")?;
    follow(&client, a.message, action, "edit", a.timeout).await
}

/// Deletes a message.
pub async fn delete(a: DeleteArgs) -> anyhow::Result<ExitCode> {
    let client = open_client(&a.client.data).await?;
    let action = client.delete(a.message).await.context("cannot delete")?;
    follow(&client, a.message, action, "delete", a.timeout).await
}

/// Sets or removes a reaction.
pub async fn react(a: ReactArgs) -> anyhow::Result<ExitCode> {
    let client = open_client(&a.client.data).await?;
    let action = client
        .react(a.message, &a.emoji, !a.off)
        .await
        .context("cannot react")?;
    follow(&client, a.message, Some(action), "reaction", a.timeout).await
}

/// Sends a Failed message or action again, with the same id.
pub async fn retry(a: IdArgs) -> anyhow::Result<ExitCode> {
    let client = open_client(&a.client.data).await?;
    client.retry(a.id).await.context("cannot retry")?;
    outln!(
        "{} queued again (same id); run `chatsync flush` to wait for it",
        a.id
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Drops a Failed message or action, or one never transmitted.
pub async fn discard(a: IdArgs) -> anyhow::Result<ExitCode> {
    let client = open_client(&a.client.data).await?;
    client.discard(a.id).await.context("cannot discard")?;
    outln!("{} discarded", a.id)?;
    Ok(ExitCode::SUCCESS)
}

/// Marks a conversation read.
pub async fn read(a: ReadArgs) -> anyhow::Result<ExitCode> {
    let client = open_client(&a.client.data).await?;
    let conv = resolve_conversation(&client, &a.conversation).await?;
    let seq = match a.seq {
        Some(s) => Seq(s),
        None => client
            .page(conv, None, 1)
            .await?
            .iter()
            .filter_map(|i| i.seq)
            .max()
            .unwrap_or(Seq::ZERO),
    };
    client.mark_read(conv, seq).await?;
    // Give the syncer a moment to tell the server; the mark is stored and
    // goes out on the next connection otherwise.
    let sent = client.wait_connected(Duration::from_secs(3)).await.is_ok();
    tokio::time::sleep(Duration::from_millis(200)).await;
    outln!(
        "read up to {seq}{}",
        if sent {
            ""
        } else {
            " (stored; the server learns it on the next connection)"
        }
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Prints where an action stands: applied locally at once, then confirmed
/// or refused by the server.
async fn follow(
    client: &Client,
    message: MessageId,
    action: Option<MessageId>,
    what: &str,
    timeout: f64,
) -> anyhow::Result<ExitCode> {
    let Some(action) = action else {
        outln!("{what} applied to the queued message itself (it had not left this device)")?;
        return Ok(ExitCode::SUCCESS);
    };
    outln!("{action} {what} of {message}: applied locally, sending")?;
    let item = client.item(message).await?.context("the message is gone")?;
    let mut timeline = client.subscribe(item.conversation, 0).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(timeout);
    loop {
        if let Some(row) = client.item(action).await? {
            if row.status.is_confirmed() {
                outln!(
                    "{action} {what} confirmed by the server (seq {})",
                    row.seq.map_or(0, |s| s.0)
                )?;
                return Ok(ExitCode::SUCCESS);
            }
            if row.status == Status::Failed {
                let why = row.failure.map(|f| f.message).unwrap_or_default();
                outln!("{action} {what} refused: {why} (rolled back; `chatsync retry {action}` sends it again)")?;
                return Ok(ExitCode::FAILURE);
            }
        }
        match tokio::time::timeout_at(deadline, timeline.changes.recv()).await {
            Ok(Some(TimelineChange::Upserted(_) | TimelineChange::StatusChanged { .. })) => {}
            Ok(Some(TimelineChange::Removed(_))) => {}
            Ok(None) => bail!("the client stopped unexpectedly"),
            Err(_) => {
                eprintln!("{action} {what} still queued after {timeout}s; it goes out by itself the next time this device runs");
                return Ok(ExitCode::from(2));
            }
        }
    }
}
