//! The runtime: builder, node-wide shared state, and the user API.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use owl_store::{Arena, ArenaStats};

use crate::cell::ObjectCell;
use crate::config::{Builder, Config, Membership};
use crate::error::{PutError, StartError, SubmitError, TaskErrorKind};
use crate::ids::{NodeId, ShardId};
use crate::objref::{ObjectRef, RawRef};
use crate::shard::{
    probe_event_loop, run_shard, with_current, EventLoopKind, LeakCounts, Msg, Shard, ShardRemote,
};
use crate::task::{Call, CallOpts, FnInfo, REMOTE_FNS};
use crate::value::{store, Stored, Value};

static NEXT_SERIAL: AtomicU32 = AtomicU32::new(1);

/// Live runtimes of this process, by serial: how a handle dropped on a
/// non-shard thread finds its owner's inbox.
fn registry() -> &'static RwLock<HashMap<u32, Weak<NodeShared>>> {
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
    idle: AtomicUsize,
    /// Tasks parked until their arguments are ready (see `shard::parked`).
    pub parked: AtomicUsize,
    /// The cluster side of this node; `None` for a single node.
    pub net: Option<crate::net::Net>,
    stopping: AtomicBool,
    next_external: AtomicUsize,
    cores: Vec<core_affinity::CoreId>,
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
    pub(crate) fn wake_idle_shard(&self, from: ShardId) {
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.idle.load(Ordering::SeqCst) == 0 {
            return;
        }
        let n = self.shards.len();
        for i in 1..n {
            let s = &self.shards[(from.0 as usize + i) % n];
            if s.parked.load(Ordering::SeqCst) {
                s.notify.notify_one();
                return;
            }
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

    /// Sends `msg` to one of this node's shards.
    pub(crate) fn to_shard(&self, shard: ShardId, msg: Msg) {
        if let Some(s) = self.shards.get(shard.0 as usize) {
            s.send(msg);
        }
    }

    /// The end of a handle group on this node, from any thread.
    fn release_group(&self, cell: &Arc<ObjectCell>) {
        let id = cell.id();
        if id.node != self.node {
            if let Some(net) = self.net.as_ref() {
                net.release_borrowed(cell);
            }
        } else {
            self.to_shard(id.shard, Msg::Release(id));
        }
    }
}

/// Routes the end of a node's handle group to the owning shard, or for a
/// proxy of another node's object, to that owner.
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

/// Shuts the node down when the last owning handle goes.
struct Owner {
    shared: Arc<NodeShared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Owner {
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

/// A handle to an owl node. Cheap to clone.
///
/// The handle returned by [`Builder::build`] (and its clones) owns the node:
/// when the last of them drops, the shards stop and their threads are
/// joined. Handles obtained inside tasks ([`runtime`], injected `Runtime`
/// parameters) do not keep the node alive.
#[derive(Clone)]
pub struct Runtime {
    shared: Arc<NodeShared>,
    _owner: Option<Arc<Owner>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("node", &self.shared.node)
            .field("shards", &self.shared.shards.len())
            .field("event_loop", &self.shared.event_loop)
            .finish()
    }
}

/// The runtime of the task running on this thread (inside tasks only).
pub fn runtime() -> Option<Runtime> {
    with_current(|s| Runtime {
        shared: Arc::clone(&s.shared),
        _owner: None,
    })
}

fn check_registry() -> Result<(), StartError> {
    let mut seen: HashMap<u64, &'static str> = HashMap::new();
    for f in REMOTE_FNS.iter() {
        if let Some(prev) = seen.insert(f.id.0, f.path) {
            if prev != f.path {
                return Err(StartError::DuplicateFunctionId {
                    id: f.id.0,
                    a: prev,
                    b: f.path,
                });
            }
        }
    }
    Ok(())
}

impl Runtime {
    pub fn builder() -> Builder {
        Builder::new()
    }

    pub(crate) fn start(config: Config) -> Result<Runtime, StartError> {
        if config.shards == 0 {
            return Err(StartError::ZeroShards);
        }
        if config.shards > u16::MAX as usize {
            return Err(StartError::Env {
                var: "OWL_SHARDS",
                value: config.shards.to_string(),
                why: format!("at most {} shards per node", u16::MAX),
            });
        }
        check_registry()?;
        let serial = NEXT_SERIAL.fetch_add(1, Ordering::Relaxed);
        let name = format!("owl-{}-{}.arena", std::process::id(), serial);
        // One block slot per `inline_max` bytes: only larger values reach the arena.
        let max_blocks =
            (config.store_size / config.inline_max.max(1) as u64).clamp(1024, 1 << 20) as u32;
        let arena = Arena::create(&config.store_dir, &name, config.store_size, max_blocks)?;
        let probed = probe_event_loop();
        let event_loop = match config.event_loop {
            Some(EventLoopKind::IoUring) if probed != EventLoopKind::IoUring => {
                return Err(StartError::IoUringUnavailable)
            }
            Some(kind) => kind,
            None => probed,
        };
        let workers: Vec<_> = (0..config.shards)
            .map(|_| crossbeam_deque::Worker::new_fifo())
            .collect();
        let shards = workers
            .iter()
            .map(|w| ShardRemote::new(w.stealer()))
            .collect();
        let mut config = config;
        if let (Some(m), Some(network)) = (config.cluster.as_mut(), config.network.as_ref()) {
            if m.open && m.node == Membership::UNASSIGNED {
                let mut cfg = mesh_config(network, *m);
                cfg.shards = config.shards as u32;
                m.node = NodeId(owl_transport::request_id(&cfg)?);
                m.nodes = m.node.0 + 1;
                tracing::info!(node = %m.node, head = %network.head, "joining an open cluster");
            }
        }
        let (node, net) = match config.cluster {
            Some(m) => (
                m.node,
                Some(crate::net::Net::new(m.node, m.nodes, config.labels.clone())),
            ),
            None => (NodeId(0), None),
        };
        let shared = Arc::new(NodeShared {
            serial,
            node,
            net,
            shards,
            arena,
            cores: if config.pin {
                core_affinity::get_core_ids().unwrap_or_default()
            } else {
                Vec::new()
            },
            config,
            event_loop,
            idle: AtomicUsize::new(0),
            parked: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            next_external: AtomicUsize::new(0),
        });
        registry()
            .write()
            .expect("registry lock")
            .insert(serial, Arc::downgrade(&shared));
        let owner = Arc::new(Owner {
            shared: Arc::clone(&shared),
            threads: Mutex::new(Vec::new()),
        });
        for (i, fifo) in workers.into_iter().enumerate() {
            let id = ShardId(i as u16);
            let node = Arc::clone(&shared);
            let t = std::thread::Builder::new()
                .name(format!("owl-shard-{i}"))
                .spawn(move || run_shard(id, node, fifo, event_loop))
                .map_err(|source| StartError::Thread {
                    shard: i as u16,
                    source,
                })?;
            owner.threads.lock().expect("threads lock").push(t);
        }
        if let (Some(network), Some(m)) = (shared.config.network.clone(), shared.config.cluster) {
            let mut cfg = mesh_config(&network, m);
            cfg.shards = shared.shards.len() as u32;
            let handler = Arc::new(crate::net::NodeHandler(Arc::downgrade(&shared)));
            // Meshes run on shard 0's event loop (`Shard::host_io`,
            // `Shard::host_shm`): no I/O thread, no wake-up between the
            // runtime and the wire; shard 0 polls sockets or rings as it
            // spins.
            let mesh = if matches!(network.transport, crate::config::Transport::Shm) {
                let (starting, host) = owl_transport::start_shm_hosted(cfg, handler)?;
                shared.shards[0].send(Msg::Run(Box::new(move |s| s.host_shm(host))));
                starting.wait()?
            } else {
                let (starting, io) = owl_transport::start_hosted(cfg, handler)?;
                shared.shards[0].send(Msg::Run(Box::new(move |s| s.host_io(io))));
                starting.wait()?
            };
            if let Some(net) = shared.net.as_ref() {
                net.connect_mesh(mesh);
                net.wait_labels(network.connect_timeout);
            }
        }
        if let Some(path) = shared.config.node_file.as_ref() {
            let listen = shared
                .net
                .as_ref()
                .and_then(|n| n.mesh())
                .map(|m| m.local_addr().to_string())
                .unwrap_or_default();
            let text = format!(
                "node={}\naddress={listen}\npid={}\n",
                shared.node.0,
                std::process::id()
            );
            if let Err(e) = std::fs::write(path, text) {
                tracing::warn!(path = %path.display(), error = %e, "cannot write the node file");
            }
        }
        tracing::info!(
            node = %shared.node,
            shards = shared.shards.len(),
            event_loop = %event_loop,
            store = %shared.arena.path().display(),
            "owl node started"
        );
        Ok(Runtime {
            shared,
            _owner: Some(owner),
        })
    }

    /// The event loop the shards run on (io_uring when the kernel allows).
    pub fn event_loop(&self) -> EventLoopKind {
        self.shared.event_loop
    }

    pub fn shards(&self) -> usize {
        self.shared.shards.len()
    }

    pub fn node(&self) -> NodeId {
        self.shared.node
    }

    /// Nodes in this node's cluster (1 when it is not part of one); in an
    /// open cluster, the ids known so far (gone nodes included).
    pub fn nodes(&self) -> u32 {
        self.shared.net.as_ref().map_or(1, |n| n.nodes())
    }

    /// Every node of the cluster as this node sees it (this one included):
    /// up or gone, labels, program, last reported load. Empty outside a
    /// cluster.
    pub fn members(&self) -> Vec<crate::net::Member> {
        self.shared
            .net
            .as_ref()
            .map(crate::net::Net::members)
            .unwrap_or_default()
    }

    /// Where this node's transport listens (the real port when port 0 was
    /// asked for); `None` outside a networked cluster.
    pub fn listen_addr(&self) -> Option<std::net::SocketAddr> {
        let net = self.shared.net.as_ref()?;
        net.mesh().map(|m| m.local_addr())
    }

    /// Whether this node serves tasks instead of running the program's
    /// `main` (see [`Config::worker`]); `#[owl::main]` asks this.
    pub fn serves(&self) -> bool {
        match self.shared.config.cluster {
            None => false,
            Some(m) if !m.open => self.shared.node.0 != 0,
            Some(_) => self.shared.config.worker.unwrap_or(self.shared.node.0 == 0),
        }
    }

    /// On a node that [`serves`](Runtime::serves): runs tasks for the
    /// cluster until the head leaves or the process gets SIGTERM or SIGINT
    /// (the head of an open cluster: until the signal). `#[owl::main]`
    /// calls it instead of `main` on such nodes; dropping the runtime then
    /// leaves the cluster cleanly. Returns `Error::HeadLost` if the head
    /// died rather than shutting down.
    pub fn serve(&self) -> crate::Result<()> {
        let Some(net) = self.shared.net.as_ref() else {
            return Ok(());
        };
        let head = NodeId(0);
        let stop = StopSignals::install();
        if let Some(mesh) = net.mesh() {
            // The head of an open cluster serves until it is told to stop;
            // the head of a launched one has nothing to wait for.
            let me_head = self.shared.node == head;
            let open = self.shared.config.cluster.is_some_and(|m| m.open);
            while !stop.raised()
                && ((me_head && open) || (!me_head && mesh.is_up(head.0) && !net.is_dead(head)))
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            if !me_head && !stop.raised() {
                // The transport marks the head gone before it tells the
                // node why (died or left): wait for the why.
                let t = Instant::now();
                while !net.is_dead(head) && t.elapsed() < Duration::from_secs(2) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        if stop.raised() {
            tracing::info!(node = %self.shared.node, "stop signal: leaving the cluster");
        } else if net.is_dead(head) && !net.has_left(head) {
            return Err(crate::Error::HeadLost);
        }
        self.check_leaks_if_asked();
        Ok(())
    }

    /// With `OWL_CHECK_LEAKS` set, asserts that nothing is left on this node
    /// (`#[owl::main]` calls it when `main` returns; tests of whole programs
    /// set the variable).
    #[doc(hidden)]
    pub fn check_leaks_if_asked(&self) {
        if std::env::var_os("OWL_CHECK_LEAKS").is_some() {
            self.assert_no_leaks();
        }
    }

    /// Tells this node that `peer` died, as its transport would on a lost
    /// connection or missed heartbeats: tasks it ran for us are retried or
    /// failed, our proxies of its objects fail with `OwnerDied`, and its
    /// borrows of our objects are released. For fault-injection tests.
    #[doc(hidden)]
    pub fn peer_down(&self, peer: NodeId) {
        if let Some(net) = self.shared.net.as_ref() {
            net.on_node_dead(&self.shared, peer);
        }
    }

    pub(crate) fn shared(&self) -> &Arc<NodeShared> {
        &self.shared
    }

    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Runs `f` on this thread's shard if it belongs to this runtime, else
    /// on a shard picked round-robin, waiting for the answer.
    fn on_shard<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Shard) -> R + Send + 'static,
    ) -> Option<R> {
        let mut f = Some(f);
        let local = with_current(|s| {
            if s.shared.serial == self.shared.serial {
                Some((f.take().expect("called once"))(s))
            } else {
                None
            }
        })
        .flatten();
        if local.is_some() {
            return local;
        }
        if self.shared.stopping() {
            return None;
        }
        let f = f.expect("not used yet");
        let n =
            self.shared.next_external.fetch_add(1, Ordering::Relaxed) % self.shared.shards.len();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.shared.shards[n].send(Msg::Run(Box::new(move |s| {
            let _ = tx.send(f(s));
        })));
        rx.recv().ok()
    }

    /// Stores a value as a new object owned by the caller.
    pub fn put<T: Value>(&self, value: T) -> Result<ObjectRef<T>, PutError> {
        let stored = store(&value, &self.shared.arena, self.shared.config.inline_max)?;
        self.put_stored(stored).map(ObjectRef::from_raw)
    }

    fn put_stored(&self, stored: Stored) -> Result<RawRef, PutError> {
        self.on_shard(move |s| s.put(stored))
            .ok_or(PutError::Shutdown)
    }

    /// Submits a call (used by `#[owl::remote]`'s generated code).
    #[doc(hidden)]
    pub fn submit<R>(
        &self,
        func: &'static FnInfo,
        mut call: Box<dyn Call>,
        opts: Option<CallOpts>,
    ) -> Result<ObjectRef<R>, SubmitError> {
        if self.shared.stopping() {
            return Err(SubmitError::Shutdown);
        }
        let opts = opts.filter(|o| *o != CallOpts::default()).map(Box::new);
        if opts.as_ref().is_some_and(|o| o.retries_app_errors()) {
            call.keep_args(&self.shared.arena, self.shared.config.inline_max)
                .map_err(|source| SubmitError::Arg {
                    task: opts
                        .as_ref()
                        .and_then(|o| o.name.as_deref())
                        .unwrap_or(func.name)
                        .to_string(),
                    source,
                })?;
        }
        self.on_shard(move |s| s.submit(func, call, opts))
            .map(ObjectRef::from_raw)
            .ok_or(SubmitError::Shutdown)
    }

    /// Waits until `n` of `refs` are ready (or `timeout` passes); returns
    /// (ready, pending), each in the order given. Inside a task this yields.
    pub async fn wait<T>(
        &self,
        refs: &[ObjectRef<T>],
        n: usize,
        timeout: Option<Duration>,
    ) -> (Vec<ObjectRef<T>>, Vec<ObjectRef<T>>) {
        let n = n.min(refs.len());
        let waiting =
            crate::wait::WaitFuture::new(refs.iter().map(|r| Arc::clone(r.cell())).collect(), n);
        match timeout {
            Some(t) => {
                let _ = tokio::time::timeout(t, waiting).await;
            }
            None => waiting.await,
        }
        refs.iter().cloned().partition(|r| r.is_ready())
    }

    /// `wait` for code outside tasks: blocks the calling thread.
    pub fn wait_blocking<T>(
        &self,
        refs: &[ObjectRef<T>],
        n: usize,
        timeout: Option<Duration>,
    ) -> (Vec<ObjectRef<T>>, Vec<ObjectRef<T>>) {
        let n = n.min(refs.len());
        let cells = refs.iter().map(|r| Arc::clone(r.cell())).collect();
        crate::wait::wait_blocking(cells, n, timeout);
        refs.iter().cloned().partition(|r| r.is_ready())
    }

    /// Cancels the task producing `r` and every task it submitted: pending
    /// ones never run, running async ones are dropped at their next
    /// suspension, and `get` returns `GetError::Cancelled`. A sync function
    /// already running finishes, but its result is discarded. Returns whether
    /// the object was still pending.
    pub fn cancel<T>(&self, r: &ObjectRef<T>) -> bool {
        let node = self.shared.node;
        let name = |c: &crate::cell::ObjectCell| {
            let id = c.id();
            Arc::new(crate::error::TaskError {
                kind: TaskErrorKind::Cancelled,
                task: format!("{id}"),
                object: id,
                node,
                shard: id.shard,
                attempts: 0,
            })
        };
        let was_pending = r.cell().cancel(&name);
        if let Some(net) = self.shared.net.as_ref() {
            net.cancel_remote();
        }
        // Wake the owner so it drops suspended work promptly.
        for s in self.shared.shards.iter() {
            s.wake();
        }
        was_pending
    }

    /// Runs `f(runtime)` as a root task on shard 0 and blocks until it
    /// finishes. This is how `#[owl::main]` runs `main`: everything it
    /// submits is owned by shard 0 and takes the fast, local path.
    pub fn block_on<F, Fut, R>(&self, f: F) -> R
    where
        F: FnOnce(Runtime) -> Fut + Send + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: Send + 'static,
    {
        assert!(
            !crate::shard::on_shard_thread(),
            "block_on called inside an owl task; await the future instead"
        );
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let handle = Runtime {
            shared: Arc::clone(&self.shared),
            _owner: None,
        };
        self.shared.shards[0].send(Msg::Run(Box::new(move |s| {
            let fut = f(handle);
            let root = async move {
                let _ = tx.send(fut.await);
            };
            s.start_future(None, crate::shard::Fut::Root(Box::pin(root)));
        })));
        match rx.recv() {
            Ok(r) => r,
            Err(_) => panic!("the future passed to block_on panicked or the runtime shut down; see the log above"),
        }
    }

    /// Every shard's leftovers and the arena's usage, once quiet.
    pub fn leak_report(&self) -> LeakReport {
        let mut shards = Vec::new();
        for i in 0..self.shared.shards.len() {
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            self.shared.shards[i].send(Msg::Run(Box::new(move |s| {
                s.check_table();
                let _ = tx.send(s.leak_counts());
            })));
            shards.push(rx.recv().unwrap_or_default());
        }
        LeakReport {
            node: self.shared.node,
            shards,
            parked_tasks: self.shared.parked.load(Ordering::Relaxed),
            net: self
                .shared
                .net
                .as_ref()
                .map(crate::net::Net::leaks)
                .unwrap_or_default(),
            arena: self.shared.arena.stats(),
        }
    }

    /// Asserts that every table, queue and the arena are empty: the end of a
    /// finished workload in tests. Releases may still be in flight between
    /// shards, so it waits up to two seconds for the node to go quiet.
    ///
    /// # Panics
    /// If anything is left, with the per-shard counts; or when called on a
    /// shard thread.
    pub fn assert_no_leaks(&self) {
        assert!(
            !crate::shard::on_shard_thread(),
            "assert_no_leaks must be called outside owl tasks"
        );
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let report = self.leak_report();
            if report.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                panic!("owl leak check failed: {report:#?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The arena's usage.
    pub fn store_stats(&self) -> ArenaStats {
        self.shared.arena.stats()
    }
}

/// What `leak_report` found.
#[derive(Debug, Clone)]
pub struct LeakReport {
    pub node: NodeId,
    pub shards: Vec<LeakCounts>,
    /// Cross-node state: proxies, exports, remote tasks, pulls.
    pub net: crate::net::NetLeaks,
    /// Tasks waiting for arguments, node-wide.
    pub parked_tasks: usize,
    pub arena: ArenaStats,
}

impl LeakReport {
    pub fn is_empty(&self) -> bool {
        self.parked_tasks == 0
            && self.net.is_empty()
            && self.shards.iter().all(LeakCounts::is_empty)
            && self.arena.live_blocks == 0
            && self.arena.used_bytes == 0
    }
}

/// The transport settings of a node's mesh.
fn mesh_config(
    network: &crate::config::Network,
    m: crate::config::Membership,
) -> owl_transport::MeshConfig {
    let kind = match network.transport {
        crate::config::Transport::Quic => owl_transport::TransportKind::Quic,
        crate::config::Transport::Tcp => owl_transport::TransportKind::Tcp { plaintext: false },
        crate::config::Transport::TcpPlaintext => {
            owl_transport::TransportKind::Tcp { plaintext: true }
        }
        crate::config::Transport::Shm => {
            owl_transport::TransportKind::Shm(owl_transport::ShmConfig::default())
        }
    };
    let mut cfg = owl_transport::MeshConfig::new(
        m.node.0,
        m.nodes,
        network.listen,
        network.head,
        network.secret,
    );
    cfg.kind = kind;
    cfg.open = m.open;
    cfg.connect_timeout = network.connect_timeout;
    // Shard 0 hosts the mesh and also runs tasks: a long synchronous task
    // there delays its heartbeats, so silence must last much longer than
    // any heartbeat gap before a node is declared dead (a closed
    // connection is still noticed at once).
    cfg.heartbeat = Duration::from_secs(1);
    cfg.dead_after = network.dead_after;
    cfg
}

/// SIGTERM and SIGINT caught while a node serves, so that it leaves the
/// cluster cleanly (peers see it leave, not die); the handlers are
/// removed again when this is dropped.
struct StopSignals {
    raised: Arc<AtomicBool>,
    ids: Vec<signal_hook::SigId>,
}

impl StopSignals {
    fn install() -> Self {
        let raised = Arc::new(AtomicBool::new(false));
        let ids = [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT]
            .into_iter()
            .filter_map(|sig| signal_hook::flag::register(sig, Arc::clone(&raised)).ok())
            .collect();
        StopSignals { raised, ids }
    }

    fn raised(&self) -> bool {
        self.raised.load(Ordering::Relaxed)
    }
}

impl Drop for StopSignals {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}
