//! The owner layer: the ownership protocol as state machines over events,
//! with no threads, sockets, clock or runtime inside (sans-IO).
//!
//! Everything a handler does to the world goes through a [`Ctx`]: messages
//! to other nodes, updates to an ownership table owned by one of this
//! node's shards, and the question whether a node is gone. The engine
//! implements `Ctx` over the mesh and the shard inboxes
//! (`net::NetCtx`); the deterministic cluster (`testkit::det`) implements
//! it over seeded in-memory queues, so a failing seed replays exactly.
//!
//! Built so far: reference counting across nodes ([`refs`]): who counts a
//! ref that travels, proxies of objects owned elsewhere, the export index,
//! and what a node's death releases. Remote tasks, fetches and pulls still
//! live in `net/` and move here next (see docs/DESIGN.md).

pub(crate) mod refs;
pub(crate) mod retry;
pub(crate) mod table;

use owl_transport::proto::Msg;

use crate::ids::{NodeId, ShardId};

/// Updates the owner layer hands to a shard's table (defined with the
/// table, which applies them).
pub(crate) use table::TableOp;

/// How the owner layer acts on the world.
pub(crate) trait Ctx {
    /// Queues `msg` for node `to`. Messages to one node arrive in the order
    /// sent; messages to a dead node are dropped.
    fn send(&self, to: NodeId, msg: Msg);
    /// Hands `op` to the ownership table of this node's shard `shard`,
    /// applied there in order with that shard's other table updates.
    fn to_table(&self, shard: ShardId, op: TableOp);
    /// Whether `node` is known gone (died or left).
    fn is_dead(&self, node: NodeId) -> bool;
}

#[cfg(test)]
mod tests;
