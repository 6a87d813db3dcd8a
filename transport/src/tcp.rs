//! TCP driver on tokio's epoll sockets, TCP_NODELAY on every stream. (It
//! ran on io_uring through tokio-uring on its own I/O thread until
//! 2026-12-05: tokio-uring submits only when its thread parks, which an
//! I/O thread that spins cannot wait for; see `mesh::select`.)

use std::io;
use std::net::{Shutdown, SocketAddr};

use crate::config::MeshError;
use crate::driver::{Conn, Net, Rd, Wr};

fn bind_error(addr: SocketAddr, source: io::Error) -> MeshError {
    MeshError::Bind { addr, source }
}

/// TCP on tokio's epoll sockets.
pub(crate) struct TokioNet {
    listener: tokio::net::TcpListener,
    local: SocketAddr,
}

impl TokioNet {
    pub(crate) async fn bind(addr: SocketAddr) -> Result<Self, MeshError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| bind_error(addr, e))?;
        let local = listener.local_addr().map_err(|e| bind_error(addr, e))?;
        Ok(Self { listener, local })
    }

    fn conn(
        stream: tokio::net::TcpStream,
        remote: SocketAddr,
    ) -> io::Result<Conn<TokioRd, TokioWr>> {
        stream.set_nodelay(true)?;
        // A duplicate descriptor lets `close` shut the socket down while the
        // halves live in the reader and writer tasks.
        let std = stream.into_std()?;
        let ctl = std.try_clone()?;
        let (rd, wr) = tokio::net::TcpStream::from_std(std)?.into_split();
        Ok(Conn {
            rd: TokioRd(rd),
            wr: TokioWr(wr),
            close: Box::new(move || {
                let _ = ctl.shutdown(Shutdown::Both);
            }),
            remote,
        })
    }
}

pub(crate) struct TokioRd(tokio::net::tcp::OwnedReadHalf);
pub(crate) struct TokioWr(tokio::net::tcp::OwnedWriteHalf);

impl Rd for TokioRd {
    async fn read(&mut self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        use tokio::io::AsyncReadExt;
        let r = self.0.read(&mut buf[..]).await;
        (r, buf)
    }
}

impl Wr for TokioWr {
    async fn write_all(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        use tokio::io::AsyncWriteExt;
        let r = self.0.write_all(&buf).await;
        (r, buf)
    }
    async fn finish(&mut self) {
        use tokio::io::AsyncWriteExt;
        let _ = self.0.shutdown().await;
    }
}

impl Net for TokioNet {
    type R = TokioRd;
    type W = TokioWr;
    type Incoming = Conn<TokioRd, TokioWr>;
    fn local_addr(&self) -> SocketAddr {
        self.local
    }
    fn remote(inc: &Self::Incoming) -> SocketAddr {
        inc.remote
    }
    async fn accept(&self) -> io::Result<Self::Incoming> {
        let (s, remote) = self.listener.accept().await?;
        Self::conn(s, remote)
    }
    async fn ready(inc: Self::Incoming) -> io::Result<Conn<TokioRd, TokioWr>> {
        Ok(inc)
    }
    async fn dial(&self, addr: SocketAddr) -> io::Result<Conn<TokioRd, TokioWr>> {
        let s = tokio::net::TcpStream::connect(addr).await?;
        Self::conn(s, addr)
    }
}
