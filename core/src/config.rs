//! Node settings: `Config`, and the `Builder` that fills it from code and
//! from `OWL_*` variables.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::StartError;
use crate::runtime::Runtime;
use crate::shard::EventLoopKind;

/// Settings of a node, from the builder and `OWL_*` variables.
#[derive(Debug, Clone)]
pub struct Config {
    pub shards: usize,
    pub pin: bool,
    pub spin: Duration,
    pub store_dir: PathBuf,
    pub store_size: u64,
    pub inline_max: usize,
    pub event_loop: Option<EventLoopKind>,
    /// This node's place in a cluster; `None` for a single node.
    pub cluster: Option<Membership>,
}

/// A node's place in a cluster of `nodes` nodes numbered from 0 (the head).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Membership {
    pub node: crate::ids::NodeId,
    pub nodes: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            shards: std::thread::available_parallelism().map_or(1, |n| n.get()),
            pin: true,
            spin: Duration::from_micros(50),
            store_dir: default_store_dir(),
            store_size: 4 << 30,
            inline_max: 64 << 10,
            event_loop: None,
            cluster: None,
        }
    }
}

fn default_store_dir() -> PathBuf {
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir()
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

    /// Applies `OWL_SHARDS`, `OWL_STORE_DIR`, `OWL_STORE_SIZE`, `OWL_SPIN_US`,
    /// `OWL_PIN` and `OWL_EVENT_LOOP` (`uring` or `tokio`).
    pub fn from_env(mut self) -> Result<Self, StartError> {
        if let Some(n) = env_parse("OWL_SHARDS", "expected a number of shards")? {
            self.config.shards = n;
        }
        if let Ok(dir) = std::env::var("OWL_STORE_DIR") {
            self.config.store_dir = dir.into();
        }
        if let Some(n) = env_parse("OWL_STORE_SIZE", "expected a size in bytes")? {
            self.config.store_size = n;
        }
        if let Some(us) = env_parse::<u64>("OWL_SPIN_US", "expected microseconds")? {
            self.config.spin = Duration::from_micros(us);
        }
        if let Some(pin) = env_parse("OWL_PIN", "expected true or false")? {
            self.config.pin = pin;
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

    pub fn store_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.store_dir = dir.into();
        self
    }

    /// Arena size in bytes (sparse: memory is used only as it is written).
    pub fn store_size(mut self, bytes: u64) -> Self {
        self.config.store_size = bytes;
        self
    }

    /// Values whose archive is at most this many bytes stay out of the arena.
    pub fn inline_max(mut self, bytes: usize) -> Self {
        self.config.inline_max = bytes;
        self
    }

    /// Forces an event loop instead of probing for io_uring.
    pub fn event_loop(mut self, kind: EventLoopKind) -> Self {
        self.config.event_loop = Some(kind);
        self
    }

    /// Makes this node `node` of a cluster of `nodes`; the cluster's links
    /// are connected after start (see `owl::in_process`).
    pub fn cluster_member(mut self, node: crate::ids::NodeId, nodes: u32) -> Self {
        self.config.cluster = Some(Membership { node, nodes });
        self
    }

    pub fn build(self) -> Result<Runtime, StartError> {
        Runtime::start(self.config)
    }
}
