//! The scenarios of issue 5 §3, each a named test: bugs that real chat
//! clients shipped, replayed against the real server (in-process, on
//! loopback, SQLite in a temporary directory), real client storage files and
//! real WebSockets, with a frame-aware proxy in between to lose, delay,
//! hold or forge frames. S4 and S7 (SIGKILL of the client) are
//! process-level and live in `crates/cli/tests/scenarios_kill.rs`.
//!
//! Real time is used; delays that the bug reports give in seconds are scaled
//! down where a comment says so, keeping their ratios, so that the whole
//! suite runs in well under a minute.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
#[path = "../e2e/proxy.rs"]
mod proxy;
#[allow(dead_code)]
#[path = "../e2e/raw.rs"]
mod raw;
#[allow(dead_code)]
#[path = "../e2e/status.rs"]
mod status;
#[allow(dead_code)]
#[path = "../e2e/support.rs"]
mod support;

mod world;

mod s01_lost_ack;
mod s02_slow_server;
mod s03_own_echo;
mod s05_size_limit;
mod s06_refused_middle;
mod s08_offline_jitter;
mod s09_send_during_reconnect;
mod s10_lost_wakeup;
mod s11_delete_unsent;
mod s12_edit_before_ack;
mod s13_rate_limit;
mod s14_hard_text;
