//! Where spillback sends tasks: an approximate view of the other nodes' load,
//! refreshed by their heartbeats (queued tasks, idle shards), and the rule
//! that decides when a node is busy enough for spillback.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use owl_transport::slots::Slots;

use crate::ids::NodeId;

/// A shard sends new ready tasks elsewhere (spillback) once this many wait
/// in its own queue and no shard of its node is idle.
pub(crate) const SPILLBACK_BACKLOG: usize = 64;

/// Nothing heard yet: assume the node can take work.
const UNKNOWN: u64 = u64::MAX;

pub(crate) struct LoadView {
    /// Per node: queued tasks (high half) and idle shards (low half).
    loads: Slots<AtomicU64>,
    next: AtomicUsize,
}

impl LoadView {
    pub(crate) fn new(nodes: u32) -> LoadView {
        let loads = Slots::new();
        loads.grow(nodes, || AtomicU64::new(UNKNOWN));
        LoadView {
            loads,
            next: AtomicUsize::new(0),
        }
    }

    /// Makes room for nodes `0..n` (nodes joining an open cluster).
    pub(crate) fn grow(&self, n: u32) {
        self.loads.grow(n, || AtomicU64::new(UNKNOWN));
    }

    pub(crate) fn report(&self, node: NodeId, queued: u32, idle_shards: u32) {
        if let Some(l) = self.loads.get(node.0) {
            l.store(
                ((queued as u64) << 32) | idle_shards as u64,
                Ordering::Relaxed,
            );
        }
    }

    /// The last figures `node` reported: (queued tasks, idle shards).
    pub(crate) fn last(&self, node: NodeId) -> Option<(u32, u32)> {
        let l = self.loads.get(node.0)?.load(Ordering::Relaxed);
        (l != UNKNOWN).then_some(((l >> 32) as u32, l as u32))
    }

    fn can_take(&self, node: usize) -> bool {
        let l = self.loads[node as u32].load(Ordering::Relaxed);
        l == UNKNOWN || (l & 0xffff_ffff) > 0 || ((l >> 32) as usize) < SPILLBACK_BACKLOG
    }

    /// The next node, round-robin from a moving start, that is neither `me`
    /// nor dead nor known to be as busy as we are.
    pub(crate) fn pick(&self, me: NodeId, dead: impl Fn(NodeId) -> bool) -> Option<NodeId> {
        let n = self.loads.len() as usize;
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| (start + i) % n)
            .find(|&i| i != me.0 as usize && !dead(NodeId(i as u32)) && self.can_take(i))
            .map(|i| NodeId(i as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_round_robin_and_skips_busy_dead_and_self() {
        let v = LoadView::new(4);
        let mut seen: Vec<u32> = (0..6)
            .filter_map(|_| v.pick(NodeId(0), |_| false))
            .map(|n| n.0)
            .collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen, vec![1, 2, 3]);
        v.report(NodeId(1), 1000, 0);
        v.report(NodeId(2), 0, 1);
        for _ in 0..8 {
            let p = v.pick(NodeId(0), |n| n == NodeId(3)).unwrap();
            assert_eq!(p, NodeId(2));
        }
        v.report(NodeId(2), 1000, 0);
        assert_eq!(v.pick(NodeId(0), |n| n == NodeId(3)), None);
    }
}
