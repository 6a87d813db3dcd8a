//! The deterministic cluster: N nodes' owner layers (the production
//! `owner::Owner` and `table::OwnershipTable`) joined by seeded in-memory
//! FIFO links, on one thread, with no clock. Every choice (which node
//! acts, which link delivers, which shard inbox drains, which queued task
//! runs, who notices a death when) comes from one seeded generator, so a
//! seed replays the same run exactly, down to the event log.
//!
//! A run is a random program (`program`): nodes put objects (some holding
//! refs to others), clone and drop handles, send refs to each other, and
//! submit tasks with ref arguments to any live node; tasks may submit
//! tasks and return refs to them. Nodes may die with part of what they
//! queued lost; their tasks are retried or failed by the owners. A node
//! may also be declared dead while it runs, and nodes learn of it at
//! different times (`faults`: the head's announcement, the connection's
//! end), the declared node sending until it learns, then leaving. Every
//! message crosses a link as the transport's real frames, some of them
//! arriving twice (`link`). After the
//! program the cluster runs until quiet, and every handle must be ready
//! (a value, or an error a death explains); every task ran exactly once
//! without deaths, and within its retries with them. Then every handle is
//! dropped and every message delivered, and each surviving node's table
//! and owner layer (proxies, exports, lent holds, remote and executing
//! tasks, pulls) must be empty.
//!
//! Checked after every event:
//! - every shard table's own invariants (`OwnershipTable::check`);
//! - while no node has died: every handle a node holds, and every ref in
//!   flight, points at an entry its owner still has (no use after free);
//! - a ref that arrives at its owner finds the export, and a `Fetch` finds
//!   the object, unless a death explains it.

mod cluster;
mod ctx;
mod faults;
mod link;
mod program;

use std::cell::RefCell;
use std::sync::Arc;

use crate::object::cell::ObjectCell;
use cluster::{Cluster, Event};

/// The shape of a run.
#[derive(Debug, Clone)]
pub struct DetConfig {
    pub nodes: u32,
    /// Program steps before everything is dropped.
    pub steps: u32,
    /// At most this many nodes die or are declared dead (never all of
    /// them).
    pub max_deaths: u32,
}

/// A run that broke an invariant: the seed replays it.
#[derive(Debug)]
pub struct DetFailure {
    pub seed: u64,
    pub what: String,
    /// The last events before the failure.
    pub tail: Vec<String>,
    /// Every event of the run, for a replay to print.
    pub log: Vec<String>,
}

impl std::fmt::Display for DetFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "seed {} failed: {}", self.seed, self.what)?;
        writeln!(f, "last events:")?;
        for e in &self.tail {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

thread_local! {
    /// Cells whose handle group ended, in the order they ended.
    static ENDED: RefCell<Vec<Arc<ObjectCell>>> = const { RefCell::new(Vec::new()) };
    /// Cells whose located value a reader waits for, in order.
    static DEMANDED: RefCell<Vec<Arc<ObjectCell>>> = const { RefCell::new(Vec::new()) };
}

const ROUTES: crate::object::Routes = crate::object::Routes {
    release: |cell| ENDED.with(|e| e.borrow_mut().push(Arc::clone(cell))),
    demand: |cell| DEMANDED.with(|e| e.borrow_mut().push(Arc::clone(cell))),
};

/// Restores the thread's release route when a run ends, even by panic.
struct RouteGuard;

impl Drop for RouteGuard {
    fn drop(&mut self) {
        crate::object::set_thread_routes(None);
        ENDED.with(|e| e.borrow_mut().clear());
        DEMANDED.with(|e| e.borrow_mut().clear());
    }
}

/// Runs events (no program steps) until nothing is left to happen, within
/// what is left of `budget`.
fn quiesce(c: &mut Cluster, cfg: &DetConfig, budget: &mut u32) -> Result<(), DetFailure> {
    c.flush(); // what dropping or reading handles queued
    loop {
        let ev = c.events(false);
        if ev.is_empty() {
            return Ok(());
        }
        let e = ev[c.rng.below(ev.len())];
        c.run_event(e, cfg.max_deaths)?;
        *budget -= 1;
        if *budget == 0 {
            return Err(c.fail("the cluster never went quiet".into()));
        }
    }
}

/// Runs the random program of `seed` on a fresh deterministic cluster;
/// returns its event log.
pub fn run(seed: u64, cfg: &DetConfig) -> Result<Vec<String>, DetFailure> {
    crate::object::set_thread_routes(Some(ROUTES));
    let _guard = RouteGuard;
    let mut c = Cluster::new(seed, cfg.nodes.max(1));
    let mut steps = 0;
    // Bounded: the program's steps, then at most a million quiescing events.
    let mut budget = 1_000_000u32;
    loop {
        let program = steps < cfg.steps;
        let ev = c.events(program);
        if ev.is_empty() {
            break; // quiet: nothing in flight, no program left
        }
        let e = ev[c.rng.below(ev.len())];
        c.run_event(e, cfg.max_deaths)?;
        if let Event::Step(_) = e {
            steps += 1;
        }
        if !program {
            budget -= 1;
            if budget == 0 {
                return Err(c.fail("the cluster never went quiet".into()));
            }
        }
    }
    // Every node reads every value it holds (values still held where they
    // were made are brought over), then the cluster goes quiet again.
    c.read_all();
    quiesce(&mut c, cfg, &mut budget)?;
    c.check_settled()?;
    // The program ends: every handle goes, and what that sends is
    // delivered.
    c.log
        .push("program ends: every node drops its handles".into());
    c.ended = true;
    for n in 0..c.nodes.len() {
        let held = std::mem::take(&mut c.nodes[n].held);
        drop(held);
    }
    c.drain_ended();
    quiesce(&mut c, cfg, &mut budget)?;
    c.leaks()?;
    let dropped = c.duplicates_dropped()?;
    let line = format!(
        "{} frames duplicated, {dropped} dropped by the receivers' decoders",
        c.dups
    );
    c.log.push(line);
    Ok(c.log)
}
