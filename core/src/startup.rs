//! Starting a node (`Builder::build` ends here): the arena, the shard
//! threads, the mesh hosted on shard 0; and serving the cluster on nodes
//! that run no `main`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use owl_store::Arena;

use crate::config::{Builder, Config, IoPlacement, Membership};
use crate::engine::node::{registry, NodeLife, NodeShared};
use crate::engine::shard::{probe_event_loop, run_shard, EventLoopKind, Msg, ShardRemote};
use crate::error::StartError;
use crate::ids::{NodeId, ShardId};
use crate::runtime::Runtime;
use crate::spec::REMOTE_FNS;

static NEXT_SERIAL: AtomicU32 = AtomicU32::new(1);

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

impl Builder {
    /// Starts the node.
    pub fn build(self) -> Result<Runtime, StartError> {
        Runtime::start(self.into_config())
    }
}

impl Runtime {
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
        crate::object::set_routes(crate::object::Routes {
            release: crate::engine::node::release,
            demand: crate::engine::node::demand,
        });
        let (serial, arena) = create_arena(&config)?;
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
                Some(crate::engine::net::Net::new(
                    m.node,
                    serial,
                    m.nodes,
                    config.labels.clone(),
                    config.lineage_bytes,
                )),
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
            incoming: crossbeam_deque::Injector::new(),
            roots: Default::default(),
            stopping: AtomicBool::new(false),
            next_external: AtomicUsize::new(0),
        });
        registry()
            .write()
            .expect("registry lock")
            .insert(serial, Arc::downgrade(&shared));
        let owner = Arc::new(NodeLife {
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
            cfg.info = shared.net.as_ref().map(|n| Box::new(n.node_info()));
            let handler = Arc::new(crate::engine::host::NodeHandler(Arc::downgrade(&shared)));
            let mesh = match shared.config.io {
                // An I/O thread of its own, where no task runs: heartbeats,
                // incoming messages and peers' tasks never wait for a task
                // (see the decision of 2026-12-04 in docs/DESIGN.md).
                IoPlacement::Thread => owl_transport::start(cfg, handler)?,
                // On shard 0's event loop (`Shard::host_io`,
                // `Shard::host_shm`): no hand-off between the runtime and
                // the wire, but a task on shard 0 delays them all.
                IoPlacement::Shard0 => {
                    if matches!(network.transport, crate::config::Transport::Shm) {
                        let (starting, host) = owl_transport::start_shm_hosted(cfg, handler)?;
                        shared.shards[0].send(Msg::Run(Box::new(move |s| s.host_shm(host))));
                        starting.wait()?
                    } else {
                        let (starting, io) = owl_transport::start_hosted(cfg, handler)?;
                        shared.shards[0].send(Msg::Run(Box::new(move |s| s.host_io(io))));
                        starting.wait()?
                    }
                }
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
            // With the process's start time, so that `owl stop` never
            // signals another process that reuses this pid later.
            if let Err(e) = owl_launch::nodefile::write_node_file(
                path,
                shared.node.0,
                &listen,
                &shared.config.store_dir,
            ) {
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
    /// (the head of an open cluster: until the signal; a member of one
    /// whose head died: until the signal too). `#[owl::main]`
    /// calls it instead of `main` on such nodes; dropping the runtime then
    /// leaves the cluster cleanly. In a launched cluster, returns
    /// `Error::HeadLost` if the head (node 0, the driver) died rather than
    /// shutting down.
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
                && mesh.stalled().is_none()
                && ((me_head && open) || (!me_head && mesh.is_up(head.0) && !net.is_dead(head)))
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            if !me_head && !stop.raised() {
                // The transport marks the head gone before it tells the
                // node why (died or left): wait for the why.
                let t = Instant::now();
                while !net.is_dead(head)
                    && mesh.stalled().is_none()
                    && t.elapsed() < Duration::from_secs(2)
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
                // A node stopped past `dead_after` finds its connections
                // closed as it resumes, and learns that it stalled at its
                // next heartbeat round, which is overdue and runs at once:
                // give that round a moment before calling the head lost.
                let t = Instant::now();
                while net.is_dead(head)
                    && !net.has_left(head)
                    && mesh.stalled().is_none()
                    && t.elapsed() < Duration::from_millis(500)
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
                // In an open cluster the head is on no task's path and
                // the drivers are other nodes: the members keep serving
                // them. Only joins need the head. A member that finds it
                // was itself declared dead leaves instead (below).
                if open && !net.has_left(head) && mesh.stalled().is_none() {
                    let msg = format!(
                        "owl: node {}: the head (n0) died; serving the cluster's other members until stopped (owl stop). No node can join until a head is back (owl start --head starts a new cluster).",
                        self.shared.node
                    );
                    tracing::warn!("{msg}");
                    eprintln!("{msg}");
                    while !stop.raised() && mesh.stalled().is_none() {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
            if let Some(unresponsive) = mesh.stalled() {
                tracing::warn!(node = %self.shared.node, ?unresponsive, "declared dead by the cluster: leaving");
                return Err(crate::Error::DeclaredDead { unresponsive });
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
}

/// How many times [`Runtime::serve_rejoining`] joins again: a node
/// declared dead this often has a problem no rejoin solves.
const MAX_REJOINS: usize = 100;

impl Runtime {
    /// [`serve`](Runtime::serve), and in an open cluster, each time the
    /// cluster declared this node dead (it did not run for longer than
    /// `dead_after`: stopped, paused, starved), join again with `builder`
    /// as a new member (ids are never reused, so nothing addressed to the
    /// old one can reach it) and serve on. Elsewhere the same as `serve`:
    /// a launched cluster has a fixed set of ids, so the node ends with
    /// `Error::DeclaredDead`. `#[owl::main]` serves through this.
    pub fn serve_rejoining(self, builder: Builder) -> crate::Result<()> {
        let mut rt = self;
        for _ in 0..MAX_REJOINS {
            let open_member =
                rt.shared.node.0 != 0 && rt.shared.config.cluster.is_some_and(|m| m.open);
            match rt.serve() {
                Err(crate::Error::DeclaredDead { unresponsive }) if open_member => {
                    eprintln!(
                        "owl node {}: declared dead by the cluster (did not run for {unresponsive:?}); joining again as a new member",
                        rt.node()
                    );
                    drop(rt);
                    rt = builder.clone().build()?;
                    eprintln!("owl: joined again as node {}", rt.node());
                }
                other => return other,
            }
        }
        rt.serve()
    }
}

/// The node's arena, in a file named after this process and a serial;
/// arena files of processes that are gone are swept first (a node killed
/// by a signal cannot remove its own).
fn create_arena(config: &Config) -> Result<(u32, Arc<Arena>), StartError> {
    for stale in owl_store::sweep(&config.store_dir, &[]) {
        tracing::info!(path = %stale.display(), "removed the arena file of a process that is gone");
    }
    // One block slot per `inline_max` bytes: only larger values reach the arena.
    let max_blocks =
        (config.store_size / config.inline_max.max(1) as u64).clamp(1024, 1 << 20) as u32;
    let create = |name: &str| match &config.spill_dir {
        Some(spill) => Arena::with_spill(
            &config.store_dir,
            name,
            config.store_size,
            max_blocks,
            spill,
        ),
        None => Arena::create(&config.store_dir, name, config.store_size, max_blocks),
    };
    // Bounded: a taken name is either a leftover (removed, then ours) or a
    // live arena with this pid in another pid namespace (next serial).
    for _ in 0..64 {
        let serial = NEXT_SERIAL.fetch_add(1, Ordering::Relaxed);
        let name = format!("owl-{}-{}.arena", std::process::id(), serial);
        match create(&name) {
            Err(owl_store::ArenaError::Dir { source, .. })
                if source.kind() == std::io::ErrorKind::AlreadyExists =>
            {
                // This pid and a serial this process never used: a leftover
                // of a dead process with the same pid, unless its lock is held.
                let path = config.store_dir.join(&name);
                if owl_store::arena_is_orphaned(&path) {
                    tracing::info!(path = %path.display(), "removing an arena file left by a dead process");
                    let _ = std::fs::remove_file(&path);
                    if let Ok(arena) = create(&name) {
                        warn_if_no_room(config, &arena);
                        return Ok((serial, arena));
                    }
                }
            }
            other => {
                let arena = other?;
                warn_if_no_room(config, &arena);
                return Ok((serial, arena));
            }
        }
    }
    Err(StartError::Store(owl_store::ArenaError::Dir {
        dir: config.store_dir.clone(),
        source: std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "64 arena file names for this pid are taken by live arenas",
        ),
    }))
}

/// Says so when the store directory cannot hold the arena's size: the
/// node works, but objects past the filesystem's room spill (or fail).
fn warn_if_no_room(config: &Config, arena: &Arena) {
    let Some(room) = owl_store::room(&config.store_dir) else {
        return;
    };
    if room >= config.store_size {
        return;
    }
    let _ = arena;
    let then = match &config.spill_dir {
        Some(d) => format!("objects beyond that spill to {}", d.display()),
        None => "puts beyond that fail with StoreFull".into(),
    };
    let msg = format!(
        "owl: the store directory {} has room for {} MiB, less than the {} MiB object store (OWL_STORE_SIZE); {then}. Set OWL_STORE_DIR to a larger tmpfs, or OWL_STORE_SIZE to at most its room.",
        config.store_dir.display(),
        room >> 20,
        config.store_size >> 20
    );
    tracing::warn!("{msg}");
    // Logging is off unless asked for; this one is worth a line anyway.
    eprintln!("{msg}");
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
    // Several heartbeats per `dead_after`, so that one late or lost
    // heartbeat is not a death; at most one a second.
    cfg.heartbeat =
        (network.dead_after / 6).clamp(Duration::from_millis(10), Duration::from_secs(1));
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
