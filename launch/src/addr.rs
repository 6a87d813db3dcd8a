//! Host names to socket addresses: which of a host's addresses to use, and
//! this host's own. Resolution goes through [`Resolve`] so that tests can
//! describe a cluster without DNS.

use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};

use crate::vars::get;
use crate::{LaunchError, Vars};

pub(crate) const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
pub(crate) const ANY: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

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

/// The best of a host's addresses: IPv4 before IPv6, non-loopback first.
pub(crate) fn pick(addrs: &[IpAddr]) -> Option<IpAddr> {
    let rank = |a: &IpAddr| (a.is_loopback(), !a.is_ipv4());
    addrs.iter().copied().min_by_key(rank)
}

pub(crate) fn resolve_one(
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

/// This host's own address for a rank of a multi-host job: its name
/// resolved, unless that gives only loopback (callers then use `0.0.0.0`).
pub(crate) fn own_addr(resolver: &dyn Resolve, vars: &Vars) -> Option<IpAddr> {
    let host = get(vars, "SLURMD_NODENAME")
        .map(str::to_string)
        .or_else(|| resolver.hostname())?;
    resolver
        .resolve(&host)
        .ok()
        .and_then(|a| pick(&a))
        .filter(|a| !a.is_loopback())
}

/// Parses `host:port` (or `[v6]:port`), resolving the host.
pub(crate) fn parse_host_port(
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
