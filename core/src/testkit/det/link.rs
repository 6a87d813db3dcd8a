//! One direction of a deterministic link, run as the transport runs a
//! connection: what the sender queued and has not written yet, the frames
//! on the wire, made by the transport's real `FrameEncoder`, and the
//! receiver's real `FrameDecoder`, whose sequence check is the only thing
//! between a duplicated frame and the owner layer.
//!
//! Where duplicates come from: owl never sends a message twice above the
//! frame layer (a peer declared dead never reconnects, ids are never
//! reused, nothing is retransmitted). Below it, a frame can arrive twice
//! (a replay on the path, a driver that re-reads a ring slot); a sealed
//! frame's nonce is its sequence number, so a replay authenticates and
//! only the decoder's check (`seq < expected`: dropped) stops it. The
//! cluster injects such copies here and asserts that every frame the
//! decoder accepts is accepted once, in order: the owner layer never
//! applies a message twice.

use std::collections::{BTreeMap, VecDeque};

use owl_proto::WireId;
use owl_transport::proto::{FrameDecoder, FrameEncoder, Msg, DEFAULT_MAX_FRAME};

/// What crosses a link.
#[derive(Debug)]
pub(super) enum Packet {
    /// A message of the transport (`NodeDead` from the head) or of the
    /// owner layer (`Msg::Owl`).
    Msg(Msg),
    /// A value carrying refs, sent by the program (as a task argument or a
    /// returned value would carry them). No wire message stands for it, so
    /// it travels as a frame with an empty batch, its refs kept beside the
    /// link under that frame's sequence number: the decoder still decides
    /// whether the frame arrived.
    Refs(Vec<WireId>),
}

/// Where a frame's sequence number sits: after the 4-byte length.
const SEQ: std::ops::Range<usize> = 4..12;

fn seq_of(frame: &[u8]) -> u64 {
    u64::from_le_bytes(frame[SEQ].try_into().expect("a frame header"))
}

pub(super) struct Link {
    /// Queued by the sender, not written yet (the transport's per-peer
    /// queue): written as frames at the end of the event that queued it,
    /// as a writer drains its queue once per loop turn.
    pending: Vec<Packet>,
    enc: FrameEncoder,
    dec: FrameDecoder,
    /// Frames written, oldest first.
    pub(super) wire: VecDeque<Vec<u8>>,
    /// The refs of each `Packet::Refs` frame, by sequence number.
    refs: BTreeMap<u64, Vec<WireId>>,
    /// The sequence number of the next frame the receiver may accept.
    accepted: u64,
}

impl Link {
    pub(super) fn new() -> Link {
        Link {
            pending: Vec::new(),
            enc: FrameEncoder::plaintext(DEFAULT_MAX_FRAME),
            dec: FrameDecoder::plaintext(DEFAULT_MAX_FRAME),
            wire: VecDeque::new(),
            refs: BTreeMap::new(),
            accepted: 0,
        }
    }

    pub(super) fn push(&mut self, p: Packet) {
        self.pending.push(p);
    }

    /// The sender's queue is dropped unwritten (it died, or declared the
    /// receiver dead: `mark_dead` clears the queue).
    pub(super) fn drop_pending(&mut self) {
        self.pending.clear();
    }

    /// Everything queued and in flight is gone (the receiver died, or
    /// closed its end).
    pub(super) fn clear(&mut self) {
        self.pending.clear();
        self.wire.clear();
        self.refs.clear();
    }

    /// The sender died: of the frames written, only the first `keep` left
    /// its host. Nothing follows them, so no gap shows.
    pub(super) fn lose_tail(&mut self, keep: usize) {
        self.pending.clear();
        self.wire.truncate(keep);
    }

    /// Writes what is queued: each run of messages as one batch (split
    /// only past the frame limit), each refs value as a frame of its own.
    pub(super) fn flush(&mut self) {
        let mut batch = Vec::new();
        for p in std::mem::take(&mut self.pending) {
            match p {
                Packet::Msg(m) => batch.push(m),
                Packet::Refs(ids) => {
                    self.write(std::mem::take(&mut batch));
                    self.refs.insert(self.enc.next_seq(), ids);
                    let mut frame = Vec::new();
                    self.enc
                        .encode(&Vec::new(), &mut frame)
                        .expect("an empty batch encodes");
                    self.wire.push_back(frame);
                }
            }
        }
        self.write(batch);
    }

    fn write(&mut self, batch: Vec<Msg>) {
        if batch.is_empty() {
            return;
        }
        let mut frame = Vec::new();
        let dropped = self.enc.encode_split(batch, &mut frame);
        assert!(dropped.is_empty(), "the cluster's messages fit a frame");
        // One write may hold several frames (a split batch): each goes on
        // the wire on its own, so that a copy of one can be injected.
        let mut rest = &frame[..];
        while !rest.is_empty() {
            let len = u32::from_le_bytes(rest[..4].try_into().expect("a length")) as usize;
            self.wire.push_back(rest[..4 + len].to_vec());
            rest = &rest[4 + len..];
        }
    }

    /// A copy of the frame at `i` (0: the next to arrive) arrives again
    /// after the frame now at `j` (`j >= i`), or at the end.
    pub(super) fn duplicate(&mut self, i: usize, j: usize) {
        let copy = self.wire[i].clone();
        self.wire.insert((j + 1).min(self.wire.len()), copy);
    }

    /// The receiver reads the next frame. `Ok(None)`: the decoder dropped
    /// it as a duplicate; `Err`: the decoder accepted a frame twice or out
    /// of order, or rejected one (no fault here loses frames).
    pub(super) fn receive(&mut self) -> Result<Option<Vec<Packet>>, String> {
        let frame = self.wire.pop_front().expect("chosen link has a frame");
        let seq = seq_of(&frame);
        self.dec.feed(&frame);
        match self.dec.next_batch() {
            Ok(Some(msgs)) => {
                if seq != self.accepted {
                    return Err(format!(
                        "the decoder accepted frame {seq} while {} was next: the owner would apply it twice or out of order",
                        self.accepted
                    ));
                }
                self.accepted += 1;
                if let Some(ids) = self.refs.remove(&seq) {
                    debug_assert!(msgs.is_empty());
                    return Ok(Some(vec![Packet::Refs(ids)]));
                }
                Ok(Some(msgs.into_iter().map(Packet::Msg).collect()))
            }
            Ok(None) if seq < self.accepted => Ok(None),
            Ok(None) => Err(format!(
                "frame {seq} (next {}) was held back by the decoder",
                self.accepted
            )),
            Err(e) => Err(format!("frame {seq} rejected: {e}")),
        }
    }

    /// The refs of every refs value queued or on the wire.
    pub(super) fn refs_in_flight(&self) -> impl Iterator<Item = &WireId> {
        let queued = self.pending.iter().filter_map(|p| match p {
            Packet::Refs(ids) => Some(ids),
            Packet::Msg(_) => None,
        });
        queued.chain(self.refs.values()).flatten()
    }

    /// Duplicate frames the receiver's decoder dropped.
    pub(super) fn duplicates(&self) -> u64 {
        self.dec.duplicates()
    }
}
