//! Nodes in one process over the transport's simulated network: seeded
//! delays, partitions and crashes, for fault-injection tests of the same
//! node code that runs over real sockets. The network's delivery order is
//! fixed by the seed; the nodes' shard threads still run concurrently.

use std::sync::Arc;
use std::time::Duration;

use owl_transport::sim::{SimAuto, SimConfig, SimNet};
use owl_transport::Handler;

use crate::config::Builder;
use crate::engine::host::NodeHandler;
use crate::error::StartError;
use crate::ids::NodeId;
use crate::runtime::Runtime;

/// A simulated cluster: its nodes and its network.
#[derive(Debug)]
pub struct SimCluster {
    nodes: Vec<Option<Runtime>>,
    net: SimNet,
    _clock: SimAuto,
}

impl SimCluster {
    /// Starts `n` nodes (node `i` configured by `builder(i)`) on a simulated
    /// network seeded with `seed`, its clock driven in real time by `tick`.
    pub fn start(
        n: u32,
        seed: u64,
        cfg: SimConfig,
        tick: Duration,
        builder: impl Fn(NodeId) -> Builder,
    ) -> Result<SimCluster, StartError> {
        let mut nodes = Vec::new();
        for i in 0..n {
            nodes.push(builder(NodeId(i)).cluster_member(NodeId(i), n).build()?);
        }
        let handlers: Vec<Arc<dyn Handler>> = nodes
            .iter()
            .map(|rt| Arc::new(NodeHandler(Arc::downgrade(rt.shared()))) as Arc<dyn Handler>)
            .collect();
        let (net, links) = SimNet::new(seed, cfg, handlers);
        for (rt, link) in nodes.iter().zip(links) {
            if let Some(n) = rt.shared().net.as_ref() {
                n.connect(link);
            }
        }
        let clock = net.start_auto(tick);
        for rt in &nodes {
            if let Some(n) = rt.shared().net.as_ref() {
                n.wait_labels(Duration::from_secs(10));
            }
        }
        Ok(SimCluster {
            nodes: nodes.into_iter().map(Some).collect(),
            net,
            _clock: clock,
        })
    }

    /// Node `i` (panics if it crashed).
    pub fn node(&self, i: u32) -> &Runtime {
        self.nodes[i as usize].as_ref().expect("node crashed")
    }

    /// The network, for partitions and frame faults.
    pub fn net(&self) -> &SimNet {
        &self.net
    }

    /// Crashes node `i`: its frames vanish, its peers are told, then its
    /// runtime stops.
    pub fn crash(&mut self, i: u32) {
        self.net.crash(i);
        drop(self.nodes[i as usize].take());
    }

    /// `assert_no_leaks` on every live node.
    pub fn assert_no_leaks(&self) {
        for rt in self.nodes.iter().flatten() {
            rt.assert_no_leaks();
        }
    }
}
