//! Starting a node's transport: the one entry that picks a mesh over
//! sockets (TCP, QUIC) or over shared memory, which runs its own setup
//! mesh over TCP beneath it.

use std::sync::Arc;

use crate::api::Handler;
use crate::config::{MeshConfig, MeshError, TransportKind};
use crate::mesh::Mesh;

/// Joins the cluster described by `cfg` and returns once this node is a
/// member: over sockets, connected to the head and given its member list
/// (other members are connected to when first sent to); over shm,
/// connected to every node. Fails after `connect_timeout`. The
/// mesh runs on an I/O thread of its own; see [`crate::start_hosted`] to
/// run it on a thread the caller drives.
pub fn start(cfg: MeshConfig, handler: Arc<dyn Handler>) -> Result<Arc<Mesh>, MeshError> {
    match cfg.kind {
        TransportKind::Shm(shm) => crate::shm::start(cfg, shm, handler),
        TransportKind::Tcp { .. } | TransportKind::Quic => crate::mesh::start_sockets(cfg, handler),
    }
}
