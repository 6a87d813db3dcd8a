//! The engine: what runs the owner layer's decisions on real threads and
//! sockets. Shards (one pinned thread per core with its event loop, table
//! and queues), the node-wide state they share, and the node's part in a
//! cluster (`net`: the owner layer's context over the mesh and the shard
//! inboxes).

pub(crate) mod host;
pub(crate) mod net;
pub(crate) mod node;
pub(crate) mod roots;
pub(crate) mod shard;
