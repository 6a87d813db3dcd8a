//! owl: distributed futures with ownership, on a thread-per-core engine.
//!
//! ```no_run
//! #[owl::remote]
//! fn add(a: u64, b: u64) -> u64 {
//!     a + b
//! }
//!
//! #[owl::main]
//! async fn main(rt: owl::Runtime) -> owl::Result<()> {
//!     let x = rt.put(40u64)?;
//!     let y = add.remote(&rt, x.clone(), 2)?;
//!     assert_eq!(*y.get().await?, 42u64);
//!     Ok(())
//! }
//! ```
//!
//! Structure (see docs/DESIGN.md):
//! - [`Runtime`]: a node: one pinned shard thread per core, each with its own
//!   event loop, ownership table and task queues, and one object arena.
//! - [`ObjectRef`]: a typed future owned by the shard that created it;
//!   reference-counted, passable as an argument, storable inside values.
//! - `#[remote]` turns a fn or async fn into a registered remote function
//!   with a stable id; `f.remote(&rt, args..)` submits a call.
//!
//! Invariants the crate keeps (each stated where its type is defined):
//! - an object's table entry is written only by its owning shard;
//! - an object is freed exactly when no handle, task or containing value on
//!   the node refers to it;
//! - a task that fails, panics or is cancelled stores an error as its result,
//!   never takes its shard down.

// Unsafe code is denied everywhere in the crate; the two items that need it
// (unchecked access to archives validated once, in objref.rs, and the
// contained-refs thread-local in value.rs) allow it, each with its SAFETY note.
#![deny(unsafe_code)]

mod cluster;
mod config;
mod engine;
mod error;
mod ids;
mod leaks;
mod object;
mod owner;
mod runtime;
pub mod sched;
mod spec;
mod startup;
#[doc(hidden)]
pub mod testkit;

pub use cluster::{in_process, on_loopback, SimCluster};
pub use config::{Builder, Config, EventLoopKind, IoPlacement, Membership, Network, Transport};
pub use engine::net::{Member, NetLeaks};
pub use engine::shard::LeakCounts;
pub use error::{
    Attempt, Error, GetError, PutError, Result, StartError, SubmitError, TaskError, TaskErrorKind,
};
pub use ids::{FnId, NodeId, ObjectId, ShardId};
pub use leaks::LeakReport;
pub use object::objref::{ArchivedRefRecord, GetFuture, Got, ObjectRef, RefRecord};
pub use object::value::{OwlWriter, Stored, Value};
pub use owl_macros::{main, remote};
pub use owl_store::ArenaStats;
/// The transport's simulated network (for `SimCluster` tests).
pub use owl_transport::sim;
pub use runtime::{runtime, Runtime};
pub use spec::{CallOpts, FnInfo, IntoArg};

/// Re-exported so users derive `Archive`, `Serialize`, `Deserialize` for their types.
pub use rkyv;

/// Used by the code `#[owl::remote]` and `#[owl::main]` generate; not API.
#[doc(hidden)]
pub mod __private {
    pub use crate::error::TaskErrorKind;
    pub use crate::ids::stable_hash;
    pub use crate::object::cell::ObjectCell;
    pub use crate::object::value::{store, Stored};
    pub use crate::spec::{
        Arg, ArgIn, ArgOut, Call, Exec, FnInfo, IntoArg, TaskFuture, Wiring, REMOTE_FNS,
    };
    pub use linkme;
    pub use owl_store::Arena;
    pub use std::sync::Arc;

    use crate::object::value::Value;
    use crate::runtime::Runtime;

    /// The runtime of the running task; generated code injects it into
    /// `Runtime` parameters.
    pub fn current_runtime() -> Runtime {
        crate::runtime::runtime().expect("owl remote functions run on owl shards")
    }

    /// Archives a task's return value into the running shard's node.
    pub fn store_return<R: Value>(value: R) -> Result<Stored, TaskErrorKind> {
        crate::engine::shard::with_current(|s| {
            store(&value, &s.shared.arena, s.shared.config.inline_max)
        })
        .expect("owl remote functions run on owl shards")
        .map_err(|e| TaskErrorKind::Store(e.to_string()))
    }

    /// Like `store_return` for functions returning `Result<R, E>`.
    pub fn store_result<R: Value, E: std::fmt::Display>(
        value: Result<R, E>,
    ) -> Result<Stored, TaskErrorKind> {
        match value {
            Ok(v) => store_return(v),
            Err(e) => Err(TaskErrorKind::Failed(format!("{e:#}"))),
        }
    }

    /// Unwraps an argument or ends the attempt with its error.
    #[macro_export]
    #[doc(hidden)]
    macro_rules! __owl_take {
        ($arg:expr) => {
            match $arg.take() {
                Ok(v) => v,
                Err(e) => return $crate::__private::Exec::Done(Err(e)),
            }
        };
    }
}
