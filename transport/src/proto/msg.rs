//! The messages nodes exchange, and their rkyv encoding: the transport's
//! own (membership, liveness, shutdown, shm setup) and owl's, which it
//! carries without looking inside ([`Msg::Owl`], defined in `owl-proto`).
//!
//! A frame's payload is one rkyv archive of a `Vec<Msg>` (a batch). The
//! receiver validates it with bytecheck exactly once ([`decode_batch`]) and
//! deserializes it into owned messages; nothing inside the process trusts
//! bytes that did not pass through that function.

pub use owl_proto::{OwlMsg, SharedBlock, WireArg, WireError, WireId, WireValue, MAX_CHUNK};
use rkyv::{Archive, Deserialize, Serialize};

/// Every message of the protocol. One frame carries a batch of them.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Msg {
    /// To the head: "node `node` listens on `addr` and runs `shards`
    /// shards"; `info`, the runtime's description of the node (what it
    /// offers), which the head passes on in [`Member`]s.
    Join {
        node: u32,
        addr: String,
        shards: u32,
        info: Option<Box<OwlMsg>>,
    },
    /// The head's reply once every node joined: every member. In an open
    /// cluster the head also sends it to a joining node (every live
    /// member) and to every live member (the new node). Connections are
    /// opened when first needed (see `mesh::node::connect`).
    Members { members: Vec<Member> },
    /// Open clusters: the head's answer to a connection that asked for an
    /// id (handshake id [`super::handshake::UNASSIGNED`]); never reused.
    Assigned { node: u32 },
    /// Liveness plus load, sent every `MeshConfig::heartbeat` to the
    /// sender's ring watchers and the head (and from the head to every
    /// node). `room`, from the head of a cluster past the ring's size
    /// only: one bit per node (bit `i % 8` of byte `i / 8`), set when
    /// node `i` can take spilled work (see [`crate::has_room`]), so
    /// that every node knows the load of nodes that do not heartbeat it.
    Heartbeat {
        seq: u64,
        queued: u32,
        idle_shards: u32,
        room: Vec<u8>,
    },
    /// From the head: `node` is dead; late messages from it are dropped.
    NodeDead { node: u32 },
    /// From the head: `node` left cleanly. A member connected to it
    /// ignores this and waits for the node's own `Shutdown`, which follows
    /// everything it sent on that connection (the head's relay can
    /// overtake it); a member not connected to it marks it left.
    NodeLeft { node: u32 },
    /// A message of owl's ownership protocol: the transport carries it and
    /// never looks inside.
    Owl(OwlMsg),
    /// The sender is leaving cleanly: its connection closing is not a failure.
    Shutdown,
    /// One step of the shm driver's start-up, sent only over its TCP control
    /// mesh (see the `shm` module): the control mesh's handler in the driver
    /// consumes it, and the runtime never sees it.
    ShmSetup { step: ShmStep },
}

/// One member of a cluster, as the head lists it.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub node: u32,
    /// Where it listens.
    pub addr: String,
    /// What its `Join` carried, handed to the runtime as if the member had
    /// sent it: every node knows what every member offers without a
    /// connection to it.
    pub info: Option<Box<OwlMsg>>,
}

/// What a [`Msg::ShmSetup`] says. Each node creates its inbox once it has
/// the cluster id, says `Ready`, maps each peer's inbox once that peer is
/// ready and says `Mapped`; it unlinks its own once every peer mapped it.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShmStep {
    /// From the head: the random id that names every inbox file of the
    /// cluster (so clusters on one host never collide).
    Cluster { id: [u8; 16] },
    /// The sender has created its inbox.
    Ready,
    /// The sender has mapped the receiver's inbox.
    Mapped,
}

impl Msg {
    /// Bytes of object data this message carries (chunks and values): what
    /// a writer paces bulk traffic by.
    pub fn bulk_len(&self) -> usize {
        match self {
            Msg::Owl(m) => m.bulk_len(),
            _ => 0,
        }
    }
}

/// Why a payload could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("frame payload failed rkyv validation ({0}); the peer runs an incompatible build or the bytes are corrupt")]
    Invalid(String),
    #[error("rkyv serialization failed: {0}")]
    Encode(String),
    #[error("frame payload nests more than {max} levels deep (a task error with a cause chain that long?); refused, as decoding it could overflow the stack")]
    TooDeep { max: usize },
}

/// Serializes a batch into `scratch` (cleared first; reused across frames so
/// steady-state encoding allocates nothing).
// `&Vec` because rkyv serializes a sized `Vec<Msg>`, not a `[Msg]`.
#[allow(clippy::ptr_arg)]
pub fn encode_batch(
    msgs: &Vec<Msg>,
    scratch: &mut rkyv::util::AlignedVec<16>,
) -> Result<(), CodecError> {
    scratch.clear();
    rkyv::api::high::to_bytes_in::<_, rkyv::rancor::Error>(msgs, scratch)
        .map(|_| ())
        .map_err(|e| CodecError::Encode(e.to_string()))
}

/// How deeply pointers may nest in a batch (the batch's vector is one level,
/// each `WireError::cause` one more). Validation, deserialization and drop
/// all recurse once per level, so without a limit a peer's frame holding a
/// long cause chain (a few MB) overflows the receiving thread's stack and
/// aborts the whole node. Every message but a task error nests at most 4
/// deep; 512 leaves room for ~500 causes and stays well inside a 2 MiB
/// thread stack even unoptimized.
pub const MAX_DEPTH: usize = 512;

/// Validates (bytecheck, exactly once) and deserializes a batch. `aligned`
/// must hold the whole payload and nothing else. A batch nested deeper than
/// [`MAX_DEPTH`] is [`CodecError::TooDeep`].
pub fn decode_batch(aligned: &[u8]) -> Result<Vec<Msg>, CodecError> {
    use rkyv::validation::{archive::ArchiveValidator, shared::SharedValidator, Validator};
    let depth = std::num::NonZeroUsize::new(MAX_DEPTH);
    let mut validator = Validator::new(
        ArchiveValidator::with_max_depth(aligned, depth),
        SharedValidator::new(),
    );
    let archived =
        rkyv::api::access_with_context::<rkyv::Archived<Vec<Msg>>, _, rkyv::rancor::Error>(
            aligned,
            &mut validator,
        )
        .map_err(|e| {
            // rkyv reports the depth limit as a bare `None` (the trace naming
            // the limit is not in the message); nothing else in its validator
            // fails that way. tests/fuzz_regressions.rs pins this.
            let m = e.to_string();
            if m.starts_with("`Option` is `None`") {
                CodecError::TooDeep { max: MAX_DEPTH }
            } else {
                CodecError::Invalid(m)
            }
        })?;
    rkyv::deserialize::<Vec<Msg>, rkyv::rancor::Error>(archived)
        .map_err(|e| CodecError::Invalid(e.to_string()))
}
