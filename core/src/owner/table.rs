//! The ownership table of one shard (sans-IO: no threads, no I/O).
//!
//! One entry per object this shard owns, in a slab indexed by the object's
//! `index`; the entry's generation must match the id's `gen`. Only the
//! owning shard writes it.
//!
//! How the paper's counters map onto this node's entry:
//! - *local refs*: `local_refs` counts handle groups on this node. All
//!   handles on a node (every `ObjectRef` clone, every task argument, every
//!   ref stored inside another value on this node) share one atomic count in
//!   the object's cell; the group is created with the object, here, and its
//!   end arrives as exactly one release. Submitted-task refs and contained-in
//!   refs on this node are handles of that group, so they can never be
//!   undercounted by a message overtaking another.
//!   A handle group that ended may still be on its way here as a release
//!   when a ref to the object comes back from another node and starts a new
//!   group (see `net::refs`), so `local_refs` may briefly be 2.
//! - *borrowers*: other nodes holding the object, each with a signed count of
//!   registrations: +n when a node hands the ref to it (the owner is told
//!   before the sender can release its own hold), -n when its handle group
//!   ends. Messages from different nodes race, so a count may be negative
//!   for a while; the entry lives until every count is back to zero.
//!
//! Invariants (checked by `check` in this module's tests and on every
//! shard by the leak report, `Runtime::leak_report`):
//! 1. An entry exists from creation until `local_refs == 0`, `borrowers`
//!    is empty and no shipped ref is in flight; it is removed at that
//!    moment, never later.
//! 2. An entry's cell has the entry's id.
//! 3. A release for an id whose entry is gone (or whose slot was reused) is
//!    ignored.
//! 4. A node purged as a borrower (it died) is never registered again:
//!    a registration of it that arrives after the purge (sent by a third
//!    node before it learned of the death) would never be released.

use std::sync::Arc;

use slab::Slab;
use smallvec::SmallVec;

use crate::ids::{NodeId, ObjectId, ShardId};
use crate::object::cell::ObjectCell;

/// An update to one shard's ownership table, as the owner layer hands it
/// over (`owner::Ctx::to_table`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TableOp {
    /// The node's handle group of the object ended.
    Release(ObjectId),
    /// `delta` registrations of `node` as a borrower of the object.
    Borrow {
        id: ObjectId,
        node: NodeId,
        delta: i32,
        /// Made by this node when it sent the ref (ends the cell's
        /// in-flight count taken at sending).
        shipped: bool,
    },
    /// A ref to the object came back from another node and started a new
    /// handle group here.
    GroupStarted(ObjectId),
    /// `node` died or left: its registrations as a borrower count as
    /// released, and later ones are ignored.
    NodeGone(NodeId),
}

#[derive(Debug)]
pub struct Entry {
    gen: u32,
    pub cell: Arc<ObjectCell>,
    /// Handle groups on this node (signed: see the module docs).
    pub local_refs: i32,
    /// Registrations per borrowing node; zero counts are removed.
    pub borrowers: SmallVec<[(NodeId, i32); 2]>,
    /// A ref to it was sent to another node: the node's export index holds
    /// the cell and must forget it when the entry goes.
    pub exported: bool,
}

impl Entry {
    fn is_free(&self) -> bool {
        self.local_refs == 0
            && self.borrowers.is_empty()
            && self
                .cell
                .in_flight
                .load(std::sync::atomic::Ordering::Acquire)
                == 0
    }
}

/// What a release did.
#[derive(Debug)]
pub enum Released {
    /// The entry is gone; here it is, to be dropped outside the table.
    Freed(Entry),
    /// A dead node's purge freed these entries.
    FreedMany(Vec<Entry>),
    /// Other references remain.
    Kept,
    /// No such entry (already freed): ignored.
    Stale,
}

#[derive(Debug)]
pub struct OwnershipTable {
    node: NodeId,
    shard: ShardId,
    rt: u32,
    entries: Slab<Entry>,
    next_gen: u32,
    /// Nodes purged as borrowers (dead): their registrations are ignored.
    gone: Vec<NodeId>,
}

impl OwnershipTable {
    pub fn new(node: NodeId, shard: ShardId, rt: u32) -> Self {
        OwnershipTable {
            node,
            shard,
            rt,
            entries: Slab::new(),
            next_gen: 0,
            gone: Vec::new(),
        }
    }

    fn next_id(&mut self) -> ObjectId {
        let gen = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1);
        let index = u32::try_from(self.entries.vacant_key())
            .expect("more than 2^32 live objects on one shard");
        ObjectId {
            node: self.node,
            shard: self.shard,
            index,
            gen,
        }
    }

    fn insert_cell(&mut self, id: ObjectId, cell: ObjectCell) -> Arc<ObjectCell> {
        let cell = Arc::new(cell);
        let key = self.entries.insert(Entry {
            gen: id.gen,
            cell: Arc::clone(&cell),
            local_refs: 1,
            borrowers: SmallVec::new(),
            exported: false,
        });
        debug_assert_eq!(key, id.index as usize);
        cell
    }

    /// Creates the entry for a task's future object: pending, one handle group.
    pub fn insert_pending(&mut self) -> Arc<ObjectCell> {
        let id = self.next_id();
        self.insert_cell(id, ObjectCell::new(id, self.rt, 1))
    }

    /// Creates the entry for a `put` value: ready, one handle group.
    pub fn insert_ready(&mut self, value: crate::object::value::Stored) -> Arc<ObjectCell> {
        let id = self.next_id();
        self.insert_cell(id, ObjectCell::ready(id, self.rt, 1, value))
    }

    pub fn get(&self, id: ObjectId) -> Option<&Entry> {
        self.entries
            .get(id.index as usize)
            .filter(|e| e.gen == id.gen)
    }

    fn entry_mut(&mut self, id: ObjectId) -> Option<&mut Entry> {
        self.entries
            .get_mut(id.index as usize)
            .filter(|e| e.gen == id.gen)
    }

    fn free_if_unused(&mut self, id: ObjectId) -> Released {
        if self.entries[id.index as usize].is_free() {
            Released::Freed(self.entries.remove(id.index as usize))
        } else {
            Released::Kept
        }
    }

    /// The node's handle group for `id` ended.
    pub fn release_local(&mut self, id: ObjectId) -> Released {
        let Some(entry) = self.entry_mut(id) else {
            return Released::Stale;
        };
        entry.local_refs -= 1;
        self.free_if_unused(id)
    }

    /// A new handle group for `id` started on this node (a ref came back
    /// after the previous group ended). Its release may have been applied
    /// already, so this can free the entry.
    pub fn group_started(&mut self, id: ObjectId) -> Released {
        let Some(entry) = self.entry_mut(id) else {
            return Released::Stale;
        };
        entry.local_refs += 1;
        self.free_if_unused(id)
    }

    /// Adds `delta` registrations of `node` as a borrower of `id`.
    /// `shipped` marks a registration this node made when it sent the ref
    /// (it ends the cell's in-flight count taken at sending).
    pub fn borrow(&mut self, id: ObjectId, node: NodeId, delta: i32, shipped: bool) -> Released {
        let gone = self.gone.contains(&node);
        let Some(entry) = self.entry_mut(id) else {
            return Released::Stale;
        };
        if shipped {
            entry.exported = true;
            entry
                .cell
                .in_flight
                .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        }
        if gone {
            // Invariant 4: a dead node's count stays purged.
            return self.free_if_unused(id);
        }
        match entry.borrowers.iter().position(|(n, _)| *n == node) {
            Some(i) => {
                entry.borrowers[i].1 += delta;
                if entry.borrowers[i].1 == 0 {
                    entry.borrowers.swap_remove(i);
                }
            }
            None if delta != 0 => entry.borrowers.push((node, delta)),
            None => {}
        }
        self.free_if_unused(id)
    }

    /// Applies one update of the owner layer.
    pub(crate) fn apply(&mut self, op: TableOp) -> Released {
        match op {
            TableOp::Release(id) => self.release_local(id),
            TableOp::Borrow {
                id,
                node,
                delta,
                shipped,
            } => self.borrow(id, node, delta, shipped),
            TableOp::GroupStarted(id) => self.group_started(id),
            TableOp::NodeGone(node) => Released::FreedMany(self.purge_borrower(node)),
        }
    }

    /// Forgets every registration of a dead node (its death releases
    /// everything it borrowed); returns the entries that freed.
    pub fn purge_borrower(&mut self, node: NodeId) -> Vec<Entry> {
        if !self.gone.contains(&node) {
            self.gone.push(node);
        }
        let mut freed = Vec::new();
        let keys: Vec<usize> = self
            .entries
            .iter()
            .filter(|(_, e)| e.borrowers.iter().any(|(n, _)| *n == node))
            .map(|(k, _)| k)
            .collect();
        for key in keys {
            let entry = &mut self.entries[key];
            entry.borrowers.retain(|(n, _)| *n != node);
            if entry.is_free() {
                freed.push(self.entries.remove(key));
            }
        }
        freed
    }

    /// The ids of every entry, in slot order (for reports).
    pub(crate) fn ids(&self) -> Vec<ObjectId> {
        self.entries.iter().map(|(_, e)| e.cell.id()).collect()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Takes every entry out (shutdown).
    pub fn drain(&mut self) -> Vec<Entry> {
        self.entries.drain().collect()
    }

    /// Asserts the invariants in the module docs.
    pub fn check(&self) {
        for (key, e) in &self.entries {
            let id = e.cell.id();
            assert_eq!(id.index as usize, key, "entry {id} sits in slot {key}");
            assert_eq!(id.gen, e.gen, "entry {id} has generation {}", e.gen);
            assert_eq!(
                (id.node, id.shard),
                (self.node, self.shard),
                "entry {id} is not owned here"
            );
            assert!(
                !e.is_free(),
                "entry {id} has no references but was not freed"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    fn table() -> OwnershipTable {
        OwnershipTable::new(NodeId(0), ShardId(3), 9)
    }

    #[test]
    fn insert_release_frees_exactly_once() {
        let mut t = table();
        let cell = t.insert_pending();
        let id = cell.id();
        assert_eq!(id.owner(), (NodeId(0), ShardId(3)));
        assert_eq!(t.len(), 1);
        t.check();
        match t.release_local(id) {
            Released::Freed(e) => assert_eq!(e.cell.id(), id),
            other => panic!("expected Freed, got {other:?}"),
        }
        assert!(t.is_empty());
        assert!(matches!(t.release_local(id), Released::Stale));
    }

    #[test]
    fn stale_id_does_not_touch_reused_slot() {
        let mut t = table();
        let old = t.insert_pending().id();
        assert!(matches!(t.release_local(old), Released::Freed(_)));
        let new = t.insert_pending().id();
        assert_eq!(new.index, old.index, "slot is reused");
        assert_ne!(new.gen, old.gen);
        assert!(matches!(t.release_local(old), Released::Stale));
        assert_eq!(t.len(), 1);
        assert!(t.get(new).is_some());
        assert!(t.get(old).is_none());
    }

    #[test]
    fn borrowers_keep_entry() {
        let mut t = table();
        let id = t.insert_pending().id();
        t.entries
            .get_mut(id.index as usize)
            .unwrap()
            .borrowers
            .push((NodeId(5), 1));
        assert!(matches!(t.release_local(id), Released::Kept));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn borrower_counts_may_cross_zero_in_any_order() {
        let mut t = table();
        let id = t.insert_pending().id();
        // Node 2 releases before the registration that covers it arrives.
        assert!(matches!(t.borrow(id, NodeId(2), -1, false), Released::Kept));
        assert!(matches!(t.release_local(id), Released::Kept));
        t.check();
        assert!(matches!(
            t.borrow(id, NodeId(2), 1, false),
            Released::Freed(_)
        ));
        assert!(t.is_empty());
        assert!(matches!(t.borrow(id, NodeId(2), 1, false), Released::Stale));
    }

    #[test]
    fn shipped_ref_holds_entry_until_registered() {
        let mut t = table();
        let cell = t.insert_pending();
        let id = cell.id();
        cell.in_flight
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        assert!(matches!(t.release_local(id), Released::Kept));
        assert!(matches!(t.borrow(id, NodeId(1), 1, true), Released::Kept));
        assert!(matches!(t.borrow(id, NodeId(1), -1, false), Released::Freed(e) if e.exported));
    }

    #[test]
    fn returning_ref_starts_a_second_group() {
        let mut t = table();
        let id = t.insert_pending().id();
        t.borrow(id, NodeId(1), 1, false);
        // The first group ends, the ref comes back, that group ends before
        // its start is applied: counts meet at zero in any order.
        assert!(matches!(t.release_local(id), Released::Kept));
        assert!(matches!(t.release_local(id), Released::Kept));
        assert!(matches!(t.group_started(id), Released::Kept));
        assert!(matches!(
            t.borrow(id, NodeId(1), -1, false),
            Released::Freed(_)
        ));
    }

    #[test]
    fn dead_borrower_is_purged() {
        let mut t = table();
        let a = t.insert_pending().id();
        let b = t.insert_pending().id();
        t.borrow(a, NodeId(4), 2, false);
        t.borrow(b, NodeId(4), 1, false);
        t.borrow(b, NodeId(5), 1, false);
        t.release_local(a);
        t.release_local(b);
        let freed = t.purge_borrower(NodeId(4));
        assert_eq!(freed.len(), 1);
        assert_eq!(freed[0].cell.id(), a);
        assert_eq!(t.len(), 1);
        t.check();
    }

    #[test]
    fn pending_and_ready_entries() {
        let mut t = table();
        let p = t.insert_pending();
        assert!(!p.is_ready());
        let dir = tempfile::tempdir().unwrap();
        let arena = owl_store::Arena::create(dir.path(), "t", 1 << 20, 64).unwrap();
        let r = t.insert_ready(crate::object::value::store(&7u64, &arena, 1024).unwrap());
        assert!(r.is_ready());
        t.check();
        assert_eq!(t.drain().len(), 2);
    }
}
