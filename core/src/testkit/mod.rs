//! Clusters for tests. The deterministic cluster ([`det`]) runs the owner
//! layer of N nodes on one thread from one seed; the threaded simulated
//! cluster (`SimCluster`), in-process and loopback clusters run whole
//! runtimes above it.

pub(crate) mod call;
pub mod det;
