//! What a deterministic node's owner layer sees of the world: a context
//! that records every action for the cluster to apply.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::sync::Arc;

use owl_proto::{OwlMsg, SharedBlock};
use owl_store::{Arena, BlockMut};

use crate::ids::{NodeId, ObjectId, ShardId};
use crate::object::cell::ObjectCell;
use crate::object::objref::RawRef;
use crate::owner::{Ctx, NodeCtx, TableOp};
use crate::spec::Task;

/// Values up to this size stay inline: the cluster's values never touch
/// the arena.
pub(super) const INLINE_MAX: usize = 4096;

/// What a node's owner layer did through its context.
pub(super) enum Out {
    Send(NodeId, OwlMsg),
    Table(TableOp),
    /// A task to run on this node.
    Enqueue(Task),
    /// A standing fetch: the value goes to the node once the cell is ready.
    WhenReady(Arc<ObjectCell>, NodeId),
}

pub(super) struct DetCtx<'a> {
    pub out: &'a RefCell<Vec<Out>>,
    pub noticed: &'a BTreeSet<NodeId>,
    pub nodes: u32,
    pub arena: &'a Arc<Arena>,
}

impl Ctx for DetCtx<'_> {
    fn send(&self, to: NodeId, msg: OwlMsg) {
        self.out.borrow_mut().push(Out::Send(to, msg));
    }

    fn to_table(&self, shard: ShardId, op: TableOp) {
        debug_assert_eq!(shard, ShardId(0), "one shard per node");
        self.out.borrow_mut().push(Out::Table(op));
    }

    fn is_dead(&self, node: NodeId) -> bool {
        self.noticed.contains(&node)
    }
}

impl NodeCtx for DetCtx<'_> {
    fn nodes(&self) -> u32 {
        self.nodes
    }

    fn shards(&self) -> u16 {
        1
    }

    fn runs(&self, _node: NodeId, _func: u64) -> Option<bool> {
        Some(true)
    }

    fn enqueue(&self, _shard: Option<ShardId>, task: Task) {
        self.out.borrow_mut().push(Out::Enqueue(task));
    }

    fn wake_shards(&self) {}

    fn arena(&self) -> &Arc<Arena> {
        self.arena
    }

    fn host_of(&self, _: NodeId) -> Option<u64> {
        None
    }
    fn share(&self, _: &crate::object::value::Stored) -> Option<SharedBlock> {
        None // every value moves through the links
    }

    fn inline_max(&self) -> usize {
        INLINE_MAX
    }

    fn put(&self, _: crate::object::value::Stored) -> Option<RawRef> {
        unreachable!("the deterministic cluster's arguments are never large")
    }

    fn when_ready(&self, cell: &Arc<ObjectCell>, to: NodeId) {
        self.out
            .borrow_mut()
            .push(Out::WhenReady(Arc::clone(cell), to));
    }

    fn copy_same_host(&self, id: ObjectId, _: NodeId, _: SharedBlock, _: BlockMut, _: u64) {
        unreachable!("{id}: the deterministic cluster's values are never large")
    }
}
