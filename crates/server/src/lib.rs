//! chatsync server.
