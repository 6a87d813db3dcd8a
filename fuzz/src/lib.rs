//! Helpers shared by owl's fuzz targets (`fuzz_targets/`) and the seed
//! generator (`examples/gen_corpus.rs`).
//!
//! Everything here drives owl's real protocol code from `owl-transport` and
//! `owl`; the only things defined here are the input layout the targets
//! share (a small header, then the data) and representative user value
//! types for `value_access`.

use owl::rkyv::{Archive, Deserialize, Serialize};
use owl::{ObjectRef, RefRecord};
use owl_transport::proto::{
    Handshake, HandshakeConfig, Member, Msg, OwlMsg, Role, Session, SharedBlock, WireArg,
    WireError, WireId, WireValue, PROTOCOL_VERSION,
};

/// The cluster secret every target's handshakes use. The fuzzer cannot
/// forge an HMAC, so a fixed secret known to both sides is what lets the
/// targets reach the code behind authentication.
pub const SECRET: [u8; 32] = [0x5a; 32];

/// Reads the targets' input header: takes up to `n` bytes off the front of
/// `data` (zero-padded when the input is shorter), so short inputs still
/// mean something.
pub fn header<const N: usize>(data: &mut &[u8]) -> [u8; N] {
    let mut h = [0u8; N];
    let take = data.len().min(N);
    h[..take].copy_from_slice(&data[..take]);
    *data = &data[take..];
    h
}

/// Splits `data` into chunks whose sizes come from `seed`, the way reads
/// from a socket split a stream: the same input always splits the same
/// way, and a seed of 0 delivers everything in one piece.
pub fn chunks(data: &[u8], seed: u8) -> Vec<&[u8]> {
    if seed == 0 {
        return vec![data];
    }
    // xorshift32: cheap, deterministic, and enough to vary chunk sizes from
    // 1 byte (every boundary exercised) up to 64.
    let mut x = u32::from(seed) | 0x100;
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let n = ((x % 64) as usize + 1).min(rest.len());
        let (a, b) = rest.split_at(n);
        out.push(a);
        rest = b;
    }
    out
}

/// Flag bits of `frame_decoder`'s first header byte.
pub mod frame_flags {
    /// Decode with a sealed (AES-GCM) session instead of plaintext.
    pub const SEALED: u8 = 1;
    /// The data is length-prefixed payloads to wrap in valid frames, not a
    /// raw stream.
    pub const FRAMED: u8 = 2;
    /// A 256-byte frame limit instead of the default, so `TooLarge` is near.
    pub const SMALL_MAX: u8 = 4;
    /// Append a copy of the first frame at the end (a duplicate).
    pub const DUPLICATE: u8 = 8;
}

/// `frame_decoder`'s header: flags, chunk seed, corruption offset (u16 LE)
/// and the byte XORed in there (0: no corruption).
pub const FRAME_HEADER: usize = 5;

/// Payloads as `frame_decoder`'s framed mode reads them: each is a u16 LE
/// length and that many bytes.
pub fn records(payloads: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in payloads {
        out.extend_from_slice(&(p.len() as u16).to_le_bytes());
        out.extend_from_slice(p);
    }
    out
}

/// The inverse of [`records`]; a truncated last record keeps what is there.
pub fn parse_records(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while data.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([data[0], data[1]])).min(data.len() - 2);
        out.push(&data[2..2 + len]);
        data = &data[2 + len..];
    }
    out
}

/// Flag bits of `handshake`'s first header byte.
pub mod hs_flags {
    /// The endpoint under test is the responder (else the initiator).
    pub const RESPONDER: u8 = 1;
    pub const PLAINTEXT: u8 = 2;
    pub const ACCEPT_UNASSIGNED: u8 = 4;
    /// The endpoint expects a particular peer id (header byte 3).
    pub const EXPECT: u8 = 8;
    /// A real peer endpoint produces the bytes (then corrupted as the header
    /// says, then followed by the data); else the data are the peer's bytes.
    pub const REAL_PEER: u8 = 16;
}

/// Flag bits of the real peer's settings (`handshake`'s last header byte):
/// each makes it differ from the endpoint under test.
pub mod peer_flags {
    pub const OTHER_PLAINTEXT: u8 = 1;
    pub const OTHER_VERSION: u8 = 2;
    pub const OTHER_SECRET: u8 = 4;
}

/// `handshake`'s header: flags, own id, node count, peer id (255: the
/// unassigned id), expected id, chunk seed, corruption offset, XOR byte,
/// peer flags.
pub const HS_HEADER: usize = 9;

/// A handshake configuration with the fuzz-chosen knobs and the shared
/// secret. `max_frame` is small so length checks trigger on short inputs.
pub fn config(me: u32, nodes: u32, plaintext: bool, accept_unassigned: bool) -> HandshakeConfig {
    HandshakeConfig {
        me,
        nodes,
        secret: SECRET,
        plaintext,
        max_frame: 1 << 16,
        version: PROTOCOL_VERSION,
        accept_unassigned,
    }
}

/// Runs a real handshake between node 0 (initiator) and node 1 (responder)
/// and returns their sessions: the only public way to get a sealed
/// `FrameEncoder`/`FrameDecoder` pair (their keyed constructors are
/// crate-private, and need not be widened for fuzzing).
pub fn session_pair(sealed: bool, max_frame: usize) -> (Session, Session) {
    let mk = |me| HandshakeConfig {
        max_frame,
        ..config(me, 2, !sealed, false)
    };
    let mut a = Handshake::new(mk(0), Role::Initiator, Some(1), [1; 32]);
    let mut b = Handshake::new(mk(1), Role::Responder, None, [2; 32]);
    let (mut sa, mut sb) = (None, None);
    // One round trip: Hellos, then proofs.
    for _ in 0..2 {
        let (to_b, to_a) = (a.take_output(), b.take_output());
        if sb.is_none() {
            sb = b.feed(&to_b).expect("honest responder");
        }
        if sa.is_none() {
            sa = a.feed(&to_a).expect("honest initiator");
        }
    }
    let (sa, sb) = (sa.expect("initiator done"), sb.expect("responder done"));
    // The codecs are opaque; their Debug output says whether they seal.
    assert!(format!("{:?}", sb.decoder).contains(&format!("sealed: {sealed}")));
    (sa, sb)
}

fn id(i: u32) -> WireId {
    WireId {
        node: i % 3,
        shard: (i % 2) as u16,
        index: i,
        gen: i * 7 + 1,
    }
}

fn error(depth: u32) -> WireError {
    WireError {
        history: Vec::new(),
        kind: if depth == 0 { 1 } else { 4 },
        message: if depth == 0 {
            "boom".into()
        } else {
            String::new()
        },
        task: format!("task{depth}"),
        node: depth,
        shard: 1,
        attempts: 2,
        cause: (depth > 0).then(|| Box::new(error(depth - 1))),
    }
}

/// One of every message kind, with small but non-trivial contents: the
/// seeds the decoding targets start from.
pub fn sample_msgs() -> Vec<Msg> {
    let value = WireValue {
        bytes: (0u8..40).collect(),
        refs: vec![id(5), id(6)],
    };
    vec![
        Msg::Join {
            node: 1,
            addr: "127.0.0.1:6390".into(),
            shards: 2,
            info: Some(Box::new(OwlMsg::NodeInfo {
                labels: vec!["big".into()],
                fns: vec![1, 2],
                host: 3,
            })),
        },
        Msg::Members {
            members: vec![
                Member {
                    node: 0,
                    addr: "10.0.0.1:1".into(),
                    info: None,
                },
                Member {
                    node: 1,
                    addr: "10.0.0.2:1".into(),
                    info: Some(Box::new(OwlMsg::NodeInfo {
                        labels: vec![],
                        fns: vec![4],
                        host: 5,
                    })),
                },
            ],
        },
        Msg::Assigned { node: 9 },
        Msg::Heartbeat {
            seq: 3,
            queued: 10,
            idle_shards: 1,
            room: vec![0b1011_0110, 1],
        },
        Msg::NodeDead { node: 2 },
        Msg::NodeLeft { node: 3 },
        Msg::Owl(OwlMsg::Submit {
            object: id(1),
            func: 0x1234_5678_9abc,
            name: Some("pi".into()),
            priority: -3,
            max_retries: 3,
            retry_on_error: true,
            args: vec![
                WireArg::Value(value.clone()),
                WireArg::Ref(id(2)),
                WireArg::Gather(vec![id(3), id(4)]),
            ],
        }),
        Msg::Owl(OwlMsg::TaskDone {
            object: id(1),
            outcome: Ok(value.clone()),
        }),
        Msg::Owl(OwlMsg::TaskDone {
            object: id(2),
            outcome: Err(error(2)),
        }),
        Msg::Owl(OwlMsg::AddBorrower {
            object: id(3),
            borrower: 2,
            count: 1,
            lender: 1,
        }),
        Msg::Owl(OwlMsg::Registered {
            object: id(3),
            lender: 1,
            count: 1,
        }),
        Msg::Owl(OwlMsg::Lent {
            object: id(3),
            borrower: 2,
            count: 1,
        }),
        Msg::Owl(OwlMsg::RemoveBorrower {
            object: id(3),
            borrower: 2,
            count: 1,
        }),
        Msg::Owl(OwlMsg::Fetch {
            object: id(4),
            lost: None,
        }),
        Msg::Owl(OwlMsg::Value {
            object: id(4),
            outcome: Ok(value),
        }),
        Msg::Owl(OwlMsg::ValueHeader {
            object: id(5),
            len: 1 << 22,
            holder: 3,
            refs: vec![id(7)],
            shared: Some(SharedBlock {
                host: 0xfeed,
                path: "/dev/shm/owl-0".into(),
                offset: 4096,
            }),
        }),
        Msg::Owl(OwlMsg::Pull {
            object: id(5),
            offset: 0,
            len: 1 << 20,
        }),
        Msg::Owl(OwlMsg::Chunk {
            object: id(5),
            offset: 0,
            data: vec![0xab; 64],
        }),
        Msg::Owl(OwlMsg::Cancel { object: id(6) }),
        Msg::Owl(OwlMsg::Replicate {
            object: id(6),
            holder: 2,
            len: 1 << 20,
        }),
        Msg::Owl(OwlMsg::Replicated {
            object: id(6),
            ok: true,
            shared: Some(SharedBlock {
                host: 9,
                path: "/tmp/owl-6.arena".into(),
                offset: 4096,
            }),
        }),
        Msg::Shutdown,
        Msg::Owl(OwlMsg::NodeInfo {
            labels: vec!["gpu".into()],
            fns: vec![1, 2, 3],
            host: 0x00c0_ffee,
        }),
    ]
}

/// A user value holding object refs, the way owl programs nest them: the
/// shape `value_access` validates received bytes as.
#[derive(Archive, Serialize, Deserialize, Debug)]
#[rkyv(crate = owl::rkyv)]
pub struct Particle {
    pub id: u64,
    pub pos: [f64; 3],
    pub tags: Vec<String>,
    pub parent: Option<ObjectRef<u64>>,
    pub parts: Vec<ObjectRef<Vec<u8>>>,
}

/// `Particle` with each `ObjectRef` replaced by the record it archives to,
/// so the seed generator can write a `Particle` archive outside a running
/// node (serializing a real `ObjectRef` needs one). Same archived layout.
#[derive(Archive, Serialize, Deserialize, Debug)]
#[rkyv(crate = owl::rkyv)]
pub struct ParticleSeed {
    pub id: u64,
    pub pos: [f64; 3],
    pub tags: Vec<String>,
    pub parent: Option<RefRecord>,
    pub parts: Vec<RefRecord>,
}
