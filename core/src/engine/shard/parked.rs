//! Tasks waiting for their arguments.
//!
//! A parked task is registered (as a waker) on its first unready argument
//! only. Whoever completes that argument — any shard — re-examines the task
//! on the spot: it registers on the next unready argument, or, once all are
//! ready, pushes the task onto its own ready queue. The successor of a
//! dependency thus runs where its input was just produced, and no message
//! goes back to the owner: the owner's table already holds the object.
//!
//! A task waits first until its arguments' tasks are done (`Until::Done`:
//! it can then be placed, possibly where an argument's value is), then,
//! if it stays here, until their values are here (`Until::Here`: waiting
//! demands values held on other nodes).
//!
//! Invariant: a parked task is reachable from exactly one dependency's
//! waiter list until it is released to a ready queue (or dropped, which
//! fails its object: see `Task`'s `Drop`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Wake, Waker};

use parking_lot::Mutex;

use super::{with_current, Msg};
use crate::engine::node::NodeShared;
use crate::ids::ShardId;
use crate::spec::Task;

pub(crate) struct Parked {
    task: Mutex<Option<Task>>,
    node: Arc<NodeShared>,
    owner: ShardId,
    until: Until,
}

/// What a parked task waits for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Until {
    /// Every argument's task is done.
    Done,
    /// Every argument's value is on this node.
    Here,
}

impl Parked {
    /// Parks `task` (whose arguments are not all ready) or, if they became
    /// ready meanwhile, hands it back.
    pub(crate) fn park(
        task: Task,
        node: &Arc<NodeShared>,
        owner: ShardId,
        until: Until,
    ) -> Option<Task> {
        node.parked.fetch_add(1, Ordering::Relaxed);
        let parked = Arc::new(Parked {
            task: Mutex::new(Some(task)),
            node: Arc::clone(node),
            owner,
            until,
        });
        parked.advance()
    }

    /// Registers on the next unready argument; returns the task if none is
    /// left (or drops it if it was cancelled meanwhile).
    fn advance(self: &Arc<Self>) -> Option<Task> {
        let waker = Waker::from(Arc::clone(self));
        let mut slot = self.task.lock();
        let task = slot.as_ref()?;
        if !task.cell.is_ready() {
            let mut pending = false;
            task.call.deps(&mut |c| {
                pending = match self.until {
                    Until::Done => c.wait_done(&waker),
                    Until::Here => c.wait(&waker),
                };
                !pending
            });
            if pending {
                return None;
            }
        }
        let task = slot.take();
        drop(slot);
        self.node.parked.fetch_sub(1, Ordering::Relaxed);
        // A cancelled task is dropped here; its object already holds the error.
        task.filter(|t| !t.cell.is_ready())
    }
}

impl Wake for Parked {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let Some(task) = self.advance() else { return };
        let until = self.until;
        let mut task = Some(task);
        with_current(|s| {
            if s.shared.serial == self.node.serial {
                s.resume(task.take().expect("not taken yet"), until);
            }
        });
        if let Some(task) = task {
            // Completed outside this node's shards: the owner runs it.
            self.node.shards[self.owner.0 as usize]
                .send(Msg::Run(Box::new(move |s| s.resume(task, until))));
        }
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        if self.task.get_mut().take().is_some() {
            self.node.parked.fetch_sub(1, Ordering::Relaxed);
        }
    }
}
