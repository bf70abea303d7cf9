//! `chatsync chaos` end to end: a short seeded drill against a real server
//! process must inject faults of several kinds and find no violation.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_chatsync");

/// The `key=value` pairs of the report line starting with `prefix`.
fn pairs(out: &str, prefix: &str) -> BTreeMap<String, String> {
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` line in the output:\n{out}"));
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn number(map: &BTreeMap<String, String>, key: &str) -> u64 {
    map.get(key)
        .unwrap_or_else(|| panic!("no {key} in {map:?}"))
        .parse()
        .unwrap_or_else(|e| panic!("{key} in {map:?}: {e}"))
}

#[test]
fn a_short_seeded_drill_injects_faults_and_keeps_every_invariant() {
    let mut child = Command::new(BIN)
        .args([
            "chaos",
            "--seed",
            "20261203",
            "--clients",
            "3",
            "--duration",
            "8",
            "--fault-every-ms",
            "350",
            "--settle-timeout",
            "60",
        ])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    // Bounded: the drill takes ~10 s; a hang fails the test instead of CI.
    let deadline = Instant::now() + Duration::from_secs(240);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chatsync chaos did not finish within 240 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = out_reader.join().unwrap();
    let err = err_reader.join().unwrap();
    assert!(
        status.success(),
        "chaos failed ({status}):\n{out}\nstderr:\n{err}"
    );

    let result = pairs(&out, "chaos-result: ");
    for key in [
        "lost",
        "duplicated",
        "reordered",
        "stuck",
        "failed",
        "violations",
    ] {
        assert_eq!(number(&result, key), 0, "{key} in\n{out}");
    }
    let sent = number(&result, "sent");
    assert!(sent >= 20, "only {sent} messages sent:\n{out}");
    assert_eq!(number(&result, "acknowledged"), sent, "{out}");
    let delivered = &result["delivered"];
    let (got, expected) = delivered.split_once('/').unwrap();
    assert_eq!(got, expected, "delivered {delivered}:\n{out}");
    assert!(expected.parse::<u64>().unwrap() >= sent, "{out}");

    // The drill must really have injected faults, of several kinds, the
    // kills included: a chaos mode that silently stopped injecting would
    // pass every invariant.
    let faults = pairs(&out, "chaos-faults: ");
    let fired: Vec<&String> = faults
        .iter()
        .filter(|(_, n)| n.parse::<u64>().unwrap() > 0)
        .map(|(k, _)| k)
        .collect();
    assert!(
        fired.len() >= 5,
        "only {fired:?} fired ({faults:?}):\n{out}"
    );
    for kind in ["kill-server", "kill-client"] {
        assert!(
            number(&faults, kind) >= 1,
            "no {kind} in {faults:?}:\n{out}"
        );
    }
    assert!(
        number(&faults, "cut") + number(&faults, "cut-after") + number(&faults, "drop+cut") >= 1,
        "no connection was cut: {faults:?}\n{out}"
    );
    assert!(number(&result, "faults") >= 8, "{out}");
}

#[test]
fn help_explains_every_flag() {
    let out = Command::new(BIN)
        .args(["chaos", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--duration",
        "--messages",
        "--seed",
        "--clients",
        "--rate",
        "--fault-every-ms",
        "--no-fault",
        "--calm",
        "--server",
        "--data",
        "--keep",
        "--settle-timeout",
        "--ack-timeout-ms",
        "--reconnect-cap-ms",
        "--quiet",
        "SIGKILL",
        "drop-ack",
        "black-hole",
    ] {
        assert!(
            help.contains(flag),
            "--help does not mention {flag}:\n{help}"
        );
    }
}
