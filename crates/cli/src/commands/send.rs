//! `chatsync send` and `chatsync flush`.

use super::{open_client, resolve_conversation};
use crate::output::{glyph, name, outln};
use crate::ClientArgs;
use anyhow::bail;
use chatsync_client::{Status, TimelineChange};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Arguments of `send`.
#[derive(clap::Args)]
pub struct Args {
    /// Conversation id or title.
    conversation: String,
    /// Message text; several are sent in order, pipelined.
    #[arg(required = true)]
    bodies: Vec<String>,
    /// Stop following after this many seconds and exit 2: a message still
    /// Sending stays queued and goes out the next time this device runs a
    /// command; one In-Flight is on the server, waiting for delivery.
    #[arg(long, default_value_t = 30.0, value_parser = super::seconds)]
    timeout: f64,
    /// Stop following once this status is reached.
    #[arg(long, value_enum, default_value_t = Until::Success)]
    until: Until,
    #[command(flatten)]
    client: ClientArgs,
}

/// Arguments of `flush`.
#[derive(clap::Args)]
pub struct FlushArgs {
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 30.0, value_parser = super::seconds)]
    timeout: f64,
    #[command(flatten)]
    client: ClientArgs,
}

/// The status `send` waits for.
#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// Return once the messages are stored locally (Sending).
    Queued,
    /// Wait for the server's acknowledgement (In-Flight).
    InFlight,
    /// Wait for delivery to every other member (Success).
    Success,
}

impl Until {
    fn reached(self, s: Status) -> bool {
        match self {
            Until::Queued => true,
            Until::InFlight => s >= Status::InFlight,
            Until::Success => s >= Status::Success,
        }
    }
}

/// Sends messages and prints each status change with elapsed time.
pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    let client = open_client(&a.client.data).await?;
    let conv = resolve_conversation(&client, &a.conversation).await?;
    // All or nothing: a body that can only fail is refused before any of
    // the others is queued, so running the command again cannot duplicate.
    let limits = client.limits().await?;
    for (i, body) in a.bodies.iter().enumerate() {
        if let Err((_, why)) = chatsync_protocol::check_body(body, &limits) {
            bail!(
                "message {} of {}: {why}; nothing was queued",
                i + 1,
                a.bodies.len()
            );
        }
    }
    let mut timeline = client.subscribe(conv, 1).await?;
    let start = Instant::now();
    let mut pending = std::collections::HashMap::new();
    for body in &a.bodies {
        let id = client.send(conv, body.clone()).await?;
        outln!(
            "{id} {} {} +{:.1}ms",
            glyph(Status::Sending),
            name(Status::Sending),
            ms(start)
        )?;
        pending.insert(id, Status::Sending);
    }
    if a.until == Until::Queued {
        return Ok(ExitCode::SUCCESS);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(a.timeout);
    let mut failed = false;
    while pending
        .values()
        .any(|s| !a.until.reached(*s) && *s != Status::Failed)
    {
        let change = match tokio::time::timeout_at(deadline, timeline.changes.recv()).await {
            Ok(Some(c)) => c,
            Ok(None) => bail!("the client stopped unexpectedly"),
            Err(_) => {
                for (id, s) in &pending {
                    if !a.until.reached(*s) && *s != Status::Failed {
                        eprintln!(
                            "{id} still {} after {}s; {}",
                            name(*s),
                            a.timeout,
                            pending_why(*s)
                        );
                    }
                }
                return Ok(ExitCode::from(2));
            }
        };
        let (id, status, failure) = match change {
            TimelineChange::Upserted(item) => (item.id, item.status, item.failure),
            TimelineChange::StatusChanged {
                id,
                status,
                failure,
            } => (id, status, failure),
            TimelineChange::Removed(_) => continue,
        };
        let Some(known) = pending.get_mut(&id) else {
            continue;
        };
        if status == *known {
            continue;
        }
        *known = status;
        match failure {
            Some(f) if status == Status::Failed => {
                failed = true;
                outln!(
                    "{id} {} {} +{:.1}ms: {} ({:?}{})",
                    glyph(status),
                    name(status),
                    ms(start),
                    f.message,
                    f.code,
                    if f.retryable { ", retryable" } else { "" }
                )?;
            }
            _ => outln!(
                "{id} {} {} +{:.1}ms",
                glyph(status),
                name(status),
                ms(start)
            )?,
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Waits until no message of this device is Sending any more. Exits
/// non-zero if any of those it waited for ended Failed, naming the reason.
pub async fn flush(a: FlushArgs) -> anyhow::Result<ExitCode> {
    let client = open_client(&a.client.data).await?;
    let deadline = Instant::now() + Duration::from_secs_f64(a.timeout);
    let mut watched = std::collections::HashSet::new();
    loop {
        let sending = client.sending().await?;
        watched.extend(sending.iter().copied());
        if sending.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            eprintln!(
                "{} messages still Sending after {}s",
                sending.len(),
                a.timeout
            );
            return Ok(ExitCode::from(2));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut failed = Vec::new();
    for id in watched {
        if let Some(item) = client.item(id).await? {
            if item.status == chatsync_client::Status::Failed {
                failed.push(item);
            }
        }
    }
    let Some(first) = failed.first() else {
        outln!("nothing left in Sending")?;
        return Ok(ExitCode::SUCCESS);
    };
    let why = first
        .failure
        .as_ref()
        .map_or_else(|| "no reason given".to_string(), |f| f.message.clone());
    eprintln!(
        "error: {} message(s) ended Failed, e.g. {}: {why} (`chatsync retry ID` or `chatsync discard ID`)",
        failed.len(),
        first.id
    );
    Ok(ExitCode::FAILURE)
}

/// Where a message that has not reached the status waited for is, and
/// what happens to it next.
fn pending_why(s: Status) -> &'static str {
    match s {
        Status::Sending => {
            "it stays queued on this device and goes out by itself the next time it runs"
        }
        _ => "the server has it and is waiting to deliver it to the recipients' devices (it does once they are online)",
    }
}

fn ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}
