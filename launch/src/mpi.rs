//! Rule 3: Open MPI's `mpirun` (PMIx). There is no node list, so the head
//! is found through a rendezvous file named after the job.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::addr::{own_addr, parse_host_port, Resolve, ANY, LOOPBACK};
use crate::secret::shared_secret;
use crate::vars::{check_rank, get, head_port_override, parse_u32, require_u32};
use crate::{HeadPlan, LaunchError, Plan, Source, Vars};

pub(crate) fn plan_mpi(
    vars: &Vars,
    resolver: &dyn Resolve,
    timeout: Duration,
) -> Result<Plan, LaunchError> {
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
