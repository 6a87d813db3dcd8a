//! The owner layer on the deterministic cluster: thousands of seeded
//! random programs (refs sent between nodes, tasks placed anywhere, nested
//! tasks returning refs) on 4 to 16 nodes, with and without node deaths. A failure
//! prints the seed; `OWL_DET_SEED=<seed> cargo test -p owl --test
//! det_cluster replay -- --nocapture` replays it with its event log.

use owl::testkit::det::{run, DetConfig};

fn config(seed: u64, deaths: bool) -> DetConfig {
    DetConfig {
        nodes: 4 + (seed % 13) as u32,
        steps: 60 + (seed % 7) as u32 * 20,
        max_deaths: if deaths { 1 + (seed % 3) as u32 } else { 0 },
    }
}

fn many(seeds: std::ops::Range<u64>, deaths: bool) {
    let mut failed = Vec::new();
    for seed in seeds {
        if let Err(f) = run(seed, &config(seed, deaths)) {
            if failed.is_empty() {
                eprintln!("{f}");
            }
            let what: String = f.what.chars().take(300).collect();
            eprintln!("seed {seed}: {what}");
            failed.push(seed);
        }
    }
    assert!(
        failed.is_empty(),
        "{} seeds failed (first printed above), e.g. {:?}; replay one with OWL_DET_SEED=<seed>{}",
        failed.len(),
        &failed[..failed.len().min(10)],
        if deaths { " OWL_DET_DEATHS=1" } else { "" }
    );
}

#[test]
fn random_programs_without_failures() {
    many(0..10_000, false);
}

#[test]

fn random_programs_with_node_deaths() {
    many(1_000_000..1_010_000, true);
}

#[test]
fn a_seed_replays_byte_for_byte() {
    for seed in [3, 77, 1_000_123] {
        let cfg = config(seed, seed > 1_000);
        let a = run(seed, &cfg).unwrap().join("\n");
        let b = run(seed, &cfg).unwrap().join("\n");
        assert!(a.len() > 1_000, "a real run: {} bytes of log", a.len());
        assert_eq!(a, b, "seed {seed} replays exactly");
    }
    let other = run(4, &config(4, false)).unwrap().join("\n");
    assert_ne!(other, run(3, &config(3, false)).unwrap().join("\n"));
}

/// `OWL_DET_SEEDS=<from>..<to> [OWL_DET_DEATHS=1]`: a range of seeds
/// beyond those above, to hunt for bugs.
#[test]
fn seeds() {
    let Some((from, to)) = std::env::var("OWL_DET_SEEDS").ok().and_then(|s| {
        let (a, b) = s.split_once("..")?;
        Some((a.parse().ok()?, b.parse().ok()?))
    }) else {
        return;
    };
    many(from..to, std::env::var_os("OWL_DET_DEATHS").is_some());
}

/// `OWL_DET_SEED=<seed> [OWL_DET_DEATHS=1]`: one run, its log printed.
#[test]
fn replay() {
    let Some(seed) = std::env::var("OWL_DET_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    else {
        return;
    };
    let deaths = std::env::var_os("OWL_DET_DEATHS").is_some();
    match run(seed, &config(seed, deaths)) {
        Ok(log) => {
            for e in log {
                println!("{e}");
            }
        }
        Err(f) => {
            for e in &f.log {
                println!("{e}");
            }
            panic!("{f}")
        }
    }
}
