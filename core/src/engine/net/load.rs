//! Where spillback sends tasks: an approximate view of the other nodes' load,
//! refreshed by their heartbeats (queued tasks, idle shards) and, for nodes
//! that do not heartbeat this one (past the ring's size), by the head's
//! room bits; and the rule that decides when a node is busy enough for
//! spillback.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use owl_transport::slots::Slots;

use crate::ids::NodeId;

/// A shard sends new ready tasks elsewhere (spillback) once this many wait
/// in its own queue and no shard of its node is idle.
pub(crate) const SPILLBACK_BACKLOG: usize = owl_transport::SPILL_BACKLOG as usize;

/// Nothing heard yet: assume the node can take work.
const UNKNOWN: u64 = u64::MAX;

/// Whether a node has room, by the latest word of it: its own heartbeat
/// or the head's bits, both about a heartbeat period old.
const ROOM_UNKNOWN: u8 = 0;
const ROOM: u8 = 1;
const FULL: u8 = 2;

pub(crate) struct LoadView {
    /// Per node: queued tasks (high half) and idle shards (low half), as
    /// it last reported them to this node (shown in the cluster view).
    loads: Slots<AtomicU64>,
    /// Per node: `ROOM_UNKNOWN`, `ROOM` or `FULL` (what spillback reads).
    room: Slots<AtomicU8>,
}

impl LoadView {
    pub(crate) fn new(nodes: u32) -> LoadView {
        let v = LoadView {
            loads: Slots::new(),
            room: Slots::new(),
        };
        v.grow(nodes);
        v
    }

    /// Makes room for nodes `0..n` (nodes joining an open cluster).
    pub(crate) fn grow(&self, n: u32) {
        self.loads.grow(n, || AtomicU64::new(UNKNOWN));
        self.room.grow(n, || AtomicU8::new(ROOM_UNKNOWN));
    }

    pub(crate) fn report(&self, node: NodeId, queued: u32, idle_shards: u32) {
        if let Some(l) = self.loads.get(node.0) {
            l.store(
                ((queued as u64) << 32) | idle_shards as u64,
                Ordering::Relaxed,
            );
        }
        self.set_room(node, owl_transport::has_room(queued, idle_shards));
    }

    /// The head's room bits (one per node; empty when every node
    /// heartbeats every other): taken for every node but this one and the
    /// head, whose own heartbeat says more.
    pub(crate) fn hint_from_head(&self, me: NodeId, bits: &[u8]) {
        for (i, byte) in bits.iter().enumerate() {
            for b in 0..8 {
                let node = NodeId((i * 8 + b) as u32);
                if node != me && node.0 != 0 {
                    self.set_room(node, byte & (1 << b) != 0);
                }
            }
        }
    }

    fn set_room(&self, node: NodeId, room: bool) {
        if let Some(r) = self.room.get(node.0) {
            r.store(if room { ROOM } else { FULL }, Ordering::Relaxed);
        }
    }

    /// The last figures `node` reported: (queued tasks, idle shards).
    pub(crate) fn last(&self, node: NodeId) -> Option<(u32, u32)> {
        let l = self.loads.get(node.0)?.load(Ordering::Relaxed);
        (l != UNKNOWN).then_some(((l >> 32) as u32, l as u32))
    }

    /// Whether the latest word of `node` leaves room for spillback: an
    /// idle shard, or a backlog shorter than ours must be to spill
    /// (nothing heard yet counts as room).
    pub(crate) fn has_room(&self, node: NodeId) -> bool {
        self.room
            .get(node.0)
            .is_some_and(|r| r.load(Ordering::Relaxed) != FULL)
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

    #[test]
    fn the_head_s_bits_tell_of_nodes_that_do_not_heartbeat_here() {
        let v = LoadView::new(12);
        // Node 9 is full, every other node has room; node 3 is this one.
        let bits = [0b1111_1111, 0b0000_1101];
        v.hint_from_head(NodeId(3), &bits);
        assert!(!v.has_room(NodeId(9)));
        assert!(v.has_room(NodeId(8)) && v.has_room(NodeId(10)));
        // Its own heartbeat, later, says otherwise: the latest word wins.
        v.report(NodeId(9), 0, 1);
        assert!(v.has_room(NodeId(9)));
        v.hint_from_head(NodeId(3), &[0xff, 0x00]);
        assert!(!v.has_room(NodeId(9)) && !v.has_room(NodeId(11)));
        // The head's bit for itself is not taken (its heartbeat carries
        // its own figures).
        v.report(NodeId(0), 1000, 0);
        v.hint_from_head(NodeId(3), &[0xff, 0xff]);
        assert!(!v.has_room(NodeId(0)));
        assert_eq!(
            v.last(NodeId(9)),
            Some((0, 1)),
            "the numbers stay as reported"
        );
    }
}
