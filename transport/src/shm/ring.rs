//! Shared-memory inboxes, their SPSC byte rings and doorbells: the only
//! module of the crate with `unsafe` (raw pointers into a mapping).
//!
//! An inbox is one file, owned by the node that reads it:
//!
//! ```text
//! 0     magic "owlshm01" | nodes u64 | ring_bytes u64 | owner u64
//! 128   bell: sleeping u32 | seq u32 (the futex word)
//! 256   slot 0 .. slot nodes-1, each SLOT_HEADER + ring_bytes:
//!         +0   tail u64   (bytes ever written; only the producer stores it)
//!         +128 head u64   (bytes ever read; only the consumer stores it)
//!         +256 data [ring_bytes], byte i of the stream at (i mod ring_bytes)
//! ```
//!
//! Slot `p` carries the stream from node `p` to the owner (the owner's own
//! slot is unused). `tail` and `head` sit on separate 128-byte lines so the
//! producer and consumer never write the same line (128: adjacent-line
//! prefetch pairs 64-byte lines). Both grow forever (u64 bytes never wrap);
//! `tail - head <= ring_bytes` always, which the reader checks because the
//! other side is another process.
//!
//! Ownership of bytes: the producer alone writes `[tail, head + ring_bytes)`,
//! the consumer alone reads `[head, tail)`; a `Release` store of `tail`
//! (`head`) hands bytes (space) to the other side, which loads it with
//! `Acquire`. Memory on one host is the trust boundary: any process of the
//! same user can map these files (mode 0600, names unguessable), so the
//! bytes read here are only ever copied out and then go through the frame
//! decoder's checks like bytes from a socket.
//!
//! The doorbell ([`Bell`]) is a Dekker pair with SeqCst fences; see
//! [`Bell::sleep`] for the argument that no wake-up is lost.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use memmap2::{MmapOptions, MmapRaw};
use rustix::thread::futex;

const MAGIC: u64 = u64::from_le_bytes(*b"owlshm01");
const HEADER: usize = 256;
const BELL: usize = 128;
const SLOT_HEADER: usize = 256;
const HEAD: usize = 128;
/// The smallest ring (tests use it to force wrap-around and split frames).
pub(crate) const MIN_RING: usize = 64;

/// The other side broke the ring's invariant (`head <= tail <= head + size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("shared-memory ring corrupted (head {head}, tail {tail}, size {size})")]
pub(crate) struct Corrupt {
    head: u64,
    tail: u64,
    size: u64,
}

/// One node's mapped inbox (its own, or a peer's it writes into).
#[derive(Debug)]
pub(crate) struct Inbox {
    map: MmapRaw,
    nodes: u32,
    ring_bytes: usize,
}

fn size_of(nodes: u32, ring_bytes: usize) -> Option<usize> {
    (SLOT_HEADER + ring_bytes)
        .checked_mul(nodes as usize)?
        .checked_add(HEADER)
}

fn layout_error(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

impl Inbox {
    /// Creates the owner's inbox at `path`: a new file (never an existing
    /// one), mode 0600, sized and mapped. `ring_bytes` is a power of two.
    pub(crate) fn create(
        path: &Path,
        owner: u32,
        nodes: u32,
        ring_bytes: usize,
    ) -> io::Result<Self> {
        assert!(ring_bytes.is_power_of_two() && ring_bytes >= MIN_RING);
        let len =
            size_of(nodes, ring_bytes).ok_or_else(|| layout_error("inbox too large".into()))?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        file.set_len(len as u64)?;
        let inbox = Self::map(&file, len, nodes, ring_bytes)?;
        // A fresh file is zeroed: heads, tails and the bell start at 0.
        inbox.u64_at(8).store(u64::from(nodes), Ordering::Relaxed);
        inbox.u64_at(16).store(ring_bytes as u64, Ordering::Relaxed);
        inbox.u64_at(24).store(u64::from(owner), Ordering::Relaxed);
        inbox.u64_at(0).store(MAGIC, Ordering::Release);
        Ok(inbox)
    }

    /// Maps a peer's inbox, checking that it belongs to this user alone and
    /// has the layout this cluster agreed on.
    pub(crate) fn open(path: &Path, owner: u32, nodes: u32, ring_bytes: usize) -> io::Result<Self> {
        let len =
            size_of(nodes, ring_bytes).ok_or_else(|| layout_error("inbox too large".into()))?;
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let meta = file.metadata()?;
        if meta.uid() != rustix::process::geteuid().as_raw() || meta.mode() & 0o077 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{} is not private to this user", path.display()),
            ));
        }
        if meta.len() != len as u64 {
            return Err(layout_error(format!(
                "{} has {} bytes, expected {len}",
                path.display(),
                meta.len()
            )));
        }
        let inbox = Self::map(&file, len, nodes, ring_bytes)?;
        let got = [0, 8, 16, 24].map(|off| inbox.u64_at(off).load(Ordering::Acquire));
        let want = [MAGIC, u64::from(nodes), ring_bytes as u64, u64::from(owner)];
        if got != want {
            return Err(layout_error(format!(
                "{}: header {got:x?}, expected {want:x?}",
                path.display()
            )));
        }
        Ok(inbox)
    }

    fn map(file: &File, len: usize, nodes: u32, ring_bytes: usize) -> io::Result<Self> {
        let map = MmapOptions::new().len(len).map_raw(file)?;
        Ok(Self {
            map,
            nodes,
            ring_bytes,
        })
    }

    fn u64_at(&self, off: usize) -> &AtomicU64 {
        assert!(off % 8 == 0 && off + 8 <= self.map.len());
        // SAFETY: `off` is 8-aligned (the mapping is page-aligned) and inside
        // the mapping, which lives as long as `&self`. Any bit pattern is a
        // valid AtomicU64, and every access to these words, from this or any
        // other process, is atomic.
        unsafe { &*self.map.as_mut_ptr().add(off).cast::<AtomicU64>() }
    }

    fn u32_at(&self, off: usize) -> &AtomicU32 {
        assert!(off % 4 == 0 && off + 4 <= self.map.len());
        // SAFETY: as in `u64_at`, for a 4-aligned u32.
        unsafe { &*self.map.as_mut_ptr().add(off).cast::<AtomicU32>() }
    }

    fn slot(&self, from: u32) -> usize {
        assert!(from < self.nodes);
        HEADER + from as usize * (SLOT_HEADER + self.ring_bytes)
    }

    /// The owner's doorbell.
    pub(crate) fn bell(&self) -> Bell<'_> {
        Bell {
            sleeping: self.u32_at(BELL),
            seq: self.u32_at(BELL + 4),
        }
    }

    fn tail(&self, from: u32) -> &AtomicU64 {
        self.u64_at(self.slot(from))
    }

    fn head(&self, from: u32) -> &AtomicU64 {
        self.u64_at(self.slot(from) + HEAD)
    }

    fn data(&self, from: u32) -> *mut u8 {
        // SAFETY: `slot` asserted `from < nodes`, so the slot and its
        // `ring_bytes` of data lie inside the mapping (sized by `size_of`).
        unsafe { self.map.as_mut_ptr().add(self.slot(from) + SLOT_HEADER) }
    }
}

/// The writing end of the ring `from -> owner` in the owner's inbox. One per
/// ring, held by node `from`'s I/O thread.
#[derive(Debug)]
pub(crate) struct Producer {
    inbox: std::sync::Arc<Inbox>,
    from: u32,
    tail: u64,
}

impl Producer {
    pub(crate) fn new(inbox: std::sync::Arc<Inbox>, from: u32) -> Self {
        let tail = inbox.tail(from).load(Ordering::Acquire);
        Self { inbox, from, tail }
    }

    /// Free bytes (SeqCst: also the producer's check before it sleeps).
    pub(crate) fn free(&self) -> Result<usize, Corrupt> {
        let head = self.inbox.head(self.from).load(Ordering::SeqCst);
        let size = self.inbox.ring_bytes as u64;
        let used = self.tail.wrapping_sub(head);
        if used > size {
            return Err(Corrupt {
                head,
                tail: self.tail,
                size,
            });
        }
        Ok((size - used) as usize)
    }

    /// Copies as much of `bytes` as fits and publishes it; returns how much.
    /// The caller then rings the owner's bell.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<usize, Corrupt> {
        let n = self.free()?.min(bytes.len());
        if n == 0 {
            return Ok(0);
        }
        let size = self.inbox.ring_bytes;
        let at = (self.tail % size as u64) as usize;
        let first = n.min(size - at);
        let data = self.inbox.data(self.from);
        // SAFETY: `at + first <= size` and `n - first < size`, so both copies
        // stay inside this slot's data. `free` (an Acquire load of `head`)
        // showed these `n` bytes are past everything the consumer has yet to
        // read: no one else reads or writes them until the Release store of
        // `tail` below. `bytes` is our own memory, so nothing overlaps.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), data.add(at), first);
            std::ptr::copy_nonoverlapping(bytes.as_ptr().add(first), data, n - first);
        }
        self.tail += n as u64;
        self.inbox
            .tail(self.from)
            .store(self.tail, Ordering::Release);
        Ok(n)
    }

    /// The bell of the node reading this ring.
    pub(crate) fn bell(&self) -> Bell<'_> {
        self.inbox.bell()
    }
}

/// The reading end of the ring `from -> owner`, held by the owner.
#[derive(Debug)]
pub(crate) struct Consumer {
    inbox: std::sync::Arc<Inbox>,
    from: u32,
    head: u64,
}

impl Consumer {
    pub(crate) fn new(inbox: std::sync::Arc<Inbox>, from: u32) -> Self {
        let head = inbox.head(from).load(Ordering::Acquire);
        Self { inbox, from, head }
    }

    /// Bytes waiting (SeqCst: also the owner's check before it sleeps).
    pub(crate) fn available(&self) -> Result<usize, Corrupt> {
        let tail = self.inbox.tail(self.from).load(Ordering::SeqCst);
        let size = self.inbox.ring_bytes as u64;
        let avail = tail.wrapping_sub(self.head);
        if avail > size {
            return Err(Corrupt {
                head: self.head,
                tail,
                size,
            });
        }
        Ok(avail as usize)
    }

    /// Appends up to `max` waiting bytes to `out` and frees their space;
    /// returns how many. The caller then rings the producer's bell.
    pub(crate) fn read(&mut self, out: &mut Vec<u8>, max: usize) -> Result<usize, Corrupt> {
        let n = self.available()?.min(max);
        if n == 0 {
            return Ok(0);
        }
        let size = self.inbox.ring_bytes;
        let at = (self.head % size as u64) as usize;
        let first = n.min(size - at);
        let data = self.inbox.data(self.from);
        out.reserve(n);
        let dst = out.len();
        // SAFETY: both source ranges lie in this slot's data (`at + first <=
        // size`, `n - first < size`); `available` (an Acquire load of
        // `tail`) showed the producer published these bytes and it will not
        // touch them until our Release store of `head`. `out` has room for
        // `n` more bytes (reserved above) and is our own memory; `set_len`
        // covers exactly the bytes just initialised.
        unsafe {
            let to = out.as_mut_ptr().add(dst);
            std::ptr::copy_nonoverlapping(data.add(at), to, first);
            std::ptr::copy_nonoverlapping(data, to.add(first), n - first);
            out.set_len(dst + n);
        }
        self.head += n as u64;
        self.inbox
            .head(self.from)
            .store(self.head, Ordering::Release);
        Ok(n)
    }
}

/// A node's doorbell: a sleeping flag and a futex word in its inbox, so that
/// peers in other processes (and the node's own threads) can wake its I/O
/// thread.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bell<'a> {
    sleeping: &'a AtomicU32,
    seq: &'a AtomicU32,
}

impl Bell<'_> {
    /// Called after changing anything the owner checks before sleeping (a
    /// ring's tail or head, a local queue, a flag): wakes it if it sleeps.
    /// Costs a fence and a load when it does not.
    pub(crate) fn ring(&self) {
        // Pairs with the fence in `sleep`; see there.
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) != 0
            && self.sleeping.swap(0, Ordering::SeqCst) != 0
        {
            self.seq.fetch_add(1, Ordering::SeqCst);
            // Not FUTEX_PRIVATE: the word is shared between processes.
            let _ = futex::wake(self.seq, futex::Flags::empty(), 1);
        }
    }

    /// The owner's I/O thread only: sleeps until rung, or `timeout` (the
    /// backstop, and how timers fire), unless `idle()` finds work.
    ///
    /// No lost wake-up: the sleeper does `sleeping = 1; fence(SeqCst);
    /// idle()` (which loads every condition), a waker does `change;
    /// fence(SeqCst); load sleeping`. With SeqCst fences on both sides
    /// (store-buffering forbidden), either `idle()` sees the change and we
    /// do not sleep, or the waker sees `sleeping == 1` and bumps `seq`.
    /// `seq` was loaded before `sleeping = 1`, so a bump that comes after
    /// makes `futex_wait(seq, s)` return at once (the kernel compares under
    /// its bucket lock) or wakes it.
    pub(crate) fn sleep(&self, timeout: Duration, idle: impl FnOnce() -> bool) {
        let s = self.seq();
        self.announce();
        if idle() {
            self.wait(s, timeout);
        }
        self.retract();
    }

    /// The futex word now: load it *before* [`Bell::announce`], then wait
    /// on that value (the steps of [`Bell::sleep`], which a hosted node
    /// splits between its host thread and its bridge thread).
    pub(crate) fn seq(&self) -> u32 {
        self.seq.load(Ordering::SeqCst)
    }

    /// Sets the sleeping flag, then a SeqCst fence: ringers from here on
    /// bump the word; the caller checks its conditions next.
    pub(crate) fn announce(&self) {
        self.sleeping.store(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// Clears the sleeping flag: ringers stop making the syscall.
    pub(crate) fn retract(&self) {
        self.sleeping.store(0, Ordering::SeqCst);
    }

    /// Blocks while the word still equals `s`, at most `timeout`.
    pub(crate) fn wait(&self, s: u32, timeout: Duration) {
        let ts = futex::Timespec {
            tv_sec: timeout.as_secs() as i64,
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        // EAGAIN (already rung), ETIMEDOUT and EINTR all mean: look again.
        let _ = futex::wait(self.seq, futex::Flags::empty(), s, Some(&ts));
    }

    /// Bumps the word and wakes its waiters whether or not one announced
    /// (stopping a bridge thread).
    pub(crate) fn force(&self) {
        self.seq.fetch_add(1, Ordering::SeqCst);
        let _ = futex::wake(self.seq, futex::Flags::empty(), i32::MAX as u32);
    }
}

#[cfg(test)]
#[path = "ring_tests.rs"]
mod tests;
