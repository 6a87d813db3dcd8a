//! Objects moving between nodes. A node that receives a ref to an object
//! owned elsewhere asks the owner for it (`Fetch`, a standing request the
//! owner answers once the object is done). Small values come back whole;
//! large ones as a header naming the node that holds the value (the owner,
//! or the executor that made it: see `located`), then the receiver pulls
//! chunks from there straight into a block of its arena, several in
//! flight; a reader on the holder itself reads its copy. A holder that
//! cannot serve the value is reported back to the owner with a new fetch.
//! One proxy per object and node means one fetch: concurrent readers on a
//! node share it.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use owl_proto::{OwlMsg, SharedBlock, WireError, WireId, WireValue};
use owl_store::{Block, BlockMut};

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

/// Where a large value is: its size, the node that holds it, and its
/// block there when a reader on the same host may read it directly.
pub(crate) struct At {
    pub len: u64,
    pub holder: NodeId,
    pub shared: Option<SharedBlock>,
}

/// What a pull is for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Purpose {
    /// A reader here: this node's proxy, or a located result of its own.
    Read,
    /// A copy kept for the owner (`Replicate`).
    Copy,
}

/// A large value arriving: in chunks, or in one same-host copy.
pub(crate) struct Pull {
    pub(super) from: NodeId,
    purpose: Purpose,
    /// A same-host copy's number (0 for chunks): its answer
    /// ([`Owner::copied`]) is taken only while this pull stands, so a copy
    /// given up (its holder died, the reader left) is dropped when it ends.
    copy: u64,
    /// A copy being made here that this node's proxy also waits for: the
    /// refs inside the value, from the proxy's header.
    readers: Option<Vec<RawRef>>,
    block: Option<BlockMut>,
    /// A same-host copy's bytes, read while the holder is asked whether it
    /// still holds the value: a holder frees a block when told to (or
    /// when the value's owner dies) and reuses it, so bytes read from its
    /// file are taken only once it says it held the value after the read.
    copied: Option<Block>,
    contained: Vec<RawRef>,
    len: u64,
    requested: u64,
    received: u64,
    /// Offsets requested and not yet received: a chunk is taken only once
    /// and only if asked for (a chunk of an earlier pull of the same
    /// object, still on its way, is not this pull's).
    outstanding: BTreeSet<u64>,
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

/// What a reader of an object its owner freed gets.
pub(super) fn freed_error(object: ObjectId, owner: NodeId) -> Arc<TaskError> {
    store_error(
        object,
        owner,
        "no such object at its owner any more (freed while it was being read)".into(),
    )
}

impl Owner {
    /// A standing request for an object owned here: its value (or where
    /// it is) goes to `from` once the object is done. `lost` is a holder
    /// the reader was sent to that could not serve it.
    pub(super) fn on_fetch(
        &self,
        ctx: &impl NodeCtx,
        from: NodeId,
        id: ObjectId,
        lost: Option<NodeId>,
    ) {
        if let Some(holder) = lost.filter(|&h| h != self.me) {
            self.holder_lost(ctx, id, holder);
        }
        // A value lost with its holder is wanted now: rebuilt before the
        // answer.
        drop(self.location(ctx, id, from));
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

    /// Sends a done object's value (or error, or where it is held) to
    /// `to`.
    pub(crate) fn send_value(&self, ctx: &impl NodeCtx, to: NodeId, cell: &ObjectCell) {
        let object = wire::wire_id(cell.id());
        if cell.result().is_none() {
            if let Some((holder, len, contained, shared)) = self.location(ctx, cell.id(), to) {
                let refs = contained
                    .iter()
                    .map(|r| self.refs.ship(ctx, to, r))
                    .collect();
                let header = OwlMsg::ValueHeader {
                    object,
                    len,
                    holder: holder.0,
                    refs,
                    shared,
                };
                return ctx.send(to, header);
            }
        }
        let msg = match cell.result() {
            None => {
                // Lost with its holder and now being rebuilt: answered once
                // it is done.
                if !cell.is_done() {
                    if let Some(cell) = self.refs.export_cell(cell.id()) {
                        ctx.when_ready(&cell, to);
                    }
                }
                return;
            }
            Some(Err(e)) => OwlMsg::Value {
                object,
                outcome: Err(wire::wire_error(e)),
            },
            Some(Ok(stored)) if stored.bytes().len() <= self.chunk => OwlMsg::Value {
                object,
                outcome: Ok(self.ship_value(ctx, to, stored)),
            },
            Some(Ok(stored)) => {
                // Readers take turns over the copies of a replicated put.
                let holder = self.serving_copy(ctx, cell.id()).unwrap_or(self.me);
                OwlMsg::ValueHeader {
                    object,
                    len: stored.bytes().len() as u64,
                    holder: holder.0,
                    refs: stored
                        .contained()
                        .iter()
                        .map(|r| self.refs.ship(ctx, to, r))
                        .collect(),
                    shared: (holder == self.me).then(|| ctx.share(stored)).flatten(),
                }
            }
        };
        ctx.send(to, msg);
        if ctx.is_dead(to) {
            // It died since it asked, and what was lent to it with the
            // value may have come after its death was handled.
            self.refs.node_gone(ctx, to);
        }
    }

    pub(super) fn on_value(
        &self,
        ctx: &impl NodeCtx,
        from: NodeId,
        id: ObjectId,
        outcome: Result<WireValue, WireError>,
    ) {
        let outcome = self.receive_outcome(ctx, from, id, outcome);
        if from != id.node {
            // Only an owner answers with values: this is a holder saying
            // it cannot serve a pull (it no longer holds the value).
            drop(outcome);
            return self.holder_refused(ctx, from, id);
        }
        // An answer to a pull (the owner lost the value) ends the pull.
        let pull = self.pulls.lock().remove(&id);
        drop(pull);
        self.pulled(ctx, from, id, outcome);
    }

    /// `holder`, which a header sent us to, cannot serve `id`: the owner
    /// rebuilds the value (for its own) or is asked again (a proxy).
    fn holder_refused(&self, ctx: &impl NodeCtx, holder: NodeId, id: ObjectId) {
        if id.node == self.me {
            // (It takes this node's pull from `holder` itself, to know a
            // reader here waits.)
            return self.holder_lost(ctx, id, holder);
        }
        let pull = {
            let mut pulls = self.pulls.lock();
            match pulls.get(&id) {
                Some(p) if p.from == holder => pulls.remove(&id),
                _ => None,
            }
        };
        if let Some(p) = pull.filter(|p| p.purpose == Purpose::Copy) {
            return self.copy_made(ctx, id, holder, None, p.readers);
        }
        if self.refs.proxy(id).is_some_and(|c| !c.is_ready()) && !ctx.is_dead(id.node) {
            let msg = OwlMsg::Fetch {
                object: wire::wire_id(id),
                lost: Some(holder.0),
            };
            ctx.send(id.node, msg);
        }
    }

    pub(super) fn on_value_header(
        &self,
        ctx: &impl NodeCtx,
        from: NodeId,
        id: ObjectId,
        at: At,
        refs: Vec<WireId>,
    ) {
        let contained = self.resolve_all(ctx, &refs, from);
        let Some(proxy) = self.refs.proxy(id) else {
            // Nobody here wants it any more (the handle group ended while
            // the owner waited for the value): the owner may free it at
            // any moment and stop answering, so do not start a pull.
            drop(contained);
            return;
        };
        if at.holder == self.me || self.held.lock().contains_key(&id) {
            // Made or copied here for its owner: read this node's copy.
            let held = self.held.lock().get(&id).cloned();
            return match held.as_ref().and_then(|c| c.result()) {
                Some(Ok(stored)) => {
                    proxy.complete(Ok(stored.same_bytes(contained)));
                }
                _ => {
                    drop(contained);
                    self.holder_refused(ctx, self.me, id);
                }
            };
        }
        if ctx.is_dead(at.holder) {
            drop(contained);
            return self.holder_refused(ctx, at.holder, id);
        }
        self.start_pull(ctx, id, at, contained, Purpose::Read);
    }

    /// Starts bringing `len` bytes of `id`'s value from `from` into this
    /// node's arena: one copy from its arena file on the same host, else
    /// chunks, several in flight. The value completes what it is for when
    /// it is all here (`pulled`).
    pub(super) fn start_pull(
        &self,
        ctx: &impl NodeCtx,
        id: ObjectId,
        at: At,
        contained: Vec<RawRef>,
        purpose: Purpose,
    ) {
        let At {
            len,
            holder: from,
            shared,
        } = at;
        let alloc = || ctx.arena().alloc(len as usize);
        let block = match alloc().or_else(|e| {
            if self.drop_cached(ctx) > 0 {
                alloc()
            } else {
                Err(e)
            }
        }) {
            Ok(b) => b,
            Err(e) if purpose == Purpose::Copy => {
                tracing::warn!(object = %id, error = %e, "no room for a copy the owner asked for");
                return self.copy_made(ctx, id, from, None, None);
            }
            Err(e) => {
                let err = store_error(id, self.me, format!("pulling {len} bytes: {e}"));
                return self.pulled(ctx, from, id, Err(err));
            }
        };
        // Same host: one copy straight from the holder's arena file, taken
        // once the holder says it still held the value (`copied`).
        let dir = ctx
            .arena()
            .path()
            .parent()
            .unwrap_or(std::path::Path::new("/"));
        // (A copy for the owner is for another host's sake: never one.)
        let local = shared.filter(|_| purpose == Purpose::Read).filter(|sb| {
            sb.host == owl_store::host_id()
                && sb.host != 0
                && owl_store::is_peer_arena(dir, std::path::Path::new(&sb.path))
        });
        {
            let mut pulls = self.pulls.lock();
            if let Some(p) = pulls.get_mut(&id) {
                // A copy for the owner is on its way here: the proxy reads it.
                if p.purpose == Purpose::Copy && purpose == Purpose::Read && p.readers.is_none() {
                    p.readers = Some(contained);
                }
                return;
            }
            let mut pull = Pull {
                from,
                purpose,
                copy: 0,
                readers: None,
                block: Some(block),
                copied: None,
                contained,
                len,
                requested: 0,
                received: 0,
                outstanding: BTreeSet::new(),
            };
            match local {
                Some(sb) => {
                    // Registered like a pull in chunks, so that the
                    // holder's death and the reader's leaving find it.
                    pull.copy = self.copies.fetch_add(1, Ordering::Relaxed) + 1;
                    pull.requested = len;
                    let block = pull.block.take().expect("made above");
                    let copy = pull.copy;
                    pulls.insert(id, pull);
                    drop(pulls);
                    ctx.copy_same_host(id, from, sb, block, copy);
                }
                None if len == 0 => {
                    // Nothing to bring (an empty value, or refs only).
                    drop(pulls);
                    let block = pull.block.take().expect("made above").freeze();
                    return self.pull_done(ctx, id, pull, block);
                }
                None => {
                    for _ in 0..WINDOW {
                        self.request_chunk(ctx, id, &mut pull);
                    }
                    pulls.insert(id, pull);
                }
            }
        }
        // `from` may have died since it was chosen, and its death been
        // handled before this pull stood.
        self.recheck_gone(ctx, from);
    }

    /// A same-host copy (`NodeCtx::copy_same_host`) from `from` finished.
    pub(crate) fn copied(
        &self,
        ctx: &impl NodeCtx,
        from: NodeId,
        id: ObjectId,
        copy: u64,
        outcome: Result<Block, String>,
    ) {
        let mut pulls = self.pulls.lock();
        let Some(pull) = pulls.get_mut(&id).filter(|p| p.copy == copy) else {
            // Given up meanwhile: whoever gave it up answered its readers.
            return;
        };
        match outcome {
            Ok(block) => {
                // Does the holder still hold it? An empty chunk at the end
                // says so (`on_chunk`); a refusal sends us elsewhere.
                pull.copied = Some(block);
                pull.outstanding.insert(pull.len);
                let confirm = OwlMsg::Pull {
                    object: wire::wire_id(id),
                    offset: pull.len,
                    len: 0,
                };
                drop(pulls);
                ctx.send(from, confirm);
            }
            Err(e) => {
                // The holder's copy cannot be read (it may have died, its
                // death not yet seen here): as if it had refused.
                drop(pulls);
                tracing::debug!(object = %id, %from, error = %e, "same-host copy failed");
                self.holder_refused(ctx, from, id);
            }
        }
    }

    /// A pull's value is all here: it completes what it was for.
    fn pull_done(&self, ctx: &impl NodeCtx, id: ObjectId, mut pull: Pull, block: Block) {
        let stored = Stored::from_block(block, std::mem::take(&mut pull.contained));
        match pull.purpose {
            Purpose::Read => self.pulled(ctx, pull.from, id, Ok(stored)),
            Purpose::Copy => {
                let readers = pull.readers.take();
                self.copy_made(ctx, id, pull.from, Some(stored), readers)
            }
        }
    }

    /// A value brought from `from` is here (or could not be): an object
    /// owned here is a task's result its executor held (which may now drop
    /// its copy); any other is this node's proxy of another node's object.
    fn pulled(&self, ctx: &impl NodeCtx, from: NodeId, id: ObjectId, outcome: Outcome) {
        if id.node == self.me {
            self.located_arrived(ctx, from, id, outcome);
        } else if let Some(cell) = self.refs.proxy(id) {
            // Brought from a holder other than the owner: this node is a
            // location too (the block is shared with the reader's value).
            let copy = match &outcome {
                Ok(stored) if from != id.node => Some(stored.same_bytes(Vec::new())),
                _ => None,
            };
            cell.complete(outcome);
            if let Some(copy) = copy {
                self.reader_holds(ctx, id, copy);
            }
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
        pull.outstanding.insert(pull.requested);
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
        // An object owned here whose ref went out (or whose value is being
        // copied, `put_with`), or a task's result held here for its owner.
        let data = self
            .refs
            .export_cell(id)
            .or_else(|| self.held.lock().get(&id).cloned())
            .or_else(|| self.located_cell(id))
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

    pub(super) fn on_chunk(
        &self,
        ctx: &impl NodeCtx,
        from: NodeId,
        id: ObjectId,
        offset: u64,
        data: Vec<u8>,
    ) {
        let mut pull = {
            let mut pulls = self.pulls.lock();
            let Some(pull) = pulls.get_mut(&id) else {
                return;
            };
            let expected = (pull.len.saturating_sub(offset)).min(self.chunk as u64);
            if from != pull.from
                || data.len() as u64 != expected
                || !pull.outstanding.remove(&offset)
            {
                tracing::debug!(object = %id, %from, offset, "chunk not asked for (an earlier pull's) dropped");
                return;
            }
            // (With a same-host copy's bytes, this is the holder's word
            // that it held the value after they were read: done.)
            if pull.copied.is_none() {
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
                if pull.received < pull.len {
                    return;
                }
            }
            pulls.remove(&id).expect("found above")
        };
        let block = match pull.copied.take() {
            Some(block) => block,
            None => pull
                .block
                .take()
                .expect("block present until done")
                .freeze(),
        };
        self.pull_done(ctx, id, pull, block);
    }

    /// This node's handle group of `cell`'s object ended: for a proxy, its
    /// registrations go back to the owner, and a pull of its value in
    /// progress stops (the owner may free the object and stop answering;
    /// a later proxy fetches again).
    pub(crate) fn group_ended(&self, ctx: &impl NodeCtx, cell: &Arc<ObjectCell>) {
        let id = cell.id();
        if id.node != self.me {
            let pull = {
                let mut pulls = self.pulls.lock();
                match pulls.get(&id) {
                    Some(p) if p.purpose == Purpose::Read => pulls.remove(&id),
                    _ => None,
                }
            };
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

    pub(super) fn fail_pulls_from(&self, ctx: &impl NodeCtx, dead: NodeId) {
        let failed: Vec<ObjectId> = {
            let mut pulls = self.pulls.lock();
            // Copies kept for a dead owner have nobody to serve.
            pulls.retain(|id, p| !(p.purpose == Purpose::Copy && id.node == dead));
            let mut ids: Vec<ObjectId> = pulls
                .iter()
                .filter(|(_, p)| p.from == dead)
                .map(|(id, _)| *id)
                .collect();
            ids.sort_unstable();
            ids
        };
        for id in failed {
            let pull = self.pulls.lock().remove(&id);
            if let Some(p) = pull.filter(|p| p.purpose == Purpose::Copy) {
                self.copy_made(ctx, id, dead, None, p.readers);
                continue;
            }
            // A task's result pulled from its dead holder: another copy
            // serves, or it is rebuilt (this pull stood only after the
            // holder's other copies were handled, or it was handled then).
            if id.node == self.me {
                self.holder_lost(ctx, id, dead);
                continue;
            }
            if id.node != dead {
                // Pulled from a holder that is not the owner: ask the
                // owner again, which rebuilds the value.
                self.holder_refused(ctx, dead, id);
            } else if let Some(cell) = self.refs.proxy(id) {
                cell.complete(Err(super::refs::owner_died(id)));
            }
        }
    }
}
