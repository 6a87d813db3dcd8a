//! Property test: random programs on one node. Every value read must be the
//! one the model predicts, and when the program ends every table, queue and
//! the arena must be empty.

#[path = "common/program.rs"]
mod program;

use owl::Runtime;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_programs_are_correct_and_leak_free(ops in proptest::collection::vec(program::op(), 1..80)) {
        let rt = Runtime::builder().shards(2).store_size(32 << 20).spin(std::time::Duration::ZERO).build().unwrap();
        let result = rt.block_on(move |rt| program::run_program(rt, ops));
        prop_assert_eq!(result, Ok(()));
        let report = rt.leak_report();
        rt.assert_no_leaks();
        drop(report);
    }
}
