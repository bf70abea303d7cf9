//! The syncer core.
