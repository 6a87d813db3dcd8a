//! Objects: the bottom layer of the crate. A cell per object per node
//! (the write-once result slot and its handle count), stored values
//! (inline or archived in the arena), typed and untyped refs, and waiting
//! on several objects at once.
//!
//! Nothing here knows shards, nodes or the network. The ways up are two
//! routes the engine installs at start-up, which find the cell's runtime
//! by the serial the cell carries and tell its owner layer: when a node's
//! handle group of an object ends (its handle count reaches zero),
//! [`release`]; when a reader waits for an object whose value is held on
//! another node (see [`cell::ObjectCell::mark_located`]), [`demand`].

use std::cell::Cell;
use std::sync::{Arc, OnceLock};

pub(crate) mod cell;
pub(crate) mod objref;
pub(crate) mod timer;
pub(crate) mod value;
pub(crate) mod wait;

use cell::ObjectCell;

/// Where the end of a handle group and the demand for a value held
/// elsewhere go (see the module docs).
#[derive(Clone, Copy)]
pub(crate) struct Routes {
    pub release: fn(&Arc<ObjectCell>),
    pub demand: fn(&Arc<ObjectCell>),
}

/// The engine's routes, set once per process before any runtime makes a
/// cell.
static ROUTES: OnceLock<Routes> = OnceLock::new();

/// Installs the routes (the first call wins; every runtime of the process
/// installs the same functions).
pub(crate) fn set_routes(routes: Routes) {
    let _ = ROUTES.set(routes);
}

thread_local! {
    /// Routes that take precedence on this thread: the deterministic
    /// cluster runs every node on one thread and routes its releases and
    /// demands to itself, whatever the process-wide routes are.
    static THREAD_ROUTES: Cell<Option<Routes>> = const { Cell::new(None) };
    /// Whether this thread runs owl tasks (a shard): blocking waits on it
    /// would stall every task queued behind, so they are refused.
    static TASK_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Marks the calling thread as one that runs tasks (or no longer does).
pub(crate) fn set_task_thread(yes: bool) {
    TASK_THREAD.with(|t| t.set(yes));
}

/// Whether the calling thread runs tasks (see [`set_task_thread`]).
pub(crate) fn on_task_thread() -> bool {
    TASK_THREAD.with(Cell::get)
}

/// Sets (or with `None` clears) the calling thread's own routes.
pub(crate) fn set_thread_routes(routes: Option<Routes>) {
    THREAD_ROUTES.with(|r| r.set(routes));
}

fn routes() -> Option<Routes> {
    THREAD_ROUTES
        .with(Cell::get)
        .or_else(|| ROUTES.get().copied())
}

/// The handle group of `cell` on this node ended.
pub(crate) fn release(cell: &Arc<ObjectCell>) {
    if let Some(r) = routes() {
        (r.release)(cell);
    }
}

/// A reader waits for `cell`'s value, which is held on another node: the
/// owner layer brings it here.
pub(crate) fn demand(cell: &Arc<ObjectCell>) {
    if let Some(r) = routes() {
        (r.demand)(cell);
    }
}
