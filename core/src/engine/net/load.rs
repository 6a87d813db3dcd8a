//! Where spillback sends tasks: an approximate view of the other nodes' load,
//! refreshed by their heartbeats (queued tasks, idle shards), and the rule
//! that decides when a node is busy enough for spillback.

use std::sync::atomic::{AtomicU64, Ordering};

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
}

impl LoadView {
    pub(crate) fn new(nodes: u32) -> LoadView {
        let loads = Slots::new();
        loads.grow(nodes, || AtomicU64::new(UNKNOWN));
        LoadView { loads }
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

    /// Whether `node`'s last report leaves room for spillback: an idle
    /// shard, or a backlog shorter than ours must be to spill (unknown
    /// counts as room).
    pub(crate) fn has_room(&self, node: NodeId) -> bool {
        let Some(l) = self.loads.get(node.0).map(|l| l.load(Ordering::Relaxed)) else {
            return false;
        };
        l == UNKNOWN || (l & 0xffff_ffff) > 0 || ((l >> 32) as usize) < SPILLBACK_BACKLOG
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_means_an_idle_shard_or_a_short_backlog() {
        let v = LoadView::new(3);
        assert!(v.has_room(NodeId(1)), "nothing heard yet");
        v.report(NodeId(1), 1000, 0);
        assert!(!v.has_room(NodeId(1)));
        v.report(NodeId(1), 1000, 1);
        assert!(v.has_room(NodeId(1)));
        v.report(NodeId(2), SPILLBACK_BACKLOG as u32 - 1, 0);
        assert!(v.has_room(NodeId(2)));
        assert!(!v.has_room(NodeId(7)), "unknown node");
    }
}
