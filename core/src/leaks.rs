//! The leak check every workload test ends with: each shard's tables and
//! queues, the node's cross-node state and the arena, all empty.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use owl_store::ArenaStats;

use crate::engine::shard::{LeakCounts, Msg};
use crate::ids::NodeId;
use crate::runtime::Runtime;

impl Runtime {
    /// With `OWL_CHECK_LEAKS` set, asserts that nothing is left on this node
    /// (`#[owl::main]` calls it when `main` returns; tests of whole programs
    /// set the variable).
    #[doc(hidden)]
    pub fn check_leaks_if_asked(&self) {
        if std::env::var_os("OWL_CHECK_LEAKS").is_some() {
            self.assert_no_leaks();
        }
    }

    /// Every shard's leftovers and the arena's usage, once quiet.
    pub fn leak_report(&self) -> LeakReport {
        let mut shards = Vec::new();
        for i in 0..self.shared.shards.len() {
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            self.shared.shards[i].send(Msg::Run(Box::new(move |s| {
                s.check_table();
                let _ = tx.send(s.leak_counts());
            })));
            shards.push(rx.recv().unwrap_or_default());
        }
        LeakReport {
            node: self.shared.node,
            shards,
            parked_tasks: self.shared.parked.load(Ordering::Relaxed),
            net: self
                .shared
                .net
                .as_ref()
                .map(crate::engine::net::Net::leaks)
                .unwrap_or_default(),
            arena: self.shared.arena.stats(),
        }
    }

    /// Asserts that every table, queue and the arena are empty: the end of a
    /// finished workload in tests. Releases may still be in flight between
    /// shards, so it waits up to two seconds for the node to go quiet.
    ///
    /// # Panics
    /// If anything is left, with the per-shard counts; or when called on a
    /// shard thread.
    pub fn assert_no_leaks(&self) {
        assert!(
            !crate::engine::shard::on_shard_thread(),
            "assert_no_leaks must be called outside owl tasks"
        );
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let report = self.leak_report();
            if report.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                panic!("owl leak check failed: {report:#?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// What `leak_report` found.
#[derive(Debug, Clone)]
pub struct LeakReport {
    pub node: NodeId,
    pub shards: Vec<LeakCounts>,
    /// Cross-node state: proxies, exports, remote tasks, pulls.
    pub net: crate::engine::net::NetLeaks,
    /// Tasks waiting for arguments, node-wide.
    pub parked_tasks: usize,
    pub arena: ArenaStats,
}

impl LeakReport {
    pub fn is_empty(&self) -> bool {
        self.parked_tasks == 0
            && self.net.is_empty()
            && self.shards.iter().all(LeakCounts::is_empty)
            && self.arena.live_blocks == 0
            && self.arena.used_bytes == 0
    }
}
