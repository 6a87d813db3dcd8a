//! owl's own protocol: the messages of the ownership protocol (tasks
//! placed on other nodes, borrower registration, values fetched whole or
//! pulled in chunks, cancellation, what a node offers) and the wire types
//! they carry. The owner layer in `owl` speaks them; `owl-transport`
//! carries them inside its frames (`Msg::Owl`) without looking inside,
//! archived with its own messages in one rkyv batch so a frame is encoded
//! and validated once.
//!
//! `WireValue::bytes` is itself an rkyv archive of a user value, opaque
//! here. After deserialization it lives in a plain `Vec<u8>` whose start
//! is *not* guaranteed to be 16-byte aligned: the receiver copies it into
//! 16-byte aligned memory (an `rkyv::util::AlignedVec<16>` or its arena
//! slot) before `rkyv::access` on it. The object store does that copy
//! anyway when it places the value in its arena, so it is not done twice.
#![forbid(unsafe_code)]

use rkyv::{Archive, Deserialize, Serialize};

/// An object id on the wire: the owner's node and shard, a slot index and a
/// generation (so a reused slot never aliases an old object).
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WireId {
    pub node: u32,
    pub shard: u16,
    pub index: u32,
    pub gen: u32,
}

/// A value: an rkyv archive (see the module doc for alignment) plus the ids of
/// the object refs it contains, so the receiver can register as a borrower.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct WireValue {
    pub bytes: Vec<u8>,
    pub refs: Vec<WireId>,
}

/// Where a large value lies in its holder's arena file, for a receiver on
/// the same host: it copies the bytes straight from the file (one copy, no
/// socket) when `host` matches its own host id and the file is an arena in
/// its store directory; otherwise it pulls chunks.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SharedBlock {
    /// The holder's host id (a hash of the kernel's boot id).
    pub host: u64,
    /// The holder's arena file.
    pub path: String,
    /// The value's offset in that file.
    pub offset: u64,
}

/// A task argument.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum WireArg {
    Value(WireValue),
    Ref(WireId),
    Gather(Vec<WireId>),
}

/// A task error as stored in an object; `cause` chains errors of arguments.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[rkyv(serialize_bounds(
    __S: rkyv::ser::Writer + rkyv::ser::Allocator,
    __S::Error: rkyv::rancor::Source,
))]
#[rkyv(deserialize_bounds(__D::Error: rkyv::rancor::Source))]
#[rkyv(bytecheck(bounds(__C: rkyv::validation::ArchiveContext, __C::Error: rkyv::rancor::Source)))]
pub struct WireError {
    pub kind: u8,
    pub message: String,
    pub task: String,
    pub node: u32,
    pub shard: u16,
    pub attempts: u32,
    /// The attempts before the last one, oldest first.
    pub history: Vec<WireAttempt>,
    #[rkyv(omit_bounds)]
    pub cause: Option<Box<WireError>>,
}

/// An attempt of a task that did not succeed: where, and why.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct WireAttempt {
    pub node: u32,
    pub cause: String,
}

/// A message of the ownership protocol.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum OwlMsg {
    /// To the executor: run `func` for the owner of `object`.
    Submit {
        object: WireId,
        func: u64,
        name: Option<String>,
        priority: i32,
        max_retries: u32,
        retry_on_error: bool,
        args: Vec<WireArg>,
    },
    /// To the owner: the task of `object` finished.
    TaskDone {
        object: WireId,
        outcome: Result<WireValue, WireError>,
    },
    /// To the owner: the task of `object` finished with a value too large
    /// for one message; it stays in the executor's arena until the owner
    /// has pulled it (`Pull`, `Chunk`) and says `Release`.
    TaskHeld {
        object: WireId,
        len: u64,
        refs: Vec<WireId>,
        /// Set when the executor's arena may be read directly on its host.
        shared: Option<SharedBlock>,
    },
    /// To an executor holding a result for its owner: the owner has it (or
    /// no longer wants it); drop the copy.
    Release { object: WireId },
    /// To the owner, from a node that received refs to `object` from
    /// `lender` (neither of them the owner): register `borrower` (the
    /// sender) `count` times. The lender keeps its own hold until the
    /// borrower passes on the owner's `Registered` as `Lent`.
    AddBorrower {
        object: WireId,
        borrower: u32,
        count: u32,
        lender: u32,
    },
    /// From the owner to a borrower: its `AddBorrower` for `count` refs
    /// `lender` lent it is counted.
    Registered {
        object: WireId,
        lender: u32,
        count: u32,
    },
    /// From a borrower to a lender: the owner counts `borrower` for
    /// `count` of the refs the lender handed it (or the borrower knows
    /// the owner dead and never will); the lender may drop what it kept.
    Lent {
        object: WireId,
        borrower: u32,
        count: u32,
    },
    /// To the owner: `borrower`'s handle group ended; `count`
    /// registrations go.
    RemoveBorrower {
        object: WireId,
        borrower: u32,
        count: u32,
    },
    /// "Send me this object's value when it is ready." `lost` names a
    /// node a header sent the reader to that could not serve the value (it
    /// died, or no longer holds it): the owner stops counting it as a
    /// holder (rebuilding the value if it was the last).
    Fetch { object: WireId, lost: Option<u32> },
    /// A small value, whole.
    Value {
        object: WireId,
        outcome: Result<WireValue, WireError>,
    },
    /// A large value: the receiver pulls it in chunks of at most
    /// [`MAX_CHUNK`] from `holder` (the sender, or the node that made the
    /// value and still holds it).
    ValueHeader {
        object: WireId,
        len: u64,
        holder: u32,
        refs: Vec<WireId>,
        /// Set when the holder's arena may be read directly on its host.
        shared: Option<SharedBlock>,
    },
    /// "Send me `len` bytes of the value from `offset`."
    Pull {
        object: WireId,
        offset: u64,
        len: u32,
    },
    Chunk {
        object: WireId,
        offset: u64,
        data: Vec<u8>,
    },
    /// To a node chosen to keep a copy of a task's result held by
    /// `holder`: pull the `len` bytes from there and keep them until
    /// `Release`.
    Replicate {
        object: WireId,
        holder: u32,
        len: u64,
    },
    /// To the owner: the sender now holds a copy of `object` (`ok`), or
    /// could not make one; `shared` is where readers on its host find it.
    Replicated {
        object: WireId,
        ok: bool,
        shared: Option<SharedBlock>,
    },
    /// To the executor: the owner cancelled the task of `object`.
    Cancel { object: WireId },
    /// What the sender offers, sent once to each peer when it connects:
    /// its labels (placement constraints) and the ids of the remote
    /// functions compiled into it (nodes of an open cluster may run
    /// different programs; tasks only go where their function is).
    /// `host` is its host's id (as in `SharedBlock`): owners send readers
    /// to a copy on their own host first.
    NodeInfo {
        labels: Vec<String>,
        fns: Vec<u64>,
        host: u64,
    },
}

impl OwlMsg {
    /// Bytes of object data this message carries (chunks and values): what
    /// a writer paces bulk traffic by.
    pub fn bulk_len(&self) -> usize {
        match self {
            OwlMsg::Chunk { data, .. } => data.len(),
            OwlMsg::Value { outcome: Ok(v), .. } => v.bytes.len(),
            _ => 0,
        }
    }
}

/// The largest `Chunk::data` a sender should put in one message (4 MiB), so
/// chunks interleave with control messages well under the frame limit.
pub const MAX_CHUNK: usize = 4 << 20;
