//! Errors, one enum per operation. Each says what failed and what to do.

use std::sync::Arc;
use std::time::Duration;

use crate::ids::{NodeId, ObjectId, ShardId};

/// Why a task produced no value. Stored as the task's result, so every `get`
/// of its object (and of anything depending on it) sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskErrorKind {
    /// The function panicked; the payload's message.
    Panicked(String),
    /// The function returned `Err`; the error's message.
    Failed(String),
    /// `cancel` was called on it or on an ancestor.
    Cancelled,
    /// The runtime shut down before the task finished.
    Shutdown,
    /// An argument's task failed, so this one never ran.
    DependencyFailed(Arc<TaskError>),
    /// Its result (or an argument) could not be stored.
    Store(String),
    /// The node running it died (or left) and no retry was left.
    WorkerDied(NodeId),
    /// The node that owns the object died: its objects fate-share with it.
    OwnerDied(NodeId),
    /// No node can run it (an unknown node was asked for, or the function
    /// is not in the receiving node's binary).
    Unplaceable(String),
    /// Its value was lost with the node that held it, and the task that
    /// made it had been evicted from the lineage budget, so it cannot be
    /// rebuilt.
    LineageEvicted(NodeId),
}

impl std::fmt::Display for TaskErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TaskErrorKind::Panicked(m) => write!(f, "panicked: {m}"),
            TaskErrorKind::Failed(m) => write!(f, "returned an error: {m}"),
            TaskErrorKind::Cancelled => f.write_str("was cancelled"),
            TaskErrorKind::Shutdown => f.write_str("was dropped because the runtime shut down"),
            TaskErrorKind::DependencyFailed(e) => {
                write!(f, "did not run because an argument failed: {e}")
            }
            TaskErrorKind::Store(m) => write!(f, "could not store a value: {m}"),
            TaskErrorKind::WorkerDied(n) => write!(
                f,
                "was lost because {n}, which ran it, died; raise max_retries to retry it elsewhere"
            ),
            TaskErrorKind::OwnerDied(n) => write!(
                f,
                "is lost because its owner {n} died (objects fate-share with their owner)"
            ),
            TaskErrorKind::Unplaceable(m) => write!(f, "cannot be placed: {m}"),
            TaskErrorKind::LineageEvicted(n) => write!(
                f,
                "was lost with {n}, which held its value, and cannot be rebuilt: its task was \
                 evicted from the lineage kept for rebuilding (OWL_LINEAGE_BYTES); raise it, or \
                 keep fewer large results alive at once"
            ),
        }
    }
}

/// A failed task: what went wrong, which task, where, after how many tries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "task `{task}` ({object}) on {node}/{shard} {kind} (attempts: {attempts}){}",
    Attempt::list(history)
)]
pub struct TaskError {
    pub kind: TaskErrorKind,
    /// The call's name option, or the function's name.
    pub task: String,
    pub object: ObjectId,
    pub node: NodeId,
    /// The shard that ran (or dropped) the task.
    pub shard: ShardId,
    pub attempts: u32,
    /// The attempts before the last one (whose node and cause are above),
    /// oldest first: where each ran and why it did not succeed.
    pub history: Vec<Attempt>,
}

/// An attempt of a task that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub node: NodeId,
    /// What went wrong, as the error said it.
    pub cause: String,
}

impl Attempt {
    fn list(history: &[Attempt]) -> String {
        if history.is_empty() {
            return String::new();
        }
        let each: Vec<String> = history
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{}. on {}: {}", i + 1, a.node, a.cause))
            .collect();
        format!("; earlier attempts: {}", each.join("; "))
    }
}

/// Errors from `get`, `get_blocking` and `get_timeout`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GetError {
    /// The task that produces the object failed.
    #[error(transparent)]
    Task(Arc<TaskError>),
    /// The task was cancelled before it produced a value.
    #[error("{object} (task `{task}`) was cancelled")]
    Cancelled { object: ObjectId, task: String },
    /// The object was not ready within the caller's timeout; it is still pending.
    #[error(
        "{object} was not ready within {after:?}; it is still pending, wait longer or cancel it"
    )]
    Timeout { object: ObjectId, after: Duration },
    /// `get_blocking` on a shard thread would stop that shard; await `get` instead.
    #[error("get_blocking of {object} was called inside an owl task, which would block its shard; use `.get().await` there")]
    BlockingInTask { object: ObjectId },
    /// The value could not be turned into the requested type.
    #[error("{object} could not be deserialized: {message}")]
    Deserialize { object: ObjectId, message: String },
}

impl GetError {
    pub(crate) fn from_task(err: &Arc<TaskError>) -> GetError {
        match err.kind {
            TaskErrorKind::Cancelled => GetError::Cancelled {
                object: err.object,
                task: err.task.clone(),
            },
            _ => GetError::Task(Arc::clone(err)),
        }
    }
}

/// Errors from `put`.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    /// The node's object store has no room for the value.
    #[error(transparent)]
    StoreFull(#[from] owl_store::ArenaError),
    /// The value could not be archived.
    #[error("value could not be serialized: {0}")]
    Serialize(String),
    /// The runtime has shut down.
    #[error("the owl runtime has shut down")]
    Shutdown,
}

/// Errors from submitting a task.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The runtime has shut down.
    #[error("the owl runtime has shut down; no task can be submitted")]
    Shutdown,
    /// An argument passed by value had to be stored (retries need it again) and could not be.
    #[error("argument of `{task}` could not be stored: {source}")]
    Arg {
        task: String,
        #[source]
        source: PutError,
    },
}

/// Errors from starting a runtime: each names the setting to change.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("shard count is 0; set at least 1 shard (Builder::shards or OWL_SHARDS)")]
    ZeroShards,
    #[error("{var}={value:?} is not valid: {why}")]
    Env {
        var: &'static str,
        value: String,
        why: String,
    },
    #[error(transparent)]
    Store(#[from] owl_store::ArenaError),
    #[error("io_uring was asked for (OWL_EVENT_LOOP=uring) but the kernel refused to set it up; use OWL_EVENT_LOOP=tokio or leave it unset to fall back automatically")]
    IoUringUnavailable,
    #[error("two remote functions share the id {id:#x}: `{a}` and `{b}`; rename one of them")]
    DuplicateFunctionId {
        id: u64,
        a: &'static str,
        b: &'static str,
    },
    #[error("could not find this node's place in the cluster: {0}")]
    Launch(String),
    #[error("could not join the cluster: {0}")]
    Mesh(#[from] owl_transport::MeshError),
    #[error("could not start shard thread {shard}: {source}")]
    Thread {
        shard: u16,
        #[source]
        source: std::io::Error,
    },
}

/// Any owl error, for `owl::Result` in programs and examples.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Submit(#[from] SubmitError),
    #[error(transparent)]
    Put(#[from] PutError),
    #[error(transparent)]
    Get(#[from] GetError),
    /// A worker node lost its head (node 0) without a clean shutdown.
    #[error("the head node (n0) died or became unreachable; this worker stops")]
    HeadLost,
    /// This node did not run for longer than `dead_after` (stopped, paused
    /// or starved), so the cluster declared it dead and went on without
    /// it. Not a failure of the run: `#[owl::main]` exits with status 0.
    #[error("this node did not run for {unresponsive:?}, longer than dead_after: the cluster declared it dead and went on without it; this node leaves")]
    DeclaredDead { unresponsive: std::time::Duration },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
