//! What the runtime programs against: [`Link`] to send, [`Handler`] to
//! receive, and [`PeerDown`] for why a peer went away. Every transport (the
//! socket mesh, shm, the simulator) speaks exactly these.

use std::time::Duration;

use crate::proto::{FrameError, Msg};

/// Receives what the transport delivers. Called on the transport's single
/// I/O thread (a hosted mesh's host thread): keep it short (hand work to
/// shards), never block on the network from inside it.
pub trait Handler: Send + Sync + 'static {
    /// A batch from `from`, in the order the peer sent them. Heartbeats are
    /// delivered too (they carry the peer's load); `Join`, `Members`,
    /// `NodeDead`, `NodeLeft` and `Shutdown` are consumed by the transport.
    /// (`ShmSetup` travels only on the shm driver's own control mesh.)
    fn on_msgs(&self, from: u32, msgs: Vec<Msg>);
    /// `peer` is gone: reported at most once per peer, never for a peer that
    /// left with `Shutdown`, never after this node's own shutdown began.
    fn on_peer_down(&self, peer: u32, why: PeerDown);
    /// `peer` is connected: messages to it go out from now on. Reported
    /// once per peer, when the connection is made (socket meshes open one
    /// when either side first sends; shm connects every pair at start).
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
    /// It could not be connected to within `connect_timeout` (connections
    /// are opened when first needed).
    Unreachable(String),
    /// The simulator crashed it.
    Crashed,
}
