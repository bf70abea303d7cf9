//! `chatsync create` and `chatsync conversations`.

use super::open_client;
use crate::output::outln;
use crate::ClientArgs;
use anyhow::Context;
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `create`.
#[derive(clap::Args)]
pub struct CreateArgs {
    /// Title of the conversation.
    title: String,
    /// Account names of the other members.
    #[arg(required = true)]
    members: Vec<String>,
    #[command(flatten)]
    client: ClientArgs,
}

/// Arguments of `conversations`.
#[derive(clap::Args)]
pub struct ListArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

/// Creates a conversation.
pub async fn create(a: CreateArgs) -> anyhow::Result<ExitCode> {
    let client = open_client(&a.client.data).await?;
    client
        .wait_connected(Duration::from_secs(10))
        .await
        .context("creating a conversation needs the server")?;
    let members: Vec<&str> = a.members.iter().map(String::as_str).collect();
    let conv = client
        .create_conversation(&a.title, &members)
        .await
        .context("cannot create the conversation")?;
    outln!("{}\t{}", conv.id, conv.title)?;
    Ok(ExitCode::SUCCESS)
}

/// Lists conversations (from the server when reachable, else as stored).
pub async fn list(a: ListArgs) -> anyhow::Result<ExitCode> {
    let client = open_client(&a.client.data).await?;
    if client.wait_connected(Duration::from_secs(3)).await.is_ok() {
        let _ = client.refresh_conversations().await;
    } else {
        eprintln!("(server unreachable: showing what this device has stored)");
    }
    let convs = client.conversations().await?;
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&convs)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    for c in convs {
        let members: Vec<&str> = c.members.iter().map(|m| m.username.as_str()).collect();
        outln!(
            "{}\t{}\t{} messages\t{}",
            c.id,
            c.title,
            c.last_seq,
            members.join(",")
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
