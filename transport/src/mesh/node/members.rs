//! Membership: the head collects `Join`s and sends member lists (each
//! member's address and description); members connect to each other when
//! they first need to (`connect`). In an open cluster the head also hands
//! out node ids (`assign`), which a joining node asks for ([`request_id`]).

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use tokio::time::Instant;

use super::connect::{handshake, until_hung_up, DIAL_ATTEMPT};
use super::Node;
use crate::config::{MeshConfig, MeshError};
use crate::driver::{Conn, Net, Rd, Wr};
use crate::peer::{PENDING, UP};
use crate::proto::{
    HandshakeConfig, HandshakeError, Member, Msg, OwlMsg, Role, Session, PROTOCOL_VERSION,
    UNASSIGNED,
};

impl<N: Net> Node<N> {
    /// Head of an open cluster: hands the connecting node the next id over
    /// this connection, then waits (bounded) for it to hang up; the node
    /// joins with that id on a connection of its own.
    pub(super) async fn assign(self: Rc<Self>, mut sess: Session, mut conn: Conn<N::R, N::W>) {
        let node = self.next_id.get();
        self.next_id.set(node + 1);
        self.sh.grow(node + 1);
        tracing::info!(node = self.cfg.node, assigned = node, remote = %conn.remote, "assigned a node id");
        let mut out = Vec::new();
        let _ = sess
            .encoder
            .encode_split(vec![Msg::Assigned { node }], &mut out);
        let (r, _) = conn.wr.write_all(out).await;
        if r.is_ok() {
            conn.wr.finish().await;
            let _ =
                tokio::time::timeout(self.cfg.connect_timeout, until_hung_up(&mut conn.rd)).await;
        }
        (conn.close)();
    }

    /// Head of an open cluster: `peer` is no longer a member to list.
    pub(super) fn joined_gone(&self, peer: u32) {
        if self.cfg.open {
            self.joined.borrow_mut().remove(&peer);
        }
    }

    pub(super) fn on_join(&self, peer: u32, addr: String, info: Option<Box<OwlMsg>>) {
        self.sh.set_member(peer);
        let news = Member {
            node: peer,
            addr,
            info,
        };
        let mut joined = self.joined.borrow_mut();
        joined.insert(peer, news.clone());
        let list = |joined: &BTreeMap<u32, Member>| {
            let head = Member {
                node: 0,
                addr: self.net.local_addr().to_string(),
                info: self.cfg.info.clone(),
            };
            std::iter::once(head)
                .chain(joined.values().cloned())
                .collect::<Vec<_>>()
        };
        if self.cfg.open {
            // The newcomer learns every live member, the members learn it.
            self.sh.push(
                peer,
                Msg::Members {
                    members: list(&joined),
                },
            );
            for &other in joined.keys().filter(|&&o| o != peer) {
                let members = vec![news.clone()];
                self.sh.push(other, Msg::Members { members });
            }
            tracing::info!(
                node = self.cfg.node,
                joined = peer,
                members = joined.len() + 1,
                "node joined"
            );
            return;
        }
        if joined.len() + 1 == self.cfg.nodes as usize && !self.members_sent.get() {
            let members = list(&joined);
            for p in 1..self.cfg.nodes {
                self.sh.push(
                    p,
                    Msg::Members {
                        members: members.clone(),
                    },
                );
            }
            self.members_sent.set(true);
            self.progress.notify_one();
        }
    }

    /// The head's member list: the first one ends start-up; later ones
    /// (open clusters) announce nodes that joined since. Each member's
    /// description goes to the runtime as if it had sent it; a member
    /// something waits for (a queued message, a knock) is connected to.
    pub(super) fn on_members(self: &Rc<Self>, members: Vec<Member>) {
        self.got_members.set(true);
        let me = self.cfg.node;
        let limit = if self.cfg.open {
            UNASSIGNED
        } else {
            self.cfg.nodes
        };
        if let Some(max) = members.iter().map(|m| m.node).filter(|&p| p < limit).max() {
            self.sh.grow(max + 1);
        }
        for m in members {
            let peer = m.node;
            // (A peer may have dialed us before its listing reached us.)
            if peer == me || peer >= limit || !matches!(self.sh.state(peer), PENDING | UP) {
                continue;
            }
            match m.addr.parse() {
                Ok(addr) => drop(self.addrs.borrow_mut().insert(peer, addr)),
                Err(e) => {
                    tracing::warn!(node = me, peer, addr = m.addr, error = %e, "bad member address");
                    continue;
                }
            }
            if let Some(info) = m.info {
                self.sh.handler.on_msgs(peer, vec![Msg::Owl(*info)]);
            }
            self.sh.set_member(peer);
            let queued = !self.sh.peers[peer].queue.lock().is_empty();
            if self.unlisted.borrow_mut().remove(&peer) || queued {
                self.connect_to(peer);
            }
        }
        self.progress.notify_one();
    }
}

/// Asks the head of an open cluster for a node id: dials it as
/// [`UNASSIGNED`] and reads its `Assigned` answer. Retries until the head
/// answers or `cfg.connect_timeout` runs out; a refusal (wrong secret or
/// version) is not retried.
/// `plaintext` as for `Node::run`.
pub(crate) async fn request_id<N: Net>(
    net: &N,
    plaintext: bool,
    cfg: &MeshConfig,
) -> Result<u32, MeshError> {
    let hs = HandshakeConfig {
        me: UNASSIGNED,
        nodes: 1,
        secret: cfg.secret,
        plaintext,
        max_frame: cfg.max_frame,
        version: PROTOCOL_VERSION,
        accept_unassigned: false,
    };
    let deadline = Instant::now() + cfg.connect_timeout;
    let timeout = || MeshError::Timeout {
        missing: vec![0],
        after: cfg.connect_timeout,
        stage: "asking the head for a node id",
    };
    let mut bound = DIAL_ATTEMPT;
    let mut last_refusal: Option<HandshakeError> = None;
    let mut refusals = 0;
    loop {
        let now = Instant::now();
        // A head that is up but ends three handshakes in a row will not
        // change its mind.
        if now >= deadline || refusals >= 3 {
            // The head answered but hung up during the handshake: it
            // refused us (it logs why), most likely for the secret.
            return Err(match last_refusal {
                Some(e) => MeshError::Setup(format!(
                    "the head at {} ended every handshake ({e}); check that this node uses the cluster's secret and that the head is an open cluster's (owl start --head), see the head's log",
                    cfg.head
                )),
                None => timeout(),
            });
        }
        let mut conn = match tokio::time::timeout_at(deadline.min(now + bound), net.dial(cfg.head))
            .await
        {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return Err(MeshError::Setup(format!(
                    "the head at {} refused this node: {e}; start it with the cluster's secret (OWL_SECRET_FILE, or the secret file in the head's state directory)",
                    cfg.head
                )));
            }
            Ok(Err(e)) => {
                tracing::debug!(head = %cfg.head, error = %e, "dial to the head failed, retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Err(_) => {
                bound = bound.saturating_mul(2);
                continue;
            }
        };
        let limit = deadline.saturating_duration_since(Instant::now());
        let mut sess = match handshake(&mut conn, hs.clone(), Role::Initiator, Some(0), limit).await
        {
            Ok(sess) => sess,
            // Closed before a byte came back: the head is at its cap of
            // connections waiting to authenticate (see `gate`), not
            // refusing us; try again.
            Err(HandshakeError::Truncated { got: 0 }) => {
                (conn.close)();
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Err(e @ (HandshakeError::Io(_) | HandshakeError::Truncated { .. })) => {
                tracing::debug!(head = %cfg.head, "handshake with the head failed, retrying: {e}");
                last_refusal = Some(e);
                refusals += 1;
                (conn.close)();
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Err(e) => {
                (conn.close)();
                return Err(MeshError::Setup(format!(
                    "the head at {} refused to give this node an id: {e}",
                    cfg.head
                )));
            }
        };
        let answer = tokio::time::timeout_at(deadline, async {
            let mut buf = vec![0u8; 4096];
            loop {
                while let Some(msgs) = sess.decoder.next_batch().map_err(|e| e.to_string())? {
                    if let Some(node) = msgs.iter().find_map(|m| match m {
                        Msg::Assigned { node } => Some(*node),
                        _ => None,
                    }) {
                        return Ok(node);
                    }
                }
                let (r, b) = conn.rd.read(buf).await;
                buf = b;
                match r {
                    Ok(0) => return Err("the head closed the connection without an id".to_string()),
                    Ok(n) => sess.decoder.feed(&buf[..n]),
                    Err(e) => return Err(e.to_string()),
                }
            }
        })
        .await;
        (conn.close)();
        return match answer {
            Ok(Ok(node)) if node != UNASSIGNED && node != 0 => Ok(node),
            Ok(Ok(node)) => Err(MeshError::Setup(format!("the head handed out the invalid id {node}"))),
            Ok(Err(why)) => Err(MeshError::Setup(format!(
                "asking the head at {} for a node id failed: {why}; is it the head of an open cluster (owl start --head)?",
                cfg.head
            ))),
            Err(_) => Err(timeout()),
        };
    }
}
