//! End-to-end tests of the client library against the real server: a real
//! `chatsync_server::serve` on loopback with its SQLite store in a temporary
//! directory, real client storage files (one directory per client) and real
//! WebSockets. Nothing here sleeps to make an assertion pass: conditions are
//! awaited with a timeout and fail with a message saying what did not happen.
#![allow(clippy::unwrap_used, clippy::expect_used)]

// The proxy offers more than these tests use (the scenarios use the rest).
#[allow(dead_code)]
mod proxy;
mod raw;
mod status;
mod support;

mod actions;
mod exchange;
mod lost_ack;
mod multibyte;
mod offline_recipient;
mod refusals;
mod retry_discard;
mod server_restart;
