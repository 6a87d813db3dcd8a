//! The shard thread: pinning, its event loop (io_uring or tokio), spinning
//! and parking.

use std::rc::Rc;
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_deque::{Steal, Worker};

use super::{set_current, Shard};
use crate::config::{EventLoopKind, IoPlacement};
use crate::engine::node::NodeShared;
use crate::ids::ShardId;
use crate::spec::Task;

/// Whether io_uring can be set up here (kernels and sandboxes may refuse).
pub(crate) fn probe_event_loop() -> EventLoopKind {
    #[cfg(target_os = "linux")]
    {
        if tokio_uring::Runtime::new(&tokio_uring::builder()).is_ok() {
            return EventLoopKind::IoUring;
        }
    }
    EventLoopKind::Tokio
}

/// Body of a shard thread.
pub(crate) fn run_shard(
    id: ShardId,
    shared: Arc<NodeShared>,
    fifo: Worker<Task>,
    kind: EventLoopKind,
) {
    if let Some(core) = shared.pin_core(id) {
        if !core_affinity::set_for_current(core) {
            tracing::warn!(shard = %id, "could not pin shard thread to core {:?}", core);
        }
    }
    let shard = Rc::new(Shard::new(id, shared, fifo));
    set_current(Some(Rc::clone(&shard)));
    let run = {
        let shard = Rc::clone(&shard);
        async move { shard.run().await }
    };
    match kind {
        #[cfg(target_os = "linux")]
        EventLoopKind::IoUring => match tokio_uring::Runtime::new(&tokio_uring::builder()) {
            Ok(rt) => {
                shard.on_uring.set(true);
                rt.block_on(run)
            }
            Err(e) => {
                tracing::warn!(shard = %id, error = %e, "io_uring set-up failed on this shard; using tokio");
                tokio::task::LocalSet::new().block_on(&tokio_runtime(), run)
            }
        },
        _ => tokio::task::LocalSet::new().block_on(&tokio_runtime(), run),
    }
    shard.shut_down();
    set_current(None);
}

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread tokio runtime needs no resources that can fail")
}

/// Loop turns between yields to the event loop (timers, I/O) while busy.
const TURNS_PER_YIELD: u32 = 32;
/// How long a shard hosting the node's network I/O may run tasks before it
/// polls its sockets: bounds how late heartbeats, leaves and results are
/// seen while it is busy, whatever its tasks cost.
const IO_EVERY: Duration = Duration::from_micros(200);

impl Shard {
    async fn run(&self) {
        let mut turns = 0u32;
        loop {
            if self.stop.get() || self.shared.stopping() {
                break;
            }
            if self.io_due() {
                // `turn` stops short when the sockets are due: poll them
                // before anything else, or a busy shard never would.
                self.yield_to_io().await;
            }
            if self.turn() || self.steal() || self.poll_shm() {
                turns += 1;
                if turns.is_multiple_of(TURNS_PER_YIELD) {
                    self.report_load();
                    self.yield_to_io().await;
                }
                continue;
            }
            if self.spin().await {
                continue;
            }
            self.report_load();
            self.park().await;
        }
    }

    /// Shard 0 keeps the node's load figures (carried by heartbeats, read
    /// by peers deciding where to send spillback) fresh.
    fn report_load(&self) {
        if self.id.0 != 0 {
            return;
        }
        if let Some(net) = self.shared.net.as_ref() {
            let queued = self
                .shared
                .shards
                .iter()
                .map(|s| s.stealer.len())
                .sum::<usize>()
                + self.shared.incoming.len();
            net.report_load(queued, self.shared.idle_shards());
        }
    }

    /// Takes a batch of tasks from another shard's FIFO and runs one.
    fn steal(&self) -> bool {
        let shards = &self.shared.shards;
        let n = shards.len();
        let me = self.id.0 as usize;
        for i in 1..n {
            let victim = &shards[(me + i) % n];
            loop {
                match victim.stealer.steal_batch_and_pop(&self.fifo) {
                    Steal::Success(task) => {
                        self.execute(task);
                        return true;
                    }
                    Steal::Retry => continue,
                    Steal::Empty => break,
                }
            }
        }
        false
    }

    fn work_visible(&self) -> bool {
        let shards = &self.shared.shards;
        shards[self.id.0 as usize].has_mail()
            || !self.woken.borrow().is_empty()
            || !self.shared.incoming.is_empty()
            || self.shared.roots.any_woken()
            || shards.iter().any(|s| !s.stealer.is_empty())
    }

    /// Busy-polls for work for the configured spin time: waking a parked
    /// thread costs far more than a short spin on these machines. A shard
    /// that hosts the node's network I/O yields to its event loop as it
    /// spins, which polls the sockets without blocking.
    async fn spin(&self) -> bool {
        let spin = self.shared.config.spin;
        if spin.is_zero() {
            return false;
        }
        let deadline = Instant::now() + spin;
        // Beside an I/O thread, a spinning shard gives up its core at each
        // round: the kernel lets a spinning thread run out its time slice
        // before a thread it woke may run, and on a machine with no core to
        // spare the thread waiting for the core is the I/O thread carrying
        // the very message this shard waits for (a round trip over TCP cost
        // 113 µs with bare pauses here). When nothing else is runnable,
        // sched_yield returns in well under a µs.
        let yield_core = self.shared.net.is_some() && self.shared.config.io == IoPlacement::Thread;
        let mesh = self
            .shared
            .net
            .as_ref()
            .and_then(|n| n.mesh())
            .filter(|_| yield_core);
        let _helping = mesh.map(|m| Helping::new(m));
        let mut i = 0u32;
        loop {
            if self.work_visible() || self.shared.stopping() || self.poll_shm() {
                return true;
            }
            // An idle shard does the I/O thread's work when the driver lets
            // it (shm): no hand-off to that thread on this hop.
            if mesh.is_some_and(|m| m.help_poll()) {
                return true;
            }
            if yield_core {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
            i += 1;
            // A shard hosting sockets polls them (an epoll_wait with no
            // timeout, through a yield to its event loop) every few rounds.
            if self.hosts_io.get() && i.is_multiple_of(8) {
                self.yield_to_io().await;
            }
            // A yield costs more than a clock read: look at the clock each time.
            if (yield_core || i.is_multiple_of(64)) && Instant::now() >= deadline {
                return false;
            }
        }
    }

    /// One pass over a hosted shm mesh's rings; whether it did anything.
    fn poll_shm(&self) -> bool {
        let mut shm = self.shm.borrow_mut();
        match shm.as_mut() {
            Some(host) if !host.is_finished() => host.poll(),
            _ => false,
        }
    }

    /// Arms a hosted shm mesh to wake this shard; the park's bound.
    fn arm_shm(&self) -> (Option<owl_transport::ShmArm>, Duration) {
        let park = self.shared.config.park_bound;
        let shm = self.shm.borrow();
        let Some(host) = shm.as_ref().filter(|h| !h.is_finished()) else {
            return (None, park);
        };
        let node = Arc::downgrade(&self.shared);
        let me = self.id.0 as usize;
        let wake: owl_transport::Wake = Arc::new(move || {
            if let Some(node) = node.upgrade() {
                node.shards[me].notify.notify_one();
            }
        });
        (Some(host.arm(wake)), park.min(host.timeout()))
    }

    /// Runs a shared-memory mesh's data plane on this shard's loop.
    pub(crate) fn host_shm(&self, host: owl_transport::ShmHost) {
        *self.shm.borrow_mut() = Some(host);
    }

    /// Whether this shard hosts the node's I/O and has not polled it for
    /// `IO_EVERY`.
    pub(super) fn io_due(&self) -> bool {
        self.hosts_io.get() && self.last_io.get().elapsed() >= IO_EVERY
    }

    /// Lets the event loop run (timers, sockets) once.
    async fn yield_to_io(&self) {
        tokio::task::yield_now().await;
        if self.hosts_io.get() {
            self.last_io.set(Instant::now());
        }
    }

    /// Runs the node's mesh on this shard's event loop.
    pub(crate) fn host_io(&self, io: owl_transport::IoTask) {
        let io_loop = if self.on_uring.get() {
            owl_transport::IoLoop::Uring
        } else {
            owl_transport::IoLoop::Tokio
        };
        self.hosts_io.set(true);
        tokio::task::spawn_local(io(io_loop));
    }

    /// Parks in the event loop until a producer or a timer wakes us.
    ///
    /// Announce first (idle count, `parked`), then look for work, then
    /// sleep: a producer pushes, then reads the announcement (SeqCst fences
    /// on both sides), so either we see its work or it sees us and notifies.
    async fn park(&self) {
        let remote = &self.shared.shards[self.id.0 as usize];
        let notified = remote.notify.notified();
        self.shared.idle_change(1);
        remote.parked.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        // A hosted shm mesh wakes us (a Notify permit, so a wake that comes
        // before the wait is kept) when a peer writes to our rings.
        let (_armed, bound) = self.arm_shm();
        if !self.work_visible() && !self.shared.stopping() {
            // Bounded, as a backstop against a lost wake-up.
            let _ = tokio::time::timeout(bound, notified).await;
        }
        remote.parked.store(false, Ordering::SeqCst);
        self.shared.idle_change(-1);
    }
}

/// A shard's spin, announced to the mesh it helps (`Mesh::helping`) for
/// as long as it lasts, whichever way it ends.
struct Helping<'a>(&'a owl_transport::Mesh);

impl<'a> Helping<'a> {
    fn new(mesh: &'a owl_transport::Mesh) -> Self {
        mesh.helping(true);
        Self(mesh)
    }
}

impl Drop for Helping<'_> {
    fn drop(&mut self) {
        self.0.helping(false);
    }
}
