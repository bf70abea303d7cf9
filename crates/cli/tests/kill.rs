//! Process-level fault tests: the real `chatsync` binary and a real server
//! process, killed with SIGKILL at awkward moments. Each test checks the
//! invariants of DESIGN.md (nothing lost, exactly once, order, no stuck
//! message) against the server's database file and both devices' storage.
#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::collections::HashSet;
use std::time::Duration;
use support::*;

const LONG: Duration = Duration::from_secs(60);

fn send_args<'a>(data: &'a str, bodies: &'a [String], extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["send", TITLE];
    args.extend(bodies.iter().map(String::as_str));
    args.extend(["--data", data]);
    args.extend(extra);
    args
}

fn sort_by_seq(items: &mut [Item]) {
    items.sort_by_key(|i| item_seq(i).unwrap_or(i64::MAX));
}

fn ids(items: &[Item]) -> Vec<&str> {
    items.iter().map(item_id).collect()
}

/// The sender's own messages on the server, in seq order.
fn sent_by(messages: &[ServerMessage], sender: &str) -> Vec<ServerMessage> {
    messages
        .iter()
        .filter(|m| m.sender == sender)
        .cloned()
        .collect()
}

/// Checks the sender's device after a flush: nothing Sending, every item
/// has its seq, local order (by local_seq) equals server order.
fn assert_sender_settled(items: &[Item], server: &[ServerMessage]) {
    for i in items {
        assert!(
            matches!(item_status(i), "in_flight" | "success"),
            "sender holds {} as {} after flush: {i}",
            item_id(i),
            item_status(i)
        );
        assert!(
            item_seq(i).is_some(),
            "sender's {} has no seq: {i}",
            item_id(i)
        );
    }
    let mut by_local = items.to_vec();
    by_local.sort_by_key(|i| i["local_seq"].as_i64().unwrap());
    let local: Vec<&str> = ids(&by_local);
    let remote: Vec<&str> = server.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(
        local, remote,
        "server order of the sender's messages differs from the order of its sends"
    );
    for i in items {
        let m = server.iter().find(|m| m.id == item_id(i)).unwrap();
        assert_eq!(item_seq(i), Some(m.seq), "seq of {} differs", m.id);
    }
}

/// Test 1. Server down; `send` commits 20 messages and is SIGKILLed while
/// they are Sending. After a restart and a flush, the server and the
/// recipient hold each exactly once, in send order, byte-identical.
#[test]
fn client_killed_while_sending_offline_loses_nothing() {
    let mut w = World::new(&[]);
    w.server.proc.kill();

    // Bytes that a normalising or trimming layer would change.
    let bodies: Vec<String> = (1..=20)
        .map(|i| format!("m{i:02} cafe\u{301} café 🎉 \"q\" \\n\ttab  "))
        .collect();
    let a = w.a_dir();
    let mut send = Proc::spawn("send", &send_args(&a, &bodies, &["--timeout", "60"]));
    send.read_until("20 \"sending\" lines", LONG, |l| {
        ids_with_status(l, "sending").len() >= 20
    });
    let committed = ids_with_status(&send.out, "sending");
    assert_eq!(committed.len(), 20);
    assert_unique("ids printed by send", committed.iter().map(String::as_str));
    assert!(
        ids_with_status(&send.out, "in-flight").is_empty(),
        "acknowledged with the server down: {:#?}",
        send.out
    );
    send.kill();

    w.server.restart();
    let out = run(&["flush", "--data", &a, "--timeout", "30"]);
    assert_eq!(
        out.code(),
        Some(0),
        "flush after the kill: {:?} {}",
        out.stdout,
        out.stderr
    );

    // Server: each exactly once, in send order, byte-identical.
    let server = server_messages(&w.server.db_path(), &w.conv);
    assert_eq!(
        server.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        committed,
        "server history differs from the committed sends"
    );
    for (m, body) in server.iter().zip(&bodies) {
        assert_eq!(
            &m.body, body,
            "server body of {} is not byte-identical",
            m.id
        );
        assert_eq!(m.sender, w.alice);
    }

    // Sender: all 20 with their seq, none Sending.
    let mut mine = history(&w.a, &w.conv);
    assert_eq!(mine.len(), 20, "sender's history: {mine:#?}");
    assert_sender_settled(&mine, &server);
    sort_by_seq(&mut mine);
    for (i, body) in mine.iter().zip(&bodies) {
        assert_eq!(item_body(i), body);
    }

    // Recipient: exactly once each, in seq order, byte-identical.
    let mut theirs = sync_until(&w.b, &w.conv, "all 20 messages", LONG, |items| {
        items.len() >= 20
    });
    assert_eq!(theirs.len(), 20, "recipient holds extra items: {theirs:#?}");
    sort_by_seq(&mut theirs);
    assert_eq!(ids(&theirs), committed, "recipient order differs");
    for ((i, m), body) in theirs.iter().zip(&server).zip(&bodies) {
        assert_eq!(item_body(i), body, "recipient body not byte-identical");
        assert_eq!(item_seq(i), Some(m.seq));
        assert_eq!(i["own"], false);
    }
}

/// Test 2. Server up; `send` with 300 pipelined bodies is SIGKILLed after
/// about 100 have been committed. After a flush, every committed message
/// is on the server exactly once, in send order, and nothing is Sending.
#[test]
fn client_killed_mid_traffic_resends_exactly_once_in_order() {
    let w = World::new(&[]);
    let bodies: Vec<String> = (1..=300)
        .map(|i| format!("b{i:03} {}", "x".repeat(300)))
        .collect();
    let a = w.a_dir();
    let mut send = Proc::spawn("send", &send_args(&a, &bodies, &["--timeout", "60"]));
    send.read_until("100 \"sending\" lines", LONG, |l| {
        ids_with_status(l, "sending").len() >= 100
    });
    send.kill();
    // Whatever it printed before dying is still in the pipe.
    send.drain(Duration::from_secs(5));
    let committed = ids_with_status(&send.out, "sending");
    eprintln!(
        "killed send after {} commits and {} acknowledgements",
        committed.len(),
        ids_with_status(&send.out, "in-flight").len()
    );
    assert_unique("ids printed by send", committed.iter().map(String::as_str));

    let out = run(&["flush", "--data", &a, "--timeout", "30"]);
    assert_eq!(
        out.code(),
        Some(0),
        "flush after the kill: {:?} {}",
        out.stdout,
        out.stderr
    );

    let server = server_messages(&w.server.db_path(), &w.conv);
    assert_unique("server history", server.iter().map(|m| m.id.as_str()));
    assert_unique("server bodies", server.iter().map(|m| m.body.as_str()));
    let mine = sent_by(&server, &w.alice);
    assert_eq!(mine.len(), server.len(), "messages from someone else?");
    // The committed ones come first, in the order of the send calls; at
    // most the one being committed at the kill may follow.
    let on_server: Vec<&str> = mine.iter().map(|m| m.id.as_str()).collect();
    assert!(
        on_server.len() >= committed.len() && on_server[..committed.len()] == committed[..],
        "server order is not the committed order:\nserver: {on_server:#?}\ncommitted: {committed:#?}"
    );
    // Each body is the one sent at that position.
    for (k, m) in mine.iter().enumerate() {
        assert_eq!(m.body, bodies[k], "message {} has another body", m.id);
    }

    let local = history(&w.a, &w.conv);
    assert_eq!(
        local.len(),
        mine.len(),
        "device and server disagree on what was sent"
    );
    assert_sender_settled(&local, &mine);
    let committed: HashSet<&str> = committed.iter().map(String::as_str).collect();
    let extra: Vec<&str> = on_server
        .iter()
        .copied()
        .filter(|id| !committed.contains(id))
        .collect();
    assert!(
        extra.len() <= 1,
        "more than one message that send never reported is on the server: {extra:?}"
    );
}

/// Test 3. The server is SIGKILLed while a 500-message `send` is flowing
/// and restarted on the same port and data directory. The client
/// reconnects by itself; nothing acknowledged is lost, nothing is
/// duplicated, order holds, and everything ends Success.
#[test]
fn server_killed_mid_traffic_loses_no_acknowledged_message() {
    // A modest rate keeps the traffic flowing long enough to be cut.
    let server_args = ["--rate", "200", "--burst", "50"];
    let mut w = World::new(&server_args);
    let n = 500;
    let bodies: Vec<String> = (1..=n).map(|i| format!("s{i:03}")).collect();
    let a = w.a_dir();
    let mut send = Proc::spawn(
        "send",
        &send_args(&a, &bodies, &["--until", "in-flight", "--timeout", "120"]),
    );
    send.read_until("50 \"in-flight\" lines", LONG, |l| {
        ids_with_status(l, "in-flight").len() >= 50
    });
    w.server.proc.kill();
    let acked: Vec<String> = ids_with_status(&send.out, "in-flight");
    eprintln!("server killed after {} acknowledgements seen", acked.len());
    assert!(
        acked.len() < n,
        "the traffic finished before the server was killed; the test needs more of it"
    );
    let sent = ids_with_status(&send.out, "sending");
    assert_eq!(sent.len(), n, "send prints every commit before any ack");

    w.server.restart();
    // Still on the server after the crash: every acknowledged message.
    let server = server_messages(&w.server.db_path(), &w.conv);
    let stored: HashSet<&str> = server.iter().map(|m| m.id.as_str()).collect();
    let lost: Vec<&String> = acked
        .iter()
        .filter(|id| !stored.contains(id.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged before the crash, gone after it: {lost:?}"
    );

    // The same send process reconnects and gets everything acknowledged.
    let status = send.wait(Duration::from_secs(120));
    assert!(
        status.success(),
        "send did not finish after the restart ({status}): {}\nfailures: {:#?}",
        send.stderr(),
        send.out
            .iter()
            .filter(|l| parse_status_line(l).is_none_or(|s| s.status == "failed"))
            .chain(send.out.iter().rev().take(3))
            .collect::<Vec<_>>()
    );
    let reached: HashSet<String> = ids_with_status(&send.out, "in-flight")
        .into_iter()
        .chain(ids_with_status(&send.out, "success"))
        .collect();
    assert_eq!(reached.len(), n, "not every message was acknowledged");

    let server = server_messages(&w.server.db_path(), &w.conv);
    assert_unique("server history", server.iter().map(|m| m.id.as_str()));
    assert_eq!(
        server.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        sent,
        "server order is not the send order"
    );
    for (m, body) in server.iter().zip(&bodies) {
        assert_eq!(&m.body, body);
    }

    let mut theirs = sync_until(&w.b, &w.conv, "all 500 messages", LONG, |items| {
        items.len() >= n
    });
    assert_unique("recipient history", ids(&theirs));
    assert_eq!(theirs.len(), n);
    sort_by_seq(&mut theirs);
    assert_eq!(
        ids(&theirs),
        sent,
        "recipient order is not the server order"
    );

    let mine = sync_until(&w.a, &w.conv, "all 500 Success", LONG, |items| {
        items.len() >= n && items.iter().all(|i| item_status(i) == "success")
    });
    assert_eq!(mine.len(), n);
    assert_sender_settled(&mine, &server);
}

/// Test 4. SIGTERM with traffic flowing and another client connected: the
/// server exits 0 within 10 s, and after a restart it still has every
/// message it acknowledged; the sender then finishes with no duplicate.
#[test]
fn sigterm_stops_the_server_promptly_and_keeps_acknowledged_messages() {
    let mut w = World::new(&["--rate", "200", "--burst", "50"]);
    let b = w.b_dir();
    let mut tail = Proc::spawn("tail", &["tail", "--data", &b]);
    tail.wait_stderr("connection: connected", LONG);
    let n = 300;
    let bodies: Vec<String> = (1..=n).map(|i| format!("t{i:03}")).collect();
    let a = w.a_dir();
    let mut send = Proc::spawn(
        "send",
        &send_args(&a, &bodies, &["--until", "in-flight", "--timeout", "120"]),
    );
    send.read_until("30 \"in-flight\" lines", LONG, |l| {
        ids_with_status(l, "in-flight").len() >= 30
    });
    let started = std::time::Instant::now();
    w.server.proc.terminate();
    let status = w.server.proc.wait(Duration::from_secs(10));
    eprintln!("server stopped after {:?}", started.elapsed());
    assert!(status.success(), "SIGTERM exit status: {status}");
    let acked = ids_with_status(&send.out, "in-flight");

    w.server.restart();
    let server = server_messages(&w.server.db_path(), &w.conv);
    let stored: HashSet<&str> = server.iter().map(|m| m.id.as_str()).collect();
    let lost: Vec<&String> = acked
        .iter()
        .filter(|id| !stored.contains(id.as_str()))
        .collect();
    assert!(lost.is_empty(), "acknowledged, then lost: {lost:?}");

    let status = send.wait(Duration::from_secs(120));
    assert!(status.success(), "send after restart: {}", send.stderr());
    let server = server_messages(&w.server.db_path(), &w.conv);
    assert_eq!(
        server.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        ids_with_status(&send.out, "sending"),
        "server history is not the send order, once each"
    );
}
