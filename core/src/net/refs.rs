//! Refs that cross nodes: registration with the owner when a ref leaves,
//! proxies for refs that arrive, and their release.
//!
//! The rule (docs/DESIGN.md, "Ownership table"): whoever sends a
//! ref of object `x` to node `D` registers `D` with `x`'s owner `O` before
//! it can release its own hold on `x`:
//! - the sender is `O`: it counts the ref as in flight on `x`'s cell at
//!   once (any thread) and tells the owning shard, which turns it into one
//!   registration of `D`;
//! - `D` is `O`: nothing to do; `D` finds its own cell through its export
//!   index, and the sender's later release travels behind the ref on the
//!   same ordered link;
//! - otherwise: `AddBorrower(x, D)` to `O`, sent before the sender's own
//!   `RemoveBorrower` on the same ordered link.
//!
//! A node that receives `x` joins its one handle group for `x` (a proxy
//! cell, or its own cell) and counts one registration per arrival; when the
//! group ends it returns them all in one `RemoveBorrower`. Counts at the
//! owner may go negative while messages from different nodes race; the
//! entry lives until all are zero.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use owl_transport::proto::{Msg, WireId};

use super::{wire, Net};
use crate::cell::ObjectCell;
use crate::error::{TaskError, TaskErrorKind};
use crate::ids::{NodeId, ObjectId};
use crate::objref::RawRef;
use crate::runtime::NodeShared;
use crate::shard::Msg as ShardMsg;

/// This node's proxy of an object owned elsewhere.
pub(crate) struct Borrowed {
    pub cell: Arc<ObjectCell>,
    /// Registrations the owner counts for this node.
    pub regs: u32,
}

/// Adds a handle to a live group; fails once the group has ended (zero
/// stays zero: see `ObjectCell::handles`).
fn join_group(cell: &ObjectCell) -> bool {
    let mut n = cell.handles.load(Ordering::Relaxed);
    loop {
        if n == 0 {
            return false;
        }
        match cell
            .handles
            .compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Relaxed)
        {
            Ok(_) => return true,
            Err(now) => n = now,
        }
    }
}

impl Net {
    /// Registers the receiver of a ref about to be sent; returns its id.
    pub(crate) fn ship_ref(&self, node: &NodeShared, to: NodeId, r: &RawRef) -> WireId {
        let id = r.id();
        if id.node == self.me {
            r.cell().in_flight.fetch_add(1, Ordering::AcqRel);
            self.exports
                .lock()
                .entry(id)
                .or_insert_with(|| Arc::clone(r.cell()));
            node.to_shard(
                id.shard,
                ShardMsg::Borrow {
                    id,
                    node: to,
                    delta: 1,
                    shipped: true,
                },
            );
        } else if id.node != to {
            self.send(
                id.node,
                Msg::AddBorrower {
                    object: wire::wire_id(id),
                    borrower: to.0,
                    count: 1,
                },
            );
        }
        wire::wire_id(id)
    }

    /// The handle for a ref that arrived from another node.
    pub(crate) fn resolve(&self, node: &Arc<NodeShared>, id: ObjectId) -> RawRef {
        if id.node == self.me {
            return self.resolve_own(node, id);
        }
        let (cell, fresh) = {
            let mut borrowed = self.borrowed.lock();
            match borrowed.get_mut(&id) {
                Some(b) if join_group(&b.cell) => {
                    b.regs += 1;
                    (Arc::clone(&b.cell), false)
                }
                Some(b) => {
                    // The old group ended and its release is on its way: it
                    // will find a different cell and leave the registrations,
                    // carried over here, to the new group.
                    let cell = Arc::new(ObjectCell::new(id, node.serial, 1));
                    b.cell = Arc::clone(&cell);
                    b.regs += 1;
                    (cell, true)
                }
                None => {
                    let cell = Arc::new(ObjectCell::new(id, node.serial, 1));
                    borrowed.insert(
                        id,
                        Borrowed {
                            cell: Arc::clone(&cell),
                            regs: 1,
                        },
                    );
                    (cell, true)
                }
            }
        };
        if fresh {
            if self.is_dead(id.node) {
                cell.complete(Err(owner_died(id)));
            } else {
                // Ask for the value now: the owner answers once it is ready.
                self.send(
                    id.node,
                    Msg::Fetch {
                        object: wire::wire_id(id),
                    },
                );
            }
        }
        RawRef::adopt(cell)
    }

    fn resolve_own(&self, node: &Arc<NodeShared>, id: ObjectId) -> RawRef {
        let cell = self.exports.lock().get(&id).cloned();
        let Some(cell) = cell else {
            // Not exported, or freed: the sender broke the protocol.
            tracing::error!(object = %id, "a peer sent a ref to an object this node no longer owns");
            let cell = Arc::new(ObjectCell::new(id, node.serial, 1));
            cell.complete(Err(Arc::new(TaskError {
                kind: TaskErrorKind::Store("the object was already freed by its owner".into()),
                task: id.to_string(),
                object: id,
                node: id.node,
                shard: id.shard,
                attempts: 0,
            })));
            return RawRef::adopt(cell);
        };
        if cell.handles.fetch_add(1, Ordering::AcqRel) == 0 {
            node.to_shard(id.shard, ShardMsg::GroupStarted(id));
        }
        RawRef::adopt(cell)
    }

    /// The handle group of a proxy ended: return its registrations.
    pub(crate) fn release_borrowed(&self, cell: &Arc<ObjectCell>) {
        let id = cell.id();
        let regs = {
            let mut borrowed = self.borrowed.lock();
            match borrowed.get(&id) {
                Some(b) if Arc::ptr_eq(&b.cell, cell) => borrowed.remove(&id).map(|b| b.regs),
                // Replaced by a newer group, which carries the registrations.
                _ => None,
            }
        };
        if let Some(count) = regs {
            self.send(
                id.node,
                Msg::RemoveBorrower {
                    object: wire::wire_id(id),
                    borrower: self.me.0,
                    count,
                },
            );
        }
    }

    /// The owning shard freed an exported entry.
    pub(crate) fn unexport(&self, id: ObjectId) {
        self.exports.lock().remove(&id);
    }

    pub(super) fn export_cell(&self, id: ObjectId) -> Option<Arc<ObjectCell>> {
        self.exports.lock().get(&id).cloned()
    }

    pub(super) fn on_borrow(&self, node: &NodeShared, id: ObjectId, borrower: NodeId, delta: i32) {
        if id.node != self.me {
            tracing::warn!(object = %id, "borrower update for an object owned by another node dropped");
            return;
        }
        node.to_shard(
            id.shard,
            ShardMsg::Borrow {
                id,
                node: borrower,
                delta,
                shipped: false,
            },
        );
    }
}

pub(super) fn owner_died(id: ObjectId) -> Arc<TaskError> {
    Arc::new(TaskError {
        kind: TaskErrorKind::OwnerDied(id.node),
        task: id.to_string(),
        object: id,
        node: id.node,
        shard: id.shard,
        attempts: 0,
    })
}
