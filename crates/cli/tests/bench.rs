//! Smoke tests of `chatsync bench`: the real binary with tiny sizes, then
//! the JSON it wrote. They check the shape and that figures were measured
//! (positive), never how fast anything is: timings depend on the machine.
#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use serde_json::Value;
use std::process::{Child, Command, Stdio};
use support::{first_line, send_signal};

const BIN: &str = env!("CARGO_BIN_EXE_chatsync");

/// Runs `chatsync bench ARGS` with what the tests around it need: no
/// peer reachable, no `RUST_LOG`, no stdin.
fn command(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.arg("bench")
        .args(args)
        .env_remove("RUST_LOG")
        // Peers are not selected here; make sure none is reached anyway.
        .env("CHATSYNC_BENCH_NATS_URL", "nats://127.0.0.1:1")
        .env("CHATSYNC_BENCH_SYNAPSE_URL", "http://127.0.0.1:1")
        .stdin(Stdio::null());
    c
}

/// Starts `chatsync bench` with piped output and returns it once it has
/// printed its first line (the machine); the rest of stdout is not read.
fn start(c: &mut Command) -> Child {
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let first = first_line(&mut child);
    assert!(first.starts_with("chatsync bench on"), "{first:?}");
    child
}

/// Runs `chatsync bench ARGS --json FILE`; returns the parsed JSON and
/// what it printed on stdout.
fn bench_printed(args: &[&str]) -> (Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let out = command(args).arg("--json").arg(&json).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench failed: {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let text = std::fs::read_to_string(&json).unwrap();
    (serde_json::from_str(&text).unwrap(), stdout)
}

/// Runs `chatsync bench ARGS --json FILE` and returns the parsed JSON.
fn bench(args: &[&str]) -> Value {
    bench_printed(args).0
}

/// Runs `chatsync bench ARGS`, expected to refuse before measuring
/// anything: a non-zero exit, nothing on stdout (not even the machine
/// line printed before the first suite) and one line on stderr naming
/// `needle`.
fn assert_refused_at_once(args: &[&str], needle: &str) {
    let out = command(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let what = format!("bench {args:?}");
    assert!(!out.status.success(), "{what}: exited 0");
    assert!(stdout.is_empty(), "{what}: ran before refusing:\n{stdout}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{what}: stderr is not one line: {stderr}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(needle),
        "{what}: {:?} does not name {needle:?}",
        lines[0]
    );
}

/// The number at `path` (`a.b.0.c`), asserted present and positive.
fn positive(v: &Value, path: &str) -> f64 {
    let mut cur = v;
    for part in path.split('.') {
        cur = match part.parse::<usize>() {
            Ok(i) => &cur[i],
            Err(_) => &cur[part],
        };
    }
    let n = cur
        .as_f64()
        .unwrap_or_else(|| panic!("{path} is not a number: {cur}"));
    assert!(n > 0.0, "{path} is not positive: {n}");
    n
}

#[test]
fn floors_and_syncer_write_every_figure() {
    let v = bench(&[
        "--suite",
        "floors,syncer",
        "--members",
        "3",
        "--messages",
        "60",
        "--rate",
        "300",
        "--echo-messages",
        "200",
        "--sqlite-commits",
        "20",
        "--sqlite-batches",
        "5",
        "--sqlite-batch",
        "10",
        "--window",
        "16",
    ]);
    positive(&v, "machine.nproc");
    assert!(v["machine"]["cpu_model"].is_string());
    for p in [
        "suites.floors.ws_echo.round_trip.p50_us",
        "suites.floors.ws_echo.round_trip.p99_us",
        "suites.floors.ws_echo.pipelined_msgs_per_s",
        "suites.floors.sqlite.single_commit.p50_us",
        "suites.floors.sqlite.commits_per_s",
        "suites.floors.sqlite.batched_rows_per_s",
        "suites.syncer.rate_achieved",
        "suites.syncer.settled_success",
        "key.send_p99_us",
        "key.in_flight_p50_us",
        "key.success_p50_us",
        "key.ws_rtt_p50_us",
        "key.fsync_commit_p50_us",
    ] {
        positive(&v, p);
    }
    let rows = v["suites"]["syncer"]["latencies"].as_array().unwrap();
    let metrics: Vec<&str> = rows.iter().filter_map(|r| r["metric"].as_str()).collect();
    for m in [
        "send (durable insert)",
        "send → visible as Sending",
        "send → In-Flight",
        "send → in every recipient's storage",
        "send → Success",
    ] {
        assert!(metrics.contains(&m), "no {m} row in {metrics:?}");
    }
    for r in rows {
        assert_eq!(r["count"].as_u64(), Some(60), "{r}");
        assert!(r["p50_us"].as_f64().unwrap() > 0.0, "{r}");
    }
    assert_eq!(v["suites"]["syncer"]["errors"]["send"].as_u64(), Some(0));
    // The goal verdicts are always listed.
    assert!(v["goals"].as_array().unwrap().len() >= 8);
}

#[test]
fn server_suites_write_every_figure() {
    let v = bench(&[
        "--suite",
        "throughput,fanout,catchup,connections",
        "--messages",
        "50",
        "--rate",
        "500",
        "--max-messages",
        "300",
        "--max-senders",
        "2",
        "--window",
        "16",
        "--fanout-sizes",
        "3,6",
        "--fanout-messages",
        "2",
        "--catchup-messages",
        "300",
        "--connections",
        "30",
        "--hold",
        "0",
    ]);
    for p in [
        "suites.throughput.max_rate.acked_per_s",
        "suites.throughput.max_rate.ack.p50_us",
        "suites.throughput.open_loop.ack.p99_us",
        "suites.fanout.sizes.0.to_last.p50_us",
        "suites.fanout.sizes.1.to_last.p50_us",
        "suites.catchup.msgs_per_s",
        "suites.catchup.seconds_to_current",
        "suites.connections.connected",
        "suites.connections.server_rss_connected_mib",
        "key.chatsync_max_per_s",
        "key.catchup_per_s",
    ] {
        positive(&v, p);
    }
    assert_eq!(
        v["suites"]["throughput"]["max_rate"]["errors"].as_u64(),
        Some(0)
    );
    assert_eq!(v["suites"]["connections"]["connected"].as_u64(), Some(30));
    assert_eq!(
        v["suites"]["fanout"]["sizes"][1]["incomplete"].as_u64(),
        Some(0)
    );
}

#[test]
fn history_suite_writes_every_figure() {
    let v = bench(&[
        "--suite",
        "history",
        "--history-server",
        "3000",
        "--history-client",
        "1000",
        "--history-conversations",
        "5",
        "--history-messages",
        "60",
        "--history-rate",
        "400",
        "--history-pages",
        "20",
    ]);
    for p in [
        "suites.history.fill.seconds",
        "suites.history.fill.appends_per_s",
        "suites.history.catch_up.msgs_per_s",
        "key.history_server_messages",
        "key.history_client_messages",
    ] {
        positive(&v, p);
    }
    for side in ["empty", "full"] {
        for fig in ["send", "in_flight", "page_newest", "page_deep"] {
            positive(&v, &format!("suites.history.{side}.{fig}.p50_us"));
            positive(&v, &format!("suites.history.{side}.{fig}.p99_us"));
        }
        let s = &v["suites"]["history"][side];
        assert_eq!(s["send_errors"].as_u64(), Some(0), "{side}: {s}");
        assert_eq!(s["not_in_flight"].as_u64(), Some(0), "{side}: {s}");
        assert_eq!(s["short_pages"].as_u64(), Some(0), "{side}: {s}");
    }
    // The full conversation holds what the client caught up and what it sent.
    assert_eq!(
        v["suites"]["history"]["full"]["messages_in_conversation"].as_u64(),
        Some(1060)
    );
    let ratios = v["suites"]["history"]["ratios"].as_array().unwrap();
    assert_eq!(ratios.len(), 4);
    for r in ratios {
        assert!(r["p50"].as_f64().unwrap() > 0.0, "{r}");
    }
}

#[test]
fn an_unwritable_json_path_fails_before_any_suite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-dir").join("b.json");
    let path = path.to_str().unwrap();
    assert_refused_at_once(&["--suite", "floors", "--json", path], path);
}

#[test]
fn options_of_every_selected_suite_are_checked_before_any_runs() {
    // The suite that uses the wrong option comes after one that would run
    // for a while (floors, with its default sizes).
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "--suite",
                "floors,history",
                "--history-server",
                "1000",
                "--history-client",
                "5000",
            ],
            "--history-server",
        ),
        (
            &["--suite", "floors,fanout", "--fanout-sizes", "1"],
            "--fanout-sizes",
        ),
        (
            &["--suite", "floors,fanout", "--fanout-messages", "0"],
            "--fanout-messages",
        ),
        (
            &["--suite", "floors,connections", "--connections", "0"],
            "--connections",
        ),
        (
            &["--suite", "floors,catchup", "--catchup-messages", "0"],
            "--catchup-messages",
        ),
        (
            &["--suite", "floors,throughput", "--max-messages", "0"],
            "--max-messages",
        ),
        (
            &["--suite", "floors", "--sqlite-batch", "0"],
            "--sqlite-batch",
        ),
        (
            &["--suite", "floors,throughput", "--window", "0"],
            "--window",
        ),
        (&["--suite", "floors,syncer", "--rate", "inf"], "--rate"),
        (&["--suite", "floors,syncer", "--rate", "NaN"], "--rate"),
        // A negative number is a value to check, not an unknown flag.
        (&["--suite", "floors,syncer", "--rate", "-1"], "--rate"),
        // Would panic in Duration::from_secs_f64 (one message per 1e300 s).
        (&["--suite", "floors,syncer", "--rate", "1e-300"], "--rate"),
        // Would panic in the window's semaphore.
        (
            &["--suite", "floors", "--window", "18446744073709551615"],
            "--window",
        ),
        (
            &["--suite", "floors", "--echo-messages", "0"],
            "--echo-messages",
        ),
        (
            &["--suite", "floors", "--sqlite-commits", "0"],
            "--sqlite-commits",
        ),
        (
            &["--suite", "floors", "--sqlite-batches", "0"],
            "--sqlite-batches",
        ),
        (
            &["--suite", "floors,throughput", "--max-senders", "0"],
            "--max-senders",
        ),
        (
            &["--suite", "floors,synapse", "--synapse-window", "0"],
            "--synapse-window",
        ),
        (
            &["--suite", "floors,synapse", "--synapse-messages", "0"],
            "--synapse-messages",
        ),
        (
            &["--suite", "floors,connections", "--ping-interval", "0"],
            "--ping-interval",
        ),
        (
            &["--suite", "floors,history", "--history-pages", "0"],
            "--history-pages",
        ),
        (
            &["--suite", "floors,history", "--history-messages", "0"],
            "--history-messages",
        ),
    ];
    for (args, flag) in cases {
        assert_refused_at_once(args, flag);
    }
}

#[test]
fn a_closed_stdout_ends_the_bench_quietly() {
    // Read the first line (the machine), then go away like `head -1`.
    let child = start(&mut command(&[
        "--suite",
        "floors",
        "--echo-messages",
        "100",
        "--sqlite-commits",
        "10",
        "--sqlite-batches",
        "2",
        "--sqlite-batch",
        "5",
    ]));
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        matches!(out.status.code(), Some(0 | 141)),
        "exit {:?}, stderr:\n{stderr}",
        out.status
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");
}

#[test]
fn a_single_suite_prints_only_what_it_measured() {
    let (v, printed) = bench_printed(&["--suite", "syncer", "--messages", "30", "--rate", "300"]);
    // The side-by-side has the client library's row, none of the peers'.
    assert!(
        printed.contains("chatsync send → In-Flight (client library)"),
        "{printed}"
    );
    for absent in [
        "NATS JetStream",
        "Redis XADD",
        "Matrix Synapse",
        "floor: WS",
    ] {
        assert!(!printed.contains(absent), "{absent} printed:\n{printed}");
    }
    // The goals it measured, then one line for the rest.
    assert!(printed.contains("send → Success p50 ≤ 3 ms"), "{printed}");
    let goals = v["goals"].as_array().unwrap();
    let unmeasured = goals
        .iter()
        .filter(|g| g["verdict"] == "not measured")
        .count();
    assert!(unmeasured > 0, "{goals:?}");
    assert!(
        !printed
            .lines()
            .any(|l| l.trim_end().ends_with("not measured")),
        "a not-measured goal was printed:\n{printed}"
    );
    let line = format!(
        "({unmeasured} more goals not measured: not among these suites, or run below the goal's sizes; --suite all with its defaults measures every one)"
    );
    assert!(printed.contains(&line), "no {line:?} in:\n{printed}");
    // The JSON keeps every goal, measured or not.
    assert!(goals.len() > unmeasured, "{goals:?}");
}

#[test]
fn an_absent_peer_is_skipped_naming_each_cause_once() {
    // Nothing listens on port 1 (set by `command`).
    let (v, printed) = bench_printed(&["--suite", "nats"]);
    let line = printed
        .lines()
        .find(|l| l.starts_with("== nats: SKIPPED"))
        .unwrap_or_else(|| panic!("no SKIPPED line in:\n{printed}"));
    assert!(line.contains("nats://127.0.0.1:1"), "{line}");
    assert_eq!(line.matches("os error").count(), 1, "{line}");
    assert!(v["suites"]["nats"]["skipped"].is_string(), "{v}");
}

/// `--stages`: the client library in the bench process and the server
/// process it starts both stamp every hand-off; the breakdown lists each
/// stage, measured on messages stamped at all of them.
#[test]
fn stages_break_send_to_in_flight_down_across_both_processes() {
    let (v, stdout) = bench_printed(&[
        "--suite",
        "syncer",
        "--messages",
        "60",
        "--rate",
        "200",
        "--stages",
    ]);
    let stages = v["suites"]["syncer_stages"]["stages"].as_array().unwrap();
    let names: Vec<&str> = stages
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "client.stored",
            "client.transmitted",
            "server.read",
            "server.commit",
            "server.durable",
            "server.answered",
            "server.reply",
            "client.ack",
            "client.ack_stored",
            "app.in_flight",
        ],
        "server stages need the server process's stamps"
    );
    for (i, s) in stages.iter().enumerate() {
        let count = s["lat"]["count"].as_u64().unwrap();
        assert!(count >= 30, "stage {i} measured on {count} messages: {s}");
    }
    positive(&v, "suites.syncer_stages.whole.p50_us");
    assert!(stdout.contains("where send → In-Flight goes"), "{stdout}");
    assert!(stdout.contains("server: insert + fsync done"), "{stdout}");
}

#[test]
fn stages_go_with_the_syncer_suite_alone() {
    assert_refused_at_once(&["--suite", "syncer,floors", "--stages"], "--stages");
    assert_refused_at_once(&["--stages"], "--stages");
    assert_refused_at_once(
        &["--suite", "syncer", "--stages", "--server", "127.0.0.1:1"],
        "--stages",
    );
}

/// Ctrl-C in the middle of a suite: the run ends with 130, its server
/// processes are gone and its temporary directory (stores of up to
/// gigabytes) is removed.
#[test]
fn an_interrupted_run_removes_its_temporary_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let child = command(&["--suite", "syncer", "--messages", "100000", "--rate", "500"])
        .env("TMPDIR", tmp.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let runs = |dir: &std::path::Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("chatsync-bench-")
            })
            .count()
    };
    // Wait until the suite has started sending (its clients' stores exist).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while runs(tmp.path()) == 0 || !has_clients(tmp.path()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the run never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    send_signal(child.id(), "-INT");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert_eq!(runs(tmp.path()), 0, "temporary directory left behind");
}

/// Whether a bench run under `dir` has created its clients' stores.
fn has_clients(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .any(|run| run.path().join("clients").is_dir())
}

/// Ctrl-C (or SIGTERM, SIGHUP) in the middle of a run: exit 130 (143, 129), and a
/// `--json` file the run created is not left behind empty; one that was
/// there keeps its figures.
#[test]
fn an_interrupted_run_leaves_no_empty_json_file() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.json");
    std::fs::write(&old, "{\"earlier\": 1}").unwrap();
    let runs = [
        (dir.path().join("new.json"), None, "-INT", 130),
        (old, Some("{\"earlier\": 1}"), "-INT", 130),
        (dir.path().join("term.json"), None, "-TERM", 143),
        (dir.path().join("hup.json"), None, "-HUP", 129),
    ];
    for (json, before, signal, code) in runs {
        let child = start(
            command(&["--suite", "floors", "--echo-messages", "10000000"])
                .arg("--json")
                .arg(&json),
        );
        // The file is opened before the first line is printed.
        assert!(json.exists(), "the JSON file is not opened up front");
        send_signal(child.id(), signal);
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "stderr:\n{stderr}");
        assert!(stderr.contains("removing"), "{stderr}");
        match before {
            None => assert!(!json.exists(), "an empty {} was left", json.display()),
            Some(text) => assert_eq!(std::fs::read_to_string(&json).unwrap(), text),
        }
    }
}

/// A refused `--stages` run leaves no stamps file behind.
#[test]
fn a_refused_stages_run_leaves_no_stamps_file() {
    let child = command(&["--stages", "--suite", "floors"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stamps = std::env::temp_dir().join(format!("chatsync-stages-{}.log", child.id()));
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(!stamps.exists(), "{} was left behind", stamps.display());
}

/// `--json /dev/stdout`-like targets: a device cannot be truncated, and is
/// written all the same (not an error after the whole run).
#[test]
fn json_can_go_to_a_device() {
    let out = command(&[
        "--suite",
        "floors",
        "--echo-messages",
        "100",
        "--sqlite-commits",
        "10",
        "--sqlite-batches",
        "2",
        "--sqlite-batch",
        "5",
        "--json",
        "/dev/null",
    ])
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("figures written to /dev/null"),
        "{stderr}"
    );
}

/// Ctrl-C while the SQLite floor commits: the run ends (its blocking loop
/// is stopped), rather than fsyncing on into a removed directory.
#[test]
fn an_interrupted_sqlite_floor_stops() {
    let mut child = start(&mut command(&[
        "--suite",
        "floors",
        "--echo-messages",
        "10",
        "--sqlite-commits",
        "1000000000",
    ]));
    // Past the echo floor (10 messages), into the commits.
    std::thread::sleep(std::time::Duration::from_secs(2));
    send_signal(child.id(), "-INT");
    // A liveness bound, not a timing claim: before the fix it never ended.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert_eq!(status.code(), Some(130));
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the run did not end within 60 s of Ctrl-C");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
