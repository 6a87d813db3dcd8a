//! Node-wide state every shard of a node shares (inboxes, the arena, the
//! cluster side, settings), the registry through which a handle dropped on
//! any thread finds its node, and the node's shutdown when its last owning
//! handle goes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::thread::JoinHandle;

use owl_store::Arena;

use crate::config::Config;
use crate::engine::host::HostCtx;
use crate::engine::shard::{with_current, EventLoopKind, Msg, ShardRemote};
use crate::ids::{NodeId, ShardId};
use crate::object::cell::ObjectCell;
use crate::owner::TableOp;

/// Live runtimes of this process, by serial: how a handle dropped on a
/// non-shard thread finds its owner's inbox.
pub(crate) fn registry() -> &'static RwLock<HashMap<u32, Weak<NodeShared>>> {
    static REG: OnceLock<RwLock<HashMap<u32, Weak<NodeShared>>>> = OnceLock::new();
    REG.get_or_init(Default::default)
}

/// What every shard of a node shares: inboxes, stealers, the arena, settings.
pub(crate) struct NodeShared {
    pub serial: u32,
    pub node: NodeId,
    pub shards: Box<[ShardRemote]>,
    pub arena: Arc<Arena>,
    pub config: Config,
    pub event_loop: EventLoopKind,
    pub(crate) idle: AtomicUsize,
    /// Tasks parked until their arguments are ready (see `shard::parked`).
    pub parked: AtomicUsize,
    /// Tasks from other nodes, for whichever shard is free first: a task
    /// queued in one shard's inbox would wait while that shard runs a long
    /// task, however idle the others are.
    pub(crate) incoming: crossbeam_deque::Injector<crate::spec::Task>,
    /// Root futures, which any shard may poll (see `roots`).
    pub(crate) roots: crate::engine::roots::Roots,
    /// The cluster side of this node; `None` for a single node.
    pub net: Option<crate::engine::net::Net>,
    pub(crate) stopping: AtomicBool,
    /// Round-robin position for work arriving from outside the shards.
    pub(crate) next_external: AtomicUsize,
    pub(crate) cores: Vec<core_affinity::CoreId>,
}

impl NodeShared {
    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    pub(crate) fn idle_shards(&self) -> usize {
        self.idle.load(Ordering::Relaxed)
    }

    pub(crate) fn idle_change(&self, delta: isize) {
        if delta > 0 {
            self.idle.fetch_add(1, Ordering::SeqCst);
        } else {
            self.idle.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// New stealable work on shard `from`: wake one parked shard, if any.
    /// Pairs with `Shard::park` (announce, then look for work).
    ///
    /// `from` itself first: work is pushed on `from`'s thread while `from`
    /// is parked when its event loop, not its shard loop, runs the code
    /// (the node's sockets, hosted there, deliver a result that readies a
    /// task). Skipping it left a node of one shard asleep until the park's
    /// 50 ms bound, on every such hop.
    pub(crate) fn wake_idle_shard(&self, from: ShardId) {
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.idle.load(Ordering::SeqCst) == 0 {
            return;
        }
        let n = self.shards.len();
        for i in 0..n {
            let s = &self.shards[(from.0 as usize + i) % n];
            if s.parked.load(Ordering::SeqCst) {
                s.notify.notify_one();
                return;
            }
        }
    }

    /// Work any shard may take arrived: wake one parked shard, if any
    /// (a busy or spinning shard looks at `incoming` by itself).
    pub(crate) fn wake_any_idle_shard(&self) {
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.idle.load(Ordering::SeqCst) == 0 {
            return;
        }
        if let Some(s) = self.shards.iter().find(|s| s.parked.load(Ordering::SeqCst)) {
            s.notify.notify_one();
        }
    }

    pub(crate) fn pin_core(&self, shard: ShardId) -> Option<core_affinity::CoreId> {
        if !self.config.pin || self.cores.is_empty() {
            return None;
        }
        // Nodes sharing a host (owl run, several ranks per host) take
        // consecutive cores rather than all starting at core 0.
        let slot = self.node.0 as usize * self.shards.len() + shard.0 as usize;
        Some(self.cores[slot % self.cores.len()])
    }

    /// The next shard, round-robin, for work arriving from outside the
    /// shards (a non-shard thread, another node).
    pub(crate) fn next_shard(&self) -> ShardId {
        let n = self.next_external.fetch_add(1, Ordering::Relaxed) % self.shards.len();
        ShardId(n as u16)
    }

    /// Sends `msg` to one of this node's shards.
    pub(crate) fn to_shard(&self, shard: ShardId, msg: Msg) {
        if let Some(s) = self.shards.get(shard.0 as usize) {
            s.send(msg);
        }
    }

    /// The end of a handle group on this node, from any thread.
    fn release_group(self: &Arc<Self>, cell: &Arc<ObjectCell>) {
        let id = cell.id();
        if id.node != self.node {
            if let Some(ctx) = HostCtx::of(self) {
                ctx.owner().group_ended(&ctx, cell);
            }
        } else {
            self.to_shard(id.shard, Msg::Table(TableOp::Release(id)));
        }
    }
}

/// The release route (`object::release`): the end of a node's handle group
/// goes to the owning shard or, for a proxy of another node's object, to
/// that owner.
pub(crate) fn release(cell: &Arc<ObjectCell>) {
    let (rt, id) = (cell.rt, cell.id());
    let done = with_current(|s| {
        if s.shared.serial != rt {
            return false;
        }
        if s.id == id.shard && id.node == s.shared.node {
            s.release(id);
        } else {
            s.shared.release_group(cell);
        }
        true
    });
    if done == Some(true) {
        return;
    }
    let node = registry()
        .read()
        .expect("registry lock")
        .get(&rt)
        .and_then(Weak::upgrade);
    // A runtime that is gone has freed its tables already.
    if let Some(node) = node {
        node.release_group(cell);
    }
}

/// The demand route (`object::demand`): a reader waits for a value of this
/// node's that another node holds; the owner layer brings it here.
pub(crate) fn demand(cell: &Arc<ObjectCell>) {
    let node = registry()
        .read()
        .expect("registry lock")
        .get(&cell.rt)
        .and_then(Weak::upgrade);
    if let Some(node) = node {
        if let Some(ctx) = HostCtx::of(&node) {
            ctx.owner().demand(&ctx, cell);
        }
    }
}

/// Shuts the node down when the last owning handle goes.
pub(crate) struct NodeLife {
    pub(crate) shared: Arc<NodeShared>,
    pub(crate) threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for NodeLife {
    fn drop(&mut self) {
        // First, while shard 0 still drives it: peers are told this node
        // leaves cleanly, and what is queued for them is flushed.
        if let Some(mesh) = self.shared.net.as_ref().and_then(|n| n.mesh()) {
            mesh.shutdown();
        }
        self.shared.stopping.store(true, Ordering::Release);
        for s in self.shared.shards.iter() {
            s.notify.notify_one();
        }
        registry()
            .write()
            .expect("registry lock")
            .remove(&self.shared.serial);
        // A shard thread cannot join itself; it exits on its own.
        let on_own_shard = with_current(|s| s.shared.serial == self.shared.serial) == Some(true);
        if !on_own_shard {
            let threads = std::mem::take(&mut *self.threads.lock().expect("threads lock"));
            for t in threads {
                let _ = t.join();
            }
        }
        if let Some(path) = self.shared.config.node_file.as_ref() {
            let _ = std::fs::remove_file(path);
        }
    }
}
