//! What placement (`sched::place`) knows of the cluster, answered from this
//! node's membership, `NodeInfo` and heartbeat view; and the view of a node
//! outside any cluster.

use super::Net;
use crate::ids::NodeId;
use crate::sched::place::ClusterView;

impl ClusterView for Net {
    fn me(&self) -> NodeId {
        self.me
    }

    fn nodes(&self) -> u32 {
        Net::nodes(self)
    }

    fn live(&self, node: NodeId) -> bool {
        self.reachable(node) && !self.is_dead(node)
    }

    fn runs(&self, node: NodeId, func: u64) -> Option<bool> {
        Net::runs(self, node, func)
    }

    fn has_label(&self, node: NodeId, label: &str) -> bool {
        self.info
            .read()
            .get(node.0 as usize)
            .and_then(Option::as_ref)
            .is_some_and(|i| i.labels.iter().any(|l| l == label))
    }

    fn labels(&self, node: NodeId) -> Vec<String> {
        self.info
            .read()
            .get(node.0 as usize)
            .and_then(Option::as_ref)
            .map(|i| i.labels.clone())
            .unwrap_or_default()
    }

    fn has_room(&self, node: NodeId) -> bool {
        self.load.has_room(node)
    }
}

/// A node outside any cluster: everything runs here.
pub(crate) struct Alone<'a> {
    pub me: NodeId,
    pub labels: &'a [String],
}

impl ClusterView for Alone<'_> {
    fn me(&self) -> NodeId {
        self.me
    }
    fn nodes(&self) -> u32 {
        self.me.0 + 1
    }
    fn live(&self, node: NodeId) -> bool {
        node == self.me
    }
    fn runs(&self, node: NodeId, _func: u64) -> Option<bool> {
        Some(node == self.me)
    }
    fn has_label(&self, node: NodeId, label: &str) -> bool {
        node == self.me && self.labels.iter().any(|l| l == label)
    }
    fn labels(&self, node: NodeId) -> Vec<String> {
        if node == self.me {
            self.labels.to_vec()
        } else {
            Vec::new()
        }
    }
    fn has_room(&self, _node: NodeId) -> bool {
        false
    }
}
