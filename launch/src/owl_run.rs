//! Rule 1: the variables `owl run` sets (or a user sets by hand).

use std::net::SocketAddr;
use std::time::Duration;

use crate::addr::{own_addr, parse_host_port, Resolve, ANY, LOOPBACK};
use crate::secret::explicit_secret;
use crate::vars::{check_rank, get, require_u32};
use crate::{HeadPlan, LaunchError, Plan, Source, Vars};

pub(crate) fn plan_owl(
    vars: &Vars,
    resolver: &dyn Resolve,
    timeout: Duration,
) -> Result<Plan, LaunchError> {
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
