//! The random program a deterministic run plays: nodes put objects (some
//! holding refs to others, some kept in two copies), clone and drop handles, send refs to each
//! other, submit tasks whose arguments are refs and small values to any
//! live node, and run the tasks queued on them, which may submit tasks of
//! their own and return refs to them (nested tasks, borrowed results).

use std::sync::Arc;

use super::cluster::{short, Cluster, Cut};
use super::link::Packet;
use super::DetFailure;
use crate::error::{TaskError, TaskErrorKind};
use crate::ids::NodeId;
use crate::object::objref::{ObjectRef, RawRef};
use crate::object::value::Stored;
use crate::owner::retry::SYSTEM_RETRIES;
use crate::spec::{Arg, CallOpts, Task};
use crate::testkit::call::{ArgsCall, ARGS_FN as DET_FN};

impl Cluster {
    pub(super) fn step(&mut self, n: u32, max_deaths: u32) -> Result<(), DetFailure> {
        let held = self.nodes[n as usize].held.len();
        match self.rng.below(21) {
            0 if self.deaths < max_deaths && self.live().len() > 1 => self.kill(n, true),
            20 if self.deaths < max_deaths && self.live().len() > 1 => self.declare(n),
            1..=3 => {
                // A new object, holding up to two refs this node holds.
                let inner = self.pick_held(n, 2);
                let k = inner.len();
                let value = payload(&mut self.rng, &self.arena, inner);
                let node = &mut self.nodes[n as usize];
                let cell = node.table.insert_ready(value);
                // One put in four keeps a second copy elsewhere (`put_with`).
                let copies = if self.rng.below(4) == 0 { 2 } else { 1 };
                self.log.push(format!(
                    "n{n} put {} ({k} inside, {copies} copies)",
                    short(cell.id())
                ));
                if copies > 1 {
                    self.with_ctx(n, |node, ctx| {
                        node.owner.keep_put_copies(ctx, &cell, copies)
                    });
                }
                self.nodes[n as usize].held.push(RawRef::adopt(cell));
            }
            4 | 5 if held > 0 => {
                let r = self.nodes[n as usize].held[self.rng.below(held)].clone();
                self.log.push(format!("n{n} clone {}", short(r.id())));
                self.nodes[n as usize].held.push(r);
            }
            6..=8 if held > 0 => {
                let i = self.rng.below(held);
                let r = self.nodes[n as usize].held.swap_remove(i);
                self.log.push(format!("n{n} drop {}", short(r.id())));
                drop(r);
            }
            9..=13 if held > 0 => self.send_ref(n),
            14..=17 => {
                let args = self.pick_held(n, 2);
                let r = self.submit(n, args)?;
                self.nodes[n as usize].held.push(r);
            }
            19 if !self.cut.contains_key(&n) && self.cut.len() < 2 => {
                // A partition that heals: the node's links (both ways, or
                // one way) hold their messages until it does.
                let cut = [Cut::Both, Cut::Outgoing, Cut::Incoming][self.rng.below(3)];
                self.log.push(format!("n{n} is cut off ({cut:?})"));
                self.cut.insert(n, cut);
            }
            18 if held > 0 => {
                // A read: waits for the value (bringing it here if it is
                // held where it was made); the check after the program
                // reads what it got.
                let r = self.nodes[n as usize].held[self.rng.below(held)].clone();
                self.log.push(format!("n{n} reads {}", short(r.id())));
                r.cell().wait(std::task::Waker::noop());
            }
            _ => {}
        }
        Ok(())
    }

    /// Up to `max` handles node `n` holds, cloned, chosen at random.
    fn pick_held(&mut self, n: u32, max: usize) -> Vec<RawRef> {
        let held = self.nodes[n as usize].held.len();
        if held == 0 {
            return Vec::new();
        }
        (0..self.rng.below(max + 1))
            .map(|_| self.nodes[n as usize].held[self.rng.below(held)].clone())
            .collect()
    }

    /// A live peer `n` does not know dead, at random.
    fn pick_peer(&mut self, n: u32) -> Option<u32> {
        let peers: Vec<u32> = self
            .live()
            .into_iter()
            .filter(|&p| p != n && !self.nodes[n as usize].noticed.contains(&NodeId(p)))
            .collect();
        (!peers.is_empty()).then(|| peers[self.rng.below(peers.len())])
    }

    fn send_ref(&mut self, n: u32) {
        let Some(to) = self.pick_peer(n) else {
            return;
        };
        let held = self.nodes[n as usize].held.len();
        let i = self.rng.below(held);
        let handoff = self.rng.below(2) == 0;
        let r = if handoff {
            self.nodes[n as usize].held.swap_remove(i)
        } else {
            self.nodes[n as usize].held[i].clone()
        };
        let id = r.id();
        let wire = self.with_ctx(n, |node, ctx| node.owner.refs().ship(ctx, NodeId(to), &r));
        self.queue(n, to, Packet::Refs(vec![wire]));
        self.log.push(format!(
            "n{n} send {} to n{to}{}",
            short(id),
            if handoff { " and drop" } else { "" }
        ));
        drop(r);
    }

    /// Node `n` submits a task taking `refs` (and sometimes a small value),
    /// owned by `n`, placed on `n` or a live peer; returns its handle.
    pub(super) fn submit(&mut self, n: u32, refs: Vec<RawRef>) -> Result<RawRef, DetFailure> {
        let mut args: Vec<Arg<u64>> = refs
            .into_iter()
            .map(|r| Arg::Ref(ObjectRef::from_raw(r)))
            .collect();
        if self.rng.below(2) == 0 {
            args.push(Arg::Value(Some(self.rng.below(1000) as u64)));
        }
        let retries = self.rng.below(3) as u32;
        // One task in four keeps a second copy of its result.
        let replicas = if self.rng.below(4) == 0 { 2 } else { 0 };
        let node = &mut self.nodes[n as usize];
        let cell = node.table.insert_pending();
        let handle = RawRef::adopt(Arc::clone(&cell));
        let id = cell.id();
        let task = Task {
            cell,
            func: &DET_FN,
            call: Box::new(ArgsCall(args)),
            opts: (retries > 0 || replicas > 0)
                .then(|| Box::new(CallOpts::new().max_retries(retries).replicas(replicas))),
            attempt: 0,
            reply_to: None,
            tried: Vec::new(),
        };
        self.runs.insert(id, 0);
        let target = if self.rng.below(3) == 0 {
            None
        } else {
            self.pick_peer(n)
        };
        match target {
            None => {
                self.log.push(format!("n{n} submits {} here", short(id)));
                self.nodes[n as usize].queue.push_back(task);
            }
            Some(to) => {
                self.log
                    .push(format!("n{n} submits {} to n{to}", short(id)));
                let refused =
                    self.with_ctx(n, |node, ctx| node.owner.dispatch(ctx, task, NodeId(to)));
                if let Err((task, kind)) = refused {
                    return Err(self.fail(format!(
                        "n{n} could not send {} to live n{to}: {kind:?}",
                        short(task.cell.id())
                    )));
                }
            }
        }
        Ok(handle)
    }

    /// Node `n` runs its next queued task: a third of them submit a task
    /// of their own and return its ref; the rest return an empty value.
    /// The outcome goes back to the owner when the task ran for another
    /// node.
    pub(super) fn run_task(&mut self, n: u32) -> Result<(), DetFailure> {
        let task = self.nodes[n as usize]
            .queue
            .pop_front()
            .expect("chosen queue has a task");
        let id = task.cell.id();
        if task.cell.is_ready() {
            self.log.push(format!("n{n} skips {} (done)", short(id)));
            return Ok(()); // cancelled, as the engine skips it
        }
        let inside = if self.rng.below(3) == 0 {
            vec![self.submit(n, Vec::new())?]
        } else {
            Vec::new()
        };
        self.log.push(format!(
            "n{n} runs {} (attempt {}, {} inside)",
            short(id),
            task.attempt,
            inside.len()
        ));
        let runs = {
            let runs = self.runs.entry(id).or_insert(0);
            *runs += 1;
            *runs
        };
        let allowed = 1 + SYSTEM_RETRIES.max(task.opts.as_ref().map_or(0, |o| o.max_retries));
        if runs > allowed || (self.deaths == 0 && runs > 1) {
            return Err(self.fail(format!(
                "{} ran {runs} times ({allowed} allowed, {} deaths)",
                short(id),
                self.deaths
            )));
        }
        let value = payload(&mut self.rng, &self.arena, inside);
        task.cell.complete(Ok(value));
        if let Some(owner) = task.reply_to {
            self.with_ctx(n, |node, ctx| node.owner.task_done(ctx, owner, &task.cell));
        }
        drop(task);
        Ok(())
    }

    /// Every live node reads every value it holds.
    pub(super) fn read_all(&mut self) {
        for n in self.live() {
            for r in &self.nodes[n as usize].held {
                r.cell().wait(std::task::Waker::noop());
            }
        }
        self.drain_ended();
    }

    /// After the program, once the cluster is quiet: every handle a node
    /// holds is ready (nothing waits forever), with a value unless a death
    /// explains an error; without deaths, every task ran exactly once.
    pub(super) fn check_settled(&self) -> Result<(), DetFailure> {
        for n in self.nodes.iter().filter(|n| n.alive) {
            for r in &n.held {
                if let Some(Ok(v)) = r.cell().result() {
                    if !intact(v.bytes()) {
                        return Err(self.fail(format!(
                            "n{} reads {} with corrupted bytes {:?}",
                            n.id.0,
                            short(r.id()),
                            v.bytes()
                        )));
                    }
                }
                match r.cell().result() {
                    None => {
                        return Err(self.fail(format!(
                            "n{} waits forever for {}",
                            n.id.0,
                            short(r.id())
                        )))
                    }
                    Some(Err(e)) if self.deaths == 0 => {
                        return Err(self.fail(format!(
                            "n{} reads an error for {} with no death: {e}",
                            n.id.0,
                            short(r.id())
                        )))
                    }
                    Some(Err(e)) if !explained(e) => {
                        return Err(self.fail(format!(
                            "n{} reads {} as {e}, which no death explains",
                            n.id.0,
                            short(r.id())
                        )))
                    }
                    _ => {}
                }
            }
        }
        if self.deaths == 0 {
            if let Some((id, runs)) = self.runs.iter().find(|(_, &r)| r != 1) {
                return Err(self.fail(format!("{} ran {runs} times, not once", short(*id))));
            }
        }
        Ok(())
    }
}

/// Errors a node's death causes: the owner or the executor died (or the
/// owner of a task's argument), or a ref lent by a node that died arrived
/// after the owner freed the object with the dead lender's counts (see
/// `owner::refs`: the receiver then reads a typed error).
fn explained(e: &TaskError) -> bool {
    match &e.kind {
        TaskErrorKind::OwnerDied(_)
        | TaskErrorKind::WorkerDied(_)
        | TaskErrorKind::LineageEvicted(_)
        | TaskErrorKind::Cancelled => true,
        TaskErrorKind::Store(m) => m.contains("no such object") || m.contains("already freed"),
        TaskErrorKind::DependencyFailed(cause) => explained(cause),
        _ => false,
    }
}

/// A value of 0 to 199 bytes holding `inner`: byte `i` is the first byte
/// plus `i`, so a value put together wrongly from chunks shows.
fn payload(
    rng: &mut super::cluster::Rng,
    arena: &std::sync::Arc<owl_store::Arena>,
    inner: Vec<RawRef>,
) -> Stored {
    let len = rng.below(200);
    if len == 0 {
        return Stored::refs_only(inner);
    }
    let first = rng.below(256) as u8;
    let mut block = arena.alloc(len).expect("the run's arena holds its values");
    for (i, b) in block.as_mut_slice().iter_mut().enumerate() {
        *b = first.wrapping_add(i as u8);
    }
    Stored::from_block(block.freeze(), inner)
}

/// Whether a value's bytes are as [`payload`] made them.
fn intact(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .enumerate()
        .all(|(i, &b)| b == bytes[0].wrapping_add(i as u8))
}
