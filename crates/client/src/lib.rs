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
//!
//! ```no_run
//! # async fn demo() -> Result<(), chatsync_client::ClientError> {
//! use chatsync_client::Client;
//! let dir = std::path::Path::new("/tmp/alice");
//! let client = Client::login(dir, "127.0.0.1:7878", "alice", "correct horse", "laptop").await?;
//! let conv = client.create_conversation("lunch", &["bob"]).await?;
//! let mut timeline = client.subscribe(conv.id, 50).await?;
//! let id = client.send(conv.id, "hi bob").await?; // durable, shown as Sending
//! while let Some(change) = timeline.changes.recv().await {
//!     println!("{change:?}");
//! }
//! # let _ = id; Ok(()) }
//! ```

mod client;
pub mod core;
mod driver;
mod error;
pub mod model;
pub mod store;

pub use client::{register, Client, Timeline, DB_FILE};
pub use driver::STAGE_TARGET;
pub use error::ClientError;
pub use model::{ConnectionState, Conversation, Failure, Item, Status, TimelineChange};
