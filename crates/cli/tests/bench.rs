//! Smoke tests of `chatsync bench`: the real binary with tiny sizes, then
//! the JSON it wrote. They check the shape and that figures were measured
//! (positive), never how fast anything is: timings depend on the machine.
#![allow(clippy::unwrap_used, missing_docs)]

use serde_json::Value;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_chatsync");

/// Runs `chatsync bench ARGS --json FILE` and returns the parsed JSON.
fn bench(args: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let out = Command::new(BIN)
        .arg("bench")
        .args(args)
        .arg("--json")
        .arg(&json)
        .env_remove("RUST_LOG")
        // Peers are not selected here; make sure none is reached anyway.
        .env("CHATSYNC_BENCH_NATS_URL", "nats://127.0.0.1:1")
        .env("CHATSYNC_BENCH_SYNAPSE_URL", "http://127.0.0.1:1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench failed: {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let text = std::fs::read_to_string(&json).unwrap();
    serde_json::from_str(&text).unwrap()
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
