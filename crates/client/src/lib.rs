//! chatsync client library.
