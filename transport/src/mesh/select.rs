//! The one place a socket [`TransportKind`] becomes a driver: which socket
//! driver and executor a mesh runs on (threaded, hosted, or just to ask for
//! an id), and whether its frames are sealed. (Shared memory is a layer
//! above the mesh: `crate::start` hands it to `shm`.)

use std::net::SocketAddr;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use super::node::{self, Node};
use super::IoLoop;
use crate::config::{MeshConfig, MeshError, TransportKind};
use crate::driver::Net;
use crate::peer::Shared;

/// Whether a mesh on `kind` sends its frames unsealed.
pub(super) fn plaintext(kind: TransportKind) -> bool {
    // QUIC streams are already inside TLS: the proto handshake still checks
    // ids and version there, but frames are not sealed twice.
    match kind {
        TransportKind::Tcp { plaintext } => plaintext,
        TransportKind::Quic => true,
        // Never reached: the shm driver runs its control mesh over TCP.
        TransportKind::Shm(_) => false,
    }
}

/// Runs on the I/O thread: picks the executor, binds, runs the node until
/// shutdown; the node spins a moment after each message it moves. `ready`
/// gets the listen address once the mesh is complete.
pub(crate) fn run_io_thread(
    cfg: MeshConfig,
    sh: Arc<Shared>,
    ready: Sender<Result<SocketAddr, MeshError>>,
) {
    match cfg.kind {
        // epoll, not io_uring: the I/O thread spins a moment after each
        // message (`node::SPIN`), and tokio-uring hands queued writes to
        // the kernel only when its thread parks (measured: round trip over
        // TCP 190 µs spinning on io_uring, 14 µs on epoll, 46-71 µs on
        // io_uring without spinning).
        TransportKind::Tcp { .. } => with_local_runtime(ready.clone(), async move {
            match crate::tcp::TokioNet::bind(cfg.listen).await {
                Ok(net) => Node::run(net, plaintext(cfg.kind), node::SPIN, cfg, sh, ready).await,
                Err(e) => drop(ready.send(Err(e))),
            }
        }),
        // Started by `crate::start` on a thread of its own (`shm`).
        TransportKind::Shm(_) => drop(ready.send(Err(MeshError::Config(
            "the shm transport starts through owl_transport::start".into(),
        )))),
        TransportKind::Quic => with_local_runtime(ready.clone(), async move {
            match crate::quic::QuicNet::bind(&cfg) {
                Ok(net) => Node::run(net, plaintext(cfg.kind), node::SPIN, cfg, sh, ready).await,
                Err(e) => drop(ready.send(Err(e))),
            }
        }),
    }
}

/// The same, on a thread the caller drives (see `hosted`): the executor
/// exists already, so only the transport is picked and bound.
#[allow(unreachable_patterns)]
pub(crate) async fn run_hosted(
    cfg: MeshConfig,
    sh: Arc<Shared>,
    ready: Sender<Result<SocketAddr, MeshError>>,
    io_loop: IoLoop,
) {
    // TCP uses tokio's epoll sockets even on a tokio-uring host:
    // tokio-uring hands its queued operations to the kernel only when the
    // thread parks, and a host that spins for work (owl's shards) would hold
    // every write back for its whole spin (measured: remote round trip
    // 149 µs vs 20 µs for the raw socket). The threaded mesh (`start`)
    // uses epoll too, for the same reason: its I/O thread spins.
    let _ = io_loop;
    match cfg.kind {
        TransportKind::Tcp { .. } => match crate::tcp::TokioNet::bind(cfg.listen).await {
            Ok(net) => Node::run(net, plaintext(cfg.kind), Duration::ZERO, cfg, sh, ready).await,
            Err(e) => drop(ready.send(Err(e))),
        },
        TransportKind::Quic => match crate::quic::QuicNet::bind(&cfg) {
            Ok(net) => Node::run(net, plaintext(cfg.kind), Duration::ZERO, cfg, sh, ready).await,
            Err(e) => drop(ready.send(Err(e))),
        },
        kind => drop(ready.send(Err(MeshError::Config(format!(
            "the {kind:?} transport cannot be hosted on a caller's thread"
        ))))),
    }
}

fn with_local_runtime(
    ready: Sender<Result<SocketAddr, MeshError>>,
    fut: impl std::future::Future<Output = ()>,
) {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => tokio::task::LocalSet::new().block_on(&rt, fut),
        Err(e) => drop(ready.send(Err(MeshError::Setup(format!(
            "cannot build the tokio runtime: {e}"
        ))))),
    }
}

/// The driver behind [`super::request_id`], on the executor it builds.
pub(super) async fn request_id(cfg: &MeshConfig) -> Result<u32, MeshError> {
    match cfg.kind {
        TransportKind::Tcp { .. } => {
            let net = crate::tcp::TokioNet::bind(cfg.listen).await?;
            node::request_id(&net, plaintext(cfg.kind), cfg).await
        }
        TransportKind::Quic => {
            let net = crate::quic::QuicNet::bind(cfg)?;
            let id = node::request_id(&net, plaintext(cfg.kind), cfg).await;
            Net::close(&net).await;
            id
        }
        TransportKind::Shm(_) => Err(MeshError::Config(
            "an open cluster needs a socket transport (quic, tcp or tcp-plain)".into(),
        )),
    }
}
