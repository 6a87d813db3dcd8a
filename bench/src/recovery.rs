//! `recovery`: how long a workload whose results stay where they are made
//! takes to its answer when a node dies in the middle, against the same
//! run undisturbed; and how many tasks ran again to rebuild what the node
//! held (lineage) or was running.
//!
//! Three nodes in this process over loopback TCP. The workload is a tree
//! of 10,000 tasks: blocks of four 1 MiB leaves, two `pair` tasks each
//! mixing two leaves into a new 1 MiB value, one `reduce` digesting the
//! pairs; `join` tasks fold the blocks' digests. Node 0 keeps `WINDOW`
//! blocks in flight. Every task is spread over the nodes. In the killed
//! run, once half the blocks are done, node 1 is declared dead to the
//! others (`Runtime::peer_down`, as a lost connection would) and stopped.
//! Both runs must give the same answer.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use owl::{CallOpts, NodeId, Runtime, Transport};
use serde_json::json;

use crate::harness::Sample;
use crate::workloads::Size;

pub const NAME: &str = "recovery";

/// Blocks node 0 keeps in flight (all leaves at once would hold 5 GiB).
const WINDOW: usize = 8;
const NODES: u32 = 3;
const VICTIM: u32 = 1;

/// Tasks run in this process, on every node: the killed run's count
/// minus the tasks it submitted is how many ran again.
static RUNS: AtomicU64 = AtomicU64::new(0);

fn ran() {
    RUNS.fetch_add(1, Ordering::Relaxed);
}

/// `len` bytes that depend only on `seed` (splitmix64 words).
fn make(seed: u64, len: u64) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len as usize + 8);
    while (out.len() as u64) < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len as usize);
    out
}

fn digest(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn fold(a: u64, b: u64) -> u64 {
    (a.rotate_left(17) ^ b).wrapping_mul(0x0100_0000_01b3)
}

#[owl::remote]
fn leaf(seed: u64, len: u64) -> Vec<u8> {
    ran();
    make(seed, len)
}

#[owl::remote]
fn pair(a: Vec<u8>, b: Vec<u8>) -> Vec<u8> {
    ran();
    a.iter()
        .zip(&b)
        .map(|(&x, &y)| x.rotate_left(3) ^ y.wrapping_add(1))
        .collect()
}

#[owl::remote]
fn reduce(a: Vec<u8>, b: Vec<u8>) -> u64 {
    ran();
    fold(digest(&a), digest(&b))
}

#[owl::remote]
fn join(a: u64, b: u64) -> u64 {
    ran();
    fold(a, b)
}

fn spread() -> CallOpts {
    CallOpts::new().spread()
}

/// The tree over `blocks` blocks of `len`-byte leaves: its answer and the
/// tasks submitted. `halfway` is told once half the blocks are done.
async fn tree(
    rt: &Runtime,
    blocks: u64,
    len: u64,
    halfway: Option<mpsc::Sender<()>>,
) -> owl::Result<(u64, u64)> {
    let mut tasks = 0;
    let mut halfway = halfway;
    let mut in_flight = VecDeque::new();
    let mut digests = Vec::new();
    for b in 0..blocks {
        let l = (4 * b..4 * b + 4)
            .map(|s| leaf.options(spread()).remote(rt, s, len))
            .collect::<Result<Vec<_>, _>>()?;
        let p = pair.options(spread()).remote(rt, &l[0], &l[1])?;
        let q = pair.options(spread()).remote(rt, &l[2], &l[3])?;
        in_flight.push_back(reduce.options(spread()).remote(rt, &p, &q)?);
        tasks += 7;
        while in_flight.len() >= WINDOW || (b + 1 == blocks && !in_flight.is_empty()) {
            let r = in_flight.pop_front().expect("a block in flight");
            r.get().await?;
            digests.push(r);
            if digests.len() as u64 >= blocks / 2 {
                if let Some(tx) = halfway.take() {
                    let _ = tx.send(());
                }
            }
        }
    }
    let mut level = digests;
    while level.len() > 1 {
        let mut up = Vec::with_capacity(level.len().div_ceil(2));
        for c in level.chunks(2) {
            if let [a, b] = c {
                up.push(join.options(spread()).remote(rt, a, b)?);
                tasks += 1;
            } else {
                up.push(c[0].clone());
            }
        }
        level = up;
    }
    Ok((level[0].get_owned().await?, tasks))
}

struct Run {
    answer: u64,
    tasks: u64,
    runs: u64,
    ms: f64,
}

/// One run of the tree on a fresh cluster; with `kill`, node `VICTIM` dies
/// halfway.
fn run_once(blocks: u64, len: u64, kill: bool) -> anyhow::Result<Run> {
    let nodes = owl::on_loopback(NODES, Transport::Tcp, |_| {
        Runtime::builder().shards(1).pin(false).store_size(4 << 30)
    })?;
    let mut nodes: Vec<Option<Runtime>> = nodes.into_iter().map(Some).collect();
    let rt = nodes[0].clone().expect("node 0");
    let (tx, rx) = mpsc::channel();
    let killer = kill.then(|| {
        let victim = nodes[VICTIM as usize].take().expect("the victim");
        let others: Vec<Runtime> = nodes.iter().flatten().cloned().collect();
        std::thread::spawn(move || {
            // The driver drops its sender when it ends without telling.
            if rx.recv().is_ok() {
                for rt in &others {
                    rt.peer_down(NodeId(VICTIM));
                }
            }
            drop(victim);
        })
    });
    let halfway = kill.then_some(tx);
    let before = RUNS.load(Ordering::Relaxed);
    let t0 = Instant::now();
    let (answer, tasks) =
        rt.block_on(move |rt| async move { tree(&rt, blocks, len, halfway).await })?;
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    let runs = RUNS.load(Ordering::Relaxed) - before;
    if let Some(k) = killer {
        k.join().expect("the killer thread");
    }
    for rt in nodes.iter().flatten() {
        rt.assert_no_leaks();
    }
    Ok(Run {
        answer,
        tasks,
        runs,
        ms,
    })
}

/// One repetition: the tree undisturbed, then with a node killed halfway.
pub fn run(size: Size) -> anyhow::Result<Vec<Sample>> {
    // 1,250 blocks: 8,750 block tasks and 1,249 joins, 9,999 in all.
    let blocks = size.pick(1_250, 10) as u64;
    let len = size.pick(1 << 20, 128 << 10) as u64;
    let calm = run_once(blocks, len, false)?;
    let killed = run_once(blocks, len, true)?;
    anyhow::ensure!(
        killed.answer == calm.answer,
        "node {VICTIM} killed: answer {} instead of {}",
        killed.answer,
        calm.answer
    );
    let c = json!({
        "tasks": calm.tasks, "leaf_bytes": len, "nodes": NODES, "transport": "tcp",
        "killed": VICTIM, "killed_after_blocks": blocks / 2, "window_blocks": WINDOW,
    });
    Ok(vec![
        Sample::new("undisturbed_ms", calm.ms, "ms", c.clone()),
        Sample::new("killed_ms", killed.ms, "ms", c.clone()),
        Sample::new(
            "ratio_killed_to_undisturbed",
            killed.ms / calm.ms,
            "x",
            c.clone(),
        ),
        Sample::new(
            "reexecuted_tasks",
            killed.runs.saturating_sub(killed.tasks) as f64,
            "tasks",
            c,
        ),
    ])
}
