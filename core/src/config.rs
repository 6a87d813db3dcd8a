//! Node settings: `Config`, and the `Builder` that fills it from code and
//! from `OWL_*` variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::StartError;

/// Settings of a node, from the builder and `OWL_*` variables.
#[derive(Debug, Clone)]
pub struct Config {
    pub shards: usize,
    pub pin: bool,
    pub spin: Duration,
    /// The longest a parked shard sleeps without a wake-up (default 50 ms):
    /// a backstop, which also hides a lost wake-up; tests lengthen it to
    /// find them.
    pub park_bound: Duration,
    pub store_dir: PathBuf,
    pub store_size: u64,
    /// Where arena blocks spill when the store is full (`OWL_SPILL_DIR`;
    /// default: `spill` in owl's state directory). `None`: never spill.
    pub spill_dir: Option<PathBuf>,
    pub inline_max: usize,
    /// Bytes of task specs kept as lineage for results held on other
    /// nodes (`OWL_LINEAGE_BYTES`, default 1 GiB); past it the oldest are
    /// evicted, and their results can no longer be rebuilt.
    pub lineage_bytes: u64,
    pub event_loop: Option<EventLoopKind>,
    /// This node's labels, for placement constraints (`CallOpts::label`).
    pub labels: Vec<String>,
    /// This node's place in a cluster; `None` for a single node.
    pub cluster: Option<Membership>,
    /// How it reaches the other nodes (`None`: linked in-process, or alone).
    pub network: Option<Network>,
    /// Whether this node serves tasks rather than running the program's
    /// `main` (`#[owl::main]` asks [`crate::Runtime::serves`]); `None`: node 0
    /// of a launched cluster runs main, the others serve; the head of an
    /// open cluster serves, nodes joining it run main (`OWL_ROLE`).
    pub worker: Option<bool>,
    /// Written once the node is connected (`node=ID`, `address=LISTEN`,
    /// `pid=PID`, `store=DIR` lines) and removed when it stops: how `owl start` learns
    /// that a node it launched is up (`OWL_NODE_FILE`).
    pub node_file: Option<PathBuf>,
    /// Where the node's network I/O and heartbeats run (`OWL_IO`).
    pub io: IoPlacement,
}

/// Where a node serves its network (sockets or rings) and heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoPlacement {
    /// On an I/O thread of its own, where no task runs (`OWL_IO=thread`):
    /// a long or blocking task never delays heartbeats or incoming
    /// messages. The default.
    #[default]
    Thread,
    /// On shard 0's event loop, between its tasks (`OWL_IO=shard`): a
    /// remote round trip saves the hand-offs to and from the I/O thread,
    /// but a task that runs on shard 0 for longer than `dead_after` gets
    /// the node declared dead, and messages wait while shard 0 runs a task.
    Shard0,
}

/// Which wire nodes talk over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// QUIC (TLS 1.3, mutual authentication under the cluster's CA): the
    /// default between hosts.
    Quic,
    /// TCP (io_uring), frames encrypted with a key from the handshake.
    Tcp,
    /// TCP without encryption (the handshake still authenticates): for a
    /// trusted fabric only.
    TcpPlaintext,
    /// Nodes on one host: rings in shared memory (joining and liveness go
    /// over an encrypted TCP control mesh). Shard 0 polls the rings as it
    /// spins, as it polls sockets for the other transports.
    Shm,
}

impl std::str::FromStr for Transport {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "quic" => Ok(Transport::Quic),
            "tcp" => Ok(Transport::Tcp),
            "tcp-plain" => Ok(Transport::TcpPlaintext),
            "shm" => Ok(Transport::Shm),
            _ => Err("expected `quic`, `tcp`, `tcp-plain` or `shm`".into()),
        }
    }
}

/// How a node joins a cluster over the network.
#[derive(Clone)]
pub struct Network {
    /// Where this node listens (port 0: any free port; the head listens on `head`).
    pub listen: SocketAddr,
    /// Node 0's address.
    pub head: SocketAddr,
    /// The cluster secret every node shares.
    pub secret: [u8; 32],
    pub transport: Transport,
    /// How long start-up waits for every node to join.
    pub connect_timeout: Duration,
    /// Silence after which a peer is declared dead (default
    /// [`Network::DEAD_AFTER`]; a closed connection is noticed at once).
    /// Every node should use the same.
    pub dead_after: Duration,
}

impl Network {
    /// The default silence after which a peer is declared dead. Short,
    /// because heartbeats run on the I/O thread, which no task can block,
    /// and because over QUIC nothing else tells a peer that a process was
    /// killed or hung; not shorter, so that a node starved of CPU on a
    /// loaded machine for a moment is not declared dead.
    pub const DEAD_AFTER: Duration = Duration::from_secs(3);

    /// A network with default timeouts (60 s to join, dead after
    /// [`Network::DEAD_AFTER`] of silence).
    pub fn new(
        listen: SocketAddr,
        head: SocketAddr,
        secret: [u8; 32],
        transport: Transport,
    ) -> Self {
        Network {
            listen,
            head,
            secret,
            transport,
            connect_timeout: Duration::from_secs(60),
            dead_after: Self::DEAD_AFTER,
        }
    }
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("listen", &self.listen)
            .field("head", &self.head)
            .field("transport", &self.transport)
            .field("connect_timeout", &self.connect_timeout)
            .field("dead_after", &self.dead_after)
            .finish_non_exhaustive()
    }
}

/// A node's place in a cluster of `nodes` nodes numbered from 0 (the head).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Membership {
    pub node: crate::ids::NodeId,
    pub nodes: u32,
    /// An open cluster (`owl start`): nodes join and leave while it runs;
    /// `nodes` is only what is known at start, and a joining node's id
    /// is [`Membership::UNASSIGNED`] until the head gives it one at start.
    pub open: bool,
}

impl Membership {
    /// The id of a node joining an open cluster before the head assigned one.
    pub const UNASSIGNED: crate::ids::NodeId = crate::ids::NodeId(owl_transport::proto::UNASSIGNED);
}

impl Default for Config {
    fn default() -> Self {
        Config {
            shards: std::thread::available_parallelism().map_or(1, |n| n.get()),
            pin: true,
            spin: Duration::from_micros(50),
            park_bound: Duration::from_millis(50),
            store_dir: owl_store::default_store_dir(),
            store_size: 4 << 30,
            spill_dir: Some(owl_store::default_spill_dir()),
            inline_max: 64 << 10,
            lineage_bytes: 1 << 30,
            event_loop: None,
            labels: Vec::new(),
            cluster: None,
            network: None,
            worker: None,
            node_file: None,
            io: IoPlacement::Thread,
        }
    }
}

/// Configures and starts a [`Runtime`].
#[derive(Debug, Clone, Default)]
pub struct Builder {
    config: Config,
}

fn env_parse<T: std::str::FromStr>(var: &'static str, why: &str) -> Result<Option<T>, StartError> {
    match std::env::var(var) {
        Ok(v) => v.trim().parse().map(Some).map_err(|_| StartError::Env {
            var,
            value: v,
            why: why.into(),
        }),
        Err(_) => Ok(None),
    }
}

impl Builder {
    pub fn new() -> Self {
        Builder::default()
    }

    /// Applies `OWL_SHARDS`, `OWL_STORE_DIR`, `OWL_STORE_SIZE`, `OWL_SPILL_DIR`,
    /// `OWL_LINEAGE_BYTES`, `OWL_SPIN_US`,
    /// `OWL_PIN` and `OWL_EVENT_LOOP` (`uring` or `tokio`), and finds the
    /// node's place in a cluster from its launcher (`owl run`, `srun`,
    /// `mpirun`; see `owl_launch`), with `OWL_TRANSPORT` (`quic`, `tcp`,
    /// `tcp-plain`, `shm`; default `quic`), `OWL_CONNECT_TIMEOUT_S`,
    /// `OWL_DEAD_AFTER_S`, `OWL_LABELS` (comma-separated) and `OWL_IO`
    /// (`thread` or `shard`, see [`IoPlacement`]).
    ///
    /// `OWL_ADDRESS=HOST:PORT` (or `auto`, the cluster `owl start --head`
    /// recorded on this host) joins that open cluster instead, taking
    /// precedence over a launcher; `OWL_ROLE=worker` makes the node serve
    /// tasks rather than run `main` (see [`Config::worker`]).
    pub fn from_env(mut self) -> Result<Self, StartError> {
        if let Ok(filter) = std::env::var("OWL_LOG") {
            // Logs to stderr, e.g. OWL_LOG=info or OWL_LOG=owl=debug; a
            // program that installed its own subscriber keeps it.
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_writer(std::io::stderr)
                .try_init();
        }
        let timeout = env_parse::<u64>("OWL_CONNECT_TIMEOUT_S", "expected seconds")?.unwrap_or(60);
        let dead_after = env_parse::<u64>("OWL_DEAD_AFTER_S", "expected seconds")?
            .unwrap_or(Network::DEAD_AFTER.as_secs())
            .max(2);
        let vars: owl_launch::Vars = std::env::vars().collect();
        let attach = owl_launch::open::attach_from(&vars, &owl_launch::SystemResolver)
            .map_err(|e| StartError::Launch(e.to_string()))?;
        if let Some(a) = attach {
            let transport = match a.transport {
                Some(v) => v.parse().map_err(|why| StartError::Env {
                    var: "OWL_TRANSPORT",
                    value: v,
                    why,
                })?,
                None => Transport::Quic,
            };
            self = self.join(Network {
                listen: a.listen,
                head: a.head,
                secret: a.secret,
                transport,
                connect_timeout: Duration::from_secs(timeout),
                dead_after: Duration::from_secs(dead_after),
            });
        }
        let placement = match self.config.cluster {
            Some(_) => None,
            None => Some(owl_launch::discover().map_err(|e| StartError::Launch(e.to_string()))?),
        };
        if let Some(placement) = placement.filter(|p| p.size > 1) {
            let transport = match std::env::var("OWL_TRANSPORT") {
                Ok(v) => v.parse().map_err(|why| StartError::Env {
                    var: "OWL_TRANSPORT",
                    value: v,
                    why,
                })?,
                Err(_) => Transport::Quic,
            };
            // The launcher bound the head's port to fix it early; the
            // transport binds it again (QUIC needs UDP on it anyway), so it
            // is released here, just before the transport starts.
            drop(placement.head_listener);
            self = self.network(
                crate::ids::NodeId(placement.rank),
                placement.size,
                Network {
                    listen: placement.listen,
                    head: placement.head,
                    secret: placement.secret,
                    transport,
                    connect_timeout: Duration::from_secs(timeout),
                    dead_after: Duration::from_secs(dead_after),
                },
            );
        }
        if let Some(n) = env_parse("OWL_SHARDS", "expected a number of shards")? {
            self.config.shards = n;
        }
        if let Ok(dir) = std::env::var("OWL_STORE_DIR") {
            self.config.store_dir = dir.into();
        }
        if let Some(dir) = std::env::var_os("OWL_SPILL_DIR") {
            self.config.spill_dir = Some(dir.into());
        }
        if let Some(n) = env_parse("OWL_STORE_SIZE", "expected a size in bytes")? {
            self.config.store_size = n;
        }
        if let Some(n) = env_parse("OWL_LINEAGE_BYTES", "expected a size in bytes")? {
            self.config.lineage_bytes = n;
        }
        if let Some(us) = env_parse::<u64>("OWL_SPIN_US", "expected microseconds")? {
            self.config.spin = Duration::from_micros(us);
        }
        if let Ok(labels) = std::env::var("OWL_LABELS") {
            self.config.labels = labels
                .split(',')
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect();
        }
        match std::env::var("OWL_ROLE").as_deref() {
            Ok("worker") => self.config.worker = Some(true),
            Ok("driver") => self.config.worker = Some(false),
            Ok(other) => {
                return Err(StartError::Env {
                    var: "OWL_ROLE",
                    value: other.into(),
                    why: "expected `worker` (serve tasks) or `driver` (run main)".into(),
                })
            }
            Err(_) => {}
        }
        if let Ok(f) = std::env::var("OWL_NODE_FILE") {
            self.config.node_file = Some(f.into());
        }
        if let Some(pin) = env_parse("OWL_PIN", "expected true or false")? {
            self.config.pin = pin;
        }
        match std::env::var("OWL_IO").as_deref() {
            Ok("thread") => self.config.io = IoPlacement::Thread,
            Ok("shard") => self.config.io = IoPlacement::Shard0,
            Ok(other) => {
                return Err(StartError::Env {
                    var: "OWL_IO",
                    value: other.into(),
                    why: "expected `thread` (an I/O thread per node) or `shard` (on shard 0)"
                        .into(),
                })
            }
            Err(_) => {}
        }
        match std::env::var("OWL_EVENT_LOOP").as_deref() {
            Ok("uring") => self.config.event_loop = Some(EventLoopKind::IoUring),
            Ok("tokio") => self.config.event_loop = Some(EventLoopKind::Tokio),
            Ok(other) => {
                return Err(StartError::Env {
                    var: "OWL_EVENT_LOOP",
                    value: other.into(),
                    why: "expected `uring` or `tokio`".into(),
                })
            }
            Err(_) => {}
        }
        Ok(self)
    }

    /// Number of shards (pinned threads); default: all cores.
    pub fn shards(mut self, n: usize) -> Self {
        self.config.shards = n;
        self
    }

    /// Whether to pin shard threads to cores (default true).
    pub fn pin(mut self, yes: bool) -> Self {
        self.config.pin = yes;
        self
    }

    /// How long an idle shard polls before parking (default 50 µs).
    pub fn spin(mut self, d: Duration) -> Self {
        self.config.spin = d;
        self
    }

    /// The longest a parked shard sleeps without a wake-up (default
    /// 50 ms). For tests: a long bound turns a lost wake-up into a hang.
    #[doc(hidden)]
    pub fn park_bound(mut self, d: Duration) -> Self {
        self.config.park_bound = d;
        self
    }

    pub fn store_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.store_dir = dir.into();
        self
    }

    /// Where arena blocks spill when the store is full; `None` never
    /// spills (a full store is then `StoreFull` at once).
    pub fn spill_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.config.spill_dir = dir;
        self
    }

    /// Arena size in bytes (sparse: memory is used only as it is written).
    pub fn store_size(mut self, bytes: u64) -> Self {
        self.config.store_size = bytes;
        self
    }

    /// Bytes of task specs kept to rebuild results held on other nodes
    /// (see [`Config::lineage_bytes`]).
    pub fn lineage_bytes(mut self, bytes: u64) -> Self {
        self.config.lineage_bytes = bytes;
        self
    }

    /// Values whose archive is at most this many bytes stay out of the arena.
    pub fn inline_max(mut self, bytes: usize) -> Self {
        self.config.inline_max = bytes;
        self
    }

    /// Where the network and heartbeats run (default: an I/O thread).
    pub fn io(mut self, io: IoPlacement) -> Self {
        self.config.io = io;
        self
    }

    /// Forces an event loop instead of probing for io_uring.
    pub fn event_loop(mut self, kind: EventLoopKind) -> Self {
        self.config.event_loop = Some(kind);
        self
    }

    /// Labels of this node (e.g. `gpu`), matched by `CallOpts::label`.
    pub fn labels<S: Into<String>>(mut self, labels: impl IntoIterator<Item = S>) -> Self {
        self.config.labels = labels.into_iter().map(Into::into).collect();
        self
    }

    /// Makes this node `node` of a cluster of `nodes`; the cluster's links
    /// are connected after start (see `owl::in_process`).
    pub fn cluster_member(mut self, node: crate::ids::NodeId, nodes: u32) -> Self {
        self.config.cluster = Some(Membership {
            node,
            nodes,
            open: false,
        });
        self
    }

    /// Makes this node `node` of `nodes`, joining the others over `network`
    /// at start (which waits until every node is connected).
    pub fn network(mut self, node: crate::ids::NodeId, nodes: u32, network: Network) -> Self {
        self.config.cluster = Some(Membership {
            node,
            nodes,
            open: false,
        });
        self.config.network = Some(network);
        self
    }

    /// Makes this node the head (node 0) of an open cluster listening on
    /// `network.head`: it starts alone, and nodes join ([`Builder::join`])
    /// and leave while it runs. What `owl start --head` runs.
    pub fn open_head(mut self, network: Network) -> Self {
        self.config.cluster = Some(Membership {
            node: crate::ids::NodeId(0),
            nodes: 1,
            open: true,
        });
        self.config.network = Some(network);
        self
    }

    /// Joins the open cluster whose head listens on `network.head`; the
    /// head gives this node its id when it starts. Start-up waits until
    /// every current member is connected. What `owl start --address` and
    /// programs run with `OWL_ADDRESS` do.
    pub fn join(mut self, network: Network) -> Self {
        self.config.cluster = Some(Membership {
            node: Membership::UNASSIGNED,
            nodes: 0,
            open: true,
        });
        self.config.network = Some(network);
        self
    }

    /// Serve tasks (`true`) or run the program's `main` (`false`); see
    /// [`Config::worker`].
    pub fn worker(mut self, worker: bool) -> Self {
        self.config.worker = Some(worker);
        self
    }

    /// The settings, to start a node with (`Builder::build`).
    pub(crate) fn into_config(self) -> Config {
        self.config
    }
}

/// Which event loop drives the shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventLoopKind {
    /// tokio-uring: io_uring submission and completion rings.
    IoUring,
    /// tokio's current-thread runtime (epoll): the portable fallback.
    Tokio,
}

impl std::fmt::Display for EventLoopKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EventLoopKind::IoUring => "io_uring",
            EventLoopKind::Tokio => "tokio",
        })
    }
}
