//! Property test: random programs on in-process clusters of 4 to 16 nodes.
//! Tasks, nested tasks and puts land on random nodes, refs travel inside
//! arguments and values in every direction; every value read must be the one
//! the model predicts, and afterwards every node's tables, proxies, exports
//! and arena must be empty.

#[path = "common/program.rs"]
mod program;

use owl::Runtime;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_cluster_programs_are_correct_and_leak_free(
        nodes in 4u32..=16,
        ops in proptest::collection::vec(program::op(), 1..80),
    ) {
        let cluster = owl::in_process(nodes, |_| {
            Runtime::builder()
                .shards(1)
                .pin(false)
                .store_size(16 << 20)
                .spin(std::time::Duration::ZERO)
        })
        .unwrap();
        let result = cluster[0].block_on(move |rt| program::run_program(rt, ops));
        prop_assert_eq!(result, Ok(()));
        for rt in &cluster {
            rt.assert_no_leaks();
        }
    }
}
