//! owl-store: the per-node object arena.
//!
//! Values too large to travel inline with their table entry are archived
//! (rkyv) straight into one [`Arena`] per node: a file in `/dev/shm` (or
//! `OWL_STORE_DIR`) mapped once with memmap2 and carved into blocks by an
//! O(1) offset allocator. Readers get `&[u8]` views into the mapping; nothing
//! is copied after the value is written.
//!
//! Invariants:
//! - A block's bytes are written only through its [`BlockMut`], which is
//!   unique; [`BlockMut::freeze`] turns it into a shareable [`Block`] whose
//!   bytes never change again. Blocks never overlap.
//! - Every block starts on a [`BLOCK_ALIGN`]-byte boundary, so archives are
//!   aligned for any rkyv type and large copies avoid 4 KiB aliasing.
//! - A block's space returns to the allocator exactly once, when the last
//!   handle to it drops. `live_blocks() == 0` after a finished workload.
//! - Every page a block touches has storage reserved before the block is
//!   handed out (`pages`): a full filesystem is an error, never SIGBUS.
//! - A spilled block keeps its address and bytes (`spill`); its pages live
//!   in the spill file until it is freed.
//! - A live arena's file is locked; a file whose lock is free belongs to a
//!   process that is gone (`sweep`).

mod arena;
mod dirs;
mod error;
mod pages;
mod peer;
mod spill;
mod sweep;

pub use arena::{Arena, ArenaStats, Block, BlockMut, BLOCK_ALIGN};
pub use dirs::{default_spill_dir, default_store_dir, room, store_dir_from_env};
pub use error::ArenaError;
pub use peer::{host_id, is_peer_arena, read_peer_arena, PeerArenaError};
pub use spill::{drop_cached, SPILL_SPAN};
pub use sweep::{arena_is_orphaned, sweep};
