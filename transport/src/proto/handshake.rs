//! The connection handshake, as a sans-IO state machine.
//!
//! ```text
//! both sides, at once:   Hello = magic "owl\0" | version u16 | flags u8 | node u32 | nonce [32]
//! on the peer's Hello:   Auth  = HMAC-SHA256(secret, "owl-auth-v1" | role | Hello_init | Hello_resp)
//! on the peer's Auth:    verified -> session keys = HKDF-SHA256(secret; Hello_init | Hello_resp)
//! ```
//!
//! Both Hellos go out immediately, so the handshake costs one round trip.
//! Each side's proof names its role, so a proof cannot be reflected back; both
//! nonces are in every proof and in the key derivation, so a recorded
//! handshake cannot be replayed. The magic and version come first in the
//! Hello and will stay there in every future version, so a mismatch is always
//! reported as [`HandshakeError::Version`] rather than as garbage.
//!
//! Nothing here reads a clock or a random source: the caller passes the nonce
//! in and moves bytes with [`Handshake::feed`] / [`Handshake::take_output`].

use ring::{aead, hkdf, hmac};

use super::frame::{FrameDecoder, FrameEncoder};

/// The protocol version this build speaks.
/// (6: owl's ownership messages ride inside `Msg::Owl`; 7: results too
/// large for one message stay with the executor, `TaskHeld`/`Release`.)
pub const PROTOCOL_VERSION: u16 = 8;
/// The id a node joining an open cluster presents to ask the head for one.
pub const UNASSIGNED: u32 = u32::MAX;
const MAGIC: [u8; 4] = *b"owl\0";
const HELLO: usize = 4 + 2 + 1 + 4 + 32;
const AUTH: usize = 32;
const FLAG_PLAINTEXT: u8 = 1;

/// Which side opened the connection. It decides key directions and labels
/// the proofs, nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Initiator,
    Responder,
}

/// What one endpoint knows before a handshake.
#[derive(Clone)]
pub struct HandshakeConfig {
    pub me: u32,
    pub nodes: u32,
    pub secret: [u8; 32],
    /// Frames unsealed; both sides must choose it.
    pub plaintext: bool,
    pub max_frame: usize,
    /// [`PROTOCOL_VERSION`] except in tests of version mismatch.
    pub version: u16,
    /// The head of an open cluster: a peer may present [`UNASSIGNED`] to
    /// be given an id.
    pub accept_unassigned: bool,
}

impl std::fmt::Debug for HandshakeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("HandshakeConfig")
            .field("me", &self.me)
            .field("nodes", &self.nodes)
            .field("plaintext", &self.plaintext)
            .field("max_frame", &self.max_frame)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Why a handshake failed. The connection is closed; the node keeps running.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("the peer is not an owl node (first bytes {got:02x?}); check that the address is an owl node's port")]
    BadMagic { got: [u8; 4] },
    #[error("protocol version mismatch (ours {ours}, theirs {theirs}); run the same owl build on every node")]
    Version { ours: u16, theirs: u16 },
    #[error("node {peer} did not prove knowledge of the cluster secret; start every node with the same cluster secret (or it is not part of this cluster)")]
    BadSecret { peer: u32 },
    #[error("encryption setting mismatch (ours plaintext={ours}, theirs plaintext={theirs}); choose plaintext on every node or on none")]
    PlaintextMismatch { ours: bool, theirs: bool },
    #[error("dialed node {expected} but node {got} answered; check the member addresses")]
    UnexpectedPeer { expected: u32, got: u32 },
    #[error("peer claims node id {peer} but the cluster has {nodes} nodes; check the node count given to every node")]
    PeerOutOfRange { peer: u32, nodes: u32 },
    #[error("peer claims this node's own id {node}; two nodes were started with the same id")]
    SameId { node: u32 },
    #[error("the connection closed during the handshake after {got} bytes; the peer refused us (see its log) or crashed")]
    Truncated { got: usize },
    #[error("the handshake did not finish within {0:?}; the peer is stalled or not an owl node")]
    Timeout(std::time::Duration),
    #[error("I/O error during the handshake: {0}")]
    Io(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    WaitHello,
    WaitAuth,
    Done,
}

/// One endpoint's handshake. Feed it the peer's bytes; send what
/// [`Self::take_output`] returns after creation and after every feed.
pub struct Handshake {
    cfg: HandshakeConfig,
    role: Role,
    expect: Option<u32>,
    ours: [u8; HELLO],
    theirs: [u8; HELLO],
    peer: u32,
    state: State,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    received: usize,
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshake")
            .field("role", &self.role)
            .field("expect", &self.expect)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// A finished handshake: who the peer is and the two directions' codecs.
#[derive(Debug)]
pub struct Session {
    pub peer: u32,
    pub encoder: FrameEncoder,
    /// Already fed with any frame bytes that followed the handshake.
    pub decoder: FrameDecoder,
}

impl Handshake {
    /// Starts a handshake; `expect` is the node dialed (initiators know it).
    /// `nonce` must be fresh random bytes.
    pub fn new(cfg: HandshakeConfig, role: Role, expect: Option<u32>, nonce: [u8; 32]) -> Self {
        let mut ours = [0u8; HELLO];
        ours[..4].copy_from_slice(&MAGIC);
        ours[4..6].copy_from_slice(&cfg.version.to_le_bytes());
        ours[6] = if cfg.plaintext { FLAG_PLAINTEXT } else { 0 };
        ours[7..11].copy_from_slice(&cfg.me.to_le_bytes());
        ours[11..].copy_from_slice(&nonce);
        Self {
            cfg,
            role,
            expect,
            ours,
            theirs: [0; HELLO],
            peer: u32::MAX,
            state: State::WaitHello,
            inbuf: Vec::with_capacity(HELLO + AUTH),
            out: ours.to_vec(),
            received: 0,
        }
    }

    /// Bytes to send to the peer now (possibly empty).
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// The error to report when the connection ends before the handshake did.
    pub fn eof(&self) -> HandshakeError {
        HandshakeError::Truncated { got: self.received }
    }

    /// Consumes bytes from the peer. `Ok(Some)` once the peer is verified;
    /// after an error the connection must be closed.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Option<Session>, HandshakeError> {
        self.received += bytes.len();
        self.inbuf.extend_from_slice(bytes);
        if self.state == State::WaitHello {
            // Check the magic as soon as 4 bytes are in, so a garbage client
            // is refused without waiting for a whole Hello.
            if self.inbuf.len() >= 4 && self.inbuf[..4] != MAGIC {
                return Err(HandshakeError::BadMagic {
                    got: self.inbuf[..4].try_into().expect("4"),
                });
            }
            if self.inbuf.len() < HELLO {
                return Ok(None);
            }
            self.theirs.copy_from_slice(&self.inbuf[..HELLO]);
            self.inbuf.drain(..HELLO);
            self.check_hello()?;
            let proof = self.proof(self.role);
            self.out.extend_from_slice(proof.as_ref());
            self.state = State::WaitAuth;
        }
        if self.state == State::WaitAuth {
            if self.inbuf.len() < AUTH {
                return Ok(None);
            }
            let peer_role = match self.role {
                Role::Initiator => Role::Responder,
                Role::Responder => Role::Initiator,
            };
            let key = hmac::Key::new(hmac::HMAC_SHA256, &self.cfg.secret);
            hmac::verify(&key, &self.transcript(peer_role), &self.inbuf[..AUTH])
                .map_err(|_| HandshakeError::BadSecret { peer: self.peer })?;
            self.inbuf.drain(..AUTH);
            self.state = State::Done;
            return Ok(Some(self.session()));
        }
        Ok(None)
    }

    fn check_hello(&mut self) -> Result<(), HandshakeError> {
        let h = &self.theirs;
        let theirs = u16::from_le_bytes([h[4], h[5]]);
        if theirs != self.cfg.version {
            return Err(HandshakeError::Version {
                ours: self.cfg.version,
                theirs,
            });
        }
        let plain = h[6] & FLAG_PLAINTEXT != 0;
        let peer = u32::from_le_bytes(h[7..11].try_into().expect("4"));
        if let Some(expected) = self.expect {
            if expected != peer {
                return Err(HandshakeError::UnexpectedPeer {
                    expected,
                    got: peer,
                });
            }
        }
        if peer >= self.cfg.nodes && !(peer == UNASSIGNED && self.cfg.accept_unassigned) {
            return Err(HandshakeError::PeerOutOfRange {
                peer,
                nodes: self.cfg.nodes,
            });
        }
        if peer == self.cfg.me {
            return Err(HandshakeError::SameId { node: peer });
        }
        if plain != self.cfg.plaintext {
            return Err(HandshakeError::PlaintextMismatch {
                ours: self.cfg.plaintext,
                theirs: plain,
            });
        }
        self.peer = peer;
        Ok(())
    }

    fn hellos(&self) -> (&[u8; HELLO], &[u8; HELLO]) {
        match self.role {
            Role::Initiator => (&self.ours, &self.theirs),
            Role::Responder => (&self.theirs, &self.ours),
        }
    }

    fn transcript(&self, role: Role) -> Vec<u8> {
        let (init, resp) = self.hellos();
        let mut t = Vec::with_capacity(16 + 2 * HELLO);
        t.extend_from_slice(b"owl-auth-v1");
        t.push(if role == Role::Initiator { b'I' } else { b'R' });
        t.extend_from_slice(init);
        t.extend_from_slice(resp);
        t
    }

    fn proof(&self, role: Role) -> hmac::Tag {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.cfg.secret);
        hmac::sign(&key, &self.transcript(role))
    }

    fn session(&mut self) -> Session {
        let (init, resp) = self.hellos();
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"owl-session-v1").extract(&self.cfg.secret);
        let key = |dir: &[u8]| {
            let info = [dir, &init[..], &resp[..]];
            let okm = prk
                .expand(&info, &aead::AES_256_GCM)
                .expect("32-byte key is a valid HKDF length");
            aead::LessSafeKey::new(aead::UnboundKey::from(okm))
        };
        let (send, recv) = if self.cfg.plaintext {
            (None, None)
        } else {
            let i2r = key(b"i2r");
            let r2i = key(b"r2i");
            match self.role {
                Role::Initiator => (Some(i2r), Some(r2i)),
                Role::Responder => (Some(r2i), Some(i2r)),
            }
        };
        let mut decoder = FrameDecoder::new(recv, self.cfg.max_frame);
        decoder.feed(&self.inbuf);
        self.inbuf = Vec::new();
        Session {
            peer: self.peer,
            encoder: FrameEncoder::new(send, self.cfg.max_frame),
            decoder,
        }
    }
}
