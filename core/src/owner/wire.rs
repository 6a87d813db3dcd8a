//! Conversions between owl's types and the transport's wire types.

use std::sync::Arc;

use owl_proto::{WireAttempt, WireError, WireId, WireValue};

use super::{NodeCtx, Owner};
use crate::error::{Attempt, TaskError, TaskErrorKind};
use crate::ids::{NodeId, ObjectId, ShardId};
use crate::object::objref::RawRef;
use crate::object::value::Stored;

pub(crate) fn id(w: &WireId) -> ObjectId {
    ObjectId::from(*w)
}

pub(crate) fn wire_id(id: ObjectId) -> WireId {
    WireId::from(id)
}

const PANICKED: u8 = 0;
const FAILED: u8 = 1;
const CANCELLED: u8 = 2;
const SHUTDOWN: u8 = 3;
const DEPENDENCY: u8 = 4;
const STORE: u8 = 5;
const WORKER_DIED: u8 = 6;
const OWNER_DIED: u8 = 7;
const UNPLACEABLE: u8 = 8;
const LINEAGE_EVICTED: u8 = 9;

/// Causes a task error keeps on the wire. A chain of failed dependencies
/// is as deep as the chain of tasks, and the frame decoder refuses nesting
/// past `proto::MAX_DEPTH` (512) to protect its stack, so a longer chain
/// would close the connection. The outermost causes and the root cause
/// (what actually failed) are kept; the ones between are dropped.
const WIRE_CAUSES: usize = 64;

pub(crate) fn wire_error(e: &TaskError) -> WireError {
    // Outermost first, walked without recursion: a chain can be thousands
    // deep.
    let mut chain: Vec<&TaskError> = vec![e];
    while let TaskErrorKind::DependencyFailed(c) = &chain[chain.len() - 1].kind {
        chain.push(c);
    }
    if chain.len() > WIRE_CAUSES {
        let root = chain[chain.len() - 1];
        chain.truncate(WIRE_CAUSES - 1);
        chain.push(root);
    }
    let mut wired: Option<WireError> = None;
    for e in chain.into_iter().rev() {
        let (kind, message) = match &e.kind {
            TaskErrorKind::Panicked(m) => (PANICKED, m.clone()),
            TaskErrorKind::Failed(m) => (FAILED, m.clone()),
            TaskErrorKind::Cancelled => (CANCELLED, String::new()),
            TaskErrorKind::Shutdown => (SHUTDOWN, String::new()),
            TaskErrorKind::DependencyFailed(_) => (DEPENDENCY, String::new()),
            TaskErrorKind::Store(m) => (STORE, m.clone()),
            TaskErrorKind::WorkerDied(n) => (WORKER_DIED, n.0.to_string()),
            TaskErrorKind::OwnerDied(n) => (OWNER_DIED, n.0.to_string()),
            TaskErrorKind::Unplaceable(m) => (UNPLACEABLE, m.clone()),
            TaskErrorKind::LineageEvicted(n) => (LINEAGE_EVICTED, n.0.to_string()),
        };
        wired = Some(WireError {
            kind,
            message,
            task: e.task.clone(),
            node: e.node.0,
            shard: e.shard.0,
            attempts: e.attempts,
            history: e
                .history
                .iter()
                .map(|a| WireAttempt {
                    node: a.node.0,
                    cause: a.cause.clone(),
                })
                .collect(),
            // Only a dependency failure carries what failed under it.
            cause: wired.take().filter(|_| kind == DEPENDENCY).map(Box::new),
        });
    }
    wired.expect("the chain holds at least the error itself")
}

/// The error a peer reported for `object` (causes keep the same object id:
/// the wire does not carry theirs).
pub(crate) fn task_error(object: ObjectId, w: WireError) -> Arc<TaskError> {
    let node_in = |m: &str| NodeId(m.parse().unwrap_or(w.node));
    let kind = match w.kind {
        PANICKED => TaskErrorKind::Panicked(w.message),
        FAILED => TaskErrorKind::Failed(w.message),
        CANCELLED => TaskErrorKind::Cancelled,
        SHUTDOWN => TaskErrorKind::Shutdown,
        DEPENDENCY => match w.cause {
            Some(c) => TaskErrorKind::DependencyFailed(task_error(object, *c)),
            None => TaskErrorKind::Store("a dependency failed (no cause sent)".into()),
        },
        STORE => TaskErrorKind::Store(w.message),
        WORKER_DIED => TaskErrorKind::WorkerDied(node_in(&w.message)),
        OWNER_DIED => TaskErrorKind::OwnerDied(node_in(&w.message)),
        UNPLACEABLE => TaskErrorKind::Unplaceable(w.message),
        LINEAGE_EVICTED => TaskErrorKind::LineageEvicted(node_in(&w.message)),
        other => TaskErrorKind::Store(format!(
            "a peer sent an error of unknown kind {other}: {}",
            w.message
        )),
    };
    Arc::new(TaskError {
        kind,
        task: w.task,
        object,
        node: NodeId(w.node),
        shard: ShardId(w.shard),
        attempts: w.attempts,
        history: w
            .history
            .into_iter()
            .map(|a| Attempt {
                node: NodeId(a.node),
                cause: a.cause,
            })
            .collect(),
    })
}

impl Owner {
    /// A stored value as it goes to `to`: its bytes, and its refs registered.
    pub(super) fn ship_value(&self, ctx: &impl NodeCtx, to: NodeId, stored: &Stored) -> WireValue {
        WireValue {
            bytes: stored.bytes().to_vec(),
            refs: stored
                .contained()
                .iter()
                .map(|r| self.refs.ship(ctx, to, r))
                .collect(),
        }
    }

    /// Handles for refs that arrived from `from` (inside a value, or with
    /// a header), in order.
    pub(super) fn resolve_all(
        &self,
        ctx: &impl NodeCtx,
        refs: &[WireId],
        from: NodeId,
    ) -> Vec<RawRef> {
        refs.iter()
            .map(|w| self.refs.resolve(ctx, id(w), from))
            .collect()
    }

    /// A value that arrived: its refs resolved here, its bytes copied into
    /// aligned memory (the arena for large ones).
    pub(super) fn receive_value(
        &self,
        ctx: &impl NodeCtx,
        from: NodeId,
        v: WireValue,
    ) -> Result<Stored, TaskErrorKind> {
        let contained = self.resolve_all(ctx, &v.refs, from);
        Stored::from_bytes(&v.bytes, contained, ctx.arena(), ctx.inline_max())
            .map_err(|e| TaskErrorKind::Store(format!("received value: {e}")))
    }

    pub(super) fn receive_outcome(
        &self,
        ctx: &impl NodeCtx,
        from: NodeId,
        object: ObjectId,
        outcome: Result<WireValue, WireError>,
    ) -> Result<Stored, Arc<TaskError>> {
        match outcome {
            Ok(v) => self.receive_value(ctx, from, v).map_err(|kind| {
                Arc::new(TaskError {
                    kind,
                    task: object.to_string(),
                    object,
                    node: self.me,
                    shard: object.shard,
                    attempts: 0,
                    history: Vec::new(),
                })
            }),
            Err(e) => Err(task_error(object, e)),
        }
    }
}
