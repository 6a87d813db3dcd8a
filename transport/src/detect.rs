//! A failure detector whose traffic per node does not grow with the
//! cluster. Sans-IO, like `proto`: membership changes, heartbeats heard
//! and the time come in as calls; what to send and whom to declare dead go
//! out as [`Action`]s. No clock, sockets or randomness, so a simulation of
//! 1,000 nodes (`tests/detect_sim.rs`) replays from its seed.
//!
//! Rule: order the live members by id on a ring; each node is *watched* by
//! the next `watchers` live nodes after it. Every heartbeat period a node
//! sends one heartbeat to each of its watchers, and a watcher that hears
//! nothing from a node it watches for `dead_after` declares it dead (the
//! driver tells the head, which announces the death to all, as it does
//! for a lost connection). A node therefore sends and receives
//! `watchers` heartbeats a period whatever the cluster's size, where the
//! full mesh costs `nodes - 1`; a death is seen within `dead_after` plus
//! a period by each of its `watchers` watchers independently, so one lost
//! watcher or a few lost heartbeats neither hide a death nor fake one.
//!
//! A node that itself did not run for longer than `dead_after` (SIGSTOP, a
//! VM paused, swapped out) cannot trust what it measured meanwhile: every
//! silence it sees is its own. Its next `tick` returns
//! [`Action::SelfStalled`] instead of accusing anyone, and it stays
//! stalled: its watchers have declared it dead by then, and the driver
//! acts on that (rejoin as a new member, or exit saying so).

use std::collections::{BTreeMap, BTreeSet};

/// Settings; every node of a cluster should use the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetectConfig {
    /// Watchers per node (the ring's redundancy): 3 is plenty.
    pub watchers: usize,
    /// Milliseconds between a node's heartbeats.
    pub heartbeat_ms: u64,
    /// Silence (ms) after which a watcher declares a node dead.
    pub dead_after_ms: u64,
}

/// What the driver must do after a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send a heartbeat to `to`.
    Heartbeat { to: u32 },
    /// `node` was silent for `silent_ms`: declare it dead.
    Dead { node: u32, silent_ms: u64 },
    /// This node did not run for `gap_ms` (more than `dead_after`): it has
    /// surely been declared dead by its watchers.
    SelfStalled { gap_ms: u64 },
}

/// One node's detector.
#[derive(Debug, Clone)]
pub struct Detector {
    me: u32,
    cfg: DetectConfig,
    live: BTreeSet<u32>,
    /// The nodes this one watches, with when each was last heard (or began
    /// to be watched: a node learns it has a new watcher no sooner than
    /// the watcher does, so its silence counts from then).
    watched: BTreeMap<u32, u64>,
    last_tick: Option<u64>,
    next_beat: u64,
    stalled: bool,
}

impl Detector {
    /// A detector for node `me` among `members` (`me` included or not).
    pub fn new(
        me: u32,
        cfg: DetectConfig,
        members: impl IntoIterator<Item = u32>,
        now_ms: u64,
    ) -> Self {
        let mut live: BTreeSet<u32> = members.into_iter().collect();
        live.insert(me);
        let mut d = Detector {
            me,
            cfg,
            live,
            watched: BTreeMap::new(),
            last_tick: None,
            next_beat: now_ms,
            stalled: false,
        };
        d.rewatch(now_ms);
        d
    }

    /// The live members as this node knows them.
    pub fn live(&self) -> impl Iterator<Item = u32> + '_ {
        self.live.iter().copied()
    }

    /// Whether this node found it stalled (see [`Action::SelfStalled`]).
    pub fn stalled(&self) -> bool {
        self.stalled
    }

    /// The nodes that watch `node`: the next `watchers` live nodes after it
    /// on the ring of ids.
    pub fn watchers_of(&self, node: u32) -> Vec<u32> {
        let after = self.live.range(node + 1..).chain(self.live.range(..node));
        after
            .copied()
            .filter(|&n| n != node)
            .take(self.cfg.watchers)
            .collect()
    }

    /// The nodes this one watches.
    pub fn watched(&self) -> impl Iterator<Item = u32> + '_ {
        self.watched.keys().copied()
    }

    /// A heartbeat from `from` arrived.
    pub fn on_heartbeat(&mut self, from: u32, now_ms: u64) {
        if let Some(t) = self.watched.get_mut(&from) {
            *t = (*t).max(now_ms);
        }
    }

    /// `node` joined.
    pub fn on_joined(&mut self, node: u32, now_ms: u64) {
        if self.live.insert(node) {
            self.rewatch(now_ms);
        }
    }

    /// `node` was declared dead or left (announced, or found here).
    pub fn on_gone(&mut self, node: u32, now_ms: u64) {
        if node != self.me && self.live.remove(&node) {
            self.rewatch(now_ms);
        }
    }

    /// The latest time the driver should call [`Detector::tick`] next.
    pub fn next_tick(&self) -> u64 {
        self.next_beat
    }

    /// Time passed: heartbeats due, silences past `dead_after`.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Action> {
        let mut out = Vec::new();
        if self.stalled {
            return out;
        }
        if let Some(last) = self.last_tick.replace(now_ms) {
            let gap = now_ms.saturating_sub(last);
            if gap > self.cfg.dead_after_ms {
                self.stalled = true;
                out.push(Action::SelfStalled { gap_ms: gap });
                return out;
            }
        }
        if now_ms >= self.next_beat {
            self.next_beat = now_ms + self.cfg.heartbeat_ms;
            for to in self.watchers_of(self.me) {
                out.push(Action::Heartbeat { to });
            }
        }
        let silent: Vec<(u32, u64)> = self
            .watched
            .iter()
            .map(|(&n, &t)| (n, now_ms.saturating_sub(t)))
            .filter(|&(_, s)| s > self.cfg.dead_after_ms)
            .collect();
        for (node, silent_ms) in silent {
            out.push(Action::Dead { node, silent_ms });
            self.on_gone(node, now_ms);
        }
        out
    }

    /// Recomputes whom this node watches after a membership change; a
    /// node newly watched is given `dead_after` from now.
    fn rewatch(&mut self, now_ms: u64) {
        let me = self.me;
        let now: BTreeSet<u32> = self
            .live
            .iter()
            .copied()
            .filter(|&n| n != me && self.watchers_of(n).contains(&me))
            .collect();
        self.watched.retain(|n, _| now.contains(n));
        for n in now {
            self.watched.entry(n).or_insert(now_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: DetectConfig = DetectConfig {
        watchers: 2,
        heartbeat_ms: 100,
        dead_after_ms: 500,
    };

    #[test]
    fn each_node_is_watched_by_the_next_live_ones() {
        let d = Detector::new(3, CFG, 0..6, 0);
        assert_eq!(d.watchers_of(3), vec![4, 5]);
        assert_eq!(d.watchers_of(5), vec![0, 1]);
        assert_eq!(d.watched().collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn a_silent_watched_node_is_declared_dead_once_and_the_next_one_watched() {
        let mut d = Detector::new(3, CFG, 0..6, 0);
        for t in (0..=500).step_by(100) {
            d.on_heartbeat(1, t);
            assert!(!d.tick(t).iter().any(|a| matches!(a, Action::Dead { .. })));
        }
        // Node 2 was never heard: silent for 600 ms at 600.
        let acts = d.tick(600);
        assert!(acts.contains(&Action::Dead {
            node: 2,
            silent_ms: 600
        }));
        assert_eq!(d.watched().collect::<Vec<_>>(), vec![0, 1]);
        // Node 0 is newly watched: its silence counts from 600.
        assert!(!d
            .tick(700)
            .iter()
            .any(|a| matches!(a, Action::Dead { node: 0, .. })));
    }

    #[test]
    fn a_node_that_did_not_run_accuses_nobody() {
        let mut d = Detector::new(3, CFG, 0..6, 0);
        d.tick(0);
        let acts = d.tick(2000);
        assert_eq!(acts, vec![Action::SelfStalled { gap_ms: 2000 }]);
        assert!(d.stalled());
        assert!(d.tick(2100).is_empty());
    }
}
