//! One module per subcommand.

pub mod account;
pub mod act;
pub mod conversations;
pub mod send;
pub mod server;
pub mod tail;
pub mod tui;

use anyhow::{bail, Context};
use chatsync_client::Client;
use chatsync_protocol::ConversationId;
use std::path::Path;

/// Opens the client stored in a data directory.
pub async fn open_client(data: &Path) -> anyhow::Result<Client> {
    Client::open(data)
        .await
        .with_context(|| format!("cannot open the client in {}", data.display()))
}

/// Resolves a conversation given by id or by its title.
pub async fn resolve_conversation(client: &Client, given: &str) -> anyhow::Result<ConversationId> {
    if let Ok(id) = given.parse::<ConversationId>() {
        return Ok(id);
    }
    let mut convs = client.conversations().await?;
    if convs.is_empty() {
        // A fresh login has not synced the list yet: give it a moment.
        if client
            .wait_connected(std::time::Duration::from_secs(3))
            .await
            .is_ok()
        {
            let _ = client.refresh_conversations().await;
            convs = client.conversations().await?;
        }
    }
    let matches: Vec<_> = convs.iter().filter(|c| c.title == given).collect();
    match matches.as_slice() {
        [one] => Ok(one.id),
        [] => bail!("no conversation named or numbered {given:?} (see `chatsync conversations`)"),
        _ => bail!("several conversations are titled {given:?}; give its id instead"),
    }
}
