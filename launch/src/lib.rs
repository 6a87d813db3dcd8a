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

mod addr;
mod error;
pub mod hostlist;
mod mpi;
pub mod nodefile;
pub mod open;
mod owl_run;
mod placement;
mod rendezvous;
mod secret;
mod slurm;
mod vars;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use addr::{Resolve, SystemResolver};
pub use error::LaunchError;
pub use placement::Placement;
pub use secret::{parse_hex, random_secret, read_secret_file, to_hex, write_secret_file};
pub use slurm::slurm_head_port;
pub use vars::DEFAULT_TIMEOUT;

use addr::LOOPBACK;
use mpi::plan_mpi;
use owl_run::plan_owl;
use secret::explicit_secret;
use slurm::plan_slurm;
use vars::{get, timeout};

/// The environment as a map of variables; [`discover`] reads `std::env`.
pub type Vars = HashMap<String, String>;

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

#[cfg(test)]
mod tests;
