//! Getting connected: the accept loop, dialing a peer (retried, bounded per
//! attempt), the proto handshake over a fresh connection, and attaching an
//! authenticated connection to its peer (a reader and a writer task).

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ring::rand::SecureRandom;
use tokio::time::Instant;

use super::Node;
use crate::driver::{Conn, Net, Rd, Wr};
use crate::peer::{PENDING, UP};
use crate::proto::{Handshake, HandshakeConfig, HandshakeError, Role, Session, UNASSIGNED};

/// The first bound on one dial (see `Node::dial`).
pub(super) const DIAL_ATTEMPT: Duration = Duration::from_millis(500);

impl<N: Net> Node<N> {
    pub(super) async fn accept_loop(self: Rc<Self>) {
        loop {
            match self.net.accept().await {
                Ok(inc) => {
                    let node = self.clone();
                    tokio::task::spawn_local(async move {
                        match N::ready(inc).await {
                            Ok(conn) => node.accepted(conn).await,
                            Err(e) => {
                                tracing::warn!(node = node.cfg.node, error = %e, "refused an incoming connection")
                            }
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(node = self.cfg.node, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    async fn accepted(self: Rc<Self>, mut conn: Conn<N::R, N::W>) {
        let me = self.cfg.node;
        match self.handshake(&mut conn, Role::Responder, None).await {
            Ok(sess) if sess.peer == UNASSIGNED => self.assign(sess, conn).await,
            // Lower ids dial higher ones and everyone dials the head, so a
            // legitimate incoming peer is any node (any assigned id in an
            // open cluster) at the head, lower ids elsewhere.
            Ok(sess)
                if sess.peer != 0 && sess.peer < self.sh.nodes() && (me == 0 || sess.peer < me) =>
            {
                self.attach(sess, conn)
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
                tracing::warn!(node = me, remote = %conn.remote, "refused a connection: {e}");
                (conn.close)();
            }
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
