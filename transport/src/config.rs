//! How to configure a mesh ([`MeshConfig`], [`TransportKind`],
//! [`ShmConfig`]), the checks every entry point runs on it, and why starting
//! one fails ([`MeshError`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::proto::DEFAULT_MAX_FRAME;

/// Which wire a mesh runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// QUIC (quinn, TLS 1.3, mutual auth under the cluster CA).
    Quic,
    /// TCP (tokio's epoll sockets).
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
    /// The head (node 0) starts alone and hands out ids
    /// ([`request_id`](crate::request_id)), never reusing one; a joining
    /// node (`node` from `request_id`) waits only for the members the head
    /// lists, and `nodes` is ignored.
    /// Socket transports only.
    pub open: bool,
    /// The runtime's description of this node (`OwlMsg::NodeInfo`):
    /// carried in `Join` and handed by the head to every member, so
    /// nodes know what others offer before they connect to them.
    pub info: Option<Box<crate::proto::OwlMsg>>,
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
            info: None,
        }
    }
}

/// "; nodes [..] missing", or nothing when this node cannot tell which.
fn missing_nodes(missing: &[u32]) -> String {
    if missing.is_empty() {
        String::new()
    } else {
        format!("; nodes {missing:?} missing")
    }
}

/// Why [`start`](crate::start) failed.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    #[error("invalid mesh configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}; pick a free port or port 0")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("mesh not connected after {after:?} ({stage}){}: check that every node runs with the same head address, node count and secret", missing_nodes(.missing))]
    Timeout {
        missing: Vec<u32>,
        after: Duration,
        stage: &'static str,
    },
    #[error("cannot set up the transport: {0}")]
    Setup(String),
}

/// The checks [`crate::start`], [`crate::start_hosted`] and
/// [`crate::start_shm_hosted`] run before touching the network, so a bad
/// configuration fails at once with the reason instead of as a timeout.
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
