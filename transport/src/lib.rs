//! owl-transport: the network between owl nodes (one OS process per node,
//! nodes `0..n`, node 0 the head).
//!
//! Layers, each usable alone:
//! - [`proto`] — sans-IO: typed [`proto::Msg`]s encoded with rkyv (validated
//!   once on receipt), frames `u32 LE len | u64 LE seq | payload [| tag]`
//!   sealed with AES-256-GCM, and a versioned HMAC-SHA256 handshake
//!   proving knowledge of the 32-byte cluster secret. No sockets, threads,
//!   clock or randomness; tests run two endpoints in memory.
//! - [`mesh`] — the API the runtime uses: [`Link::send`] to queue,
//!   [`Handler`] to receive, [`start`] to join a cluster and get a [`Mesh`]
//!   (those types live in `api` and `config`). Under it: `peer` (each peer's
//!   queue and state, shared by the runtime's threads and the I/O thread,
//!   for every driver), `mesh::select` (the one place a [`TransportKind`]
//!   picks a driver and executor) and `mesh::node` (the socket engine:
//!   connect, membership, per-peer reader and paced writer, heartbeats).
//! - drivers, behind `driver`'s traits (listen, accept, dial, byte
//!   streams): TCP (tokio, epoll), QUIC (quinn, TLS 1.3, mutual auth under a CA derived
//!   from the secret); shm, shared-memory rings on one host with a TCP mesh
//!   as its control plane; and [`sim`], an in-process network with a manual
//!   clock and fault injection running the same codec.
//!
//! Invariants:
//! - Per-peer FIFO: messages `send` queues for one peer are delivered to its
//!   `Handler::on_msgs` in that order, on the receiver's single I/O thread.
//! - Batching: `send` takes a short per-peer mutex and wakes the I/O thread
//!   only when the queue goes from empty to non-empty; the writer drains the
//!   whole queue into one frame (split past `max_frame`), except bulk data
//!   (object chunks and values), which goes out about 1 MiB per write.
//! - Trust boundary: bytes from a socket are length-checked before buffering,
//!   authenticated (sealed sessions), sequence-checked (duplicate dropped, gap
//!   fatal) and rkyv-validated exactly once; a failure closes that connection
//!   only. A peer with the wrong secret, version or identity is refused with a
//!   `tracing::warn!` (repeats limited per source), and the node keeps
//!   running. Before that, connections are admitted under caps per source
//!   and in all, with a short deadline (`gate`).
//! - Liveness: every `heartbeat` a node beats to its 3 watchers, the next
//!   live nodes after it on the ring of ids ([`detect`]), and to the head,
//!   which beats to every node: a node sends and checks at most 4
//!   heartbeats a period at any cluster size (the head, one per node). A
//!   watched peer silent for `dead_after`, or any peer whose connection
//!   drops, is reported once through `on_peer_down`; a watcher that found
//!   a silence tells the head, the head announces every death (`NodeDead`)
//!   to all, every node decides for itself that the head is gone, and late
//!   messages from a dead node are dropped. A peer that sent
//!   `Shutdown` is never reported down: it is reported once through
//!   `on_peer_left`, after its last message.
//! - Open clusters (`MeshConfig::open`): the head hands out ids that are
//!   never reused ([`request_id`]); peer tables grow under readers
//!   ([`slots::Slots`]); `on_peer_up` reports each peer as it connects.
//! - `WireValue::bytes` arrives in an unaligned `Vec<u8>`: receivers copy it
//!   into 16-byte aligned memory before `rkyv::access` (see [`proto::msg`]).
//!
//! Threads: one I/O thread per node (`owl-io-<node>`), which runs every
//! socket and calls the handler; no other thread hops. Hosted meshes
//! ([`start_hosted`] for sockets, [`start_shm_hosted`] for shared memory)
//! run on a thread the caller drives instead, which then calls the handler
//! (shm keeps its TCP control mesh on `owl-io-<node>`, and a doorbell
//! bridge thread that sleeps while the host is not parked).
// `deny`, not `forbid`: `shm::ring` (raw pointers into shared mappings) is
// the one module allowed unsafe code; every other module forbids it.
#![deny(unsafe_code)]

pub mod proto;

/// A node's index in the cluster, `0..nodes`; node 0 is the head.
pub type NodeIdx = u32;

// Lower modules first: each uses only those above it (except that `peer`
// holds shm's control `Mesh`, and shm, a driver selected by `mesh`, runs a
// TCP mesh as its control plane).
mod api;
mod config;
pub mod detect;
mod driver;
mod entry;
mod gate;
mod peer;
pub mod slots;

mod quic;
mod tcp;

pub mod mesh;
mod shm;
pub mod sim;

pub use api::{Handler, Link, PeerDown};
pub use config::{MeshConfig, MeshError, ShmConfig, TransportKind};
pub use entry::start;
pub use mesh::{request_id, start_hosted, IoLoop, IoTask, Mesh, Starting};
pub use peer::{has_room, SPILL_BACKLOG};
pub use shm::host::{start_shm_hosted, ShmArm, ShmHost, Wake};
