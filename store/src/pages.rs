//! Which pages of the arena file have storage behind them.
//!
//! The arena file is sparse. A store directory with less room than
//! the arena (Docker's 64 MiB /dev/shm under a 4 GiB arena) used to fail at
//! the first store into a page the filesystem could not back: the kernel
//! kills the process with SIGBUS. So every page a block touches is reserved
//! with `fallocate` before the block is handed out, and a full filesystem
//! becomes an `ENOSPC` the arena can act on (spill, or report).
//!
//! One bit per page says "reserved": the check on the put path is a few
//! atomic loads, and `fallocate` runs only for pages never reserved (or
//! given back by a spill).

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rustix::fs::{fallocate, FallocateFlags};

pub(crate) struct Pages {
    page: usize,
    bits: Box<[AtomicU64]>,
    /// False once the filesystem refused `fallocate` (EOPNOTSUPP): pages
    /// are then used unreserved, as a plain sparse file.
    supported: AtomicBool,
}

impl Pages {
    pub(crate) fn new(span: usize) -> Pages {
        let page = rustix::param::page_size();
        let pages = span.div_ceil(page);
        Pages {
            page,
            bits: zeroed(pages.div_ceil(64)),
            supported: AtomicBool::new(true),
        }
    }

    pub(crate) fn page_size(&self) -> usize {
        self.page
    }

    pub(crate) fn supported(&self) -> bool {
        self.supported.load(Ordering::Relaxed)
    }

    fn is_set(&self, p: usize) -> bool {
        self.bits[p / 64].load(Ordering::Acquire) & (1 << (p % 64)) != 0
    }

    fn set(&self, from: usize, to: usize, on: bool) {
        for p in from..to {
            let bit = 1u64 << (p % 64);
            if on {
                self.bits[p / 64].fetch_or(bit, Ordering::AcqRel);
            } else {
                self.bits[p / 64].fetch_and(!bit, Ordering::AcqRel);
            }
        }
    }

    /// Reserves storage for every page that bytes `start..end` of `file`
    /// touch. `ENOSPC` (or `EDQUOT`) means the filesystem is full; nothing
    /// new stays reserved then.
    pub(crate) fn reserve(&self, file: &File, start: usize, end: usize) -> io::Result<()> {
        if end <= start || !self.supported() {
            return Ok(());
        }
        let (first, last) = (start / self.page, end.div_ceil(self.page));
        let mut p = first;
        while p < last {
            if self.is_set(p) {
                p += 1;
                continue;
            }
            let run = p;
            while p < last && !self.is_set(p) {
                p += 1;
            }
            // Two threads may reserve a shared edge page at once: harmless,
            // fallocate of reserved pages changes nothing.
            let (off, len) = ((run * self.page) as u64, ((p - run) * self.page) as u64);
            match fallocate(file, FallocateFlags::KEEP_SIZE, off, len) {
                Ok(()) => self.set(run, p, true),
                Err(e) if e == rustix::io::Errno::OPNOTSUPP => {
                    self.supported.store(false, Ordering::Relaxed);
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Gives the storage of whole pages `start..end` (page-aligned) back
    /// to the filesystem; a later block there reserves them again.
    pub(crate) fn release(&self, file: &File, start: usize, end: usize) -> io::Result<()> {
        debug_assert!(
            start.next_multiple_of(self.page) == start && end.next_multiple_of(self.page) == end
        );
        if end <= start {
            return Ok(());
        }
        self.set(start / self.page, end / self.page, false);
        punch(file, start, end)
    }
}

/// `n` zero bits, from zeroed memory the kernel hands out lazily: a
/// 64 GiB span's 2 MiB of bits costs memory only where pages are reserved,
/// and nothing at start-up.
fn zeroed(n: usize) -> Box<[AtomicU64]> {
    // SAFETY: all-zero bytes are a valid `AtomicU64` (the value 0).
    unsafe { Box::<[AtomicU64]>::new_zeroed_slice(n).assume_init() }
}

/// Frees the storage of bytes `start..end` of `file` (the file keeps its
/// length; reads there return zeros).
pub(crate) fn punch(file: &File, start: usize, end: usize) -> io::Result<()> {
    fallocate(
        file,
        FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
        start as u64,
        (end - start) as u64,
    )
    .map_err(Into::into)
}

/// Whether an I/O error means "the filesystem has no room".
pub(crate) fn is_no_room(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(c) if c == rustix::io::Errno::NOSPC.raw_os_error() || c == rustix::io::Errno::DQUOT.raw_os_error())
}
