//! A submitted task: its object, its call, its options, its attempt.

use std::sync::Arc;

use super::{Call, CallOpts, FnInfo};
use crate::error::{Attempt, TaskErrorKind};
use crate::ids::NodeId;
use crate::object::cell::ObjectCell;

/// A submitted task: where its result goes, what to run, how.
pub(crate) struct Task {
    pub cell: Arc<ObjectCell>,
    pub func: &'static FnInfo,
    pub call: Box<dyn Call>,
    /// `None` for the defaults, to keep queued tasks small.
    pub opts: Option<Box<CallOpts>>,
    pub attempt: u32,
    /// Set when another node owns the task: its outcome goes back there.
    pub reply_to: Option<NodeId>,
    /// Attempts that did not succeed, oldest first (for the error after
    /// the last one).
    pub tried: Vec<Attempt>,
}

/// A task dropped without publishing a result (runtime shutdown, a queue
/// dropped with its shard) fails its object, so nobody waits forever. (A
/// task done elsewhere, kept as lineage, is dropped without harm.)
impl Drop for Task {
    fn drop(&mut self) {
        if !self.cell.is_done() {
            let id = self.cell.id();
            self.cell.complete(Err(Arc::new(crate::error::TaskError {
                kind: TaskErrorKind::Shutdown,
                task: self.name(),
                object: id,
                node: id.node,
                shard: id.shard,
                attempts: self.attempt,
                history: std::mem::take(&mut self.tried),
            })));
        }
    }
}

impl Task {
    pub fn priority(&self) -> i32 {
        self.opts.as_ref().map_or(0, |o| o.priority)
    }

    pub fn name(&self) -> String {
        match self.opts.as_ref().and_then(|o| o.name.as_ref()) {
            Some(n) => n.to_string(),
            None => self.func.name.to_string(),
        }
    }

    /// Whether an argument's task failed (the task then fails at once).
    pub fn dep_failed(&self) -> bool {
        let mut failed = false;
        self.call.deps(&mut |c| {
            failed = matches!(c.result(), Some(Err(_)));
            !failed
        });
        failed
    }

    /// Whether every argument's task is done (the value may still be on
    /// the node that made it): the task can be placed.
    pub fn deps_done(&self) -> bool {
        let mut done = true;
        self.call.deps(&mut |c| {
            done = c.is_done();
            done
        });
        done
    }

    /// Whether every argument's value is on this node: the task can run
    /// here.
    pub fn deps_here(&self) -> bool {
        let mut here = true;
        self.call.deps(&mut |c| {
            here = c.is_ready();
            here
        });
        here
    }
}
