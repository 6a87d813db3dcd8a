//! The socket mesh's engine, shared by TCP and QUIC: one [`Node`] per mesh
//! endpoint, run on one I/O thread inside a single-threaded executor, so its
//! own state is `Rc`/`RefCell`; only [`Shared`] crosses threads. This file
//! holds the node itself, start-up and losing a peer; its jobs live in
//! submodules: `connect` (accept, connecting on first use, handshake),
//! `members` (join, member lists, open-cluster ids), `stream` (each peer's
//! reader and paced writer) and `heartbeat`.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::api::PeerDown;
use crate::config::{MeshConfig, MeshError};
use crate::driver::{Closer, Net};
use crate::peer::{Shared, UP};
use crate::proto::{HandshakeConfig, Member, Msg, PROTOCOL_VERSION, UNASSIGNED};

mod connect;
mod heartbeat;
mod members;
mod spin;
mod stream;

pub(super) use members::request_id;
pub(super) use spin::SPIN;

/// One endpoint of the socket mesh, shared by its tasks on the I/O thread.
pub(super) struct Node<N: Net> {
    net: N,
    cfg: MeshConfig,
    sh: Arc<Shared>,
    hs: HandshakeConfig,
    epoch: Instant,
    closers: RefCell<HashMap<u32, Closer>>,
    /// Head only: who joined, with their addresses and descriptions (live
    /// members only in an open cluster).
    joined: RefCell<BTreeMap<u32, Member>>,
    members_sent: Cell<bool>,
    got_members: Cell<bool>,
    /// Members' addresses, from the head's lists.
    addrs: RefCell<HashMap<u32, SocketAddr>>,
    /// Peers a connecting task runs for (one at a time each).
    dialing: RefCell<HashSet<u32>>,
    /// Peers to connect to once the head lists them (a message was queued,
    /// or one knocked, before we knew its address).
    unlisted: RefCell<HashSet<u32>>,
    /// Head of an open cluster: the next id to hand out.
    next_id: Cell<u32>,
    progress: tokio::sync::Notify,
    writers: Cell<usize>,
    writers_done: tokio::sync::Notify,
    /// How long the I/O thread spins after moving a message (see `spin`);
    /// zero: it sleeps at once (hosted meshes, io_uring).
    spin: Duration,
    active: Cell<bool>,
    spin_wake: tokio::sync::Notify,
}

impl<N: Net> Node<N> {
    /// Runs the node until shutdown: `ready` gets the listen address once
    /// the mesh is complete. `plaintext`: frames are not sealed (see
    /// `select::plaintext`); `spin`: see `spin`.
    pub(super) async fn run(
        net: N,
        plaintext: bool,
        spin: Duration,
        cfg: MeshConfig,
        sh: Arc<Shared>,
        ready: Sender<Result<SocketAddr, MeshError>>,
    ) {
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
            addrs: RefCell::new(HashMap::new()),
            dialing: RefCell::new(HashSet::new()),
            unlisted: RefCell::new(HashSet::new()),
            next_id: Cell::new(1),
            progress: tokio::sync::Notify::new(),
            writers: Cell::new(0),
            writers_done: tokio::sync::Notify::new(),
            spin,
            active: Cell::new(false),
            spin_wake: tokio::sync::Notify::new(),
            cfg,
            sh,
        });
        node.sh.lazy.store(true, Ordering::Release);
        let accept = tokio::task::spawn_local(node.clone().accept_loop());
        let connects = tokio::task::spawn_local(node.clone().connect_loop());
        // Heartbeats flow to each peer from the moment it is connected, not
        // from the end of start-up: a node whose own start-up still waits for
        // a slow peer must not look silent to the peers it already reached.
        let beat = tokio::task::spawn_local(node.clone().heartbeat_loop());
        let spinner = tokio::task::spawn_local(node.clone().spin_loop());
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
        spinner.abort();
        accept.abort();
        connects.abort();
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

    /// Start-up is over: the head has everyone's `Join` (a launched
    /// cluster's; an open one's head is ready at once, `members_sent`
    /// starts true) and a member has the head's list. Members connect to
    /// each other when they first send.
    fn ready(&self) -> bool {
        if self.cfg.node == 0 {
            let all_up = self.cfg.open || (1..self.cfg.nodes).all(|p| self.sh.state(p) == UP);
            return all_up && self.members_sent.get();
        }
        self.got_members.get() && self.sh.state(0) == UP
    }

    async fn bootstrap(self: Rc<Self>) -> Result<(), MeshError> {
        let deadline = self.epoch + self.cfg.connect_timeout;
        if self.cfg.node != 0 {
            let join = Msg::Join {
                node: self.cfg.node,
                addr: self.net.local_addr().to_string(),
                shards: self.cfg.shards,
                info: self.cfg.info.clone(),
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
        } else {
            (
                Vec::new(),
                "waiting for the head's member list, which it sends once every node joined; its error names the nodes missing",
            )
        };
        MeshError::Timeout {
            missing,
            after: self.cfg.connect_timeout,
            stage,
        }
    }

    fn close_peer(&self, peer: u32) {
        let closer = self.closers.borrow_mut().remove(&peer);
        if let Some(c) = closer {
            c();
        }
    }

    /// Reports `peer` down (once), closes its connection, and tells the
    /// others as `Shared::telling` says.
    fn down(&self, peer: u32, why: PeerDown) {
        let telling = self.sh.telling(peer, &why);
        let reported = self.sh.mark_dead(peer, why);
        self.close_peer(peer);
        if reported && self.cfg.node == 0 {
            self.joined_gone(peer);
        }
        if reported {
            self.sh.tell_dead(peer, telling);
        }
    }
}
