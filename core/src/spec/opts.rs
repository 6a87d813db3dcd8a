//! Per-call options: priority, name, retries, placement.

use std::sync::Arc;

use crate::ids::NodeId;

/// Per-call options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallOpts {
    /// Higher runs first within a shard; equal priorities run in submission order.
    pub priority: i32,
    /// Shown in errors and reports instead of the function's name.
    pub name: Option<Arc<str>>,
    /// Extra attempts after a failure the retry policy covers.
    pub max_retries: u32,
    /// Also retry when the function panics or returns `Err` (application
    /// errors); by default only system failures are retried.
    pub retry_on_error: bool,
    /// Run on this node (placement); `None` lets the scheduler choose.
    pub node: Option<NodeId>,
    /// Run on a node with this label (round-robin among them).
    pub label: Option<Arc<str>>,
    /// Spread calls round-robin over every live node.
    pub spread: bool,
    /// Copies of a result held on other nodes to keep (0 or 1: only where
    /// it was made).
    pub replicas: u8,
}

impl CallOpts {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    pub fn retry_on_error(mut self, yes: bool) -> Self {
        self.retry_on_error = yes;
        self
    }

    /// Places the task on `node`. If that node dies before answering, the
    /// task is retried elsewhere within `max_retries` (system failure).
    pub fn node(mut self, node: NodeId) -> Self {
        self.node = Some(node);
        self
    }

    /// Places the task on a node labelled `label` (`Builder::labels`,
    /// `OWL_LABELS`); fails at once with `Unplaceable` if no live node has it.
    pub fn label(mut self, label: impl Into<Arc<str>>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Spreads calls round-robin over every live node of the cluster.
    pub fn spread(mut self) -> Self {
        self.spread = true;
        self
    }

    /// Keeps `k` copies of the result on distinct nodes when it is large
    /// enough to stay where it was made (above 64 KiB; smaller results
    /// live with the owner). While at least one copy lives, a node's death
    /// costs no re-execution, and lost copies are made again from a
    /// surviving one. A copy counts once its node has acknowledged it.
    pub fn replicas(mut self, k: u8) -> Self {
        self.replicas = k;
        self
    }

    /// Whether an application error (panic or `Err`) gets another attempt.
    pub(crate) fn retries_app_errors(&self) -> bool {
        self.retry_on_error && self.max_retries > 0
    }
}
