//! The interface between the socket mesh ([`crate::mesh`]) and a socket
//! driver ([`crate::tcp`], [`crate::quic`]): listen, accept, dial, and owned
//! byte streams. A driver knows nothing of peers or messages; the mesh knows
//! nothing of sockets.

use std::io;
use std::net::SocketAddr;

/// Reads into an owned buffer (the io_uring way); `Ok(0)` is end of stream.
pub(crate) trait Rd: 'static {
    async fn read(&mut self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>);
}

/// Writes a whole owned buffer and gives it back for reuse.
pub(crate) trait Wr: 'static {
    async fn write_all(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>);
    /// Ends the stream after the last frame, waiting (bounded) until the
    /// peer has it where the transport needs that (QUIC).
    async fn finish(&mut self);
}

/// Tears a connection down so its pending reads and writes end.
pub(crate) type Closer = Box<dyn Fn()>;

/// A connected byte stream to one peer.
pub(crate) struct Conn<R, W> {
    pub(crate) rd: R,
    pub(crate) wr: W,
    /// Tears the connection down so pending reads and writes end.
    pub(crate) close: Closer,
    pub(crate) remote: SocketAddr,
}

/// A socket transport: listen, accept, dial.
pub(crate) trait Net: Sized + 'static {
    type R: Rd;
    type W: Wr;
    /// An accepted connection not yet ready for bytes (QUIC still has its
    /// TLS handshake to do); finished in its own task by [`Net::ready`].
    type Incoming: 'static;
    fn local_addr(&self) -> SocketAddr;
    /// Where an accepted connection comes from (before any work on it).
    fn remote(inc: &Self::Incoming) -> SocketAddr;
    async fn accept(&self) -> io::Result<Self::Incoming>;
    async fn ready(inc: Self::Incoming) -> io::Result<Conn<Self::R, Self::W>>;
    async fn dial(&self, addr: SocketAddr) -> io::Result<Conn<Self::R, Self::W>>;
    /// Called once after every connection is closed, before the runtime ends.
    async fn close(&self) {}
}
