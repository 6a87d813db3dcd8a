//! Property test: random programs on simulated clusters of 4 to 16 nodes
//! (the transport's simulated network, per-frame delays drawn from the
//! case's seed).
//! Tasks, nested tasks and puts land on random nodes, refs travel inside
//! arguments and values in every direction; every value read must be the one
//! the model predicts, and afterwards every node's tables, proxies, exports
//! and arena must be empty.

#[path = "common/program.rs"]
mod program;

use std::time::Duration;

use owl::Runtime;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_cluster_programs_are_correct_and_leak_free(
        nodes in 4u32..=16,
        seed in any::<u64>(),
        ops in proptest::collection::vec(program::op(), 1..80),
    ) {
        let cfg = owl::sim::SimConfig {
            min_delay: Duration::from_micros(1),
            max_delay: Duration::from_micros(200),
            ..Default::default()
        };
        let cluster = owl::SimCluster::start(nodes, seed, cfg, Duration::from_micros(100), |_| {
            Runtime::builder()
                .shards(1)
                .pin(false)
                .store_size(16 << 20)
                .spin(Duration::ZERO)
        })
        .unwrap();
        let result = cluster.node(0).block_on(move |rt| program::run_program(rt, ops));
        prop_assert_eq!(result, Ok(()));
        cluster.assert_no_leaks();
    }
}
