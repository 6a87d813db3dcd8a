//! Refs that cross nodes: registration with the owner when a ref leaves a
//! node, proxies for refs that arrive, their release, and what a node's
//! death releases.
//!
//! The rule (docs/DESIGN.md, "Ownership table"): when node `A` sends a
//! ref of object `x` to node `D`, `x`'s owner `O` counts `D` before anyone
//! stops counting `A`'s hold:
//! - `A` is `O`: it counts the ref as in flight on `x`'s cell at once (any
//!   thread) and tells the owning shard, which turns it into one
//!   registration of `D`;
//! - `D` is `O`: nothing to do; `D` finds its own cell through its export
//!   index, and `A`'s later release travels behind the ref on the same
//!   ordered link;
//! - otherwise `A` *lends*: it keeps a hold on `x` for `D` (so `O` still
//!   counts `A`), and `D`, on receipt, registers itself with
//!   `AddBorrower(x, D, lender A)`. `O` queues the registration for its
//!   shard, then answers `Registered` to `D`, which passes it on to `A`
//!   as `Lent`; `A` drops the hold, and its release, if its group ends,
//!   reaches `O`'s shard after the registration. A death on the way
//!   loses nothing and leaks nothing: if `A` dies first, `D` either never
//!   gets `x` or registers after `O` purged `A` (then `x` may be gone,
//!   and `D` reads a typed error); if `D` dies first, `A` drops what it
//!   lent to `D`; if `D` knows `O` dead, whether before `x` arrives or
//!   while its registration is unanswered, `D` sends `A` the `Lent`
//!   itself, since it will never register with `O` again.
//!   Detection is not simultaneous: `O` and `D` may have found each other
//!   dead while `A` counts both alive (the head that would have told `A`
//!   died first), and only `D` can tell `A`, which is why the answer
//!   goes through `D`. (Registering `D` from `A`'s side instead leaked a
//!   count whenever `A` died between telling `O` and delivering to `D`;
//!   `O` answering `A` directly leaked `A`'s hold in that split; the
//!   deterministic cluster found both.)
//!
//! A node that receives `x` joins its one handle group for `x` (a proxy
//! cell, or its own cell) and counts one registration per arrival; when the
//! group ends it returns them all in one `RemoveBorrower`. Counts at the
//! owner may go negative while messages from different nodes race; the
//! entry lives until all are zero.
//!
//! Invariants:
//! 1. Every ref that leaves this node is registered with its owner before
//!    this node can release its own hold on it, so no window exists where
//!    nobody counts an object.
//! 2. Every registration a node receives is released exactly once: by the
//!    end of the handle group it joined, or by the node's death.
//! 3. A proxy exists exactly while its handle group lives (or, after the
//!    group ended, until the release is sent); one proxy per object.
//! 4. A message about an object whose entry, export or proxy is gone is
//!    dropped, never a panic.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use owl_proto::{OwlMsg, WireId};
use parking_lot::Mutex;

use super::{Ctx, TableOp};
use crate::error::{TaskError, TaskErrorKind};
use crate::ids::{NodeId, ObjectId};
use crate::object::cell::ObjectCell;
use crate::object::objref::RawRef;
use crate::owner::table::Released;

/// This node's proxy of an object owned elsewhere.
struct Borrowed {
    cell: Arc<ObjectCell>,
    /// Registrations the owner counts for this node.
    regs: u32,
}

/// One node's side of cross-node reference counting. Shared by every
/// thread of the node; each map sits behind its own short lock.
pub(crate) struct Refs {
    me: NodeId,
    /// The runtime serial new proxy cells carry (their release route).
    serial: u32,
    /// Proxies of objects owned elsewhere, one handle group each.
    borrowed: Mutex<HashMap<ObjectId, Borrowed>>,
    /// Objects owned here whose refs went to other nodes: how incoming refs
    /// and fetches find their cells without asking the owning shard.
    exports: Mutex<HashMap<ObjectId, Arc<ObjectCell>>>,
    /// Holds kept for refs lent to other nodes until their owners have
    /// registered them: (object, borrower) -> (a handle, refs lent).
    lent: Mutex<HashMap<(ObjectId, NodeId), (RawRef, u32)>>,
    /// Registrations of refs other nodes lent this one, sent to their
    /// owners and not yet answered: (object, lender) -> count. The
    /// lender keeps a hold until it hears of them.
    registering: Mutex<HashMap<(ObjectId, NodeId), u32>>,
}

/// Adds a handle to a live group; fails once the group has ended (a proxy
/// group never restarts from zero: see `ObjectCell::handles`).
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

impl Refs {
    pub(crate) fn new(me: NodeId, serial: u32) -> Refs {
        Refs {
            me,
            serial,
            borrowed: Mutex::new(HashMap::new()),
            exports: Mutex::new(HashMap::new()),
            lent: Mutex::new(HashMap::new()),
            registering: Mutex::new(HashMap::new()),
        }
    }

    /// The runtime serial this node's cells carry.
    pub(crate) fn serial(&self) -> u32 {
        self.serial
    }

    /// Registers node `to` as the receiver of `r`, about to be sent to it
    /// (inside a value or as an argument); returns the id to put on the
    /// wire.
    pub(crate) fn ship(&self, ctx: &impl Ctx, to: NodeId, r: &RawRef) -> WireId {
        let id = r.id();
        if id.node == self.me {
            r.cell().in_flight.fetch_add(1, Ordering::AcqRel);
            self.exports
                .lock()
                .entry(id)
                .or_insert_with(|| Arc::clone(r.cell()));
            ctx.to_table(
                id.shard,
                TableOp::Borrow {
                    id,
                    node: to,
                    delta: 1,
                    shipped: true,
                },
            );
        } else if id.node != to && !ctx.is_dead(id.node) && !ctx.is_dead(to) {
            // Lend: keep a hold until the owner has registered `to`. (With
            // the owner or the receiver gone, nobody would answer.)
            self.lent
                .lock()
                .entry((id, to))
                .and_modify(|(_, n)| *n += 1)
                .or_insert_with(|| (r.clone(), 1));
        }
        id.into()
    }

    /// The handle for a ref that arrived from node `from`.
    pub(crate) fn resolve(&self, ctx: &impl Ctx, id: ObjectId, from: NodeId) -> RawRef {
        if id.node == self.me {
            return self.resolve_own(ctx, id);
        }
        if from != id.node && !ctx.is_dead(id.node) {
            // Lent by `from`: register with the owner; once it has counted
            // us, we tell the lender to drop its hold.
            *self.registering.lock().entry((id, from)).or_insert(0) += 1;
            ctx.send(
                id.node,
                OwlMsg::AddBorrower {
                    object: id.into(),
                    borrower: self.me.0,
                    count: 1,
                    lender: from.0,
                },
            );
        } else if from != id.node {
            // Lent by a node that still counts the owner alive (it lent,
            // so it did when it sent): nodes disagree about a death until
            // the head's announcement reaches them all, and for good if
            // the head dies first. We will never register, so the
            // lender's hold would stand forever: release it now.
            ctx.send(
                from,
                OwlMsg::Lent {
                    object: id.into(),
                    borrower: self.me.0,
                    count: 1,
                },
            );
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
                    let cell = Arc::new(ObjectCell::new(id, self.serial, 1));
                    b.cell = Arc::clone(&cell);
                    b.regs += 1;
                    (cell, true)
                }
                None => {
                    let cell = Arc::new(ObjectCell::new(id, self.serial, 1));
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
            if ctx.is_dead(id.node) {
                cell.complete(Err(owner_died(id)));
            } else {
                // Ask for the value now: the owner answers once it is ready.
                ctx.send(
                    id.node,
                    OwlMsg::Fetch {
                        object: id.into(),
                        lost: None,
                    },
                );
            }
        }
        RawRef::adopt(cell)
    }

    fn resolve_own(&self, ctx: &impl Ctx, id: ObjectId) -> RawRef {
        let cell = self.exports.lock().get(&id).cloned();
        let Some(cell) = cell else {
            // Not exported, or freed: the sender broke the protocol.
            tracing::error!(object = %id, "a peer sent a ref to an object this node no longer owns");
            let cell = Arc::new(ObjectCell::new(id, self.serial, 1));
            cell.complete(Err(Arc::new(TaskError {
                kind: TaskErrorKind::Store("the object was already freed by its owner".into()),
                task: id.to_string(),
                object: id,
                node: id.node,
                shard: id.shard,
                attempts: 0,
                history: Vec::new(),
            })));
            return RawRef::adopt(cell);
        };
        if cell.handles.fetch_add(1, Ordering::AcqRel) == 0 {
            ctx.to_table(id.shard, TableOp::GroupStarted(id));
        }
        RawRef::adopt(cell)
    }

    /// This node's handle group of `cell`'s object ended: the owning shard
    /// is told, or for a proxy, the owner gets the group's registrations
    /// back.
    pub(crate) fn group_ended(&self, ctx: &impl Ctx, cell: &Arc<ObjectCell>) {
        let id = cell.id();
        if id.node == self.me {
            ctx.to_table(id.shard, TableOp::Release(id));
        } else {
            self.release_borrowed(ctx, cell);
        }
    }

    /// The handle group of a proxy ended: return its registrations.
    fn release_borrowed(&self, ctx: &impl Ctx, cell: &Arc<ObjectCell>) {
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
            ctx.send(
                id.node,
                OwlMsg::RemoveBorrower {
                    object: id.into(),
                    borrower: self.me.0,
                    count,
                },
            );
        }
    }

    /// `AddBorrower` (positive `delta`, with the node that lent the refs)
    /// or `RemoveBorrower` (negative) for an object owned here.
    pub(crate) fn on_borrow(
        &self,
        ctx: &impl Ctx,
        id: ObjectId,
        borrower: NodeId,
        delta: i32,
        lender: Option<NodeId>,
    ) {
        if id.node != self.me {
            tracing::warn!(object = %id, "borrower update for an object owned by another node dropped");
            return;
        }
        ctx.to_table(
            id.shard,
            TableOp::Borrow {
                id,
                node: borrower,
                delta,
                shipped: false,
            },
        );
        // The registration is queued before the lender hears anything
        // (through the borrower), so whatever it does once it drops its
        // hold reaches the shard after.
        if let Some(lender) = lender {
            ctx.send(
                borrower,
                OwlMsg::Registered {
                    object: id.into(),
                    lender: lender.0,
                    count: delta.unsigned_abs(),
                },
            );
        }
    }

    /// The owner registered `count` of the refs `lender` lent this node:
    /// the lender may drop its hold. Only registrations this node sent
    /// are passed on (a duplicate answer must not release a later lend).
    pub(crate) fn on_registered(&self, ctx: &impl Ctx, id: ObjectId, lender: NodeId, count: u32) {
        let told = {
            let mut registering = self.registering.lock();
            match registering.get_mut(&(id, lender)) {
                Some(n) if *n > count => {
                    *n -= count;
                    count
                }
                Some(_) => registering.remove(&(id, lender)).unwrap_or(0),
                None => 0,
            }
        };
        if told > 0 {
            self.tell_lender(ctx, id, lender, told);
        }
    }

    fn tell_lender(&self, ctx: &impl Ctx, id: ObjectId, lender: NodeId, count: u32) {
        ctx.send(
            lender,
            OwlMsg::Lent {
                object: id.into(),
                borrower: self.me.0,
                count,
            },
        );
    }

    /// `borrower` is registered by the owner for `count` refs this node
    /// lent it, or will never be (it knows the owner dead).
    pub(crate) fn on_lent(&self, id: ObjectId, borrower: NodeId, count: u32) {
        let done = {
            let mut lent = self.lent.lock();
            match lent.get_mut(&(id, borrower)) {
                Some((_, n)) if *n > count => {
                    *n -= count;
                    None
                }
                Some(_) => lent.remove(&(id, borrower)).map(|(r, _)| r),
                None => None,
            }
        };
        // Dropped outside the lock: it may end this node's handle group.
        drop(done);
    }

    /// `node` is gone: what was lent to it, or kept for an object it owned,
    /// is released; lenders whose refs of its objects this node had not
    /// yet seen registered are told to drop their holds (it will never
    /// register them now), and answers owed to it as a lender are
    /// forgotten.
    pub(crate) fn node_gone(&self, ctx: &impl Ctx, node: NodeId) {
        let mut owed: Vec<((ObjectId, NodeId), u32)> = {
            let mut registering = self.registering.lock();
            let keys: Vec<(ObjectId, NodeId)> = registering
                .keys()
                .filter(|(id, lender)| *lender == node || id.node == node)
                .copied()
                .collect();
            keys.into_iter()
                .filter_map(|k| registering.remove(&k).map(|n| (k, n)))
                .collect()
        };
        owed.sort_unstable();
        for ((id, lender), n) in owed {
            if lender != node {
                self.tell_lender(ctx, id, lender, n);
            }
        }
        let dropped: Vec<RawRef> = {
            let mut lent = self.lent.lock();
            let mut keys: Vec<(ObjectId, NodeId)> = lent
                .keys()
                .filter(|(id, to)| *to == node || id.node == node)
                .copied()
                .collect();
            // In key order: releases (and what they send) replay exactly.
            keys.sort_unstable();
            keys.iter()
                .filter_map(|k| lent.remove(k))
                .map(|(r, _)| r)
                .collect()
        };
        drop(dropped);
    }

    /// Keeps the export index in step with an update its shard's table
    /// just applied: freed exported entries leave it, and so does an
    /// object shipped after it was freed (a handle to a freed object, made
    /// when a ref came back too late, sent on again), which would otherwise
    /// stay exported for good.
    pub(crate) fn table_applied(&self, op: TableOp, released: &Released) {
        match released {
            Released::Freed(e) if e.exported => self.unexport(e.cell.id()),
            Released::FreedMany(es) => {
                for e in es.iter().filter(|e| e.exported) {
                    self.unexport(e.cell.id());
                }
            }
            Released::Stale => {
                if let TableOp::Borrow {
                    id, shipped: true, ..
                } = op
                {
                    self.unexport(id);
                }
            }
            _ => {}
        }
    }

    /// Forgets an exported object (its entry is gone).
    fn unexport(&self, id: ObjectId) {
        self.exports.lock().remove(&id);
    }

    /// The cell of an object owned here whose ref went to another node.
    pub(crate) fn export_cell(&self, id: ObjectId) -> Option<Arc<ObjectCell>> {
        self.exports.lock().get(&id).cloned()
    }

    /// This node's proxy of an object owned elsewhere.
    pub(crate) fn proxy(&self, id: ObjectId) -> Option<Arc<ObjectCell>> {
        self.borrowed.lock().get(&id).map(|b| Arc::clone(&b.cell))
    }

    /// `dead` is gone: every proxy of an object it owned fails with
    /// `OwnerDied` (fate-sharing). The proxies stay until their handle
    /// groups end; their releases to a dead node are dropped.
    pub(crate) fn owner_gone(&self, dead: NodeId) {
        let mut proxies: Vec<Arc<ObjectCell>> = self
            .borrowed
            .lock()
            .iter()
            .filter(|(id, _)| id.node == dead)
            .map(|(_, b)| Arc::clone(&b.cell))
            .collect();
        proxies.sort_unstable_by_key(|c| c.id());
        for cell in proxies {
            cell.complete(Err(owner_died(cell.id())));
        }
    }

    /// (proxies, exports, lent holds and unanswered registrations)
    /// alive: all zero after a finished workload.
    pub(crate) fn counts(&self) -> (usize, usize, usize) {
        (
            self.borrowed.lock().len(),
            self.exports.lock().len(),
            self.lent.lock().len() + self.registering.lock().len(),
        )
    }
}

/// The error every reader of an object sees once its owner is gone.
pub(crate) fn owner_died(id: ObjectId) -> Arc<TaskError> {
    Arc::new(TaskError {
        kind: TaskErrorKind::OwnerDied(id.node),
        task: id.to_string(),
        object: id,
        node: id.node,
        shard: id.shard,
        attempts: 0,
        history: Vec::new(),
    })
}
