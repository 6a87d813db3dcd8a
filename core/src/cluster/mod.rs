//! Several nodes in one process, for tests and examples: joined in memory
//! (`in_process`), over real loopback sockets (`on_loopback`), or over the
//! transport's simulated network with faults (`SimCluster`).

mod inproc;
mod loopback;
mod sim;

pub use inproc::in_process;
pub use loopback::on_loopback;
pub use sim::SimCluster;
