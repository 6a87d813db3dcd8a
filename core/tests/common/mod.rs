//! Helpers shared by the integration tests (each uses some of them).
#![allow(dead_code)]

use owl::{NodeId, Runtime};

/// The standard test node: 2 shards, a 64 MiB arena.
pub fn two_shards() -> Runtime {
    Runtime::builder()
        .shards(2)
        .store_size(64 << 20)
        .build()
        .expect("test runtime starts")
}

/// Node `k` dies: every other node is told (as its transport would on a
/// lost connection), then it stops.
pub fn kill(nodes: &mut [Option<Runtime>], k: usize) {
    for (i, rt) in nodes.iter().enumerate() {
        if let (true, Some(rt)) = (i != k, rt) {
            rt.peer_down(NodeId(k as u32));
        }
    }
    drop(nodes[k].take());
}
