//! Placement: where a ready task runs, as a pure function of what the task
//! asks for and what this node knows of the cluster.
//!
//! In order: a node asked for by id; a live node carrying the label asked
//! for that runs the function (round-robin among them, this node
//! included); the next live node that runs the function (`spread`,
//! round-robin over the cluster, this node included); otherwise here,
//! unless this node is busy (a backlog and no idle shard), when a peer
//! that runs the function and reported room takes it (spillback).
//! A label no live node has is an error naming every node's labels.

use crate::ids::NodeId;

/// What a ready task asks of placement.
#[derive(Debug, Clone, Copy)]
pub struct Want<'a> {
    /// The task's function id: only nodes that run it are chosen.
    pub func: u64,
    pub node: Option<NodeId>,
    pub label: Option<&'a str>,
    pub spread: bool,
}

/// What placement knows of the cluster. The engine answers from its
/// membership and heartbeat view; tests from a table.
pub trait ClusterView {
    /// This node.
    fn me(&self) -> NodeId;
    /// Nodes known: ids `0..nodes()`.
    fn nodes(&self) -> u32;
    /// Reachable and not known gone.
    fn live(&self, node: NodeId) -> bool;
    /// Whether `node` runs function `func`; `None` while unknown.
    fn runs(&self, node: NodeId, func: u64) -> Option<bool>;
    /// Whether `node` carries `label` (false while unknown).
    fn has_label(&self, node: NodeId, label: &str) -> bool;
    /// `node`'s labels, for error messages (empty while unknown).
    fn labels(&self, node: NodeId) -> Vec<String>;
    /// Whether `node`'s last reported load leaves room for spillback.
    fn has_room(&self, node: NodeId) -> bool;
}

/// Where a task goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    Here,
    On(NodeId),
}

/// Places a task. `turn` gives the round-robin position (the caller's
/// counter, advanced on every call); `busy` says whether this node should
/// shed new work (spillback). Both are asked only when the rules need them,
/// so a task asking for a node reads neither.
pub fn place(
    want: Want<'_>,
    view: &impl ClusterView,
    turn: impl FnOnce() -> usize,
    busy: impl FnOnce() -> bool,
) -> Result<Placement, String> {
    let me = view.me();
    let at = |n: NodeId| {
        if n == me {
            Placement::Here
        } else {
            Placement::On(n)
        }
    };
    if let Some(n) = want.node {
        return Ok(at(n));
    }
    let nodes = view.nodes().max(me.0 + 1);
    let all = || (0..nodes).map(NodeId);
    let usable = |n: NodeId| n == me || (view.live(n) && view.runs(n, want.func) == Some(true));
    if let Some(label) = want.label {
        let with: Vec<NodeId> = all()
            .filter(|&n| view.has_label(n, label) && usable(n))
            .collect();
        if with.is_empty() {
            return Err(no_label(label, want.func, view));
        }
        return Ok(at(with[turn() % with.len()]));
    }
    if want.spread {
        let (n, turn) = (nodes as usize, turn());
        return Ok((0..n)
            .map(|i| NodeId(((turn + i) % n) as u32))
            .find(|&c| usable(c))
            .map_or(Placement::Here, at));
    }
    if nodes > 1 && busy() {
        let (n, turn) = (nodes as usize, turn());
        if let Some(peer) = (0..n)
            .map(|i| NodeId(((turn + i) % n) as u32))
            .find(|&c| c != me && usable(c) && view.has_room(c))
        {
            return Ok(Placement::On(peer));
        }
    }
    Ok(Placement::Here)
}

fn no_label(label: &str, func: u64, view: &impl ClusterView) -> String {
    let known: Vec<String> = (0..view.nodes().max(view.me().0 + 1))
        .map(NodeId)
        .filter(|&n| n == view.me() || view.live(n))
        .map(|n| {
            let runs = if n == view.me() || view.runs(n, func) == Some(true) {
                ""
            } else {
                " (does not run it)"
            };
            format!("{n}: {:?}{runs}", view.labels(n))
        })
        .collect();
    format!(
        "no live node has label `{label}` and runs this function ({})",
        known.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One node as the view sees it: live, runs function 7 (unknown:
    /// `None`), labels (unknown: `None`), room for spillback.
    type Node = (bool, Option<bool>, Option<Vec<String>>, bool);

    /// A cluster as a table.
    struct Table {
        me: u32,
        nodes: Vec<Node>,
    }

    impl ClusterView for Table {
        fn me(&self) -> NodeId {
            NodeId(self.me)
        }
        fn nodes(&self) -> u32 {
            self.nodes.len() as u32
        }
        fn live(&self, n: NodeId) -> bool {
            self.nodes[n.0 as usize].0
        }
        fn runs(&self, n: NodeId, func: u64) -> Option<bool> {
            self.nodes[n.0 as usize].1.map(|r| r && func == 7)
        }
        fn has_label(&self, n: NodeId, label: &str) -> bool {
            self.nodes[n.0 as usize]
                .2
                .as_ref()
                .is_some_and(|l| l.iter().any(|x| x == label))
        }
        fn labels(&self, n: NodeId) -> Vec<String> {
            self.nodes[n.0 as usize].2.clone().unwrap_or_default()
        }
        fn has_room(&self, n: NodeId) -> bool {
            self.nodes[n.0 as usize].3
        }
    }

    fn labels(l: &[&str]) -> Option<Vec<String>> {
        Some(l.iter().map(|s| s.to_string()).collect())
    }

    fn cluster() -> Table {
        Table {
            me: 0,
            nodes: vec![
                (true, Some(true), labels(&["cpu"]), false),
                (true, Some(true), labels(&["gpu"]), true),
                (false, Some(true), labels(&["gpu"]), true), // dead
                (true, Some(false), labels(&["gpu"]), true), // another program
                (true, None, None, true),                    // not heard from yet
                (true, Some(true), labels(&["gpu", "big"]), false),
            ],
        }
    }

    fn want(label: Option<&str>, spread: bool) -> Want<'_> {
        Want {
            func: 7,
            node: None,
            label,
            spread,
        }
    }

    #[test]
    fn a_node_asked_for_is_taken_as_is() {
        let w = Want {
            node: Some(NodeId(2)),
            ..want(None, false)
        };
        assert_eq!(
            place(w, &cluster(), || 0, || false),
            Ok(Placement::On(NodeId(2)))
        );
        let w = Want {
            node: Some(NodeId(0)),
            ..want(None, false)
        };
        assert_eq!(place(w, &cluster(), || 0, || true), Ok(Placement::Here));
    }

    #[test]
    fn a_label_picks_live_nodes_that_run_the_function_in_turn() {
        let c = cluster();
        let got: Vec<Placement> = (0..4)
            .map(|t| place(want(Some("gpu"), false), &c, || t, || false).unwrap())
            .collect();
        use Placement::On;
        assert_eq!(
            got,
            vec![On(NodeId(1)), On(NodeId(5)), On(NodeId(1)), On(NodeId(5))]
        );
        assert_eq!(
            place(want(Some("cpu"), false), &c, || 3, || false),
            Ok(Placement::Here)
        );
    }

    #[test]
    fn a_label_nobody_has_names_every_live_node_s_labels() {
        let err = place(want(Some("tpu"), false), &cluster(), || 0, || false).unwrap_err();
        assert!(err.contains("`tpu`"), "{err}");
        assert!(err.contains("n1: [\"gpu\"]"), "{err}");
        assert!(err.contains("n3: [\"gpu\"] (does not run it)"), "{err}");
        assert!(!err.contains("n2"), "dead nodes are not listed: {err}");
    }

    #[test]
    fn spread_goes_round_robin_over_nodes_that_can_run_it() {
        let c = cluster();
        let got: Vec<Placement> = (0..6)
            .map(|t| place(want(None, true), &c, || t, || false).unwrap())
            .collect();
        use Placement::{Here, On};
        assert_eq!(
            got,
            vec![
                Here,
                On(NodeId(1)),
                On(NodeId(5)),
                On(NodeId(5)),
                On(NodeId(5)),
                On(NodeId(5))
            ]
        );
    }

    #[test]
    fn spillback_only_when_busy_and_only_to_a_peer_with_room() {
        let c = cluster();
        assert_eq!(
            place(want(None, false), &c, || 0, || false),
            Ok(Placement::Here)
        );
        assert_eq!(
            place(want(None, false), &c, || 0, || true),
            Ok(Placement::On(NodeId(1)))
        );
        let mut full = cluster();
        full.nodes[1].3 = false;
        assert_eq!(
            place(want(None, false), &full, || 0, || true),
            Ok(Placement::Here)
        );
    }
}
