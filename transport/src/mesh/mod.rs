//! The node-facing API every driver implements: [`Link`] to send, [`Handler`]
//! to receive, [`start`] to join a cluster.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;

use crate::proto::{FrameError, Msg, DEFAULT_MAX_FRAME};
use crate::slots::Slots;

mod hosted;
pub(crate) mod node;

pub use hosted::{start_hosted, IoLoop, IoTask, Starting};

/// Receives what the transport delivers. Called on the transport's single
/// I/O thread (a hosted mesh's host thread): keep it short (hand work to
/// shards), never block on the network from inside it.
pub trait Handler: Send + Sync + 'static {
    /// A batch from `from`, in the order the peer sent them. Heartbeats are
    /// delivered too (they carry the peer's load); `Join`, `Members`,
    /// `NodeDead`, `NodeLeft` and `Shutdown` are consumed by the transport.
    fn on_msgs(&self, from: u32, msgs: Vec<Msg>);
    /// `peer` is gone: reported at most once per peer, never for a peer that
    /// left with `Shutdown`, never after this node's own shutdown began.
    fn on_peer_down(&self, peer: u32, why: PeerDown);
    /// `peer` is connected: messages to it go out from now on. Reported
    /// once per peer, for the nodes of a launched cluster during start-up
    /// and for nodes joining an open cluster whenever they come.
    fn on_peer_up(&self, peer: u32) {
        let _ = peer;
    }
    /// `peer` left cleanly (it sent `Shutdown`): everything it sent before
    /// has been delivered. Reported at most once per peer, instead of
    /// `on_peer_down`, never after this node's own shutdown began.
    fn on_peer_left(&self, peer: u32) {
        let _ = peer;
    }
}

/// What the runtime sends through.
pub trait Link: Send + Sync + 'static {
    /// Queues `msg` for `to`; never blocks, never fails. Messages to one peer
    /// arrive in the order sent; messages to a dead peer (or to this node, or
    /// to an id out of range) are dropped.
    fn send(&self, to: u32, msg: Msg);
    fn me(&self) -> u32;
    fn nodes(&self) -> u32;
}

/// Why a peer was reported down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerDown {
    /// The connection closed or failed.
    ConnectionLost(String),
    /// Nothing heard for longer than `dead_after`.
    HeartbeatTimeout(Duration),
    /// The peer sent a frame that failed the protocol's checks.
    Protocol(FrameError),
    /// The head announced the node dead (`Msg::NodeDead`).
    Announced,
    /// The simulator crashed it.
    Crashed,
}

/// Which wire a mesh runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// QUIC (quinn, TLS 1.3, mutual auth under the cluster CA).
    Quic,
    /// TCP over io_uring (plain tokio if io_uring is unavailable).
    /// `plaintext: true` skips frame encryption for a trusted fabric; the
    /// handshake still authenticates, and every node must agree.
    Tcp { plaintext: bool },
    /// Every node on one host: frames go through shared-memory rings (see
    /// [`ShmConfig`]); joining, authentication and connection-loss detection
    /// still use an encrypted TCP control connection per pair of nodes.
    Shm(ShmConfig),
}

/// Tuning of [`TransportKind::Shm`]; every node of a cluster must use the
/// same `ring_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShmConfig {
    /// Bytes per ring (one ring per ordered pair of nodes), rounded up to a
    /// power of two, at least 64. Frames larger than a ring are streamed
    /// through it in pieces.
    pub ring_bytes: usize,
    /// How long the I/O thread polls its rings after the last work before it
    /// sleeps on its futex (a wake-up costs 6-120 µs, a polled hand-off <1 µs).
    pub spin: Duration,
}

impl Default for ShmConfig {
    /// 1 MiB rings, 50 µs of spinning.
    fn default() -> Self {
        Self {
            ring_bytes: 1 << 20,
            spin: Duration::from_micros(50),
        }
    }
}

/// How to join a cluster.
#[derive(Clone)]
pub struct MeshConfig {
    pub node: u32,
    pub nodes: u32,
    /// Where this node listens (port 0: any; the head must use `head`).
    pub listen: SocketAddr,
    pub head: SocketAddr,
    pub secret: [u8; 32],
    pub kind: TransportKind,
    /// Bound on `start` and on each handshake.
    pub connect_timeout: Duration,
    pub heartbeat: Duration,
    pub dead_after: Duration,
    pub max_frame: usize,
    /// Shards this node runs, announced in `Join`.
    pub shards: u32,
    /// [`TransportKind::Shm`] only: where the ring files go (default
    /// `/dev/shm`, else `$OWL_STORE_DIR`, else the temporary directory).
    pub shm_dir: Option<PathBuf>,
    /// An open cluster (`owl start`): nodes join and leave at any time.
    /// The head (node 0) starts alone and hands out ids ([`request_id`]),
    /// never reusing one; a joining node (`node` from `request_id`) waits
    /// only for the members the head lists, and `nodes` is ignored.
    /// Socket transports only.
    pub open: bool,
}

impl std::fmt::Debug for MeshConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshConfig")
            .field("node", &self.node)
            .field("nodes", &self.nodes)
            .field("listen", &self.listen)
            .field("head", &self.head)
            .field("kind", &self.kind)
            .field("connect_timeout", &self.connect_timeout)
            .field("heartbeat", &self.heartbeat)
            .field("dead_after", &self.dead_after)
            .field("max_frame", &self.max_frame)
            .field("shm_dir", &self.shm_dir)
            .field("open", &self.open)
            .finish_non_exhaustive()
    }
}

impl MeshConfig {
    /// Defaults: TCP encrypted, 10 s connect timeout, 100 ms heartbeats,
    /// dead after 1 s of silence, 64 MiB frames.
    pub fn new(
        node: u32,
        nodes: u32,
        listen: SocketAddr,
        head: SocketAddr,
        secret: [u8; 32],
    ) -> Self {
        Self {
            node,
            nodes,
            listen,
            head,
            secret,
            kind: TransportKind::Tcp { plaintext: false },
            connect_timeout: Duration::from_secs(10),
            heartbeat: Duration::from_millis(100),
            dead_after: Duration::from_secs(1),
            max_frame: DEFAULT_MAX_FRAME,
            shards: 1,
            shm_dir: None,
            open: false,
        }
    }
}

/// Why [`start`] failed.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    #[error("invalid mesh configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}; pick a free port or port 0")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("mesh not connected after {after:?} ({stage}); nodes {missing:?} missing: check they are running with the same head address, node count and secret")]
    Timeout {
        missing: Vec<u32>,
        after: Duration,
        stage: &'static str,
    },
    #[error("cannot set up the transport: {0}")]
    Setup(String),
}

pub(crate) const PENDING: u8 = 0;
pub(crate) const UP: u8 = 1;
pub(crate) const DEAD: u8 = 2;
pub(crate) const LEFT: u8 = 3;

/// One peer as seen from the runtime's threads and the I/O thread.
pub(crate) struct Peer {
    pub(crate) queue: Mutex<Vec<Msg>>,
    pub(crate) wake: tokio::sync::Notify,
    pub(crate) state: AtomicU8,
    pub(crate) last_seen_ms: AtomicU64,
}

/// State shared by the runtime's threads (through [`Link`]) and the I/O thread.
pub(crate) struct Shared {
    pub(crate) me: u32,
    /// Every node this one knows of, `0..peers.len()`: fixed for a
    /// launched cluster, growing as nodes join an open one.
    pub(crate) peers: Slots<Peer>,
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) closing: AtomicBool,
    pub(crate) stop: tokio::sync::Notify,
    pub(crate) queued: AtomicU32,
    pub(crate) idle_shards: AtomicU32,
    /// Set by a driver whose I/O thread does not wait on `Notify`s (shm):
    /// called after every change that thread must notice.
    pub(crate) kick: OnceLock<Box<dyn Fn() + Send + Sync>>,
    /// `Mesh::kill` (not `shutdown`) stopped the node.
    pub(crate) killed: AtomicBool,
    /// Set by `Mesh::shutdown` once `Shutdown` is queued for every live peer
    /// (after `closing`): a driver flushing its queues waits for it.
    pub(crate) shutdown_queued: AtomicBool,
    /// A mesh this one runs over (the shm driver's TCP control mesh) when
    /// no I/O thread of ours owns it (hosted): `Mesh::shutdown`/`kill`
    /// close it after the host finished.
    pub(crate) control: Mutex<Option<Arc<Mesh>>>,
}

impl Peer {
    fn new() -> Self {
        Peer {
            queue: Mutex::new(Vec::new()),
            wake: tokio::sync::Notify::new(),
            state: AtomicU8::new(PENDING),
            last_seen_ms: AtomicU64::new(0),
        }
    }
}

impl Shared {
    /// For `cfg`: a launched cluster's nodes, or an open cluster's ids up
    /// to ours (later members are added as the head announces them).
    pub(crate) fn new(cfg: &MeshConfig, handler: Arc<dyn Handler>) -> Self {
        let me = cfg.node;
        let nodes = if cfg.open { me + 1 } else { cfg.nodes };
        let peers = Slots::new();
        peers.grow(nodes, Peer::new);
        Self {
            me,
            peers,
            handler,
            closing: AtomicBool::new(false),
            stop: tokio::sync::Notify::new(),
            queued: AtomicU32::new(0),
            idle_shards: AtomicU32::new(0),
            kick: OnceLock::new(),
            killed: AtomicBool::new(false),
            shutdown_queued: AtomicBool::new(false),
            control: Mutex::new(None),
        }
    }

    /// Nodes known so far (ids `0..nodes()`).
    pub(crate) fn nodes(&self) -> u32 {
        self.peers.len()
    }

    /// Makes ids `0..n` known (new nodes of an open cluster).
    pub(crate) fn grow(&self, n: u32) {
        self.peers.grow(n, Peer::new);
    }

    /// Wakes a driver that registered a `kick`; no-op otherwise.
    pub(crate) fn kick(&self) {
        if let Some(k) = self.kick.get() {
            k();
        }
    }

    pub(crate) fn state(&self, peer: u32) -> u8 {
        self.peers
            .get(peer)
            .map_or(PENDING, |p| p.state.load(Ordering::Acquire))
    }

    /// Queues for `to`; wakes its writer only on empty -> non-empty, so a
    /// burst of sends costs one wake-up and goes out as one frame.
    pub(crate) fn push(&self, to: u32, msg: Msg) {
        let Some(p) = self.peers.get(to).filter(|_| to != self.me) else {
            tracing::debug!(to, "dropping message to self or an unknown node");
            return;
        };
        if matches!(p.state.load(Ordering::Acquire), DEAD | LEFT) {
            return;
        }
        let was_empty = {
            let mut q = p.queue.lock();
            q.push(msg);
            q.len() == 1
        };
        if was_empty {
            p.wake.notify_one();
            self.kick();
        }
    }

    /// One heartbeat round of a driver: every live peer silent for longer
    /// than `dead_after_ms` is returned with its silence (ms), for the driver
    /// to declare down; every other live peer is sent a heartbeat carrying
    /// this node's load.
    pub(crate) fn heartbeat_round(
        &self,
        seq: u64,
        now_ms: u64,
        dead_after_ms: u64,
    ) -> Vec<(u32, u64)> {
        let mut silent_peers = Vec::new();
        for peer in (0..self.nodes()).filter(|&p| p != self.me) {
            if self.state(peer) != UP {
                continue;
            }
            let silent =
                now_ms.saturating_sub(self.peers[peer].last_seen_ms.load(Ordering::Relaxed));
            if silent > dead_after_ms {
                silent_peers.push((peer, silent));
                continue;
            }
            let hb = Msg::Heartbeat {
                seq,
                queued: self.queued.load(Ordering::Relaxed),
                idle_shards: self.idle_shards.load(Ordering::Relaxed),
            };
            self.push(peer, hb);
        }
        silent_peers
    }

    /// A batch from `peer`: records that it was heard from, takes out the
    /// messages the transport consumes itself and hands the rest to the
    /// handler, in order. `None` once the peer is gone (late messages of a
    /// dead node are dropped).
    pub(crate) fn deliver(&self, peer: u32, now_ms: u64, mut msgs: Vec<Msg>) -> Option<Control> {
        if self.state(peer) != UP {
            return None;
        }
        self.peers[peer]
            .last_seen_ms
            .store(now_ms, Ordering::Relaxed);
        let mut c = Control::default();
        msgs.retain(|m| match m {
            Msg::Shutdown => {
                c.left = true;
                false
            }
            Msg::NodeDead { node } if peer == 0 => {
                c.dead.push(*node);
                false
            }
            Msg::NodeLeft { node } if peer == 0 => {
                c.left_nodes.push(*node);
                false
            }
            Msg::Join { node, addr, .. } if *node == peer => {
                c.joined = Some(addr.clone());
                false
            }
            Msg::Members { members } if peer == 0 => {
                c.members.push(members.clone());
                false
            }
            _ => true,
        });
        if !msgs.is_empty() {
            self.handler.on_msgs(peer, msgs);
        }
        // Announced deaths and departures of nodes this one knows, other
        // than itself.
        c.dead.retain(|&n| n < self.nodes() && n != self.me);
        c.left_nodes.retain(|&n| n < self.nodes() && n != self.me);
        Some(c)
    }

    /// The head announced that `peer` left. A connected peer is not marked
    /// here: its own `Shutdown` arrives after everything it sent us, while
    /// the head's relay may overtake those messages (seen over QUIC, where
    /// the two connections are paced independently). A peer we never
    /// reached is marked left so start-up stops waiting for it.
    pub(crate) fn announced_left(&self, peer: u32) {
        if self.state(peer) != UP {
            self.mark_left(peer);
        }
    }

    /// On the head: tells every other live node that `peer` is dead.
    pub(crate) fn announce_dead(&self, peer: u32) {
        self.announce(peer, Msg::NodeDead { node: peer });
    }

    /// On the head of an open cluster: tells every other live node that
    /// `peer` left cleanly (see [`Shared::announced_left`]).
    pub(crate) fn announce_left(&self, peer: u32) {
        self.announce(peer, Msg::NodeLeft { node: peer });
    }

    fn announce(&self, peer: u32, msg: Msg) {
        for other in 1..self.nodes() {
            if other != peer && self.state(other) == UP {
                self.push(other, msg.clone());
            }
        }
    }

    /// Marks `peer` dead and reports it, once; false if it was already
    /// dead or gone, or this node is shutting down.
    pub(crate) fn mark_dead(&self, peer: u32, why: PeerDown) -> bool {
        let Some(p) = self.peers.get(peer) else {
            return false;
        };
        let mut cur = p.state.load(Ordering::Acquire);
        loop {
            if matches!(cur, DEAD | LEFT) {
                return false;
            }
            match p
                .state
                .compare_exchange(cur, DEAD, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        p.queue.lock().clear();
        p.wake.notify_one();
        self.kick();
        if self.closing.load(Ordering::Acquire) {
            return false;
        }
        tracing::warn!(node = self.me, peer, ?why, "peer down");
        self.handler.on_peer_down(peer, why);
        true
    }

    /// The peer said `Shutdown`: it is gone without failure.
    /// Reported through `Handler::on_peer_left` once, unless this node is
    /// shutting down itself.
    pub(crate) fn mark_left(&self, peer: u32) {
        let Some(p) = self.peers.get(peer) else {
            return;
        };
        let was = p.state.swap(LEFT, Ordering::AcqRel);
        if was != LEFT {
            p.queue.lock().clear();
            p.wake.notify_one();
            self.kick();
        }
        if was == UP && !self.closing.load(Ordering::Acquire) {
            tracing::debug!(node = self.me, peer, "peer left");
            self.handler.on_peer_left(peer);
        }
    }
}

/// What a batch carried for the transport itself (see [`Shared::deliver`]).
#[derive(Debug, Default)]
pub(crate) struct Control {
    /// The peer sent `Shutdown`: it left cleanly.
    pub(crate) left: bool,
    /// Nodes the head announced dead.
    pub(crate) dead: Vec<u32>,
    /// Nodes the head announced left (see [`Shared::announced_left`]).
    pub(crate) left_nodes: Vec<u32>,
    /// The peer's `Join` (its listen address); the head acts on it.
    pub(crate) joined: Option<String>,
    /// Member lists from the head.
    pub(crate) members: Vec<Vec<(u32, String)>>,
}

/// A running mesh endpoint: the [`Link`] plus lifecycle.
pub struct Mesh {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    io: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Hosted meshes (see [`start_hosted`]): signalled when the I/O task ends.
    hosted_done: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

/// How long shutting down waits for a hosted I/O task to flush and end.
const HOSTED_STOP: std::time::Duration = std::time::Duration::from_secs(2);

impl std::fmt::Debug for Mesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mesh")
            .field("me", &self.shared.me)
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

impl Link for Mesh {
    fn send(&self, to: u32, msg: Msg) {
        self.shared.push(to, msg);
    }
    fn me(&self) -> u32 {
        self.shared.me
    }
    fn nodes(&self) -> u32 {
        self.shared.nodes()
    }
}

impl Mesh {
    /// The address this node actually listens on (the real port if 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Load figures carried by the next heartbeats.
    pub fn set_load(&self, queued: u32, idle_shards: u32) {
        self.shared.queued.store(queued, Ordering::Relaxed);
        self.shared
            .idle_shards
            .store(idle_shards, Ordering::Relaxed);
    }

    /// Whether `peer` is connected and alive.
    pub fn is_up(&self, peer: u32) -> bool {
        self.shared
            .peers
            .get(peer)
            .map(|p| p.state.load(Ordering::Acquire))
            == Some(UP)
    }

    /// Sends `Shutdown` to every live peer, flushes (bounded by a second),
    /// closes every connection and stops the I/O thread. No `on_peer_down`
    /// is reported from here on. Idempotent.
    pub fn shutdown(&self) {
        if !self.shared.closing.swap(true, Ordering::AcqRel) {
            for peer in 0..self.shared.nodes() {
                if peer != self.shared.me && self.shared.state(peer) == UP {
                    self.shared.push(peer, Msg::Shutdown);
                }
            }
            self.shared.shutdown_queued.store(true, Ordering::SeqCst);
            self.shared.stop.notify_one();
            self.shared.kick();
        }
        self.join_io();
    }

    fn join_io(&self) {
        if let Some(io) = self.io.lock().take() {
            let _ = io.join();
        }
        if let Some(done) = self.hosted_done.lock().take() {
            let _ = done.recv_timeout(HOSTED_STOP);
        }
        let control = self.shared.control.lock().take();
        if let Some(control) = control {
            if self.shared.killed.load(Ordering::Acquire) {
                control.kill();
            } else {
                control.shutdown();
            }
        }
    }

    /// Simulates a crash in tests: stops the I/O thread without sending
    /// `Shutdown`, so peers see the connection drop.
    pub fn kill(&self) {
        self.shared.killed.store(true, Ordering::Release);
        self.shared.closing.store(true, Ordering::Release);
        for p in self.shared.peers.iter() {
            p.state.store(LEFT, Ordering::Release);
        }
        self.shared.stop.notify_one();
        self.shared.kick();
        self.join_io();
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Joins the cluster described by `cfg` and returns once this node is
/// connected to every other node (or fails after `connect_timeout`). The
/// mesh runs on an I/O thread of its own; see [`start_hosted`] to run it on
/// a thread the caller drives.
pub fn start(cfg: MeshConfig, handler: Arc<dyn Handler>) -> Result<Arc<Mesh>, MeshError> {
    check_config(&cfg)?;
    let shared = Arc::new(Shared::new(&cfg, handler));
    spawn_io_thread(cfg, shared)
}

pub(crate) fn check_config(cfg: &MeshConfig) -> Result<(), MeshError> {
    if cfg.open {
        if matches!(cfg.kind, TransportKind::Shm(_)) {
            return Err(MeshError::Config(
                "an open cluster (owl start) needs a socket transport (quic, tcp or tcp-plain); shared-memory rings are set up for a fixed set of nodes (owl run)".into(),
            ));
        }
        if cfg.node == crate::proto::UNASSIGNED {
            return Err(MeshError::Config(
                "a node joining an open cluster needs an id from the head first (request_id)"
                    .into(),
            ));
        }
    } else if cfg.nodes == 0 || cfg.node >= cfg.nodes {
        return Err(MeshError::Config(format!(
            "node {} is not in 0..{}",
            cfg.node, cfg.nodes
        )));
    }
    if cfg.node == 0 && cfg.listen != cfg.head {
        return Err(MeshError::Config(format!(
            "node 0 is the head and must listen on the head address {} (got {})",
            cfg.head, cfg.listen
        )));
    }
    if cfg.heartbeat.is_zero() || cfg.dead_after <= cfg.heartbeat {
        return Err(MeshError::Config(
            "heartbeat must be non-zero and shorter than dead_after".into(),
        ));
    }
    Ok(())
}

/// Asks the head at `cfg.head` of an open cluster for this node's id (see
/// [`MeshConfig::open`]); then [`start`] (or [`start_hosted`]) with `node`
/// set to it. Blocks up to `cfg.connect_timeout`; runs its own short-lived
/// executor on a thread of its own, so it may be called from anywhere.
pub fn request_id(cfg: &MeshConfig) -> Result<u32, MeshError> {
    let mut cfg = cfg.clone();
    cfg.listen.set_port(0);
    let run = move || -> Result<u32, MeshError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| MeshError::Setup(format!("cannot build the tokio runtime: {e}")))?;
        tokio::task::LocalSet::new().block_on(&rt, async move {
            match cfg.kind {
                TransportKind::Tcp { .. } => {
                    let net = crate::tcp::TokioNet::bind(cfg.listen).await?;
                    node::request_id(&net, &cfg).await
                }
                TransportKind::Quic => {
                    let net = crate::quic::QuicNet::bind(&cfg)?;
                    let id = node::request_id(&net, &cfg).await;
                    node::Net::close(&net).await;
                    id
                }
                TransportKind::Shm(_) => Err(MeshError::Config(
                    "an open cluster needs a socket transport (quic, tcp or tcp-plain)".into(),
                )),
            }
        })
    };
    std::thread::Builder::new()
        .name("owl-join".into())
        .spawn(run)
        .map_err(|e| MeshError::Setup(format!("cannot spawn a thread: {e}")))?
        .join()
        .unwrap_or_else(|_| Err(MeshError::Setup("asking for a node id panicked".into())))
}

fn spawn_io_thread(cfg: MeshConfig, shared: Arc<Shared>) -> Result<Arc<Mesh>, MeshError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let sh = shared.clone();
    let io = std::thread::Builder::new()
        .name(format!("owl-io-{}", cfg.node))
        .spawn(move || node::run_io_thread(cfg, sh, tx))
        .map_err(|e| MeshError::Setup(format!("cannot spawn the I/O thread: {e}")))?;
    let res = rx.recv().unwrap_or_else(|_| {
        Err(MeshError::Setup(
            "the I/O thread exited during start".into(),
        ))
    });
    match res {
        Ok(local_addr) => Ok(Arc::new(Mesh {
            shared,
            local_addr,
            io: Mutex::new(Some(io)),
            hosted_done: Mutex::new(None),
        })),
        Err(e) => {
            shared.closing.store(true, Ordering::Release);
            shared.stop.notify_one();
            shared.kick();
            let _ = io.join();
            Err(e)
        }
    }
}
