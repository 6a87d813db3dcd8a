//! Results that stay where they were made, and their lineage.
//!
//! A task run on another node whose result is larger than [`HOLD_ABOVE`]
//! leaves the value in its executor's arena (`TaskHeld`). The owner records
//! where it is and keeps the task itself (its lineage: function, archived
//! by-value arguments, argument refs, which keep their own objects and
//! lineage alive), and the object counts as done (`ObjectCell::mark_located`):
//!
//! - a task that takes it may be placed anywhere; one placed on the holder
//!   reads the holder's copy, so the value never crosses the network;
//! - a reader on another node is sent to the holder (`ValueHeader` naming
//!   it) and pulls from there;
//! - the first reader on the owner itself demands it, and the owner pulls
//!   it here; the holder then drops its copy and the lineage goes (a value
//!   on its live owner cannot be lost);
//! - when the holder dies, the object is marked lost, and its task runs
//!   again on a live node when the value is next wanted (a reader here, a
//!   fetch from elsewhere, a task that takes it), or at once if a reader
//!   was pulling it: what nobody reads again is never rebuilt. At most one
//!   run at a time per object, within the task's retry budget; readers
//!   wait for it. A reader that finds the holder cannot serve the value
//!   says so (`Fetch` with `lost`), with the same effect;
//! - when the object is freed, the holder drops its copy.
//!
//! Lineage is bounded per node (`OWL_LINEAGE_BYTES`): past the budget the
//! oldest tasks kept are dropped, and an object whose holder is then lost
//! fails with `LineageEvicted` instead of being rebuilt.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use owl_proto::{OwlMsg, SharedBlock};

use super::{wire, NodeCtx, Owner};
use crate::error::{Attempt, TaskError, TaskErrorKind};
use crate::ids::{NodeId, ObjectId};
use crate::object::cell::ObjectCell;
use crate::object::objref::RawRef;
use crate::owner::table::Released;
use crate::owner::TableOp;
use crate::spec::Task;

/// Results larger than this stay with the node that made them (and a ref
/// argument's value up to this size travels with the call).
pub(crate) const HOLD_ABOVE: usize = 64 * 1024;

/// The default lineage budget per node (`OWL_LINEAGE_BYTES`).
pub(crate) const LINEAGE_BYTES: usize = 1 << 30;

/// A result held by other nodes.
pub(crate) struct Located {
    pub cell: Arc<ObjectCell>,
    /// Nodes holding a copy, acknowledged: the executor first, then
    /// replicas. Empty once the last one is gone (then `lost`).
    pub holders: Vec<NodeId>,
    /// Nodes asked to make a copy that have not answered.
    pub copying: Vec<NodeId>,
    /// Nodes that could not make a copy (not asked again).
    pub refused: Vec<NodeId>,
    /// Copies the call asked for (`CallOpts::replicas`, at least 1).
    pub want: usize,
    pub len: u64,
    /// The refs inside the value (it keeps their objects alive).
    pub contained: Vec<RawRef>,
    /// Where readers on a holder's host find its copy (holders whose
    /// value is in their arena).
    pub blocks: Vec<(NodeId, SharedBlock)>,
    /// The task that made it, to run again if the holder is lost; `None`
    /// once evicted from the lineage budget.
    pub task: Option<Task>,
    /// The last holder died: the value is rebuilt when next wanted.
    pub(super) lost: bool,
    /// Which node it was lost with (for the error and the retry history).
    lost_on: Option<NodeId>,
    /// The task's weight as lineage, and its place in eviction order.
    spec_bytes: usize,
    seq: u64,
}

/// The results of this node's tasks held elsewhere, with the lineage kept
/// for them within a byte budget.
pub(crate) struct Locations {
    by_id: HashMap<ObjectId, Located>,
    /// Objects whose task is kept, oldest first.
    order: BTreeMap<u64, ObjectId>,
    next: u64,
    bytes: usize,
    budget: usize,
}

impl Locations {
    pub(crate) fn new(budget: usize) -> Locations {
        Locations {
            by_id: HashMap::new(),
            order: BTreeMap::new(),
            next: 0,
            bytes: 0,
            budget,
        }
    }

    pub(crate) fn set_budget(&mut self, budget: usize) {
        self.budget = budget;
    }

    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Lineage bytes kept.
    #[cfg(test)]
    pub(crate) fn lineage_bytes(&self) -> usize {
        self.bytes
    }

    pub(super) fn get(&self, id: &ObjectId) -> Option<&Located> {
        self.by_id.get(id)
    }

    /// Records `id`'s location and lineage; returns the tasks evicted to
    /// stay within the budget (to be dropped outside the lock).
    fn insert(&mut self, id: ObjectId, mut l: Located) -> Vec<Task> {
        if l.task.is_some() {
            l.seq = self.next;
            self.next += 1;
            self.bytes += l.spec_bytes;
            self.order.insert(l.seq, id);
        }
        self.by_id.insert(id, l);
        let mut evicted = Vec::new();
        while self.bytes > self.budget {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some(l) = self.by_id.get_mut(&oldest) {
                self.bytes -= l.spec_bytes;
                evicted.extend(l.task.take());
            }
        }
        evicted
    }

    fn remove(&mut self, id: &ObjectId) -> Option<Located> {
        let l = self.by_id.remove(id)?;
        if l.task.is_some() {
            self.order.remove(&l.seq);
            self.bytes -= l.spec_bytes;
        }
        Some(l)
    }

    /// Removes `id` if `holder` holds a copy.
    fn remove_held_by(&mut self, id: &ObjectId, holder: NodeId) -> Option<Located> {
        match self.by_id.get(id) {
            Some(l) if l.holders.contains(&holder) => self.remove(id),
            _ => None,
        }
    }

    pub(super) fn get_mut(&mut self, id: &ObjectId) -> Option<&mut Located> {
        self.by_id.get_mut(id)
    }

    /// Objects of which `node` holds or is making a copy, in id order.
    fn held_by(&self, node: NodeId) -> Vec<ObjectId> {
        let mut ids: Vec<ObjectId> = self
            .by_id
            .iter()
            .filter(|(_, l)| l.holders.contains(&node) || l.copying.contains(&node))
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }
}

impl Owner {
    /// Results larger than this stay with their executor.
    pub(crate) fn hold_above(&self) -> usize {
        self.chunk.min(HOLD_ABOVE)
    }

    /// The executor `from` finished a task of ours and holds its result.
    pub(super) fn located(
        &self,
        ctx: &impl NodeCtx,
        from: NodeId,
        object: ObjectId,
        len: u64,
        contained: Vec<RawRef>,
        shared: Option<SharedBlock>,
    ) {
        let want = super::replicas::task_replicas(&self.remote.lock(), object);
        let task = {
            let mut remote = self.remote.lock();
            match remote.remove(&object) {
                Some(r) if r.node == from => Some((r.task, r.spec_bytes)),
                Some(r) => {
                    remote.insert(object, r);
                    None
                }
                None => None,
            }
        };
        // Without a handle here or a ref elsewhere, nobody can read it any
        // more (its entry is freed, or about to be): nothing to keep.
        let unread = |t: &Task| {
            t.cell.handles.load(Ordering::Acquire) == 0 && self.refs.export_cell(object).is_none()
        };
        let (task, spec_bytes) = match task {
            Some((t, _)) if unread(&t) => {
                // Freed while it ran (a dead node's counts purged with
                // it): a fetch accepted before that still gets the typed
                // answer a fetch of a freed object gets.
                t.cell
                    .complete(Err(super::fetch::freed_error(object, self.me)));
                drop((t, contained));
                return ctx.send(from, release(object));
            }
            Some(found) => found,
            None => {
                // An answer from a node the task no longer runs on, or a
                // task cancelled meanwhile: the executor may drop its copy.
                drop(contained);
                return ctx.send(from, release(object));
            }
        };
        let cell = Arc::clone(&task.cell);
        let located = Located {
            cell: Arc::clone(&cell),
            holders: vec![from],
            copying: Vec::new(),
            refused: Vec::new(),
            want,
            len,
            contained,
            blocks: shared.map(|b| vec![(from, b)]).unwrap_or_default(),
            task: Some(task),
            lost: false,
            lost_on: None,
            spec_bytes,
            seq: 0,
        };
        let evicted = self.located.lock().insert(object, located);
        self.located_count.fetch_add(1, Ordering::Relaxed);
        // Done once recorded (readers then find where it is), and before
        // evicted tasks are dropped (a task dropped while its object is
        // not done fails it).
        cell.mark_located();
        if !evicted.is_empty() {
            tracing::debug!(count = evicted.len(), "lineage evicted (OWL_LINEAGE_BYTES)");
        }
        drop(evicted);
        self.replicate(ctx, object);
    }

    /// A reader on this node waits for `cell`'s value, held elsewhere:
    /// pull it here.
    pub(crate) fn demand(&self, ctx: &impl NodeCtx, cell: &Arc<ObjectCell>) {
        let id = cell.id();
        if let Some((holder, len, contained, shared)) = self.location(ctx, id, self.me) {
            let at = super::fetch::At {
                len,
                holder,
                shared,
            };
            self.start_pull(ctx, id, at, contained, super::fetch::Purpose::Read);
        }
    }

    /// A node holding `id`'s value and its size, while one does.
    pub(crate) fn holder_of(&self, id: ObjectId) -> Option<(NodeId, u64)> {
        let located = self.located.lock();
        let l = located.get(&id)?;
        Some((*l.holders.first()?, l.len))
    }

    /// Where `reader` finds a located value: (holder, len, contained,
    /// shared). A live copy on the reader's own host comes first (read
    /// in one copy from its arena file), else the first live holder.
    /// `None` when the object is not located here, or when its holder is
    /// gone: the task then runs again (the value is wanted).
    pub(super) fn location(
        &self,
        ctx: &impl NodeCtx,
        id: ObjectId,
        reader: NodeId,
    ) -> Option<(NodeId, u64, Vec<RawRef>, Option<SharedBlock>)> {
        let (dead, lost_on) = {
            let located = self.located.lock();
            let l = located.get(&id)?;
            if let Some(&first) = l.holders.iter().find(|&&h| !ctx.is_dead(h)) {
                let host = ctx.host_of(reader).filter(|&h| h != 0);
                let near = l
                    .blocks
                    .iter()
                    .find(|(n, b)| Some(b.host) == host && !ctx.is_dead(*n))
                    .map(|(n, _)| *n);
                let h = near.unwrap_or(first);
                let shared = l
                    .blocks
                    .iter()
                    .find(|(n, _)| *n == h)
                    .map(|(_, b)| b.clone());
                return Some((h, l.len, l.contained.clone(), shared));
            }
            (l.holders.clone(), l.lost_on.filter(|_| l.lost))
        };
        // Every copy is on a node known dead, or was lost before: the
        // value is wanted now.
        for h in dead {
            self.holder_lost(ctx, id, h);
        }
        if let Some(node) = lost_on {
            self.rebuild(ctx, id, node);
        }
        None
    }

    /// A located value arrived here (or could not be brought): the object
    /// is complete, its holder drops its copy, its lineage goes.
    pub(super) fn located_arrived(
        &self,
        ctx: &impl NodeCtx,
        from: NodeId,
        id: ObjectId,
        outcome: crate::object::cell::Outcome,
    ) {
        let entry = self.located.lock().remove_held_by(&id, from);
        let Some(mut l) = entry else {
            return ctx.send(from, release(id));
        };
        if outcome.is_ok() && self.refs.export_cell(id).is_some() {
            // Readers on other nodes may be copying a holder's value right
            // now (sent there before this copy arrived): the holders keep
            // theirs until the object is freed, behind this node's, which
            // needs no lineage.
            l.holders.insert(0, self.me);
            l.lost = false;
            let task = l.task.take();
            let contained = std::mem::take(&mut l.contained);
            let cell = Arc::clone(&l.cell);
            let evicted = self.located.lock().insert(id, l);
            debug_assert!(evicted.is_empty(), "no lineage added");
            cell.complete(outcome);
            drop((task, contained));
            return;
        }
        self.located_count.fetch_sub(1, Ordering::Relaxed);
        for n in l.holders.iter().chain(&l.copying) {
            ctx.send(*n, release(id));
        }
        l.cell.complete(outcome);
    }

    /// `holder` can no longer serve `id`'s value (it died, or said it has
    /// no such value): its copy is forgotten; another copy serves, and is
    /// copied again up to what the call asked for; without one, the task
    /// runs again, or the object fails when its retries are spent.
    ///
    /// An object already lost with its last holder is rebuilt now: a reader
    /// that had been sent to that holder wants it.
    pub(super) fn holder_lost(&self, ctx: &impl NodeCtx, id: ObjectId, holder: NodeId) {
        let (left, lost_on) = {
            let mut located = self.located.lock();
            let Some(l) = located.get_mut(&id) else {
                return;
            };
            if l.lost {
                (0, l.lost_on.unwrap_or(holder))
            } else if l.holders.contains(&holder) {
                l.holders.retain(|&h| h != holder);
                l.blocks.retain(|&(h, _)| h != holder);
                (l.holders.len(), holder)
            } else {
                return;
            }
        };
        let pull = {
            let mut pulls = self.pulls.lock();
            match pulls.get(&id) {
                Some(p) if p.from == holder => pulls.remove(&id),
                _ => None,
            }
        };
        let was_pulling = pull.is_some();
        drop(pull);
        if !ctx.is_dead(holder) {
            ctx.send(holder, release(id));
        }
        if left > 0 {
            self.replicate(ctx, id);
            if was_pulling {
                // A reader here was pulling from it: on from another copy.
                if let Some(cell) = self.refs.export_cell(id).or_else(|| self.located_cell(id)) {
                    self.demand(ctx, &cell);
                }
            }
            return;
        }
        tracing::debug!(object = %id, holder = %lost_on, "result lost with its last holder; running its task again");
        self.rebuild(ctx, id, lost_on);
    }

    /// Keeps `want` copies of the value of `cell`, ready here and put
    /// here (no task can make it again): this node's, and copies other
    /// nodes make and keep, replaced when their node dies.
    pub(crate) fn keep_put_copies(&self, ctx: &impl NodeCtx, cell: &Arc<ObjectCell>, want: usize) {
        let Some(Ok(stored)) = cell.result() else {
            return;
        };
        let copies = Located {
            cell: Arc::clone(cell),
            holders: vec![self.me],
            copying: Vec::new(),
            refused: Vec::new(),
            want,
            len: stored.bytes().len() as u64,
            // The value here keeps them.
            contained: Vec::new(),
            blocks: Vec::new(),
            task: None,
            lost: false,
            lost_on: None,
            spec_bytes: 0,
            seq: 0,
        };
        let evicted = self.located.lock().insert(cell.id(), copies);
        debug_assert!(evicted.is_empty(), "a put adds no lineage");
        self.located_count.fetch_add(1, Ordering::Relaxed);
        self.replicate(ctx, cell.id());
    }

    /// The cell of a located object.
    pub(super) fn located_cell(&self, id: ObjectId) -> Option<Arc<ObjectCell>> {
        self.located.lock().get(&id).map(|l| Arc::clone(&l.cell))
    }

    /// Every copy of `id`'s value is gone, the last with `lost_on`: its
    /// task runs again (or it fails when its lineage was evicted).
    fn rebuild(&self, ctx: &impl NodeCtx, id: ObjectId, lost_on: NodeId) {
        let Some(l) = self.located.lock().remove(&id) else {
            return;
        };
        self.located_count.fetch_sub(1, Ordering::Relaxed);
        // Copies still being made have no source any more.
        for n in &l.copying {
            ctx.send(*n, release(id));
        }
        let Located {
            task,
            contained,
            cell,
            ..
        } = l;
        drop(contained);
        match task {
            Some(task) => {
                task.cell.unlocate();
                let cause = format!("its result was lost with {lost_on}");
                self.retry_or_fail(ctx, task, lost_on, cause);
            }
            None => {
                tracing::warn!(object = %id, %lost_on, "a result lost with its holders cannot be rebuilt: its lineage was evicted");
                fail_evicted(&cell, lost_on);
            }
        }
    }

    /// `dead` is gone: its copies of our results are forgotten (others
    /// serve, and are copied again); a result with no copy left is lost,
    /// rebuilt now if a reader here was pulling it, else when next wanted.
    pub(super) fn holders_lost(&self, ctx: &impl NodeCtx, dead: NodeId) {
        let ids = self.located.lock().held_by(dead);
        for id in ids {
            let pulling = self.pulls.lock().get(&id).is_some_and(|p| p.from == dead);
            let holder = {
                let mut located = self.located.lock();
                let Some(l) = located.get_mut(&id) else {
                    continue;
                };
                l.copying.retain(|&n| n != dead);
                if l.holders == [dead] && !pulling {
                    // The last copy: rebuilt when next wanted.
                    l.holders.clear();
                    l.lost = true;
                    l.lost_on = Some(dead);
                    continue;
                }
                l.holders.contains(&dead)
            };
            if holder {
                self.holder_lost(ctx, id, dead);
            } else {
                // Only a copy in the making died: make another.
                self.replicate(ctx, id);
            }
        }
    }

    /// A task whose run on `node` was lost runs again here (placed anew,
    /// never on `node`) within its retry budget, or fails.
    pub(super) fn retry_or_fail(
        &self,
        ctx: &impl NodeCtx,
        mut task: Task,
        node: NodeId,
        cause: String,
    ) {
        let died = TaskErrorKind::WorkerDied(node);
        if super::retry::may_retry(task.opts.as_deref(), task.attempt, &died) {
            task.tried.push(Attempt { node, cause });
            task.attempt += 1;
            if let Some(o) = task.opts.as_mut() {
                o.node = None;
            }
            ctx.enqueue(Some(task.cell.id().shard), task);
        } else {
            let id = task.cell.id();
            task.cell.complete(Err(Arc::new(TaskError {
                kind: died,
                task: task.name(),
                object: id,
                node,
                shard: id.shard,
                attempts: task.attempt + 1,
                history: std::mem::take(&mut task.tried),
            })));
        }
    }

    /// Keeps the owner layer in step with an update a shard's table just
    /// applied: freed objects leave the export index, and a freed result
    /// held elsewhere is dropped there (its lineage goes with it).
    pub(crate) fn table_applied(&self, ctx: &impl NodeCtx, op: TableOp, released: &Released) {
        self.refs.table_applied(op, released);
        if self.located_count.load(Ordering::Relaxed) == 0 {
            return;
        }
        let freed: Vec<ObjectId> = match released {
            Released::Freed(e) => vec![e.cell.id()],
            Released::FreedMany(es) => es.iter().map(|e| e.cell.id()).collect(),
            _ => return,
        };
        for id in freed {
            let entry = self.located.lock().remove(&id);
            if let Some(l) = entry {
                self.located_count.fetch_sub(1, Ordering::Relaxed);
                let pull = self.pulls.lock().remove(&id);
                drop(pull);
                // (This node is a holder of a value put here.)
                for &n in l.holders.iter().chain(&l.copying) {
                    if n != self.me {
                        ctx.send(n, release(id));
                    }
                }
                // A fetch accepted before the free (a borrower purged
                // with a dead node) still gets an answer: the typed error
                // a fetch of a freed object gets.
                l.cell.complete(Err(super::fetch::freed_error(id, self.me)));
                drop(l);
            }
        }
    }
}

/// Fails a located object whose holder is gone and whose lineage was
/// evicted.
fn fail_evicted(cell: &ObjectCell, holder: NodeId) {
    let id = cell.id();
    cell.unlocate();
    cell.complete(Err(Arc::new(TaskError {
        kind: TaskErrorKind::LineageEvicted(holder),
        task: id.to_string(),
        object: id,
        node: holder,
        shard: id.shard,
        attempts: 1,
        history: Vec::new(),
    })));
}

fn release(id: ObjectId) -> OwlMsg {
    OwlMsg::Release {
        object: wire::wire_id(id),
    }
}
