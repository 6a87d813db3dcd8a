//! The object cell: one per object per node, shared by every handle to it.
//!
//! The cell is the write-once slot a task's result lands in and readers wait
//! on. It is written by whichever shard ran the task (one `OnceLock::set`),
//! read by any thread with one atomic load, and freed when the last `Arc`
//! (owner table entry, handle, pending task or `Got` guard) goes.
//!
//! `handles` counts the live `ObjectRef`/`RawRef` handles on this node; the
//! handles alive between two zeros form one *handle group*. A clone comes
//! from a live handle, so cloning never raises the count from zero. Only
//! the owner raises it from zero: a ref of its own object that comes back
//! from another node finds the cell through the export index and starts a
//! new group (`Net::resolve_own`, which tells the owning shard). Each
//! transition to zero sends exactly one release for the group that ended.
//!
//! On its owner, a task's result may be *located* before it is ready: the
//! task finished on another node, which holds the value (see
//! `owner::located`). It then counts as done for placing the tasks that
//! take it (they may run where it is), and the first reader that waits for
//! the value itself demands it (`object::demand`), which brings it here.

use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::task::Waker;

use parking_lot::Mutex;
use smallvec::SmallVec;

use crate::error::TaskError;
use crate::ids::ObjectId;
use crate::object::value::Stored;

pub type Outcome = Result<Stored, Arc<TaskError>>;

#[derive(Default)]
struct Waiting {
    wakers: SmallVec<[Waker; 1]>,
    // Tasks submitted while this object's task ran: cancelled with it.
    children: Vec<Weak<ObjectCell>>,
}

/// Done on another node, which holds the value.
const LOCATED: u8 = 1;
/// A reader asked for the located value.
const DEMANDED: u8 = 2;

pub struct ObjectCell {
    id: ObjectId,
    /// The runtime (process-local serial) whose table owns this object.
    pub(crate) rt: u32,
    pub(crate) handles: AtomicU32,
    /// Refs to this object shipped to other nodes whose registration has not
    /// reached the owning shard yet (see `net::refs`): the entry must not
    /// be freed meanwhile.
    pub(crate) in_flight: AtomicU32,
    /// `LOCATED`, `DEMANDED` (see the module docs).
    state: AtomicU8,
    result: OnceLock<Outcome>,
    // Taken only when a reader finds the value missing or a writer publishes:
    // never on the path of a ready `get`.
    waiting: Mutex<Waiting>,
}

impl std::fmt::Debug for ObjectCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectCell")
            .field("id", &self.id)
            .field("handles", &self.handles.load(Ordering::Relaxed))
            .field("ready", &self.result.get().is_some())
            .finish()
    }
}

impl ObjectCell {
    pub(crate) fn new(id: ObjectId, rt: u32, handles: u32) -> ObjectCell {
        ObjectCell {
            id,
            rt,
            handles: AtomicU32::new(handles),
            in_flight: AtomicU32::new(0),
            state: AtomicU8::new(0),
            result: OnceLock::new(),
            waiting: Mutex::new(Waiting::default()),
        }
    }

    pub(crate) fn ready(id: ObjectId, rt: u32, handles: u32, value: Stored) -> ObjectCell {
        let cell = ObjectCell::new(id, rt, handles);
        let _ = cell.result.set(Ok(value));
        cell
    }

    pub fn id(&self) -> ObjectId {
        self.id
    }

    pub fn result(&self) -> Option<&Outcome> {
        self.result.get()
    }

    pub fn is_ready(&self) -> bool {
        self.result.get().is_some()
    }

    /// Publishes the result and wakes every waiter. Returns false (and drops
    /// `outcome`) if a result was already set, e.g. by `cancel`.
    pub(crate) fn complete(&self, outcome: Outcome) -> bool {
        if self.result.set(outcome).is_err() {
            return false;
        }
        let wakers = std::mem::take(&mut self.waiting.lock().wakers);
        for w in wakers {
            w.wake();
        }
        true
    }

    /// Whether the task finished on another node that holds the value
    /// (and the value is not here yet).
    pub fn is_located(&self) -> bool {
        self.state.load(Ordering::Acquire) & LOCATED != 0 && !self.is_ready()
    }

    /// Ready, or located: the task that makes it is done.
    pub fn is_done(&self) -> bool {
        self.is_ready() || self.state.load(Ordering::Acquire) & LOCATED != 0
    }

    /// The task finished on another node, which holds the value: wakes
    /// every waiter (those waiting for the value itself demand it when
    /// they look again).
    pub(crate) fn mark_located(&self) {
        self.state.store(LOCATED, Ordering::Release);
        let wakers = std::mem::take(&mut self.waiting.lock().wakers);
        for w in wakers {
            w.wake();
        }
    }

    /// The node holding the value was lost: the object is pending again
    /// (its task runs again).
    pub(crate) fn unlocate(&self) {
        self.state.store(0, Ordering::Release);
    }

    /// Registers `waker` unless the value is already there. Returns false
    /// when it is (the caller proceeds without waiting). The first wait
    /// for a located value demands it.
    pub(crate) fn wait(self: &Arc<Self>, waker: &Waker) -> bool {
        if !self.register(waker, ObjectCell::is_ready) {
            return false;
        }
        let state = self.state.load(Ordering::Acquire);
        if state == LOCATED
            && self
                .state
                .compare_exchange(
                    LOCATED,
                    LOCATED | DEMANDED,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
        {
            super::demand(self);
        }
        true
    }

    /// Registers `waker` unless the object is done (ready or located);
    /// returns false when it is.
    pub(crate) fn wait_done(&self, waker: &Waker) -> bool {
        self.register(waker, ObjectCell::is_done)
    }

    fn register(&self, waker: &Waker, done: fn(&ObjectCell) -> bool) -> bool {
        if done(self) {
            return false;
        }
        let mut waiting = self.waiting.lock();
        // `complete` and `mark_located` publish before taking the lock, so
        // a change after our first check is visible here.
        if done(self) {
            return false;
        }
        if !waiting.wakers.iter().any(|w| w.will_wake(waker)) {
            waiting.wakers.push(waker.clone());
        }
        true
    }

    pub(crate) fn add_child(&self, child: Weak<ObjectCell>) {
        let mut waiting = self.waiting.lock();
        // Keep the list from growing without bound in long-lived parents.
        if waiting.children.len() >= 64 && waiting.children.len().is_power_of_two() {
            waiting
                .children
                .retain(|c| c.upgrade().is_some_and(|c| !c.is_ready()));
        }
        waiting.children.push(child);
    }

    /// Fails this object with `Cancelled` (if still pending) and cancels every
    /// task it submitted, transitively. Returns whether it was pending.
    pub(crate) fn cancel(
        self: &Arc<Self>,
        make_err: &dyn Fn(&ObjectCell) -> Arc<TaskError>,
    ) -> bool {
        let mut stack = vec![Arc::clone(self)];
        let mut first = None;
        while let Some(cell) = stack.pop() {
            // A task that finished elsewhere is done: nothing to cancel.
            let was_pending = !cell.is_done() && cell.complete(Err(make_err(&cell)));
            first.get_or_insert(was_pending);
            let children = std::mem::take(&mut cell.waiting.lock().children);
            stack.extend(children.iter().filter_map(Weak::upgrade));
        }
        first.unwrap_or(false)
    }
}
