//! Keeping a threaded mesh's I/O thread awake for a moment after it moved
//! a message, polling its sockets without blocking, instead of sleeping in
//! the kernel at once: a reply usually follows within tens of µs, and
//! catching it awake saves the sender's wake-up call and this thread's
//! trip through the scheduler on each hop of a round trip. The spin gives
//! up the core at every round (sched_yield), so on a machine with no core
//! to spare the shards that produce the reply still run. Hosted meshes
//! never spin here: their host (a shard) spins for them.

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::Node;
use crate::driver::Net;

impl<N: Net> Node<N> {
    /// A reader delivered or a writer wrote: (re)start the spin.
    pub(super) fn touch(&self) {
        if !self.spin.is_zero() {
            self.active.set(true);
            self.spin_wake.notify_one();
        }
    }

    /// Spins for `Node::spin` after each touch: every round yields the core,
    /// then yields to the executor, which polls the sockets without
    /// blocking (epoll with a zero timeout) before it runs this task again.
    pub(super) async fn spin_loop(self: Rc<Self>) {
        loop {
            self.spin_wake.notified().await;
            let mut until = Instant::now() + self.spin;
            while Instant::now() < until {
                if self.active.replace(false) {
                    until = Instant::now() + self.spin;
                }
                std::thread::yield_now();
                tokio::task::yield_now().await;
            }
        }
    }
}

/// How long a threaded socket mesh spins after moving a message.
pub(crate) const SPIN: Duration = Duration::from_micros(50);
