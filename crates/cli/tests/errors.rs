//! The CLI's errors: one clear line on stderr and a non-zero exit, and
//! nothing queued or stored by a command that failed.
#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use support::*;

/// Checks that a failed command said exactly one line, starting with
/// `error:` and mentioning every needle, and printed nothing on stdout.
fn assert_one_line_error(what: &str, out: &Output, needles: &[&str]) {
    eprintln!("{what}: exit {:?}, stderr {:?}", out.code(), out.stderr);
    assert!(
        !out.status.success(),
        "{what}: exited 0; stdout {:?}",
        out.stdout
    );
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{what}: stderr is not one line: {:?}",
        out.stderr
    );
    let line = lines[0];
    assert!(line.starts_with("error: "), "{what}: {line:?}");
    assert_says_each_cause_once(what, line);
    for n in needles {
        assert!(
            line.to_lowercase().contains(&n.to_lowercase()),
            "{what}: {line:?} does not mention {n:?}"
        );
    }
    assert!(
        out.stdout.is_empty(),
        "{what}: printed on stdout: {:?}",
        out.stdout
    );
}

/// Checks that no part of an error line (`a: b: c`) repeats another, as
/// `i/o error: X: X` would.
fn assert_says_each_cause_once(what: &str, line: &str) {
    let parts: Vec<&str> = line.split(": ").collect();
    for (i, p) in parts.iter().enumerate() {
        for q in &parts[i + 1..] {
            assert!(
                q.len() < 8 || !p.contains(q),
                "{what}: {q:?} is said twice in {line:?}"
            );
        }
    }
}

/// Creates an empty file `name` in `dir`; returns its path.
fn empty_file(dir: &std::path::Path, name: &str) -> String {
    let file = dir.join(name);
    std::fs::write(&file, "").unwrap();
    file.display().to_string()
}

#[test]
fn an_error_says_each_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    // A file where the client's data directory should be: the storage
    // error ("client storage directory: {0}") wraps the operating
    // system's, which must not follow it a second time.
    let file = empty_file(dir.path(), "a-file");
    let out = run(&["conversations", "--data", &file]);
    assert_one_line_error(
        "a client data directory that is a file",
        &out,
        &[&file, "file exists"],
    );
    // Nothing listens on port 1.
    let device = dir.path().join("device").display().to_string();
    let out = run(&[
        "login",
        "alice",
        "--password",
        "password-of-a-test",
        "--server",
        "127.0.0.1:1",
        "--data",
        &device,
    ]);
    assert_one_line_error(
        "login with the server unreachable",
        &out,
        &["127.0.0.1:1", "refused"],
    );
}

#[test]
fn flush_names_a_message_that_ended_failed() {
    let mut w = World::new(&["--max-body-bytes", "100"]);
    let a = w.a_dir();
    // Queued while the server is down, within the limit it announced...
    w.server.proc.kill();
    let body = "x".repeat(80);
    let out = run(&["send", TITLE, &body, "--data", &a, "--until", "queued"]);
    assert_eq!(out.code(), Some(0), "{:?} {}", out.stdout, out.stderr);
    // ...and refused by the server when it comes back with a smaller one.
    w.server.restart_with(&["--max-body-bytes", "50"]);
    let out = run(&["flush", "--data", &a, "--timeout", "30"]);
    assert_one_line_error(
        "flush with a refused message",
        &out,
        &["1 message", "failed"],
    );
}

#[test]
fn cli_errors_are_one_clear_line_with_a_nonzero_exit() {
    // A small announced limit: the client must use the server's, not the
    // default one.
    let w = World::new(&["--max-body-bytes", "100"]);
    let a = w.a_dir();

    // send to an unknown conversation title.
    let out = run(&["send", "no-such-room", "hello", "--data", &a]);
    assert_one_line_error("send to an unknown title", &out, &["no-such-room"]);
    // history of a well-formed id that names no conversation.
    let stranger = "0190f2f4-8a1b-7c3d-9e4f-5a6b7c8d9e0f";
    let out = run(&["history", stranger, "--data", &a]);
    assert_one_line_error("history of an unknown id", &out, &[stranger]);
    let out = run(&["send", stranger, "hello", "--data", &a]);
    assert_one_line_error("send to an unknown id", &out, &[stranger]);

    // login with a wrong password: refused, and no session is stored.
    let c = w.dir.path().join("carol-device");
    let c = c.display().to_string();
    let out = run(&[
        "login",
        "alice",
        "--password",
        "not-the-password",
        "--server",
        &w.server.addr,
        "--data",
        &c,
    ]);
    assert_one_line_error("login with a wrong password", &out, &["password"]);
    let out = run(&["conversations", "--data", &c]);
    assert_one_line_error("a device whose login failed", &out, &["log in"]);

    // A body over the limit counts UTF-8 bytes, not characters: 51 'é'
    // are 51 characters but 102 bytes.
    let over = "é".repeat(51);
    let out = run(&["send", TITLE, &over, "--data", &a]);
    assert_one_line_error("send over the body limit", &out, &["102", "100"]);
    assert!(
        history(&w.a, &w.conv).is_empty(),
        "a refused body was queued"
    );

    // Several bodies, one over the limit: all or nothing, so running the
    // command again cannot duplicate the ones before it.
    let out = run(&["send", TITLE, "short", &over, "ok again", "--data", &a]);
    assert_one_line_error(
        "send a batch with one body over the limit",
        &out,
        &["2 of 3", "nothing was queued"],
    );
    assert!(
        history(&w.a, &w.conv).is_empty(),
        "part of a refused batch was queued"
    );

    // An empty body.
    let out = run(&["send", TITLE, "", "--data", &a]);
    assert_one_line_error("send an empty body", &out, &["empty"]);

    // Exactly at the limit: accepted, stored byte-identical.
    let at = "é".repeat(50);
    let out = run(&[
        "send",
        TITLE,
        &at,
        "--data",
        &a,
        "--until",
        "in-flight",
        "--timeout",
        "30",
    ]);
    assert_eq!(
        out.code(),
        Some(0),
        "a body of exactly the limit: {:?} {}",
        out.stdout,
        out.stderr
    );
    let server = server_messages(&w.server.db_path(), &w.conv);
    assert_eq!(server.len(), 1, "{server:?}");
    assert_eq!(server[0].body, at);

    // Registering a taken name.
    let out = run(&[
        "register",
        "alice",
        "--password",
        "another-password",
        "--server",
        &w.server.addr,
    ]);
    assert_one_line_error("register a taken name", &out, &["alice", "taken"]);

    // The server is unreachable: login says so in one line.
    let out = run(&[
        "login",
        "alice",
        "--password",
        "password-of-a-test",
        "--server",
        "127.0.0.1:1",
        "--data",
        &c,
    ]);
    assert_one_line_error("login with the server unreachable", &out, &["127.0.0.1:1"]);
}

#[test]
fn a_server_whose_data_directory_is_a_file_says_so_before_listening() {
    let dir = tempfile::tempdir().unwrap();
    let file = empty_file(dir.path(), "not-a-directory");
    let out = run(&["server", "--listen", "127.0.0.1:0", "--data", &file]);
    // Nothing on stdout: it never said it was listening.
    assert_one_line_error(
        "server with a file as data directory",
        &out,
        &["data directory", &file, "is a file, not a directory"],
    );
}

#[test]
fn send_timing_out_says_where_each_message_is() {
    // bob's device is not running: messages reach In-Flight, not Success.
    let mut w = World::new(&[]);
    let a = w.a_dir();
    let out = run(&["send", TITLE, "hello bob", "--data", &a, "--timeout", "3"]);
    assert_eq!(out.code(), Some(2), "{:?} {}", out.stdout, out.stderr);
    assert_eq!(
        ids_with_status(&out.stdout, "in-flight").len(),
        1,
        "{:?}",
        out.stdout
    );
    assert!(
        out.stderr.contains("still in-flight after 3s")
            && out.stderr.contains("the server has it")
            && !out.stderr.contains("queued on this device"),
        "{}",
        out.stderr
    );

    // The server is down: the message stays Sending, queued on the device.
    w.server.proc.kill();
    let out = run(&[
        "send",
        TITLE,
        "are you there",
        "--data",
        &a,
        "--timeout",
        "1",
    ]);
    assert_eq!(out.code(), Some(2), "{:?} {}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("still sending after 1s")
            && out.stderr.contains("queued on this device")
            && !out.stderr.contains("the server has it"),
        "{}",
        out.stderr
    );
}

/// Starts `chatsync demo ARGS` with its data under `tmp` and its output
/// piped.
fn start_demo(tmp: &std::path::Path, args: &[&str]) -> std::process::Child {
    std::process::Command::new(BIN)
        .arg("demo")
        .args(args)
        .env("TMPDIR", tmp)
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// `chatsync demo | head -2`: the demo stops when nobody reads its output,
/// with the exit code of a closed pipe, no panic, and no data left behind.
#[test]
fn demo_into_a_closed_pipe_ends_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = start_demo(tmp.path(), &[]);
    let first = first_line(&mut child);
    assert!(first.starts_with("chatsync demo:"), "{first:?}");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Values the demo cannot run with are refused in one line.
#[test]
fn demo_refuses_what_it_cannot_run() {
    for (args, needle) in [
        (["demo", "--speed", "0"], "--speed"),
        (["demo", "--speed", "NaN"], "--speed"),
        (["demo", "--conversations", "0"], "--conversations"),
        (
            ["demo", "--settle-timeout", "18446744073709551615"],
            "--settle-timeout",
        ),
    ] {
        let out = run(&args);
        assert_one_line_error(&format!("{args:?}"), &out, &[needle]);
    }
}

/// Ctrl-C, SIGTERM or SIGHUP in the middle of the demo: it stops its
/// server, removes its data and exits 130, 143 or 129.
#[test]
fn an_interrupted_demo_removes_its_data() {
    for (signal, code) in [("-INT", 130), ("-TERM", 143), ("-HUP", 129)] {
        let tmp = tempfile::tempdir().unwrap();
        let mut child = start_demo(tmp.path(), &["--quiet"]);
        // Wait until the replay runs: the first progress line.
        let stdout = child.stdout.take().unwrap();
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
        let started = lines
            .by_ref()
            .map(Result::unwrap)
            .find(|l| l.contains("sent"));
        assert!(started.is_some(), "the demo never started its replay");
        send_signal(child.id(), signal);
        let rest: Vec<String> = lines.map(Result::unwrap).collect();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{rest:?}\n{stderr}");
        assert!(stderr.contains("removing"), "{stderr}");
        let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
        assert!(left.is_empty(), "{signal}: left behind: {left:?}");
    }
}
