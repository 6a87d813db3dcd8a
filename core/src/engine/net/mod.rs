//! The node's part in a cluster: refs that cross nodes, tasks that run on
//! other nodes, and objects pulled from their owners.
//!
//! Everything here is driven by two kinds of events: a shard deciding to
//! send something (a task placed elsewhere, a value a remote caller asked
//! for) and messages the transport delivers on shard 0, which hosts the
//! mesh (`Shard::host_io`, `Shard::host_shm`). Messages
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
mod load;
mod refs;
mod remote;
mod view;
mod wire;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use owl_transport::proto::Msg;
use owl_transport::slots::Slots;
use owl_transport::{Handler, Link, Mesh, PeerDown};
use parking_lot::{Mutex, RwLock};

use crate::engine::node::NodeShared;
use crate::ids::{NodeId, ObjectId};
use crate::object::cell::ObjectCell;
use crate::spec::{FnInfo, REMOTE_FNS};

pub(crate) use load::SPILLBACK_BACKLOG;
pub(crate) use remote::RemoteTask;
pub(crate) use view::Alone;

const FNS_UNKNOWN: u8 = 0;
const FNS_SAME: u8 = 1;
const FNS_DIFFERENT: u8 = 2;

/// What a peer offers, from its `NodeInfo`.
struct PeerInfo {
    labels: Vec<String>,
    fns: HashSet<u64>,
}

/// The cluster state of one node.
pub(crate) struct Net {
    pub me: NodeId,
    /// Nodes known (ids `0..nodes`): fixed in a launched cluster, growing
    /// as nodes join an open one.
    nodes: AtomicU32,
    link: OnceLock<Arc<dyn Link>>,
    /// What was sent before the link was set: a peer's first messages can
    /// arrive (and be answered) while the transport is still finishing
    /// start-up here.
    early: Mutex<Vec<(NodeId, Msg)>>,
    /// The network mesh, when the link is one (not an in-process cluster).
    mesh: OnceLock<Arc<Mesh>>,
    /// Proxies and exports: the owner layer's cross-node counting.
    refs: crate::owner::refs::Refs,
    /// Tasks owned here running on other nodes.
    remote: Mutex<HashMap<ObjectId, RemoteTask>>,
    /// Tasks running here for other nodes (their cells), for `Cancel`.
    executing: Mutex<HashMap<ObjectId, Weak<ObjectCell>>>,
    /// Large values being pulled into this node's arena.
    pulls: Mutex<HashMap<ObjectId, fetch::Pull>>,
    fns: HashMap<u64, &'static FnInfo>,
    /// Nodes gone, by failure or by leaving.
    dead: RwLock<HashSet<NodeId>>,
    /// Nodes that left cleanly (also in `dead`).
    left: RwLock<HashSet<NodeId>>,
    next_shard: AtomicUsize,
    /// Every node's labels and functions (ours from the start, peers' once
    /// they sent them).
    info: RwLock<Vec<Option<PeerInfo>>>,
    /// Per node, whether it runs exactly our functions (the same binary):
    /// `runs` answers those without a lock, on every remote dispatch.
    same_fns: Slots<AtomicU8>,
    next_place: AtomicUsize,
    pub(crate) load: load::LoadView,
}

impl Net {
    pub(crate) fn new(me: NodeId, serial: u32, nodes: u32, own_labels: Vec<String>) -> Net {
        let nodes = nodes.max(me.0 + 1);
        let mut info: Vec<Option<PeerInfo>> = (0..nodes).map(|_| None).collect();
        info[me.0 as usize] = Some(PeerInfo {
            labels: own_labels,
            fns: REMOTE_FNS.iter().map(|f| f.id.0).collect(),
        });
        Net {
            me,
            nodes: AtomicU32::new(nodes),
            link: OnceLock::new(),
            early: Mutex::new(Vec::new()),
            mesh: OnceLock::new(),
            refs: crate::owner::refs::Refs::new(me, serial),
            remote: Mutex::new(HashMap::new()),
            executing: Mutex::new(HashMap::new()),
            pulls: Mutex::new(HashMap::new()),
            fns: REMOTE_FNS.iter().map(|f| (f.id.0, f)).collect(),
            dead: RwLock::new(HashSet::new()),
            left: RwLock::new(HashSet::new()),
            next_shard: AtomicUsize::new(0),
            info: RwLock::new(info),
            same_fns: {
                let s = Slots::new();
                s.grow(nodes, || AtomicU8::new(FNS_UNKNOWN));
                s[me.0].store(FNS_SAME, Ordering::Relaxed);
                s
            },
            next_place: AtomicUsize::new(0),
            load: load::LoadView::new(nodes),
        }
    }

    /// Starts sending through `link`; tells every peer what this node
    /// offers (a mesh does that per peer as each comes up instead, see
    /// [`Net::on_node_up`]).
    pub(crate) fn connect(&self, link: Arc<dyn Link>) {
        self.set_link(Arc::clone(&link));
        for peer in (0..link.nodes()).map(NodeId).filter(|&n| n != self.me) {
            self.send(peer, self.own_info());
        }
    }

    fn set_link(&self, link: Arc<dyn Link>) {
        // Flush early messages first and publish the link last, under the
        // lock, so nothing sent meanwhile can overtake them.
        let mut early = self.early.lock();
        for (to, msg) in early.drain(..) {
            link.send(to.0, msg);
        }
        if self.link.set(link).is_err() {
            tracing::error!("node {} connected twice; keeping the first link", self.me);
        }
    }

    fn own_info(&self) -> Msg {
        let info = self.info.read();
        let own = info[self.me.0 as usize].as_ref().expect("own info");
        Msg::NodeInfo {
            labels: own.labels.clone(),
            fns: own.fns.iter().copied().collect(),
        }
    }

    /// Nodes known so far (ids `0..nodes()`).
    pub(crate) fn nodes(&self) -> u32 {
        self.nodes.load(Ordering::Acquire)
    }

    /// `peer` connected (at start-up, or joining an open cluster later).
    pub(crate) fn on_node_up(&self, peer: NodeId) {
        self.grow(peer.0 + 1);
        self.send(peer, self.own_info());
    }

    fn grow(&self, n: u32) {
        if n > self.nodes() {
            let mut info = self.info.write();
            if info.len() < n as usize {
                info.resize_with(n as usize, || None);
            }
            self.load.grow(n);
            self.same_fns.grow(n, || AtomicU8::new(FNS_UNKNOWN));
            self.nodes.fetch_max(n, Ordering::AcqRel);
        }
    }

    /// Whether `peer` can be sent work: connected (mesh) or not known dead.
    fn reachable(&self, peer: NodeId) -> bool {
        peer == self.me
            || match self.mesh.get() {
                Some(mesh) => mesh.is_up(peer.0),
                None => !self.is_dead(peer),
            }
    }

    /// Waits (bounded) until every connected peer told what it offers, so
    /// that the first placements see the whole cluster.
    pub(crate) fn wait_labels(&self, timeout: std::time::Duration) {
        let deadline = std::time::Instant::now() + timeout;
        let missing = || {
            let info = self.info.read();
            (0..info.len() as u32)
                .map(NodeId)
                .any(|n| info[n.0 as usize].is_none() && self.reachable(n))
        };
        while missing() {
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

    /// Every node known, as this node sees it.
    pub(crate) fn members(&self) -> Vec<Member> {
        let info = self.info.read();
        (0..self.nodes())
            .map(NodeId)
            .map(|n| {
                let i = info.get(n.0 as usize).and_then(Option::as_ref);
                Member {
                    node: n,
                    up: self.reachable(n) && !self.is_dead(n),
                    left: self.has_left(n),
                    labels: i.map(|i| i.labels.clone()).unwrap_or_default(),
                    functions: i.map_or(0, |i| i.fns.len()),
                    same_program: self.runs_same_program(n),
                    load: self.load.last(n),
                }
            })
            .collect()
    }

    fn runs_same_program(&self, node: NodeId) -> Option<bool> {
        match self.same_fns.get(node.0)?.load(Ordering::Acquire) {
            FNS_SAME => Some(true),
            FNS_DIFFERENT => Some(false),
            _ => None,
        }
    }

    /// Whether `node` runs function `func`: `None` while its info is unknown.
    pub(crate) fn runs(&self, node: NodeId, func: u64) -> Option<bool> {
        match self.same_fns.get(node.0)?.load(Ordering::Acquire) {
            FNS_SAME => return Some(true),
            FNS_UNKNOWN => return None,
            _ => {}
        }
        let info = self.info.read();
        info.get(node.0 as usize)?
            .as_ref()
            .map(|i| i.fns.contains(&func))
    }

    /// Starts sending through the mesh; peers were (and will be) told
    /// what this node offers as each came up.
    pub(crate) fn connect_mesh(&self, mesh: Arc<Mesh>) {
        self.grow(mesh.nodes());
        let _ = self.mesh.set(Arc::clone(&mesh));
        self.set_link(mesh);
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

    /// Gone: died or left.
    pub(crate) fn is_dead(&self, node: NodeId) -> bool {
        self.dead.read().contains(&node)
    }

    /// Left cleanly (rather than failed).
    pub(crate) fn has_left(&self, node: NodeId) -> bool {
        self.left.read().contains(&node)
    }

    /// `node` left cleanly: everything it sent has been handled; what it
    /// owned, borrowed or ran for us is cleaned up as for a death.
    pub(crate) fn on_node_left(&self, node: &Arc<NodeShared>, gone: NodeId) {
        self.left.write().insert(gone);
        self.on_node_dead(node, gone);
    }

    /// Whether spillback can send anywhere: peers exist and are reachable.
    pub(crate) fn can_spill(&self) -> bool {
        self.nodes() >= 2 && self.link.get().is_some()
    }

    /// The round-robin position for the next placement among nodes.
    pub(crate) fn next_turn(&self) -> usize {
        self.next_place.fetch_add(1, Ordering::Relaxed)
    }

    /// What is left in the node-wide maps (all empty after a finished workload).
    pub(crate) fn leaks(&self) -> NetLeaks {
        let (borrowed, exports, lent) = self.refs.counts();
        NetLeaks {
            borrowed,
            exports,
            lent,
            remote_tasks: self.remote.lock().len(),
            executing: self.executing.lock().len(),
            pulls: self.pulls.lock().len(),
        }
    }

    /// Handles a batch of messages from `from`, in order.
    pub(crate) fn on_msgs(&self, node: &Arc<NodeShared>, from: NodeId, msgs: Vec<Msg>) {
        if self.is_dead(from) {
            // Late messages of a node declared dead are dropped: whatever it
            // owned or ran here was already cleaned up by `on_node_dead`.
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
                lender,
            } => self.on_borrow(
                node,
                wire::id(&object),
                NodeId(borrower),
                count as i32,
                Some(NodeId(lender)),
            ),
            Msg::Lent {
                object,
                borrower,
                count,
            } => self
                .refs
                .on_lent(wire::id(&object), NodeId(borrower), count),
            Msg::RemoveBorrower {
                object,
                borrower,
                count,
            } => self.on_borrow(
                node,
                wire::id(&object),
                NodeId(borrower),
                -(count as i32),
                None,
            ),
            Msg::Fetch { object } => self.on_fetch(node, from, wire::id(&object)),
            Msg::Value { object, outcome } => self.on_value(node, from, wire::id(&object), outcome),
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
            Msg::NodeInfo { labels, fns } => {
                self.grow(from.0 + 1);
                let fns: HashSet<u64> = fns.into_iter().collect();
                let mut info = self.info.write();
                let same = info[self.me.0 as usize]
                    .as_ref()
                    .is_some_and(|own| own.fns == fns);
                info[from.0 as usize] = Some(PeerInfo { labels, fns });
                self.same_fns[from.0].store(
                    if same { FNS_SAME } else { FNS_DIFFERENT },
                    Ordering::Release,
                );
            }
            // Consumed by the mesh; an in-process link never sends them.
            Msg::Join { .. }
            | Msg::Members { .. }
            | Msg::Assigned { .. }
            | Msg::NodeLeft { .. }
            | Msg::ShmSetup { .. }
            | Msg::Shutdown => {}
        }
    }
}

/// A node of the cluster as another node sees it ([`crate::Runtime::members`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub node: NodeId,
    /// Connected (or, without a network, not known dead); this node is up.
    pub up: bool,
    /// Left cleanly (rather than failed), when not up.
    pub left: bool,
    /// Its labels (`OWL_LABELS`), once it sent them.
    pub labels: Vec<String>,
    /// How many remote functions its binary has.
    pub functions: usize,
    /// Whether it runs the same functions as this node (the same program);
    /// `None` while unknown.
    pub same_program: Option<bool>,
    /// Its last heartbeat's load: (queued tasks, idle shards).
    pub load: Option<(u32, u32)>,
}

/// What `Net` still holds; part of the leak report.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NetLeaks {
    /// Proxies of objects owned by other nodes.
    pub borrowed: usize,
    /// Objects owned here that other nodes may still refer to.
    pub exports: usize,
    /// Holds on refs lent to other nodes, not yet registered by the owner.
    pub lent: usize,
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

    fn on_peer_up(&self, peer: u32) {
        if let Some(node) = self.0.upgrade() {
            if let Some(net) = node.net.as_ref() {
                net.on_node_up(NodeId(peer));
            }
        }
    }

    fn on_peer_left(&self, peer: u32) {
        if let Some(node) = self.0.upgrade() {
            if let Some(net) = node.net.as_ref() {
                net.on_node_left(&node, NodeId(peer));
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
