//! Rule 2: a Slurm job step (`srun`). Every rank derives the same head from
//! the node list and the job and step ids, so no rendezvous is needed.

use std::net::SocketAddr;
use std::time::Duration;

use crate::addr::{own_addr, parse_host_port, resolve_one, Resolve, ANY, LOOPBACK};
use crate::hostlist;
use crate::secret::shared_secret;
use crate::vars::{check_rank, get, head_port_override, require_u32};
use crate::{HeadPlan, LaunchError, Plan, Source, Vars};

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

pub(crate) fn plan_slurm(
    vars: &Vars,
    resolver: &dyn Resolve,
    timeout: Duration,
) -> Result<Plan, LaunchError> {
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
