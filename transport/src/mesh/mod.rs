//! The socket mesh and the lifecycle every transport shares: [`start`] (or
//! [`start_hosted`]) joins a cluster and returns a [`Mesh`], the [`Link`]
//! plus shutdown. Which driver runs is decided in `select`; the socket
//! engine (TCP and QUIC) is `node`. The API types live in the crate root's
//! `api` and `config` modules and are re-exported here and there.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::peer::{Shared, LEFT, UP};
use crate::proto::Msg;

mod hosted;
mod node;
mod select;

pub use crate::api::{Handler, Link, PeerDown};
pub use crate::config::{MeshConfig, MeshError, ShmConfig, TransportKind};
pub use hosted::{start_hosted, IoLoop, IoTask, Starting};

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
    /// Bytes of frames this node has written to its peers so far
    /// (message headers, framing and sealing included).
    pub fn bytes_sent(&self) -> u64 {
        self.shared.bytes_out.load(Ordering::Relaxed)
    }

    /// Stops this node's heartbeats (and its checks of others') while
    /// its links stay up, as a hung process's would: for tests of the
    /// failure detector.
    #[doc(hidden)]
    pub fn mute_heartbeats(&self) {
        self.shared.muted.store(true, Ordering::Release);
    }

    /// Heartbeats this node has sent so far: to its 3 watchers and the
    /// head, at most 4 a period whatever the cluster's size (the head: one
    /// to every node).
    pub fn heartbeats_sent(&self) -> u64 {
        self.shared.heartbeats_out.load(Ordering::Relaxed)
    }

    /// The address this node actually listens on (the real port if 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// How long this node did not run, if it once did not run for longer
    /// than `dead_after` (SIGSTOP, a paused VM): its peers have declared
    /// it dead, and it should leave.
    pub fn stalled(&self) -> Option<std::time::Duration> {
        match self.shared.stalled_ms.load(Ordering::Acquire) {
            0 => None,
            ms => Some(std::time::Duration::from_millis(ms)),
        }
    }

    /// Lets a thread with nothing to do (a shard spinning for work) run
    /// one non-blocking pass of the I/O thread's work, if the driver allows
    /// it and no other thread is in one: a message then needs no wake-up
    /// of the I/O thread. Only the shm driver allows it (its rings are
    /// plain memory; sockets belong to their thread's executor). Whether
    /// it moved anything.
    pub fn help_poll(&self) -> bool {
        self.shared.help.get().is_some_and(|h| h())
    }

    /// A thread starts (`true`) or stops (`false`) spinning for work and
    /// calling [`Mesh::help_poll`] as it does: while one does, the I/O
    /// thread need not spin too (two spinning threads per node on a
    /// machine with no core to spare slow each other down); it sleeps on
    /// its doorbell, which wakes it for anything no helper takes.
    pub fn helping(&self, on: bool) {
        if on {
            self.shared.helpers.fetch_add(1, Ordering::Relaxed);
        } else {
            self.shared.helpers.fetch_sub(1, Ordering::Relaxed);
        }
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

    /// Whether `peer` is alive as far as this node knows: connected, or a
    /// member the head listed that no connection was needed to yet (the
    /// first message to it connects).
    pub fn is_live(&self, peer: u32) -> bool {
        self.shared.is_live(peer)
    }

    /// How many peers this node holds a connection to.
    pub fn connections(&self) -> usize {
        self.shared
            .peers
            .iter()
            .filter(|p| p.state.load(Ordering::Acquire) == UP)
            .count()
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
        let close = self.shared.close_control.lock().take();
        if let Some(close) = close {
            close(self.shared.killed.load(Ordering::Acquire));
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

/// A mesh over sockets (TCP or QUIC) on an I/O thread of its own; what
/// [`crate::start`] runs for those transports.
pub(crate) fn start_sockets(
    cfg: MeshConfig,
    handler: Arc<dyn Handler>,
) -> Result<Arc<Mesh>, MeshError> {
    crate::config::check_config(&cfg)?;
    let shared = Arc::new(Shared::new(&cfg, handler));
    spawn_io_thread(cfg, shared, select::run_io_thread)
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
        tokio::task::LocalSet::new().block_on(&rt, async move { select::request_id(&cfg).await })
    };
    std::thread::Builder::new()
        .name("owl-join".into())
        .spawn(run)
        .map_err(|e| MeshError::Setup(format!("cannot spawn a thread: {e}")))?
        .join()
        .unwrap_or_else(|_| Err(MeshError::Setup("asking for a node id panicked".into())))
}

/// Runs `run` on a new I/O thread and returns the mesh once it is up.
pub(crate) fn spawn_io_thread(
    cfg: MeshConfig,
    shared: Arc<Shared>,
    run: impl FnOnce(MeshConfig, Arc<Shared>, std::sync::mpsc::Sender<Result<SocketAddr, MeshError>>)
        + Send
        + 'static,
) -> Result<Arc<Mesh>, MeshError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let sh = shared.clone();
    let io = std::thread::Builder::new()
        .name(format!("owl-io-{}", cfg.node))
        .spawn(move || run(cfg, sh, tx))
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
