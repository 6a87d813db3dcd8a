//! The driver every socket transport shares: bootstrap, handshakes, one
//! reader and one writer task per peer, heartbeats. It runs on one I/O thread
//! inside a single-threaded executor, so its own state is `Rc`/`RefCell`;
//! only [`Shared`] crosses threads.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use ring::rand::SecureRandom;
use tokio::time::Instant;

use super::{MeshConfig, MeshError, PeerDown, Shared, TransportKind, PENDING, UP};
use crate::proto::{
    Handshake, HandshakeConfig, HandshakeError, Msg, Role, Session, PROTOCOL_VERSION,
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

struct Node<N: Net> {
    net: N,
    cfg: MeshConfig,
    sh: Arc<Shared>,
    hs: HandshakeConfig,
    epoch: Instant,
    closers: RefCell<Vec<Option<Closer>>>,
    /// Head only: who joined, with their addresses.
    joined: RefCell<BTreeMap<u32, String>>,
    members_sent: Cell<bool>,
    got_members: Cell<bool>,
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
            nodes: cfg.nodes,
            secret: cfg.secret,
            plaintext,
            max_frame: cfg.max_frame,
            version: PROTOCOL_VERSION,
        };
        let node = Rc::new(Node {
            net,
            hs,
            epoch: Instant::now(),
            closers: RefCell::new((0..cfg.nodes).map(|_| None).collect()),
            joined: RefCell::new(BTreeMap::new()),
            members_sent: Cell::new(false),
            got_members: Cell::new(cfg.node == 0),
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
        for p in &node.sh.peers {
            p.wake.notify_one();
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while node.writers.get() > 0 {
                node.writers_done.notified().await;
            }
        })
        .await;
        for c in node.closers.borrow().iter().flatten() {
            c();
        }
        node.net.close().await;
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn ready(&self) -> bool {
        let all_up = (0..self.cfg.nodes).all(|p| p == self.cfg.node || self.sh.state(p) == UP);
        all_up && (self.cfg.node != 0 || self.members_sent.get()) && self.got_members.get()
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
            (
                (1..self.cfg.nodes).filter(not_up).collect(),
                "waiting for the head's member list",
            )
        } else {
            (
                (0..self.cfg.nodes).filter(not_up).collect(),
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
            // Lower ids dial higher ones and everyone dials the head, so a
            // legitimate incoming peer is any node at the head, lower ids elsewhere.
            Ok(sess) if sess.peer != 0 && (me == 0 || sess.peer < me) => self.attach(sess, conn),
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
        let mut nonce = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| HandshakeError::Io("no system randomness".into()))?;
        let mut hs = Handshake::new(self.hs.clone(), role, expect, nonce);
        let limit = self.cfg.connect_timeout;
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

    fn attach(self: &Rc<Self>, sess: Session, conn: Conn<N::R, N::W>) {
        let peer = sess.peer;
        let p = &self.sh.peers[peer as usize];
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
        self.closers.borrow_mut()[peer as usize] = Some(conn.close);
        tokio::task::spawn_local(self.clone().reader(peer, conn.rd, sess.decoder));
        self.writers.set(self.writers.get() + 1);
        tokio::task::spawn_local(self.clone().writer(peer, conn.wr, sess.encoder));
        self.progress.notify_one();
    }

    fn close_peer(&self, peer: u32) {
        if let Some(c) = self.closers.borrow_mut()[peer as usize].take() {
            c();
        }
    }

    /// Reports `peer` down (once), closes its connection; the head tells everyone.
    fn down(&self, peer: u32, why: PeerDown) {
        let reported = self.sh.mark_dead(peer, why);
        self.close_peer(peer);
        if reported && self.cfg.node == 0 {
            self.sh.announce_dead(peer);
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
    /// consumes itself. False once the peer is gone.
    fn deliver(self: &Rc<Self>, peer: u32, mut msgs: Vec<Msg>) -> bool {
        if self.sh.state(peer) != UP {
            return false; // late messages from a dead node are dropped
        }
        self.sh.peers[peer as usize]
            .last_seen_ms
            .store(self.now_ms(), Ordering::Relaxed);
        let me = self.cfg.node;
        let mut left = false;
        let mut dead = Vec::new();
        let mut joined = None;
        let mut members = None;
        msgs.retain(|m| match m {
            Msg::Shutdown => {
                left = true;
                false
            }
            Msg::NodeDead { node } if peer == 0 => {
                dead.push(*node);
                false
            }
            Msg::Join { node, addr, .. } if me == 0 && *node == peer => {
                joined = Some(addr.clone());
                false
            }
            Msg::Members { members: m } if peer == 0 => {
                members = Some(m.clone());
                false
            }
            _ => true,
        });
        if !msgs.is_empty() {
            self.sh.handler.on_msgs(peer, msgs);
        }
        for node in dead {
            if node < self.cfg.nodes && node != me {
                self.down(node, PeerDown::Announced);
            }
        }
        if let Some(addr) = joined {
            self.on_join(peer, addr);
        }
        if let Some(m) = members {
            self.on_members(m);
        }
        if left {
            self.sh.mark_left(peer);
            self.close_peer(peer);
            return false;
        }
        true
    }

    fn on_join(&self, peer: u32, addr: String) {
        let mut joined = self.joined.borrow_mut();
        joined.insert(peer, addr);
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

    fn on_members(self: &Rc<Self>, members: Vec<(u32, String)>) {
        if self.got_members.replace(true) {
            return;
        }
        let deadline = self.epoch + self.cfg.connect_timeout;
        for (peer, addr) in members {
            if peer <= self.cfg.node || peer >= self.cfg.nodes {
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
        let p = &self.sh.peers[peer as usize];
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
            let last_is_shutdown = matches!(batch.last(), Some(Msg::Shutdown));
            out.clear();
            for (i, e) in enc.encode_split(std::mem::take(&mut batch), &mut out) {
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
