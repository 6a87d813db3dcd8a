//! Deaths as the transport and the engine see them: crashes, and nodes
//! declared dead while they still run.
//!
//! What a real node does (`transport::mesh::node::down`,
//! `peer::Shared::mark_dead`, `engine::host`): when its transport finds a
//! peer gone (heartbeat timeout, lost connection, a gap in the frames) or
//! hears the head announce it dead, it marks the peer dead once, drops
//! what it had queued for it, closes the connection and calls
//! `node_gone`; from then on it drops whatever the peer still sends. Then
//! it tells others (`peer::Shared::telling`), in order with what it sent
//! them before: the head announces every death to every node it still
//! talks to (`NodeDead`); another node tells the head of a silence it
//! found (heartbeat timeout: only a node's watchers see it; the head
//! decides, and of two nodes that found each other silent the first
//! accused goes, since the head drops what a dead node still says); the
//! head's silence every node finds for itself. A lost or closed connection is
//! told to nobody (the node that sees one closed may be the one declared
//! dead), nor is a death one was told of. The peer, if it still runs, reads what was written to it
//! before the close, then sees the connection end and marks the closer
//! dead in turn. A node that loses the head that way was declared dead by
//! it: in a launched cluster `serve` ends (`HeadLost`, or `DeclaredDead`
//! for a node that stalled) and the process exits, which its peers see as
//! a crash; a member of an open cluster that did not stall serves on, cut
//! off from every node that heard the announcement.

use owl_transport::proto::Msg;

use super::cluster::{Cluster, Cut};
use super::link::Packet;
use crate::ids::NodeId;
use crate::owner::Owner;

/// The head: the node that announces every death it learns of.
const HEAD: u32 = 0;

/// How a node learned a peer is dead, which decides whom it tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Seen {
    /// Its connection to the peer failed.
    Lost,
    /// The peer closed the connection (it declared this node dead).
    Closed,
    /// The peer fell silent (this node watches it).
    Silent,
    /// A node told it (`NodeDead`).
    Told(u32),
}

impl Cluster {
    /// `n` dies: its state is gone; of what it wrote, a random tail never
    /// left its host; every live node will notice. `counted`: a new death
    /// (not a declared node leaving, counted when it was declared).
    pub(super) fn kill(&mut self, n: u32, counted: bool) {
        if counted {
            self.deaths += 1;
        }
        self.log.push(format!("n{n} dies"));
        let node = &mut self.nodes[n as usize];
        node.alive = false;
        self.cut.remove(&n);
        node.inbox.clear();
        node.waiting.clear();
        let held = std::mem::take(&mut node.held);
        let queue = std::mem::take(&mut node.queue);
        let owner = std::mem::replace(&mut node.owner, Owner::new(NodeId(n), 0, []));
        let entries = node.table.drain();
        drop((held, queue, owner, entries));
        for (&(a, b), l) in self.links.iter_mut() {
            if a == n {
                let keep = self.rng.below(l.wire.len() + 1);
                l.lose_tail(keep);
            } else if b == n {
                l.clear();
            }
        }
        for other in self.live() {
            if !self.nodes[other as usize].noticed.contains(&NodeId(n)) {
                self.notices.insert((other, n));
            }
        }
        // Nothing can notice on behalf of the dead node.
        self.notices.retain(|&(at, _)| at != n);
        self.eofs.retain(|&(at, _)| at != n);
    }

    /// `at`'s transport finds the crashed `dead` gone (its connection
    /// lost, or its silence when `at` watches it).
    pub(super) fn notice(&mut self, at: u32, dead: u32) {
        self.notices.remove(&(at, dead));
        let seen = if self.rng.below(2) == 0 {
            Seen::Lost
        } else {
            Seen::Silent
        };
        self.mark_down(at, dead, seen);
    }

    /// `at` reads the end of the connection `gone` closed on it.
    pub(super) fn eof(&mut self, at: u32, gone: u32) {
        self.eofs.remove(&(at, gone));
        self.mark_down(at, gone, Seen::Closed);
    }

    /// `at`'s transport marks `gone` dead (once), as `mesh::node::down`
    /// does, and tells the others as it would.
    pub(super) fn mark_down(&mut self, at: u32, gone: u32, seen: Seen) {
        let node = &mut self.nodes[at as usize];
        if !node.alive || !node.noticed.insert(NodeId(gone)) {
            return;
        }
        let how = match seen {
            Seen::Lost => "loses its connection to".to_string(),
            Seen::Closed => "finds its connection closed by".to_string(),
            Seen::Silent => "finds silent".to_string(),
            Seen::Told(by) => format!("hears from n{by} that"),
        };
        self.log.push(format!("n{at} {how} n{gone} dead"));
        self.with_ctx(at, |node, ctx| node.owner.node_gone(ctx, NodeId(gone)));
        // What `at` queued for `gone` is dropped; what it wrote still
        // reaches `gone` before the connection's end. What `gone` sent
        // `at` is read by nobody.
        if let Some(l) = self.link(at, gone) {
            l.drop_pending();
        }
        if let Some(l) = self.link(gone, at) {
            l.clear();
        }
        if self.nodes[gone as usize].alive {
            self.eofs.insert((gone, at));
        }
        if gone == HEAD && self.nodes[HEAD as usize].alive && self.rng.below(4) != 0 {
            // This node lost the head while the head runs: the head
            // declared it dead, or will once it sees the connection end.
            // It leaves (a launched cluster's node, or one that stalled);
            // one time in four it is an open cluster's member and serves
            // on, cut off.
            self.log.push(format!("n{at} lost the head: it leaves"));
            self.kill(at, false);
        }
        if !self.nodes[at as usize].alive {
            return;
        }
        // Whom `at` tells (`peer::Shared::telling`).
        let tell: Vec<u32> = match seen {
            _ if at == HEAD => self.live(),
            // Every node watches the head itself.
            Seen::Silent if gone == HEAD => Vec::new(),
            Seen::Silent => vec![HEAD],
            Seen::Lost | Seen::Closed | Seen::Told(_) => Vec::new(),
        };
        for c in tell {
            let skip = c == at || c == gone || !self.nodes[c as usize].alive;
            if !skip && !self.nodes[at as usize].noticed.contains(&NodeId(c)) {
                self.queue(at, c, Packet::Msg(Msg::NodeDead { node: gone }));
            }
        }
    }

    /// `by`'s failure detector declares a live peer dead (missed
    /// heartbeats across a partition, or a peer that stopped running for
    /// a while): preferably one cut off from it.
    pub(super) fn declare(&mut self, by: u32) {
        let me = &self.nodes[by as usize];
        // Two nodes other than the head that find each other silent are
        // settled by the head. With the head gone nobody settles them:
        // they stay apart for good while the others count both alive, and
        // the owner layer must neither leak nor hang across that split.
        let peers: Vec<u32> = self
            .live()
            .into_iter()
            .filter(|&p| p != by && !me.noticed.contains(&NodeId(p)))
            .collect();
        if peers.is_empty() {
            return;
        }
        let cut: Vec<u32> = peers
            .iter()
            .copied()
            .filter(|p| matches!(self.cut.get(p), Some(Cut::Both | Cut::Outgoing)))
            .collect();
        let pool = if cut.is_empty() || self.rng.below(2) == 0 {
            &peers
        } else {
            &cut
        };
        let gone = pool[self.rng.below(pool.len())];
        self.deaths += 1;
        self.mark_down(by, gone, Seen::Silent);
    }
}
