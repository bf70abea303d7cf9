//! One module per subcommand.

pub mod account;
pub mod act;
pub mod conversations;
pub mod send;
pub mod server;
pub mod tail;
pub mod tui;

use anyhow::{bail, Context};
use chatsync_client::{Client, Conversation};
use chatsync_protocol::ConversationId;
use std::path::Path;

/// Opens the client stored in a data directory.
pub async fn open_client(data: &Path) -> anyhow::Result<Client> {
    Client::open(data)
        .await
        .with_context(|| format!("cannot open the client in {}", data.display()))
}

/// Resolves a conversation given by id or by its title, among those this
/// device knows. One it does not know yet (a fresh login, or created
/// elsewhere since) is looked up again after asking the server.
pub async fn resolve_conversation(client: &Client, given: &str) -> anyhow::Result<ConversationId> {
    let by_id = given.parse::<ConversationId>().ok();
    if let Some(found) = find_conversation(&client.conversations().await?, given, by_id)? {
        return Ok(found);
    }
    if client
        .wait_connected(std::time::Duration::from_secs(3))
        .await
        .is_ok()
    {
        let _ = client.refresh_conversations().await;
        if let Some(found) = find_conversation(&client.conversations().await?, given, by_id)? {
            return Ok(found);
        }
    }
    match by_id {
        Some(_) => bail!(
            "no conversation with id {given} on this device or the server (see `chatsync conversations`)"
        ),
        None => bail!("no conversation named or numbered {given:?} (see `chatsync conversations`)"),
    }
}

/// The conversation whose id is `by_id`, else the one titled `given`;
/// several with that title is an error.
fn find_conversation(
    convs: &[Conversation],
    given: &str,
    by_id: Option<ConversationId>,
) -> anyhow::Result<Option<ConversationId>> {
    if let Some(c) = by_id.and_then(|id| convs.iter().find(|c| c.id == id)) {
        return Ok(Some(c.id));
    }
    let matches: Vec<_> = convs.iter().filter(|c| c.title == given).collect();
    match matches.as_slice() {
        [one] => Ok(Some(one.id)),
        [] => Ok(None),
        _ => bail!("several conversations are titled {given:?}; give its id instead"),
    }
}

/// Parses a `--timeout`: seconds, from 0 to a billion (a wait that a
/// `Duration` and a deadline can hold).
pub fn seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1e9).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds from 0 to 1e9")),
    }
}
