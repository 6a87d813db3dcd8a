//! Writes the seed corpus under `fuzz/corpus/<target>/` from valid frames,
//! handshakes, batches and values made by owl's own code, so the fuzzers
//! start from inputs that pass the first checks. Deterministic: rerunning
//! it rewrites the same files.
//!
//! ```sh
//! cd fuzz && cargo run --example gen_corpus
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use owl::__private::{store, Arena};
use owl::rkyv::util::AlignedVec;
use owl::RefRecord;
use owl_fuzz::{
    frame_flags as ff, hs_flags as hf, peer_flags as pf, records, sample_msgs, session_pair,
    ParticleSeed,
};
use owl_transport::proto::msg::encode_batch;
use owl_transport::proto::{FrameEncoder, Handshake, Msg, Role, DEFAULT_MAX_FRAME, UNASSIGNED};

fn batch(msgs: &[Msg]) -> Vec<u8> {
    let mut out = AlignedVec::<16>::new();
    encode_batch(&msgs.to_vec(), &mut out).expect("encode");
    out.to_vec()
}

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let dir = dir.join(target);
    fs::create_dir_all(&dir).expect("corpus dir");
    fs::write(dir.join(name), bytes).expect("write seed");
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn main() {
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for target in ["frame_decoder", "handshake", "msg_decode", "value_access"] {
        let _ = fs::remove_dir_all(corpus.join(target));
    }
    let msgs = sample_msgs();
    let all = batch(&msgs);
    let small: Vec<Vec<u8>> = msgs
        .iter()
        .map(|m| batch(std::slice::from_ref(m)))
        .collect();

    // msg_decode: the empty batch, each kind alone, all of them together.
    write(&corpus, "msg_decode", "empty", &batch(&[]));
    write(&corpus, "msg_decode", "all", &all);
    for (i, b) in small.iter().enumerate() {
        write(&corpus, "msg_decode", &format!("one-{i:02}"), b);
    }

    // frame_decoder, raw mode: a real plaintext stream of three frames, read
    // whole and in small pieces.
    let mut enc = FrameEncoder::plaintext(DEFAULT_MAX_FRAME);
    let mut stream = Vec::new();
    for m in [&msgs[..3], &msgs[3..10], &msgs[10..]] {
        enc.encode(&m.to_vec(), &mut stream).expect("frame");
    }
    write(
        &corpus,
        "frame_decoder",
        "raw",
        &cat(&[&[0, 0, 0, 0, 0], &stream]),
    );
    write(
        &corpus,
        "frame_decoder",
        "raw-split",
        &cat(&[&[0, 7, 0, 0, 0], &stream]),
    );
    // Framed mode: payloads the target seals or frames itself.
    let payloads = records(&[&small[0], &small[5], &small[7], &all]);
    for (name, flags) in [
        ("framed", ff::FRAMED),
        ("framed-sealed", ff::FRAMED | ff::SEALED),
        ("framed-sealed-dup", ff::FRAMED | ff::SEALED | ff::DUPLICATE),
        ("framed-small-max", ff::FRAMED | ff::SMALL_MAX),
    ] {
        write(
            &corpus,
            "frame_decoder",
            name,
            &cat(&[&[flags, 3, 0, 0, 0], &payloads]),
        );
    }
    // A sealed stream as it comes off the wire (raw mode, sealed decoder).
    let (mut a, _b) = session_pair(true, DEFAULT_MAX_FRAME);
    let mut sealed = Vec::new();
    a.encoder.encode(&msgs, &mut sealed).expect("sealed frame");
    write(
        &corpus,
        "frame_decoder",
        "raw-sealed",
        &cat(&[&[ff::SEALED, 0, 0, 0, 0], &sealed]),
    );

    // handshake: header is flags, me, nodes, peer, expect, seed, pos, xor,
    // peer flags (see owl_fuzz::HS_HEADER).
    let mut frames = Vec::new();
    FrameEncoder::plaintext(1 << 16)
        .encode(&msgs[..4].to_vec(), &mut frames)
        .expect("frame");
    let real = hf::REAL_PEER;
    let seeds: [(&str, [u8; 9], &[u8]); 6] = [
        ("real-init", [real, 1, 4, 2, 0, 0, 0, 0, 0], &[]),
        (
            "real-resp-expect",
            [real | hf::RESPONDER | hf::EXPECT, 2, 4, 1, 1, 5, 0, 0, 0],
            &[],
        ),
        (
            "real-plain-frames",
            [real | hf::PLAINTEXT, 0, 3, 1, 0, 9, 0, 0, 0],
            &frames,
        ),
        (
            "real-head-unassigned",
            [
                real | hf::RESPONDER | hf::ACCEPT_UNASSIGNED,
                0,
                2,
                255,
                0,
                0,
                0,
                0,
                0,
            ],
            &[],
        ),
        (
            "real-other-secret",
            [real, 1, 4, 2, 0, 0, 0, 0, pf::OTHER_SECRET],
            &[],
        ),
        (
            "real-corrupt-proof",
            [real, 1, 4, 2, 0, 0, 60, 0x10, 0],
            &[],
        ),
    ];
    for (name, header, data) in seeds {
        write(&corpus, "handshake", name, &cat(&[&header, data]));
    }
    // Raw mode: a well-formed Hello from node 2 and a proof that cannot be
    // right, so the fuzzer starts past the magic and version checks.
    let cfg = owl_fuzz::config(2, 4, false, false);
    let hello = Handshake::new(cfg, Role::Responder, None, [9; 32]).take_output();
    write(
        &corpus,
        "handshake",
        "raw-hello",
        &cat(&[&[0, 1, 4, 0, 0, 0, 0, 0, 0], &hello, &[0; 32]]),
    );
    let mut unassigned = owl_fuzz::config(0, 4, true, false);
    unassigned.me = UNASSIGNED;
    let hello = Handshake::new(unassigned, Role::Initiator, None, [9; 32]).take_output();
    let flags = hf::RESPONDER | hf::PLAINTEXT | hf::ACCEPT_UNASSIGNED;
    write(
        &corpus,
        "handshake",
        "raw-hello-unassigned",
        &cat(&[&[flags, 0, 4, 0, 0, 1, 0, 0, 0], &hello]),
    );

    // value_access: archives written by owl's own value writer.
    let dir = std::env::temp_dir().join(format!("owl-gen-corpus-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("temp dir");
    let arena = Arena::create(&dir, "arena", 1 << 20, 64).expect("arena");
    let put = |name: &str, bytes: &[u8]| write(&corpus, "value_access", name, bytes);
    let inline = 1 << 16;
    put("u64", store(&42u64, &arena, inline).expect("u64").bytes());
    put(
        "bytes",
        store(&vec![7u8; 48], &arena, inline)
            .expect("bytes")
            .bytes(),
    );
    put(
        "string",
        store(&"héllo, owl".to_string(), &arena, inline)
            .expect("string")
            .bytes(),
    );
    put(
        "vec-u64",
        store(&vec![1u64, 2, 3, 5, 8], &arena, inline)
            .expect("vec")
            .bytes(),
    );
    put(
        "option-string",
        store(&Some("x".repeat(40)), &arena, inline)
            .expect("option")
            .bytes(),
    );
    put(
        "tuple",
        store(&(9u32, vec!["a".to_string(), "bc".into()]), &arena, inline)
            .expect("tuple")
            .bytes(),
    );
    let rec = |slot| RefRecord {
        node: 1,
        shard: 0,
        index: 17,
        gen: 3,
        slot,
    };
    put(
        "objectref",
        store(&rec(0), &arena, inline).expect("ref").bytes(),
    );
    let particle = ParticleSeed {
        id: 12,
        pos: [0.5, -1.0, 3.25],
        tags: vec!["hot".into(), "boundary".into()],
        parent: Some(rec(0)),
        parts: vec![rec(1), rec(2)],
    };
    put(
        "particle",
        store(&particle, &arena, inline).expect("particle").bytes(),
    );
    drop(arena);
    let _ = fs::remove_dir_all(&dir);
    println!("wrote {}", corpus.display());
}
