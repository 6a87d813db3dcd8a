//! Shards: one pinned thread per core, each with its own event loop, its own
//! slice of the ownership table and its own task queues.
//!
//! Shards share nothing mutable. They talk through each shard's lock-free
//! inbox (a crossbeam `SegQueue`: many producers, one consumer) and steal
//! default-priority tasks from each other's crossbeam deques. A shard with
//! nothing to do spins for a short while, then parks on its event loop
//! (io_uring or tokio); a producer wakes it only if it has parked.

mod event_loop;
mod exec;
mod local;
mod parked;
mod waker;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{fence, AtomicBool, Ordering};

use crossbeam_deque::Stealer;
use crossbeam_queue::SegQueue;
use tokio::sync::Notify;

use crate::spec::Task;

pub use crate::config::EventLoopKind;
pub(crate) use event_loop::{probe_event_loop, run_shard};
pub use local::LeakCounts;
pub(crate) use local::Shard;
pub(crate) use waker::TaskKey;

/// A message to a shard.
pub(crate) enum Msg {
    /// An update to this shard's ownership table: a handle group ended or
    /// started, borrowers registered or released.
    Table(crate::owner::TableOp),
    /// A waker fired on another thread for one of this shard's tasks.
    Wake(TaskKey),
    /// Work from outside the shard (a non-shard thread, or setup).
    Run(Box<dyn FnOnce(&Shard) + Send>),
    /// A task to queue here (from another node, or a retry).
    Enqueue(Task),
}

/// The part of a shard other threads may touch.
pub(crate) struct ShardRemote {
    pub(super) inbox: SegQueue<Msg>,
    pub(crate) parked: AtomicBool,
    pub(crate) notify: Notify,
    pub(crate) stealer: Stealer<Task>,
}

impl ShardRemote {
    pub(crate) fn new(stealer: Stealer<Task>) -> Self {
        ShardRemote {
            inbox: SegQueue::new(),
            parked: AtomicBool::new(false),
            notify: Notify::new(),
            stealer,
        }
    }

    pub(crate) fn send(&self, msg: Msg) {
        self.inbox.push(msg);
        self.wake();
    }

    /// Wakes the shard if it parked. Pairs with `Shard::park`: either the
    /// shard sees our message before parking, or we see `parked` set (both
    /// sides order their store and load with SeqCst fences).
    pub(crate) fn wake(&self) {
        fence(Ordering::SeqCst);
        if self.parked.load(Ordering::SeqCst) {
            self.notify.notify_one();
        }
    }

    pub(crate) fn has_mail(&self) -> bool {
        !self.inbox.is_empty()
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<Shard>>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's shard, if this is a shard thread.
pub(crate) fn with_current<R>(f: impl FnOnce(&Rc<Shard>) -> R) -> Option<R> {
    CURRENT.with(|c| c.borrow().as_ref().map(f))
}

pub(crate) fn on_shard_thread() -> bool {
    CURRENT.with(|c| c.borrow().is_some())
}

fn set_current(shard: Option<Rc<Shard>>) {
    crate::object::set_task_thread(shard.is_some());
    CURRENT.with(|c| *c.borrow_mut() = shard);
}
