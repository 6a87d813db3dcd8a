//! Where this process sits in an owl cluster, found from its environment
//! with no extra flags: `owl run`, Slurm's `srun` and Open MPI's `mpirun`
//! all work unchanged.
//!
//! [`discover`] applies these rules, first match wins:
//!
//! 1. **owl** — `OWL_NODE_ID`, `OWL_NODES`, `OWL_HEAD` (`host:port`), optional
//!    `OWL_LISTEN`; the secret from `OWL_SECRET_FILE` (64 hex characters, mode
//!    0600) or `OWL_SECRET` (hex). This is what `owl run` sets.
//! 2. **Slurm step** — `SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_JOB_ID`,
//!    `SLURM_JOB_NODELIST` *and* `SLURM_STEP_ID` (an `sbatch` script run
//!    without `srun` has no step: it is rule 4, a single node, and must not
//!    wait for ranks that will never start). Not taken when
//!    `OMPI_COMM_WORLD_RANK` is set: `mpirun` inside an allocation starts its
//!    daemons as a Slurm step, so its ranks see that step's `SLURM_*`
//!    variables, which describe the daemons, not the ranks.
//!    The head is the first host of `SLURM_STEP_NODELIST` (else
//!    `SLURM_JOB_NODELIST`) at port [`slurm_head_port`]`(job, step)`, or
//!    `OWL_HEAD_PORT`.
//! 3. **mpirun** (Open MPI) — `OMPI_COMM_WORLD_RANK`/`OMPI_COMM_WORLD_SIZE`
//!    (`PMIX_RANK` as a fallback for the rank). There is no node list, so the
//!    ranks meet through a file: rank 0 binds the head port and writes
//!    `host:port` atomically to `<dir>/owl-<job>.head`; the others poll it.
//!    `<job>` is `PMIX_NAMESPACE` (else `OMPI_MCA_ess_base_jobid`, else
//!    `OMPI_MCA_orte_hnp_uri`'s job part): the same for all ranks of one
//!    `mpirun`, different between runs (checked with Open MPI 4.1). `<dir>`
//!    is `OWL_RENDEZVOUS_DIR`, else — one host — `$TMPDIR` or `/tmp`, else
//!    — several hosts, which need a shared directory — `~/.owl/rendezvous`.
//! 4. **single** — rank 0 of 1.
//!
//! # Addresses
//!
//! Everything binds to loopback unless an address is given or the job spans
//! several hosts. With one host (Slurm: one host in the node list; mpirun:
//! `OMPI_COMM_WORLD_LOCAL_SIZE == OMPI_COMM_WORLD_SIZE`), the head is
//! `127.0.0.1:port` and non-head ranks listen on `127.0.0.1:0`. With several
//! hosts the head is the head host's resolved address (IPv4 preferred, non-
//! loopback preferred) and non-head ranks listen on their own host's address
//! (its name resolved; `0.0.0.0` when that resolves only to loopback) at
//! port 0, so ranks on the same host never collide. When the head host's
//! name resolves to loopback on the head itself (Debian's `127.0.1.1`
//! entry), rank 0 listens on `0.0.0.0:port` so other hosts still reach it.
//!
//! # The head's listener
//!
//! Under Slurm and mpirun, [`discover`] binds the head's port itself on rank
//! 0 and hands the bound socket over in [`Placement::head_listener`]: under
//! mpirun the port must be fixed before it is published to the other ranks,
//! and under Slurm a taken port is reported at once, naming
//! `OWL_HEAD_PORT`. Rank 0 must serve on that listener rather than bind
//! [`Placement::listen`] again. Under `owl run` the launcher chose a free port
//! and rank 0 binds it itself (`head_listener` is `None`).
//!
//! # The secret
//!
//! Under `owl run` each run has a fresh secret in a 0600 file. Under Slurm
//! and mpirun there is no launcher of ours to make one, so unless
//! `OWL_SECRET_FILE`/`OWL_SECRET` is set the secret is `~/.owl/cluster-secret`:
//! rank 0 creates it (32 random bytes as hex, mode 0600, in a 0700 directory,
//! created without replacing a file another job made at the same moment) and
//! the other ranks wait for it. Clusters share `$HOME` between nodes, so
//! every rank reads the same file. The trade-off: the secret is per user,
//! not per job — it is as safe as the home directory's permissions, stays
//! the same for all of that user's jobs until the file is deleted, and any
//! process of that user can join. Set `OWL_SECRET_FILE` per job (e.g. in
//! the batch script) for a per-job secret.
#![forbid(unsafe_code)]

pub mod hostlist;
pub mod open;

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, ToSocketAddrs};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// The environment as a map of variables; [`discover`] reads `std::env`.
pub type Vars = HashMap<String, String>;

/// How long non-head ranks wait for the rendezvous file or the shared
/// secret, unless `OWL_LAUNCH_TIMEOUT` (seconds) says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Rendezvous files older than this (relative to when `discover` started)
/// are taken to be left over from an earlier run with the same job name.
const STALE_AFTER: Duration = Duration::from_secs(120);

/// Which launcher placed this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// `owl run` (or `OWL_*` variables set by hand).
    Owl,
    /// A Slurm job step (`srun`).
    Slurm,
    /// Open MPI's `mpirun`.
    Mpi,
    /// No launcher: one node.
    Single,
}

impl Source {
    /// Lower-case name: `owl`, `slurm`, `mpi`, `single`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Owl => "owl",
            Source::Slurm => "slurm",
            Source::Mpi => "mpi",
            Source::Single => "single",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// This process's place in the cluster.
pub struct Placement {
    /// This node's index, `0..size`; 0 is the head.
    pub rank: u32,
    /// Number of nodes.
    pub size: u32,
    /// Where the head listens; every rank, the head included, agrees on it.
    pub head: SocketAddr,
    /// Where this node should listen. Port 0 means any free port; on the
    /// head it is the head's port. When [`Placement::head_listener`] is set,
    /// this is that listener's address.
    pub listen: SocketAddr,
    /// The cluster secret shared by all nodes (never printed by `Debug`).
    pub secret: [u8; 32],
    /// Which launcher placed this process.
    pub source: Source,
    /// The launcher's job name (Slurm `JOB.STEP`, the mpirun namespace).
    pub job: Option<String>,
    /// On rank 0 under Slurm and mpirun: the head's socket, already bound
    /// (see the crate docs); serve on it instead of binding `listen`.
    pub head_listener: Option<TcpListener>,
    /// Under mpirun: the rendezvous file that carries the head's address.
    /// It is left in place (late ranks still read it); delete it with
    /// [`Placement::remove_rendezvous_file`] once every node has joined.
    pub rendezvous_file: Option<PathBuf>,
}

impl Placement {
    /// Whether this node is the head (rank 0).
    pub fn is_head(&self) -> bool {
        self.rank == 0
    }

    /// Deletes the mpirun rendezvous file, if any (head only; others no-op).
    pub fn remove_rendezvous_file(&self) -> io::Result<()> {
        match (&self.rendezvous_file, self.is_head()) {
            (Some(path), true) => match fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
            _ => Ok(()),
        }
    }
}

impl fmt::Debug for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Placement")
            .field("rank", &self.rank)
            .field("size", &self.size)
            .field("head", &self.head)
            .field("listen", &self.listen)
            .field("secret", &"<redacted>")
            .field("source", &self.source)
            .field("job", &self.job)
            .field("head_listener", &self.head_listener.is_some())
            .field("rendezvous_file", &self.rendezvous_file)
            .finish()
    }
}

/// What went wrong; every variant names the variable or file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("{var} is not set; {hint}")]
    MissingVar {
        var: &'static str,
        hint: &'static str,
    },
    #[error("{var}={value:?} is not valid: expected {expected}")]
    BadVar {
        var: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("{var}: rank {rank} is out of range for {size} nodes (ranks are 0..{size})")]
    RankOutOfRange {
        var: &'static str,
        rank: u32,
        size: u32,
    },
    #[error("{var}={value:?} is not a valid Slurm host list: {reason}")]
    Hostlist {
        var: &'static str,
        value: String,
        reason: String,
    },
    #[error("cannot resolve host {host:?} (from {var}): {reason}; check the name or set OWL_HEAD=ADDR:PORT")]
    Resolve {
        host: String,
        var: &'static str,
        reason: String,
    },
    #[error("no cluster secret: set OWL_SECRET_FILE to a 0600 file holding 64 hex characters, or OWL_SECRET to 64 hex characters (owl run sets OWL_SECRET_FILE)")]
    MissingSecret,
    #[error("the secret in {origin} is not valid: expected 64 hex characters (32 bytes)")]
    BadSecret { origin: String },
    #[error("secret file {path} has mode {mode:04o}, readable or writable by others; run `chmod 600 {path}`")]
    SecretFilePermissions { path: PathBuf, mode: u32 },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("HOME is not set, so there is no ~/.owl/cluster-secret; set OWL_SECRET_FILE (a 0600 file with 64 hex characters) or OWL_SECRET")]
    NoHome,
    #[error("waited {secs} s for rank 0 to create the cluster secret {path}; check that rank 0 started and that the directory is shared between hosts, or set OWL_SECRET_FILE")]
    SecretTimeout { path: PathBuf, secs: u64 },
    #[error("cannot bind the head's address {addr}: {source}; {hint}")]
    Bind {
        addr: SocketAddr,
        source: io::Error,
        hint: &'static str,
    },
    #[error("waited {secs} s for rank 0 to write the head's address to {file}; check that rank 0 started, that all ranks see that directory (set OWL_RENDEZVOUS_DIR to a shared directory when ranks span hosts), or raise OWL_LAUNCH_TIMEOUT")]
    RendezvousTimeout { file: PathBuf, secs: u64 },
    #[error("rendezvous file {file} holds {content:?}, not host:port; delete it and rerun")]
    BadRendezvous { file: PathBuf, content: String },
    #[error("this host's name {host:?} resolves to no address other hosts can reach, so rank 0 cannot publish one; set OWL_LISTEN=ADDR:0 to this host's address")]
    NoHostAddress { host: String },
    #[error("OWL_ADDRESS=auto: no cluster is recorded in {dir} (start one with `owl start --head`, set OWL_ADDRESS=HOST:PORT, or point OWL_STATE_DIR at the head's state directory)")]
    NoCluster { dir: PathBuf },
    #[error("cannot tell the mpirun job apart from others: none of PMIX_NAMESPACE, OMPI_MCA_ess_base_jobid, OMPI_MCA_orte_hnp_uri is set; set OWL_JOB to a name shared by all ranks of this run")]
    NoMpiJob,
}

/// Name resolution and this host's name, injectable for tests.
pub trait Resolve {
    /// Addresses of `host` (a name or an IP literal).
    fn resolve(&self, host: &str) -> io::Result<Vec<IpAddr>>;
    /// This host's name, if known.
    fn hostname(&self) -> Option<String>;
}

/// The system resolver (`getaddrinfo` via std) and the kernel's host name.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, host: &str) -> io::Result<Vec<IpAddr>> {
        Ok((host, 0).to_socket_addrs()?.map(|a| a.ip()).collect())
    }

    fn hostname(&self) -> Option<String> {
        fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }
}

/// Where the head's address comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadPlan {
    /// Known from the environment.
    Known(SocketAddr),
    /// mpirun: rank 0 binds `listen` and publishes the address in `file`;
    /// the others read it.
    Rendezvous { file: PathBuf },
}

/// Where the secret comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretPlan {
    /// Given in `OWL_SECRET`.
    Given([u8; 32]),
    /// `OWL_SECRET_FILE`: must exist with mode 0600.
    File(PathBuf),
    /// `~/.owl/cluster-secret`: rank 0 creates it if missing, others wait.
    Shared(PathBuf),
    /// A single node: a fresh random secret.
    Fresh,
}

impl fmt::Debug for SecretPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretPlan::Given(_) => f.write_str("Given(<redacted>)"),
            SecretPlan::File(p) => f.debug_tuple("File").field(p).finish(),
            SecretPlan::Shared(p) => f.debug_tuple("Shared").field(p).finish(),
            SecretPlan::Fresh => f.write_str("Fresh"),
        }
    }
}

/// What [`plan`] decided from the variables alone, before touching files or
/// sockets; [`Plan::execute`] carries it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub rank: u32,
    pub size: u32,
    pub source: Source,
    pub job: Option<String>,
    pub head: HeadPlan,
    pub listen: SocketAddr,
    /// Rank 0 binds `listen` itself and returns the listener.
    pub bind_head: bool,
    pub secret: SecretPlan,
    /// How long to wait for the rendezvous file or the shared secret.
    pub timeout: Duration,
}

/// Finds this process's place from `std::env`, reading and creating files
/// and binding the head's port as needed (see the crate docs).
pub fn discover() -> Result<Placement, LaunchError> {
    let vars: Vars = std::env::vars().collect();
    discover_from(&vars, &SystemResolver)
}

/// [`discover`] with the variables and resolver given.
pub fn discover_from(vars: &Vars, resolver: &dyn Resolve) -> Result<Placement, LaunchError> {
    plan(vars, resolver)?.execute()
}

fn get<'a>(vars: &'a Vars, var: &str) -> Option<&'a str> {
    vars.get(var).map(|s| s.trim()).filter(|s| !s.is_empty())
}

fn parse_u32(
    vars: &Vars,
    var: &'static str,
    expected: &'static str,
) -> Result<Option<u32>, LaunchError> {
    get(vars, var)
        .map(|v| {
            v.parse().map_err(|_| LaunchError::BadVar {
                var,
                value: v.to_string(),
                expected,
            })
        })
        .transpose()
}

fn require_u32(
    vars: &Vars,
    var: &'static str,
    expected: &'static str,
    hint: &'static str,
) -> Result<u32, LaunchError> {
    parse_u32(vars, var, expected)?.ok_or(LaunchError::MissingVar { var, hint })
}

fn check_rank(var: &'static str, rank: u32, size: u32) -> Result<(), LaunchError> {
    if size == 0 || rank >= size {
        return Err(LaunchError::RankOutOfRange { var, rank, size });
    }
    Ok(())
}

/// The best of a host's addresses: IPv4 before IPv6, non-loopback first.
fn pick(addrs: &[IpAddr]) -> Option<IpAddr> {
    let rank = |a: &IpAddr| (a.is_loopback(), !a.is_ipv4());
    addrs.iter().copied().min_by_key(rank)
}

fn resolve_one(
    resolver: &dyn Resolve,
    host: &str,
    var: &'static str,
) -> Result<IpAddr, LaunchError> {
    let addrs = resolver.resolve(host).map_err(|e| LaunchError::Resolve {
        host: host.to_string(),
        var,
        reason: e.to_string(),
    })?;
    pick(&addrs).ok_or_else(|| LaunchError::Resolve {
        host: host.to_string(),
        var,
        reason: "no addresses".into(),
    })
}

/// This host's own address for a non-head rank of a multi-host job: its
/// name resolved (non-loopback), else `0.0.0.0`.
fn own_addr(resolver: &dyn Resolve, vars: &Vars) -> Option<IpAddr> {
    let host = get(vars, "SLURMD_NODENAME")
        .map(str::to_string)
        .or_else(|| resolver.hostname())?;
    resolver
        .resolve(&host)
        .ok()
        .and_then(|a| pick(&a))
        .filter(|a| !a.is_loopback())
}

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const ANY: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// Parses `host:port` (or `[v6]:port`), resolving the host.
fn parse_host_port(
    resolver: &dyn Resolve,
    var: &'static str,
    value: &str,
) -> Result<SocketAddr, LaunchError> {
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bad = || LaunchError::BadVar {
        var,
        value: value.to_string(),
        expected: "host:port",
    };
    let (host, port) = value.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad());
    }
    Ok(SocketAddr::new(resolve_one(resolver, host, var)?, port))
}

fn timeout(vars: &Vars) -> Result<Duration, LaunchError> {
    Ok(parse_u32(vars, "OWL_LAUNCH_TIMEOUT", "seconds")?
        .map_or(DEFAULT_TIMEOUT, |s| Duration::from_secs(s.into())))
}

fn head_port_override(vars: &Vars) -> Result<Option<u16>, LaunchError> {
    get(vars, "OWL_HEAD_PORT")
        .map(|v| {
            v.parse().map_err(|_| LaunchError::BadVar {
                var: "OWL_HEAD_PORT",
                value: v.to_string(),
                expected: "a port number 0..=65535",
            })
        })
        .transpose()
}

/// The secret from `OWL_SECRET` / `OWL_SECRET_FILE`, if either is set.
fn explicit_secret(vars: &Vars) -> Result<Option<SecretPlan>, LaunchError> {
    if let Some(path) = get(vars, "OWL_SECRET_FILE") {
        return Ok(Some(SecretPlan::File(PathBuf::from(path))));
    }
    if let Some(hex) = get(vars, "OWL_SECRET") {
        let bytes = parse_hex(hex).ok_or_else(|| LaunchError::BadSecret {
            origin: "OWL_SECRET".into(),
        })?;
        return Ok(Some(SecretPlan::Given(bytes)));
    }
    Ok(None)
}

/// The secret for Slurm and mpirun: explicit, else `~/.owl/cluster-secret`.
fn shared_secret(vars: &Vars) -> Result<SecretPlan, LaunchError> {
    if let Some(s) = explicit_secret(vars)? {
        return Ok(s);
    }
    let home = get(vars, "HOME").ok_or(LaunchError::NoHome)?;
    Ok(SecretPlan::Shared(
        Path::new(home).join(".owl").join("cluster-secret"),
    ))
}

/// The Slurm head's port: `OWL_HEAD_PORT`, else a hash of job and step ids
/// into 12000..32000 (below Linux's ephemeral range, 32768..60999, so
/// outgoing connections never hold it). Every rank computes the same port;
/// two steps of a job and two jobs get different ones unless the hash
/// collides, which `OWL_HEAD_PORT` then works around.
pub fn slurm_head_port(job_id: &str, step_id: &str) -> u16 {
    // FNV-1a: stable across Rust versions, unlike DefaultHasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in job_id.bytes().chain([b'.']).chain(step_id.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    12000 + (h % 20000) as u16
}

/// Decides the placement from variables alone (no files, no sockets; name
/// resolution goes through `resolver`).
pub fn plan(vars: &Vars, resolver: &dyn Resolve) -> Result<Plan, LaunchError> {
    let timeout = timeout(vars)?;
    if ["OWL_NODE_ID", "OWL_NODES", "OWL_HEAD"]
        .iter()
        .any(|v| get(vars, v).is_some())
    {
        return plan_owl(vars, resolver, timeout);
    }
    let has = |v: &str| get(vars, v).is_some();
    let slurm = [
        "SLURM_PROCID",
        "SLURM_NTASKS",
        "SLURM_JOB_ID",
        "SLURM_JOB_NODELIST",
    ]
    .iter()
    .all(|v| has(v));
    if slurm && has("SLURM_STEP_ID") && !has("OMPI_COMM_WORLD_RANK") {
        return plan_slurm(vars, resolver, timeout);
    }
    if has("OMPI_COMM_WORLD_RANK") || has("PMIX_RANK") {
        return plan_mpi(vars, resolver, timeout);
    }
    let secret = explicit_secret(vars)?.unwrap_or(SecretPlan::Fresh);
    let listen = SocketAddr::new(LOOPBACK, 0);
    Ok(Plan {
        rank: 0,
        size: 1,
        source: Source::Single,
        job: None,
        head: HeadPlan::Known(listen),
        listen,
        bind_head: false,
        secret,
        timeout,
    })
}

fn plan_owl(vars: &Vars, resolver: &dyn Resolve, timeout: Duration) -> Result<Plan, LaunchError> {
    const HINT: &str =
        "owl run sets OWL_NODE_ID, OWL_NODES and OWL_HEAD together; set all three or none";
    let rank = require_u32(vars, "OWL_NODE_ID", "a node index", HINT)?;
    let size = require_u32(vars, "OWL_NODES", "a number of nodes", HINT)?;
    check_rank("OWL_NODE_ID", rank, size)?;
    let head_s = get(vars, "OWL_HEAD").ok_or(LaunchError::MissingVar {
        var: "OWL_HEAD",
        hint: HINT,
    })?;
    let head = parse_host_port(resolver, "OWL_HEAD", head_s)?;
    let listen = match get(vars, "OWL_LISTEN") {
        Some(l) => parse_host_port(resolver, "OWL_LISTEN", l)?,
        None if rank == 0 => head,
        None if head.ip().is_loopback() => SocketAddr::new(LOOPBACK, 0),
        None => SocketAddr::new(own_addr(resolver, vars).unwrap_or(ANY), 0),
    };
    let secret = explicit_secret(vars)?.ok_or(LaunchError::MissingSecret)?;
    Ok(Plan {
        rank,
        size,
        source: Source::Owl,
        job: get(vars, "OWL_JOB").map(str::to_string),
        head: HeadPlan::Known(head),
        listen,
        bind_head: false,
        secret,
        timeout,
    })
}

fn plan_slurm(vars: &Vars, resolver: &dyn Resolve, timeout: Duration) -> Result<Plan, LaunchError> {
    const HINT: &str = "run the program with srun inside a Slurm allocation";
    let rank = require_u32(vars, "SLURM_PROCID", "a task rank", HINT)?;
    let size = require_u32(vars, "SLURM_NTASKS", "a number of tasks", HINT)?;
    check_rank("SLURM_PROCID", rank, size)?;
    let job_id = get(vars, "SLURM_JOB_ID").unwrap_or_default();
    let step_id = get(vars, "SLURM_STEP_ID").unwrap_or_default();
    let (list_var, list) = match get(vars, "SLURM_STEP_NODELIST") {
        Some(l) => ("SLURM_STEP_NODELIST", l),
        None => (
            "SLURM_JOB_NODELIST",
            get(vars, "SLURM_JOB_NODELIST").unwrap_or_default(),
        ),
    };
    let hosts = hostlist::expand(list).map_err(|e| LaunchError::Hostlist {
        var: list_var,
        value: list.to_string(),
        reason: e.reason,
    })?;
    let mut distinct = hosts.clone();
    distinct.sort();
    distinct.dedup();
    let port = head_port_override(vars)?.unwrap_or_else(|| slurm_head_port(job_id, step_id));
    let (head, listen) = if distinct.len() <= 1 {
        let head = SocketAddr::new(LOOPBACK, port);
        (
            head,
            if rank == 0 {
                head
            } else {
                SocketAddr::new(LOOPBACK, 0)
            },
        )
    } else {
        let ip = resolve_one(resolver, &hosts[0], list_var)?;
        let head = SocketAddr::new(ip, port);
        let listen = if rank == 0 {
            // The head host's name may resolve to loopback on the head
            // itself; other hosts must still reach it.
            SocketAddr::new(if ip.is_loopback() { ANY } else { ip }, port)
        } else {
            SocketAddr::new(own_addr(resolver, vars).unwrap_or(ANY), 0)
        };
        (head, listen)
    };
    let listen = match get(vars, "OWL_LISTEN") {
        Some(l) => parse_host_port(resolver, "OWL_LISTEN", l)?,
        None => listen,
    };
    Ok(Plan {
        rank,
        size,
        source: Source::Slurm,
        job: Some(format!("{job_id}.{step_id}")),
        head: HeadPlan::Known(head),
        listen,
        bind_head: rank == 0,
        secret: shared_secret(vars)?,
        timeout,
    })
}

/// A file-name-safe form of the mpirun job name.
fn sanitize(job: &str) -> String {
    job.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect()
}

fn plan_mpi(vars: &Vars, resolver: &dyn Resolve, timeout: Duration) -> Result<Plan, LaunchError> {
    const HINT: &str = "start the program with Open MPI's mpirun";
    let rank = match parse_u32(vars, "OMPI_COMM_WORLD_RANK", "an MPI rank")? {
        Some(r) => r,
        None => require_u32(vars, "PMIX_RANK", "an MPI rank", HINT)?,
    };
    let size = require_u32(vars, "OMPI_COMM_WORLD_SIZE", "a number of ranks", HINT)?;
    check_rank("OMPI_COMM_WORLD_RANK", rank, size)?;
    let job = get(vars, "OWL_JOB")
        .or_else(|| get(vars, "PMIX_NAMESPACE"))
        .or_else(|| get(vars, "OMPI_MCA_ess_base_jobid"))
        .map(str::to_string)
        .or_else(|| {
            // "514588672.0;tcp://…": the job family of this mpirun.
            get(vars, "OMPI_MCA_orte_hnp_uri").map(|u| u.split(';').next().unwrap_or(u).to_string())
        })
        .ok_or(LaunchError::NoMpiJob)?;
    let local_size = parse_u32(vars, "OMPI_COMM_WORLD_LOCAL_SIZE", "a number of ranks")?;
    let one_host = local_size.is_none_or(|l| l >= size);
    let dir = match get(vars, "OWL_RENDEZVOUS_DIR") {
        Some(d) => PathBuf::from(d),
        None if one_host => PathBuf::from(get(vars, "TMPDIR").unwrap_or("/tmp")),
        None => Path::new(get(vars, "HOME").ok_or(LaunchError::MissingVar {
            var: "HOME",
            hint: "ranks on several hosts meet in ~/.owl/rendezvous; set OWL_RENDEZVOUS_DIR to a directory all hosts share",
        })?)
        .join(".owl")
        .join("rendezvous"),
    };
    let file = dir.join(format!("owl-{}.head", sanitize(&job)));
    let port = head_port_override(vars)?.unwrap_or(0);
    let listen = match get(vars, "OWL_LISTEN") {
        Some(l) => parse_host_port(resolver, "OWL_LISTEN", l)?,
        None if one_host => SocketAddr::new(LOOPBACK, if rank == 0 { port } else { 0 }),
        None if rank == 0 => {
            let host = resolver.hostname().unwrap_or_default();
            let ip = own_addr(resolver, vars).ok_or(LaunchError::NoHostAddress { host })?;
            SocketAddr::new(ip, port)
        }
        None => SocketAddr::new(own_addr(resolver, vars).unwrap_or(ANY), 0),
    };
    Ok(Plan {
        rank,
        size,
        source: Source::Mpi,
        job: Some(job),
        head: HeadPlan::Rendezvous { file },
        listen,
        bind_head: rank == 0,
        secret: shared_secret(vars)?,
        timeout,
    })
}

impl Plan {
    /// Carries the plan out: reads or creates the secret, binds the head's
    /// port on rank 0, publishes or waits for the rendezvous file.
    pub fn execute(self) -> Result<Placement, LaunchError> {
        let started = SystemTime::now();
        let secret = load_secret(&self.secret, self.rank, self.timeout)?;
        let mut listen = self.listen;
        let head_listener = if self.bind_head {
            let l = TcpListener::bind(listen).map_err(|source| LaunchError::Bind {
                addr: listen,
                source,
                hint: "another program holds the port; set OWL_HEAD_PORT to a free port (the same for all ranks)",
            })?;
            listen = l.local_addr().map_err(|source| LaunchError::Bind {
                addr: listen,
                source,
                hint: "the socket has no local address",
            })?;
            Some(l)
        } else {
            None
        };
        let (head, rendezvous_file) = match self.head {
            HeadPlan::Known(h) => (h, None),
            HeadPlan::Rendezvous { file } => {
                let head = if self.rank == 0 {
                    publish(&file, listen)?;
                    listen
                } else {
                    wait_for_head(&file, self.timeout, started)?
                };
                (head, Some(file))
            }
        };
        Ok(Placement {
            rank: self.rank,
            size: self.size,
            head,
            listen,
            secret,
            source: self.source,
            job: self.job,
            head_listener,
            rendezvous_file,
        })
    }
}

pub(crate) fn io_err<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> LaunchError + 'a {
    move |source| LaunchError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Decodes 64 hex characters (surrounding whitespace ignored).
pub fn parse_hex(s: &str) -> Option<[u8; 32]> {
    let s = s.trim().as_bytes();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// Encodes bytes as lower-case hex.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 32 random bytes from the operating system.
pub fn random_secret() -> [u8; 32] {
    let mut s = [0u8; 32];
    // The OS random source failing is not something a launcher can recover
    // from, and getrandom documents it as effectively impossible on Linux.
    getrandom::fill(&mut s).expect("the operating system's random source failed");
    s
}

/// Reads a secret file, refusing one that others may read or write.
pub fn read_secret_file(path: &Path) -> Result<[u8; 32], LaunchError> {
    let meta = fs::metadata(path).map_err(io_err("cannot read the secret file", path))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(LaunchError::SecretFilePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    let text = fs::read_to_string(path).map_err(io_err("cannot read the secret file", path))?;
    parse_hex(&text).ok_or_else(|| LaunchError::BadSecret {
        origin: path.display().to_string(),
    })
}

/// Writes `secret` as hex to a new 0600 file at `path`; fails if it exists.
pub fn write_secret_file(path: &Path, secret: &[u8; 32]) -> io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(format!("{}\n", to_hex(secret)).as_bytes())?;
    f.sync_all()
}

pub(crate) fn load_secret(
    plan: &SecretPlan,
    rank: u32,
    timeout: Duration,
) -> Result<[u8; 32], LaunchError> {
    match plan {
        SecretPlan::Given(s) => Ok(*s),
        SecretPlan::Fresh => Ok(random_secret()),
        SecretPlan::File(p) => read_secret_file(p),
        SecretPlan::Shared(p) => {
            if rank == 0 && !p.exists() {
                create_shared_secret(p)?;
            }
            let deadline = Instant::now() + timeout;
            while !p.exists() {
                if Instant::now() >= deadline {
                    return Err(LaunchError::SecretTimeout {
                        path: p.clone(),
                        secs: timeout.as_secs(),
                    });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            read_secret_file(p)
        }
    }
}

/// Creates `~/.owl/cluster-secret` without ever exposing a partial file or
/// replacing one another job created meanwhile: the secret is written to a
/// private temporary name, then hard-linked into place (which fails if the
/// name exists).
fn create_shared_secret(path: &Path) -> Result<(), LaunchError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err("cannot create the directory", dir))?;
    let tmp = dir.join(format!(".cluster-secret.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&tmp);
    write_secret_file(&tmp, &random_secret()).map_err(io_err("cannot write", &tmp))?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(io_err("cannot create", path)(e)),
        _ => Ok(()),
    }
}

/// Rank 0 under mpirun: writes `host:port` to `file` atomically (a
/// temporary file renamed over it).
fn publish(file: &Path, addr: SocketAddr) -> Result<(), LaunchError> {
    let dir = file.parent().unwrap_or(Path::new("."));
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err("cannot create the rendezvous directory", dir))?;
    let tmp = file.with_extension(format!("head.{}.tmp", std::process::id()));
    let write = || -> io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(format!("{addr}\n").as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, file)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err("cannot write the rendezvous file", file)(e)
    })
}

/// Non-head ranks under mpirun: polls `file` until it holds an address
/// written by this run (not a leftover of an earlier one).
fn wait_for_head(
    file: &Path,
    timeout: Duration,
    started: SystemTime,
) -> Result<SocketAddr, LaunchError> {
    let deadline = Instant::now() + timeout;
    let oldest = started
        .checked_sub(STALE_AFTER)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut pause = Duration::from_millis(5);
    loop {
        let fresh = fs::metadata(file)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= oldest);
        if fresh {
            if let Ok(text) = fs::read_to_string(file) {
                return text.trim().parse().map_err(|_| LaunchError::BadRendezvous {
                    file: file.to_path_buf(),
                    content: text,
                });
            }
        }
        if Instant::now() >= deadline {
            return Err(LaunchError::RendezvousTimeout {
                file: file.to_path_buf(),
                secs: timeout.as_secs(),
            });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests;
