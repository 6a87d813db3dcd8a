//! Spilling: moving the pages of frozen blocks from the arena's
//! filesystem (a tmpfs, i.e. memory) to a file on disk, without moving
//! the block.
//!
//! A spilled block keeps its address: the block's whole pages are written
//! to the spill file at the block's own offset, that file is mapped over
//! them (`MAP_FIXED`, one atomic replacement under the kernel's mmap lock,
//! so a thread reading the block meanwhile sees the same bytes before and
//! after), and the arena file's pages there are punched out. Readers
//! therefore never pin anything and nothing in `owl` changes for a
//! spilled value: its bytes are restored on demand, page by page, by the
//! page cache. The arena's address space is larger than its size
//! (`SPILL_SPAN`), so spilled blocks do not use up room for new ones.
//!
//! What does not spill: blocks being written, blocks too small to own a
//! whole page, and blocks whose offset was given to a same-host peer
//! (`Block::share_offset`): the peer reads the arena *file* there, which
//! a spill would turn into a hole.
//!
//! The spill file is unlinked as soon as it is created, so it cannot
//! outlive the process (SIGKILL included); freeing a spilled block punches
//! its range out of it, so disk space follows the live objects.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{OnceLock, Weak};

use parking_lot::Mutex;
use rustix::mm::{mmap, MapFlags, ProtFlags};

use crate::arena::{Arena, BlockShared, RESIDENT, SPILLED, SPILLING, UNSPILLABLE};
use crate::pages::punch;

/// The arena's address space is this many times its size when it spills.
pub const SPILL_SPAN: u64 = 16;

pub(crate) struct Spill {
    dir: PathBuf,
    file: OnceLock<File>,
    /// Frozen blocks in the order they were frozen: the oldest spill first.
    candidates: Mutex<VecDeque<Weak<BlockShared>>>,
    /// Held while spilling, so that two shards short of room do not both
    /// spill for the same need.
    busy: Mutex<()>,
    pub(crate) spilled_bytes: AtomicUsize,
}

/// Why a spill failed.
#[derive(Debug)]
pub(crate) struct SpillFailed {
    pub(crate) dir: PathBuf,
    pub(crate) source: io::Error,
}

impl Spill {
    pub(crate) fn new(dir: PathBuf) -> Spill {
        Spill {
            dir,
            file: OnceLock::new(),
            candidates: Mutex::new(VecDeque::new()),
            busy: Mutex::new(()),
            spilled_bytes: AtomicUsize::new(0),
        }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Registers a frozen block as a candidate.
    pub(crate) fn push(&self, block: Weak<BlockShared>, live_blocks: usize) {
        let mut c = self.candidates.lock();
        // Freed blocks leave dead entries; dropping them when the queue is
        // twice the live count keeps it O(live) at O(1) amortised cost.
        if c.len() >= 2 * live_blocks + 64 {
            c.retain(|w| w.strong_count() > 0);
        }
        c.push_back(block);
    }

    fn file(&self, arena_name: &str) -> io::Result<&File> {
        if let Some(f) = self.file.get() {
            return Ok(f);
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        let path = self.dir.join(format!("{arena_name}.spill"));
        // A leftover of a process with this pid killed in the instant
        // between create and unlink below: nobody's.
        let _ = std::fs::remove_file(&path);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        // Nothing but this process reads it (through its fd and mapping):
        // unlinked at once, it cannot be left behind.
        std::fs::remove_file(&path)?;
        Ok(self.file.get_or_init(|| file))
    }

    /// Spills the oldest resident blocks until `want` bytes of pages have
    /// left the arena's filesystem or none is left to spill. Returns the
    /// bytes spilled.
    pub(crate) fn spill(&self, arena: &Arena, want: usize) -> Result<usize, SpillFailed> {
        let _busy = self.busy.lock();
        let failed = |source| SpillFailed {
            dir: self.dir.clone(),
            source,
        };
        let mut done = 0;
        while done < want {
            let Some(weak) = self.candidates.lock().pop_front() else {
                break;
            };
            let Some(block) = weak.upgrade() else {
                continue;
            };
            if block
                .state
                .compare_exchange(RESIDENT, SPILLING, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                // Shared with a peer, or spilled: never a candidate again.
                continue;
            }
            let file = match self.file(arena.file_name()) {
                Ok(f) => f,
                Err(e) => {
                    block.state.store(RESIDENT, Ordering::Release);
                    self.candidates.lock().push_front(weak);
                    return Err(failed(e));
                }
            };
            match spill_block(arena, file, &block) {
                Ok(0) => block.state.store(UNSPILLABLE, Ordering::Release),
                Ok(n) => {
                    block.spilled.store(n, Ordering::Release);
                    block.state.store(SPILLED, Ordering::Release);
                    arena.resident.fetch_sub(n, Ordering::AcqRel);
                    self.spilled_bytes.fetch_add(n, Ordering::AcqRel);
                    done += n;
                }
                Err(e) => {
                    block.state.store(RESIDENT, Ordering::Release);
                    self.candidates.lock().push_front(weak);
                    return Err(failed(e));
                }
            }
        }
        Ok(done)
    }

    /// Moves a spilled block's pages back under the arena file (empty: a
    /// new block reserves them) and frees its range of the spill file.
    /// Called once, as the block is freed.
    pub(crate) fn unspill(&self, arena: &Arena, start: usize, len: usize) -> io::Result<()> {
        let file = self
            .file
            .get()
            .expect("a block spilled, so the file exists");
        // SAFETY: `start..start + len` is the interior of a block being
        // freed (no handle to it is left), inside the arena's mapping;
        // mapping the arena file back there restores the mapping the
        // allocator's other blocks assume.
        unsafe { map_over(arena, &arena.file, start, len)? };
        self.spilled_bytes.fetch_sub(len, Ordering::AcqRel);
        punch(file, start, start + len)
    }

    /// Writes spilled pages to disk and drops them from the page cache, so
    /// the next read of a spilled block comes from the disk (benchmarks).
    pub(crate) fn evict(&self) -> io::Result<()> {
        if let Some(f) = self.file.get() {
            f.sync_data()?;
            drop_cached(f)?;
        }
        Ok(())
    }
}

/// Drops `file`'s clean pages from the page cache (benchmarks: the next
/// read comes from the disk).
pub fn drop_cached(file: &File) -> io::Result<()> {
    rustix::fs::fadvise(file, 0, None, rustix::fs::Advice::DontNeed).map_err(Into::into)
}

/// The whole pages inside `offset..offset + len`.
pub(crate) fn interior(offset: usize, len: usize, page: usize) -> (usize, usize) {
    let start = offset.next_multiple_of(page);
    let end = (offset + len) / page * page;
    (start, end.max(start))
}

fn spill_block(arena: &Arena, file: &File, block: &BlockShared) -> io::Result<usize> {
    let (start, end) = interior(block.offset, block.len, arena.pages.page_size());
    if end == start {
        return Ok(0);
    }
    // SAFETY: the block is frozen (its state was RESIDENT), so these bytes
    // never change; they lie inside the mapping, which `arena` keeps alive.
    let bytes = unsafe { std::slice::from_raw_parts(arena.base().add(start), end - start) };
    if let Err(e) = file.write_all_at(bytes, start as u64) {
        let _ = punch(file, start, end);
        return Err(e);
    }
    // SAFETY: the range is the interior of a frozen block that the
    // spiller holds (it cannot be freed meanwhile); the spill file holds
    // the same bytes at the same offsets, so readers see no change.
    if let Err(e) = unsafe { map_over(arena, file, start, end - start) } {
        let _ = punch(file, start, end);
        return Err(e);
    }
    // The block is spilled now, whatever happens next: if the filesystem
    // refuses to punch, its pages just stay allocated (it can then not
    // give room back, and a later allocation reports `NoRoom`).
    let _ = arena.pages.release(&arena.file, start, end);
    Ok(end - start)
}

/// Maps `len` bytes of `file` at offset `start` over the arena's mapping at
/// the same offset.
///
/// # Safety
/// `start..start + len` must be page-aligned, inside the arena's mapping,
/// and either unused by any handle or holding, in `file`, exactly the
/// bytes it shows now.
unsafe fn map_over(arena: &Arena, file: &File, start: usize, len: usize) -> io::Result<()> {
    // SAFETY: the caller guarantees the range is ours to replace; MAP_FIXED
    // replaces the old pages atomically with respect to other threads.
    let ptr = unsafe { arena.base().add(start) };
    // SAFETY: as above.
    unsafe {
        mmap(
            ptr.cast(),
            len,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::SHARED | MapFlags::FIXED,
            file,
            start as u64,
        )
    }?;
    Ok(())
}
