//! Two endpoints in memory: every typed error, no panics on any input.

use proptest::prelude::*;

use super::*;

const SECRET: [u8; 32] = [7; 32];

fn cfg(me: u32, secret: [u8; 32], plaintext: bool) -> HandshakeConfig {
    HandshakeConfig {
        me,
        nodes: 4,
        secret,
        plaintext,
        max_frame: 1 << 20,
        version: PROTOCOL_VERSION,
        accept_unassigned: false,
    }
}

type Outcome = (
    Result<Session, HandshakeError>,
    Result<Session, HandshakeError>,
);

/// Runs two handshakes against each other until both finish or fail.
fn run(a: HandshakeConfig, b: HandshakeConfig) -> Outcome {
    let mut ha = Handshake::new(a, Role::Initiator, Some(b.me), [1; 32]);
    let mut hb = Handshake::new(b, Role::Responder, None, [2; 32]);
    let (mut ra, mut rb) = (None, None);
    for _ in 0..4 {
        let to_b = ha.take_output();
        let to_a = hb.take_output();
        if rb.is_none() && !to_b.is_empty() {
            match hb.feed(&to_b) {
                Ok(Some(s)) => rb = Some(Ok(s)),
                Ok(None) => {}
                Err(e) => rb = Some(Err(e)),
            }
        }
        if ra.is_none() && !to_a.is_empty() {
            match ha.feed(&to_a) {
                Ok(Some(s)) => ra = Some(Ok(s)),
                Ok(None) => {}
                Err(e) => ra = Some(Err(e)),
            }
        }
    }
    (
        ra.unwrap_or_else(|| Err(ha.eof())),
        rb.unwrap_or_else(|| Err(hb.eof())),
    )
}

fn pair(plaintext: bool) -> (Session, Session) {
    let (a, b) = run(cfg(1, SECRET, plaintext), cfg(2, SECRET, plaintext));
    (a.expect("a"), b.expect("b"))
}

fn id(i: u32) -> WireId {
    WireId {
        node: i,
        shard: 3,
        index: i * 10,
        gen: 2,
    }
}

fn err() -> WireError {
    WireError {
        history: Vec::new(),
        kind: 2,
        message: "boom".into(),
        task: "f".into(),
        node: 1,
        shard: 0,
        attempts: 3,
        cause: Some(Box::new(WireError {
            history: Vec::new(),
            kind: 1,
            message: "inner".into(),
            ..Default::default()
        })),
    }
}

fn all_msgs() -> Vec<Msg> {
    let v = WireValue {
        bytes: vec![1, 2, 3, 4],
        refs: vec![id(9)],
    };
    vec![
        Msg::Join {
            node: 2,
            addr: "127.0.0.1:4000".into(),
            shards: 4,
            info: Some(Box::new(OwlMsg::NodeInfo {
                labels: vec!["gpu".into()],
                fns: vec![7, 8],
                host: 11,
            })),
        },
        Msg::Members {
            members: vec![
                Member {
                    node: 0,
                    addr: "a".into(),
                    info: None,
                },
                Member {
                    node: 1,
                    addr: "b".into(),
                    info: Some(Box::new(OwlMsg::NodeInfo {
                        labels: vec![],
                        fns: vec![3],
                        host: 2,
                    })),
                },
            ],
        },
        Msg::Heartbeat {
            seq: 9,
            queued: 1,
            idle_shards: 2,
            room: vec![0xff, 0x03],
        },
        Msg::NodeDead { node: 3 },
        Msg::NodeLeft { node: 4 },
        Msg::Owl(OwlMsg::Submit {
            object: id(1),
            func: 0xdead_beef,
            name: Some("task".into()),
            priority: -1,
            max_retries: 3,
            retry_on_error: true,
            args: vec![
                WireArg::Value(v.clone()),
                WireArg::Ref(id(2)),
                WireArg::Gather(vec![id(3), id(4)]),
            ],
        }),
        Msg::Owl(OwlMsg::TaskDone {
            object: id(1),
            outcome: Ok(v.clone()),
        }),
        Msg::Owl(OwlMsg::TaskDone {
            object: id(1),
            outcome: Err(err()),
        }),
        Msg::Owl(OwlMsg::AddBorrower {
            object: id(1),
            borrower: 2,
            count: 1,
            lender: 5,
        }),
        Msg::Owl(OwlMsg::Registered {
            object: id(1),
            lender: 5,
            count: 1,
        }),
        Msg::Owl(OwlMsg::Lent {
            object: id(1),
            borrower: 2,
            count: 1,
        }),
        Msg::Owl(OwlMsg::RemoveBorrower {
            object: id(1),
            borrower: 2,
            count: 1,
        }),
        Msg::Owl(OwlMsg::Fetch {
            object: id(5),
            lost: None,
        }),
        Msg::Owl(OwlMsg::Value {
            object: id(5),
            outcome: Ok(v),
        }),
        Msg::Owl(OwlMsg::Value {
            object: id(5),
            outcome: Err(err()),
        }),
        Msg::Owl(OwlMsg::ValueHeader {
            object: id(6),
            len: 1 << 30,
            holder: 3,
            refs: vec![id(7)],
            shared: Some(SharedBlock {
                host: 9,
                path: "/dev/shm/owl-1-1.arena".into(),
                offset: 1 << 20,
            }),
        }),
        Msg::Owl(OwlMsg::NodeInfo {
            labels: vec!["gpu".into(), "bigmem".into()],
            fns: vec![0x1234_5678_9abc_def0, 7],
            host: 42,
        }),
        Msg::Assigned { node: 17 },
        Msg::Owl(OwlMsg::Pull {
            object: id(6),
            offset: 4096,
            len: 4096,
        }),
        Msg::Owl(OwlMsg::Chunk {
            object: id(6),
            offset: 4096,
            data: vec![9; 4096],
        }),
        Msg::Owl(OwlMsg::Cancel { object: id(8) }),
        Msg::Owl(OwlMsg::Replicate {
            object: id(8),
            holder: 1,
            len: 1 << 21,
        }),
        Msg::Owl(OwlMsg::Replicated {
            object: id(8),
            ok: false,
            shared: None,
        }),
        Msg::Shutdown,
        Msg::ShmSetup {
            step: ShmStep::Cluster { id: [7; 16] },
        },
        Msg::ShmSetup {
            step: ShmStep::Ready,
        },
        Msg::ShmSetup {
            step: ShmStep::Mapped,
        },
    ]
}

fn frame(enc: &mut FrameEncoder, msgs: Vec<Msg>) -> Vec<u8> {
    let mut out = Vec::new();
    enc.encode(&msgs, &mut out).expect("encode");
    out
}

#[test]
fn every_message_round_trips_alone_and_batched() {
    for plaintext in [false, true] {
        let (mut a, mut b) = pair(plaintext);
        assert_eq!((a.peer, b.peer), (2, 1));
        for m in all_msgs() {
            let f = frame(&mut a.encoder, vec![m.clone()]);
            b.decoder.feed(&f);
            assert_eq!(b.decoder.next_batch().unwrap(), Some(vec![m]));
        }
        // One frame carries the whole batch; the reverse direction works too.
        let f = frame(&mut b.encoder, all_msgs());
        a.decoder.feed(&f);
        assert_eq!(a.decoder.next_batch().unwrap(), Some(all_msgs()));
        assert_eq!(a.decoder.next_batch().unwrap(), None);
    }
}

#[test]
fn frames_split_anywhere_reassemble() {
    let (mut a, mut b) = pair(false);
    let mut bytes = frame(&mut a.encoder, all_msgs());
    bytes.extend(frame(&mut a.encoder, vec![Msg::Shutdown]));
    let mut got = Vec::new();
    for chunk in bytes.chunks(7) {
        b.decoder.feed(chunk);
        while let Some(batch) = b.decoder.next_batch().unwrap() {
            got.push(batch);
        }
    }
    assert_eq!(got, vec![all_msgs(), vec![Msg::Shutdown]]);
    assert_eq!(b.decoder.finish(), Ok(()));
}

#[test]
fn wrong_secret_is_refused_on_both_sides() {
    let (a, b) = run(cfg(1, SECRET, false), cfg(2, [8; 32], false));
    assert_eq!(a.unwrap_err(), HandshakeError::BadSecret { peer: 2 });
    assert_eq!(b.unwrap_err(), HandshakeError::BadSecret { peer: 1 });
    let text = HandshakeError::BadSecret { peer: 2 }.to_string();
    assert!(text.contains("same cluster secret"), "{text}");
}

#[test]
fn version_and_plaintext_mismatch_are_typed() {
    let mut other = cfg(2, SECRET, false);
    other.version = PROTOCOL_VERSION + 1;
    let (a, b) = run(cfg(1, SECRET, false), other);
    assert_eq!(
        a.unwrap_err(),
        HandshakeError::Version {
            ours: PROTOCOL_VERSION,
            theirs: PROTOCOL_VERSION + 1
        }
    );
    assert_eq!(
        b.unwrap_err(),
        HandshakeError::Version {
            ours: PROTOCOL_VERSION + 1,
            theirs: PROTOCOL_VERSION
        }
    );
    let (a, b) = run(cfg(1, SECRET, true), cfg(2, SECRET, false));
    assert_eq!(
        a.unwrap_err(),
        HandshakeError::PlaintextMismatch {
            ours: true,
            theirs: false
        }
    );
    assert_eq!(
        b.unwrap_err(),
        HandshakeError::PlaintextMismatch {
            ours: false,
            theirs: true
        }
    );
}

#[test]
fn wrong_identity_is_typed() {
    let mut h = Handshake::new(cfg(1, SECRET, false), Role::Initiator, Some(3), [1; 32]);
    let mut other = Handshake::new(cfg(2, SECRET, false), Role::Responder, None, [2; 32]);
    assert_eq!(
        h.feed(&other.take_output()).unwrap_err(),
        HandshakeError::UnexpectedPeer {
            expected: 3,
            got: 2
        }
    );
    let mut h = Handshake::new(cfg(1, SECRET, false), Role::Responder, None, [1; 32]);
    let mut twin = Handshake::new(cfg(1, SECRET, false), Role::Initiator, None, [2; 32]);
    assert_eq!(
        h.feed(&twin.take_output()).unwrap_err(),
        HandshakeError::SameId { node: 1 }
    );
    let mut h = Handshake::new(cfg(1, SECRET, false), Role::Responder, None, [1; 32]);
    let mut big = cfg(9, SECRET, false);
    big.nodes = 10;
    let mut far = Handshake::new(big, Role::Initiator, None, [2; 32]);
    assert_eq!(
        h.feed(&far.take_output()).unwrap_err(),
        HandshakeError::PeerOutOfRange { peer: 9, nodes: 4 }
    );
}

#[test]
fn garbage_and_truncated_handshakes() {
    let mut h = Handshake::new(cfg(1, SECRET, false), Role::Responder, None, [1; 32]);
    assert_eq!(
        h.feed(b"GET / HTTP/1.1\r\n").unwrap_err(),
        HandshakeError::BadMagic { got: *b"GET " }
    );
    let mut h = Handshake::new(cfg(1, SECRET, false), Role::Responder, None, [1; 32]);
    assert!(h.feed(b"owl").unwrap().is_none());
    assert_eq!(h.eof(), HandshakeError::Truncated { got: 3 });
}

#[test]
fn duplicate_frames_are_dropped_and_gaps_fail() {
    for plaintext in [false, true] {
        let (mut a, mut b) = pair(plaintext);
        let f0 = frame(
            &mut a.encoder,
            vec![Msg::Owl(OwlMsg::Fetch {
                object: id(0),
                lost: None,
            })],
        );
        let f1 = frame(
            &mut a.encoder,
            vec![Msg::Owl(OwlMsg::Fetch {
                object: id(1),
                lost: None,
            })],
        );
        let f2 = frame(
            &mut a.encoder,
            vec![Msg::Owl(OwlMsg::Fetch {
                object: id(2),
                lost: None,
            })],
        );
        b.decoder.feed(&f0);
        b.decoder.feed(&f0);
        b.decoder.feed(&f1);
        assert_eq!(
            b.decoder.next_batch().unwrap(),
            Some(vec![Msg::Owl(OwlMsg::Fetch {
                object: id(0),
                lost: None
            })])
        );
        assert_eq!(
            b.decoder.next_batch().unwrap(),
            Some(vec![Msg::Owl(OwlMsg::Fetch {
                object: id(1),
                lost: None
            })])
        );
        assert_eq!(b.decoder.duplicates(), 1);
        let _f3 = frame(&mut a.encoder, vec![Msg::Shutdown]);
        let f4 = frame(&mut a.encoder, vec![Msg::Shutdown]);
        b.decoder.feed(&f2);
        assert!(b.decoder.next_batch().unwrap().is_some());
        b.decoder.feed(&f4);
        assert_eq!(
            b.decoder.next_batch().unwrap_err(),
            FrameError::Gap {
                expected: 3,
                got: 4
            }
        );
    }
}

#[test]
fn tampered_ciphertext_fails_authentication() {
    let (mut a, mut b) = pair(false);
    let mut f = frame(
        &mut a.encoder,
        vec![Msg::Owl(OwlMsg::Cancel { object: id(1) })],
    );
    let last = f.len() - 20;
    f[last] ^= 1;
    b.decoder.feed(&f);
    assert_eq!(
        b.decoder.next_batch().unwrap_err(),
        FrameError::Auth { seq: 0 }
    );
    // A frame re-numbered by an attacker fails too (the header is authenticated).
    let (mut a, mut b) = pair(false);
    let _ = frame(&mut a.encoder, vec![Msg::Shutdown]);
    let mut f = frame(&mut a.encoder, vec![Msg::Shutdown]);
    f[4] = 0;
    b.decoder.feed(&f);
    assert_eq!(
        b.decoder.next_batch().unwrap_err(),
        FrameError::Auth { seq: 0 }
    );
}

#[test]
fn oversized_short_truncated_and_garbage_frames() {
    let (mut a, mut b) = pair(true);
    b.decoder.feed(&(2u32 << 20).to_le_bytes());
    assert_eq!(
        b.decoder.next_batch().unwrap_err(),
        FrameError::TooLarge {
            len: 2 << 20,
            max: 1 << 20
        }
    );
    let (_, mut b2) = pair(true);
    b2.decoder.feed(&[3, 0, 0, 0, 1, 2, 3]);
    assert_eq!(
        b2.decoder.next_batch().unwrap_err(),
        FrameError::TooShort { len: 3 }
    );
    let (_, mut b3) = pair(false);
    b3.decoder.feed(&[8, 0, 0, 0]);
    assert_eq!(
        b3.decoder.next_batch().unwrap_err(),
        FrameError::TooShort { len: 8 }
    );
    let mut out = Vec::new();
    a.encoder
        .encode_payload(b"definitely not rkyv", &mut out)
        .unwrap();
    let (_, mut b4) = (0, FrameDecoder::plaintext(1 << 20));
    b4.feed(&out);
    assert!(matches!(b4.next_batch(), Err(FrameError::Codec(_))));
    let f = frame(&mut a.encoder, vec![Msg::Shutdown]);
    let mut b5 = FrameDecoder::plaintext(1 << 20);
    b5.feed(&f[..f.len() - 1]);
    assert_eq!(b5.next_batch().unwrap(), None);
    assert_eq!(
        b5.finish(),
        Err(FrameError::Truncated {
            buffered: f.len() - 1
        })
    );
    drop(b);
}

#[test]
fn encoder_refuses_and_splits_oversized_batches() {
    let mut enc = FrameEncoder::plaintext(64 << 10);
    let chunk = |n: usize| {
        Msg::Owl(OwlMsg::Chunk {
            object: id(1),
            offset: 0,
            data: vec![1; n],
        })
    };
    let mut out = Vec::new();
    assert!(matches!(
        enc.encode(&vec![chunk(100 << 10)], &mut out),
        Err(FrameError::TooLarge { .. })
    ));
    assert!(out.is_empty());
    let dropped = enc.encode_split(
        vec![
            chunk(30 << 10),
            chunk(30 << 10),
            chunk(100 << 10),
            chunk(10),
        ],
        &mut out,
    );
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0].0, 2);
    let mut dec = FrameDecoder::plaintext(64 << 10);
    dec.feed(&out);
    let mut n = 0;
    while let Some(batch) = dec.next_batch().unwrap() {
        n += batch.len();
    }
    assert_eq!(n, 3);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn decoder_never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4096), sealed in any::<bool>()) {
        let (_, mut b) = pair(!sealed);
        b.decoder.feed(&bytes);
        for _ in 0..8 {
            if !matches!(b.decoder.next_batch(), Ok(Some(_))) { break; }
        }
        let mut plain = FrameDecoder::plaintext(1 << 20);
        let mut framed = (bytes.len() as u32 + 8).to_le_bytes().to_vec();
        framed.extend_from_slice(&0u64.to_le_bytes());
        framed.extend_from_slice(&bytes);
        plain.feed(&framed);
        let _ = plain.next_batch();
    }

    #[test]
    fn handshake_never_panics_on_random_bytes(mut bytes in proptest::collection::vec(any::<u8>(), 0..200), magic in any::<bool>()) {
        if magic && bytes.len() >= 4 { bytes[..4].copy_from_slice(b"owl\0"); }
        let mut h = Handshake::new(cfg(1, SECRET, false), Role::Responder, None, [1; 32]);
        let r = h.feed(&bytes);
        prop_assert!(!matches!(r, Ok(Some(_))), "random bytes must never authenticate");
    }

    #[test]
    fn random_values_round_trip(data in proptest::collection::vec(any::<u8>(), 0..2000), n in 1usize..20, split in 1usize..500) {
        let (mut a, mut b) = pair(false);
        let msgs: Vec<Msg> = (0..n).map(|i| Msg::Owl(OwlMsg::Value {
            object: id(i as u32),
            outcome: Ok(WireValue { bytes: data[..data.len() * i / n].to_vec(), refs: vec![id(i as u32); i % 3] }),
        })).collect();
        let f = frame(&mut a.encoder, msgs.clone());
        let mut got = None;
        for c in f.chunks(split) {
            b.decoder.feed(c);
            if let Some(batch) = b.decoder.next_batch().unwrap() { got = Some(batch); }
        }
        prop_assert_eq!(got, Some(msgs));
    }
}

/// Every message queued, batched and decoded is a `Msg`: the transport's
/// own variants (rare: membership, set-up) must not make it larger than
/// owl's, or every message pays (a `Join` carrying its `NodeInfo` inline
/// grew it from 120 to 152 bytes and QUIC round trips by about 10%).
#[test]
fn the_transport_s_own_messages_do_not_grow_every_message() {
    assert!(
        std::mem::size_of::<Msg>() <= std::mem::size_of::<OwlMsg>(),
        "Msg {} bytes, OwlMsg {}",
        std::mem::size_of::<Msg>(),
        std::mem::size_of::<OwlMsg>()
    );
}
