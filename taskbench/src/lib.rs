//! Task Bench (Slaughter et al., SC'20) task graphs in Rust.
//!
//! A port of the definitions in Task Bench's `core/`: the dependence
//! patterns ([`DependenceType`], [`TaskGraph`]), the kernels ([`Kernel`]),
//! the command line and report of every implementation ([`App`]), and the
//! METG analysis of its scripts ([`metg`]). An executor (MPI, owl, ...)
//! builds an [`App`] from the flags, runs every task `(t, p)` of every graph
//! once its inputs — the outputs of [`TaskGraph::input_points`] at `t - 1`
//! — are available, calls [`TaskGraph::execute_point`] on them (which
//! checks they are the right ones), and prints [`App::display`] before and
//! [`App::report_timing`] after.
//!
//! ```
//! use taskbench::{App, DependenceType};
//!
//! let app = App::parse(["-steps", "4", "-width", "4", "-type", "stencil_1d",
//!                       "-kernel", "compute_bound", "-iter", "10"]).unwrap();
//! let g = &app.graphs[0];
//! assert_eq!(g.dependence, DependenceType::Stencil1d);
//! assert_eq!(g.input_points(1, 0), vec![0, 1]);
//!
//! // Run the graph sequentially.
//! let bytes = g.output_bytes_per_task;
//! let mut prev = vec![vec![0u8; bytes]; g.max_width as usize];
//! for t in 0..g.timesteps {
//!     let mut next = prev.clone();
//!     for p in g.points_at_timestep(t).points() {
//!         let inputs: Vec<&[u8]> =
//!             g.input_points(t, p).iter().map(|&q| &prev[q as usize][..]).collect();
//!         g.execute_point(t, p, &mut next[p as usize], &inputs, &mut []).unwrap();
//!     }
//!     prev = next;
//! }
//! assert!(app.report_timing(1.0).starts_with("Total Tasks 16\nTotal Dependencies 30\n"));
//! ```

mod app;
mod cfmt;
mod error;
mod graph;
mod kernel;
pub mod metg;
pub mod random;

pub use app::{App, Totals};
pub use cfmt::{c_exp, c_fixed};
pub use error::{AppError, ExecuteError, ParseNameError};
pub use graph::{clamp, DependenceType, Interval, TaskGraph, RECORD_BYTES, SCRATCH_MAGIC};
pub use kernel::{Kernel, KernelType};

/// The kernel functions themselves, for benchmarking them in isolation.
pub mod kernels {
    pub use crate::kernel::{busy_wait, compute_bound, compute_bound2, daxpy, dgemm, memory_bound};
}
