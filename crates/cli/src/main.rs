//! The chatsync command.
fn main() {}
