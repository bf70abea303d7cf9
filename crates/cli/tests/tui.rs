//! End to end: the real `chatsync tui` binary in tmux against a real
//! `chatsync server` process, with bob's device running `chatsync tail`.
//! Types with `send-keys`, reads the screen with `capture-pane`; checks
//! what reached bob with `chatsync history --json` on his device.
//!
//! Skips (saying so) when tmux is not installed.
#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};
use support::*;

const WAIT: Duration = Duration::from_secs(30);

/// A shell command printing whether the terminal is in cooked mode:
/// `echo icanon MARKER` when it is, `-echo -icanon MARKER` in raw mode.
fn stty(marker: &str) -> String {
    format!(
        "stty -a | tr ' ;' '\\n\\n' | grep -x -e icanon -e echo -e -icanon -e -echo \
         | sort | tr '\\n' ' '; echo {marker}"
    )
}

/// A tmux server of its own (socket name per test process) running one
/// shell in a 120x40 window.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn available() -> bool {
        Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    fn start(name: &str) -> Tmux {
        let socket = format!("chatsync-{name}-{}", std::process::id());
        let t = Tmux { socket };
        t.tmux(&[
            "new-session",
            "-d",
            "-s",
            "main",
            "-x",
            "120",
            "-y",
            "40",
            "env -u RUST_LOG -u CHATSYNC_DATA sh",
        ]);
        t
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("tmux {args:?}: {e}"));
        assert!(
            out.status.success(),
            "tmux {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types text literally.
    fn type_text(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "main", "-l", text]);
    }

    /// Presses keys by tmux name (Enter, Escape, C-c, M-Enter, ...).
    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "main"];
        args.extend(keys);
        self.tmux(&args);
    }

    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "main"])
    }

    /// Waits until the screen satisfies `done`; returns it and how long it
    /// took. Panics with the screen after `timeout`.
    fn wait(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&str) -> bool,
    ) -> (String, Duration) {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if done(&s) {
                return (s, start.elapsed());
            }
            if start.elapsed() > timeout {
                panic!("waiting for {what} after {timeout:?}; the screen is:\n{s}");
            }
            thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

/// The screen row holding `text` in the timeline (not in the input box,
/// whose rows start with its own border).
fn line_with<'a>(screen: &'a str, text: &str) -> Option<&'a str> {
    screen.lines().find(|l| {
        l.split_once('│')
            .is_some_and(|(_, pane)| !pane.starts_with(['│', '┌', '└']) && pane.contains(text))
    })
}

fn status_of(screen: &str, text: &str) -> Option<&'static str> {
    let line = line_with(screen, text)?;
    let pane = line.split_once('│')?.1;
    let before = pane.split(text).next()?.trim_end();
    Some(if before.ends_with("✓✓") {
        "success"
    } else if before.ends_with('✓') {
        "in-flight"
    } else if before.ends_with('◌') {
        "sending"
    } else if before.ends_with('!') {
        "failed"
    } else {
        "none"
    })
}

#[test]
fn tui_sends_shows_status_live_and_waits_while_the_server_is_down() {
    if !Tmux::available() {
        eprintln!("SKIPPED: tmux is not installed (apt-get install tmux); the TUI end-to-end test did not run");
        return;
    }
    let mut world = World::new(&[]);
    let timing = world.dir.path().join("timing.log");
    let tmux = Tmux::start("tui");
    let a = world.a_dir();
    tmux.type_text(&format!(
        "{BIN} tui --data {a} --timing-log {}; echo TUI-EXITED-$?",
        timing.display()
    ));
    tmux.keys(&["Enter"]);
    tmux.wait("the conversation list, connected", WAIT, |s| {
        s.contains(TITLE) && s.contains("● connected")
    });

    // Open the room and send: the message is on screen at once.
    tmux.keys(&["Enter"]);
    tmux.wait("the input box", WAIT, |s| s.contains("message (Enter send"));
    tmux.type_text("hello bob from the tui");
    tmux.keys(&["Enter"]);
    let (screen, seen_after) = tmux.wait("the message", WAIT, |s| {
        line_with(s, "hello bob from the tui").is_some()
    });
    eprintln!("message on the tmux screen {seen_after:?} after send-keys Enter returned");
    assert!(
        status_of(&screen, "hello bob from the tui").is_some_and(|s| s != "none"),
        "{screen}"
    );
    // Bob's device is not running: the server has it (✓), not bob (✓✓).
    tmux.wait("in-flight", WAIT, |s| {
        status_of(s, "hello bob from the tui") == Some("in-flight")
    });

    // Bob's device comes up and stores it: Success.
    let mut tail = Proc::spawn("bob tail", &["tail", "--data", &world.b_dir()]);
    tmux.wait("success once bob has it", WAIT, |s| {
        status_of(s, "hello bob from the tui") == Some("success")
    });

    // A multi-line message (Alt-Enter makes a new line).
    tmux.type_text("first line");
    tmux.keys(&["M-Enter"]);
    tmux.type_text("second line");
    tmux.keys(&["Enter"]);
    let (screen, _) = tmux.wait("two lines", WAIT, |s| {
        line_with(s, "second line").is_some() && line_with(s, "first line").is_some()
    });
    assert!(screen.contains("first line"), "{screen}");

    // Edit the first message: Esc browses (the newest is selected), k
    // selects the one before, e loads its text into the input box.
    tmux.keys(&["Escape"]);
    // (Waiting keeps Esc and k apart: together they would read as Alt-k.)
    tmux.wait("browsing", WAIT, |s| s.contains("i or Enter to write"));
    tmux.keys(&["k"]);
    tmux.keys(&["e"]);
    tmux.wait("the edit box", WAIT, |s| s.contains("editing your message"));
    tmux.keys(&["C-u"]);
    tmux.type_text("hello bob, edited in the tui");
    tmux.keys(&["Enter"]);
    let edited = "hello bob, edited in the tui";
    let (screen, _) = tmux.wait("the edited text and marker", WAIT, |s| {
        line_with(s, edited).is_some_and(|l| l.contains("(edited)"))
            && line_with(s, "hello bob from the tui").is_none()
    });
    assert!(!screen.contains("edit failed"), "{screen}");

    // React with the first quick pick (👍): the reaction shows under it.
    tmux.keys(&["+"]);
    tmux.wait("the reaction prompt", WAIT, |s| s.contains("react:"));
    tmux.keys(&["1"]);
    tmux.wait("the reaction", WAIT, |s| {
        s.lines()
            .skip_while(|l| !l.contains(edited))
            .nth(1)
            .is_some_and(|l| l.contains("👍 × 1"))
    });

    // Bob's device (its tail is running) has the new text and the reaction.
    let alice = world.alice.clone();
    wait_history(
        &world.b,
        &world.conv,
        "the edit and the reaction",
        |items| {
            items.iter().any(|i| {
                i["body"] == edited
                    && i["edited"] == true
                    && i["reactions"].as_array().is_some_and(|r| {
                        r.iter().any(|r| {
                            r["emoji"] == "👍"
                                && r["users"]
                                    .as_array()
                                    .is_some_and(|u| u == &[alice.as_str()])
                        })
                    })
            })
        },
    );
    // Back to writing.
    tmux.keys(&["i"]);
    tmux.wait("the input box", WAIT, |s| s.contains("message (Enter send"));

    // The server goes down: the indicator says so; sending still works and
    // the message waits (◌), not Failed.
    world.server.proc.kill();
    tmux.wait("offline indicator", WAIT, |s| {
        s.contains("○ offline · reconnecting in")
    });
    tmux.type_text("sent while the server is down");
    tmux.keys(&["Enter"]);
    let (screen, _) = tmux.wait("the waiting message", WAIT, |s| {
        status_of(s, "sent while the server is down") == Some("sending")
            && s.contains("waiting for the connection")
    });
    assert!(!screen.contains("failed"), "{screen}");
    thread::sleep(Duration::from_millis(1500));
    let screen = tmux.screen();
    assert_eq!(
        status_of(&screen, "sent while the server is down"),
        Some("sending"),
        "{screen}"
    );

    // The server is back: it goes through by itself, up to Success.
    world.server.restart();
    tmux.wait(
        "success after the server came back",
        Duration::from_secs(60),
        |s| {
            status_of(s, "sent while the server is down") == Some("success")
                && s.contains("● connected")
        },
    );
    tail.drain(Duration::from_millis(200));

    // Help is one key away and lists the legend.
    tmux.keys(&["Escape"]);
    tmux.keys(&["?"]);
    tmux.wait("help", WAIT, |s| s.contains("Status of your messages"));
    tmux.keys(&["Escape"]);

    // q leaves, and the terminal is as it was (cooked mode, main screen).
    tmux.keys(&["q"]);
    tmux.wait("the shell after quitting", WAIT, |s| {
        s.contains("TUI-EXITED-0")
    });
    tmux.type_text(&stty("STTY-DONE"));
    tmux.keys(&["Enter"]);
    let (screen, _) = tmux.wait("stty", WAIT, |s| s.matches("STTY-DONE").count() >= 2);
    assert!(
        screen.contains("echo icanon STTY-DONE"),
        "terminal not restored:\n{screen}"
    );
    assert!(
        !screen.contains("Conversations ("),
        "alternate screen left:\n{screen}"
    );

    // A panic leaves the terminal as it was too (the panic hook restores it).
    tmux.type_text(&format!(
        "RUST_BACKTRACE=0 CHATSYNC_TUI_TEST_PANIC=1 {BIN} tui --data {a}; echo PANIC-EXITED-$?"
    ));
    tmux.keys(&["Enter"]);
    let (screen, _) = tmux.wait("the shell after the panic", WAIT, |s| {
        s.contains("PANIC-EXITED-101")
    });
    assert!(screen.contains("panicking on purpose"), "{screen}");
    tmux.type_text(&stty("STTY-AFTER-PANIC"));
    tmux.keys(&["Enter"]);
    let (screen, _) = tmux.wait("stty after the panic", WAIT, |s| {
        s.matches("STTY-AFTER-PANIC").count() >= 2
    });
    assert!(
        screen.contains("echo icanon STTY-AFTER-PANIC"),
        "terminal not restored after a panic:\n{screen}"
    );

    let log = std::fs::read_to_string(&timing).unwrap();
    eprintln!(
        "keystroke-to-screen of the real binary (key read → frame written to the pty):\n{log}"
    );
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 3, "one figure per sent message: {log}");
    // With the server down nothing can have confirmed it: it was drawn as
    // Sending (the others too, unless an ack beat the first frame).
    assert!(lines[2].contains("status=sending"), "{log}");
}

/// Reads a device's stored history (`chatsync history --json`) until
/// `done` holds; panics with the last history after [`WAIT`].
fn wait_history(
    data: &std::path::Path,
    conversation: &str,
    what: &str,
    done: impl Fn(&[Item]) -> bool,
) -> Vec<Item> {
    let start = Instant::now();
    loop {
        let items = history(data, conversation);
        if done(&items) {
            return items;
        }
        if start.elapsed() > WAIT {
            let shown: Vec<String> = items.iter().map(|i| i.to_string()).collect();
            panic!(
                "{} never had {what} after {WAIT:?}; its history:\n{}",
                data.display(),
                shown.join("\n")
            );
        }
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn tui_without_a_session_says_to_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nobody");
    let out = run(&["tui", "--data", &data.display().to_string()]);
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr.contains("chatsync login"),
        "stderr: {}",
        out.stderr
    );
}
