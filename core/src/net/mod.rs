//! The node's part in a cluster: refs that cross nodes, tasks that run on
//! other nodes, and objects pulled from their owners.
//!
//! Everything here is driven by two kinds of events: a shard deciding to
//! send something (a task placed elsewhere, a value a remote caller asked
//! for) and messages arriving from the transport's I/O thread. Messages
//! that touch an ownership table are forwarded to the owning shard's inbox;
//! the rest (borrowed refs, exports, pulls, remote tasks) live in small
//! node-wide maps behind short locks.
//!
//! Invariants:
//! 1. Every ref that leaves this node is registered with its owner before
//!    this node can release its own hold on it (`refs`), so no window exists
//!    where nobody counts an object.
//! 2. Every registration a node receives is released exactly once: by the
//!    release of the handle group it joined, or by the node's death.
//! 3. A message about an object whose entry, proxy or pull is gone is
//!    dropped, never a panic.

mod fetch;
mod inproc;
mod load;
mod loopback;
mod refs;
mod remote;
mod sim;
mod wire;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use owl_transport::proto::Msg;
use owl_transport::{Handler, Link, Mesh, PeerDown};
use parking_lot::{Mutex, RwLock};

use crate::cell::ObjectCell;
use crate::ids::{NodeId, ObjectId};
use crate::runtime::NodeShared;
use crate::task::{FnInfo, REMOTE_FNS};

pub use inproc::in_process;
pub(crate) use load::SPILL_BACKLOG;
pub use loopback::on_loopback;
pub(crate) use refs::Borrowed;
pub(crate) use remote::RemoteTask;
pub use sim::SimCluster;

/// The cluster state of one node.
pub(crate) struct Net {
    pub me: NodeId,
    pub nodes: u32,
    link: OnceLock<Arc<dyn Link>>,
    /// What was sent before the link was set: a peer's first messages can
    /// arrive (and be answered) while the transport is still finishing
    /// start-up here.
    early: Mutex<Vec<(NodeId, Msg)>>,
    /// The network mesh, when the link is one (not an in-process cluster).
    mesh: OnceLock<Arc<Mesh>>,
    /// Proxies of objects owned elsewhere, one handle group each.
    borrowed: Mutex<HashMap<ObjectId, Borrowed>>,
    /// Objects owned here whose refs went to other nodes: how incoming refs
    /// and fetches find their cells without asking the owning shard.
    exports: Mutex<HashMap<ObjectId, Arc<ObjectCell>>>,
    /// Tasks owned here running on other nodes.
    remote: Mutex<HashMap<ObjectId, RemoteTask>>,
    /// Tasks running here for other nodes (their cells), for `Cancel`.
    executing: Mutex<HashMap<ObjectId, Weak<ObjectCell>>>,
    /// Large values being pulled into this node's arena.
    pulls: Mutex<HashMap<ObjectId, fetch::Pull>>,
    fns: HashMap<u64, &'static FnInfo>,
    dead: RwLock<HashSet<NodeId>>,
    next_shard: AtomicUsize,
    /// Every node's labels (ours from the start, peers' once they sent them).
    labels: RwLock<Vec<Option<Vec<String>>>>,
    next_place: AtomicUsize,
    pub(crate) load: load::LoadView,
}

impl Net {
    pub(crate) fn new(me: NodeId, nodes: u32, own_labels: Vec<String>) -> Net {
        let mut labels = vec![None; nodes as usize];
        if let Some(l) = labels.get_mut(me.0 as usize) {
            *l = Some(own_labels);
        }
        Net {
            me,
            nodes,
            link: OnceLock::new(),
            early: Mutex::new(Vec::new()),
            mesh: OnceLock::new(),
            borrowed: Mutex::new(HashMap::new()),
            exports: Mutex::new(HashMap::new()),
            remote: Mutex::new(HashMap::new()),
            executing: Mutex::new(HashMap::new()),
            pulls: Mutex::new(HashMap::new()),
            fns: REMOTE_FNS.iter().map(|f| (f.id.0, f)).collect(),
            dead: RwLock::new(HashSet::new()),
            next_shard: AtomicUsize::new(0),
            labels: RwLock::new(labels),
            next_place: AtomicUsize::new(0),
            load: load::LoadView::new(nodes),
        }
    }

    pub(crate) fn connect(&self, link: Arc<dyn Link>) {
        // Flush early messages first and publish the link last, under the
        // lock, so nothing sent meanwhile can overtake them.
        let mut early = self.early.lock();
        for (to, msg) in early.drain(..) {
            link.send(to.0, msg);
        }
        if self.link.set(link).is_err() {
            tracing::error!("node {} connected twice; keeping the first link", self.me);
        }
        drop(early);
        let own = self.labels.read()[self.me.0 as usize]
            .clone()
            .unwrap_or_default();
        for peer in (0..self.nodes).map(NodeId).filter(|&n| n != self.me) {
            self.send(
                peer,
                Msg::Labels {
                    labels: own.clone(),
                },
            );
        }
    }

    /// Waits (bounded) until every peer's labels are known, so that the
    /// first placements by label see the whole cluster.
    pub(crate) fn wait_labels(&self, timeout: std::time::Duration) {
        let deadline = std::time::Instant::now() + timeout;
        while self.labels.read().iter().any(Option::is_none) {
            if std::time::Instant::now() >= deadline {
                tracing::warn!(
                    "node {}: some peers' labels did not arrive in {timeout:?}",
                    self.me
                );
                return;
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }

    /// A live node labelled `label`, round-robin among them.
    pub(crate) fn labeled(&self, label: &str) -> Result<NodeId, String> {
        let labels = self.labels.read();
        let with: Vec<NodeId> = labels
            .iter()
            .enumerate()
            .filter(|(_, l)| l.as_ref().is_some_and(|l| l.iter().any(|x| x == label)))
            .map(|(i, _)| NodeId(i as u32))
            .filter(|&n| !self.is_dead(n))
            .collect();
        if with.is_empty() {
            let known: Vec<String> = labels
                .iter()
                .enumerate()
                .map(|(i, l)| format!("n{i}: {:?}", l.as_deref().unwrap_or(&[])))
                .collect();
            return Err(format!(
                "no live node has label `{label}` ({})",
                known.join(", ")
            ));
        }
        Ok(with[self.next_place.fetch_add(1, Ordering::Relaxed) % with.len()])
    }

    /// The next live node, round-robin over the cluster (this one included).
    pub(crate) fn spread(&self) -> NodeId {
        for _ in 0..self.nodes {
            let n = NodeId(
                (self.next_place.fetch_add(1, Ordering::Relaxed) % self.nodes as usize) as u32,
            );
            if !self.is_dead(n) {
                return n;
            }
        }
        self.me
    }

    pub(crate) fn connect_mesh(&self, mesh: Arc<Mesh>) {
        let _ = self.mesh.set(Arc::clone(&mesh));
        self.connect(mesh);
    }

    pub(crate) fn mesh(&self) -> Option<&Arc<Mesh>> {
        self.mesh.get()
    }

    /// Load figures for the next heartbeats (spillback on the peers).
    pub(crate) fn report_load(&self, queued: usize, idle_shards: usize) {
        if let Some(mesh) = self.mesh.get() {
            mesh.set_load(queued as u32, idle_shards as u32);
        }
    }

    fn send(&self, to: NodeId, msg: Msg) {
        if let Some(link) = self.link.get() {
            return link.send(to.0, msg);
        }
        let mut early = self.early.lock();
        match self.link.get() {
            Some(link) => link.send(to.0, msg),
            None => early.push((to, msg)),
        }
    }

    pub(crate) fn is_dead(&self, node: NodeId) -> bool {
        self.dead.read().contains(&node)
    }

    /// A node to spill a task to, if any can take it.
    pub(crate) fn spill_target(&self) -> Option<NodeId> {
        if self.nodes < 2 || self.link.get().is_none() {
            return None;
        }
        self.load.pick(self.me, |n| self.is_dead(n))
    }

    /// What is left in the node-wide maps (all empty after a finished workload).
    pub(crate) fn leaks(&self) -> NetLeaks {
        NetLeaks {
            borrowed: self.borrowed.lock().len(),
            exports: self.exports.lock().len(),
            remote_tasks: self.remote.lock().len(),
            executing: self.executing.lock().len(),
            pulls: self.pulls.lock().len(),
        }
    }

    /// Handles a batch of messages from `from`, in order.
    pub(crate) fn on_msgs(&self, node: &Arc<NodeShared>, from: NodeId, msgs: Vec<Msg>) {
        if self.is_dead(from) {
            // Late messages of a node declared dead are dropped (DESIGN §6).
            return;
        }
        for msg in msgs {
            self.on_msg(node, from, msg);
        }
    }

    fn on_msg(&self, node: &Arc<NodeShared>, from: NodeId, msg: Msg) {
        match msg {
            Msg::Submit {
                object,
                func,
                name,
                priority,
                max_retries,
                retry_on_error,
                args,
            } => self.on_submit(
                node,
                from,
                wire::id(&object),
                func,
                remote::SubmitOpts {
                    name,
                    priority,
                    max_retries,
                    retry_on_error,
                },
                args,
            ),
            Msg::TaskDone { object, outcome } => {
                self.on_task_done(node, from, wire::id(&object), outcome)
            }
            Msg::AddBorrower {
                object,
                borrower,
                count,
            } => self.on_borrow(node, wire::id(&object), NodeId(borrower), count as i32),
            Msg::RemoveBorrower {
                object,
                borrower,
                count,
            } => self.on_borrow(node, wire::id(&object), NodeId(borrower), -(count as i32)),
            Msg::Fetch { object } => self.on_fetch(node, from, wire::id(&object)),
            Msg::Value { object, outcome } => self.on_value(node, wire::id(&object), outcome),
            Msg::ValueHeader {
                object,
                len,
                refs,
                shared,
            } => self.on_value_header(node, from, wire::id(&object), len, refs, shared),
            Msg::Pull {
                object,
                offset,
                len,
            } => self.on_pull(from, wire::id(&object), offset, len),
            Msg::Chunk {
                object,
                offset,
                data,
            } => self.on_chunk(node, wire::id(&object), offset, data),
            Msg::Cancel { object } => self.on_cancel(node, wire::id(&object)),
            Msg::NodeDead { node: dead } => self.on_node_dead(node, NodeId(dead)),
            Msg::Heartbeat {
                queued,
                idle_shards,
                ..
            } => self.load.report(from, queued, idle_shards),
            Msg::Labels { labels } => {
                if let Some(l) = self.labels.write().get_mut(from.0 as usize) {
                    *l = Some(labels);
                }
            }
            Msg::Join { .. } | Msg::Members { .. } | Msg::Shutdown => {}
        }
    }
}

/// What `Net` still holds; part of the leak report.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NetLeaks {
    /// Proxies of objects owned by other nodes.
    pub borrowed: usize,
    /// Objects owned here that other nodes may still refer to.
    pub exports: usize,
    /// Tasks owned here still running on other nodes.
    pub remote_tasks: usize,
    /// Tasks running here for other nodes.
    pub executing: usize,
    /// Large values still being pulled.
    pub pulls: usize,
}

impl NetLeaks {
    pub fn is_empty(&self) -> bool {
        *self == NetLeaks::default()
    }
}

/// The transport's view of a node: forwards to its `Net` while it lives.
pub struct NodeHandler(pub Weak<NodeShared>);

impl Handler for NodeHandler {
    fn on_msgs(&self, from: u32, msgs: Vec<Msg>) {
        if let Some(node) = self.0.upgrade() {
            if let Some(net) = node.net.as_ref() {
                net.on_msgs(&node, NodeId(from), msgs);
            }
        }
    }

    fn on_peer_down(&self, peer: u32, why: PeerDown) {
        if let Some(node) = self.0.upgrade() {
            if let Some(net) = node.net.as_ref() {
                if !node.stopping() {
                    tracing::warn!(peer, why = ?why, "node {} lost a peer", net.me);
                }
                net.on_node_dead(&node, NodeId(peer));
            }
        }
    }
}
