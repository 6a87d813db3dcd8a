//! A table indexed by node id that grows while it is read, without locks
//! and without moving what it holds.
//!
//! Nodes of an open cluster (`owl start`) join at any time and their ids are
//! never reused, so per-peer state must grow under readers on other threads
//! (every `send` looks its peer up). Entries live in segments of doubling
//! size (64, 128, 256, ...), each allocated once through a `OnceLock`: a
//! lookup is two loads, an entry's address never changes, and 27 segments
//! cover every `u32` id.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

const FIRST_BITS: u32 = 6;
const SEGMENTS: usize = 27;

/// Append-only, index-addressed, shared between threads.
pub struct Slots<T> {
    segments: [OnceLock<Box<[T]>>; SEGMENTS],
    len: AtomicU32,
}

/// Segment and offset of index `i`.
fn locate(i: u32) -> (usize, usize) {
    let biased = i as u64 + (1 << FIRST_BITS);
    let seg = (63 - biased.leading_zeros() - FIRST_BITS) as usize;
    (seg, (biased - ((1u64 << FIRST_BITS) << seg)) as usize)
}

impl<T> Slots<T> {
    /// An empty table.
    pub fn new() -> Self {
        Self {
            segments: std::array::from_fn(|_| OnceLock::new()),
            len: AtomicU32::new(0),
        }
    }

    /// Entries `0..len()` exist.
    pub fn len(&self) -> u32 {
        self.len.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entry `i`, if the table has grown that far.
    pub fn get(&self, i: u32) -> Option<&T> {
        if i >= self.len() {
            return None;
        }
        let (seg, off) = locate(i);
        self.segments[seg].get().map(|s| &s[off])
    }

    /// Makes entries `0..n` exist, creating new ones with `init`. Safe to
    /// call from several threads; entries already there are untouched.
    pub fn grow(&self, n: u32, init: impl Fn() -> T) {
        if n <= self.len() {
            return;
        }
        let (last, _) = locate(n - 1);
        for (seg, cell) in self.segments.iter().enumerate().take(last + 1) {
            cell.get_or_init(|| (0..(1usize << FIRST_BITS) << seg).map(|_| init()).collect());
        }
        self.len.fetch_max(n, Ordering::AcqRel);
    }

    /// Entries `0..len()`, in order.
    pub fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        (0..self.len()).filter_map(move |i| self.get(i))
    }
}

impl<T> std::fmt::Debug for Slots<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slots")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> std::ops::Index<u32> for Slots<T> {
    type Output = T;
    /// Panics if `i >= len()`, like a slice.
    fn index(&self, i: u32) -> &T {
        self.get(i)
            .unwrap_or_else(|| panic!("slot {i} out of range 0..{}", self.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_tile_every_index() {
        assert_eq!(locate(0), (0, 0));
        assert_eq!(locate(63), (0, 63));
        assert_eq!(locate(64), (1, 0));
        assert_eq!(locate(191), (1, 127));
        assert_eq!(locate(192), (2, 0));
        let (seg, _) = locate(u32::MAX);
        assert!(seg < SEGMENTS);
    }

    #[test]
    fn grows_under_concurrent_readers() {
        let s = std::sync::Arc::new(Slots::<AtomicU32>::new());
        s.grow(1, || AtomicU32::new(7));
        let r = {
            let s = s.clone();
            std::thread::spawn(move || {
                for _ in 0..10_000 {
                    let n = s.len();
                    assert_eq!(s[n - 1].load(Ordering::Relaxed), 7);
                }
            })
        };
        for n in (2..5_000).step_by(37) {
            s.grow(n, || AtomicU32::new(7));
        }
        r.join().unwrap();
        let last = 2 + 37 * ((5_000 - 3) / 37);
        assert_eq!(s.len(), last);
        assert_eq!(s.iter().count(), last as usize);
        assert!(s.get(last).is_none());
        s.grow(3, || AtomicU32::new(0)); // shrinking is a no-op
        assert_eq!(s.len(), last);
    }
}
