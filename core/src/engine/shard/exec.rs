//! Running tasks: direct calls for sync fns, polled futures for async ones.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::task::{Context, Poll};

use crossbeam_deque::Steal;

use super::local::{Fut, Running, Shard};
use super::waker::TaskKey;
use crate::engine::host::HostCtx;
use crate::error::TaskErrorKind;
use crate::object::value::Stored;
use crate::spec::{Exec, Task};

/// Ready tasks run per loop turn before the inbox is looked at again.
const TASKS_PER_TURN: usize = 64;
/// Inbox messages handled per loop turn.
const MSGS_PER_TURN: usize = 256;
/// Woken root futures polled per loop turn.
const ROOTS_PER_TURN: usize = 8;
/// Tasks from other nodes taken per loop turn (the rest stay for other shards).
const INCOMING_PER_TURN: usize = 32;

pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

impl Shard {
    /// One turn of the loop: messages, woken tasks, then a batch of ready
    /// tasks. Returns whether it did anything.
    pub(super) fn turn(&self) -> bool {
        let mut did = false;
        let remote = &self.shared.shards[self.id.0 as usize];
        for _ in 0..MSGS_PER_TURN {
            let Some(msg) = remote.inbox.pop() else { break };
            self.handle(msg);
            did = true;
        }
        did |= self.take_incoming();
        did |= crate::engine::roots::Roots::run_woken(&self.shared, ROOTS_PER_TURN);
        for _ in 0..TASKS_PER_TURN {
            // A shard hosting the node's sockets ends its turn when they
            // are due a poll, however long its tasks run.
            if self.io_due() {
                break;
            }
            if self.run_woken() {
                did = true;
                continue;
            }
            let Some(task) = self.pop_ready() else { break };
            self.execute(task);
            did = true;
        }
        did
    }

    /// Queues a batch of tasks from other nodes here (see
    /// `NodeShared::incoming`); whether there was any. Taken a batch at a
    /// time, so each stays stealable in this shard's FIFO should it start a
    /// long task.
    pub(super) fn take_incoming(&self) -> bool {
        let incoming = &self.shared.incoming;
        let mut did = false;
        for _ in 0..INCOMING_PER_TURN {
            match incoming.steal() {
                Steal::Success(task) => {
                    self.enqueue(task);
                    did = true;
                }
                Steal::Retry => continue,
                Steal::Empty => break,
            }
        }
        did
    }

    /// Handles every locally woken task. Returns whether there was one.
    fn run_woken(&self) -> bool {
        let mut did = false;
        loop {
            let Some(key) = self.woken.borrow_mut().pop_front() else {
                break;
            };
            did = true;
            self.poll_running(key);
        }
        did
    }

    /// Runs one attempt of a task whose arguments are ready.
    pub(super) fn execute(&self, mut task: Task) {
        if task.cell.is_ready() {
            // Cancelled before it ran.
            return;
        }
        let prev = self.current_task.replace(Some(task.cell.clone()));
        let exec = catch_unwind(AssertUnwindSafe(|| task.call.run()));
        *self.current_task.borrow_mut() = prev;
        match exec {
            Ok(Exec::Done(result)) => self.finish(task, result),
            Ok(Exec::Future(fut)) => self.start_future(Some(task), Fut::Task(fut)),
            Err(payload) => {
                self.finish(task, Err(TaskErrorKind::Panicked(panic_message(&*payload))))
            }
        }
    }

    /// Publishes a task's result, or queues another attempt.
    fn finish(&self, mut task: Task, result: Result<Stored, TaskErrorKind>) {
        match result {
            Ok(value) => {
                task.cell.complete(Ok(value));
            }
            Err(kind)
                if crate::owner::retry::may_retry(task.opts.as_deref(), task.attempt, &kind) =>
            {
                tracing::debug!(task = %task.name(), attempt = task.attempt, error = %kind, "retrying task");
                task.tried.push(crate::error::Attempt {
                    node: self.shared.node,
                    cause: kind.to_string(),
                });
                task.attempt += 1;
                return self.push_ready(task);
            }
            Err(kind) => {
                let err = self.task_error(&task, kind);
                task.cell.complete(Err(err));
            }
        }
        self.reply(&task);
    }

    /// Fails a task that cannot run (no retry).
    pub(crate) fn fail(&self, task: Task, kind: TaskErrorKind) {
        let err = self.task_error(&task, kind);
        task.cell.complete(Err(err));
        self.reply(&task);
    }

    /// A task run for another node: its outcome goes back to the owner.
    fn reply(&self, task: &Task) {
        if let (Some(owner), Some(ctx)) = (task.reply_to, HostCtx::of(&self.shared)) {
            ctx.owner().task_done(&ctx, owner, &task.cell);
        }
    }

    /// Starts polling a future: an async task's body or a root future.
    pub(crate) fn start_future(&self, task: Option<Task>, fut: Fut) {
        let gen = self.gen();
        let key = {
            let mut running = self.running.borrow_mut();
            let entry = running.vacant_entry();
            let key = TaskKey {
                index: entry.key() as u32,
                gen,
            };
            let waker = self.waker(key);
            if let Some(t) = &task {
                // Cancel publishes into this cell: the wake makes us drop the
                // suspended future promptly instead of at its next own wake.
                t.cell.wait(&waker);
            }
            entry.insert(Running {
                gen,
                fut: Some(fut),
                task,
                waker,
            });
            key
        };
        self.poll_running(key);
    }

    fn poll_running(&self, key: TaskKey) {
        let (mut fut, waker, cell) = {
            let mut running = self.running.borrow_mut();
            let Some(r) = running
                .get_mut(key.index as usize)
                .filter(|r| r.gen == key.gen)
            else {
                return;
            };
            let cell = r.task.as_ref().map(|t| t.cell.clone());
            if cell.as_ref().is_some_and(|c| c.is_ready()) {
                // Cancelled while suspended: drop the future (and with it the
                // refs it holds) without polling it again.
                let r = running.remove(key.index as usize);
                drop(running);
                drop(r);
                return;
            }
            let Some(fut) = r.fut.take() else { return };
            (fut, r.waker.clone(), cell)
        };
        let mut cx = Context::from_waker(&waker);
        let prev = self.current_task.replace(cell);
        let polled = catch_unwind(AssertUnwindSafe(|| match &mut fut {
            Fut::Task(f) => f.as_mut().poll(&mut cx),
        }));
        *self.current_task.borrow_mut() = prev;
        let outcome = match polled {
            Ok(Poll::Pending) => {
                if let Some(r) = self.running.borrow_mut().get_mut(key.index as usize) {
                    r.fut = Some(fut);
                }
                return;
            }
            Ok(Poll::Ready(out)) => out,
            Err(payload) => Err(TaskErrorKind::Panicked(panic_message(&*payload))),
        };
        drop(fut);
        let r = self.running.borrow_mut().remove(key.index as usize);
        if let Some(task) = r.task {
            self.finish(task, outcome);
        }
    }
}
