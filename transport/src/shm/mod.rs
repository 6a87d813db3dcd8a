//! Same-host driver: frames go through single-producer single-consumer byte
//! rings in shared memory instead of sockets.
//!
//! Control plane, unchanged: every node first joins an ordinary mesh over
//! encrypted TCP (join via the head, `Members`, the handshake proving the
//! cluster secret) on a thread of its own (`owl-io-<node>` as well). Over it
//! ([`Msg::ShmSetup`](crate::proto::Msg::ShmSetup), see [`setup`]) the head
//! sends a random 128-bit cluster id, and each node creates its *inbox*
//! `owl-<id>-<node>.inbox` (mode 0600, `O_EXCL`) under `/dev/shm` (or
//! `MeshConfig::shm_dir`, `$OWL_STORE_DIR`, the temporary directory), says
//! "ready", maps every peer's inbox and says "mapped"; once all peers
//! have mapped its inbox a node unlinks it, so nothing stays in `/dev/shm`
//! after start-up, however the processes end later. An inbox holds the
//! owner's doorbell and one ring per peer (so one ring per ordered pair of
//! nodes); grouping a node's incoming rings in one file lets its I/O thread
//! sleep on one futex word for all of them (layout in [`ring`]).
//!
//! Data plane ([`driver`]): the proto's plaintext frames (same encoder and
//! decoder, so sequence checks apply). A pass polls the incoming rings,
//! drains the runtime's per-peer queues into outgoing rings and sends
//! heartbeats. [`crate::start`] runs passes on one I/O thread per node that
//! spins `ShmConfig::spin` after the last work, then sleeps on its
//! doorbell's futex (see [`ring::Bell::sleep`] for why no wake-up is lost);
//! [`start_shm_hosted`](host::start_shm_hosted) leaves them to a thread the
//! caller drives ([`host::ShmHost`]), woken through a bridge thread that
//! sleeps on the doorbell only while the host is parked.
//! Heartbeats go through the rings; a peer is reported down once, on
//! heartbeat silence, a corrupt ring or frame, or its control connection
//! closing (a dead process's sockets close; its mappings do not tell).
//!
//! Trust boundary: memory on one host. Any process of the same user can open
//! the inbox files while they exist (the names carry the cluster id, sent
//! only over the authenticated, encrypted control connections, so other
//! clusters never collide), and such a process could also ptrace ours; frames
//! are therefore not sealed. Bytes read from a ring are copied out and go
//! through the frame decoder's length, sequence and rkyv checks, like bytes
//! from a socket; ring indices from the other side are bounds-checked.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::Arc;

use crate::config::{MeshConfig, MeshError, ShmConfig};
use crate::peer::Shared;

mod driver;
pub(crate) mod host;
#[allow(unsafe_code)]
mod ring;
mod setup;

/// Ring sizes as the ring layout needs them.
fn normalize(shm: ShmConfig) -> ShmConfig {
    ShmConfig {
        ring_bytes: shm.ring_bytes.max(ring::MIN_RING).next_power_of_two(),
        ..shm
    }
}

/// Runs on the node's I/O thread: sets up the rings, reports ready, runs
/// the driver until shutdown.
/// A mesh whose data plane is shared memory, on an I/O thread of its own.
pub(crate) fn start(
    cfg: MeshConfig,
    shm: ShmConfig,
    handler: Arc<dyn crate::Handler>,
) -> Result<Arc<crate::Mesh>, MeshError> {
    crate::config::check_config(&cfg)?;
    let shared = Arc::new(Shared::new(&cfg, handler));
    crate::mesh::spawn_io_thread(cfg, shared, move |cfg, sh, ready| {
        run_io_thread(cfg, shm, sh, ready)
    })
}

fn run_io_thread(
    cfg: MeshConfig,
    shm: ShmConfig,
    sh: Arc<Shared>,
    ready: Sender<Result<SocketAddr, MeshError>>,
) {
    let shm = normalize(shm);
    match setup::setup(&cfg, shm, &sh) {
        Ok(s) => {
            let addr = s.control.local_addr();
            let driver = driver::Driver::new(cfg, shm, sh.clone(), s); // peers are up
            let driver = Arc::new(parking_lot::Mutex::new(driver));
            let weak = Arc::downgrade(&driver);
            let _ = sh.help.set(Box::new(move || driver::help(&weak)));
            let _ = ready.send(Ok(addr));
            driver::Driver::run(driver);
        }
        Err(e) => drop(ready.send(Err(e))),
    }
}

/// Where inboxes are created.
fn dir(cfg: &MeshConfig) -> PathBuf {
    if let Some(d) = &cfg.shm_dir {
        return d.clone();
    }
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        return shm.to_path_buf();
    }
    match std::env::var_os("OWL_STORE_DIR") {
        Some(d) => PathBuf::from(d),
        None => std::env::temp_dir(),
    }
}

fn inbox_path(dir: &Path, cluster: &[u8; 16], node: u32) -> PathBuf {
    let hex: String = cluster.iter().map(|b| format!("{b:02x}")).collect();
    dir.join(format!("owl-{hex}-{node}.inbox"))
}
