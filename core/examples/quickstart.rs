//! Monte Carlo estimate of π with a million fine-grained owl tasks.
//!
//! Each task draws `SAMPLES` points in the unit square from its own seeded
//! generator and counts those inside the quarter circle; the root task
//! submits them in waves and sums the counts as they finish.
//!
//! Run: `cargo run --release -p owl --example quickstart [tasks]`

use std::time::Instant;

const SAMPLES: u64 = 64;

/// splitmix64: a small, good, seedable generator.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[owl::remote]
fn hits(seed: u64) -> u64 {
    let mut state = seed;
    let mut inside = 0;
    for _ in 0..SAMPLES {
        let x = (next(&mut state) >> 11) as f64 / (1u64 << 53) as f64;
        let y = (next(&mut state) >> 11) as f64 / (1u64 << 53) as f64;
        inside += u64::from(x * x + y * y <= 1.0);
    }
    inside
}

#[owl::main]
async fn main(rt: owl::Runtime) -> owl::Result<()> {
    let tasks: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let wave = 100_000u64;
    let t0 = Instant::now();
    let mut inside = 0u64;
    let mut start = 0;
    while start < tasks {
        let end = (start + wave).min(tasks);
        let refs = (start..end)
            .map(|seed| hits.remote(&rt, seed))
            .collect::<Result<Vec<_>, _>>()?;
        for r in &refs {
            inside += r.get().await?.to_native();
        }
        start = end;
    }
    let elapsed = t0.elapsed();
    let pi = 4.0 * inside as f64 / (tasks * SAMPLES) as f64;
    println!(
        "pi ≈ {pi:.6} (error {:.2e}) from {} samples",
        (pi - std::f64::consts::PI).abs(),
        tasks * SAMPLES
    );
    println!(
        "{tasks} tasks in {:.3} s: {:.0} tasks/s on {} shards ({} event loop)",
        elapsed.as_secs_f64(),
        tasks as f64 / elapsed.as_secs_f64(),
        rt.shards(),
        rt.event_loop()
    );
    Ok(())
}
