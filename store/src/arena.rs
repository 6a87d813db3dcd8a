//! The arena: one mapped file, an offset allocator, and block handles.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use memmap2::MmapRaw;
use offset_allocator::{Allocation, Allocator};
use parking_lot::Mutex;

/// Alignment (and allocation unit) of every block, in bytes.
pub const BLOCK_ALIGN: usize = 64;

/// The allocator counts in units of `BLOCK_ALIGN` bytes in a `u32`, so one
/// arena can span up to 256 GiB.
const MAX_UNITS: u64 = u32::MAX as u64;

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
}

/// Usage figures of an arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArenaStats {
    pub capacity: usize,
    pub live_blocks: usize,
    pub used_bytes: usize,
}

/// One node's object arena.
pub struct Arena {
    map: MmapRaw,
    capacity: usize,
    path: PathBuf,
    alloc: Mutex<Allocator>,
    max_blocks: usize,
    live_blocks: AtomicUsize,
    used_bytes: AtomicUsize,
    // Keeps the file open for as long as the mapping lives.
    _file: File,
}

impl std::fmt::Debug for Arena {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arena")
            .field("path", &self.path)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Arena {
    /// Creates a sparse arena file of `size` bytes in `dir` and maps it, for
    /// at most `max_blocks` live blocks (the allocator's bookkeeping is sized
    /// for that up front). Pages cost memory only once written.
    pub fn create(
        dir: &Path,
        name: &str,
        size: u64,
        max_blocks: u32,
    ) -> Result<Arc<Arena>, ArenaError> {
        let units = size / BLOCK_ALIGN as u64;
        if units == 0 || units > MAX_UNITS {
            return Err(ArenaError::Size {
                requested: size,
                min: BLOCK_ALIGN as u64,
                max: MAX_UNITS * BLOCK_ALIGN as u64,
            });
        }
        let capacity = (units * BLOCK_ALIGN as u64) as usize;
        let dir_err = |source| ArenaError::Dir {
            dir: dir.to_path_buf(),
            source,
        };
        let path = dir.join(name);
        // 0600: objects are readable by this user's nodes on the host only.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(dir_err)?;
        let setup = file
            .set_len(capacity as u64)
            .and_then(|()| MmapRaw::map_raw(&file));
        let map = match setup {
            Ok(map) => map,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(dir_err(e));
            }
        };
        Ok(Arc::new(Arena {
            map,
            capacity,
            path,
            // The allocator's nodes describe free regions as well as blocks:
            // at most one free region between two blocks, plus the tail.
            alloc: Mutex::new(Allocator::with_max_allocs(
                units as u32,
                2 * max_blocks.clamp(16, 1 << 24) + 1,
            )),
            max_blocks: max_blocks.clamp(16, 1 << 24) as usize,
            live_blocks: AtomicUsize::new(0),
            used_bytes: AtomicUsize::new(0),
            _file: file,
        }))
    }

    /// The arena file (other processes on this host may map it).
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn stats(&self) -> ArenaStats {
        ArenaStats {
            capacity: self.capacity,
            live_blocks: self.live_blocks.load(Ordering::Acquire),
            used_bytes: self.used_bytes.load(Ordering::Acquire),
        }
    }

    /// Reserves a block of `len` bytes (`len` may be 0).
    pub fn alloc(self: &Arc<Self>, len: usize) -> Result<BlockMut, ArenaError> {
        let units = len.div_ceil(BLOCK_ALIGN).max(1);
        let full = |alloc: &Allocator| {
            let report = alloc.storage_report();
            ArenaError::Full {
                requested: len,
                free: report.total_free_space as usize * BLOCK_ALIGN,
                largest: report.largest_free_region as usize * BLOCK_ALIGN,
                capacity: self.capacity,
            }
        };
        // The lock covers only the allocator's O(1) bookkeeping; arena blocks
        // hold large values, so this is amortised over a large copy.
        let allocation = {
            let mut alloc = self.alloc.lock();
            if units as u64 > MAX_UNITS {
                return Err(full(&alloc));
            }
            // Counted under the lock, so the limit is exact.
            if self.live_blocks.load(Ordering::Acquire) >= self.max_blocks {
                return Err(ArenaError::TooManyBlocks {
                    max: self.max_blocks,
                });
            }
            match alloc.allocate(units as u32) {
                Some(a) => {
                    self.live_blocks.fetch_add(1, Ordering::AcqRel);
                    a
                }
                None => return Err(full(&alloc)),
            }
        };
        let offset = allocation.offset as usize * BLOCK_ALIGN;
        debug_assert!(offset + len <= self.capacity);
        self.used_bytes
            .fetch_add(units * BLOCK_ALIGN, Ordering::AcqRel);
        Ok(BlockMut {
            inner: BlockInner {
                arena: Arc::clone(self),
                allocation,
                offset,
                len,
                units,
            },
        })
    }

    fn free(&self, allocation: Allocation, units: usize) {
        let mut alloc = self.alloc.lock();
        alloc.free(allocation);
        self.live_blocks.fetch_sub(1, Ordering::AcqRel);
        drop(alloc);
        self.used_bytes
            .fetch_sub(units * BLOCK_ALIGN, Ordering::AcqRel);
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // Every block holds an `Arc<Arena>`, so none is alive here.
        let _ = std::fs::remove_file(&self.path);
    }
}

struct BlockInner {
    arena: Arc<Arena>,
    allocation: Allocation,
    offset: usize,
    len: usize,
    units: usize,
}

impl BlockInner {
    fn ptr(&self) -> *mut u8 {
        // SAFETY: `offset + len <= capacity` (checked at allocation), so the
        // pointer stays inside the mapping.
        unsafe { self.arena.map.as_mut_ptr().add(self.offset) }
    }
}

impl Drop for BlockInner {
    fn drop(&mut self) {
        self.arena.free(self.allocation, self.units);
    }
}

/// A freshly allocated block, writable by its unique owner.
pub struct BlockMut {
    inner: BlockInner,
}

impl std::fmt::Debug for BlockMut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlockMut({}+{})", self.inner.offset, self.inner.len)
    }
}

impl BlockMut {
    pub fn len(&self) -> usize {
        self.inner.len
    }

    pub fn is_empty(&self) -> bool {
        self.inner.len == 0
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: the allocator hands each range to one block only and the
        // range lies inside the live mapping (held by `inner.arena`);
        // `BlockMut` is not Clone, so this is the only reference to it.
        unsafe { std::slice::from_raw_parts_mut(self.inner.ptr(), self.inner.len) }
    }

    /// Ends writing; the bytes are immutable from here on and may be shared.
    pub fn freeze(self) -> Block {
        Block { inner: self.inner }
    }
}

/// An immutable block, shareable across threads.
pub struct Block {
    inner: BlockInner,
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Block({}+{})", self.inner.offset, self.inner.len)
    }
}

impl Block {
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the range is inside the live mapping and owned by this block
        // alone; it was last written through the unique `BlockMut` before
        // `freeze`, which moved that writer into this immutable handle.
        unsafe { std::slice::from_raw_parts(self.inner.ptr(), self.inner.len) }
    }

    pub fn len(&self) -> usize {
        self.inner.len
    }

    pub fn is_empty(&self) -> bool {
        self.inner.len == 0
    }

    /// Offset of the block within the arena file.
    pub fn offset(&self) -> usize {
        self.inner.offset
    }
}

// SAFETY: a block is plain bytes in a shared mapping; `BlockMut` is unique and
// `Block` is read-only, so moving either between threads is sound, and `Block`
// may be read from several threads at once.
unsafe impl Send for BlockInner {}
// SAFETY: see above; `&Block` only ever exposes `&[u8]`.
unsafe impl Sync for BlockInner {}

#[cfg(test)]
mod tests {
    use super::*;

    fn arena(size: u64) -> (tempfile::TempDir, Arc<Arena>) {
        let dir = tempfile::tempdir().unwrap();
        let arena = Arena::create(dir.path(), "test.arena", size, 1024).unwrap();
        (dir, arena)
    }

    #[test]
    fn blocks_are_aligned_disjoint_and_freed() {
        let (_dir, arena) = arena(1 << 20);
        let mut a = arena.alloc(100).unwrap();
        let mut b = arena.alloc(5000).unwrap();
        a.as_mut_slice().fill(1);
        b.as_mut_slice().fill(2);
        let (a, b) = (a.freeze(), b.freeze());
        assert_eq!(a.offset() % BLOCK_ALIGN, 0);
        assert_eq!(b.offset() % BLOCK_ALIGN, 0);
        assert!(a.offset() + 128 <= b.offset() || b.offset() + 5056 <= a.offset());
        assert!(a.as_slice().iter().all(|&x| x == 1));
        assert!(b.as_slice().iter().all(|&x| x == 2));
        assert_eq!(arena.stats().live_blocks, 2);
        drop((a, b));
        assert_eq!(arena.stats().live_blocks, 0);
        assert_eq!(arena.stats().used_bytes, 0);
    }

    #[test]
    fn full_arena_is_an_error_then_recovers() {
        let (_dir, arena) = arena(1 << 16);
        let big = arena.alloc(40_000).unwrap();
        match arena.alloc(40_000) {
            Err(ArenaError::Full {
                requested,
                capacity,
                ..
            }) => {
                assert_eq!(requested, 40_000);
                assert_eq!(capacity, 1 << 16);
            }
            other => panic!("expected Full, got {other:?}"),
        }
        drop(big);
        assert!(arena.alloc(40_000).is_ok());
    }

    #[test]
    fn unusable_dir_and_bad_size_are_reported() {
        let err = Arena::create(Path::new("/nonexistent/owl"), "x", 1 << 20, 64).unwrap_err();
        assert!(matches!(err, ArenaError::Dir { .. }), "{err}");
        assert!(err.to_string().contains("OWL_STORE_DIR"));
        let dir = tempfile::tempdir().unwrap();
        let err = Arena::create(dir.path(), "x", 10, 64).unwrap_err();
        assert!(matches!(err, ArenaError::Size { .. }), "{err}");
    }

    #[test]
    fn block_slots_run_out_with_a_distinct_error() {
        let dir = tempfile::tempdir().unwrap();
        let arena = Arena::create(dir.path(), "slots", 1 << 20, 16).unwrap();
        let blocks: Vec<_> = (0..16).map(|_| arena.alloc(64).unwrap()).collect();
        match arena.alloc(64) {
            Err(ArenaError::TooManyBlocks { max: 16 }) => {}
            other => panic!("expected TooManyBlocks, got {other:?}"),
        }
        drop(blocks);
        assert!(arena.alloc(64).is_ok());
    }

    #[test]
    fn file_removed_on_drop() {
        let (dir, arena) = arena(1 << 16);
        let path = arena.path().to_path_buf();
        assert!(path.exists());
        drop(arena);
        assert!(!path.exists());
        drop(dir);
    }
}
