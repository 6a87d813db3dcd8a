//! Ready-queue policy of a shard (sans-IO).
//!
//! Default-priority tasks go to the shard's stealable FIFO (a crossbeam
//! deque other shards steal from); tasks with a priority go to a local heap
//! ordered by priority, then submission order. The shard runs the heap's top
//! before the FIFO when its priority is above the default, after it when
//! below. When other shards idle, prioritized tasks are donated to the FIFO
//! so they can be stolen.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Where the next task comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Heap,
    Fifo,
    Empty,
}

/// Picks the next source given the heap's top priority and whether the
/// default-priority FIFO has work.
pub fn next_source(heap_top: Option<i32>, fifo_has_work: bool) -> Source {
    match (heap_top, fifo_has_work) {
        (Some(p), _) if p > 0 => Source::Heap,
        (_, true) => Source::Fifo,
        (Some(_), false) => Source::Heap,
        (None, false) => Source::Empty,
    }
}

/// Whether to move one heap task to the stealable FIFO this turn.
pub fn should_donate(heap_len: usize, idle_shards: usize) -> bool {
    idle_shards > 0 && heap_len > 1
}

/// A heap item: higher priority first, then lower sequence number first.
#[derive(Debug)]
pub struct Prioritized<T> {
    pub priority: i32,
    pub seq: u64,
    pub item: T,
}

impl<T> PartialEq for Prioritized<T> {
    fn eq(&self, other: &Self) -> bool {
        self.priority == other.priority && self.seq == other.seq
    }
}
impl<T> Eq for Prioritized<T> {}
impl<T> PartialOrd for Prioritized<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Prioritized<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

/// The local prioritized queue.
#[derive(Debug)]
pub struct PriorityQueue<T> {
    heap: BinaryHeap<Prioritized<T>>,
    seq: u64,
}

impl<T> Default for PriorityQueue<T> {
    fn default() -> Self {
        PriorityQueue {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }
}

impl<T> PriorityQueue<T> {
    pub fn push(&mut self, priority: i32, item: T) {
        self.seq += 1;
        self.heap.push(Prioritized {
            priority,
            seq: self.seq,
            item,
        });
    }

    pub fn pop(&mut self) -> Option<T> {
        self.heap.pop().map(|p| p.item)
    }

    pub fn top_priority(&self) -> Option<i32> {
        self.heap.peek().map(|p| p.priority)
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    pub fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        self.heap.drain().map(|p| p.item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn source_order() {
        assert_eq!(next_source(Some(5), true), Source::Heap);
        assert_eq!(next_source(Some(-1), true), Source::Fifo);
        assert_eq!(next_source(Some(-1), false), Source::Heap);
        assert_eq!(next_source(None, true), Source::Fifo);
        assert_eq!(next_source(None, false), Source::Empty);
    }

    #[test]
    fn donation_needs_idle_shards_and_spare_work() {
        assert!(!should_donate(5, 0));
        assert!(!should_donate(1, 3));
        assert!(should_donate(2, 1));
    }

    proptest! {
        /// Pops come out by priority, then in submission order.
        #[test]
        fn heap_orders_by_priority_then_fifo(prios in proptest::collection::vec(-3i32..3, 0..200)) {
            let mut q = PriorityQueue::default();
            for (i, p) in prios.iter().enumerate() {
                q.push(*p, i);
            }
            let mut expected: Vec<(i32, usize)> = prios.iter().copied().zip(0..).collect();
            expected.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
            let got: Vec<usize> = std::iter::from_fn(|| q.pop()).collect();
            prop_assert_eq!(got, expected.into_iter().map(|e| e.1).collect::<Vec<_>>());
        }
    }
}
