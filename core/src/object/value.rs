//! Values: what may be stored as an object, and how it is stored.
//!
//! Every object is an rkyv archive. Archives up to `inline_max` bytes live in
//! the object's cell (those up to [`SMALL`] bytes without any allocation);
//! larger ones are written straight into the node's arena. A value is
//! serialized once into a thread-local scratch buffer; if it outgrows the
//! inline limit the writer only counts, and a second pass writes it into an
//! arena block of exactly the counted size, so large values are never copied
//! twice.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use owl_store::{Arena, Block, BlockMut};
use rkyv::api::high::{HighDeserializer, HighSerializer, HighValidator};
use rkyv::rancor::{self, Source};
use rkyv::ser::allocator::ArenaHandle;
use rkyv::ser::{Positional, Writer};
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};

use crate::error::PutError;
use crate::object::objref::RawRef;

/// Archives up to this many bytes are kept without an allocation.
pub const SMALL: usize = 32;

/// A type that can be an object: archived with rkyv, sendable between shards.
///
/// Implemented for every type that derives rkyv's `Archive`, `Serialize` and
/// `Deserialize` (and for std types rkyv supports: integers, `String`,
/// `Vec<T>`, tuples, `Option`, ...). `ObjectRef<T>` is a `Value` too, so refs
/// can be stored inside objects.
pub trait Value:
    Sized
    + Archive<
        Archived: Deserialize<Self, HighDeserializer<rancor::Error>>
                      + for<'a> rkyv::bytecheck::CheckBytes<HighValidator<'a, rancor::Error>>,
    > + for<'a> Serialize<HighSerializer<OwlWriter, ArenaHandle<'a>, rancor::Error>>
    + Send
    + 'static
{
}

impl<T> Value for T where
    T: Archive<
            Archived: Deserialize<T, HighDeserializer<rancor::Error>>
                          + for<'a> rkyv::bytecheck::CheckBytes<HighValidator<'a, rancor::Error>>,
        > + for<'a> Serialize<HighSerializer<OwlWriter, ArenaHandle<'a>, rancor::Error>>
        + Send
        + 'static
{
}

#[repr(C, align(16))]
#[derive(Clone, Copy)]
struct SmallBuf([u8; SMALL]);

enum Repr {
    Small { buf: SmallBuf, len: u8 },
    Heap(AlignedVec<16>),
    Arena(Block),
}

/// A stored value: archive bytes plus the refs the value contains.
///
/// The contained refs are live handles: while this value exists, every object
/// it refers to stays alive (the paper's "contained-in" count), and a reader
/// that deserializes a ref out of it clones the handle.
pub struct Stored {
    repr: Repr,
    contained: Box<[RawRef]>,
    /// False for bytes that came from another node until they pass rkyv's
    /// validation for the type they are read as (once: see `check`).
    checked: AtomicBool,
}

impl std::fmt::Debug for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.repr {
            Repr::Small { .. } => "small",
            Repr::Heap(_) => "inline",
            Repr::Arena(_) => "arena",
        };
        f.debug_struct("Stored")
            .field("kind", &kind)
            .field("len", &self.bytes().len())
            .field("contained", &self.contained.len())
            .finish()
    }
}

impl Stored {
    /// The archive bytes, aligned to at least 16 bytes.
    pub fn bytes(&self) -> &[u8] {
        match &self.repr {
            Repr::Small { buf, len } => &buf.0[..*len as usize],
            Repr::Heap(v) => v.as_slice(),
            Repr::Arena(b) => b.as_slice(),
        }
    }

    /// Whether the bytes live in the node's arena.
    pub fn in_arena(&self) -> bool {
        matches!(self.repr, Repr::Arena(_))
    }

    /// The offset of the bytes in the node's arena file, for arena values
    /// a same-host peer may read there: the block then never spills
    /// (`None` if it has: the peer pulls it over the network instead).
    pub(crate) fn arena_offset(&self) -> Option<u64> {
        match &self.repr {
            Repr::Arena(b) => b.share_offset().map(|o| o as u64),
            _ => None,
        }
    }

    pub(crate) fn contained(&self) -> &[RawRef] {
        &self.contained
    }

    /// Validates bytes received from another node as an archive of `T`,
    /// once; local values were written by owl's serializer and pass at once.
    /// Every typed read (`get`, task arguments, `deserialize`) calls this
    /// before trusting the bytes.
    pub(crate) fn check<T: Value>(&self) -> Result<(), String> {
        if self.checked.load(Ordering::Acquire) {
            return Ok(());
        }
        rkyv::access::<T::Archived, rancor::Error>(self.bytes()).map_err(|e| {
            format!(
                "bytes received from another node are not a valid {}: {e}",
                std::any::type_name::<T>()
            )
        })?;
        self.checked.store(true, Ordering::Release);
        Ok(())
    }

    /// A value received from another node: `bytes` is an archive written by
    /// owl on the sender, `contained` its refs, already resolved here.
    pub(crate) fn from_bytes(
        bytes: &[u8],
        contained: Vec<RawRef>,
        arena: &Arc<Arena>,
        inline_max: usize,
    ) -> Result<Stored, owl_store::ArenaError> {
        let repr = if bytes.len() <= SMALL {
            let mut small = SmallBuf([0; SMALL]);
            small.0[..bytes.len()].copy_from_slice(bytes);
            Repr::Small {
                buf: small,
                len: bytes.len() as u8,
            }
        } else if bytes.len() <= inline_max {
            let mut heap = AlignedVec::with_capacity(bytes.len());
            heap.extend_from_slice(bytes);
            Repr::Heap(heap)
        } else {
            let mut block = arena.alloc(bytes.len())?;
            block.as_mut_slice().copy_from_slice(bytes);
            Repr::Arena(block.freeze())
        };
        Ok(Stored {
            repr,
            contained: contained.into_boxed_slice(),
            checked: AtomicBool::new(false),
        })
    }

    /// An empty value holding `contained`: the deterministic cluster's
    /// objects, where only the refs inside matter.
    pub(crate) fn refs_only(contained: Vec<RawRef>) -> Stored {
        Stored {
            repr: Repr::Small {
                buf: SmallBuf([0; SMALL]),
                len: 0,
            },
            contained: contained.into_boxed_slice(),
            checked: AtomicBool::new(true),
        }
    }

    /// The same bytes with other contained refs (the same objects' handles
    /// made elsewhere on this node): an arena value shares its block, a
    /// small one is copied.
    pub(crate) fn same_bytes(&self, contained: Vec<RawRef>) -> Stored {
        let repr = match &self.repr {
            Repr::Small { buf, len } => Repr::Small {
                buf: SmallBuf(buf.0),
                len: *len,
            },
            Repr::Heap(v) => {
                let mut heap = AlignedVec::with_capacity(v.len());
                heap.extend_from_slice(v.as_slice());
                Repr::Heap(heap)
            }
            Repr::Arena(b) => Repr::Arena(b.clone()),
        };
        Stored {
            repr,
            contained: contained.into_boxed_slice(),
            checked: AtomicBool::new(self.checked.load(Ordering::Acquire)),
        }
    }

    /// A value pulled in chunks straight into an arena block.
    pub(crate) fn from_block(block: Block, contained: Vec<RawRef>) -> Stored {
        Stored {
            repr: Repr::Arena(block),
            contained: contained.into_boxed_slice(),
            checked: AtomicBool::new(false),
        }
    }
}

enum Mode {
    Inline { buf: AlignedVec<16>, limit: usize },
    Count { spare: AlignedVec<16> },
    Block(BlockMut),
}

/// The rkyv writer owl serializes every value with (see the module docs).
pub struct OwlWriter {
    mode: Mode,
    pos: usize,
}

impl std::fmt::Debug for OwlWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OwlWriter(pos {})", self.pos)
    }
}

impl Positional for OwlWriter {
    fn pos(&self) -> usize {
        self.pos
    }
}

#[derive(Debug, thiserror::Error)]
#[error("value serialized to more bytes ({needed}) on its second pass than on its first ({counted}); its Serialize impl is not deterministic")]
struct SizeChanged {
    needed: usize,
    counted: usize,
}

impl<E: Source> Writer<E> for OwlWriter {
    fn write(&mut self, bytes: &[u8]) -> Result<(), E> {
        let end = self.pos + bytes.len();
        match &mut self.mode {
            Mode::Inline { buf, limit } => {
                if end > *limit {
                    let spare = std::mem::take(buf);
                    self.mode = Mode::Count { spare };
                } else {
                    buf.extend_from_slice(bytes);
                }
            }
            Mode::Count { .. } => {}
            Mode::Block(block) => {
                let dst = block.as_mut_slice();
                if end > dst.len() {
                    return Err(E::new(SizeChanged {
                        needed: end,
                        counted: dst.len(),
                    }));
                }
                dst[self.pos..end].copy_from_slice(bytes);
            }
        }
        self.pos = end;
        Ok(())
    }
}

thread_local! {
    static SCRATCH: Cell<AlignedVec<16>> = Cell::new(AlignedVec::new());
    // Refs met while serializing the current value (see `objref`).
    static SER_REFS: RefCell<Option<Vec<RawRef>>> = const { RefCell::new(None) };
}

/// Records a ref met during serialization; returns its slot in the value's
/// contained list, or `None` when no owl serialization is in progress.
pub(crate) fn note_contained(r: &RawRef) -> Option<u32> {
    SER_REFS.with(|refs| {
        let mut refs = refs.borrow_mut();
        let refs = refs.as_mut()?;
        refs.push(r.clone());
        Some((refs.len() - 1) as u32)
    })
}

fn serialize_pass<T: Value>(
    value: &T,
    writer: OwlWriter,
) -> Result<(OwlWriter, Vec<RawRef>), PutError> {
    SER_REFS.with(|r| *r.borrow_mut() = Some(Vec::new()));
    let out = rkyv::api::high::to_bytes_in::<_, rancor::Error>(value, writer);
    let refs = SER_REFS.with(|r| r.borrow_mut().take()).unwrap_or_default();
    match out {
        Ok(w) => Ok((w, refs)),
        Err(e) => Err(PutError::Serialize(e.to_string())),
    }
}

/// Archives `value`: inline when at most `inline_max` bytes, else in `arena`.
pub fn store<T: Value>(
    value: &T,
    arena: &Arc<Arena>,
    inline_max: usize,
) -> Result<Stored, PutError> {
    let mut scratch = SCRATCH.with(Cell::take);
    scratch.clear();
    let writer = OwlWriter {
        mode: Mode::Inline {
            buf: scratch,
            limit: inline_max,
        },
        pos: 0,
    };
    let (writer, refs) = serialize_pass(value, writer)?;
    let counted = writer.pos;
    match writer.mode {
        Mode::Inline { buf, .. } => {
            let repr = if buf.len() <= SMALL {
                let mut small = SmallBuf([0; SMALL]);
                small.0[..buf.len()].copy_from_slice(&buf);
                Repr::Small {
                    buf: small,
                    len: buf.len() as u8,
                }
            } else {
                let mut heap = AlignedVec::with_capacity(buf.len());
                heap.extend_from_slice(&buf);
                Repr::Heap(heap)
            };
            SCRATCH.with(|s| s.set(buf));
            Ok(Stored {
                repr,
                contained: refs.into_boxed_slice(),
                checked: AtomicBool::new(true),
            })
        }
        Mode::Count { spare } => {
            SCRATCH.with(|s| s.set(spare));
            drop(refs);
            let block = arena.alloc(counted)?;
            let (writer, refs) = serialize_pass(
                value,
                OwlWriter {
                    mode: Mode::Block(block),
                    pos: 0,
                },
            )?;
            let Mode::Block(block) = writer.mode else {
                unreachable!("block mode never switches")
            };
            if writer.pos != counted {
                return Err(PutError::Serialize(
                    SizeChanged {
                        needed: writer.pos,
                        counted,
                    }
                    .to_string(),
                ));
            }
            Ok(Stored {
                repr: Repr::Arena(block.freeze()),
                contained: refs.into_boxed_slice(),
                checked: AtomicBool::new(true),
            })
        }
        Mode::Block(_) => unreachable!("first pass starts inline"),
    }
}

thread_local! {
    // The contained list of the value being deserialized on this thread.
    static DESER_REFS: Cell<(*const RawRef, usize)> = const { Cell::new((std::ptr::null(), 0)) };
}

/// Runs `f` with `refs` as the contained list that `ObjectRef`'s Deserialize
/// impl resolves slots against.
pub(crate) fn with_contained<R>(refs: &[RawRef], f: impl FnOnce() -> R) -> R {
    struct Restore((*const RawRef, usize));
    impl Drop for Restore {
        fn drop(&mut self) {
            DESER_REFS.with(|c| c.set(self.0));
        }
    }
    let prev = DESER_REFS.with(|c| c.replace((refs.as_ptr(), refs.len())));
    let _restore = Restore(prev);
    f()
}

/// The ref at `slot` of the value being deserialized, if any.
// The thread-local pointer avoids threading the refs through rkyv's
// deserializer context; it is the one raw read in this module.
#[allow(unsafe_code)]
pub(crate) fn contained_at(slot: u32) -> Option<RawRef> {
    let (ptr, len) = DESER_REFS.with(Cell::get);
    if ptr.is_null() || slot as usize >= len {
        return None;
    }
    // SAFETY: `with_contained` set (ptr, len) from a live `&[RawRef]` whose
    // borrow outlasts the closure this call runs in, and restores the
    // previous value (null outside any closure) when the closure ends.
    let refs = unsafe { std::slice::from_raw_parts(ptr, len) };
    Some(refs[slot as usize].clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arena() -> (tempfile::TempDir, Arc<Arena>) {
        let dir = tempfile::tempdir().unwrap();
        let arena = Arena::create(dir.path(), "v", 1 << 20, 64).unwrap();
        (dir, arena)
    }

    #[test]
    fn bytes_from_a_peer_are_validated_once_for_their_type() {
        let (_dir, arena) = arena();
        let good = store(&vec![1u64, 2, 3], &arena, 1024).unwrap();
        let received = Stored::from_bytes(good.bytes(), Vec::new(), &arena, 1024).unwrap();
        assert!(!received.checked.load(Ordering::Relaxed));
        received.check::<Vec<u64>>().unwrap();
        assert!(received.checked.load(Ordering::Relaxed));
        // A relative pointer that leads outside the buffer.
        let mut bad = good.bytes().to_vec();
        let n = bad.len();
        bad[n - 8..n - 4].copy_from_slice(&0x7fff_0000i32.to_le_bytes());
        let received = Stored::from_bytes(&bad, Vec::new(), &arena, 1024).unwrap();
        let err = received.check::<Vec<u64>>().unwrap_err();
        assert!(err.contains("not a valid"), "{err}");
        assert!(!received.checked.load(Ordering::Relaxed));
    }
}
