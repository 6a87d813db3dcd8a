//! Waiting for several objects at once.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::object::cell::ObjectCell;
use crate::object::objref::ThreadWaker;

/// Resolves once `n` of `cells` are ready.
pub(crate) struct WaitFuture {
    cells: Vec<Arc<ObjectCell>>,
    n: usize,
    /// Cells before this index are known ready (waits for all scan forward
    /// from here, so waiting on many objects costs O(count) overall).
    scanned: usize,
}

impl WaitFuture {
    pub(crate) fn new(cells: Vec<Arc<ObjectCell>>, n: usize) -> Self {
        WaitFuture {
            cells,
            n,
            scanned: 0,
        }
    }

    /// Whether `n` are ready; registers `waker` where needed otherwise.
    fn check(&mut self, waker: &Waker) -> bool {
        if self.n == self.cells.len() {
            while self.scanned < self.cells.len() {
                if self.cells[self.scanned].wait(waker) {
                    return false;
                }
                self.scanned += 1;
            }
            return true;
        }
        let ready = self.cells.iter().filter(|c| c.is_ready()).count();
        if ready >= self.n {
            return true;
        }
        let mut registered = false;
        for c in &self.cells {
            registered |= c.wait(waker);
        }
        // Everything turned ready while registering: count again.
        !registered || self.cells.iter().filter(|c| c.is_ready()).count() >= self.n
    }
}

impl Future for WaitFuture {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.check(cx.waker()) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

pub(crate) fn wait_blocking(cells: Vec<Arc<ObjectCell>>, n: usize, timeout: Option<Duration>) {
    let deadline = timeout.map(|t| Instant::now() + t);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut w = WaitFuture::new(cells, n);
    while !w.check(&waker) {
        match deadline {
            None => std::thread::park(),
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return;
                }
                std::thread::park_timeout(d - now);
            }
        }
    }
}
