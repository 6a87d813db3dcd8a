//! Deaths as the transport and the engine see them: crashes, and nodes
//! declared dead while they still run.
//!
//! What a real node does (`transport::mesh::node::down`,
//! `peer::Shared::mark_dead`, `engine::host`): when its transport finds a
//! peer gone (heartbeat timeout, lost connection, a gap in the frames) or
//! hears the head announce it dead, it marks the peer dead once, drops
//! what it had queued for it, closes the connection and calls
//! `node_gone`; from then on it drops whatever the peer still sends. Only
//! the head announces (`NodeDead`, to every other node it still talks to,
//! in order with what it sent them before). The peer, if it still runs,
//! reads what was written to it before the close, then sees the
//! connection end and marks the closer dead in turn. A node that loses the
//! head that way was declared dead by it: in a launched cluster `serve`
//! ends (`HeadLost`, or `DeclaredDead` for a node that stalled) and the
//! process exits, which its peers see as a crash; a member of an open
//! cluster that did not stall serves on, cut off from every node that
//! heard the announcement. Two other nodes that lose each other stay
//! apart for good (nobody reconnects), each alive to the rest.

use owl_transport::proto::Msg;

use super::cluster::{Cluster, Cut};
use super::link::Packet;
use crate::ids::NodeId;
use crate::owner::Owner;

/// The head: the node that announces deaths.
const HEAD: u32 = 0;

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

    /// `at`'s transport finds the crashed `dead` gone.
    pub(super) fn notice(&mut self, at: u32, dead: u32) {
        self.notices.remove(&(at, dead));
        self.mark_down(at, dead, "notices");
    }

    /// `at` reads the end of the connection `gone` closed on it.
    pub(super) fn eof(&mut self, at: u32, gone: u32) {
        self.eofs.remove(&(at, gone));
        self.mark_down(at, gone, "finds its connection closed by");
    }

    /// `at`'s transport marks `gone` dead (once), as `mesh::node::down`
    /// does; `how` says what it saw, for the log.
    pub(super) fn mark_down(&mut self, at: u32, gone: u32, how: &str) {
        let node = &mut self.nodes[at as usize];
        if !node.alive || !node.noticed.insert(NodeId(gone)) {
            return;
        }
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
        if at == HEAD {
            for c in self.live() {
                let told = c == HEAD || c == gone;
                if !told && !self.nodes[HEAD as usize].noticed.contains(&NodeId(c)) {
                    self.queue(HEAD, c, Packet::Msg(Msg::NodeDead { node: gone }));
                }
            }
        }
    }

    /// `by`'s failure detector declares a live peer dead (missed
    /// heartbeats across a partition, or a peer that stopped running for
    /// a while): preferably one cut off from it.
    pub(super) fn declare(&mut self, by: u32) {
        let me = &self.nodes[by as usize];
        // Two nodes other than the head that lose each other stay apart
        // for good, each alive to the rest: only with `pairwise` (see
        // `DetConfig::pairwise`). A declaration that involves the head
        // ends with every node agreeing.
        let pairwise = self.pairwise || by == HEAD;
        let peers: Vec<u32> = self
            .live()
            .into_iter()
            .filter(|&p| p != by && !me.noticed.contains(&NodeId(p)))
            .filter(|&p| pairwise || p == HEAD)
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
        self.mark_down(by, gone, "declares");
    }
}
