//! The owner layer message by message, through a context that records
//! every action: exact sends, table updates, tasks queued, and
//! handle-group ends. `refs` covers counting across nodes, `tasks` the
//! tasks placed elsewhere and run here for others, `fetch` values moving
//! whole or in chunks, each with the failures that can hit it.

mod deaths;
mod fetch;
mod held;
mod refs;
mod tasks;

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use owl_proto::{OwlMsg, SharedBlock};
use owl_store::{Arena, BlockMut};

use super::refs::Refs;
use super::{Ctx, NodeCtx, TableOp};
use crate::error::TaskErrorKind;
use crate::ids::{NodeId, ObjectId, ShardId};
use crate::object::cell::ObjectCell;
use crate::object::objref::RawRef;
use crate::owner::table::{OwnershipTable, Released};
use crate::spec::Task;

#[derive(Debug, PartialEq)]
enum Action {
    Send(NodeId, OwlMsg),
    Table(ShardId, TableOp),
    /// A task queued here: (shard asked for, its object, its attempt).
    Enqueue(Option<ShardId>, ObjectId, u32),
    WakeShards,
    /// A standing fetch: the value goes to the node once ready.
    WhenReady(ObjectId, NodeId),
    /// A same-host copy started: (its object, its number).
    CopySameHost(ObjectId, u64),
    /// A value made an object of this node (a large argument).
    Put(ObjectId),
}

/// Shards per node the recorder reports.
const SHARDS: u16 = 2;

struct Recorder {
    actions: RefCell<Vec<Action>>,
    /// The tasks queued, in order (their actions say where).
    queued: RefCell<Vec<Task>>,
    dead: RefCell<BTreeSet<NodeId>>,
    /// Nodes that die (as this node learns) when something is sent to
    /// them, their death handled before what was sent stood.
    dies_on_send: RefCell<BTreeSet<NodeId>>,
    nodes: u32,
    /// Nodes that do not run the program's functions.
    foreign: RefCell<BTreeSet<NodeId>>,
    /// Objects made by `put` so far.
    puts: std::cell::Cell<u32>,
    /// The blocks of same-host copies started, in order.
    copies: RefCell<Vec<BlockMut>>,
    /// Nodes' host ids (unknown if absent).
    hosts: RefCell<std::collections::HashMap<NodeId, u64>>,
    arena: Arc<Arena>,
    _dir: tempfile::TempDir,
}

impl Default for Recorder {
    fn default() -> Recorder {
        let dir = tempfile::tempdir().expect("temp dir");
        let arena = Arena::create(dir.path(), "owner-test", 64 << 20, 1024).expect("arena");
        Recorder {
            actions: RefCell::default(),
            queued: RefCell::default(),
            hosts: RefCell::default(),
            dead: RefCell::default(),
            dies_on_send: RefCell::default(),
            nodes: 4,
            foreign: RefCell::default(),
            puts: std::cell::Cell::new(0),
            copies: RefCell::default(),
            arena,
            _dir: dir,
        }
    }
}

impl Recorder {
    fn take(&self) -> Vec<Action> {
        std::mem::take(&mut self.actions.borrow_mut())
    }

    fn take_queued(&self) -> Vec<Task> {
        std::mem::take(&mut self.queued.borrow_mut())
    }
}

impl NodeCtx for Recorder {
    fn nodes(&self) -> u32 {
        self.nodes
    }
    fn shards(&self) -> u16 {
        SHARDS
    }
    fn runs(&self, node: NodeId, _func: u64) -> Option<bool> {
        Some(!self.foreign.borrow().contains(&node))
    }
    fn enqueue(&self, shard: Option<ShardId>, task: Task) {
        let action = Action::Enqueue(shard, task.cell.id(), task.attempt);
        self.actions.borrow_mut().push(action);
        self.queued.borrow_mut().push(task);
    }
    fn wake_shards(&self) {
        self.actions.borrow_mut().push(Action::WakeShards);
    }
    fn arena(&self) -> &Arc<Arena> {
        &self.arena
    }
    fn share(&self, stored: &crate::object::value::Stored) -> Option<SharedBlock> {
        stored.arena_offset().map(|offset| SharedBlock {
            host: 1,
            path: "owner-test".into(),
            offset,
        })
    }
    fn host_of(&self, node: NodeId) -> Option<u64> {
        self.hosts.borrow().get(&node).copied()
    }
    fn inline_max(&self) -> usize {
        1024
    }
    fn put(&self, value: crate::object::value::Stored) -> Option<RawRef> {
        let id = id(N0, 1000 + self.puts.get());
        self.puts.set(self.puts.get() + 1);
        self.actions.borrow_mut().push(Action::Put(id));
        Some(RawRef::adopt(Arc::new(ObjectCell::ready(
            id, SERIAL, 1, value,
        ))))
    }
    fn when_ready(&self, cell: &Arc<ObjectCell>, to: NodeId) {
        self.actions
            .borrow_mut()
            .push(Action::WhenReady(cell.id(), to));
    }
    fn copy_same_host(
        &self,
        id: ObjectId,
        _from: NodeId,
        _at: SharedBlock,
        block: BlockMut,
        copy: u64,
    ) {
        self.actions
            .borrow_mut()
            .push(Action::CopySameHost(id, copy));
        self.copies.borrow_mut().push(block);
    }
}

impl Ctx for Recorder {
    fn send(&self, to: NodeId, msg: OwlMsg) {
        self.actions.borrow_mut().push(Action::Send(to, msg));
        if self.dies_on_send.borrow().contains(&to) {
            self.dead.borrow_mut().insert(to);
        }
    }
    fn to_table(&self, shard: ShardId, op: TableOp) {
        self.actions.borrow_mut().push(Action::Table(shard, op));
    }
    fn is_dead(&self, node: NodeId) -> bool {
        self.dead.borrow().contains(&node)
    }
}

thread_local! {
    static ENDED: RefCell<Vec<ObjectId>> = const { RefCell::new(Vec::new()) };
}

fn record_end(cell: &Arc<ObjectCell>) {
    ENDED.with(|e| e.borrow_mut().push(cell.id()));
}

/// Handle groups that ended on this thread since the last call.
fn ended() -> Vec<ObjectId> {
    ENDED.with(|e| std::mem::take(&mut *e.borrow_mut()))
}

/// Routes this thread's group ends to [`ended`] for the test's duration.
struct Routed;

impl Routed {
    fn new() -> Routed {
        crate::object::set_thread_routes(Some(crate::object::Routes {
            release: record_end,
            // Owner tests call `Owner::demand` themselves.
            demand: |_| {},
        }));
        ended();
        Routed
    }
}

impl Drop for Routed {
    fn drop(&mut self) {
        crate::object::set_thread_routes(None);
    }
}

const SERIAL: u32 = 0x5000_0000;
const N0: NodeId = NodeId(0);
const N1: NodeId = NodeId(1);
const N2: NodeId = NodeId(2);
const N3: NodeId = NodeId(3);

fn id(node: NodeId, index: u32) -> ObjectId {
    ObjectId {
        node,
        shard: ShardId(0),
        index,
        gen: index,
    }
}

/// A handle to an object, as the owner's table or a proxy would make it.
fn handle(id: ObjectId) -> RawRef {
    RawRef::adopt(Arc::new(ObjectCell::new(id, SERIAL, 1)))
}

fn add(object: ObjectId, borrower: NodeId, lender: NodeId) -> OwlMsg {
    OwlMsg::AddBorrower {
        object: object.into(),
        borrower: borrower.0,
        count: 1,
        lender: lender.0,
    }
}

fn remove(object: ObjectId, borrower: NodeId, count: u32) -> OwlMsg {
    OwlMsg::RemoveBorrower {
        object: object.into(),
        borrower: borrower.0,
        count,
    }
}
