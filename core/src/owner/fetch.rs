//! Objects moving between nodes. A node that receives a ref to an object
//! owned elsewhere asks the owner for it (`Fetch`, a standing request the
//! owner answers once the value is ready). Small values come back whole;
//! large ones as a header, then the receiver pulls chunks straight into a
//! block of its arena, several in flight. One proxy per object and node
//! means one fetch: concurrent readers on a node share it.

use std::sync::Arc;

use owl_proto::{OwlMsg, SharedBlock, WireError, WireId, WireValue};
use owl_store::BlockMut;

use super::{wire, NodeCtx, Owner};
use crate::error::{TaskError, TaskErrorKind};
use crate::ids::{NodeId, ObjectId};
use crate::object::cell::ObjectCell;
use crate::object::cell::Outcome;
use crate::object::objref::RawRef;
use crate::object::value::Stored;

/// Values larger than this are pulled in chunks of this size.
pub(crate) const CHUNK: usize = 4 << 20;
/// Chunks requested ahead of those received.
const WINDOW: u64 = 8;

/// A large value arriving in chunks.
pub(crate) struct Pull {
    from: NodeId,
    block: Option<BlockMut>,
    contained: Vec<RawRef>,
    len: u64,
    requested: u64,
    received: u64,
}

fn store_error(object: ObjectId, node: NodeId, message: String) -> Arc<TaskError> {
    Arc::new(TaskError {
        kind: TaskErrorKind::Store(message),
        task: object.to_string(),
        object,
        node,
        shard: object.shard,
        attempts: 0,
        history: Vec::new(),
    })
}

impl Owner {
    /// A standing request for an object owned here: its value goes to
    /// `from` once it is ready.
    pub(super) fn on_fetch(&self, ctx: &impl NodeCtx, from: NodeId, id: ObjectId) {
        let Some(cell) = self.refs.export_cell(id) else {
            let err = store_error(id, self.me, "the owner has no such object (freed)".into());
            return ctx.send(
                from,
                OwlMsg::Value {
                    object: wire::wire_id(id),
                    outcome: Err(wire::wire_error(&err)),
                },
            );
        };
        ctx.when_ready(&cell, from);
    }

    /// Sends a ready object's value (or error) to `to`.
    pub(crate) fn send_value(&self, ctx: &impl NodeCtx, to: NodeId, cell: &ObjectCell) {
        let object = wire::wire_id(cell.id());
        let msg = match cell.result() {
            None => return,
            Some(Err(e)) => OwlMsg::Value {
                object,
                outcome: Err(wire::wire_error(e)),
            },
            Some(Ok(stored)) if stored.bytes().len() <= self.chunk => OwlMsg::Value {
                object,
                outcome: Ok(self.ship_value(ctx, to, stored)),
            },
            Some(Ok(stored)) => OwlMsg::ValueHeader {
                object,
                len: stored.bytes().len() as u64,
                refs: stored
                    .contained()
                    .iter()
                    .map(|r| self.refs.ship(ctx, to, r))
                    .collect(),
                shared: ctx.share(stored),
            },
        };
        ctx.send(to, msg);
    }

    pub(super) fn on_value(
        &self,
        ctx: &impl NodeCtx,
        from: NodeId,
        id: ObjectId,
        outcome: Result<WireValue, WireError>,
    ) {
        let outcome = self.receive_outcome(ctx, from, id, outcome);
        // An answer to a pull (the holder lost the value) ends the pull.
        let pull = self.pulls.lock().remove(&id);
        drop(pull);
        self.pulled(ctx, from, id, outcome);
    }

    pub(super) fn on_value_header(
        &self,
        ctx: &impl NodeCtx,
        from: NodeId,
        id: ObjectId,
        len: u64,
        refs: Vec<WireId>,
        shared: Option<SharedBlock>,
    ) {
        let contained = self.resolve_all(ctx, &refs, from);
        if self.refs.proxy(id).is_none() {
            // Nobody here wants it any more (the handle group ended while
            // the owner waited for the value): the owner may free it at
            // any moment and stop answering, so do not start a pull.
            drop(contained);
            return;
        }
        self.start_pull(ctx, from, id, len, contained, shared);
    }

    /// Starts bringing `len` bytes of `id`'s value from `from` into this
    /// node's arena: one copy from its arena file on the same host, else
    /// chunks, several in flight. The value completes what it is for when
    /// it is all here (`pulled`).
    pub(super) fn start_pull(
        &self,
        ctx: &impl NodeCtx,
        from: NodeId,
        id: ObjectId,
        len: u64,
        contained: Vec<RawRef>,
        shared: Option<SharedBlock>,
    ) {
        let block = match ctx.arena().alloc(len as usize) {
            Ok(b) => b,
            Err(e) => {
                let err = store_error(id, self.me, format!("pulling {len} bytes: {e}"));
                return self.pulled(ctx, from, id, Err(err));
            }
        };
        // Same host: one copy straight from the holder's arena file (the
        // holder keeps the value while our proxy's registration lives).
        let dir = ctx
            .arena()
            .path()
            .parent()
            .unwrap_or(std::path::Path::new("/"));
        let local = shared.filter(|sb| {
            sb.host == owl_store::host_id()
                && sb.host != 0
                && owl_store::is_peer_arena(dir, std::path::Path::new(&sb.path))
        });
        if let Some(sb) = local {
            return ctx.copy_same_host(id, from, sb, block, contained);
        }
        let mut pulls = self.pulls.lock();
        if pulls.contains_key(&id) {
            return;
        }
        let mut pull = Pull {
            from,
            block: Some(block),
            contained,
            len,
            requested: 0,
            received: 0,
        };
        for _ in 0..WINDOW {
            self.request_chunk(ctx, id, &mut pull);
        }
        pulls.insert(id, pull);
    }

    /// A same-host copy (`NodeCtx::copy_same_host`) from `from` finished.
    pub(crate) fn copied(
        &self,
        ctx: &impl NodeCtx,
        from: NodeId,
        id: ObjectId,
        outcome: Result<Stored, String>,
    ) {
        let outcome = outcome.map_err(|e| store_error(id, self.me, format!("same-host copy: {e}")));
        self.pulled(ctx, from, id, outcome);
    }

    /// A value brought from `from` is here (or could not be): an object
    /// owned here is a task's result its executor held (the task is done,
    /// and the executor may drop its copy); any other is this node's proxy
    /// of an object its owner sent.
    fn pulled(&self, ctx: &impl NodeCtx, from: NodeId, id: ObjectId, outcome: Outcome) {
        if id.node == self.me {
            self.held_result_arrived(ctx, from, id, outcome);
        } else if let Some(cell) = self.refs.proxy(id) {
            cell.complete(outcome);
        }
    }

    fn request_chunk(&self, ctx: &impl NodeCtx, id: ObjectId, pull: &mut Pull) {
        if pull.requested >= pull.len {
            return;
        }
        let len = (pull.len - pull.requested).min(self.chunk as u64);
        ctx.send(
            pull.from,
            OwlMsg::Pull {
                object: wire::wire_id(id),
                offset: pull.requested,
                len: len as u32,
            },
        );
        pull.requested += len;
    }

    pub(super) fn on_pull(
        &self,
        ctx: &impl NodeCtx,
        from: NodeId,
        id: ObjectId,
        offset: u64,
        len: u32,
    ) {
        // An object owned here whose ref went out, or a task's result held
        // here for its owner.
        let data = self
            .refs
            .export_cell(id)
            .or_else(|| self.held.lock().get(&id).cloned())
            .and_then(|cell| match cell.result() {
                Some(Ok(stored)) => {
                    let bytes = stored.bytes();
                    let start = usize::try_from(offset).ok()?.min(bytes.len());
                    let end = start.saturating_add(len as usize).min(bytes.len());
                    Some(bytes[start..end].to_vec())
                }
                _ => None,
            });
        match data {
            Some(data) => ctx.send(
                from,
                OwlMsg::Chunk {
                    object: wire::wire_id(id),
                    offset,
                    data,
                },
            ),
            None => {
                // Freed since the header went out (a dead borrower's counts
                // purged with it): the reader must not wait for chunks.
                tracing::debug!(object = %id, %from, "pull of an object this node no longer holds");
                let err = store_error(
                    id,
                    self.me,
                    "no such object at its owner any more (freed while it was being pulled)".into(),
                );
                ctx.send(
                    from,
                    OwlMsg::Value {
                        object: wire::wire_id(id),
                        outcome: Err(wire::wire_error(&err)),
                    },
                );
            }
        }
    }

    pub(super) fn on_chunk(&self, ctx: &impl NodeCtx, id: ObjectId, offset: u64, data: Vec<u8>) {
        let done = {
            let mut pulls = self.pulls.lock();
            let Some(pull) = pulls.get_mut(&id) else {
                return;
            };
            let Some(block) = pull.block.as_mut() else {
                return;
            };
            let dst = block.as_mut_slice();
            let range = usize::try_from(offset)
                .ok()
                .and_then(|start| Some(start..start.checked_add(data.len())?));
            let Some(slot) = range.and_then(|r| dst.get_mut(r)) else {
                tracing::warn!(object = %id, offset, "chunk outside the object dropped");
                return;
            };
            slot.copy_from_slice(&data);
            pull.received += data.len() as u64;
            self.request_chunk(ctx, id, pull);
            if pull.received >= pull.len {
                pulls.remove(&id)
            } else {
                None
            }
        };
        if let Some(mut pull) = done {
            let block = pull
                .block
                .take()
                .expect("block present until done")
                .freeze();
            let stored = Stored::from_block(block, std::mem::take(&mut pull.contained));
            self.pulled(ctx, pull.from, id, Ok(stored));
        }
    }

    /// This node's handle group of `cell`'s object ended: for a proxy, its
    /// registrations go back to the owner, and a pull of its value in
    /// progress stops (the owner may free the object and stop answering;
    /// a later proxy fetches again).
    pub(crate) fn group_ended(&self, ctx: &impl NodeCtx, cell: &Arc<ObjectCell>) {
        let id = cell.id();
        if id.node != self.me {
            let pull = self.pulls.lock().remove(&id);
            drop(pull);
        }
        self.refs.group_ended(ctx, cell);
    }

    /// The objects being pulled, in id order (for leak reports).
    pub(crate) fn pulling(&self) -> Vec<ObjectId> {
        let mut ids: Vec<ObjectId> = self.pulls.lock().keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    pub(super) fn fail_pulls_from(&self, dead: NodeId) {
        let failed: Vec<ObjectId> = {
            let mut pulls = self.pulls.lock();
            let mut ids: Vec<ObjectId> = pulls
                .iter()
                .filter(|(_, p)| p.from == dead)
                .map(|(id, _)| *id)
                .collect();
            ids.sort_unstable();
            for id in &ids {
                pulls.remove(id);
            }
            ids
        };
        for id in failed {
            // A task's result pulled from its dead executor is not failed
            // here: the task is retried or failed with the others it ran.
            if id.node == self.me {
                continue;
            }
            if let Some(cell) = self.refs.proxy(id) {
                cell.complete(Err(super::refs::owner_died(id)));
            }
        }
    }
}
