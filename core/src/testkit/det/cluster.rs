//! The cluster a deterministic run drives: nodes, links, inboxes and the
//! events that can happen next.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use owl_transport::proto::{Msg, WireId};

use super::{DetFailure, ENDED};
use crate::ids::{NodeId, ObjectId, ShardId};
use crate::object::objref::RawRef;
use crate::object::value::Stored;
use crate::owner::refs::Refs;
use crate::owner::table::{OwnershipTable, Released};
use crate::owner::{Ctx, TableOp};

/// Serials of the cluster's nodes (what their cells carry): node `i` is
/// `SERIAL_BASE + i`, far from the serials real runtimes use.
const SERIAL_BASE: u32 = 0x4000_0000;
/// What crosses a link.
#[derive(Debug)]
enum Packet {
    /// An owner-layer message.
    Msg(Msg),
    /// A value carrying refs (as a task argument or a returned value does).
    Refs(Vec<WireId>),
}

/// What a node's owner layer did through its context.
enum Out {
    Send(NodeId, Msg),
    Table(TableOp),
}

struct NodeCtx<'a> {
    out: &'a RefCell<Vec<Out>>,
    noticed: &'a BTreeSet<NodeId>,
}

impl Ctx for NodeCtx<'_> {
    fn send(&self, to: NodeId, msg: Msg) {
        self.out.borrow_mut().push(Out::Send(to, msg));
    }

    fn to_table(&self, shard: ShardId, op: TableOp) {
        debug_assert_eq!(shard, ShardId(0), "one shard per node");
        self.out.borrow_mut().push(Out::Table(op));
    }

    fn is_dead(&self, node: NodeId) -> bool {
        self.noticed.contains(&node)
    }
}

pub(super) struct Node {
    id: NodeId,
    alive: bool,
    table: OwnershipTable,
    refs: Refs,
    /// Handles the program holds.
    pub(super) held: Vec<RawRef>,
    /// The shard inbox: table updates, applied in order.
    inbox: VecDeque<TableOp>,
    /// Dead nodes this one knows about.
    noticed: BTreeSet<NodeId>,
}

/// A seeded generator (splitmix64): small, fast, the same on every machine.
pub(super) struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// What can happen next.
#[derive(Clone, Copy, Debug)]
pub(super) enum Event {
    Step(u32),
    Deliver(u32, u32),
    Inbox(u32),
    Notice { at: u32, dead: u32 },
}

pub(super) struct Cluster {
    seed: u64,
    pub(super) rng: Rng,
    pub(super) nodes: Vec<Node>,
    links: BTreeMap<(u32, u32), VecDeque<Packet>>,
    /// Deaths not yet noticed: (node that will notice, dead node).
    notices: BTreeSet<(u32, u32)>,
    deaths: u32,
    /// The program ended: refs that arrive are dropped at once.
    pub(super) ended: bool,
    pub(super) log: Vec<String>,
}

fn short(id: ObjectId) -> String {
    format!("{}.{}.{}", id.node.0, id.index, id.gen)
}

impl Cluster {
    pub(super) fn new(seed: u64, n: u32) -> Cluster {
        let nodes = (0..n)
            .map(|i| Node {
                id: NodeId(i),
                alive: true,
                table: OwnershipTable::new(NodeId(i), ShardId(0), SERIAL_BASE + i),
                refs: Refs::new(NodeId(i), SERIAL_BASE + i),
                held: Vec::new(),
                inbox: VecDeque::new(),
                noticed: BTreeSet::new(),
            })
            .collect();
        Cluster {
            seed,
            rng: Rng(seed),
            nodes,
            links: BTreeMap::new(),
            notices: BTreeSet::new(),
            deaths: 0,
            ended: false,
            log: Vec::new(),
        }
    }

    pub(super) fn fail(&self, what: String) -> DetFailure {
        let from = self.log.len().saturating_sub(40);
        DetFailure {
            seed: self.seed,
            what,
            tail: self.log[from..].to_vec(),
            log: self.log.clone(),
        }
    }

    /// Runs `f` on node `n`'s owner layer and applies what it did.
    fn with_ctx<R>(&mut self, n: u32, f: impl FnOnce(&Node, &NodeCtx<'_>) -> R) -> R {
        let out = RefCell::new(Vec::new());
        let node = &self.nodes[n as usize];
        let r = {
            let ctx = NodeCtx {
                out: &out,
                noticed: &node.noticed,
            };
            f(node, &ctx)
        };
        self.apply(n, out.into_inner());
        r
    }

    fn apply(&mut self, n: u32, outs: Vec<Out>) {
        for o in outs {
            match o {
                Out::Send(to, msg) => {
                    // The transport drops what goes to a node known dead.
                    if !self.nodes[n as usize].noticed.contains(&to) {
                        self.links
                            .entry((n, to.0))
                            .or_default()
                            .push_back(Packet::Msg(msg));
                    }
                }
                Out::Table(op) => self.nodes[n as usize].inbox.push_back(op),
            }
        }
    }

    /// Routes every handle group that ended, as the engine's route does:
    /// to the owning shard's inbox or, for a proxy, back to the owner.
    pub(super) fn drain_ended(&mut self) {
        loop {
            let Some(cell) = ENDED.with(|e| {
                let mut e = e.borrow_mut();
                (!e.is_empty()).then(|| e.remove(0))
            }) else {
                return;
            };
            let n = cell.rt - SERIAL_BASE;
            if !self.nodes[n as usize].alive {
                continue; // a dead node's state going away
            }
            self.with_ctx(n, |node, ctx| node.refs.group_ended(ctx, &cell));
        }
    }

    fn live(&self) -> Vec<u32> {
        self.nodes
            .iter()
            .filter(|n| n.alive)
            .map(|n| n.id.0)
            .collect()
    }

    pub(super) fn events(&self, program: bool) -> Vec<Event> {
        let mut ev = Vec::new();
        if program {
            ev.extend(self.live().into_iter().map(Event::Step));
        }
        for (&(a, b), q) in &self.links {
            if !q.is_empty() {
                ev.push(Event::Deliver(a, b));
            }
        }
        for n in &self.nodes {
            if n.alive && !n.inbox.is_empty() {
                ev.push(Event::Inbox(n.id.0));
            }
        }
        for &(at, dead) in &self.notices {
            ev.push(Event::Notice { at, dead });
        }
        ev
    }

    fn step(&mut self, n: u32, max_deaths: u32) -> Result<(), DetFailure> {
        let held = self.nodes[n as usize].held.len();
        let live = self.live();
        match self.rng.below(16) {
            0 if self.deaths < max_deaths && live.len() > 1 => self.kill(n),
            1..=4 => {
                // A new object, holding up to two refs this node holds.
                let inner = (0..self.rng.below(3))
                    .filter(|_| held > 0)
                    .map(|_| self.nodes[n as usize].held[self.rng.below(held)].clone())
                    .collect::<Vec<_>>();
                let k = inner.len();
                let node = &mut self.nodes[n as usize];
                let cell = node.table.insert_ready(Stored::refs_only(inner));
                self.log
                    .push(format!("n{n} put {} ({k} inside)", short(cell.id())));
                node.held.push(RawRef::adopt(cell));
            }
            5 | 6 if held > 0 => {
                let r = self.nodes[n as usize].held[self.rng.below(held)].clone();
                self.log.push(format!("n{n} clone {}", short(r.id())));
                self.nodes[n as usize].held.push(r);
            }
            7..=9 if held > 0 => {
                let i = self.rng.below(held);
                let r = self.nodes[n as usize].held.swap_remove(i);
                self.log.push(format!("n{n} drop {}", short(r.id())));
                drop(r);
            }
            10..=15 if held > 0 => {
                let peers: Vec<u32> = live
                    .into_iter()
                    .filter(|&p| p != n && !self.nodes[n as usize].noticed.contains(&NodeId(p)))
                    .collect();
                if peers.is_empty() {
                    return Ok(());
                }
                let to = peers[self.rng.below(peers.len())];
                let i = self.rng.below(held);
                let handoff = self.rng.below(2) == 0;
                let r = if handoff {
                    self.nodes[n as usize].held.swap_remove(i)
                } else {
                    self.nodes[n as usize].held[i].clone()
                };
                let id = r.id();
                let wire = self.with_ctx(n, |node, ctx| node.refs.ship(ctx, NodeId(to), &r));
                self.links
                    .entry((n, to))
                    .or_default()
                    .push_back(Packet::Refs(vec![wire]));
                self.log.push(format!(
                    "n{n} send {} to n{to}{}",
                    short(id),
                    if handoff { " and drop" } else { "" }
                ));
                drop(r);
            }
            _ => {}
        }
        Ok(())
    }

    /// `n` dies: its state is gone; of what it queued, a random tail is
    /// lost (not yet written to the wire); every live node will notice.
    fn kill(&mut self, n: u32) {
        self.deaths += 1;
        self.log.push(format!("n{n} dies"));
        let node = &mut self.nodes[n as usize];
        node.alive = false;
        node.inbox.clear();
        let held = std::mem::take(&mut node.held);
        let entries = node.table.drain();
        drop(held);
        drop(entries);
        for (&(a, b), q) in self.links.iter_mut() {
            if a == n {
                let keep = self.rng.below(q.len() + 1);
                q.truncate(keep);
            } else if b == n {
                q.clear();
            }
        }
        for other in self.live() {
            self.notices.insert((other, n));
        }
        // Nothing can notice on behalf of the dead node.
        self.notices.retain(|&(at, _)| at != n);
    }

    fn deliver(&mut self, a: u32, b: u32) -> Result<(), DetFailure> {
        let packet = self
            .links
            .get_mut(&(a, b))
            .and_then(VecDeque::pop_front)
            .expect("chosen link has a packet");
        let to = &self.nodes[b as usize];
        if !to.alive || to.noticed.contains(&NodeId(a)) {
            self.log.push(format!("n{a}->n{b} dropped {packet:?}"));
            return Ok(()); // late message of a node declared dead
        }
        self.log.push(format!("n{a}->n{b} {packet:?}"));
        match packet {
            Packet::Refs(ids) => {
                for w in ids {
                    let id = ObjectId::from(w);
                    let r = self.with_ctx(b, |node, ctx| node.refs.resolve(ctx, id, NodeId(a)));
                    if id.node == NodeId(b) && r.cell().is_ready() && self.deaths == 0 {
                        let freed = !matches!(r.cell().result(), Some(Ok(_)));
                        if freed {
                            return Err(self.fail(format!(
                                "n{b} received a ref to its own object {} after freeing it",
                                short(id)
                            )));
                        }
                    }
                    if self.ended {
                        drop(r); // the program is over: nobody keeps it
                    } else {
                        self.nodes[b as usize].held.push(r);
                    }
                }
            }
            Packet::Msg(Msg::AddBorrower {
                object,
                borrower,
                count,
                lender,
            }) => {
                let id = ObjectId::from(object);
                self.with_ctx(b, |node, ctx| {
                    node.refs.on_borrow(
                        ctx,
                        id,
                        NodeId(borrower),
                        count as i32,
                        Some(NodeId(lender)),
                    )
                });
            }
            Packet::Msg(Msg::Lent {
                object,
                borrower,
                count,
            }) => {
                let id = ObjectId::from(object);
                self.nodes[b as usize]
                    .refs
                    .on_lent(id, NodeId(borrower), count);
            }
            Packet::Msg(Msg::RemoveBorrower {
                object,
                borrower,
                count,
            }) => {
                let id = ObjectId::from(object);
                self.with_ctx(b, |node, ctx| {
                    node.refs
                        .on_borrow(ctx, id, NodeId(borrower), -(count as i32), None)
                });
            }
            Packet::Msg(Msg::Fetch { object }) => {
                let id = ObjectId::from(object);
                if self.nodes[b as usize].table.get(id).is_none() && self.deaths == 0 {
                    return Err(self.fail(format!(
                        "n{a} fetched {} after its owner n{b} freed it",
                        short(id)
                    )));
                }
            }
            Packet::Msg(other) => {
                return Err(self.fail(format!("unexpected message {other:?}")));
            }
        }
        Ok(())
    }

    fn inbox(&mut self, n: u32) {
        let node = &mut self.nodes[n as usize];
        let op = node.inbox.pop_front().expect("chosen inbox has an op");
        let released = node.table.apply(op);
        node.refs.table_applied(op, &released);
        let ids: Vec<String> = match &released {
            Released::Freed(e) => vec![short(e.cell.id())],
            Released::FreedMany(es) => es.iter().map(|e| short(e.cell.id())).collect(),
            Released::Kept | Released::Stale => Vec::new(),
        };
        drop(released);
        if ids.is_empty() {
            self.log.push(format!("n{n} applies {op:?}"));
        } else {
            self.log.push(format!("n{n} applies {op:?}: freed {ids:?}"));
        }
    }

    fn notice(&mut self, at: u32, dead: u32) {
        self.notices.remove(&(at, dead));
        self.log.push(format!("n{at} notices n{dead} died"));
        let node = &mut self.nodes[at as usize];
        node.noticed.insert(NodeId(dead));
        // What the engine does on a death (`Net::on_node_dead`): proxies of
        // its objects fail now; its borrows count as released once the
        // shard gets to the purge, in order with the updates before it.
        node.refs.owner_gone(NodeId(dead));
        node.refs.node_gone(NodeId(dead));
        node.inbox.push_back(TableOp::NodeGone(NodeId(dead)));
        // Queued messages to the dead node go nowhere.
        if let Some(q) = self.links.get_mut(&(at, dead)) {
            q.clear();
        }
    }

    fn check(&self) -> Result<(), DetFailure> {
        for n in self.nodes.iter().filter(|n| n.alive) {
            n.table.check();
        }
        if self.deaths > 0 {
            return Ok(());
        }
        let alive = |id: ObjectId| self.nodes[id.node.0 as usize].table.get(id).is_some();
        for n in &self.nodes {
            for r in &n.held {
                if !alive(r.id()) {
                    return Err(self.fail(format!(
                        "n{} holds {} but its owner freed it",
                        n.id.0,
                        short(r.id())
                    )));
                }
            }
        }
        for (&(a, b), q) in &self.links {
            for p in q {
                if let Packet::Refs(ids) = p {
                    for &w in ids {
                        let id = ObjectId::from(w);
                        if !alive(id) {
                            return Err(self.fail(format!(
                                "a ref to {} in flight n{a}->n{b} outlived the object",
                                short(id)
                            )));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    pub(super) fn run_event(&mut self, e: Event, max_deaths: u32) -> Result<(), DetFailure> {
        match e {
            Event::Step(n) => self.step(n, max_deaths)?,
            Event::Deliver(a, b) => self.deliver(a, b)?,
            Event::Inbox(n) => self.inbox(n),
            Event::Notice { at, dead } => self.notice(at, dead),
        }
        self.drain_ended();
        self.check()
    }

    pub(super) fn leaks(&self) -> Result<(), DetFailure> {
        let mut report = Vec::new();
        for n in self.nodes.iter().filter(|n| n.alive) {
            let (proxies, exports, lent) = n.refs.counts();
            if n.table.is_empty() && proxies == 0 && exports == 0 && lent == 0 {
                continue;
            }
            let left: Vec<String> = n
                .table
                .ids()
                .into_iter()
                .map(|id| {
                    let e = n.table.get(id).expect("listed");
                    format!(
                        "{} local {} borrowers {:?} in flight {}",
                        short(id),
                        e.local_refs,
                        e.borrowers,
                        e.cell.in_flight.load(std::sync::atomic::Ordering::Relaxed)
                    )
                })
                .collect();
            report.push(format!(
                "n{}: entries {left:?}, {proxies} proxies, {exports} exports, {lent} lent",
                n.id.0
            ));
        }
        if report.is_empty() {
            return Ok(());
        }
        Err(self.fail(format!("leaks after quiescence: {}", report.join("; "))))
    }
}
