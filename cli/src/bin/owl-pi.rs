//! Monte Carlo estimate of π spread over every node of a cluster: the
//! program the launch tests run under `owl run`, `srun` and `mpirun`, and a
//! small example of a multi-node owl program.
//!
//! `owl run -n 3 -- owl-pi [tasks] [task_ms]` prints one JSON line from
//! node 0: the estimate, the exact count of points inside (the same for a
//! given `tasks` whichever nodes ran them, retries included), and how many
//! tasks each node ran. With `task_ms` each task also takes that long
//! (a longer workload, to kill nodes in the middle of) and node 0 prints
//! `progress K/N` to stderr as results come in. With `OWL_CHECK_LEAKS=1`
//! every node checks its tables and arena are empty before exiting.
//! Attached to an open cluster (`OWL_ADDRESS=auto owl-pi`), its tasks go
//! round-robin to the members that run `hits`: itself and any `owl-pi`
//! workers (`owl start --address auto -- owl-pi`).

use owl::{CallOpts, Runtime};

const SAMPLES: u64 = 1000;

/// splitmix64: a small, good, seedable generator.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Points of `SAMPLES` inside the quarter circle, and the node that
/// counted; the task takes at least `ms` milliseconds.
#[owl::remote]
fn hits(rt: Runtime, seed: u64, ms: u64) -> (u64, u32) {
    std::thread::sleep(std::time::Duration::from_millis(ms));
    let mut state = seed;
    let mut inside = 0;
    for _ in 0..SAMPLES {
        let x = (next(&mut state) >> 11) as f64 / (1u64 << 53) as f64;
        let y = (next(&mut state) >> 11) as f64 / (1u64 << 53) as f64;
        inside += u64::from(x * x + y * y <= 1.0);
    }
    (inside, rt.node().0)
}

#[owl::main]
async fn main(rt: Runtime) -> owl::Result<()> {
    let arg = |i: usize, default: u64| {
        std::env::args().nth(i).map_or(default, |a| {
            a.parse().expect("usage: owl-pi [tasks] [task_ms]")
        })
    };
    let (tasks, ms) = (arg(1, 10_000), arg(2, 0));
    let nodes = rt.nodes();
    let refs: Vec<_> = (0..tasks)
        .map(|i| hits.options(CallOpts::new().spread()).remote(&rt, i, ms))
        .collect::<Result<_, _>>()?;
    let mut inside = 0;
    let mut per_node = vec![0u64; nodes as usize];
    let step = (tasks / 20).max(1);
    for (done, r) in (1..).zip(refs) {
        let (h, node) = r.get_owned().await?;
        if ms > 0 && done % step == 0 {
            eprintln!("progress {done}/{tasks}");
        }
        inside += h;
        if per_node.len() <= node as usize {
            per_node.resize(node as usize + 1, 0);
        }
        per_node[node as usize] += 1;
    }
    let pi = 4.0 * inside as f64 / (tasks * SAMPLES) as f64;
    println!(
        "{{\"pi\":{pi:.6},\"inside\":{inside},\"tasks\":{tasks},\"nodes\":{nodes},\"per_node\":{per_node:?},\"event_loop\":\"{}\"}}",
        rt.event_loop()
    );
    Ok(())
}
