//! The one error type of the crate. Each message names the variable or file
//! at fault and what to do about it, because whoever reads it is usually
//! looking at a failed batch job, not at this code.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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
    #[error("the cluster's head at {address} (pid {pid}, recorded in {dir}) is gone, so no node can join: the members it had keep serving the programs attached to them until `owl stop`. Start a head with `owl start --head` (a new cluster: the old members do not join it)")]
    HeadGone {
        address: SocketAddr,
        pid: u32,
        dir: PathBuf,
    },
    #[error("refusing the state directory {path}: it {reason}; it must be yours and writable only by you: if you did not make it, remove it, else `chmod 700 {path}`, or set OWL_STATE_DIR to a private directory")]
    UnsafeStateDir { path: PathBuf, reason: String },
    #[error("cannot tell the mpirun job apart from others: none of PMIX_NAMESPACE, OMPI_MCA_ess_base_jobid, OMPI_MCA_orte_hnp_uri is set; set OWL_JOB to a name shared by all ranks of this run")]
    NoMpiJob,
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
