//! The node's part in a cluster: the link to the other nodes, what each
//! node offers (labels, functions) and its load, and which nodes are gone.
//! The ownership protocol itself is the owner layer's ([`Owner`], held
//! here); `engine::host` drives it with the messages the transport
//! delivers on shard 0, which hosts the mesh (`Shard::host_io`,
//! `Shard::host_shm`).

mod load;
mod view;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use owl_proto::OwlMsg;
use owl_transport::proto::Msg;
use owl_transport::slots::Slots;
use owl_transport::{Link, Mesh};
use parking_lot::{Mutex, RwLock};

use crate::ids::NodeId;
use crate::owner::Owner;
use crate::spec::REMOTE_FNS;

pub(crate) use load::SPILLBACK_BACKLOG;
pub(crate) use view::Alone;

const FNS_UNKNOWN: u8 = 0;
const FNS_SAME: u8 = 1;
const FNS_DIFFERENT: u8 = 2;

/// What a peer offers, from its `NodeInfo`.
struct PeerInfo {
    labels: Vec<String>,
    fns: HashSet<u64>,
    /// Its host's id (`owl_store::host_id`).
    host: u64,
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
    /// This node's part in the ownership protocol.
    pub owner: Owner,
    /// Nodes gone, by failure or by leaving.
    dead: RwLock<HashSet<NodeId>>,
    /// Nodes that left cleanly (also in `dead`).
    left: RwLock<HashSet<NodeId>>,
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
    pub(crate) fn new(
        me: NodeId,
        serial: u32,
        nodes: u32,
        own_labels: Vec<String>,
        lineage_bytes: u64,
    ) -> Net {
        let nodes = nodes.max(me.0 + 1);
        let mut info: Vec<Option<PeerInfo>> = (0..nodes).map(|_| None).collect();
        info[me.0 as usize] = Some(PeerInfo {
            labels: own_labels,
            fns: REMOTE_FNS.iter().map(|f| f.id.0).collect(),
            host: owl_store::host_id(),
        });
        Net {
            me,
            nodes: AtomicU32::new(nodes),
            link: OnceLock::new(),
            early: Mutex::new(Vec::new()),
            mesh: OnceLock::new(),
            owner: Owner::new(me, serial, REMOTE_FNS.iter())
                .with_lineage_budget(usize::try_from(lineage_bytes).unwrap_or(usize::MAX)),
            dead: RwLock::new(HashSet::new()),
            left: RwLock::new(HashSet::new()),
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
        Msg::Owl(self.node_info())
    }

    /// What this node offers, as peers are told (and the mesh's `Join`
    /// carries, for the head to hand every member).
    pub(crate) fn node_info(&self) -> OwlMsg {
        let info = self.info.read();
        let own = info[self.me.0 as usize].as_ref().expect("own info");
        OwlMsg::NodeInfo {
            labels: own.labels.clone(),
            fns: own.fns.iter().copied().collect(),
            host: own.host,
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

    /// Whether `peer` can be sent work: a live member (mesh; connected or
    /// not yet) or not known dead.
    fn reachable(&self, peer: NodeId) -> bool {
        peer == self.me
            || match self.mesh.get() {
                Some(mesh) => mesh.is_live(peer.0),
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

    /// `node`'s host id: `None` while its info is unknown.
    pub(crate) fn host_of(&self, node: NodeId) -> Option<u64> {
        let info = self.info.read();
        info.get(node.0 as usize)?.as_ref().map(|i| i.host)
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

    pub(crate) fn send(&self, to: NodeId, msg: Msg) {
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
    /// The live node holding the largest of `task`'s arguments that are
    /// held on another node (results that stayed where they were made),
    /// if it runs the task's function.
    pub(crate) fn near_args(&self, task: &crate::spec::Task) -> Option<NodeId> {
        let mut best: Option<(NodeId, u64)> = None;
        task.call.deps(&mut |c| {
            if c.is_located() {
                if let Some((holder, len)) = self.owner.holder_of(c.id()) {
                    if best.is_none_or(|(_, l)| len > l) {
                        best = Some((holder, len));
                    }
                }
            }
            true
        });
        let (holder, _) = best?;
        (!self.is_dead(holder) && self.runs(holder, task.func.id.0) == Some(true)).then_some(holder)
    }

    pub(crate) fn is_dead(&self, node: NodeId) -> bool {
        self.dead.read().contains(&node)
    }

    /// Left cleanly (rather than failed).
    pub(crate) fn has_left(&self, node: NodeId) -> bool {
        self.left.read().contains(&node)
    }

    /// Marks `node` gone (died, or left when `left`); true the first time,
    /// when what it owned, borrowed or ran for us must be cleaned up.
    pub(crate) fn mark_gone(&self, node: NodeId, left: bool) -> bool {
        if left {
            self.left.write().insert(node);
        }
        node != self.me && self.dead.write().insert(node)
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
        self.owner.counts()
    }

    /// A message the owner layer does not handle: what a peer offers, its
    /// load; the mesh's own messages never reach here.
    pub(crate) fn on_peer_msg(&self, from: NodeId, msg: Msg) {
        match msg {
            Msg::Heartbeat {
                queued,
                idle_shards,
                room,
                ..
            } => {
                self.load.report(from, queued, idle_shards);
                if from.0 == 0 {
                    self.load.hint_from_head(self.me, &room);
                }
            }
            Msg::Owl(OwlMsg::NodeInfo { labels, fns, host }) => {
                self.grow(from.0 + 1);
                let fns: HashSet<u64> = fns.into_iter().collect();
                let mut info = self.info.write();
                let same = info[self.me.0 as usize]
                    .as_ref()
                    .is_some_and(|own| own.fns == fns);
                info[from.0 as usize] = Some(PeerInfo { labels, fns, host });
                self.same_fns[from.0].store(
                    if same { FNS_SAME } else { FNS_DIFFERENT },
                    Ordering::Release,
                );
            }
            // The mesh's own messages (membership, shutdown) stop there;
            // an in-process link never sends them.
            _ => {}
        }
    }
}

/// A node of the cluster as another node sees it ([`crate::Runtime::members`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub node: NodeId,
    /// A live member (connected or not; without a network, not known
    /// dead); this node is up.
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

/// What the owner layer of a node still holds; part of the leak report.
pub use crate::owner::OwnerCounts as NetLeaks;
