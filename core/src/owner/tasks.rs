//! Tasks placed on other nodes: the owner sends the call and keeps the
//! task (for its arguments' lifetime and for retries); the executor runs it
//! and sends the outcome back; a dead executor's tasks are retried or failed.

use std::sync::Arc;

use owl_proto::{OwlMsg, SharedBlock, WireArg, WireError, WireId, WireValue};

use super::{wire, NodeCtx, Owner};
use crate::error::{TaskError, TaskErrorKind};
use crate::ids::{NodeId, ObjectId};
use crate::object::cell::ObjectCell;
use crate::spec::{ArgIn, ArgOut, CallOpts, Task, Wiring};

/// Values of ref arguments up to this size travel with the call; larger
/// ones are pulled by the executor from where they are.
const INLINE_REF_ARG: usize = super::located::HOLD_ABOVE;

/// What a task spec weighs as lineage besides its arguments (the task,
/// its cell and options).
const SPEC_BASE: usize = 256;

/// A task owned here, running elsewhere.
pub(crate) struct RemoteTask {
    pub task: Task,
    pub node: NodeId,
    /// What its spec weighs as lineage (its archived arguments, roughly).
    pub spec_bytes: usize,
}

pub(crate) struct SubmitOpts {
    pub name: Option<String>,
    pub priority: i32,
    pub max_retries: u32,
    pub retry_on_error: bool,
}

impl Owner {
    /// Sends a ready task to `target`. On failure the task comes back with
    /// the reason, to be failed by the caller.
    pub(crate) fn dispatch(
        &self,
        ctx: &impl NodeCtx,
        mut task: Task,
        target: NodeId,
    ) -> Result<(), (Task, TaskErrorKind)> {
        if target.0 >= ctx.nodes() {
            let why = format!(
                "node {target} does not exist (the cluster has {} nodes)",
                ctx.nodes()
            );
            return Err((task, TaskErrorKind::Unplaceable(why)));
        }
        if ctx.is_dead(target) {
            return Err((task, TaskErrorKind::WorkerDied(target)));
        }
        if ctx.runs(target, task.func.id.0) == Some(false) {
            let why = format!(
                "node {target} does not run `{}` (it runs a different program)",
                task.func.name
            );
            return Err((task, TaskErrorKind::Unplaceable(why)));
        }
        let mut args = Vec::new();
        let mut put = |value| ctx.put(value);
        let mut wiring = Wiring {
            arena: ctx.arena(),
            inline_max: ctx.inline_max(),
            // A call's values inline up to one chunk in all (well inside a
            // message); the others go as objects, pulled in chunks.
            inline_budget: self.chunk,
            put: &mut put,
        };
        let wired = task.call.wire(&mut wiring, &mut |a| {
            args.push(self.ship_arg(ctx, target, a))
        });
        if let Err(e) = wired {
            return Err((task, TaskErrorKind::Store(e.to_string())));
        }
        let spec_bytes = SPEC_BASE
            + args
                .iter()
                .map(|a| match a {
                    WireArg::Value(v) => v.bytes.len() + v.refs.len() * 16,
                    WireArg::Ref(_) => 16,
                    WireArg::Gather(ws) => ws.len() * 16,
                })
                .sum::<usize>();
        let opts = task.opts.as_deref();
        let msg = OwlMsg::Submit {
            object: wire::wire_id(task.cell.id()),
            func: task.func.id.0,
            name: opts.and_then(|o| o.name.as_deref()).map(str::to_string),
            priority: opts.map_or(0, |o| o.priority),
            max_retries: opts.map_or(0, |o| o.max_retries),
            retry_on_error: opts.is_some_and(|o| o.retry_on_error),
            args,
        };
        let id = task.cell.id();
        self.remote.lock().insert(
            id,
            RemoteTask {
                task,
                node: target,
                spec_bytes,
            },
        );
        ctx.send(target, msg);
        self.recheck_gone(ctx, target);
        Ok(())
    }

    fn ship_arg(&self, ctx: &impl NodeCtx, to: NodeId, arg: ArgOut<'_>) -> WireArg {
        match arg {
            ArgOut::Value(stored) => WireArg::Value(self.ship_value(ctx, to, stored)),
            ArgOut::Ref(r) => match r.cell().result() {
                Some(Ok(stored)) if stored.bytes().len() <= INLINE_REF_ARG => {
                    WireArg::Value(self.ship_value(ctx, to, stored))
                }
                _ => WireArg::Ref(self.refs.ship(ctx, to, r)),
            },
        }
    }

    /// A call from `from` to run here: rebuilt, then queued on a shard. Its
    /// outcome goes back when it finishes (`task_done`).
    pub(super) fn on_submit(
        &self,
        ctx: &impl NodeCtx,
        from: NodeId,
        object: ObjectId,
        func: u64,
        opts: SubmitOpts,
        args: Vec<WireArg>,
    ) {
        let mut ins = Vec::with_capacity(args.len());
        let mut bad = None;
        for a in args {
            match a {
                WireArg::Value(v) => match self.receive_value(ctx, from, v) {
                    Ok(s) => ins.push(ArgIn::Value(s)),
                    Err(kind) => bad = Some(kind),
                },
                WireArg::Ref(w) => ins.push(ArgIn::Ref(self.refs.resolve(ctx, wire::id(&w), from))),
                WireArg::Gather(ws) => {
                    // Never sent by owl (gathers travel as one value); still
                    // resolve them so their registrations are returned.
                    drop(self.resolve_all(ctx, &ws, from));
                    bad = Some(TaskErrorKind::Store("unexpected gathered argument".into()));
                }
            }
        }
        let cell = Arc::new(ObjectCell::new(object, self.refs.serial(), 0));
        let name = opts.name.clone().unwrap_or_else(|| format!("f{func:x}"));
        let fail = |kind: TaskErrorKind| {
            let err = TaskError {
                kind,
                task: name.clone(),
                object,
                node: self.me,
                shard: object.shard,
                attempts: 1,
                history: Vec::new(),
            };
            ctx.send(
                from,
                OwlMsg::TaskDone {
                    object: wire::wire_id(object),
                    outcome: Err(wire::wire_error(&err)),
                },
            );
        };
        if let Some(kind) = bad {
            return fail(kind);
        }
        let Some(&info) = self.fns.get(&func) else {
            return fail(TaskErrorKind::Unplaceable(format!(
                "function {func:#x} is not registered on {}: every node must run the same binary",
                self.me
            )));
        };
        let call = match (info.decode)(ins) {
            Ok(call) => call,
            Err(why) => return fail(TaskErrorKind::Unplaceable(format!("{}: {why}", info.name))),
        };
        let defaults = CallOpts {
            name: opts.name.map(Into::into),
            priority: opts.priority,
            max_retries: opts.max_retries,
            retry_on_error: opts.retry_on_error,
            ..CallOpts::default()
        };
        self.executing.lock().insert(object, Arc::downgrade(&cell));
        let task = Task {
            cell,
            func: info,
            call,
            opts: (defaults != CallOpts::default()).then(|| Box::new(defaults)),
            attempt: 0,
            reply_to: Some(from),
            tried: Vec::new(),
        };
        ctx.enqueue(None, task);
    }

    /// A task run here for another node finished: send its outcome back.
    pub(crate) fn task_done(&self, ctx: &impl NodeCtx, owner: NodeId, cell: &Arc<ObjectCell>) {
        self.executing.lock().remove(&cell.id());
        let outcome: Result<WireValue, WireError> = match cell.result() {
            // Large: the value stays here (readers pull it from here) until
            // the owner says `Release`.
            Some(Ok(stored)) if stored.bytes().len() > self.hold_above() => {
                let msg = OwlMsg::TaskHeld {
                    object: wire::wire_id(cell.id()),
                    len: stored.bytes().len() as u64,
                    refs: stored
                        .contained()
                        .iter()
                        .map(|r| self.refs.ship(ctx, owner, r))
                        .collect(),
                    shared: ctx.share(stored),
                };
                self.held.lock().insert(cell.id(), Arc::clone(cell));
                return ctx.send(owner, msg);
            }
            Some(Ok(stored)) => Ok(self.ship_value(ctx, owner, stored)),
            Some(Err(e)) => Err(wire::wire_error(e)),
            None => return,
        };
        ctx.send(
            owner,
            OwlMsg::TaskDone {
                object: wire::wire_id(cell.id()),
                outcome,
            },
        );
    }

    pub(super) fn on_task_done(
        &self,
        ctx: &impl NodeCtx,
        from: NodeId,
        object: ObjectId,
        outcome: Result<WireValue, WireError>,
    ) {
        let outcome = self.receive_outcome(ctx, from, object, outcome);
        let remote = self.remote.lock().remove(&object);
        match remote {
            Some(r) if r.node == from => {
                // Attempts lost with dead executors before this one come
                // first in the error's history.
                let outcome = match outcome {
                    Err(e) if !r.task.tried.is_empty() => {
                        let mut e = (*e).clone();
                        let mut history = r.task.tried.clone();
                        history.append(&mut e.history);
                        e.attempts += r.task.tried.len() as u32;
                        e.history = history;
                        Err(Arc::new(e))
                    }
                    other => other,
                };
                r.task.cell.complete(outcome);
            }
            Some(r) => {
                // An answer from a node the task no longer runs on: keep waiting.
                self.remote.lock().insert(object, r);
            }
            None => {}
        }
    }

    /// The executor `from` holds the task's result (`TaskHeld`): the
    /// object is done, its value stays there (see `located`).
    pub(super) fn on_task_held(
        &self,
        ctx: &impl NodeCtx,
        from: NodeId,
        object: ObjectId,
        len: u64,
        refs: Vec<WireId>,
        shared: Option<SharedBlock>,
    ) {
        let contained = self.resolve_all(ctx, &refs, from);
        self.located(ctx, from, object, len, contained, shared);
    }

    /// The owner has a result this node held for it (or gave up on it).
    pub(super) fn on_release(&self, object: ObjectId) {
        self.cached.lock().remove(&object);
        let cell = self.held.lock().remove(&object);
        // Dropped outside the lock: the value's refs may end handle groups.
        drop(cell);
    }

    /// The owner cancelled a task running here: cancel it (and what it
    /// submitted) as a local cancel would.
    pub(super) fn on_cancel(&self, ctx: &impl NodeCtx, object: ObjectId) {
        let cell = self
            .executing
            .lock()
            .remove(&object)
            .and_then(|c| c.upgrade());
        if let Some(cell) = cell {
            let me = self.me;
            cell.cancel(&|c: &ObjectCell| {
                Arc::new(TaskError {
                    kind: TaskErrorKind::Cancelled,
                    task: c.id().to_string(),
                    object: c.id(),
                    node: me,
                    shard: c.id().shard,
                    attempts: 0,
                    history: Vec::new(),
                })
            });
            ctx.wake_shards();
        }
    }

    /// The node a task owned here runs on, while it runs elsewhere.
    #[cfg(test)]
    pub(crate) fn remote_node(&self, id: ObjectId) -> Option<NodeId> {
        self.remote.lock().get(&id).map(|r| r.node)
    }

    /// After a local cancel: tasks of ours running elsewhere whose cells it
    /// completed are forgotten here (their arguments released) and
    /// cancelled on their nodes.
    pub(crate) fn cancel_remote(&self, ctx: &impl NodeCtx) {
        let cancelled: Vec<RemoteTask> = {
            let mut remote = self.remote.lock();
            let mut ids: Vec<ObjectId> = remote
                .iter()
                .filter(|(_, r)| r.task.cell.is_ready())
                .map(|(id, _)| *id)
                .collect();
            ids.sort_unstable();
            ids.iter().filter_map(|id| remote.remove(id)).collect()
        };
        for r in cancelled {
            ctx.send(
                r.node,
                OwlMsg::Cancel {
                    object: wire::wire_id(r.task.cell.id()),
                },
            );
        }
    }

    /// `dead` is gone: the tasks it ran for us are retried on this node
    /// (which is alive) within their retry budget, or failed.
    pub(super) fn tasks_lost(&self, ctx: &impl NodeCtx, dead: NodeId) {
        let lost: Vec<RemoteTask> = {
            let mut remote = self.remote.lock();
            let mut ids: Vec<ObjectId> = remote
                .iter()
                .filter(|(_, r)| r.node == dead)
                .map(|(id, _)| *id)
                .collect();
            // In id order, so that a replayed run retries in the same order.
            ids.sort_unstable();
            ids.iter().filter_map(|id| remote.remove(id)).collect()
        };
        for RemoteTask { task, .. } in lost {
            let cause = TaskErrorKind::WorkerDied(dead).to_string();
            self.retry_or_fail(ctx, task, dead, cause);
        }
    }

    /// Fate-sharing: what runs here for the dead owner `dead` is cancelled
    /// (its result has nowhere to go).
    pub(super) fn orphans_cancelled(&self, ctx: &impl NodeCtx, dead: NodeId) {
        let mut orphans: Vec<ObjectId> = self
            .executing
            .lock()
            .keys()
            .filter(|id| id.node == dead)
            .copied()
            .collect();
        orphans.sort_unstable();
        for id in orphans {
            self.on_cancel(ctx, id);
        }
        self.cached.lock().retain(|id| id.node != dead);
        let held: Vec<Arc<ObjectCell>> = {
            let mut held = self.held.lock();
            let mut ids: Vec<ObjectId> =
                held.keys().filter(|id| id.node == dead).copied().collect();
            ids.sort_unstable();
            ids.iter().filter_map(|id| held.remove(id)).collect()
        };
        drop(held);
    }
}
