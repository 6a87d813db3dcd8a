//! Framing: `u32 LE length | u64 LE sequence | payload [| 16-byte tag]`.
//!
//! The length counts everything after itself. The payload is one rkyv batch
//! (see [`super::msg`]); when the session is sealed it is encrypted with
//! AES-256-GCM under a per-direction key, the nonce is the sequence
//! number and the associated data is the 12-byte header, so a frame cannot be
//! moved, truncated or re-numbered without failing authentication.
//!
//! Invariants, per direction: sequence numbers start at 0 and go up by one per
//! frame. The decoder drops a frame whose number it has already passed (a
//! duplicate, counted in [`FrameDecoder::duplicates`]) and fails with
//! [`FrameError::Gap`] on a skipped number; a length over the limit fails
//! before any byte of the body is buffered. After any error the connection
//! must be closed: the decoder makes no attempt to resynchronise.

use ring::aead::{Aad, LessSafeKey, Nonce, Tag};

use super::msg::{decode_batch, encode_batch, Msg};

/// Default frame limit: 64 MiB.
pub const DEFAULT_MAX_FRAME: usize = 64 << 20;
const LEN: usize = 4;
const HEADER: usize = LEN + 8;
const TAG: usize = 16;

/// Why a frame was rejected. Each closes the connection it arrived on (and
/// only that one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes (owl sends values and arguments over 4 MiB as objects pulled in chunks, so no owl node should make one: please report it)")]
    TooLarge { len: usize, max: usize },
    #[error("frame length {len} is shorter than a frame header; the peer is not speaking the owl protocol")]
    TooShort { len: usize },
    #[error("frame {got} arrived while {expected} was expected: frames were lost; the connection is closed")]
    Gap { expected: u64, got: u64 },
    #[error("frame {seq} failed authentication (tampered or corrupt ciphertext); the connection is closed")]
    Auth { seq: u64 },
    #[error("{0}")]
    Codec(String),
    #[error("the connection ended in the middle of a frame ({buffered} bytes buffered)")]
    Truncated { buffered: usize },
}

fn nonce(seq: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&seq.to_le_bytes());
    Nonce::assume_unique_for_key(n)
}

/// Turns batches into frames, one direction of one connection.
pub struct FrameEncoder {
    key: Option<LessSafeKey>,
    seq: u64,
    max_frame: usize,
    scratch: rkyv::util::AlignedVec<16>,
}

impl std::fmt::Debug for FrameEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameEncoder")
            .field("sealed", &self.key.is_some())
            .field("seq", &self.seq)
            .field("max_frame", &self.max_frame)
            .finish()
    }
}

impl FrameEncoder {
    /// An unsealed encoder, for a trusted fabric or the simulator.
    pub fn plaintext(max_frame: usize) -> Self {
        Self::new(None, max_frame)
    }

    pub(crate) fn new(key: Option<LessSafeKey>, max_frame: usize) -> Self {
        Self {
            key,
            seq: 0,
            max_frame,
            scratch: rkyv::util::AlignedVec::new(),
        }
    }

    /// The sequence number the next frame will carry.
    pub fn next_seq(&self) -> u64 {
        self.seq
    }

    /// Appends one frame holding all of `msgs` to `out`.
    #[allow(clippy::ptr_arg)] // rkyv serializes a sized Vec<Msg>
    pub fn encode(&mut self, msgs: &Vec<Msg>, out: &mut Vec<u8>) -> Result<(), FrameError> {
        let mut scratch = std::mem::take(&mut self.scratch);
        let r = encode_batch(msgs, &mut scratch)
            .map_err(|e| FrameError::Codec(e.to_string()))
            .and_then(|()| self.encode_payload(&scratch, out));
        self.scratch = scratch;
        r
    }

    /// Appends frames holding `msgs`, splitting the batch where one frame
    /// would exceed the limit. A single message too large for any frame is
    /// dropped; the returned errors say which (by position in `msgs`).
    pub fn encode_split(&mut self, msgs: Vec<Msg>, out: &mut Vec<u8>) -> Vec<(usize, FrameError)> {
        let mut dropped = Vec::new();
        self.split_rec(msgs, 0, out, &mut dropped);
        dropped
    }

    fn split_rec(
        &mut self,
        mut msgs: Vec<Msg>,
        base: usize,
        out: &mut Vec<u8>,
        dropped: &mut Vec<(usize, FrameError)>,
    ) {
        match self.encode(&msgs, out) {
            Ok(()) => {}
            Err(e @ FrameError::TooLarge { .. }) if msgs.len() <= 1 => dropped.push((base, e)),
            Err(FrameError::TooLarge { .. }) => {
                let mid = msgs.len() / 2;
                let tail = msgs.split_off(mid);
                self.split_rec(msgs, base, out, dropped);
                self.split_rec(tail, base + mid, out, dropped);
            }
            Err(e) => dropped.push((base, e)),
        }
    }

    /// Appends one frame whose payload is `payload` as given (sealed if the
    /// session is). Used by [`Self::encode`]; public so tests and fuzzers can
    /// put arbitrary bytes in an otherwise valid frame.
    pub fn encode_payload(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
        let tag = if self.key.is_some() { TAG } else { 0 };
        let len = 8 + payload.len() + tag;
        if len > self.max_frame || len > u32::MAX as usize {
            return Err(FrameError::TooLarge {
                len,
                max: self.max_frame,
            });
        }
        let start = out.len();
        out.reserve(LEN + len);
        out.extend_from_slice(&(len as u32).to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(payload);
        if let Some(key) = &self.key {
            let (head, body) = out[start..].split_at_mut(HEADER);
            let tag: Tag = key
                .seal_in_place_separate_tag(nonce(self.seq), Aad::from(&*head), body)
                .map_err(|_| FrameError::Auth { seq: self.seq })?;
            out.extend_from_slice(tag.as_ref());
        }
        self.seq += 1;
        Ok(())
    }
}

/// Turns bytes from a connection back into batches, one direction.
pub struct FrameDecoder {
    key: Option<LessSafeKey>,
    expected: u64,
    max_frame: usize,
    buf: Vec<u8>,
    pos: usize,
    aligned: rkyv::util::AlignedVec<16>,
    duplicates: u64,
}

impl std::fmt::Debug for FrameDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameDecoder")
            .field("sealed", &self.key.is_some())
            .field("expected", &self.expected)
            .field("buffered", &(self.buf.len() - self.pos))
            .field("duplicates", &self.duplicates)
            .finish()
    }
}

impl FrameDecoder {
    /// An unsealed decoder, for a trusted fabric or the simulator.
    pub fn plaintext(max_frame: usize) -> Self {
        Self::new(None, max_frame)
    }

    pub(crate) fn new(key: Option<LessSafeKey>, max_frame: usize) -> Self {
        Self {
            key,
            expected: 0,
            max_frame,
            buf: Vec::new(),
            pos: 0,
            aligned: rkyv::util::AlignedVec::new(),
            duplicates: 0,
        }
    }

    /// Duplicate frames dropped so far.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Bytes received but not yet part of a complete frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Appends bytes read from the connection.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 0 && self.pos >= self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The connection reached end of stream: an error if a frame was cut.
    pub fn finish(&self) -> Result<(), FrameError> {
        match self.buffered() {
            0 => Ok(()),
            buffered => Err(FrameError::Truncated { buffered }),
        }
    }

    /// The next complete batch, `Ok(None)` when more bytes are needed.
    pub fn next_batch(&mut self) -> Result<Option<Vec<Msg>>, FrameError> {
        loop {
            let avail = &self.buf[self.pos..];
            if avail.len() < LEN {
                return Ok(None);
            }
            let len = u32::from_le_bytes(avail[..LEN].try_into().expect("4 bytes")) as usize;
            if len > self.max_frame {
                return Err(FrameError::TooLarge {
                    len,
                    max: self.max_frame,
                });
            }
            let tag = if self.key.is_some() { TAG } else { 0 };
            if len < 8 + tag {
                return Err(FrameError::TooShort { len });
            }
            if avail.len() < LEN + len {
                return Ok(None);
            }
            let seq = u64::from_le_bytes(avail[LEN..HEADER].try_into().expect("8 bytes"));
            let frame = self.pos..self.pos + LEN + len;
            if seq < self.expected {
                self.duplicates += 1;
                self.pos = frame.end;
                continue;
            }
            let (head, body) = self.buf[frame.clone()].split_at_mut(HEADER);
            let plain: &[u8] = match &self.key {
                Some(key) => key
                    .open_in_place(nonce(seq), Aad::from(&*head), body)
                    .map_err(|_| FrameError::Auth { seq })?,
                None => body,
            };
            if seq > self.expected {
                return Err(FrameError::Gap {
                    expected: self.expected,
                    got: seq,
                });
            }
            // rkyv needs 16-byte alignment; the receive buffer has none.
            self.aligned.clear();
            self.aligned.extend_from_slice(plain);
            let batch =
                decode_batch(&self.aligned).map_err(|e| FrameError::Codec(e.to_string()))?;
            self.expected += 1;
            self.pos = frame.end;
            return Ok(Some(batch));
        }
    }
}
