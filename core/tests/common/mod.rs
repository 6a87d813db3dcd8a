//! Helpers shared by the integration tests.

use owl::Runtime;

/// The standard test node: 2 shards, a 64 MiB arena.
pub fn two_shards() -> Runtime {
    Runtime::builder()
        .shards(2)
        .store_size(64 << 20)
        .build()
        .expect("test runtime starts")
}
