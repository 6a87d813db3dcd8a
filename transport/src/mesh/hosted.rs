//! The mesh driven by a thread the caller already runs (an owl shard's event
//! loop) instead of a thread of its own.
//!
//! Why: on a machine with few cores, every hand-off between the runtime's
//! threads and a separate I/O thread costs a wake-up (6–120 µs measured
//! here), several per remote call. Hosted, the shard that sends also writes
//! the socket, and the shard polls its sockets while it spins for work, so a
//! remote round trip costs about the wire's round trip.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{select, Mesh};
use crate::api::Handler;
use crate::config::{check_config, MeshConfig, MeshError};
use crate::peer::Shared;

/// The executor a hosted mesh runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoLoop {
    /// A tokio-uring runtime (the mesh's sockets still use epoll, see
    /// `select::run_hosted`).
    Uring,
    /// A tokio current-thread runtime inside a `LocalSet` (epoll).
    Tokio,
}

/// The mesh's I/O, to be spawned with `spawn_local` on the hosting thread.
/// Its future is not `Send` (the driver's state is thread-local), so what
/// crosses threads is this factory.
pub type IoTask = Box<dyn FnOnce(IoLoop) -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// A hosted mesh on its way up: [`Starting::wait`] blocks until it is
/// connected (call it on a thread other than the host's).
#[derive(Debug)]
pub struct Starting {
    shared: Arc<Shared>,
    ready: Receiver<Result<SocketAddr, MeshError>>,
    done: Receiver<()>,
}

/// Like [`super::start`], but returns the I/O task for the caller to spawn
/// on its own executor, and a handle to wait for the mesh with.
pub fn start_hosted(
    cfg: MeshConfig,
    handler: Arc<dyn Handler>,
) -> Result<(Starting, IoTask), MeshError> {
    check_config(&cfg)?;
    let shared = Arc::new(Shared::new(&cfg, handler));
    let (tx, ready) = channel();
    let (done_tx, done) = channel();
    let sh = Arc::clone(&shared);
    let task: IoTask = Box::new(move |io_loop| {
        Box::pin(async move {
            select::run_hosted(cfg, sh, tx, io_loop).await;
            let _ = done_tx.send(());
        })
    });
    Ok((
        Starting {
            shared,
            ready,
            done,
        },
        task,
    ))
}

impl Starting {
    pub(crate) fn new(
        shared: Arc<Shared>,
        ready: Receiver<Result<SocketAddr, MeshError>>,
        done: Receiver<()>,
    ) -> Self {
        Self {
            shared,
            ready,
            done,
        }
    }

    /// Waits until every peer is connected (or start-up failed).
    pub fn wait(self) -> Result<Arc<Mesh>, MeshError> {
        let res = self.ready.recv().unwrap_or_else(|_| {
            Err(MeshError::Setup(
                "the hosted I/O task ended during start (its host stopped?)".into(),
            ))
        });
        match res {
            Ok(local_addr) => Ok(Arc::new(Mesh {
                shared: self.shared,
                local_addr,
                io: Mutex::new(None),
                hosted_done: Mutex::new(Some(self.done)),
            })),
            Err(e) => {
                self.shared.closing.store(true, Ordering::Release);
                self.shared.stop.notify_one();
                self.shared.kick();
                Err(e)
            }
        }
    }
}
