//! The driver every socket transport shares: bootstrap, handshakes, one
//! reader and one writer task per peer, heartbeats. It runs on one I/O thread
//! inside a single-threaded executor, so its own state is `Rc`/`RefCell`;
//! only [`Shared`] crosses threads.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use ring::rand::SecureRandom;
use tokio::time::Instant;

use super::{MeshConfig, MeshError, PeerDown, Shared, TransportKind, DEAD, LEFT, PENDING, UP};
use crate::proto::{
    Handshake, HandshakeConfig, HandshakeError, Msg, Role, Session, PROTOCOL_VERSION, UNASSIGNED,
};

/// Reads into an owned buffer (the io_uring way); `Ok(0)` is end of stream.
pub(crate) trait Rd: 'static {
    async fn read(&mut self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>);
}

/// Writes a whole owned buffer and gives it back for reuse.
pub(crate) trait Wr: 'static {
    async fn write_all(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>);
    /// Ends the stream after the last frame, waiting (bounded) until the
    /// peer has it where the transport needs that (QUIC).
    async fn finish(&mut self);
}

/// Tears a connection down so its pending reads and writes end.
pub(crate) type Closer = Box<dyn Fn()>;

/// A connected byte stream to one peer.
pub(crate) struct Conn<R, W> {
    pub(crate) rd: R,
    pub(crate) wr: W,
    /// Tears the connection down so pending reads and writes end.
    pub(crate) close: Closer,
    pub(crate) remote: SocketAddr,
}

/// A socket transport: listen, accept, dial.
pub(crate) trait Net: Sized + 'static {
    type R: Rd;
    type W: Wr;
    /// An accepted connection not yet ready for bytes (QUIC still has its
    /// TLS handshake to do); finished in its own task by [`Net::ready`].
    type Incoming: 'static;
    fn local_addr(&self) -> SocketAddr;
    async fn accept(&self) -> io::Result<Self::Incoming>;
    async fn ready(inc: Self::Incoming) -> io::Result<Conn<Self::R, Self::W>>;
    async fn dial(&self, addr: SocketAddr) -> io::Result<Conn<Self::R, Self::W>>;
    /// Called once after every connection is closed, before the runtime ends.
    async fn close(&self) {}
}

/// Runs on the I/O thread: picks the executor, binds, runs the node until
/// shutdown. `ready` gets the listen address once the mesh is complete.
pub(crate) fn run_io_thread(
    cfg: MeshConfig,
    sh: Arc<Shared>,
    ready: Sender<Result<SocketAddr, MeshError>>,
) {
    match cfg.kind {
        TransportKind::Tcp { .. } => match tokio_uring::Runtime::new(&tokio_uring::builder()) {
            Ok(rt) => rt.block_on(async move {
                tracing::debug!(node = cfg.node, "TCP transport on io_uring");
                match crate::tcp::UringNet::bind(cfg.listen) {
                    Ok(net) => Node::run(net, cfg, sh, ready).await,
                    Err(e) => drop(ready.send(Err(e))),
                }
            }),
            Err(e) => {
                tracing::warn!(error = %e, "io_uring is unavailable; TCP transport falls back to tokio (epoll)");
                with_local_runtime(ready.clone(), async move {
                    match crate::tcp::TokioNet::bind(cfg.listen).await {
                        Ok(net) => Node::run(net, cfg, sh, ready).await,
                        Err(e) => drop(ready.send(Err(e))),
                    }
                });
            }
        },
        TransportKind::Shm(shm) => crate::shm::run_io_thread(cfg, shm, sh, ready),
        TransportKind::Quic => with_local_runtime(ready.clone(), async move {
            match crate::quic::QuicNet::bind(&cfg) {
                Ok(net) => Node::run(net, cfg, sh, ready).await,
                Err(e) => drop(ready.send(Err(e))),
            }
        }),
    }
}

/// The same, on a thread the caller drives (see `hosted`): the executor
/// exists already, so only the transport is picked and bound.
#[allow(unreachable_patterns)]
pub(crate) async fn run_hosted(
    cfg: MeshConfig,
    sh: Arc<Shared>,
    ready: Sender<Result<SocketAddr, MeshError>>,
    io_loop: super::IoLoop,
) {
    // TCP uses tokio's epoll sockets even on a tokio-uring host:
    // tokio-uring hands its queued operations to the kernel only when the
    // thread parks, and a host that spins for work (owl's shards) would hold
    // every write back for its whole spin (measured: remote round trip
    // 149 µs vs 20 µs for the raw socket). The threaded mesh (`start`) keeps
    // io_uring for TCP.
    let _ = io_loop;
    match cfg.kind {
        TransportKind::Tcp { .. } => match crate::tcp::TokioNet::bind(cfg.listen).await {
            Ok(net) => Node::run(net, cfg, sh, ready).await,
            Err(e) => drop(ready.send(Err(e))),
        },
        TransportKind::Quic => match crate::quic::QuicNet::bind(&cfg) {
            Ok(net) => Node::run(net, cfg, sh, ready).await,
            Err(e) => drop(ready.send(Err(e))),
        },
        kind => drop(ready.send(Err(MeshError::Config(format!(
            "the {kind:?} transport cannot be hosted on a caller's thread"
        ))))),
    }
}

fn with_local_runtime(
    ready: Sender<Result<SocketAddr, MeshError>>,
    fut: impl std::future::Future<Output = ()>,
) {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => tokio::task::LocalSet::new().block_on(&rt, fut),
        Err(e) => drop(ready.send(Err(MeshError::Setup(format!(
            "cannot build the tokio runtime: {e}"
        ))))),
    }
}

const DIAL_ATTEMPT: Duration = Duration::from_millis(500);

/// Bulk bytes (object chunks) per write; see `Node::writer`.
const WRITE_PIECE: usize = 1 << 20;

struct Node<N: Net> {
    net: N,
    cfg: MeshConfig,
    sh: Arc<Shared>,
    hs: HandshakeConfig,
    epoch: Instant,
    closers: RefCell<HashMap<u32, Closer>>,
    /// Head only: who joined, with their addresses (live members only in
    /// an open cluster).
    joined: RefCell<BTreeMap<u32, String>>,
    members_sent: Cell<bool>,
    got_members: Cell<bool>,
    /// The members the head listed first: start-up waits for them.
    expect: RefCell<Vec<u32>>,
    /// Peers a dial task was started for (each is dialed once).
    dialing: RefCell<HashSet<u32>>,
    /// Head of an open cluster: the next id to hand out.
    next_id: Cell<u32>,
    progress: tokio::sync::Notify,
    writers: Cell<usize>,
    writers_done: tokio::sync::Notify,
}

impl<N: Net> Node<N> {
    async fn run(
        net: N,
        cfg: MeshConfig,
        sh: Arc<Shared>,
        ready: Sender<Result<SocketAddr, MeshError>>,
    ) {
        // QUIC streams are already inside TLS: the proto handshake still checks
        // ids and version there, but frames are not sealed twice.
        let plaintext = match cfg.kind {
            TransportKind::Tcp { plaintext } => plaintext,
            TransportKind::Quic => true,
            // Never reached: the shm driver runs its control mesh over TCP.
            TransportKind::Shm(_) => false,
        };
        let hs = HandshakeConfig {
            me: cfg.node,
            // An open cluster's ids are whatever the head handed out.
            nodes: if cfg.open { UNASSIGNED } else { cfg.nodes },
            secret: cfg.secret,
            plaintext,
            max_frame: cfg.max_frame,
            version: PROTOCOL_VERSION,
            accept_unassigned: cfg.open && cfg.node == 0,
        };
        let node = Rc::new(Node {
            net,
            hs,
            epoch: Instant::now(),
            closers: RefCell::new(HashMap::new()),
            joined: RefCell::new(BTreeMap::new()),
            members_sent: Cell::new(cfg.open),
            got_members: Cell::new(cfg.node == 0),
            expect: RefCell::new(Vec::new()),
            dialing: RefCell::new(HashSet::new()),
            next_id: Cell::new(1),
            progress: tokio::sync::Notify::new(),
            writers: Cell::new(0),
            writers_done: tokio::sync::Notify::new(),
            cfg,
            sh,
        });
        let accept = tokio::task::spawn_local(node.clone().accept_loop());
        // Heartbeats flow to each peer from the moment it is connected, not
        // from the end of start-up: a node whose own start-up still waits for
        // a slow peer must not look silent to the peers it already reached.
        let beat = tokio::task::spawn_local(node.clone().heartbeat_loop());
        let result = tokio::select! {
            r = node.clone().bootstrap() => r,
            () = node.sh.stop.notified() => Err(MeshError::Setup("stopped during start".into())),
        };
        let ok = result.is_ok();
        let _ = ready.send(result.map(|()| node.net.local_addr()));
        if ok {
            node.sh.stop.notified().await;
        }
        beat.abort();
        accept.abort();
        // Let writers flush `Shutdown`, bounded, then cut everything.
        for p in node.sh.peers.iter() {
            p.wake.notify_one();
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while node.writers.get() > 0 {
                node.writers_done.notified().await;
            }
        })
        .await;
        for c in node.closers.borrow().values() {
            c();
        }
        node.net.close().await;
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn ready(&self) -> bool {
        if self.cfg.node == 0 {
            // A launched cluster's head waits for everyone; an open one is
            // ready at once (`members_sent` starts true).
            let all_up = self.cfg.open || (1..self.cfg.nodes).all(|p| self.sh.state(p) == UP);
            return all_up && self.members_sent.get();
        }
        // In an open cluster a member that died or left while we joined
        // is not waited for.
        let settled = |p: &u32| match self.sh.state(*p) {
            UP => true,
            DEAD | LEFT => self.cfg.open,
            _ => false,
        };
        self.got_members.get() && self.expect.borrow().iter().all(settled)
    }

    async fn bootstrap(self: Rc<Self>) -> Result<(), MeshError> {
        let deadline = self.epoch + self.cfg.connect_timeout;
        if self.cfg.node != 0 {
            let join = Msg::Join {
                node: self.cfg.node,
                addr: self.net.local_addr().to_string(),
                shards: self.cfg.shards,
            };
            self.sh.push(0, join);
            tokio::task::spawn_local(self.clone().dial(0, self.cfg.head, deadline));
        }
        while !self.ready() {
            if tokio::time::timeout_at(deadline, self.progress.notified())
                .await
                .is_err()
            {
                return Err(self.timeout_error());
            }
        }
        Ok(())
    }

    fn timeout_error(&self) -> MeshError {
        let me = self.cfg.node;
        let not_up = |p: &u32| *p != me && self.sh.state(*p) != UP;
        let (missing, stage) = if me == 0 {
            let joined = self.joined.borrow();
            (
                (1..self.cfg.nodes)
                    .filter(|p| !joined.contains_key(p))
                    .collect(),
                "waiting for nodes to join the head",
            )
        } else if self.sh.state(0) != UP {
            (vec![0], "connecting to the head")
        } else if !self.got_members.get() {
            let unknown = if self.cfg.open { 0 } else { self.cfg.nodes };
            (
                (1..unknown).filter(not_up).collect(),
                "waiting for the head's member list",
            )
        } else {
            (
                self.expect
                    .borrow()
                    .iter()
                    .copied()
                    .filter(not_up)
                    .collect(),
                "connecting to peers",
            )
        };
        MeshError::Timeout {
            missing,
            after: self.cfg.connect_timeout,
            stage,
        }
    }

    async fn accept_loop(self: Rc<Self>) {
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

    /// Head of an open cluster: hands the connecting node the next id over
    /// this connection, then waits (bounded) for it to hang up; the node
    /// joins with that id on a connection of its own.
    async fn assign(self: Rc<Self>, mut sess: Session, mut conn: Conn<N::R, N::W>) {
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
            let _ = tokio::time::timeout(self.cfg.connect_timeout, async {
                let mut buf = vec![0u8; 64];
                loop {
                    let (r, b) = conn.rd.read(buf).await;
                    buf = b;
                    if !matches!(r, Ok(n) if n > 0) {
                        break;
                    }
                }
            })
            .await;
        }
        (conn.close)();
    }

    async fn dial(self: Rc<Self>, peer: u32, addr: SocketAddr, deadline: Instant) {
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

    fn close_peer(&self, peer: u32) {
        let closer = self.closers.borrow_mut().remove(&peer);
        if let Some(c) = closer {
            c();
        }
    }

    /// Reports `peer` down (once), closes its connection; the head tells everyone.
    fn down(&self, peer: u32, why: PeerDown) {
        let reported = self.sh.mark_dead(peer, why);
        self.close_peer(peer);
        if reported && self.cfg.node == 0 {
            self.joined_gone(peer);
            self.sh.announce_dead(peer);
        }
    }

    /// Head of an open cluster: `peer` is no longer a member to list.
    fn joined_gone(&self, peer: u32) {
        if self.cfg.open {
            self.joined.borrow_mut().remove(&peer);
        }
    }

    async fn reader(self: Rc<Self>, peer: u32, mut rd: N::R, mut dec: crate::proto::FrameDecoder) {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            // Frames first: the handshake may have left whole frames in the
            // decoder that no further read will announce.
            loop {
                match dec.next_batch() {
                    Ok(Some(msgs)) => {
                        if !self.deliver(peer, msgs) {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        if self.sh.state(peer) == UP {
                            tracing::warn!(
                                node = self.cfg.node,
                                peer,
                                "closing the connection: {e}"
                            );
                        }
                        return self.down(peer, PeerDown::Protocol(e));
                    }
                }
            }
            let (r, b) = rd.read(buf).await;
            buf = b;
            match r {
                Ok(0) => {
                    let why = match dec.finish() {
                        Ok(()) => PeerDown::ConnectionLost("closed by the peer".into()),
                        Err(e) => PeerDown::Protocol(e),
                    };
                    return self.down(peer, why);
                }
                Ok(n) => dec.feed(&buf[..n]),
                Err(e) => return self.down(peer, PeerDown::ConnectionLost(e.to_string())),
            }
        }
    }

    /// Hands a batch to the handler after taking out what the transport
    /// consumes itself, and acts on that. False once the peer is gone.
    fn deliver(self: &Rc<Self>, peer: u32, msgs: Vec<Msg>) -> bool {
        let Some(c) = self.sh.deliver(peer, self.now_ms(), msgs) else {
            return false;
        };
        let me = self.cfg.node;
        for node in c.dead {
            self.down(node, PeerDown::Announced);
        }
        for node in c.left_nodes {
            self.sh.announced_left(node);
        }
        if let Some(addr) = c.joined.filter(|_| me == 0) {
            self.on_join(peer, addr);
        }
        for m in c.members {
            self.on_members(m);
        }
        if c.left {
            self.sh.mark_left(peer);
            self.close_peer(peer);
            if me == 0 && self.cfg.open {
                // Nodes that were still connecting to it stop waiting.
                self.joined_gone(peer);
                self.sh.announce_left(peer);
            }
            return false;
        }
        true
    }

    fn on_join(&self, peer: u32, addr: String) {
        let mut joined = self.joined.borrow_mut();
        joined.insert(peer, addr.clone());
        if self.cfg.open {
            // The newcomer learns every live member, the members learn it.
            let mut members: Vec<(u32, String)> = vec![(0, self.net.local_addr().to_string())];
            members.extend(joined.iter().map(|(n, a)| (*n, a.clone())));
            self.sh.push(peer, Msg::Members { members });
            for &other in joined.keys().filter(|&&o| o != peer) {
                let news = vec![(peer, addr.clone())];
                self.sh.push(other, Msg::Members { members: news });
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
            let mut members: Vec<(u32, String)> = vec![(0, self.net.local_addr().to_string())];
            members.extend(joined.iter().map(|(n, a)| (*n, a.clone())));
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

    /// The head's member list: the first one is who start-up waits for;
    /// later ones (open clusters) announce nodes that joined since. Nodes
    /// with higher ids than ours are dialed, once each.
    fn on_members(self: &Rc<Self>, members: Vec<(u32, String)>) {
        let first = !self.got_members.replace(true);
        let me = self.cfg.node;
        if first {
            *self.expect.borrow_mut() = members.iter().map(|m| m.0).filter(|&p| p != me).collect();
        }
        let limit = if self.cfg.open {
            UNASSIGNED
        } else {
            self.cfg.nodes
        };
        if let Some(max) = members.iter().map(|m| m.0).filter(|&p| p < limit).max() {
            self.sh.grow(max + 1);
        }
        let deadline = Instant::now() + self.cfg.connect_timeout;
        for (peer, addr) in members {
            if peer <= me || peer >= limit || self.sh.state(peer) != PENDING {
                continue;
            }
            if !self.dialing.borrow_mut().insert(peer) {
                continue;
            }
            match addr.parse() {
                Ok(addr) => drop(tokio::task::spawn_local(
                    self.clone().dial(peer, addr, deadline),
                )),
                Err(e) => {
                    tracing::warn!(node = self.cfg.node, peer, addr, error = %e, "bad member address")
                }
            }
        }
        self.progress.notify_one();
    }

    async fn writer(self: Rc<Self>, peer: u32, mut wr: N::W, mut enc: crate::proto::FrameEncoder) {
        let p = &self.sh.peers[peer];
        let mut batch = Vec::new();
        let mut out = Vec::with_capacity(64 << 10);
        loop {
            std::mem::swap(&mut *p.queue.lock(), &mut batch);
            if batch.is_empty() {
                if p.state.load(Ordering::Acquire) != UP {
                    break;
                }
                p.wake.notified().await;
                continue;
            }
            // Nothing follows `Shutdown` (a heartbeat queued behind it would
            // skip the flush below and let the close discard the frame).
            let shutdown_at = batch.iter().position(|m| matches!(m, Msg::Shutdown));
            if let Some(i) = shutdown_at {
                batch.truncate(i + 1);
            }
            let last_is_shutdown = shutdown_at.is_some();
            // Bulk data goes out in pieces of about `WRITE_PIECE`, each
            // sealed and written before the next is encoded: the peer
            // decodes one piece while this side seals the next, instead of
            // both waiting on one frame of every queued chunk.
            let mut rest = std::mem::take(&mut batch);
            let mut failed = false;
            while !rest.is_empty() {
                let mut bulk = 0;
                let cut = rest
                    .iter()
                    .position(|m| {
                        bulk += m.bulk_len();
                        bulk > WRITE_PIECE
                    })
                    .map_or(rest.len(), |i| i.max(1));
                let tail = rest.split_off(cut);
                out.clear();
                for (i, e) in enc.encode_split(std::mem::replace(&mut rest, tail), &mut out) {
                    tracing::error!(
                        node = self.cfg.node,
                        peer,
                        index = i,
                        "message dropped: {e}"
                    );
                }
                let (r, b) = wr.write_all(out).await;
                out = b;
                if let Err(e) = r {
                    self.down(peer, PeerDown::ConnectionLost(e.to_string()));
                    failed = true;
                    break;
                }
            }
            if failed {
                break;
            }
            if last_is_shutdown {
                wr.finish().await;
                break;
            }
        }
        self.writers.set(self.writers.get() - 1);
        self.writers_done.notify_one();
    }

    async fn heartbeat_loop(self: Rc<Self>) {
        let mut tick = tokio::time::interval(self.cfg.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let dead_after = self.cfg.dead_after.as_millis() as u64;
        let mut seq = 0u64;
        loop {
            tick.tick().await;
            seq += 1;
            let now = self.now_ms();
            for (peer, silent) in self.sh.heartbeat_round(seq, now, dead_after) {
                self.down(
                    peer,
                    PeerDown::HeartbeatTimeout(Duration::from_millis(silent)),
                );
            }
        }
    }
}

/// Runs the proto handshake over `conn`, bounded by `limit`.
async fn handshake<R: Rd, W: Wr>(
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

/// Asks the head of an open cluster for a node id: dials it as
/// [`UNASSIGNED`] and reads its `Assigned` answer. Retries until the head
/// answers or `cfg.connect_timeout` runs out; a refusal (wrong secret or
/// version) is not retried.
pub(crate) async fn request_id<N: Net>(net: &N, cfg: &MeshConfig) -> Result<u32, MeshError> {
    let plaintext = matches!(
        cfg.kind,
        TransportKind::Tcp { plaintext: true } | TransportKind::Quic
    );
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
