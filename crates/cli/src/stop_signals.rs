//! The signals that end a long command early (Ctrl-C, `kill`, a closed
//! terminal), listened for from the start so that none is lost to the
//! default action while the command is busy.

use anyhow::Context;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// Listens for SIGINT, SIGTERM and SIGHUP.
pub struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl StopSignals {
    /// Starts listening.
    pub fn listen() -> anyhow::Result<StopSignals> {
        let on = |kind: SignalKind, name: &str| {
            signal(kind).with_context(|| format!("cannot listen for {name}"))
        };
        Ok(StopSignals {
            interrupt: on(SignalKind::interrupt(), "Ctrl-C")?,
            terminate: on(SignalKind::terminate(), "SIGTERM")?,
            hangup: on(SignalKind::hangup(), "SIGHUP")?,
        })
    }

    /// Waits for the first of them: what happened, and the exit code a
    /// shell reports for a process that signal ended (128 + its number).
    pub async fn recv(&mut self) -> (&'static str, u8) {
        tokio::select! {
            _ = self.interrupt.recv() => ("interrupted", 130),
            _ = self.terminate.recv() => ("terminated", 143),
            _ = self.hangup.recv() => ("hung up", 129),
        }
    }
}
