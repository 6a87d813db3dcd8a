//! owl-transport: the network between owl nodes.
#![forbid(unsafe_code)]

pub mod proto;

/// A node's index in the cluster, `0..nodes`; node 0 is the head.
pub type NodeIdx = u32;

pub mod mesh;
mod quic;
pub mod sim;
mod tcp;

pub use mesh::{start, Handler, Link, Mesh, MeshConfig, MeshError, PeerDown, TransportKind};
