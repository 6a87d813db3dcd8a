//! Objects: the bottom layer of the crate. A cell per object per node
//! (the write-once result slot and its handle count), stored values
//! (inline or archived in the arena), typed and untyped refs, and waiting
//! on several objects at once.
//!
//! Nothing here knows shards, nodes or the network. The one way up is the
//! release route: when a node's handle group of an object ends (its handle
//! count reaches zero), [`release`] hands the cell to the route the engine
//! installed at start-up, which finds the cell's runtime by the serial the
//! cell carries and tells the owner.

use std::cell::Cell;
use std::sync::{Arc, OnceLock};

pub(crate) mod cell;
pub(crate) mod objref;
pub(crate) mod timer;
pub(crate) mod value;
pub(crate) mod wait;

use cell::ObjectCell;

/// Where the end of a handle group goes (see the module docs).
pub(crate) type ReleaseRoute = fn(&Arc<ObjectCell>);

/// The engine's handler for the end of a handle group, set once per
/// process before any runtime makes a cell.
static RELEASE_ROUTE: OnceLock<ReleaseRoute> = OnceLock::new();

/// Installs the release route (the first call wins; every runtime of the
/// process installs the same function).
pub(crate) fn set_release_route(route: ReleaseRoute) {
    let _ = RELEASE_ROUTE.set(route);
}

thread_local! {
    /// A route that takes precedence on this thread: the deterministic
    /// cluster runs every node on one thread and routes its releases to
    /// itself, whatever the process-wide route is.
    static THREAD_ROUTE: Cell<Option<ReleaseRoute>> = const { Cell::new(None) };
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

/// Sets (or with `None` clears) the calling thread's own release route.
pub(crate) fn set_thread_release_route(route: Option<ReleaseRoute>) {
    THREAD_ROUTE.with(|r| r.set(route));
}

/// The handle group of `cell` on this node ended.
pub(crate) fn release(cell: &Arc<ObjectCell>) {
    if let Some(route) = THREAD_ROUTE.with(Cell::get) {
        return route(cell);
    }
    if let Some(route) = RELEASE_ROUTE.get() {
        route(cell);
    }
}
