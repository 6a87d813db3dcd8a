//! Copies of a result held on other nodes (`CallOpts::replicas`).
//!
//! Once a task's result is located on its executor, the owner asks more
//! live nodes (not itself, not a holder, none that refused before), in
//! turn after the executor, to copy it (`Replicate`); each pulls the value
//! from a holder into its arena, keeps it as a held result (served to
//! readers, dropped on `Release`) and acknowledges it (`Replicated`). The
//! owner counts a copy from its acknowledgement on: the object survives
//! the loss of all but one acknowledged holder without running its task
//! again. A lost copy (its node died, or a copy in the making failed) is
//! made again from a surviving one, so the count comes back to what the
//! call asked for while enough live nodes remain.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use owl_proto::{OwlMsg, SharedBlock};

use super::fetch::{At, Purpose};
use super::tasks::RemoteTask;
use super::{wire, NodeCtx, Owner};
use crate::ids::{NodeId, ObjectId};
use crate::object::cell::ObjectCell;
use crate::object::objref::RawRef;
use crate::object::value::Stored;

/// Copies the call of a task running elsewhere asked for (at least 1).
pub(super) fn task_replicas(remote: &HashMap<ObjectId, RemoteTask>, id: ObjectId) -> usize {
    remote
        .get(&id)
        .and_then(|r| r.task.opts.as_deref())
        .map_or(1, |o| usize::from(o.replicas).max(1))
}

impl Owner {
    /// A copy of a ready value owned here for the next reader on another
    /// node, in turn over the acknowledged live copies (`put_with`);
    /// `None` for a value with no copies elsewhere.
    pub(super) fn serving_copy(&self, ctx: &impl NodeCtx, id: ObjectId) -> Option<NodeId> {
        if self.located_count.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let located = self.located.lock();
        let live: Vec<NodeId> = located
            .get(&id)?
            .holders
            .iter()
            .copied()
            .filter(|&h| !ctx.is_dead(h))
            .collect();
        let turn = self.turns.fetch_add(1, Ordering::Relaxed);
        live.get(turn % live.len().max(1)).copied()
    }

    /// Acknowledged copies of `id`'s value held on other nodes.
    pub(crate) fn copies(&self, id: ObjectId) -> usize {
        self.located
            .lock()
            .get_mut(&id)
            .map_or(0, |l| l.holders.len())
    }

    /// Asks live nodes for the copies `id` still lacks.
    pub(super) fn replicate(&self, ctx: &impl NodeCtx, id: ObjectId) {
        let (source, len, targets) = {
            let mut located = self.located.lock();
            let Some(l) = located.get_mut(&id) else {
                return;
            };
            let Some(&source) = l.holders.first() else {
                return;
            };
            let need = l.want.saturating_sub(l.holders.len() + l.copying.len());
            let nodes = ctx.nodes();
            let mut picked = Vec::new();
            for k in 1..=nodes {
                if picked.len() >= need {
                    break;
                }
                let c = NodeId((source.0 + k) % nodes);
                let taken =
                    l.holders.contains(&c) || l.copying.contains(&c) || l.refused.contains(&c);
                if c != self.me && !taken && !ctx.is_dead(c) {
                    picked.push(c);
                }
            }
            l.copying.extend_from_slice(&picked);
            (source, l.len, picked)
        };
        for to in targets {
            let msg = OwlMsg::Replicate {
                object: wire::wire_id(id),
                holder: source.0,
                len,
            };
            ctx.send(to, msg);
        }
    }

    /// The owner `from` asks this node to keep a copy of `id`, held by
    /// `holder`.
    pub(super) fn on_replicate(
        &self,
        ctx: &impl NodeCtx,
        from: NodeId,
        id: ObjectId,
        holder: NodeId,
        len: u64,
    ) {
        let held = self.held.lock().get(&id).cloned();
        if let Some(cell) = held {
            // A reader's copy becomes one the owner counts on.
            self.cached.lock().remove(&id);
            return replied(ctx, id, Some(&cell));
        }
        let busy = self.pulls.lock().contains_key(&id);
        if id.node != from || holder == self.me || busy || ctx.is_dead(holder) {
            return replied(ctx, id, None);
        }
        let at = At {
            len,
            holder,
            shared: None,
        };
        self.start_pull(ctx, id, at, Vec::new(), Purpose::Copy);
    }

    /// A copy this node was asked for is here, pulled from `from` (or
    /// could not be made). `readers`: the refs inside the value, when this
    /// node's proxy of it waits for the same bytes.
    pub(super) fn copy_made(
        &self,
        ctx: &impl NodeCtx,
        id: ObjectId,
        from: NodeId,
        value: Option<Stored>,
        readers: Option<Vec<RawRef>>,
    ) {
        let proxy =
            readers.and_then(|refs| Some((self.refs.proxy(id).filter(|c| !c.is_ready())?, refs)));
        let Some(value) = value else {
            replied(ctx, id, None);
            if proxy.is_some() && !ctx.is_dead(id.node) {
                // The proxy waited for this copy: it asks its owner again.
                let msg = OwlMsg::Fetch {
                    object: wire::wire_id(id),
                    lost: Some(from.0),
                };
                ctx.send(id.node, msg);
            }
            return;
        };
        if let Some((cell, refs)) = proxy {
            cell.complete(Ok(value.same_bytes(refs)));
        }
        if ctx.is_dead(id.node) {
            return; // its owner is gone: nobody will read or release it
        }
        let cell = Arc::new(ObjectCell::ready(id, self.refs.serial(), 0, value));
        self.held.lock().insert(id, Arc::clone(&cell));
        replied(ctx, id, Some(&cell));
    }

    /// A reader here brought `id`'s value from a holder: it keeps a copy
    /// and tells the owner, which counts it among the holders (unasked,
    /// as `Replicated`) or, if it no longer wants one, releases it.
    pub(super) fn reader_holds(&self, ctx: &impl NodeCtx, id: ObjectId, copy: Stored) {
        if ctx.is_dead(id.node) {
            return;
        }
        let cell = Arc::new(ObjectCell::ready(id, self.refs.serial(), 0, copy));
        {
            let mut held = self.held.lock();
            if held.contains_key(&id) {
                return;
            }
            held.insert(id, Arc::clone(&cell));
            self.cached.lock().insert(id);
        }
        // The owner's death may have been handled meanwhile, on another
        // thread: then nobody would release the copy.
        if ctx.is_dead(id.node) {
            self.cached.lock().remove(&id);
            let cell = self.held.lock().remove(&id);
            drop(cell);
            return;
        }
        replied(ctx, id, Some(&cell));
    }

    /// The arena has no room for a value coming here: the copies readers
    /// here kept go (their owners are told, as for a copy that could not
    /// be made; a value still read here keeps its block until its reader
    /// lets go). Returns how many went.
    pub(super) fn drop_cached(&self, ctx: &impl NodeCtx) -> usize {
        let mut ids: Vec<ObjectId> = self.cached.lock().drain().collect();
        ids.sort_unstable();
        let cells: Vec<Arc<ObjectCell>> = {
            let mut held = self.held.lock();
            ids.iter().filter_map(|id| held.remove(id)).collect()
        };
        for cell in &cells {
            if !ctx.is_dead(cell.id().node) {
                replied(ctx, cell.id(), None);
            }
        }
        let n = cells.len();
        // Dropped outside the lock.
        drop(cells);
        n
    }

    /// `from` made (`ok`) or could not make a copy of our `id`; readers on
    /// its host find it at `shared`.
    pub(super) fn on_replicated(
        &self,
        ctx: &impl NodeCtx,
        from: NodeId,
        id: ObjectId,
        ok: bool,
        shared: Option<SharedBlock>,
    ) {
        let (known, dropped) = {
            let mut located = self.located.lock();
            match located.get_mut(&id) {
                Some(l) => {
                    l.copying.retain(|&n| n != from);
                    let holds = l.holders.contains(&from);
                    if ok && !holds {
                        l.holders.push(from);
                        l.blocks.extend(shared.map(|b| (from, b)));
                        l.lost = false;
                    } else if !ok && !holds {
                        l.refused.push(from);
                    }
                    (true, !ok && holds)
                }
                None => (false, false),
            }
        };
        if dropped {
            // A holder dropped its copy (a reader's, for room): as if lost.
            self.holder_lost(ctx, id, from);
        } else if !known && ok {
            // Freed, rebuilt or brought here meanwhile: the copy goes.
            ctx.send(
                from,
                OwlMsg::Release {
                    object: wire::wire_id(id),
                },
            );
        } else if known && !ok {
            self.replicate(ctx, id);
        }
    }
}

/// Tells the owner whether this node holds a copy of `id` (the held
/// cell), and where readers on this host find it.
fn replied(ctx: &impl NodeCtx, id: ObjectId, held: Option<&ObjectCell>) {
    let shared = held.and_then(|c| match c.result() {
        Some(Ok(stored)) => ctx.share(stored),
        _ => None,
    });
    let msg = OwlMsg::Replicated {
        object: wire::wire_id(id),
        ok: held.is_some(),
        shared,
    };
    ctx.send(id.node, msg);
}
