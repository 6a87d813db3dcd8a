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
//! Parts: reference counting across nodes ([`refs`]: who counts a ref
//! that travels, proxies of objects owned elsewhere, the export index);
//! tasks placed on other nodes and tasks run here for others ([`tasks`]);
//! values moving between nodes, whole or pulled in chunks ([`fetch`]); the
//! one retry policy ([`retry`]); and what a node's death does to each
//! ([`Owner::node_gone`]). [`Owner`] is one node's state across them and
//! routes every ownership message to its handler ([`Owner::on_msg`]).

mod fetch;
mod located;
pub(crate) mod refs;
mod replicas;
pub(crate) mod retry;
pub(crate) mod table;
mod tasks;
mod wire;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Weak};

use owl_proto::{OwlMsg, SharedBlock};
use owl_store::{Arena, BlockMut};
use parking_lot::Mutex;

use crate::ids::{NodeId, ObjectId, ShardId};
use crate::object::cell::ObjectCell;
use crate::object::objref::RawRef;
use crate::object::value::Stored;
use crate::spec::{FnInfo, Task};

pub(crate) use tasks::RemoteTask;

/// Updates the owner layer hands to a shard's table (defined with the
/// table, which applies them).
pub(crate) use table::TableOp;

/// How the owner layer acts on the world.
pub(crate) trait Ctx {
    /// Queues `msg` for node `to`. Messages to one node arrive in the order
    /// sent; messages to a dead node are dropped.
    fn send(&self, to: NodeId, msg: OwlMsg);
    /// Hands `op` to the ownership table of this node's shard `shard`,
    /// applied there in order with that shard's other table updates.
    fn to_table(&self, shard: ShardId, op: TableOp);
    /// Whether `node` is known gone (died or left).
    fn is_dead(&self, node: NodeId) -> bool;
}

/// What tasks and values need of the world besides [`Ctx`].
pub(crate) trait NodeCtx: Ctx {
    /// Nodes known (ids `0..nodes()`).
    fn nodes(&self) -> u32;
    /// This node's shards (ids `0..shards()`).
    fn shards(&self) -> u16;
    /// Whether `node` runs function `func`; `None` while unknown.
    fn runs(&self, node: NodeId, func: u64) -> Option<bool>;
    /// Queues `task` on this node: on `shard`, or where the engine
    /// chooses.
    fn enqueue(&self, shard: Option<ShardId>, task: Task);
    /// Cells were completed off their shards (a cancel): let every shard
    /// look at its tasks again.
    fn wake_shards(&self);
    /// The node's object store, where values from other nodes land.
    fn arena(&self) -> &Arc<Arena>;
    /// Where a reader on this host finds `stored` (a block of this node's
    /// arena file), to copy it once instead of pulling it in chunks.
    fn share(&self, stored: &Stored) -> Option<SharedBlock>;
    /// The id of `node`'s host (as `SharedBlock::host`); `None` while
    /// unknown.
    fn host_of(&self, node: NodeId) -> Option<u64>;
    /// Makes `value` an object owned by this node (by the calling shard);
    /// `None` off a shard thread.
    fn put(&self, value: Stored) -> Option<RawRef>;
    /// Values up to this size live inline rather than in the arena.
    fn inline_max(&self) -> usize;
    /// Calls [`Owner::send_value`] for `to` once `cell` is ready.
    fn when_ready(&self, cell: &Arc<ObjectCell>, to: NodeId);
    /// Copies a same-host peer's (`from`'s) block `at` into `block`, off
    /// the calling thread, then calls [`Owner::copied`] with the block.
    /// `copy` numbers it for [`Owner::copied`].
    fn copy_same_host(
        &self,
        id: ObjectId,
        from: NodeId,
        at: SharedBlock,
        block: BlockMut,
        copy: u64,
    );
}

/// One node's part in the ownership protocol: its refs that cross nodes,
/// its tasks running elsewhere and the tasks it runs for others, and the
/// values it is pulling. Shared by every thread of the node; each map
/// sits behind its own short lock.
pub(crate) struct Owner {
    me: NodeId,
    refs: refs::Refs,
    /// Tasks owned here running on other nodes.
    remote: Mutex<HashMap<ObjectId, RemoteTask>>,
    /// Tasks running here for other nodes (their cells), for `Cancel`.
    executing: Mutex<HashMap<ObjectId, Weak<ObjectCell>>>,
    /// Large values being pulled into this node's arena.
    pulls: Mutex<HashMap<ObjectId, fetch::Pull>>,
    /// Results of tasks run here for other nodes, too large for one
    /// message, kept until their owner has pulled them (`Release`).
    held: Mutex<HashMap<ObjectId, Arc<ObjectCell>>>,
    /// Which of `held` are copies readers here kept (see
    /// `Owner::reader_holds`): dropped when the arena has no room.
    cached: Mutex<std::collections::HashSet<ObjectId>>,
    /// Results of tasks owned here that their executors hold, with the
    /// tasks that made them (see [`located`]).
    located: Mutex<located::Locations>,
    /// `located`'s size, read without its lock on every freed object.
    located_count: AtomicUsize,
    /// The functions this node runs, for calls from other nodes.
    fns: HashMap<u64, &'static FnInfo>,
    /// Values larger than this travel in chunks of this size (and a call's
    /// inline arguments share this budget).
    chunk: usize,
    /// Same-host copies started, to number them.
    copies: AtomicU64,
    /// Readers sent to copies of replicated puts so far, to take turns.
    turns: AtomicUsize,
}

/// What an [`Owner`] still holds; all zero after a finished workload
/// (the leak report's `net`, as `NetLeaks`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OwnerCounts {
    /// Proxies of objects owned by other nodes.
    pub borrowed: usize,
    /// Objects owned here that other nodes may still refer to.
    pub exports: usize,
    /// Holds on refs lent to other nodes, and registrations of refs lent
    /// to this one, not yet answered by the owner.
    pub lent: usize,
    /// Tasks owned here still running on other nodes.
    pub remote_tasks: usize,
    /// Tasks running here for other nodes.
    pub executing: usize,
    /// Large values still being pulled.
    pub pulls: usize,
    /// Results held here until their owners pulled them.
    pub held: usize,
    /// Results of tasks owned here held by other nodes.
    pub located: usize,
}

impl OwnerCounts {
    pub fn is_empty(&self) -> bool {
        *self == OwnerCounts::default()
    }
}

impl Owner {
    /// `serial` is the runtime serial new proxy cells carry (their
    /// release route); `fns` the functions calls from other nodes may run
    /// (the program's `REMOTE_FNS`).
    pub(crate) fn new(
        me: NodeId,
        serial: u32,
        fns: impl IntoIterator<Item = &'static FnInfo>,
    ) -> Owner {
        Owner {
            me,
            refs: refs::Refs::new(me, serial),
            remote: Mutex::new(HashMap::new()),
            executing: Mutex::new(HashMap::new()),
            pulls: Mutex::new(HashMap::new()),
            held: Mutex::new(HashMap::new()),
            cached: Mutex::new(std::collections::HashSet::new()),
            located: Mutex::new(located::Locations::new(located::LINEAGE_BYTES)),
            located_count: AtomicUsize::new(0),
            fns: fns.into_iter().map(|f| (f.id.0, f)).collect(),
            chunk: fetch::CHUNK,
            copies: AtomicU64::new(0),
            turns: AtomicUsize::new(0),
        }
    }

    /// Sets the lineage budget (`OWL_LINEAGE_BYTES`).
    pub(crate) fn with_lineage_budget(self, bytes: usize) -> Owner {
        self.located.lock().set_budget(bytes);
        self
    }

    /// Lineage bytes kept (task specs of results held elsewhere).
    #[cfg(test)]
    pub(crate) fn lineage_bytes(&self) -> usize {
        self.located.lock().lineage_bytes()
    }

    /// Sets the chunk size (the deterministic cluster's values are small,
    /// so it moves them in small chunks to follow every pull).
    pub(crate) fn with_chunk(mut self, chunk: usize) -> Owner {
        self.chunk = chunk.max(1);
        self
    }

    pub(crate) fn refs(&self) -> &refs::Refs {
        &self.refs
    }

    pub(crate) fn counts(&self) -> OwnerCounts {
        let (borrowed, exports, lent) = self.refs.counts();
        OwnerCounts {
            borrowed,
            exports,
            lent,
            remote_tasks: self.remote.lock().len(),
            executing: self.executing.lock().len(),
            pulls: self.pulls.lock().len(),
            held: self.held.lock().len(),
            located: self.located.lock().len(),
        }
    }

    /// Handles one ownership message from `from`. Returns the message
    /// when it is not one (membership and load are the engine's).
    pub(crate) fn on_msg(&self, ctx: &impl NodeCtx, from: NodeId, msg: OwlMsg) -> Option<OwlMsg> {
        let id = wire::id;
        match msg {
            OwlMsg::Submit {
                object,
                func,
                name,
                priority,
                max_retries,
                retry_on_error,
                args,
            } => self.on_submit(
                ctx,
                from,
                id(&object),
                func,
                tasks::SubmitOpts {
                    name,
                    priority,
                    max_retries,
                    retry_on_error,
                },
                args,
            ),
            OwlMsg::TaskHeld {
                object,
                len,
                refs,
                shared,
            } => self.on_task_held(ctx, from, id(&object), len, refs, shared),
            OwlMsg::Release { object } => self.on_release(id(&object)),
            OwlMsg::TaskDone { object, outcome } => {
                self.on_task_done(ctx, from, id(&object), outcome)
            }
            OwlMsg::AddBorrower {
                object,
                borrower,
                count,
                lender,
            } => self.refs.on_borrow(
                ctx,
                id(&object),
                NodeId(borrower),
                count as i32,
                Some(NodeId(lender)),
            ),
            OwlMsg::Lent {
                object,
                borrower,
                count,
            } => self.refs.on_lent(id(&object), NodeId(borrower), count),
            OwlMsg::Registered {
                object,
                lender,
                count,
            } => self
                .refs
                .on_registered(ctx, id(&object), NodeId(lender), count),
            OwlMsg::RemoveBorrower {
                object,
                borrower,
                count,
            } => self
                .refs
                .on_borrow(ctx, id(&object), NodeId(borrower), -(count as i32), None),
            OwlMsg::Fetch { object, lost } => {
                self.on_fetch(ctx, from, id(&object), lost.map(NodeId))
            }
            OwlMsg::Value { object, outcome } => self.on_value(ctx, from, id(&object), outcome),
            OwlMsg::ValueHeader {
                object,
                len,
                holder,
                refs,
                shared,
            } => {
                let at = fetch::At {
                    len,
                    holder: NodeId(holder),
                    shared,
                };
                self.on_value_header(ctx, from, id(&object), at, refs)
            }
            OwlMsg::Pull {
                object,
                offset,
                len,
            } => self.on_pull(ctx, from, id(&object), offset, len),
            OwlMsg::Chunk {
                object,
                offset,
                data,
            } => self.on_chunk(ctx, from, id(&object), offset, data),
            OwlMsg::Cancel { object } => self.on_cancel(ctx, id(&object)),
            OwlMsg::Replicate {
                object,
                holder,
                len,
            } => self.on_replicate(ctx, from, id(&object), NodeId(holder), len),
            OwlMsg::Replicated { object, ok, shared } => {
                self.on_replicated(ctx, from, id(&object), ok, shared)
            }
            other => return Some(other),
        }
        None
    }

    /// What a thread registered for `node` (a task sent there, a pull from
    /// it) after checking it lives may stand after `node`'s death was
    /// handled, by another thread, in between: it is handled again, which
    /// finds only what came after (each part takes its entries out of
    /// their table, so nothing is handled twice).
    pub(crate) fn recheck_gone(&self, ctx: &impl NodeCtx, node: NodeId) {
        if ctx.is_dead(node) {
            self.node_gone(ctx, node);
        }
    }

    /// `dead` is gone (died or left), told once: the tasks it ran for us
    /// are retried here or failed, and so are those whose results it held;
    /// our proxies of its objects fail (fate-sharing), its borrows of ours
    /// are released, pulls from it fail or go back to the owner, and what
    /// runs here for it is cancelled.
    pub(crate) fn node_gone(&self, ctx: &impl NodeCtx, dead: NodeId) {
        if dead == self.me {
            return;
        }
        self.tasks_lost(ctx, dead);
        self.holders_lost(ctx, dead);
        self.refs.owner_gone(dead);
        self.refs.node_gone(ctx, dead);
        self.fail_pulls_from(ctx, dead);
        self.orphans_cancelled(ctx, dead);
        for shard in 0..ctx.shards() {
            ctx.to_table(ShardId(shard), TableOp::NodeGone(dead));
        }
    }
}

#[cfg(test)]
mod tests;
