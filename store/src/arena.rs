//! The arena: one mapped file, an offset allocator, and block handles.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use memmap2::MmapRaw;
use offset_allocator::{Allocation, Allocator};
use parking_lot::Mutex;

use crate::error::ArenaError;
use crate::pages::{is_no_room, Pages};
use crate::spill::{interior, Spill, SPILL_SPAN};

/// Alignment (and allocation unit) of every block, in bytes.
pub const BLOCK_ALIGN: usize = 64;

/// The allocator counts in units of `BLOCK_ALIGN` bytes in a `u32`, so one
/// arena can span up to 256 GiB.
const MAX_UNITS: u64 = u32::MAX as u64;

/// Rounds of "spill, then try again" before an allocation gives up: each
/// round spills at least what is missing, so more than one is needed only
/// when other threads take the room first.
const ROOM_ROUNDS: usize = 8;

// A block's life, in `BlockShared::state`.
pub(crate) const WRITING: u8 = 0;
pub(crate) const RESIDENT: u8 = 1;
/// Its offset was given to a same-host peer, which reads the arena file.
pub(crate) const SHARED: u8 = 2;
pub(crate) const SPILLING: u8 = 3;
pub(crate) const SPILLED: u8 = 4;
/// Owns no whole page: spilling it would free nothing.
pub(crate) const UNSPILLABLE: u8 = 5;

/// Usage figures of an arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArenaStats {
    /// The arena's size: the most bytes of live blocks it keeps in the
    /// store directory at once.
    pub capacity: usize,
    pub live_blocks: usize,
    /// Bytes of live blocks, resident or spilled.
    pub used_bytes: usize,
    /// Bytes of live blocks kept in the store directory.
    pub resident_bytes: usize,
    /// Bytes of live blocks whose pages are in the spill file.
    pub spilled_bytes: usize,
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
    pub(crate) resident: AtomicUsize,
    pub(crate) pages: Pages,
    spill: Option<Spill>,
    // Open (and locked: see `sweep`) for as long as the mapping lives.
    pub(crate) file: File,
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
    /// for that up front). Pages cost memory only once written. Without a
    /// spill directory, an arena whose live blocks reach `size` is full.
    pub fn create(
        dir: &Path,
        name: &str,
        size: u64,
        max_blocks: u32,
    ) -> Result<Arc<Arena>, ArenaError> {
        Self::create_inner(dir, name, size, max_blocks, None)
    }

    /// [`Arena::create`], spilling the oldest blocks to a file in
    /// `spill_dir` when live blocks would pass `size` or the store
    /// directory runs out of room (see `spill`).
    pub fn with_spill(
        dir: &Path,
        name: &str,
        size: u64,
        max_blocks: u32,
        spill_dir: &Path,
    ) -> Result<Arc<Arena>, ArenaError> {
        Self::create_inner(dir, name, size, max_blocks, Some(spill_dir.to_path_buf()))
    }

    fn create_inner(
        dir: &Path,
        name: &str,
        size: u64,
        max_blocks: u32,
        spill_dir: Option<PathBuf>,
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
        // Spilled blocks keep their addresses, so a spilling arena's
        // address space (sparse: it costs nothing) outgrows its size.
        // (`max_blocks` stays: the allocator's bookkeeping is allocated up
        // front, and slots for 16 times as many blocks cost every node
        // tens of MiB for a rare case.)
        let span_units = match spill_dir {
            Some(_) => units.saturating_mul(SPILL_SPAN).min(MAX_UNITS),
            None => units,
        };
        let span = (span_units * BLOCK_ALIGN as u64) as usize;
        let max_blocks = max_blocks.clamp(16, 1 << 24);
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
        let setup = crate::sweep::lock(&file)
            .and_then(|()| file.set_len(span as u64))
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
                span_units as u32,
                2 * max_blocks + 1,
            )),
            max_blocks: max_blocks as usize,
            live_blocks: AtomicUsize::new(0),
            used_bytes: AtomicUsize::new(0),
            resident: AtomicUsize::new(0),
            pages: Pages::new(span),
            spill: spill_dir.map(Spill::new),
            file,
        }))
    }

    /// The arena file (other processes on this host may map it).
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn file_name(&self) -> &str {
        self.path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("owl")
    }

    pub(crate) fn base(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Where blocks spill to, if they do.
    pub fn spill_dir(&self) -> Option<&Path> {
        self.spill.as_ref().map(|s| s.dir())
    }

    /// Whether pages are reserved before use (false on a filesystem
    /// without `fallocate`: a full one then kills the process with SIGBUS).
    pub fn reserves_pages(&self) -> bool {
        self.pages.supported()
    }

    pub fn stats(&self) -> ArenaStats {
        ArenaStats {
            capacity: self.capacity,
            live_blocks: self.live_blocks.load(Ordering::Acquire),
            used_bytes: self.used_bytes.load(Ordering::Acquire),
            resident_bytes: self.resident.load(Ordering::Acquire),
            spilled_bytes: self
                .spill
                .as_ref()
                .map_or(0, |s| s.spilled_bytes.load(Ordering::Acquire)),
        }
    }

    /// Reserves a block of `len` bytes (`len` may be 0). When live blocks
    /// would pass the arena's size, or its filesystem is full, the oldest
    /// spillable blocks spill first (if the arena spills).
    pub fn alloc(self: &Arc<Self>, len: usize) -> Result<BlockMut, ArenaError> {
        let units = len.div_ceil(BLOCK_ALIGN).max(1);
        let bytes = units * BLOCK_ALIGN;
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
        debug_assert!(offset + len <= self.map.len());
        self.used_bytes.fetch_add(bytes, Ordering::AcqRel);
        let resident = self.resident.fetch_add(bytes, Ordering::AcqRel) + bytes;
        // From here on, dropping `block` undoes everything above.
        let block = BlockMut {
            inner: Arc::new(BlockShared {
                arena: Arc::clone(self),
                allocation,
                offset,
                len,
                units,
                state: AtomicU8::new(WRITING),
                spilled: AtomicUsize::new(0),
            }),
        };
        if resident > self.capacity {
            self.within_size(len, bytes)?;
        }
        self.reserve(offset, len)?;
        Ok(block)
    }

    /// Spills until live resident blocks fit the arena's size again.
    fn within_size(&self, len: usize, bytes: usize) -> Result<(), ArenaError> {
        for _ in 0..ROOM_ROUNDS {
            let over = self
                .resident
                .load(Ordering::Acquire)
                .saturating_sub(self.capacity);
            if over == 0 {
                return Ok(());
            }
            if self.spill_some(over)? == 0 {
                break;
            }
        }
        let resident = self.resident.load(Ordering::Acquire);
        if resident <= self.capacity {
            return Ok(());
        }
        let free = self.capacity.saturating_sub(resident - bytes);
        Err(ArenaError::Full {
            requested: len,
            free,
            largest: free,
            capacity: self.capacity,
        })
    }

    /// Reserves the pages of a new block, spilling others while the
    /// filesystem is full.
    fn reserve(&self, offset: usize, len: usize) -> Result<(), ArenaError> {
        let mut rounds = 0;
        loop {
            let err = match self.pages.reserve(&self.file, offset, offset + len) {
                Ok(()) => return Ok(()),
                Err(e) if is_no_room(&e) => e,
                Err(e) => {
                    return Err(ArenaError::Dir {
                        dir: self.dir().to_path_buf(),
                        source: e,
                    })
                }
            };
            rounds += 1;
            // Spill what the whole block needs: pages reserved before the
            // failure stay reserved, so this is more than enough.
            if rounds > ROOM_ROUNDS || self.spill_some(len)? == 0 {
                return Err(ArenaError::NoRoom {
                    dir: self.dir().to_path_buf(),
                    requested: len,
                    source: err,
                });
            }
        }
    }

    fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("/"))
    }

    /// Spills at least `want` bytes if it can; returns the bytes spilled.
    fn spill_some(&self, want: usize) -> Result<usize, ArenaError> {
        let Some(spill) = self.spill.as_ref() else {
            return Ok(0);
        };
        spill.spill(self, want).map_err(|f| ArenaError::Spill {
            dir: f.dir,
            source: f.source,
        })
    }

    /// Spills every spillable block now (benchmarks and tests); returns
    /// the bytes spilled.
    pub fn spill_all(&self) -> Result<usize, ArenaError> {
        self.spill_some(usize::MAX)
    }

    /// Writes the spill file to disk and drops it from the page cache, so
    /// that reading a spilled block next comes from the disk (benchmarks).
    pub fn evict_spilled(&self) -> std::io::Result<()> {
        self.spill.as_ref().map_or(Ok(()), |s| s.evict())
    }

    fn release(&self, b: &BlockShared) {
        let bytes = b.units * BLOCK_ALIGN;
        let spilled = b.spilled.load(Ordering::Acquire);
        if b.state.load(Ordering::Acquire) == SPILLED {
            let spill = self.spill.as_ref().expect("a spilled block has a spill");
            let (start, _) = interior(b.offset, b.len, self.pages.page_size());
            if let Err(e) = spill.unspill(self, start, spilled) {
                // The range still shows the spill file: handing it out
                // again would be wrong, so it stays allocated (and the
                // leak check reports it) rather than corrupt a value.
                eprintln!(
                    "owl: cannot return a spilled block of {} to the arena ({e}); its {bytes} bytes stay unused",
                    self.path.display()
                );
                return;
            }
        }
        let mut alloc = self.alloc.lock();
        alloc.free(b.allocation);
        self.live_blocks.fetch_sub(1, Ordering::AcqRel);
        drop(alloc);
        self.used_bytes.fetch_sub(bytes, Ordering::AcqRel);
        self.resident.fetch_sub(bytes - spilled, Ordering::AcqRel);
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // Every block holds an `Arc<Arena>`, so none is alive here.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What every handle to one block shares; the block's space returns to
/// the arena when the last one goes (the spiller holds one while it
/// spills, so a block is never freed mid-spill).
pub(crate) struct BlockShared {
    arena: Arc<Arena>,
    allocation: Allocation,
    pub(crate) offset: usize,
    pub(crate) len: usize,
    units: usize,
    pub(crate) state: AtomicU8,
    /// Bytes of its pages in the spill file (set with `SPILLED`).
    pub(crate) spilled: AtomicUsize,
}

impl BlockShared {
    fn ptr(&self) -> *mut u8 {
        // SAFETY: `offset + len <= map.len()` (checked at allocation), so
        // the pointer stays inside the mapping.
        unsafe { self.arena.base().add(self.offset) }
    }
}

impl Drop for BlockShared {
    fn drop(&mut self) {
        self.arena.release(self);
    }
}

/// A freshly allocated block, writable by its unique owner.
pub struct BlockMut {
    inner: Arc<BlockShared>,
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
        // range lies inside the live mapping (held by `inner.arena`), with
        // its pages reserved; `BlockMut` is not Clone and the spiller only
        // looks at frozen blocks, so this is the only reference to it.
        unsafe { std::slice::from_raw_parts_mut(self.inner.ptr(), self.inner.len) }
    }

    /// Ends writing; the bytes are immutable from here on and may be shared
    /// (and spilled).
    pub fn freeze(self) -> Block {
        let arena = &self.inner.arena;
        self.inner.state.store(RESIDENT, Ordering::Release);
        if let Some(spill) = arena.spill.as_ref() {
            spill.push(
                Arc::downgrade(&self.inner),
                arena.live_blocks.load(Ordering::Relaxed),
            );
        }
        Block { inner: self.inner }
    }
}

/// An immutable block, shareable across threads. Clones share the bytes;
/// the range is freed when the last one goes.
#[derive(Clone)]
pub struct Block {
    inner: Arc<BlockShared>,
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
        // `freeze`, which moved that writer into this immutable handle. A
        // spill swaps the pages under it for identical ones (see `spill`).
        unsafe { std::slice::from_raw_parts(self.inner.ptr(), self.inner.len) }
    }

    pub fn len(&self) -> usize {
        self.inner.len
    }

    pub fn is_empty(&self) -> bool {
        self.inner.len == 0
    }

    /// Offset of the block within the arena's address space.
    pub fn offset(&self) -> usize {
        self.inner.offset
    }

    /// The block's offset in the arena *file*, for a same-host peer that
    /// reads the file there; `None` once it is spilled (or spilling), when
    /// the file has a hole there. A block whose offset was given out stays
    /// in the arena file for good.
    pub fn share_offset(&self) -> Option<usize> {
        match self.inner.state.compare_exchange(
            RESIDENT,
            SHARED,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) | Err(SHARED) | Err(UNSPILLABLE) => Some(self.inner.offset),
            Err(_) => None,
        }
    }

    /// Whether the block's pages are in the spill file.
    pub fn is_spilled(&self) -> bool {
        self.inner.state.load(Ordering::Acquire) == SPILLED
    }
}

// SAFETY: a block is plain bytes in a shared mapping; `BlockMut` is unique and
// `Block` is read-only, so moving either between threads is sound, and `Block`
// may be read from several threads at once. The state and counters are atomics.
unsafe impl Send for BlockShared {}
// SAFETY: see above; `&Block` only ever exposes `&[u8]`.
unsafe impl Sync for BlockShared {}

#[cfg(test)]
#[path = "arena_tests.rs"]
mod tests;
