//! An in-process cluster: several nodes in one process, linked by channels
//! with one delivery thread per node (the stand-in for a transport's I/O
//! thread). For tests and examples of multi-node programs on one machine.

use std::sync::{Arc, Weak};

use crossbeam_channel::{unbounded, Receiver, Sender};
use owl_transport::proto::Msg;
use owl_transport::{Handler, Link};

use crate::config::Builder;
use crate::engine::host::NodeHandler;
use crate::engine::node::NodeShared;
use crate::error::StartError;
use crate::ids::NodeId;
use crate::runtime::Runtime;

struct ChannelLink {
    me: u32,
    peers: Vec<Sender<(u32, Msg)>>,
}

impl Link for ChannelLink {
    fn send(&self, to: u32, msg: Msg) {
        if let Some(p) = self.peers.get(to as usize) {
            // A node that shut down drops what is sent to it.
            let _ = p.send((self.me, msg));
        }
    }

    fn me(&self) -> u32 {
        self.me
    }

    fn nodes(&self) -> u32 {
        self.peers.len() as u32
    }
}

/// Hands messages to the node in arrival order, batching consecutive
/// messages of one sender (as a transport batches per peer and turn).
fn deliver(rx: Receiver<(u32, Msg)>, handler: NodeHandler) {
    let mut next: Option<(u32, Msg)> = None;
    loop {
        let (from, first) = match next.take() {
            Some(m) => m,
            None => match rx.recv() {
                Ok(m) => m,
                Err(_) => return,
            },
        };
        let mut batch = vec![first];
        while batch.len() < 256 {
            match rx.try_recv() {
                Ok((f, m)) if f == from => batch.push(m),
                Ok(other) => {
                    next = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        handler.on_msgs(from, batch);
    }
}

/// Starts `n` nodes in this process, node `i` configured by `builder(i)`,
/// all linked to each other.
pub fn in_process(n: u32, builder: impl Fn(NodeId) -> Builder) -> Result<Vec<Runtime>, StartError> {
    let mut runtimes = Vec::new();
    for i in 0..n {
        runtimes.push(builder(NodeId(i)).cluster_member(NodeId(i), n).build()?);
    }
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| unbounded()).unzip();
    for (i, (rt, rx)) in runtimes.iter().zip(rxs).enumerate() {
        let shared: Weak<NodeShared> = Arc::downgrade(rt.shared());
        std::thread::Builder::new()
            .name(format!("owl-inproc-{i}"))
            .spawn(move || deliver(rx, NodeHandler(shared)))
            .map_err(|source| StartError::Thread { shard: 0, source })?;
        let link = Arc::new(ChannelLink {
            me: i as u32,
            peers: txs.clone(),
        });
        rt.shared()
            .net
            .as_ref()
            .expect("cluster members have a net")
            .connect(link);
    }
    for rt in &runtimes {
        if let Some(net) = rt.shared().net.as_ref() {
            net.wait_labels(std::time::Duration::from_secs(10));
        }
    }
    Ok(runtimes)
}
