//! Getting connected: the accept loop (which admits unauthenticated
//! connections under the caps of `crate::gate`), connecting to a peer when
//! a message is first queued for it, dialing (retried, bounded per
//! attempt), the proto handshake over a fresh connection, and attaching an
//! authenticated connection to its peer (a reader and a writer task).
//!
//! Connections are opened when first needed, so a node holds one per peer
//! it talks to (the head, its ring of watchers, the nodes it exchanges
//! work with), not one per member: at 1,000 nodes a full mesh would be
//! 500,000 connections, each kept alive. Every node dials the head when it
//! joins. Between two other nodes the lower id dials; the higher one, when
//! it first needs the link, *knocks*: it dials and authenticates, then
//! waits for the lower id to hang up, which dials it back. So one
//! connection carries a pair's messages whoever wanted it first, and two
//! nodes wanting it at once cannot end up with two.

use std::cell::RefCell;
use std::fmt::Display;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ring::rand::SecureRandom;
use tokio::time::Instant;

use super::Node;
use crate::api::PeerDown;
use crate::driver::{Conn, Net, Rd, Wr};
use crate::gate::{self, LogLimit, Pending, HANDSHAKE_LIMIT};
use crate::peer::{PENDING, UP};
use crate::proto::{Handshake, HandshakeConfig, HandshakeError, Role, Session, UNASSIGNED};

/// The first bound on one dial (see `Node::dial`).
pub(super) const DIAL_ATTEMPT: Duration = Duration::from_millis(500);

/// The accept loop's admission state, shared by the tasks it spawns.
struct Admission {
    node: u32,
    pending: RefCell<Pending>,
    log: RefCell<LogLimit<(&'static str, IpAddr)>>,
}

impl Admission {
    /// Logs a warning about `what` from `from`, at most once per
    /// `gate::LOG_WINDOW` for each kind and source.
    fn warn(&self, what: &'static str, from: IpAddr, detail: impl Display) {
        let now = std::time::Instant::now();
        let Some(held) = self.log.borrow_mut().allow((what, gate::source(from)), now) else {
            return;
        };
        if held > 0 {
            tracing::warn!(node = self.node, remote = %from, "{what}: {detail} ({held} more like this in the last {} s were not logged)", gate::LOG_WINDOW.as_secs());
        } else {
            tracing::warn!(node = self.node, remote = %from, "{what}: {detail}");
        }
    }
}

/// One admitted, not yet authenticated connection; dropping it frees its
/// place.
struct Ticket {
    admission: Rc<Admission>,
    from: IpAddr,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admission.pending.borrow_mut().release(self.from);
    }
}

impl<N: Net> Node<N> {
    pub(super) async fn accept_loop(self: Rc<Self>) {
        let fd_limit = gate::raise_fd_limit();
        let admission = Rc::new(Admission {
            node: self.cfg.node,
            pending: RefCell::new(Pending::for_fd_limit(fd_limit)),
            log: RefCell::new(LogLimit::new()),
        });
        loop {
            match self.net.accept().await {
                Ok(inc) => {
                    let from = N::remote(&inc).ip();
                    // Dropping a refused connection closes it at once.
                    if let Err(why) = admission.pending.borrow_mut().admit(from) {
                        admission.warn("turned a connection away", from, why);
                        continue;
                    }
                    let ticket = Ticket {
                        admission: admission.clone(),
                        from,
                    };
                    let node = self.clone();
                    tokio::task::spawn_local(async move {
                        // TLS (QUIC) and owl's handshake share one bound.
                        let deadline =
                            Instant::now() + HANDSHAKE_LIMIT.min(node.cfg.connect_timeout);
                        match tokio::time::timeout_at(deadline, N::ready(inc)).await {
                            Ok(Ok(conn)) => node.accepted(conn, ticket, deadline).await,
                            Ok(Err(e)) => ticket.admission.warn("refused a connection", from, e),
                            Err(_) => ticket.admission.warn(
                                "refused a connection",
                                from,
                                "it did not authenticate in time",
                            ),
                        }
                    });
                }
                Err(e) => {
                    admission.warn("accept failed", IpAddr::V4(Ipv4Addr::UNSPECIFIED), &e);
                    // Out of descriptors, retrying at once only spins: wait
                    // for connections to close.
                    let out_of_fds = matches!(e.raw_os_error(), Some(23 | 24)); // ENFILE, EMFILE
                    let pause = if out_of_fds || e.kind() == io::ErrorKind::OutOfMemory {
                        100
                    } else {
                        10
                    };
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
            }
        }
    }

    async fn accepted(
        self: Rc<Self>,
        mut conn: Conn<N::R, N::W>,
        ticket: Ticket,
        deadline: Instant,
    ) {
        let me = self.cfg.node;
        let limit = deadline.saturating_duration_since(Instant::now());
        let shook = handshake(&mut conn, self.hs.clone(), Role::Responder, None, limit).await;
        // Authenticated (or refused): no longer pending.
        let admission = ticket.admission.clone();
        drop(ticket);
        match shook {
            Ok(sess) if sess.peer == UNASSIGNED => self.assign(sess, conn).await,
            // Lower ids dial higher ones and everyone dials the head, so a
            // legitimate incoming peer is any node (any assigned id in an
            // open cluster) at the head, lower ids elsewhere.
            Ok(sess)
                if sess.peer != 0 && sess.peer < self.sh.nodes() && (me == 0 || sess.peer < me) =>
            {
                self.attach(sess, conn)
            }
            // A higher id knocks: it wants the link, and we dial it. (An
            // open cluster's newcomer may knock before the head's news of
            // it reached us: we dial once the head lists it.)
            Ok(sess) if me != 0 && sess.peer > me => {
                (conn.close)();
                self.connect_to(sess.peer);
            }
            Ok(sess) => {
                tracing::warn!(
                    node = me,
                    peer = sess.peer,
                    "refused a connection from a node that should not dial us"
                );
                (conn.close)();
            }
            Err(e) => {
                admission.warn("refused a connection", conn.remote.ip(), e);
                (conn.close)();
            }
        }
    }

    /// Drains the peers `Shared::push` found not connected.
    pub(super) async fn connect_loop(self: Rc<Self>) {
        loop {
            self.sh.connect_wake.notified().await;
            let wanted = std::mem::take(&mut *self.sh.connect_wanted.lock());
            for peer in wanted {
                self.connect_to(peer);
            }
        }
    }

    /// Connects to `peer` if it is a member not connected yet and no
    /// connecting task runs for it: dials it if ours is the lower id,
    /// knocks otherwise (see the module doc). A member the head has not
    /// listed yet is connected to once it is. The link to the head is
    /// the one start-up made.
    pub(super) fn connect_to(self: &Rc<Self>, peer: u32) {
        let me = self.cfg.node;
        if peer == me || peer == 0 || me == 0 || self.sh.closing.load(Ordering::Acquire) {
            return;
        }
        if self.sh.state(peer) != PENDING {
            return;
        }
        let Some(addr) = self.addrs.borrow().get(&peer).copied() else {
            self.unlisted.borrow_mut().insert(peer);
            return;
        };
        if !self.dialing.borrow_mut().insert(peer) {
            return;
        }
        tokio::task::spawn_local(self.clone().connect_task(peer, addr));
    }

    async fn connect_task(self: Rc<Self>, peer: u32, addr: SocketAddr) {
        let deadline = Instant::now() + self.cfg.connect_timeout;
        if self.cfg.node < peer {
            self.clone().dial(peer, addr, deadline).await;
        } else {
            self.clone().knock(peer, addr, deadline).await;
        }
        self.dialing.borrow_mut().remove(&peer);
        if self.sh.state(peer) == PENDING && !self.sh.closing.load(Ordering::Acquire) {
            let why = format!(
                "no connection to {addr} within {:?}",
                self.cfg.connect_timeout
            );
            self.down(peer, PeerDown::Unreachable(why));
        }
    }

    /// Asks the lower id `peer` to dial us (see the module doc): connects,
    /// authenticates and waits for it to hang up; knocks again if its
    /// connection does not come, with a bound that doubles, until
    /// `deadline`.
    async fn knock(self: Rc<Self>, peer: u32, addr: SocketAddr, deadline: Instant) {
        let mut bound = DIAL_ATTEMPT;
        loop {
            let pending =
                || self.sh.state(peer) == PENDING && !self.sh.closing.load(Ordering::Acquire);
            if !pending() || Instant::now() >= deadline {
                return;
            }
            let attempt = deadline.min(Instant::now() + bound);
            let knocked = tokio::time::timeout_at(attempt, async {
                let mut conn = self.net.dial(addr).await.ok()?;
                let sess = self.handshake(&mut conn, Role::Initiator, Some(peer)).await;
                if sess.is_ok() {
                    // Our last handshake bytes must arrive before the
                    // close: the peer hangs up once it has read them.
                    until_hung_up(&mut conn.rd).await;
                }
                (conn.close)();
                sess.ok()
            })
            .await;
            // Knocked: its connection comes within the bound, or we knock
            // again.
            let wait_until = if matches!(knocked, Ok(Some(_))) {
                deadline.min(Instant::now() + bound)
            } else {
                attempt.max(Instant::now() + Duration::from_millis(20))
            };
            while pending() && Instant::now() < wait_until {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            bound = bound.saturating_mul(2);
        }
    }

    pub(super) async fn dial(self: Rc<Self>, peer: u32, addr: SocketAddr, deadline: Instant) {
        let mut bound = DIAL_ATTEMPT;
        loop {
            if self.sh.closing.load(Ordering::Acquire) || self.sh.state(peer) != PENDING {
                return;
            }
            if Instant::now() >= deadline {
                return;
            }
            // Bounded per attempt: a QUIC dial to a port nobody listens on yet
            // would otherwise wait for its idle timeout instead of retrying.
            // The bound doubles after each attempt that runs out, so a
            // handshake slowed by a loaded machine gets to finish.
            let attempt = deadline.min(Instant::now() + bound);
            match tokio::time::timeout_at(attempt, self.net.dial(addr)).await {
                Err(_) => {
                    bound = bound.saturating_mul(2);
                    continue;
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::PermissionDenied => {
                    // Authentication refused (QUIC's TLS): retrying would
                    // only repeat it.
                    tracing::warn!(node = self.cfg.node, peer, %addr, "connecting failed: {e}");
                    return;
                }
                Ok(Err(e)) => {
                    tracing::debug!(node = self.cfg.node, peer, %addr, error = %e, "dial failed, retrying");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Ok(Ok(mut conn)) => match tokio::time::timeout_at(
                    deadline.min(Instant::now() + bound),
                    self.handshake(&mut conn, Role::Initiator, Some(peer)),
                )
                .await
                {
                    // A handshake stalled (a lost datagram under load waits
                    // for QUIC's growing retransmission timer): start over
                    // with a longer bound rather than spend the whole budget.
                    Err(_) => {
                        (conn.close)();
                        bound = bound.saturating_mul(2);
                    }
                    Ok(Ok(sess)) => return self.attach(sess, conn),
                    Ok(Err(e)) => {
                        tracing::warn!(node = self.cfg.node, peer, %addr, "handshake failed: {e}");
                        (conn.close)();
                        if !matches!(e, HandshakeError::Truncated { .. } | HandshakeError::Io(_)) {
                            return; // a refusal; retrying would only repeat it
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                },
            }
        }
    }

    async fn handshake(
        &self,
        conn: &mut Conn<N::R, N::W>,
        role: Role,
        expect: Option<u32>,
    ) -> Result<Session, HandshakeError> {
        handshake(
            conn,
            self.hs.clone(),
            role,
            expect,
            self.cfg.connect_timeout,
        )
        .await
    }

    fn attach(self: &Rc<Self>, sess: Session, conn: Conn<N::R, N::W>) {
        let peer = sess.peer;
        let Some(p) = self.sh.peers.get(peer) else {
            tracing::warn!(
                node = self.cfg.node,
                peer,
                "refused a connection from an unknown node"
            );
            return (conn.close)();
        };
        if p.state
            .compare_exchange(PENDING, UP, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            tracing::warn!(
                node = self.cfg.node,
                peer,
                "refused a second connection from the same node"
            );
            (conn.close)();
            return;
        }
        tracing::debug!(node = self.cfg.node, peer, remote = %conn.remote, "peer connected");
        p.last_seen_ms.store(self.now_ms(), Ordering::Relaxed);
        self.closers.borrow_mut().insert(peer, conn.close);
        tokio::task::spawn_local(self.clone().reader(peer, conn.rd, sess.decoder));
        self.writers.set(self.writers.get() + 1);
        tokio::task::spawn_local(self.clone().writer(peer, conn.wr, sess.encoder));
        self.sh.handler.on_peer_up(peer);
        self.progress.notify_one();
    }
}

/// Reads (and drops) until the peer hangs up or the connection fails.
pub(super) async fn until_hung_up<R: Rd>(rd: &mut R) {
    let mut buf = vec![0u8; 64];
    loop {
        let (r, b) = rd.read(buf).await;
        buf = b;
        if !matches!(r, Ok(n) if n > 0) {
            return;
        }
    }
}

/// Runs the proto handshake over `conn`, bounded by `limit`.
pub(super) async fn handshake<R: Rd, W: Wr>(
    conn: &mut Conn<R, W>,
    cfg: HandshakeConfig,
    role: Role,
    expect: Option<u32>,
    limit: Duration,
) -> Result<Session, HandshakeError> {
    let mut nonce = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| HandshakeError::Io("no system randomness".into()))?;
    let mut hs = Handshake::new(cfg, role, expect, nonce);
    let fut = async {
        let mut out = hs.take_output();
        let mut buf = vec![0u8; 4096];
        loop {
            if !out.is_empty() {
                let (r, b) = conn.wr.write_all(out).await;
                r.map_err(|e| HandshakeError::Io(e.to_string()))?;
                out = b;
                out.clear();
            }
            let (r, b) = conn.rd.read(buf).await;
            buf = b;
            let n = r.map_err(|e| HandshakeError::Io(e.to_string()))?;
            if n == 0 {
                return Err(hs.eof());
            }
            let res = hs.feed(&buf[..n]);
            out = hs.take_output();
            match res {
                Ok(None) => {}
                Ok(Some(sess)) => {
                    if !out.is_empty() {
                        let (r, _) = conn.wr.write_all(out).await;
                        r.map_err(|e| HandshakeError::Io(e.to_string()))?;
                    }
                    return Ok(sess);
                }
                Err(e) => {
                    // Flush our proof so the peer learns why, too.
                    if !out.is_empty() {
                        let _ = conn.wr.write_all(out).await;
                    }
                    return Err(e);
                }
            }
        }
    };
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or(Err(HandshakeError::Timeout(limit)))
}
