//! handshake: one `Handshake` endpoint (either role) fed a peer's bytes.
//!
//! Input: a 9-byte header (see `owl_fuzz::HS_HEADER`: role, plaintext,
//! open-cluster head, expected peer, ids, chunk seed, one byte to corrupt,
//! the peer's differences), then data. Without `REAL_PEER` the data is
//! everything the peer sends. With it, a real peer endpoint answers (with the
//! same or a different secret, version or plaintext setting), its bytes are
//! corrupted as the header says and the data follows them, as frames that
//! arrive right behind the handshake do.
//!
//! Checks: `feed` never panics and never loops; it only finishes with a peer
//! that proved the secret: raw bytes never do (an HMAC cannot be guessed), a
//! real peer does exactly when its settings are compatible and no byte of its
//! Hello or proof was changed. A finished session's decoder (already fed the
//! bytes after the handshake) then drains without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use owl_fuzz::{chunks, config, header, hs_flags as f, peer_flags as p, HS_HEADER};
use owl_transport::proto::{Handshake, HandshakeConfig, Role, PROTOCOL_VERSION, UNASSIGNED};

/// Hello (43 bytes) and proof (32): what a peer sends before frames.
const HANDSHAKE_BYTES: usize = 43 + 32;
/// The secret of the endpoint when the input is all the peer's bytes.
const RAW_SECRET: [u8; 32] = *b"fuzz: never written to any seed.";

fuzz_target!(|data: &[u8]| {
    let mut data = data;
    let [flags, me, nodes, peer, expect, seed, pos, xor, pflags] = header::<HS_HEADER>(&mut data);
    let me = u32::from(me % 8);
    let nodes = u32::from(nodes % 8);
    let peer = if peer == 255 {
        UNASSIGNED
    } else {
        u32::from(peer % 8)
    };
    let expect = (flags & f::EXPECT != 0).then_some(u32::from(expect % 8));
    let plaintext = flags & f::PLAINTEXT != 0;
    let accept_unassigned = flags & f::ACCEPT_UNASSIGNED != 0;
    let (role, peer_role) = if flags & f::RESPONDER != 0 {
        (Role::Responder, Role::Initiator)
    } else {
        (Role::Initiator, Role::Responder)
    };
    let real = flags & f::REAL_PEER != 0;
    let mut cfg = config(me, nodes, plaintext, accept_unassigned);
    if !real {
        // A secret that no seed or generator knows: raw bytes finishing the
        // handshake would mean a forged or bypassed proof.
        cfg.secret = RAW_SECRET;
    }
    let mut hs = Handshake::new(cfg, role, expect, [3; 32]);
    let ours = hs.take_output();

    let mut peer_hs = None;
    let mut stream = Vec::new();
    if real {
        let mut pcfg = HandshakeConfig {
            plaintext: plaintext ^ (pflags & p::OTHER_PLAINTEXT != 0),
            ..config(peer, 8, plaintext, false)
        };
        if pflags & p::OTHER_VERSION != 0 {
            pcfg.version = PROTOCOL_VERSION.wrapping_add(1);
        }
        if pflags & p::OTHER_SECRET != 0 {
            pcfg.secret[0] ^= 1;
        }
        let mut other = Handshake::new(pcfg, peer_role, None, [4; 32]);
        // The peer's Hello, then (if our Hello satisfies it) its proof.
        let _ = other.feed(&ours);
        stream = other.take_output();
        peer_hs = Some(other);
    }
    let handshake_len = stream.len();
    stream.extend_from_slice(data);
    let mut corrupted_handshake = false;
    if xor != 0 && !stream.is_empty() {
        let at = usize::from(pos) % stream.len();
        stream[at] ^= xor;
        corrupted_handshake = at < handshake_len;
    }

    let mut reads = chunks(&stream, seed).into_iter();
    let mut session = None;
    for read in reads.by_ref() {
        match hs.feed(read) {
            Ok(None) => {}
            Ok(Some(s)) => {
                session = Some(s);
                break;
            }
            Err(_) => break, // the connection is closed
        }
    }

    let target_accepts = peer_hs.is_some()
        && pflags & (p::OTHER_PLAINTEXT | p::OTHER_VERSION) == 0
        && expect.is_none_or(|e| e == peer)
        && (peer < nodes || (peer == UNASSIGNED && accept_unassigned))
        && peer != me;
    let should_finish = target_accepts
        && handshake_len == HANDSHAKE_BYTES
        && pflags & p::OTHER_SECRET == 0
        && !corrupted_handshake;
    assert_eq!(
        session.is_some(),
        should_finish,
        "handshake outcome disagrees with the peer's settings and bytes"
    );

    if let Some(mut s) = session {
        assert_eq!(s.peer, peer);
        // Our proof lets the honest peer finish too.
        if let Some(mut other) = peer_hs {
            assert!(matches!(other.feed(&hs.take_output()), Ok(Some(_))));
        }
        // Bytes that followed the handshake are already in the decoder.
        loop {
            match s.decoder.next_batch() {
                Ok(Some(_)) => continue,
                Err(_) => break,
                Ok(None) => match reads.next() {
                    Some(read) => s.decoder.feed(read),
                    None => break,
                },
            }
        }
    }
});
