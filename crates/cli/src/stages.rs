//! Stage stamps: where the time of one message goes, across processes.
//!
//! The client library and the server emit a `TRACE` event with target
//! [`TARGET`] at each hand-off on a message's way from `send` to In-Flight
//! (fields `stage` and `id`). When `CHATSYNC_STAGES` names a file (or
//! `chatsync bench --stages` picks one), [`Recorder`] appends one line per
//! event, `stage id unix_ns`, with one `write` each, so that the bench and
//! the server it starts can share the file. The wall clock is the one clock
//! both processes read alike. Nothing is recorded otherwise, and the
//! events then cost one disabled-callsite check each.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

/// Target of the stage events.
pub const TARGET: &str = "chatsync::stage";

/// Environment variable naming the file stamps are appended to; the bench
/// passes it on to the server process it starts.
pub const ENV: &str = "CHATSYNC_STAGES";

/// The stages of `send` → In-Flight, in order, as the events name them,
/// with what happens between one and the next.
pub const ORDER: [(&str, &str); 11] = [
    (
        "client.send",
        "client: send command taken by the syncer task",
    ),
    ("client.stored", "client: message durable in client storage"),
    ("client.transmitted", "client: frame written to the socket"),
    ("server.read", "server: frame read and decoded"),
    ("server.commit", "server: group-commit thread takes it"),
    ("server.durable", "server: insert + fsync done"),
    ("server.answered", "server: pushes queued, answer released"),
    ("server.reply", "server: connection's responder has the ack"),
    ("client.ack", "client: ack read from the socket"),
    ("client.ack_stored", "client: status stored, received sent"),
    ("app.in_flight", "app: subscription sees In-Flight"),
];

/// The file this process records to, once set.
static FILE: OnceLock<PathBuf> = OnceLock::new();

/// The stage file of this process, if it records stages.
pub fn file() -> Option<&'static Path> {
    FILE.get().map(PathBuf::as_path)
}

/// A tracing layer appending stage events to a file.
pub struct Recorder {
    out: Mutex<File>,
}

impl Recorder {
    /// Records to `path` (created, appended to), and makes it this
    /// process's stage file.
    pub fn to(path: &Path) -> std::io::Result<Self> {
        let out = OpenOptions::new().create(true).append(true).open(path)?;
        let _ = FILE.set(path.to_path_buf());
        Ok(Recorder {
            out: Mutex::new(out),
        })
    }
}

#[derive(Default)]
struct Fields {
    stage: String,
    id: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }

    /// `stage` is a `&str`, `id` a `%` (Display) field: both arrive
    /// unquoted.
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let slot = match field.name() {
            "stage" => &mut self.stage,
            "id" => &mut self.id,
            _ => return,
        };
        let _ = write!(slot, "{value:?}");
    }
}

impl<S: tracing::Subscriber> Layer<S> for Recorder {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != TARGET {
            return;
        }
        let ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mut f = Fields::default();
        event.record(&mut f);
        let line = format!("{} {} {ns}\n", f.stage, f.id);
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        // One write per line: lines of two processes never interleave.
        let _ = out.write_all(line.as_bytes());
    }
}

/// Per-message stamps read back from a stage file: for each id, the first
/// time each stage was seen (a resend or a repeated ack does not move it).
pub fn read(path: &Path) -> std::io::Result<HashMap<String, HashMap<String, u128>>> {
    let text = std::fs::read_to_string(path)?;
    let mut by_id: HashMap<String, HashMap<String, u128>> = HashMap::new();
    for line in text.lines() {
        let mut parts = line.split(' ');
        let (Some(stage), Some(id), Some(ns), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let Ok(ns) = ns.parse::<u128>() else {
            continue;
        };
        by_id
            .entry(id.to_owned())
            .or_default()
            .entry(stage.to_owned())
            .or_insert(ns);
    }
    Ok(by_id)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn the_client_library_and_the_server_stamp_under_this_target() {
        assert_eq!(TARGET, chatsync_client::STAGE_TARGET);
        assert_eq!(TARGET, chatsync_server::STAGE_TARGET);
    }

    #[test]
    fn events_of_the_stage_target_become_lines_and_read_back_per_message() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stages.log");
        let subscriber = tracing_subscriber::registry().with(Recorder::to(&path).unwrap());
        tracing::subscriber::with_default(subscriber, || {
            tracing::trace!(target: "chatsync::stage", stage = "client.send", id = %"m1");
            tracing::trace!(target: "chatsync::stage", stage = "client.stored", id = %"m1");
            tracing::trace!(target: "elsewhere", stage = "client.send", id = %"m2");
            // A second stamp of a stage (a resend) keeps the first.
            tracing::trace!(target: "chatsync::stage", stage = "client.send", id = %"m1");
        });
        let got = read(&path).unwrap();
        assert_eq!(got.len(), 1, "only the stage target is recorded: {got:?}");
        let m1 = &got["m1"];
        assert_eq!(m1.len(), 2);
        assert!(m1["client.send"] <= m1["client.stored"]);
        let lines = std::fs::read_to_string(&path).unwrap();
        assert_eq!(lines.lines().count(), 3);
        assert!(lines.lines().all(|l| l.split(' ').count() == 3), "{lines}");
    }
}
