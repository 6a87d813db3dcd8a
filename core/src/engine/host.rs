//! The owner layer hosted on a running node: its context over the mesh and
//! the shard inboxes, the transport's handler that feeds it messages and
//! peer events, and the two things it asks the engine to do off the
//! calling thread (answer a fetch when a value is ready, copy a value from
//! a same-host peer's arena).

use std::sync::{Arc, Weak};
use std::task::{Wake, Waker};

use owl_proto::{OwlMsg, SharedBlock};
use owl_store::{Arena, BlockMut};
use owl_transport::proto::Msg;
use owl_transport::{Handler, PeerDown};

use crate::engine::net::Net;
use crate::engine::node::NodeShared;
use crate::engine::shard::Msg as ShardMsg;
use crate::ids::{NodeId, ObjectId, ShardId};
use crate::object::cell::ObjectCell;
use crate::object::objref::RawRef;
use crate::object::value::Stored;
use crate::owner::{Ctx, NodeCtx, Owner, TableOp};
use crate::spec::Task;

/// The owner layer's context on a running node in a cluster.
pub(crate) struct HostCtx<'a> {
    node: &'a Arc<NodeShared>,
    net: &'a Net,
}

impl<'a> HostCtx<'a> {
    /// The context of `node`, if it is part of a cluster.
    pub(crate) fn of(node: &'a Arc<NodeShared>) -> Option<HostCtx<'a>> {
        let net = node.net.as_ref()?;
        Some(HostCtx { node, net })
    }

    pub(crate) fn owner(&self) -> &'a Owner {
        &self.net.owner
    }
}

impl Ctx for HostCtx<'_> {
    fn send(&self, to: NodeId, msg: OwlMsg) {
        self.net.send(to, Msg::Owl(msg));
    }

    fn to_table(&self, shard: ShardId, op: TableOp) {
        self.node.to_shard(shard, ShardMsg::Table(op));
    }

    fn is_dead(&self, node: NodeId) -> bool {
        self.net.is_dead(node)
    }
}

impl NodeCtx for HostCtx<'_> {
    fn nodes(&self) -> u32 {
        self.net.nodes()
    }

    fn shards(&self) -> u16 {
        self.node.shards.len() as u16
    }

    fn runs(&self, node: NodeId, func: u64) -> Option<bool> {
        self.net.runs(node, func)
    }

    fn enqueue(&self, shard: Option<ShardId>, task: Task) {
        match shard {
            Some(shard) => self.node.to_shard(shard, ShardMsg::Enqueue(task)),
            None => {
                // Any shard may run it: the first free one takes it.
                self.node.incoming.push(task);
                self.node.wake_any_idle_shard();
            }
        }
    }

    fn wake_shards(&self) {
        for s in self.node.shards.iter() {
            s.wake();
        }
    }

    fn arena(&self) -> &Arc<Arena> {
        &self.node.arena
    }

    fn share(&self, stored: &Stored) -> Option<SharedBlock> {
        stored.arena_offset().map(|offset| SharedBlock {
            host: owl_store::host_id(),
            path: self.node.arena.path().to_string_lossy().into_owned(),
            offset,
        })
    }

    fn host_of(&self, node: NodeId) -> Option<u64> {
        self.net.host_of(node)
    }

    fn inline_max(&self) -> usize {
        self.node.config.inline_max
    }

    fn put(&self, value: Stored) -> Option<RawRef> {
        // Only on one of this node's shards: the object joins its table.
        let serial = self.node.serial;
        crate::engine::shard::with_current(|s| (s.shared.serial == serial).then(|| s.put(value)))
            .flatten()
    }

    fn when_ready(&self, cell: &Arc<ObjectCell>, to: NodeId) {
        let waker = Waker::from(Arc::new(FetchWaker {
            node: Arc::downgrade(self.node),
            cell: Arc::downgrade(cell),
            to,
        }));
        if !cell.wait_done(&waker) {
            self.owner().send_value(self, to, cell);
        }
    }

    fn copy_same_host(
        &self,
        id: ObjectId,
        from: NodeId,
        at: SharedBlock,
        mut block: BlockMut,
        copy: u64,
    ) {
        let node = Arc::clone(self.node);
        // On a thread of its own, so that shard 0, which hosts the
        // network, keeps serving it (heartbeats included) during a large
        // copy.
        let copy = std::thread::Builder::new()
            .name("owl-copy".into())
            .spawn(move || {
                let dir = node
                    .arena
                    .path()
                    .parent()
                    .unwrap_or(std::path::Path::new("/"));
                let path = std::path::Path::new(&at.path);
                let outcome =
                    owl_store::read_peer_arena(dir, path, at.offset, block.as_mut_slice())
                        .map(|()| block.freeze())
                        .map_err(|e| e.to_string());
                if let Some(ctx) = HostCtx::of(&node) {
                    ctx.owner().copied(&ctx, from, id, copy, outcome);
                }
            });
        if let Err(e) = copy {
            tracing::error!(object = %id, error = %e, "cannot start the copy thread");
        }
    }
}

/// Answers a standing fetch once the object is done (its value here, or
/// held by the node that made it).
struct FetchWaker {
    node: Weak<NodeShared>,
    cell: Weak<ObjectCell>,
    to: NodeId,
}

impl Wake for FetchWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let (Some(node), Some(cell)) = (self.node.upgrade(), self.cell.upgrade()) else {
            return;
        };
        if let Some(ctx) = HostCtx::of(&node) {
            ctx.owner().send_value(&ctx, self.to, &cell);
        }
    }
}

/// `gone` died (or left, when `left`): cleaned up once, however many
/// times it is reported.
pub(crate) fn node_gone(node: &Arc<NodeShared>, gone: NodeId, left: bool) {
    if let Some(ctx) = HostCtx::of(node) {
        if ctx.net.mark_gone(gone, left) {
            ctx.owner().node_gone(&ctx, gone);
        }
    }
}

/// The transport's view of a node: forwards to its owner layer while it
/// lives.
pub struct NodeHandler(pub Weak<NodeShared>);

impl Handler for NodeHandler {
    fn on_msgs(&self, from: u32, msgs: Vec<Msg>) {
        let Some(node) = self.0.upgrade() else {
            return;
        };
        let Some(ctx) = HostCtx::of(&node) else {
            return;
        };
        let from = NodeId(from);
        if ctx.net.is_dead(from) {
            // Late messages of a node declared dead are dropped: whatever it
            // owned or ran here was already cleaned up by `node_gone`.
            return;
        }
        for msg in msgs {
            let rest = match msg {
                Msg::Owl(m) => ctx.owner().on_msg(&ctx, from, m).map(Msg::Owl),
                other => Some(other),
            };
            if let Some(rest) = rest {
                ctx.net.on_peer_msg(from, rest);
            }
        }
    }

    fn on_peer_up(&self, peer: u32) {
        if let Some(node) = self.0.upgrade() {
            if let Some(net) = node.net.as_ref() {
                net.on_node_up(NodeId(peer));
            }
        }
    }

    fn on_peer_left(&self, peer: u32) {
        if let Some(node) = self.0.upgrade() {
            node_gone(&node, NodeId(peer), true);
        }
    }

    fn on_peer_down(&self, peer: u32, why: PeerDown) {
        if let Some(node) = self.0.upgrade() {
            if node.net.is_some() && !node.stopping() {
                tracing::warn!(peer, why = ?why, "node {} lost a peer", node.node);
            }
            node_gone(&node, NodeId(peer), false);
        }
    }
}
