//! The scalable failure detector (`owl_transport::detect`) in a seeded,
//! deterministic simulation of 1,000 nodes: heartbeats go only to each
//! node's ring watchers, with random delays and losses; one node dies
//! (SIGKILL: silent for good) and one hangs past `dead_after` and comes
//! back (SIGSTOP, SIGCONT). Prints messages per node per second and the
//! time to detect the death; asserts the detection bound, that nobody
//! live is declared dead, that the hung node accuses nobody when it comes
//! back, and that a node's traffic does not grow with the cluster.
//!
//! Replay a seed with `OWL_DETECT_SEED=<n>`.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};

use owl_transport::detect::{Action, DetectConfig, Detector};

/// splitmix64: seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Tick(u32),
    Beat {
        from: u32,
        to: u32,
    },
    /// The head's announcement that `node` is dead reaches `to`.
    Announce {
        node: u32,
        to: u32,
    },
}

struct Outcome {
    msgs_per_node_s: f64,
    max_msgs_per_node_s: f64,
    first_detect_ms: u64,
    all_know_ms: u64,
    false_deaths: usize,
    stalled_accused: usize,
    stalled_self: bool,
}

const CFG: DetectConfig = DetectConfig {
    watchers: 3,
    heartbeat_ms: 500,
    dead_after_ms: 3000,
};

/// Runs `n` nodes for `secs` simulated seconds: node `kill` dies at 10 s,
/// node `stop` stops at 12 s for 5 s. Messages take 1-20 ms, 1% are lost.
fn simulate(n: u32, seed: u64, secs: u64) -> Outcome {
    let mut rng = Rng(seed);
    let mut nodes: Vec<Detector> = (0..n).map(|i| Detector::new(i, CFG, 0..n, 0)).collect();
    let mut q: BinaryHeap<Reverse<(u64, u64, Ev)>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut push = |q: &mut BinaryHeap<Reverse<(u64, u64, Ev)>>, at: u64, ev: Ev| {
        seq += 1;
        q.push(Reverse((at, seq, ev)));
    };
    for i in 0..n {
        // Random phases, as real nodes start at different moments.
        let at = rng.below(CFG.heartbeat_ms);
        push(&mut q, at, Ev::Tick(i));
    }
    let kill = 1 + rng.below(u64::from(n) - 1) as u32;
    let stop = loop {
        let s = 1 + rng.below(u64::from(n) - 1) as u32;
        if s != kill {
            break s;
        }
    };
    let (kill_at, stop_at, cont_at) = (10_000, 12_000, 17_000);
    let mut sent = vec![0u64; n as usize];
    let mut received = vec![0u64; n as usize];
    let mut knows_dead: BTreeSet<u32> = BTreeSet::new();
    let mut first_detect = None;
    let mut all_know = None;
    let mut announced: BTreeSet<u32> = BTreeSet::new();
    let mut false_deaths = 0;
    let mut stalled_accused = 0;
    let end = secs * 1000;
    let up = |i: u32, t: u64| {
        let killed = i == kill && t >= kill_at;
        let stopped = i == stop && (stop_at..cont_at).contains(&t);
        !(killed || stopped)
    };
    while let Some(Reverse((t, _, ev))) = q.pop() {
        if t > end {
            break;
        }
        match ev {
            Ev::Tick(i) => {
                if i == kill && t >= kill_at {
                    continue;
                }
                if !up(i, t) {
                    // A stopped process runs nothing: its tick waits.
                    push(&mut q, cont_at, Ev::Tick(i));
                    continue;
                }
                for a in nodes[i as usize].tick(t) {
                    match a {
                        Action::Heartbeat { to } => {
                            sent[i as usize] += 1;
                            if rng.below(100) != 0 {
                                let at = t + 1 + rng.below(20);
                                push(&mut q, at, Ev::Beat { from: i, to });
                            }
                        }
                        Action::Dead { node, .. } => {
                            if i == stop {
                                stalled_accused += 1;
                            }
                            if node != kill && node != stop {
                                false_deaths += 1;
                            }
                            if node == kill && first_detect.is_none() {
                                first_detect = Some(t - kill_at);
                            }
                            // Told to the head (one message), which
                            // announces it to every member once.
                            if announced.insert(node) {
                                let at = t + 1 + rng.below(20);
                                for to in 0..n {
                                    let d = at + 1 + rng.below(20);
                                    push(&mut q, d, Ev::Announce { node, to });
                                }
                            }
                        }
                        Action::SelfStalled { .. } => {}
                    }
                }
                let next = nodes[i as usize].next_tick().max(t + 1);
                push(&mut q, next, Ev::Tick(i));
            }
            Ev::Beat { from, to } => {
                if up(to, t) {
                    received[to as usize] += 1;
                    nodes[to as usize].on_heartbeat(from, t);
                } else if to == stop && t < cont_at {
                    // Queued in its socket until it runs again.
                    push(&mut q, cont_at, Ev::Beat { from, to });
                }
            }
            Ev::Announce { node, to } => {
                if up(to, t) {
                    nodes[to as usize].on_gone(node, t);
                    if node == kill {
                        knows_dead.insert(to);
                        let live = (0..n).filter(|&i| i != kill && i != stop).count();
                        let knowing = knows_dead
                            .iter()
                            .filter(|&&i| i != kill && i != stop)
                            .count();
                        if knowing == live && all_know.is_none() {
                            all_know = Some(t - kill_at);
                        }
                    }
                } else if to == stop && t < cont_at {
                    push(&mut q, cont_at, Ev::Announce { node, to });
                }
            }
        }
    }
    let secs_f = secs as f64;
    let per_node: Vec<f64> = (0..n as usize)
        .filter(|&i| i as u32 != kill && i as u32 != stop)
        .map(|i| (sent[i] + received[i]) as f64 / secs_f)
        .collect();
    Outcome {
        msgs_per_node_s: per_node.iter().sum::<f64>() / per_node.len() as f64,
        max_msgs_per_node_s: per_node.iter().cloned().fold(0.0, f64::max),
        first_detect_ms: first_detect.expect("the killed node was detected"),
        all_know_ms: all_know.expect("every live node learned of the death"),
        false_deaths,
        stalled_accused,
        stalled_self: nodes[stop as usize].stalled(),
    }
}

#[test]
fn a_thousand_nodes_detect_a_death_with_constant_traffic_per_node() {
    let seeds: Vec<u64> = match std::env::var("OWL_DETECT_SEED") {
        Ok(s) => vec![s.parse().expect("a seed")],
        Err(_) => vec![1, 2, 3],
    };
    for seed in seeds {
        let small = simulate(50, seed, 30);
        let big = simulate(1000, seed, 30);
        println!(
            "{{\"seed\":{seed},\"nodes\":1000,\"msgs_per_node_per_s\":{:.2},\"max_msgs_per_node_per_s\":{:.2},\"detect_ms\":{},\"all_know_ms\":{},\"full_mesh_msgs_per_node_per_s\":{:.0},\"nodes50_msgs_per_node_per_s\":{:.2}}}",
            big.msgs_per_node_s,
            big.max_msgs_per_node_s,
            big.first_detect_ms,
            big.all_know_ms,
            2.0 * 999.0 * 1000.0 / CFG.heartbeat_ms as f64,
            small.msgs_per_node_s,
        );
        for o in [&small, &big] {
            // Within dead_after, plus one heartbeat period (the last beat
            // heard may precede the death by one), plus one more for the
            // check and a message delay.
            assert!(
                o.first_detect_ms <= CFG.dead_after_ms + 2 * CFG.heartbeat_ms + 20,
                "seed {seed}: detected after {} ms",
                o.first_detect_ms
            );
            assert!(o.all_know_ms <= o.first_detect_ms + CFG.heartbeat_ms + 100);
            assert_eq!(
                o.false_deaths, 0,
                "seed {seed}: a live node was declared dead"
            );
            assert_eq!(
                o.stalled_accused, 0,
                "seed {seed}: the hung node accused a peer"
            );
            assert!(
                o.stalled_self,
                "seed {seed}: the hung node knows it stalled"
            );
        }
        // Sent and received heartbeats per node: `watchers` each way per
        // period, at any size (1,000 nodes cost what 50 do).
        let bound = 2.0 * CFG.watchers as f64 * 1000.0 / CFG.heartbeat_ms as f64;
        assert!(
            big.msgs_per_node_s <= bound * 1.05,
            "seed {seed}: {}",
            big.msgs_per_node_s
        );
        assert!((big.msgs_per_node_s - small.msgs_per_node_s).abs() <= bound * 0.1);
    }
}
