//! chatsync client library.
//!
//! Three layers, from the inside out:
//!
//! * [`core`]: the **syncer core**, a deterministic state machine with no I/O.
//!   It is fed inputs (a user action, a frame received, the connection opened
//!   or lost, the current time) and yields outputs (a store write, a frame to
//!   transmit, a timeline change, when to wake it next).
//! * [`store`]: durable **client storage** behind the [`store::ClientStore`]
//!   trait, with a SQLite implementation and an in-memory twin.
//! * [`Client`]: a thin **tokio driver** that owns one core and one store,
//!   runs the WebSocket connection and the timers, and offers the app its API:
//!   `send`, `retry`, `discard`, `subscribe`.

pub mod core;
pub mod model;
pub mod store;

pub use model::{ConnectionState, Conversation, Failure, Item, Status, TimelineChange};
