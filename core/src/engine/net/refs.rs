//! The engine's side of cross-node refs: the owner layer's [`Ctx`] over
//! the mesh and the shard inboxes, and the `Net` entry points the rest of
//! the engine calls, each handing over to `owner::refs`.

use std::sync::Arc;

use owl_transport::proto::{Msg, WireId};

use super::Net;
use crate::engine::node::NodeShared;
use crate::engine::shard::Msg as ShardMsg;
use crate::ids::{NodeId, ObjectId, ShardId};
use crate::object::cell::ObjectCell;
use crate::object::objref::RawRef;
use crate::owner::{Ctx, TableOp};

/// The owner layer's context on a running node.
pub(crate) struct NetCtx<'a> {
    net: &'a Net,
    node: &'a NodeShared,
}

impl Ctx for NetCtx<'_> {
    fn send(&self, to: NodeId, msg: Msg) {
        self.net.send(to, msg);
    }

    fn to_table(&self, shard: ShardId, op: TableOp) {
        self.node.to_shard(shard, ShardMsg::Table(op));
    }

    fn is_dead(&self, node: NodeId) -> bool {
        self.net.is_dead(node)
    }
}

impl Net {
    pub(crate) fn ctx<'a>(&'a self, node: &'a NodeShared) -> NetCtx<'a> {
        NetCtx { net: self, node }
    }

    /// Registers the receiver of a ref about to be sent; returns its id.
    pub(crate) fn ship_ref(&self, node: &NodeShared, to: NodeId, r: &RawRef) -> WireId {
        self.refs.ship(&self.ctx(node), to, r)
    }

    /// The handle for a ref that arrived from node `from`.
    pub(crate) fn resolve(&self, node: &NodeShared, id: ObjectId, from: NodeId) -> RawRef {
        self.refs.resolve(&self.ctx(node), id, from)
    }

    /// The end of this node's handle group of an object owned elsewhere.
    pub(crate) fn release_borrowed(&self, node: &NodeShared, cell: &Arc<ObjectCell>) {
        self.refs.group_ended(&self.ctx(node), cell);
    }

    /// A shard applied `op` to its table (see `Refs::table_applied`).
    pub(crate) fn table_applied(&self, op: TableOp, released: &crate::owner::table::Released) {
        self.refs.table_applied(op, released);
    }

    pub(super) fn export_cell(&self, id: ObjectId) -> Option<Arc<ObjectCell>> {
        self.refs.export_cell(id)
    }

    pub(crate) fn proxy(&self, id: ObjectId) -> Option<Arc<ObjectCell>> {
        self.refs.proxy(id)
    }

    pub(super) fn on_borrow(
        &self,
        node: &NodeShared,
        id: ObjectId,
        borrower: NodeId,
        delta: i32,
        lender: Option<NodeId>,
    ) {
        self.refs
            .on_borrow(&self.ctx(node), id, borrower, delta, lender);
    }
}
