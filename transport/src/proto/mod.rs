//! The sans-IO protocol: messages, framing, handshake. No sockets, no threads,
//! no clock, no randomness (callers pass nonces in); every driver and the
//! simulator run exactly this code.
#![forbid(unsafe_code)]

pub mod frame;
pub mod handshake;
pub mod msg;

pub use frame::{FrameDecoder, FrameEncoder, FrameError, DEFAULT_MAX_FRAME};
pub use handshake::{
    Handshake, HandshakeConfig, HandshakeError, Role, Session, PROTOCOL_VERSION, UNASSIGNED,
};
pub use msg::{
    CodecError, Member, Msg, OwlMsg, SharedBlock, ShmStep, WireArg, WireError, WireId, WireValue,
    MAX_CHUNK,
};

#[cfg(test)]
mod tests;
