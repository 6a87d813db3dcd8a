//! A shard's own state and the operations tasks on it call directly.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::sync::Arc;
use std::task::Waker;

use crossbeam_deque::Worker;
use slab::Slab;

use super::parked::{Parked, Until};
use super::waker::{TaskKey, TaskWaker};
use super::Msg;
use crate::engine::host::HostCtx;
use crate::engine::node::NodeShared;
use crate::error::{TaskError, TaskErrorKind};
use crate::ids::{ObjectId, ShardId};
use crate::object::cell::ObjectCell;
use crate::object::objref::RawRef;
use crate::object::value::Stored;
use crate::owner::table::OwnershipTable;
use crate::owner::TableOp;
use crate::sched::place::{place, Placement, Want};
use crate::sched::{next_source, should_donate, PriorityQueue, Source};
use crate::spec::{Task, TaskFuture};

/// A suspended async task. (Root futures live node-wide: `engine::roots`.)
pub(crate) enum Fut {
    Task(TaskFuture),
}

/// An async task in progress.
pub(super) struct Running {
    pub gen: u32,
    /// `None` while the future is being polled.
    pub fut: Option<Fut>,
    /// The task (for its cell and for retries).
    pub task: Option<Task>,
    pub waker: Waker,
}

/// What a shard still holds; all zero after a finished workload.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LeakCounts {
    pub table_entries: usize,
    pub queued_tasks: usize,
    pub running_tasks: usize,
}

impl LeakCounts {
    pub fn is_empty(&self) -> bool {
        *self == LeakCounts::default()
    }
}

pub(crate) struct Shard {
    pub id: ShardId,
    pub shared: Arc<NodeShared>,
    pub(super) table: RefCell<OwnershipTable>,
    pub(super) fifo: Worker<Task>,
    pub(super) prio: RefCell<PriorityQueue<Task>>,
    pub(super) running: RefCell<Slab<Running>>,
    pub(super) woken: RefCell<VecDeque<TaskKey>>,
    pub(super) next_gen: Cell<u32>,
    /// The cell of the task now executing, for child tracking (cancel).
    pub(super) current_task: RefCell<Option<Arc<ObjectCell>>>,
    releases: RefCell<Vec<ObjectId>>,
    releasing: Cell<bool>,
    pub(super) stop: Cell<bool>,
    /// This shard drives the node's network I/O (see `host_io`).
    pub(super) hosts_io: Cell<bool>,
    /// When this shard last gave its event loop a turn (I/O hosts only).
    pub(super) last_io: Cell<std::time::Instant>,
    /// Its event loop is tokio-uring (else tokio with epoll).
    pub(super) on_uring: Cell<bool>,
    /// The data plane of a shared-memory mesh this shard drives.
    pub(super) shm: RefCell<Option<owl_transport::ShmHost>>,
}

impl Shard {
    pub(crate) fn new(id: ShardId, shared: Arc<NodeShared>, fifo: Worker<Task>) -> Shard {
        let table = OwnershipTable::new(shared.node, id, shared.serial);
        Shard {
            id,
            shared,
            table: RefCell::new(table),
            fifo,
            prio: RefCell::new(PriorityQueue::default()),
            running: RefCell::new(Slab::new()),
            woken: RefCell::new(VecDeque::new()),
            next_gen: Cell::new(0),
            current_task: RefCell::new(None),
            releases: RefCell::new(Vec::new()),
            releasing: Cell::new(false),
            stop: Cell::new(false),
            hosts_io: Cell::new(false),
            last_io: Cell::new(std::time::Instant::now()),
            on_uring: Cell::new(false),
            shm: RefCell::new(None),
        }
    }

    pub(super) fn gen(&self) -> u32 {
        let g = self.next_gen.get();
        self.next_gen.set(g.wrapping_add(1));
        g
    }

    pub(super) fn waker(&self, key: TaskKey) -> Waker {
        Waker::from(Arc::new(TaskWaker {
            node: Arc::clone(&self.shared),
            shard: self.id.0,
            key,
        }))
    }

    // ---- objects -------------------------------------------------------

    /// Registers a stored value as a new object owned here.
    pub(crate) fn put(&self, value: Stored) -> RawRef {
        RawRef::adopt(self.table.borrow_mut().insert_ready(value))
    }

    /// Applies the release of an object owned here. Freed entries are dropped
    /// outside the table borrow, and releases they cause (refs contained in
    /// the freed value) are applied by the same loop, not by recursion.
    pub(crate) fn release(&self, id: ObjectId) {
        debug_assert_eq!(id.shard, self.id);
        self.releases.borrow_mut().push(id);
        if self.releasing.replace(true) {
            return;
        }
        loop {
            let Some(id) = self.releases.borrow_mut().pop() else {
                break;
            };
            self.apply_table(TableOp::Release(id));
        }
        self.releasing.set(false);
    }

    /// Applies one update to the table and keeps the node's export index in
    /// step; freed entries drop here, outside the table borrow (their
    /// contained refs may release more).
    fn apply_table(&self, op: TableOp) {
        let released = self.table.borrow_mut().apply(op);
        if let Some(ctx) = HostCtx::of(&self.shared) {
            ctx.owner().table_applied(&ctx, op, &released);
        }
        drop(released);
    }

    // ---- tasks ---------------------------------------------------------

    /// Creates the object a new task will produce and queues the task.
    pub(crate) fn submit(
        &self,
        func: &'static crate::spec::FnInfo,
        call: Box<dyn crate::spec::Call>,
        opts: Option<Box<crate::spec::CallOpts>>,
    ) -> RawRef {
        let cell = self.table.borrow_mut().insert_pending();
        if let Some(parent) = self.current_task.borrow().as_ref() {
            parent.add_child(Arc::downgrade(&cell));
        }
        let handle = RawRef::adopt(Arc::clone(&cell));
        self.enqueue(Task {
            cell,
            func,
            call,
            opts,
            attempt: 0,
            reply_to: None,
            tried: Vec::new(),
        });
        handle
    }

    /// Queues a task: placed once its arguments' tasks are done, else
    /// parked on the first one that is not.
    pub(crate) fn enqueue(&self, task: Task) {
        if task.deps_done() {
            self.push_ready(task);
        } else if let Some(task) = Parked::park(task, &self.shared, self.id, Until::Done) {
            self.push_ready(task);
        }
    }

    /// A parked task whose wait is over: placed once its arguments' tasks
    /// are done; queued once, placed here, their values are here.
    pub(crate) fn resume(&self, task: Task, waited: Until) {
        match waited {
            Until::Done => self.push_ready(task),
            Until::Here => self.queue_placed(task),
        }
    }

    /// Places a task whose arguments are done: sent to another node, or
    /// queued here once its arguments' values are here (those held on
    /// other nodes are brought here meanwhile).
    pub(crate) fn push_ready(&self, task: Task) {
        match self.place(&task) {
            Ok(Some(node)) if node != self.shared.node => return self.dispatch(task, node),
            Ok(_) => {}
            Err(why) => return self.fail(task, TaskErrorKind::Unplaceable(why)),
        }
        let task = if task.deps_here() {
            task
        } else {
            match Parked::park(task, &self.shared, self.id, Until::Here) {
                Some(task) => task,
                None => return,
            }
        };
        self.queue_placed(task);
    }

    /// Queues a task placed on this node whose arguments' values are here.
    /// Never places it again: its values were brought here for it, and a
    /// second placement (spread, spillback) would send it elsewhere.
    pub(crate) fn queue_placed(&self, task: Task) {
        let priority = task.priority();
        if priority == 0 {
            // Only the push that makes the FIFO non-empty wakes a parked
            // shard: a shard parks only after seeing every FIFO empty.
            let was_empty = self.fifo.is_empty();
            self.fifo.push(task);
            if was_empty {
                self.shared.wake_idle_shard(self.id);
            }
        } else {
            self.prio.borrow_mut().push(priority, task);
        }
    }

    pub(super) fn pop_ready(&self) -> Option<Task> {
        let mut prio = self.prio.borrow_mut();
        if should_donate(prio.len(), self.shared.idle_shards()) {
            if let Some(t) = prio.pop() {
                self.fifo.push(t);
                self.shared.wake_idle_shard(self.id);
            }
        }
        match next_source(prio.top_priority(), !self.fifo.is_empty()) {
            Source::Heap => prio.pop(),
            Source::Fifo => self.fifo.pop(),
            Source::Empty => None,
        }
    }

    /// A waker fired for one of this shard's tasks on this very thread.
    pub(crate) fn wake_local(&self, key: TaskKey) {
        self.woken.borrow_mut().push_back(key);
        // We may be parked inside the event loop (a timer fired, say).
        self.shared.shards[self.id.0 as usize].wake();
    }

    pub(super) fn handle(&self, msg: Msg) {
        match self.apply_counts(msg) {
            Some(Msg::Wake(key)) => self.woken.borrow_mut().push_back(key),
            Some(Msg::Run(f)) => f(self),
            Some(Msg::Enqueue(task)) => self.enqueue(task),
            _ => {}
        }
    }

    /// Applies a message that changes reference counts (also while shutting
    /// down); hands any other message back.
    fn apply_counts(&self, msg: Msg) -> Option<Msg> {
        match msg {
            Msg::Table(TableOp::Release(id)) => self.release(id),
            Msg::Table(op) => self.apply_table(op),
            other => return Some(other),
        }
        None
    }

    /// Where a ready task runs: `None` here; an error if no node can.
    /// Tasks received from other nodes stay where they are.
    fn place(&self, task: &Task) -> Result<Option<crate::ids::NodeId>, String> {
        if task.reply_to.is_some() {
            return Ok(None);
        }
        let o = task.opts.as_deref();
        let free = o.is_none_or(|o| o.node.is_none() && o.label.is_none() && !o.spread);
        // Unconstrained, it runs where its largest argument held on another
        // node is, so that value does not move.
        let near = self
            .shared
            .net
            .as_ref()
            .filter(|_| free)
            .and_then(|net| net.near_args(task));
        let want = Want {
            func: task.func.id.0,
            node: o.and_then(|o| o.node).or(near),
            label: o.and_then(|o| o.label.as_deref()),
            spread: o.is_some_and(|o| o.spread),
        };
        // Spillback: a node whose shards are all busy, with a backlog here,
        // sends new ready tasks to a peer that can take them.
        let busy = || {
            self.fifo.len() >= crate::engine::net::SPILLBACK_BACKLOG
                && self.shared.idle_shards() == 0
        };
        let placed = match self.shared.net.as_ref() {
            Some(net) => place(want, net, || net.next_turn(), || net.can_spill() && busy()),
            None => {
                let alone = crate::engine::net::Alone {
                    me: self.shared.node,
                    labels: &self.shared.config.labels,
                };
                place(want, &alone, || 0, || false)
            }
        }?;
        Ok(match placed {
            Placement::Here => None,
            Placement::On(node) => Some(node),
        })
    }

    /// Sends a ready task to another node (its arguments travel with it).
    fn dispatch(&self, task: Task, node: crate::ids::NodeId) {
        if task.dep_failed() {
            // Fails here at once with the dependency's error.
            return self.execute(task);
        }
        let Some(ctx) = HostCtx::of(&self.shared) else {
            let why =
                format!("node {node} was asked for, but this runtime is not part of a cluster");
            return self.fail(task, TaskErrorKind::Unplaceable(why));
        };
        if let Err((task, kind)) = ctx.owner().dispatch(&ctx, task, node) {
            self.fail(task, kind);
        }
    }

    pub(crate) fn task_error(&self, task: &Task, kind: TaskErrorKind) -> Arc<TaskError> {
        Arc::new(TaskError {
            kind,
            task: task.name(),
            object: task.cell.id(),
            node: self.shared.node,
            shard: self.id,
            attempts: task.attempt + 1,
            history: task.tried.clone(),
        })
    }

    pub(crate) fn leak_counts(&self) -> LeakCounts {
        let running = self.running.borrow();
        LeakCounts {
            table_entries: self.table.borrow().len(),
            // The node's incoming tasks are counted once, on shard 0.
            queued_tasks: self.fifo.len()
                + self.prio.borrow().len()
                + if self.id.0 == 0 {
                    self.shared.incoming.len()
                } else {
                    0
                },
            running_tasks: running.iter().filter(|(_, r)| r.task.is_some()).count(),
        }
    }

    pub(crate) fn check_table(&self) {
        self.table.borrow().check();
    }

    /// Drops every task still held (runtime shutdown): each fails its object
    /// with `Shutdown` as it drops (see `Task`'s `Drop`), which may release
    /// parked tasks onto this shard, so repeat until nothing is left. Then
    /// empty the table.
    pub(super) fn shut_down(&self) {
        let inbox = &self.shared.shards[self.id.0 as usize].inbox;
        loop {
            let mut dropped = false;
            let prio: Vec<Task> = self.prio.borrow_mut().drain().collect();
            dropped |= !prio.is_empty();
            drop(prio);
            while let Some(t) = self.fifo.pop() {
                dropped = true;
                drop(t);
            }
            while let Some(t) = self.shared.incoming.steal().success() {
                dropped = true;
                drop(t);
            }
            let running: Vec<Running> = self.running.borrow_mut().drain().collect();
            dropped |= !running.is_empty();
            drop(running);
            dropped |= self.shared.roots.drain();
            while let Some(msg) = inbox.pop() {
                dropped = true;
                // Work from outside threads is dropped: a caller waiting
                // for its answer gets `Shutdown`.
                drop(self.apply_counts(msg));
            }
            if !dropped {
                break;
            }
        }
        let entries = self.table.borrow_mut().drain();
        drop(entries);
    }
}
