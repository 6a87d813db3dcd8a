//! What can go wrong in the object store.

use std::path::PathBuf;

/// Errors from creating or allocating in an arena.
#[derive(Debug, thiserror::Error)]
pub enum ArenaError {
    /// The store directory cannot hold the arena file.
    #[error("object store directory {dir} is not usable ({source}); set OWL_STORE_DIR to a writable directory on a tmpfs such as /dev/shm")]
    Dir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The requested arena size is zero or larger than one arena can span.
    #[error(
        "object store size {requested} bytes is invalid: it must be between {min} and {max} bytes"
    )]
    Size { requested: u64, min: u64, max: u64 },
    /// Every block slot of the arena is in use.
    #[error("object store holds its maximum of {max} objects; free objects you no longer need or start owl with a larger store (OWL_STORE_SIZE)")]
    TooManyBlocks { max: usize },
    /// Not enough contiguous free space for a block.
    #[error("object store is full: {requested} bytes requested, {free} of {capacity} bytes free (largest free region {largest}); free objects you no longer need or start owl with a larger store (OWL_STORE_SIZE)")]
    Full {
        requested: usize,
        free: usize,
        largest: usize,
        capacity: usize,
    },
    /// The store directory's filesystem ran out of room before the arena
    /// reached its size, and nothing was left to spill.
    #[error("object store is full: the filesystem of {dir} has no room for {requested} more bytes ({source}) and no object can be spilled; free objects you no longer need, set OWL_STORE_DIR to a larger filesystem, or lower OWL_STORE_SIZE to what it holds")]
    NoRoom {
        dir: PathBuf,
        requested: usize,
        #[source]
        source: std::io::Error,
    },
    /// Objects had to spill to make room, and the spill directory refused
    /// them (a full disk, most often).
    #[error("object store is full and spilling to {dir} failed ({source}); free space there, set OWL_SPILL_DIR to a larger disk, or free objects you no longer need")]
    Spill {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
