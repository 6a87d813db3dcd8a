//! TCP driver: io_uring through tokio-uring, or plain tokio when io_uring
//! cannot be set up (old kernels, seccomp). TCP_NODELAY on every stream.

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;

use crate::config::MeshError;
use crate::driver::{Conn, Net, Rd, Wr};

fn bind_error(addr: SocketAddr, source: io::Error) -> MeshError {
    MeshError::Bind { addr, source }
}

pub(crate) struct UringNet {
    listener: tokio_uring::net::TcpListener,
    local: SocketAddr,
}

impl UringNet {
    pub(crate) fn bind(addr: SocketAddr) -> Result<Self, MeshError> {
        let listener =
            tokio_uring::net::TcpListener::bind(addr).map_err(|e| bind_error(addr, e))?;
        let local = listener.local_addr().map_err(|e| bind_error(addr, e))?;
        Ok(Self { listener, local })
    }

    fn conn(
        stream: tokio_uring::net::TcpStream,
        remote: SocketAddr,
    ) -> io::Result<Conn<UringRd, UringWr>> {
        stream.set_nodelay(true)?;
        let s = Rc::new(stream);
        let c = s.clone();
        Ok(Conn {
            rd: UringRd(s.clone()),
            wr: UringWr(s),
            close: Box::new(move || {
                let _ = c.shutdown(Shutdown::Both);
            }),
            remote,
        })
    }
}

pub(crate) struct UringRd(Rc<tokio_uring::net::TcpStream>);
pub(crate) struct UringWr(Rc<tokio_uring::net::TcpStream>);

impl Rd for UringRd {
    async fn read(&mut self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        // tokio-uring reads into the Vec's capacity from its start; the
        // caller's buffer is fully initialised, so `len` stays as it was.
        self.0.read(buf).await
    }
}

impl Wr for UringWr {
    async fn write_all(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        self.0.write_all(buf).await
    }
    async fn finish(&mut self) {
        let _ = self.0.shutdown(Shutdown::Write);
    }
}

impl Net for UringNet {
    type R = UringRd;
    type W = UringWr;
    type Incoming = Conn<UringRd, UringWr>;
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
    async fn ready(inc: Self::Incoming) -> io::Result<Conn<UringRd, UringWr>> {
        Ok(inc)
    }
    async fn dial(&self, addr: SocketAddr) -> io::Result<Conn<UringRd, UringWr>> {
        let s = tokio_uring::net::TcpStream::connect(addr).await?;
        Self::conn(s, addr)
    }
}

/// The epoll fallback.
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
