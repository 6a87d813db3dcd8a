//! Each peer as both sides of the transport see it: the runtime's threads
//! queue into it (through [`crate::Link`]), the I/O thread drains it, and its
//! state goes PENDING, UP once connected, then DEAD or LEFT. [`Shared`] holds
//! every peer (a [`Slots`] table, growing under readers in an open cluster)
//! plus the node-wide flags both sides watch. Every driver (socket mesh, shm)
//! keeps its peers here, so the liveness rules (reported once, never after
//! this node's own shutdown, late messages of the dead dropped) are written
//! once.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use crate::api::{Handler, PeerDown};
use crate::config::MeshConfig;
use crate::detect::{Action, DetectConfig, Detector};
use crate::proto::{Member, Msg, OwlMsg};
use crate::slots::Slots;

pub(crate) const PENDING: u8 = 0;
pub(crate) const UP: u8 = 1;
pub(crate) const DEAD: u8 = 2;
pub(crate) const LEFT: u8 = 3;

/// One peer as seen from the runtime's threads and the I/O thread.
pub(crate) struct Peer {
    pub(crate) queue: Mutex<Vec<Msg>>,
    pub(crate) wake: tokio::sync::Notify,
    pub(crate) state: AtomicU8,
    /// Listed by the head (its address is known): while PENDING, a member
    /// not connected yet, which counts as live (see [`Shared::is_live`]).
    pub(crate) member: AtomicBool,
    pub(crate) last_seen_ms: AtomicU64,
    /// Its last heartbeat's load (`queued << 32 | idle_shards`), or
    /// `UNKNOWN_LOAD`: what the head's `room` bits are made of.
    load: AtomicU64,
}

/// No heartbeat heard yet.
const UNKNOWN_LOAD: u64 = u64::MAX;

/// A node spills new ready tasks to another (spillback) once this many
/// wait in a shard's queue and no shard of its node is idle; a node has
/// room for them while it is below that.
pub const SPILL_BACKLOG: u32 = 64;

/// Whether a node that reported this load can take spilled work: an idle
/// shard, or a backlog shorter than [`SPILL_BACKLOG`].
pub fn has_room(queued: u32, idle_shards: u32) -> bool {
    idle_shards > 0 || queued < SPILL_BACKLOG
}

/// State shared by the runtime's threads (through [`crate::Link`]) and the
/// I/O thread.
pub(crate) struct Shared {
    pub(crate) me: u32,
    /// An open cluster: members join at any time.
    open: bool,
    /// Every node this one knows of, `0..peers.len()`: fixed for a
    /// launched cluster, growing as nodes join an open one.
    pub(crate) peers: Slots<Peer>,
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) closing: AtomicBool,
    pub(crate) stop: tokio::sync::Notify,
    pub(crate) queued: AtomicU32,
    pub(crate) idle_shards: AtomicU32,
    /// Set by a driver whose I/O thread does not wait on `Notify`s (shm):
    /// called after every change that thread must notice.
    pub(crate) kick: OnceLock<Box<dyn Fn() + Send + Sync>>,
    /// Set by a threaded driver that other threads may poll for it (shm):
    /// one non-blocking pass if nobody else is in one; whether it moved
    /// anything (see `Mesh::help_poll`).
    pub(crate) help: OnceLock<Box<dyn Fn() -> bool + Send + Sync>>,
    /// Threads spinning for work that call `help` meanwhile (see
    /// `Mesh::helping`): while there is one, the I/O thread sleeps as soon
    /// as it is idle instead of spinning beside it.
    pub(crate) helpers: AtomicU32,
    /// `Mesh::kill` (not `shutdown`) stopped the node.
    pub(crate) killed: AtomicBool,
    /// Set by `Mesh::shutdown` once `Shutdown` is queued for every live peer
    /// (after `closing`): a driver flushing its queues waits for it.
    pub(crate) shutdown_queued: AtomicBool,
    /// Closes a mesh this one runs over (the shm driver's TCP control
    /// mesh) when no I/O thread of ours owns it (hosted): `Mesh::shutdown`
    /// and `kill` call it (with whether the node was killed) once the host
    /// finished.
    pub(crate) close_control: Mutex<Option<CloseControl>>,
    /// When the last heartbeat round ran (ms on the driver's clock;
    /// `u64::MAX` before the first).
    last_round_ms: AtomicU64,
    /// How long this node did not run, once a round found that it did not
    /// run for longer than `dead_after` (0: never).
    pub(crate) stalled_ms: AtomicU64,
    /// Bytes of frames written to peers (headers and sealing included),
    /// for traffic figures.
    pub(crate) bytes_out: AtomicU64,
    /// Whom this node heartbeats and watches: a ring, so each node sends
    /// and checks `WATCHERS` peers a round whatever the cluster's size
    /// (`crate::detect`); made at the first round.
    detect: Mutex<Option<Detector>>,
    /// Heartbeats sent so far, for traffic figures.
    pub(crate) heartbeats_out: AtomicU64,
    /// `Mesh::mute_heartbeats`: rounds do nothing.
    pub(crate) muted: AtomicBool,
    /// Set by the socket mesh, which connects to a peer when a message is
    /// first queued for it: such peers are listed in `connect_wanted` and
    /// `connect_wake` notified (see `mesh::node::connect`).
    pub(crate) lazy: AtomicBool,
    pub(crate) connect_wanted: Mutex<Vec<u32>>,
    pub(crate) connect_wake: tokio::sync::Notify,
}

/// Peers that heartbeat each node and declare it dead when it falls
/// silent (they tell the head, which announces it to every node); every
/// node and the head also watch each other.
pub(crate) const WATCHERS: usize = 3;

/// Whom a node tells of a death it learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Telling {
    /// Every live node: the head, of every death.
    All,
    /// The head, which announces it: a watcher, of a silence it found.
    Head,
    /// Nobody.
    Nobody,
}

/// See [`Shared::close_control`].
pub(crate) type CloseControl = Box<dyn FnOnce(bool) + Send>;

impl Peer {
    fn new() -> Self {
        Peer {
            queue: Mutex::new(Vec::new()),
            wake: tokio::sync::Notify::new(),
            state: AtomicU8::new(PENDING),
            member: AtomicBool::new(false),
            last_seen_ms: AtomicU64::new(0),
            load: AtomicU64::new(UNKNOWN_LOAD),
        }
    }
}

impl Shared {
    /// For `cfg`: a launched cluster's nodes, or an open cluster's ids up
    /// to ours (later members are added as the head announces them).
    pub(crate) fn new(cfg: &MeshConfig, handler: Arc<dyn Handler>) -> Self {
        let me = cfg.node;
        let nodes = if cfg.open { me + 1 } else { cfg.nodes };
        let peers = Slots::new();
        peers.grow(nodes, Peer::new);
        Self {
            me,
            open: cfg.open,
            peers,
            handler,
            closing: AtomicBool::new(false),
            stop: tokio::sync::Notify::new(),
            queued: AtomicU32::new(0),
            idle_shards: AtomicU32::new(0),
            kick: OnceLock::new(),
            help: OnceLock::new(),
            helpers: AtomicU32::new(0),
            killed: AtomicBool::new(false),
            shutdown_queued: AtomicBool::new(false),
            bytes_out: AtomicU64::new(0),
            detect: Mutex::new(None),
            heartbeats_out: AtomicU64::new(0),
            muted: AtomicBool::new(false),
            lazy: AtomicBool::new(false),
            connect_wanted: Mutex::new(Vec::new()),
            connect_wake: tokio::sync::Notify::new(),
            close_control: Mutex::new(None),
            last_round_ms: AtomicU64::new(u64::MAX),
            stalled_ms: AtomicU64::new(0),
        }
    }

    /// Nodes known so far (ids `0..nodes()`).
    pub(crate) fn nodes(&self) -> u32 {
        self.peers.len()
    }

    /// Makes ids `0..n` known (new nodes of an open cluster).
    pub(crate) fn grow(&self, n: u32) {
        self.peers.grow(n, Peer::new);
    }

    /// Wakes a driver that registered a `kick`; no-op otherwise.
    pub(crate) fn kick(&self) {
        if let Some(k) = self.kick.get() {
            k();
        }
    }

    pub(crate) fn state(&self, peer: u32) -> u8 {
        self.peers
            .get(peer)
            .map_or(PENDING, |p| p.state.load(Ordering::Acquire))
    }

    /// Whether `peer` can be sent to: connected, or (socket meshes) a
    /// member not connected yet, which the first message connects to.
    pub(crate) fn is_live(&self, peer: u32) -> bool {
        self.peers
            .get(peer)
            .is_some_and(|p| match p.state.load(Ordering::Acquire) {
                UP => true,
                PENDING => p.member.load(Ordering::Acquire),
                _ => false,
            })
    }

    /// Marks `peer` listed by the head.
    pub(crate) fn set_member(&self, peer: u32) {
        if let Some(p) = self.peers.get(peer) {
            p.member.store(true, Ordering::Release);
        }
    }

    /// Queues for `to`; wakes its writer only on empty -> non-empty, so a
    /// burst of sends costs one wake-up and goes out as one frame. A
    /// socket mesh's peer not connected yet is connected to.
    pub(crate) fn push(&self, to: u32, msg: Msg) {
        if self.open && to >= self.nodes() && to < self.nodes().saturating_mul(2).max(1024) {
            // An open cluster's newcomer this node has not heard of from
            // the head yet (its id came with a message from another node):
            // the message waits for the head's news. Ids are handed out in
            // order, so a real one is not far past the known ones.
            self.grow(to + 1);
        }
        let Some(p) = self.peers.get(to).filter(|_| to != self.me) else {
            tracing::debug!(to, "dropping message to self or an unknown node");
            return;
        };
        let state = p.state.load(Ordering::Acquire);
        if matches!(state, DEAD | LEFT) {
            return;
        }
        let was_empty = {
            let mut q = p.queue.lock();
            q.push(msg);
            q.len() == 1
        };
        if was_empty {
            p.wake.notify_one();
            if state == PENDING && self.lazy.load(Ordering::Relaxed) {
                self.connect_wanted.lock().push(to);
                self.connect_wake.notify_one();
            }
            self.kick();
        }
    }

    /// One heartbeat round of a driver: every watched peer (its ring, and
    /// the head, or every node on the head) silent for longer than
    /// `dead_after_ms` is returned with its silence (ms), for the driver
    /// to declare down; its watchers and the head (the head: every node)
    /// are sent a heartbeat carrying this node's load.
    pub(crate) fn heartbeat_round(
        &self,
        seq: u64,
        now_ms: u64,
        dead_after_ms: u64,
    ) -> Vec<(u32, u64)> {
        let mut silent_peers = Vec::new();
        let last = self.last_round_ms.swap(now_ms, Ordering::Relaxed);
        let gap = now_ms.saturating_sub(last);
        if last != u64::MAX && gap > dead_after_ms && self.stalled_ms.load(Ordering::Relaxed) == 0 {
            // This node did not run for longer than `dead_after` (stopped,
            // paused, starved): every silence it would measure now is its
            // own, and its peers have declared it dead meanwhile. It
            // accuses nobody; the runtime leaves (`Mesh::stalled`).
            tracing::warn!(
                node = self.me,
                gap_ms = gap,
                "this node did not run for longer than dead_after: its peers have declared it dead"
            );
            self.stalled_ms.store(gap.max(1), Ordering::Release);
        }
        if self.stalled_ms.load(Ordering::Acquire) != 0 || self.muted.load(Ordering::Acquire) {
            return silent_peers;
        }
        let mut detect = self.detect.lock();
        let d = detect.get_or_insert_with(|| {
            let cfg = DetectConfig {
                watchers: WATCHERS,
                // Every round beats (rounds come every `heartbeat`).
                heartbeat_ms: 0,
                dead_after_ms,
            };
            Detector::new(self.me, cfg, [], now_ms)
        });
        // The ring is the live members, connected or not: heartbeats
        // queued for a ring peer not connected yet connect to it.
        for peer in (0..self.nodes()).filter(|&p| p != self.me) {
            match self.state(peer) {
                DEAD | LEFT => d.on_gone(peer, now_ms),
                _ if self.is_live(peer) => d.on_joined(peer, now_ms),
                _ => {}
            }
        }
        // Anything a watched peer sent counts as hearing from it.
        let watched: Vec<u32> = d.watched().collect();
        for peer in watched {
            d.on_heartbeat(peer, self.peers[peer].last_seen_ms.load(Ordering::Relaxed));
        }
        let mut beat_to: Vec<u32> = Vec::new();
        for action in d.tick(now_ms) {
            match action {
                Action::Heartbeat { to } => beat_to.push(to),
                Action::Dead { node, silent_ms } => silent_peers.push((node, silent_ms)),
                // (Found above, before the detector: its own check agrees.)
                Action::SelfStalled { .. } => {}
            }
        }
        drop(detect);
        // Besides the ring, every node and the head watch each other: a
        // node decides for itself that the head is gone (nobody else can
        // tell it), and the head hears from every node. O(1) a node, O(N)
        // at the head.
        let others: Vec<u32> = if self.me == 0 {
            (1..self.nodes()).collect()
        } else {
            vec![0]
        };
        for peer in others {
            if self.state(peer) != UP || silent_peers.iter().any(|&(p, _)| p == peer) {
                continue;
            }
            let silent =
                now_ms.saturating_sub(self.peers[peer].last_seen_ms.load(Ordering::Relaxed));
            if silent > dead_after_ms {
                silent_peers.push((peer, silent));
            } else if !beat_to.contains(&peer) {
                beat_to.push(peer);
            }
        }
        let room = if self.me == 0 && self.nodes() as usize > WATCHERS + 1 {
            self.room_bits()
        } else {
            Vec::new()
        };
        for to in beat_to {
            if self.is_live(to) {
                let hb = Msg::Heartbeat {
                    seq,
                    queued: self.queued.load(Ordering::Relaxed),
                    idle_shards: self.idle_shards.load(Ordering::Relaxed),
                    room: room.clone(),
                };
                self.heartbeats_out.fetch_add(1, Ordering::Relaxed);
                self.push(to, hb);
            }
        }
        silent_peers
    }

    /// On the head: which nodes have room for spilled work, one bit each
    /// (see `Msg::Heartbeat`), from their last heartbeats (this node's own
    /// load for itself). A node not heard from yet counts as having room,
    /// a dead one as not.
    fn room_bits(&self) -> Vec<u8> {
        let n = self.nodes();
        let mut bits = vec![0u8; n.div_ceil(8) as usize];
        for node in 0..n {
            let room = if node == self.me {
                has_room(
                    self.queued.load(Ordering::Relaxed),
                    self.idle_shards.load(Ordering::Relaxed),
                )
            } else if !self.is_live(node) {
                false
            } else {
                match self.peers[node].load.load(Ordering::Relaxed) {
                    UNKNOWN_LOAD => true,
                    l => has_room((l >> 32) as u32, l as u32),
                }
            };
            if room {
                bits[node as usize / 8] |= 1 << (node % 8);
            }
        }
        bits
    }

    /// A batch from `peer`: records that it was heard from, takes out the
    /// messages the transport consumes itself and hands the rest to the
    /// handler, in order. `None` once the peer is gone (late messages of a
    /// dead node are dropped).
    pub(crate) fn deliver(&self, peer: u32, now_ms: u64, mut msgs: Vec<Msg>) -> Option<Control> {
        if self.state(peer) != UP {
            return None;
        }
        self.peers[peer]
            .last_seen_ms
            .store(now_ms, Ordering::Relaxed);
        if let Some(Msg::Heartbeat {
            queued,
            idle_shards,
            ..
        }) = msgs
            .iter()
            .rev()
            .find(|m| matches!(m, Msg::Heartbeat { .. }))
        {
            let load = (u64::from(*queued) << 32) | u64::from(*idle_shards);
            self.peers[peer].load.store(load, Ordering::Relaxed);
        }
        let mut c = Control::default();
        msgs.retain(|m| match m {
            Msg::Shutdown => {
                c.left = true;
                false
            }
            // From the head, or from a peer that watched the node (the
            // ring: a death is seen by a node's watchers only).
            Msg::NodeDead { node } => {
                c.dead.push(*node);
                false
            }
            Msg::NodeLeft { node } if peer == 0 => {
                c.left_nodes.push(*node);
                false
            }
            Msg::Join {
                node, addr, info, ..
            } if *node == peer => {
                c.joined = Some((addr.clone(), info.clone()));
                false
            }
            Msg::Members { members } if peer == 0 => {
                c.members.push(members.clone());
                false
            }
            _ => true,
        });
        if !msgs.is_empty() {
            self.handler.on_msgs(peer, msgs);
        }
        // Announced deaths and departures of nodes this one knows, other
        // than itself.
        c.dead.retain(|&n| n < self.nodes() && n != self.me);
        c.left_nodes.retain(|&n| n < self.nodes() && n != self.me);
        Some(c)
    }

    /// The head announced that `peer` left. A connected peer is not marked
    /// here: its own `Shutdown` arrives after everything it sent us, while
    /// the head's relay may overtake those messages (seen over QUIC, where
    /// the two connections are paced independently). A peer not connected
    /// (it sent us nothing) is marked left here.
    pub(crate) fn announced_left(&self, peer: u32) {
        if self.state(peer) != UP {
            self.mark_left(peer);
        }
    }

    /// On the head: tells every other live node that `peer` is dead.
    pub(crate) fn announce_dead(&self, peer: u32) {
        self.announce(peer, Msg::NodeDead { node: peer });
    }

    /// Whom this node tells of a death it learned as `why` (see
    /// [`Telling`]): so that every node ends up agreeing who is dead
    /// (links are never made again, so two nodes that lost each other
    /// cannot both stay).
    pub(crate) fn telling(&self, peer: u32, why: &PeerDown) -> Telling {
        match why {
            _ if self.me == 0 => Telling::All,
            // Only a node's watchers hear its silence: they tell the head,
            // which decides (of two nodes that found each other silent,
            // the first accused goes: the head drops what a dead node
            // still says). Every node watches the head itself.
            PeerDown::HeartbeatTimeout(_) | PeerDown::Unreachable(_) if peer == 0 => {
                Telling::Nobody
            }
            // A member nobody else may have tried to reach: the head
            // decides, as for a silence.
            PeerDown::HeartbeatTimeout(_) | PeerDown::Unreachable(_) => Telling::Head,
            // Every peer of a crashed node sees its connections end; a
            // node that sees one closed may itself be the one declared
            // dead, and must not accuse the closer.
            PeerDown::ConnectionLost(_)
            | PeerDown::Protocol(_)
            | PeerDown::Announced
            | PeerDown::Crashed => Telling::Nobody,
        }
    }

    /// Tells those `telling` says that `peer` is dead.
    pub(crate) fn tell_dead(&self, peer: u32, telling: Telling) {
        match telling {
            Telling::All => self.announce_dead(peer),
            Telling::Head if peer != 0 && self.state(0) == UP => {
                self.push(0, Msg::NodeDead { node: peer });
            }
            Telling::Head | Telling::Nobody => {}
        }
    }

    /// On the head: tells every other live node that `peer` left cleanly
    /// (see [`Shared::announced_left`]).
    pub(crate) fn announce_left(&self, peer: u32) {
        self.announce(peer, Msg::NodeLeft { node: peer });
    }

    fn announce(&self, peer: u32, msg: Msg) {
        for other in 1..self.nodes() {
            if other != peer && self.state(other) == UP {
                self.push(other, msg.clone());
            }
        }
    }

    /// Marks `peer` dead and reports it, once; false if it was already
    /// dead or gone, or this node is shutting down.
    pub(crate) fn mark_dead(&self, peer: u32, why: PeerDown) -> bool {
        let Some(p) = self.peers.get(peer) else {
            return false;
        };
        let mut cur = p.state.load(Ordering::Acquire);
        loop {
            if matches!(cur, DEAD | LEFT) {
                return false;
            }
            match p
                .state
                .compare_exchange(cur, DEAD, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        p.queue.lock().clear();
        p.wake.notify_one();
        self.kick();
        if self.closing.load(Ordering::Acquire) {
            return false;
        }
        tracing::warn!(node = self.me, peer, ?why, "peer down");
        self.handler.on_peer_down(peer, why);
        true
    }

    /// The peer said `Shutdown`: it is gone without failure.
    /// Reported through `Handler::on_peer_left` once, unless this node is
    /// shutting down itself.
    pub(crate) fn mark_left(&self, peer: u32) {
        let Some(p) = self.peers.get(peer) else {
            return;
        };
        let was = p.state.swap(LEFT, Ordering::AcqRel);
        if was != LEFT {
            p.queue.lock().clear();
            p.wake.notify_one();
            self.kick();
        }
        // A member never connected to is reported too: the runtime counts
        // it live until told.
        let known = was == UP || (was == PENDING && p.member.load(Ordering::Acquire));
        if known && !self.closing.load(Ordering::Acquire) {
            tracing::debug!(node = self.me, peer, "peer left");
            self.handler.on_peer_left(peer);
        }
    }
}

/// What a batch carried for the transport itself (see [`Shared::deliver`]).
#[derive(Debug, Default)]
pub(crate) struct Control {
    /// The peer sent `Shutdown`: it left cleanly.
    pub(crate) left: bool,
    /// Nodes the head announced dead.
    pub(crate) dead: Vec<u32>,
    /// Nodes the head announced left (see [`Shared::announced_left`]).
    pub(crate) left_nodes: Vec<u32>,
    /// The peer's `Join` (its listen address and description); the head
    /// acts on it.
    pub(crate) joined: Option<(String, Option<Box<OwlMsg>>)>,
    /// Member lists from the head.
    pub(crate) members: Vec<Vec<Member>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}
