//! Scenarios S4 and S7 of issue 5 §3, process-level: the real `chatsync`
//! binary as the client, killed with SIGKILL (not a graceful shutdown), a
//! real server process, real SQLite files. What a device holds is read with
//! `chatsync history --json` (no network needed), what the server holds
//! from its database file.
//!
//! S4 (b) needs "the frame left, the ack did not arrive": the client talks
//! to the server through a small TCP proxy in this test that parses the
//! server's WebSocket frames (unmasked, so readable) and, when told to,
//! withholds everything the server sends after `welcome`. The server then
//! stores the message and acknowledges it, and the ack never reaches the
//! client, which is killed at that moment.
#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;
use support::*;

const LONG: Duration = Duration::from_secs(30);
const PASSWORD: &str = "password-of-a-test";

// ---- a proxy that can withhold the server's answers ----------------------

/// Forwards TCP both ways. While `hold` is set when a connection opens,
/// every server frame after `welcome` on that connection is withheld.
struct HoldProxy {
    addr: String,
    hold: Arc<AtomicBool>,
}

impl HoldProxy {
    fn start(upstream: String) -> HoldProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let hold = Arc::new(AtomicBool::new(false));
        let h = hold.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue; // the client sees the connection close
                };
                let hold = h.load(Ordering::SeqCst);
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                thread::spawn(move || copy_raw(client, server));
                thread::spawn(move || server_frames(s2, c2, hold));
            }
        });
        HoldProxy { addr, hold }
    }

    fn hold(&self, on: bool) {
        self.hold.store(on, Ordering::SeqCst);
    }
}

fn copy_raw(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

/// Copies the HTTP upgrade answer, then the server's WebSocket frames one by
/// one; with `hold`, frames after the one carrying `welcome` are read and
/// withheld.
fn server_frames(mut from: TcpStream, mut to: TcpStream, hold: bool) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if from.read_exact(&mut byte).is_err() {
            return;
        }
        head.push(byte[0]);
    }
    if to.write_all(&head).is_err() {
        return;
    }
    let mut welcomed = false;
    loop {
        let mut frame = vec![0u8; 2];
        if from.read_exact(&mut frame).is_err() {
            break;
        }
        let ext = match frame[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mut len_bytes = vec![0u8; ext];
        if from.read_exact(&mut len_bytes).is_err() {
            break;
        }
        let len = match ext {
            0 => (frame[1] & 0x7f) as usize,
            _ => len_bytes.iter().fold(0usize, |n, b| (n << 8) | *b as usize),
        };
        frame.extend_from_slice(&len_bytes);
        let mut payload = vec![0u8; len];
        if from.read_exact(&mut payload).is_err() {
            break;
        }
        frame.extend_from_slice(&payload);
        if hold && welcomed {
            continue; // withheld: the server sent it, the client never gets it
        }
        if String::from_utf8_lossy(&payload).contains("\"type\":\"welcome\"") {
            welcomed = true;
        }
        if to.write_all(&frame).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
}

// ---- setting ---------------------------------------------------------------

struct Setting {
    _dir: tempfile::TempDir,
    server: Server,
    proxy: HoldProxy,
    /// alice's device (talks through the proxy).
    a: PathBuf,
    /// bob's device (talks to the server).
    b: PathBuf,
    conv: String,
}

fn dir_arg(p: &Path) -> String {
    p.display().to_string()
}

impl Setting {
    fn new() -> Setting {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(&dir.path().join("server"), &[]);
        let proxy = HoldProxy::start(server.addr.clone());
        let a = dir.path().join("alice");
        let b = dir.path().join("bob");
        for (user, data, via) in [("alice", &a, &proxy.addr), ("bob", &b, &server.addr)] {
            run_ok(&["register", user, "--password", PASSWORD, "--server", via]);
            run_ok(&[
                "login",
                user,
                "--password",
                PASSWORD,
                "--server",
                via,
                "--data",
                &dir_arg(data),
            ]);
        }
        let out = run_ok(&["create", TITLE, "bob", "--data", &dir_arg(&a)]);
        let conv = out
            .first()
            .and_then(|l| l.split('\t').next())
            .unwrap_or_else(|| panic!("no conversation id in {out:?}"))
            .to_string();
        Setting {
            _dir: dir,
            server,
            proxy,
            a,
            b,
            conv,
        }
    }

    fn send(&self, bodies: &[&str]) -> Proc {
        let a = dir_arg(&self.a);
        let mut args = vec!["send", TITLE];
        args.extend(bodies);
        args.extend(["--data", &a, "--timeout", "60"]);
        Proc::spawn("send", &args)
    }

    fn flush(&self) {
        let out = run(&["flush", "--data", &dir_arg(&self.a), "--timeout", "20"]);
        assert_eq!(
            out.code(),
            Some(0),
            "flush (a message stuck in Sending?): {:?} {}",
            out.stdout,
            out.stderr
        );
    }

    /// alice's items, in her send order.
    fn alice_history(&self) -> Vec<Item> {
        let mut items = history(&self.a, &self.conv);
        items.sort_by_key(|i| i["local_seq"].as_i64().unwrap_or(i64::MAX));
        items
    }
}

fn by_seq(mut items: Vec<Item>) -> Vec<Item> {
    items.sort_by_key(|i| item_seq(i).unwrap_or(i64::MAX));
    items
}

/// Waits until the server's database holds `id`.
fn server_stored(s: &Setting, id: &str) {
    let deadline = std::time::Instant::now() + LONG;
    while !server_messages(&s.server.db_path(), &s.conv)
        .iter()
        .any(|m| m.id == id)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the server never stored {id}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// Exactly these bodies, once each, in this order, on the server, at alice
/// (confirmed, with the server's seqs) and at bob.
fn assert_delivered_once_in_order(s: &Setting, ids: &[String], bodies: &[&str]) {
    let server = server_messages(&s.server.db_path(), &s.conv);
    let on_server: Vec<&str> = server.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(on_server, ids, "server history");
    let stored: Vec<&str> = server.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(stored, bodies);
    let mine = by_seq(history(&s.a, &s.conv));
    assert_eq!(
        mine.iter().map(item_id).collect::<Vec<_>>(),
        ids,
        "alice's history"
    );
    for (item, m) in mine.iter().zip(&server) {
        assert!(
            matches!(item_status(item), "in_flight" | "success"),
            "alice holds {} as {}",
            item_id(item),
            item_status(item)
        );
        assert_eq!(item_seq(item), Some(m.seq));
    }
    let theirs = by_seq(sync_until(&s.b, &s.conv, "every message", LONG, |items| {
        items.len() >= ids.len()
    }));
    assert_eq!(
        theirs.iter().map(item_id).collect::<Vec<_>>(),
        ids,
        "bob's history"
    );
}

// ---- S4 ------------------------------------------------------------------

/// S4 (a): SIGKILL right after the local write, before anything is
/// transmitted (the server is down). After a restart the message is still
/// there, Sending; it goes out exactly once when the server is back, and
/// the catch-up that follows (bob wrote meanwhile) does not remove it.
#[test]
fn s04_kill_after_local_write_before_transmit() {
    let mut s = Setting::new();
    s.server.proc.kill();
    let mut send = s.send(&["written, not sent"]);
    send.read_until("the message stored", LONG, |l| {
        !ids_with_status(l, "sending").is_empty()
    });
    send.kill(); // SIGKILL
    let m = ids_with_status(&send.out, "sending").remove(0);

    // Restarted while the server is still down: shown, Sending.
    let mine = s.alice_history();
    assert_eq!(mine.iter().map(item_id).collect::<Vec<_>>(), [m.as_str()]);
    assert_eq!(item_status(&mine[0]), "sending");

    s.server.restart();
    run_ok(&[
        "send",
        TITLE,
        "bob was here",
        "--data",
        &dir_arg(&s.b),
        "--until",
        "in-flight",
    ]);
    s.flush();
    let server = server_messages(&s.server.db_path(), &s.conv);
    let bob_msg = server
        .iter()
        .find(|m| m.body == "bob was here")
        .unwrap()
        .id
        .clone();
    let mine = sync_until(&s.a, &s.conv, "bob's message", LONG, |items| {
        items.iter().any(|i| item_id(i) == bob_msg)
    });
    assert_unique("alice's history", mine.iter().map(item_id));
    assert!(mine.iter().any(|i| item_id(i) == m), "refresh removed {m}");
    assert_eq!(mine.len(), 2, "{mine:#?}");
    let alice_on_server: Vec<&str> = server
        .iter()
        .filter(|x| x.body == "written, not sent")
        .map(|x| x.id.as_str())
        .collect();
    assert_eq!(alice_on_server, [m.as_str()], "sent exactly once");
}

/// S4 (b): SIGKILL after the frame left, before the ack arrived (the
/// server stored the message; the proxy withholds its answers). After a
/// restart the message is Sending; a history refresh (catch-up, which
/// brings the message back from the server) confirms it instead of
/// removing or duplicating it; it is on the server exactly once.
#[test]
fn s04_kill_after_frame_left_before_ack() {
    let s = Setting::new();
    s.proxy.hold(true);
    let mut send = s.send(&["left, not acknowledged"]);
    send.read_until("the message stored", LONG, |l| {
        !ids_with_status(l, "sending").is_empty()
    });
    let m = ids_with_status(&send.out, "sending").remove(0);
    server_stored(&s, &m);
    send.kill(); // SIGKILL: the ack is still withheld
    assert!(
        ids_with_status(&send.out, "in-flight").is_empty(),
        "the ack reached the client: {:#?}",
        send.out
    );

    let mine = s.alice_history();
    assert_eq!(mine.iter().map(item_id).collect::<Vec<_>>(), [m.as_str()]);
    assert_eq!(item_status(&mine[0]), "sending", "{}", mine[0]);

    s.proxy.hold(false);
    s.flush();
    assert_delivered_once_in_order(&s, &[m], &["left, not acknowledged"]);
}

// ---- S7 ------------------------------------------------------------------

/// S7: with the server down, send "one", "two", "three", SIGKILL the client
/// 100 ms later, restart it while the server is still down (all three
/// Sending, in order), then start the server: all three delivered once, in
/// order.
#[test]
fn s07_kill_with_backlog_while_server_down() {
    let mut s = Setting::new();
    s.server.proc.kill();
    let bodies = ["one", "two", "three"];
    let mut send = s.send(&bodies);
    send.read_until("three messages stored", LONG, |l| {
        ids_with_status(l, "sending").len() == 3
    });
    thread::sleep(Duration::from_millis(100));
    send.kill(); // SIGKILL
    let ids = ids_with_status(&send.out, "sending");

    let mine = s.alice_history();
    assert_eq!(mine.iter().map(item_id).collect::<Vec<_>>(), ids);
    for (item, body) in mine.iter().zip(bodies) {
        assert_eq!(item_status(item), "sending");
        assert_eq!(item_body(item), body);
    }

    s.server.restart();
    s.flush();
    assert_delivered_once_in_order(&s, &ids, &bodies);
}
