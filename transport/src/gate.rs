//! Admission of connections that have not authenticated yet.
//!
//! Anyone who reaches a node's port can open connections and never finish
//! the handshake. Each costs a task and, over TCP, two file descriptors, so
//! without bounds 1,100 idle ones exhaust a 1,024-descriptor limit: the
//! node then accepts nothing, legitimate nodes are locked out, and every
//! failed `accept` logs a line. So a node:
//! - raises its soft descriptor limit to the hard one at start
//!   ([`raise_fd_limit`]);
//! - holds at most [`PER_SOURCE`] unauthenticated connections per source
//!   address (an IPv6 /64 counts as one) and [`Pending::for_fd_limit`] in
//!   all, and closes any beyond at once (dialers retry: a refusal before
//!   any byte is "busy", not "denied");
//! - gives each [`HANDSHAKE_LIMIT`] to finish (TLS and owl's handshake);
//! - logs a repeated line once per [`LOG_WINDOW`] and key, with the count
//!   it held back ([`LogLimit`]).
//!
//! Authenticated connections are not counted: they are bounded by the
//! membership (a holder of the secret is trusted, see docs/DESIGN.md).
//! The counting here is sans-IO (time is passed in); the accept loop in
//! `mesh::node::connect` applies it.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

/// How long an accepted connection may take to authenticate. A handshake
/// is one round trip plus TLS; seconds are generous even on a loaded host.
pub(crate) const HANDSHAKE_LIMIT: Duration = Duration::from_secs(5);
/// Unauthenticated connections held per source address.
pub(crate) const PER_SOURCE: u32 = 32;
/// Repeated log lines with the same key: one per window.
pub(crate) const LOG_WINDOW: Duration = Duration::from_secs(10);
/// The keys [`LogLimit`] remembers before it forgets quiet ones.
const LOG_KEYS: usize = 1024;

/// Raises the soft limit on open files to the hard limit (at most 2^20),
/// as servers that hold many sockets do; returns the soft limit in force
/// afterwards. A failure leaves the limit as it was.
pub(crate) fn raise_fd_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let lim = getrlimit(Resource::Nofile);
    let want = lim.maximum.unwrap_or(u64::MAX).min(1 << 20);
    match lim.current {
        Some(cur) if cur < want => {
            let raised = Rlimit {
                current: Some(want),
                maximum: lim.maximum,
            };
            match setrlimit(Resource::Nofile, raised) {
                Ok(()) => want,
                Err(_) => cur,
            }
        }
        Some(cur) => cur,
        None => want,
    }
}

/// The unit a per-source cap counts: an IPv4 address, or an IPv6 /64 (one
/// host usually owns a whole /64).
pub(crate) fn source(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Its source already has this many handshakes pending.
    Source(u32),
    /// The node already has this many handshakes pending in all.
    Total(u32),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Source(n) => write!(
                f,
                "{n} connections from that address are already waiting to authenticate"
            ),
            Refused::Total(n) => write!(f, "{n} connections are already waiting to authenticate"),
        }
    }
}

/// The count of connections waiting to authenticate, per source and in all.
#[derive(Debug)]
pub(crate) struct Pending {
    by_source: HashMap<IpAddr, u32>,
    total: u32,
    max_total: u32,
    per_source: u32,
}

impl Pending {
    pub(crate) fn new(max_total: u32, per_source: u32) -> Self {
        Self {
            by_source: HashMap::new(),
            total: 0,
            max_total,
            per_source,
        }
    }

    /// The caps for a node allowed `fd_limit` open files: pending
    /// connections may take an eighth of them (two each over TCP), at
    /// least 16 and at most 256.
    pub(crate) fn for_fd_limit(fd_limit: u64) -> Self {
        let total = (fd_limit / 16).clamp(16, 256) as u32;
        Self::new(total, PER_SOURCE.min(total))
    }

    /// Counts a connection from `ip`, or says why not.
    pub(crate) fn admit(&mut self, ip: IpAddr) -> Result<(), Refused> {
        let src = source(ip);
        let mine = self.by_source.get(&src).copied().unwrap_or(0);
        if mine >= self.per_source {
            return Err(Refused::Source(mine));
        }
        if self.total >= self.max_total {
            return Err(Refused::Total(self.total));
        }
        *self.by_source.entry(src).or_insert(0) += 1;
        self.total += 1;
        Ok(())
    }

    /// A connection from `ip` authenticated, failed or timed out.
    pub(crate) fn release(&mut self, ip: IpAddr) {
        let src = source(ip);
        if let Some(n) = self.by_source.get_mut(&src) {
            *n -= 1;
            if *n == 0 {
                self.by_source.remove(&src);
            }
            self.total -= 1;
        }
    }
}

/// Lets a log line with a given key through once per [`LOG_WINDOW`].
#[derive(Debug)]
pub(crate) struct LogLimit<K> {
    /// Per key: when a line was last let through, and how many were held
    /// back since.
    keys: HashMap<K, (Instant, u64)>,
}

impl<K: std::hash::Hash + Eq> LogLimit<K> {
    pub(crate) fn new() -> Self {
        Self {
            keys: HashMap::new(),
        }
    }

    /// `Some(held back since the last line)` when a line with `key` may be
    /// logged at `now`; `None` when it is to be held back.
    pub(crate) fn allow(&mut self, key: K, now: Instant) -> Option<u64> {
        if self.keys.len() >= LOG_KEYS && !self.keys.contains_key(&key) {
            self.keys
                .retain(|_, (at, _)| now.saturating_duration_since(*at) < LOG_WINDOW);
            if self.keys.len() >= LOG_KEYS {
                // A flood of distinct keys: hold them all back rather than
                // grow without bound.
                return None;
            }
        }
        match self.keys.get_mut(&key) {
            Some((at, held)) if now.saturating_duration_since(*at) < LOG_WINDOW => {
                *held += 1;
                None
            }
            Some((at, held)) => {
                *at = now;
                Some(std::mem::take(held))
            }
            None => {
                self.keys.insert(key, (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn caps_per_source_and_in_all() {
        let mut p = Pending::new(5, 3);
        for _ in 0..3 {
            p.admit(ip("10.0.0.1")).unwrap();
        }
        assert_eq!(p.admit(ip("10.0.0.1")), Err(Refused::Source(3)));
        // The same /64 is one source; a v4-mapped address is the v4 one.
        p.admit(ip("2001:db8::1")).unwrap();
        p.admit(ip("2001:db8::2")).unwrap();
        assert_eq!(p.admit(ip("10.0.0.2")), Err(Refused::Total(5)));
        p.release(ip("10.0.0.1"));
        assert_eq!(p.admit(ip("::ffff:10.0.0.1")), Ok(()));
        for s in [
            "10.0.0.1",
            "10.0.0.1",
            "10.0.0.1",
            "2001:db8::9",
            "2001:db8::1",
        ] {
            p.release(ip(s));
        }
        assert_eq!(p.total, 0);
        // A release of something never admitted changes nothing.
        p.release(ip("10.9.9.9"));
        assert_eq!(p.total, 0);
    }

    #[test]
    fn caps_follow_the_descriptor_limit() {
        assert_eq!(Pending::for_fd_limit(1024).max_total, 64);
        assert_eq!(Pending::for_fd_limit(64).max_total, 16);
        assert_eq!(Pending::for_fd_limit(1 << 20).max_total, 256);
        assert_eq!(Pending::for_fd_limit(1 << 20).per_source, PER_SOURCE);
    }

    #[test]
    fn a_repeated_line_is_let_through_once_per_window_with_a_count() {
        let mut l = LogLimit::new();
        let t0 = Instant::now();
        assert_eq!(l.allow("a", t0), Some(0));
        for i in 1..=100 {
            assert_eq!(l.allow("a", t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(l.allow("b", t0), Some(0), "keys are independent");
        assert_eq!(l.allow("a", t0 + LOG_WINDOW), Some(100));
        assert_eq!(l.allow("a", t0 + LOG_WINDOW), None);
    }

    #[test]
    fn a_flood_of_keys_stays_bounded() {
        let mut l = LogLimit::new();
        let t0 = Instant::now();
        for k in 0..LOG_KEYS as u32 {
            assert!(l.allow(k, t0).is_some());
        }
        assert_eq!(l.allow(u32::MAX, t0), None);
        assert_eq!(
            l.allow(u32::MAX, t0 + LOG_WINDOW),
            Some(0),
            "old keys forgotten"
        );
        assert!(l.keys.len() <= LOG_KEYS);
    }
}
