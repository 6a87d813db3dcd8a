//! Scheduling policy, sans-IO: which ready task a shard runs next
//! ([`queue`]) and where a ready task runs ([`place`]). Both are pure
//! functions over what the engine tells them; neither touches threads,
//! sockets or the clock.

pub mod place;
pub mod queue;

pub use queue::*;
