//! The cluster a deterministic run drives: nodes, links, inboxes, task
//! queues, and the events that can happen next.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use owl_store::Arena;
use owl_transport::proto::{Msg, OwlMsg};

use super::ctx::{DetCtx, Out};
use super::link::{Link, Packet};
use super::{DetFailure, DEMANDED, ENDED};
use crate::ids::{NodeId, ObjectId, ShardId};
use crate::object::cell::ObjectCell;
use crate::object::objref::RawRef;
use crate::owner::table::{OwnershipTable, Released};
use crate::owner::{Owner, TableOp};
use crate::spec::Task;
use crate::testkit::call::ARGS_FN as DET_FN;

/// Values above this many bytes move in chunks of it (most of the
/// cluster's values are larger), and results above it stay with their
/// executor until pulled: every pull and held result is followed.
const DET_CHUNK: usize = 48;

/// Serials of the cluster's nodes (what their cells carry): node `i` is
/// `SERIAL_BASE + i`, far from the serials real runtimes use.
pub(super) const SERIAL_BASE: u32 = 0x4000_0000;

pub(super) struct Node {
    pub(super) id: NodeId,
    pub(super) alive: bool,
    pub(super) table: OwnershipTable,
    pub(super) owner: Owner,
    /// Handles the program holds.
    pub(super) held: Vec<RawRef>,
    /// The shard inbox: table updates, applied in order.
    pub(super) inbox: VecDeque<TableOp>,
    /// Dead nodes this one knows about.
    pub(super) noticed: BTreeSet<NodeId>,
    /// Tasks to run here, in order.
    pub(super) queue: VecDeque<Task>,
    /// Standing fetches: the value goes to the node once the cell is
    /// ready. (The engine's waker holds the cell weakly, but answers a
    /// ready cell at once and a pending one stays alive with its task; the
    /// cluster answers later, so it holds the cell.)
    pub(super) waiting: Vec<(Arc<ObjectCell>, NodeId)>,
}

impl Node {
    fn new(i: u32, lineage_budget: usize) -> Node {
        Node {
            id: NodeId(i),
            alive: true,
            table: OwnershipTable::new(NodeId(i), ShardId(0), SERIAL_BASE + i),
            owner: Owner::new(NodeId(i), SERIAL_BASE + i, [&DET_FN])
                .with_chunk(DET_CHUNK)
                .with_lineage_budget(lineage_budget),
            held: Vec::new(),
            inbox: VecDeque::new(),
            noticed: BTreeSet::new(),
            queue: VecDeque::new(),
            waiting: Vec::new(),
        }
    }
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

/// Which of a cut-off node's links a partition holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Cut {
    Both,
    /// It hears the others, they do not hear it.
    Outgoing,
    /// They hear it, it does not hear them.
    Incoming,
}

/// What can happen next.
#[derive(Clone, Copy, Debug)]
pub(super) enum Event {
    /// The program acts on a node.
    Step(u32),
    Deliver(u32, u32),
    /// A shard applies its next table update.
    Inbox(u32),
    /// A node's transport finds a dead node's connection gone.
    Notice {
        at: u32,
        dead: u32,
    },
    /// A node reads the end of a connection its peer closed when it
    /// declared the node dead (after the frames written before it).
    Eof {
        at: u32,
        gone: u32,
    },
    /// A node runs its next queued task.
    Run(u32),
    /// A node answers a standing fetch whose value is ready.
    Answer(u32),
    /// A partition around a node heals: its held links deliver again.
    Heal(u32),
}

pub(super) struct Cluster {
    seed: u64,
    pub(super) rng: Rng,
    pub(super) nodes: Vec<Node>,
    pub(super) links: BTreeMap<(u32, u32), Link>,
    /// Links with messages queued and not yet written.
    dirty: BTreeSet<(u32, u32)>,
    /// Deaths not yet noticed: (node that will notice, dead node).
    pub(super) notices: BTreeSet<(u32, u32)>,
    /// Connections closed by one end that the other has not seen closed:
    /// (`at`, `gone`): `at` marks `gone` dead once it has read what `gone`
    /// wrote to it before closing.
    pub(super) eofs: BTreeSet<(u32, u32)>,
    /// Nodes that died, left, or were declared dead by some node: what
    /// explains errors and retries.
    pub(super) deaths: u32,
    /// Frame copies still to inject (see `link`), and injected.
    dups_left: u32,
    pub(super) dups: u64,
    /// Nodes cut off by a partition that will heal, and which of their
    /// links it holds (see [`Cut`]).
    pub(super) cut: BTreeMap<u32, Cut>,
    /// The program ended: refs that arrive are dropped at once.
    pub(super) ended: bool,
    pub(super) log: Vec<String>,
    /// Tasks submitted, and how many times each ran (re-executions
    /// included).
    pub(super) runs: BTreeMap<ObjectId, u32>,
    /// One arena for the run's nodes (their values stay inline; the owner
    /// layer still needs a store to hand them to).
    pub(super) arena: Arc<Arena>,
}

pub(super) fn short(id: ObjectId) -> String {
    format!("{}.{}.{}", id.node.0, id.index, id.gen)
}

/// A fresh, small arena file for one run (removed when the run drops it).
fn run_arena() -> Arc<Arena> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "owl-det-{}-{}.arena",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    Arena::create(&std::env::temp_dir(), &name, 16 << 20, 1 << 14).expect("a small arena in TMPDIR")
}

impl Cluster {
    pub(super) fn new(seed: u64, n: u32) -> Cluster {
        Cluster {
            seed,
            rng: Rng(seed),
            // One run in four keeps lineage for about two tasks per node,
            // so that evicted lineage meets lost holders.
            nodes: (0..n)
                .map(|i| Node::new(i, if seed % 4 == 1 { 600 } else { usize::MAX }))
                .collect(),
            links: BTreeMap::new(),
            dirty: BTreeSet::new(),
            notices: BTreeSet::new(),
            eofs: BTreeSet::new(),
            deaths: 0,
            dups_left: (seed % 5) as u32 * 8,
            dups: 0,
            cut: BTreeMap::new(),
            ended: false,
            log: Vec::new(),
            runs: BTreeMap::new(),
            arena: run_arena(),
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
    pub(super) fn with_ctx<R>(&mut self, n: u32, f: impl FnOnce(&Node, &DetCtx<'_>) -> R) -> R {
        let out = RefCell::new(Vec::new());
        let node = &self.nodes[n as usize];
        let r = {
            let ctx = DetCtx {
                out: &out,
                noticed: &node.noticed,
                nodes: self.nodes.len() as u32,
                arena: &self.arena,
            };
            f(node, &ctx)
        };
        self.apply(n, out.into_inner());
        r
    }

    /// Queues `p` on the link `a` -> `b` (written at the end of the event).
    pub(super) fn queue(&mut self, a: u32, b: u32, p: Packet) {
        self.links.entry((a, b)).or_insert_with(Link::new).push(p);
        self.dirty.insert((a, b));
    }

    /// Writes every link's queue as frames: the end of a loop turn.
    pub(super) fn flush(&mut self) {
        for ab in std::mem::take(&mut self.dirty) {
            if let Some(l) = self.links.get_mut(&ab) {
                l.flush();
            }
        }
    }

    pub(super) fn link(&mut self, a: u32, b: u32) -> Option<&mut Link> {
        self.links.get_mut(&(a, b))
    }

    fn apply(&mut self, n: u32, outs: Vec<Out>) {
        for o in outs {
            let node = &mut self.nodes[n as usize];
            match o {
                Out::Send(to, msg) => {
                    // The transport drops what goes to a node known dead.
                    if !node.noticed.contains(&to) {
                        self.queue(n, to.0, Packet::Msg(Msg::Owl(msg)));
                    }
                }
                Out::Table(op) => node.inbox.push_back(op),
                Out::Enqueue(task) => {
                    self.log.push(format!(
                        "n{n} queues {} (attempt {})",
                        short(task.cell.id()),
                        task.attempt
                    ));
                    node.queue.push_back(task);
                }
                Out::WhenReady(cell, to) => node.waiting.push((cell, to)),
            }
        }
    }

    /// Routes every handle group that ended, as the engine's route does:
    /// to the owning shard's inbox or, for a proxy, back to the owner; and
    /// every demand for a value held elsewhere, to its owner layer.
    pub(super) fn drain_ended(&mut self) {
        loop {
            let demanded = DEMANDED.with(|e| {
                let mut e = e.borrow_mut();
                (!e.is_empty()).then(|| e.remove(0))
            });
            if let Some(cell) = demanded {
                let n = cell.rt - SERIAL_BASE;
                if self.nodes[n as usize].alive {
                    self.log.push(format!("n{n} demands {}", short(cell.id())));
                    self.with_ctx(n, |node, ctx| node.owner.demand(ctx, &cell));
                }
                continue;
            }
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
            self.with_ctx(n, |node, ctx| node.owner.group_ended(ctx, &cell));
        }
    }

    pub(super) fn live(&self) -> Vec<u32> {
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
        let held = |a: u32, b: u32| {
            matches!(self.cut.get(&a), Some(Cut::Both | Cut::Outgoing))
                || matches!(self.cut.get(&b), Some(Cut::Both | Cut::Incoming))
        };
        for (&(a, b), l) in &self.links {
            if !l.wire.is_empty() && !held(a, b) {
                ev.push(Event::Deliver(a, b));
            }
        }
        for &(at, gone) in &self.eofs {
            let drained = self
                .links
                .get(&(gone, at))
                .is_none_or(|l| l.wire.is_empty());
            if drained && !held(gone, at) {
                ev.push(Event::Eof { at, gone });
            }
        }
        ev.extend(self.cut.keys().map(|&n| Event::Heal(n)));
        for n in self.nodes.iter().filter(|n| n.alive) {
            if !n.inbox.is_empty() {
                ev.push(Event::Inbox(n.id.0));
            }
            if !n.queue.is_empty() {
                ev.push(Event::Run(n.id.0));
            }
            if n.waiting.iter().any(|(c, _)| c.is_done()) {
                ev.push(Event::Answer(n.id.0));
            }
        }
        for &(at, dead) in &self.notices {
            ev.push(Event::Notice { at, dead });
        }
        ev
    }

    /// The next frame on the link `a` -> `b` arrives at `b`.
    fn deliver(&mut self, a: u32, b: u32) -> Result<(), DetFailure> {
        let to = &self.nodes[b as usize];
        if !to.alive || to.noticed.contains(&NodeId(a)) {
            // Late frames of a node declared dead: its connection is
            // closed at this end and nothing reads them.
            let l = self.link(a, b).expect("chosen link");
            l.wire.pop_front().expect("chosen link has a frame");
            self.log.push(format!("n{a}->n{b} dropped a late frame"));
            return Ok(());
        }
        if self.dups_left > 0 && self.rng.below(8) == 0 {
            // A copy of this frame arrives again, now or later.
            self.dups_left -= 1;
            self.dups += 1;
            let l = self.links.get_mut(&(a, b)).expect("chosen link");
            let after = self.rng.below(l.wire.len());
            l.duplicate(0, after);
            self.log
                .push(format!("n{a}->n{b}: the next frame arrives twice"));
        }
        let l = self.links.get_mut(&(a, b)).expect("chosen link");
        let batch = match l.receive() {
            Ok(Some(batch)) => batch,
            Ok(None) => {
                self.log
                    .push(format!("n{a}->n{b}: the decoder dropped a duplicate frame"));
                return Ok(());
            }
            Err(e) => return Err(self.fail(format!("n{a}->n{b}: {e}"))),
        };
        for packet in batch {
            self.receive(a, b, packet)?;
        }
        Ok(())
    }

    /// `b` handles one packet of a frame from `a`.
    fn receive(&mut self, a: u32, b: u32, packet: Packet) -> Result<(), DetFailure> {
        self.log.push(format!("n{a}->n{b} {packet:?}"));
        match packet {
            Packet::Refs(ids) => {
                for w in ids {
                    let id = ObjectId::from(w);
                    let r =
                        self.with_ctx(b, |node, ctx| node.owner.refs().resolve(ctx, id, NodeId(a)));
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
            Packet::Msg(Msg::Owl(msg)) => {
                if let OwlMsg::Fetch { object, .. } = &msg {
                    let id = ObjectId::from(*object);
                    if self.nodes[b as usize].table.get(id).is_none() && self.deaths == 0 {
                        return Err(self.fail(format!(
                            "n{a} fetched {} after its owner n{b} freed it",
                            short(id)
                        )));
                    }
                }
                let other = self.with_ctx(b, |node, ctx| node.owner.on_msg(ctx, NodeId(a), msg));
                if let Some(other) = other {
                    return Err(self.fail(format!("unexpected message {other:?}")));
                }
            }
            // The transport takes a death another node tells of for
            // itself (`peer::Shared::deliver`), as if it had seen it.
            Packet::Msg(Msg::NodeDead { node }) if node != b && node < self.nodes.len() as u32 => {
                self.mark_down(b, node, super::faults::Seen::Told(a));
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
        self.with_ctx(n, |node, ctx| node.owner.table_applied(ctx, op, &released));
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

    /// Answers the first standing fetch whose value is ready.
    fn answer(&mut self, n: u32) {
        let node = &mut self.nodes[n as usize];
        let i = node
            .waiting
            .iter()
            .position(|(c, _)| c.is_done())
            .expect("chosen node has a done fetch");
        let (cell, to) = node.waiting.remove(i);
        self.log.push(format!(
            "n{n} answers {}'s fetch of {}",
            to,
            short(cell.id())
        ));
        self.with_ctx(n, |node, ctx| node.owner.send_value(ctx, to, &cell));
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
        for (&(a, b), l) in &self.links {
            for &w in l.refs_in_flight() {
                let id = ObjectId::from(w);
                if !alive(id) {
                    return Err(self.fail(format!(
                        "a ref to {} in flight n{a}->n{b} outlived the object",
                        short(id)
                    )));
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
            Event::Eof { at, gone } => self.eof(at, gone),
            Event::Run(n) => self.run_task(n)?,
            Event::Answer(n) => self.answer(n),
            Event::Heal(n) => {
                self.cut.remove(&n);
                self.log.push(format!("partition around n{n} heals"));
            }
        }
        self.drain_ended();
        self.flush();
        self.check()
    }

    /// Duplicate frames the decoders dropped: never more than were
    /// injected (copies on a link a death cleared are never read).
    pub(super) fn duplicates_dropped(&self) -> Result<u64, DetFailure> {
        let dropped = self.links.values().map(|l| l.duplicates()).sum();
        if dropped > self.dups {
            return Err(self.fail(format!(
                "the decoders dropped {dropped} duplicate frames, {} injected",
                self.dups
            )));
        }
        Ok(dropped)
    }

    pub(super) fn leaks(&self) -> Result<(), DetFailure> {
        let mut report = Vec::new();
        for n in self.nodes.iter().filter(|n| n.alive) {
            let c = n.owner.counts();
            if n.table.is_empty()
                && c == Default::default()
                && n.queue.is_empty()
                && n.waiting.is_empty()
            {
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
                "n{}: entries {left:?}, owner layer {c:?} (pulling {:?}), {} queued, {} fetches waiting",
                n.id.0,
                n.owner.pulling().into_iter().map(short).collect::<Vec<_>>(),
                n.queue.len(),
                n.waiting.len()
            ));
        }
        if report.is_empty() {
            return Ok(());
        }
        Err(self.fail(format!("leaks after quiescence: {}", report.join("; "))))
    }
}
