//! Deterministic simulation of chatsync: the real syncer cores and the real
//! server store, on virtual time, with injected faults, checked against
//! every invariant of DESIGN.md.
//!
//! # What runs
//!
//! * Each **device** is a real [`chatsync_client::core::Syncer`] over the
//!   real in-memory client store, driven exactly as the calling contract
//!   says ([`client`]).
//! * The **server** is the real [`chatsync_server::SqliteStore`] (in
//!   memory) behind a model of the gateway's dispatch: the same checks in
//!   the same order, dedup before refusal, ordered answers, group commit,
//!   fan-out ([`server`]).
//! * **Links** are netem-like pipes: latency, jitter, retransmission delay,
//!   stalls and cuts; in the hostile mode the server → client direction also
//!   drops and reorders frames ([`link`]).
//! * The **workload** mixes every user action (send, edit, delete, react,
//!   mark read, retry, discard, create a conversation) with faults (cut,
//!   partition, device crash, server crash with lost uncommitted writes and
//!   possibly new limits, path stall) ([`workload`]).
//! * The **world** owns one virtual clock, one ordered event queue and one
//!   seeded generator ([`world`]); the **checker** checks statuses live and
//!   everything else after healing and running until idle ([`checker`]).
//!
//! Everything comes from one `u64` seed: the same seed replays the same run,
//! event for event (the `deterministic` test holds that).
//!
//! # Running and replaying
//!
//! `cargo test -p chatsync-sim --release` runs the seed sweep
//! (`CHATSYNC_SIM_SEEDS`, default 10 000, from `CHATSYNC_SIM_FIRST`, default
//! 0). A failing seed is printed with the command that replays it, with a
//! full trace of every frame, commit and fault:
//!
//! ```text
//! CHATSYNC_SIM_SEED=1234 cargo test -p chatsync-sim --release -- replay --nocapture
//! ```
//!
//! ```
//! let report = chatsync_sim::run(7, &chatsync_sim::SimConfig::default());
//! assert!(report.violations.is_empty(), "{:#?}", report.violations);
//! ```

pub mod checker;
pub mod client;
pub mod link;
pub mod server;
pub mod workload;
pub mod world;

pub use server::Sabotage;
pub use world::{run, Report, SimConfig};
