//! The shm mesh driven by a thread the caller runs (an owl shard's event
//! loop): [`start_shm_hosted`] returns a [`ShmHost`] to poll.
//!
//! Why: on a 2-core host a shard thread, a spinning shm I/O thread and the
//! control mesh's thread are more runnable threads than cores, and every
//! message hops between the shard and the I/O thread. Hosted, the shard that
//! sends also writes the ring, and reads its rings while it spins for work.
//!
//! Parking. The host spins while it has work and calls [`ShmHost::poll`];
//! before it parks it calls [`ShmHost::arm`] with a `wake` callback. Arming
//! splits [`Bell::sleep`](super::ring::Bell) between two threads:
//!
//! 1. host, under the bridge lock: `s_arm = seq`, store `wake`;
//! 2. host: `sleeping = 1; fence(SeqCst)`, then checks every condition a
//!    ringer may have changed ([`Driver::idle`]: rings, local queues,
//!    control events, `closing`); if one holds it takes `wake` back and
//!    calls it itself;
//! 3. bridge thread (one per node, made at start-up, asleep on the futex
//!    word whether armed or not): on every return from `futex_wait(seq, s)`
//!    it loads `seq`, and if `wake` is stored and `seq != s_arm` it takes it
//!    and calls it; then waits again on the value it loaded.
//!
//! A ringer does `change; fence(SeqCst); if sleeping { sleeping = 0;
//! seq += 1; futex_wake }`. By the fences either step 2 sees the change or
//! the ringer sees `sleeping == 1` and bumps `seq` past `s_arm` (loaded
//! before step 2), which the bridge sees: after its next load of `seq`, or,
//! blocked, because the kernel compares the word under its lock. So no
//! wake-up is lost, and `wake` is called at most once per arming (whoever
//! takes it out of the lock calls it). A spinning host never sets
//! `sleeping`, so ringers pay a fence and a load, never a syscall; dropping
//! the [`ShmArm`] guard clears `wake` and `sleeping`.
//!
//! Timers are the host's: it parks at most [`ShmHost::timeout`] (50 ms at
//! most), so heartbeats and silence checks run on time.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;

use super::driver::{Driver, BACKSTOP};
use super::ring::Inbox;
use crate::api::Handler;
use crate::config::{check_config, MeshConfig, MeshError, TransportKind};
use crate::peer::Shared;
use crate::Starting;

/// What the host calls to be woken.
pub type Wake = Arc<dyn Fn() + Send + Sync>;

/// Start-up's result, handed from the setup thread to the host.
enum Handoff {
    Waiting,
    Ready(Box<Driver>),
    Failed,
    Taken,
}

struct Armed {
    handoff: Handoff,
    /// The host's wake-up while it is armed; taken by whoever calls it.
    wake: Option<Wake>,
    /// The futex word when it armed (`None`: armed before start-up ended,
    /// woken by the hand-off).
    s_arm: Option<u32>,
}

/// Shared by the host, the setup thread and the bridge thread.
struct Bridge {
    state: Mutex<Armed>,
    /// This node's inbox (its doorbell), once set up.
    inbox: OnceLock<Arc<Inbox>>,
    stop: AtomicBool,
}

impl Bridge {
    /// Takes the armed wake-up if the doorbell rang since arming.
    fn take_if_rung(&self, seq: u32) -> Option<Wake> {
        let mut st = self.state.lock();
        match st.s_arm {
            Some(s) if s != seq => st.wake.take(),
            _ => None,
        }
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(inbox) = self.inbox.get() {
            inbox.bell().force();
        }
    }

    /// The bridge thread: asleep on the doorbell, calls the host's wake-up
    /// once the bell rings while armed.
    fn run(&self, inbox: &Inbox) {
        let bell = inbox.bell();
        loop {
            let s = bell.seq();
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            if let Some(wake) = self.take_if_rung(s) {
                wake();
            }
            // The timeout only bounds how long a stop could go unseen.
            bell.wait(s, Duration::from_secs(1));
        }
    }
}

/// A hosted shm mesh's data plane, to be moved to the thread that drives it
/// (see the module doc). Dropping it without `shutdown` stops the node's
/// shm traffic (peers see silence, then its control connection close when
/// the [`crate::Mesh`] is dropped).
pub struct ShmHost {
    sh: Arc<Shared>,
    bridge: Arc<Bridge>,
    driver: Option<Box<Driver>>,
    done: Option<Sender<()>>,
    finished: bool,
}

impl std::fmt::Debug for ShmHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmHost")
            .field("me", &self.sh.me)
            .field("up", &self.driver.is_some())
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

/// While it lives, the host is armed (see [`ShmHost::arm`]); drop it once
/// the host is awake again.
#[must_use = "dropping the guard disarms at once"]
pub struct ShmArm {
    bridge: Option<Arc<Bridge>>,
}

impl std::fmt::Debug for ShmArm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmArm")
            .field("armed", &self.bridge.is_some())
            .finish()
    }
}

impl Drop for ShmArm {
    fn drop(&mut self) {
        let Some(bridge) = self.bridge.take() else {
            return;
        };
        {
            let mut st = bridge.state.lock();
            st.wake = None;
            st.s_arm = None;
        }
        if let Some(inbox) = bridge.inbox.get() {
            inbox.bell().retract();
        }
    }
}

/// Like [`crate::start`] for [`TransportKind::Shm`], but the data plane runs
/// on the caller's thread through the returned [`ShmHost`] (no I/O thread).
/// Start-up (the TCP control mesh, mapping the inboxes) runs on a thread of
/// its own; [`Starting::wait`] blocks until it is done and needs no poll
/// meanwhile, so the host may poll before, during or after it.
pub fn start_shm_hosted(
    cfg: MeshConfig,
    handler: Arc<dyn Handler>,
) -> Result<(Starting, ShmHost), MeshError> {
    check_config(&cfg)?;
    let TransportKind::Shm(shm) = cfg.kind else {
        return Err(MeshError::Config(
            "start_shm_hosted needs TransportKind::Shm".into(),
        ));
    };
    let shm = super::normalize(shm);
    let sh = Arc::new(Shared::new(&cfg, handler));
    let bridge = Arc::new(Bridge {
        state: Mutex::new(Armed {
            handoff: Handoff::Waiting,
            wake: None,
            s_arm: None,
        }),
        inbox: OnceLock::new(),
        stop: AtomicBool::new(false),
    });
    let (ready_tx, ready) = channel::<Result<SocketAddr, MeshError>>();
    let (done_tx, done) = channel();
    let (sh2, br) = (sh.clone(), bridge.clone());
    let node = cfg.node;
    std::thread::Builder::new()
        .name(format!("owl-shm-setup-{node}"))
        .spawn(move || {
            let (handoff, res) = match set_up(cfg, shm, &sh2, &br) {
                Ok((addr, driver)) => (Handoff::Ready(driver), Ok(addr)),
                Err(e) => (Handoff::Failed, Err(e)),
            };
            let wake = {
                let mut st = br.state.lock();
                st.handoff = handoff;
                st.wake.take()
            };
            if let Some(wake) = wake {
                wake();
            }
            let _ = ready_tx.send(res);
        })
        .map_err(|e| MeshError::Setup(format!("cannot spawn the shm setup thread: {e}")))?;
    Ok((
        Starting::new(sh.clone(), ready, done),
        ShmHost {
            sh,
            bridge,
            driver: None,
            done: Some(done_tx),
            finished: false,
        },
    ))
}

/// Start-up, then the bridge thread.
fn set_up(
    cfg: MeshConfig,
    shm: crate::ShmConfig,
    sh: &Arc<Shared>,
    bridge: &Arc<Bridge>,
) -> Result<(SocketAddr, Box<Driver>), MeshError> {
    let node = cfg.node;
    let s = super::setup::setup(&cfg, shm, sh)?;
    let addr = s.control.local_addr();
    let inbox = s.mine.clone();
    let driver = Box::new(Driver::new(cfg, shm, sh.clone(), s)); // peers are up
                                                                 // `Mesh::shutdown` closes the control mesh once the host is done.
    let control = Arc::clone(driver.control());
    *sh.close_control.lock() = Some(Box::new(move |killed| {
        if killed {
            control.kill();
        } else {
            control.shutdown();
        }
    }));
    let _ = bridge.inbox.set(inbox.clone());
    let br = bridge.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("owl-shm-bell-{node}"))
        .spawn(move || br.run(&inbox));
    if let Err(e) = spawned {
        drop(driver);
        if let Some(close) = sh.close_control.lock().take() {
            close(false);
        }
        return Err(MeshError::Setup(format!(
            "cannot spawn the shm bridge thread: {e}"
        )));
    }
    Ok((addr, driver))
}

impl ShmHost {
    /// One non-blocking pass: incoming rings to the handler (called on this
    /// thread), the per-peer queues into the rings, heartbeats and silence
    /// checks; after `Mesh::shutdown` the flush of `Shutdown` (bounded by a
    /// second). True if it did anything. Before start-up ends, and once the
    /// mesh has stopped (see [`ShmHost::is_finished`]), false at once.
    pub fn poll(&mut self) -> bool {
        if self.finished {
            return false;
        }
        let Some(driver) = self.driver.as_mut() else {
            let mut st = self.bridge.state.lock();
            match std::mem::replace(&mut st.handoff, Handoff::Taken) {
                Handoff::Ready(d) => self.driver = Some(d),
                Handoff::Failed => {
                    drop(st);
                    self.finish();
                    return false;
                }
                other => {
                    st.handoff = other;
                    return false;
                }
            }
            drop(st);
            return self.poll();
        };
        let busy = driver.poll();
        if driver.done() {
            self.finish();
        }
        busy
    }

    /// Call before parking; the returned guard disarms when dropped (once
    /// the host is awake again). While armed, `wake` is called once, from
    /// another thread or from inside `arm` itself, when anything arrives
    /// that [`ShmHost::poll`] would act on: a peer's frame or freed ring
    /// space, a local send through the [`crate::Link`], a control event,
    /// `shutdown`, start-up ending. Nothing is missed between arming and
    /// parking, provided the host's own park remembers a `wake` that came
    /// first (a `Notify` permit, a flag under the condvar's mutex). Park at
    /// most [`ShmHost::timeout`]. After the mesh stopped, `wake` is never
    /// called.
    pub fn arm(&self, wake: Wake) -> ShmArm {
        if self.finished {
            return ShmArm { bridge: None };
        }
        let guard = ShmArm {
            bridge: Some(self.bridge.clone()),
        };
        let Some(driver) = self.driver.as_ref() else {
            let now = {
                let mut st = self.bridge.state.lock();
                if matches!(st.handoff, Handoff::Waiting) {
                    st.wake = Some(wake.clone());
                    st.s_arm = None;
                    false
                } else {
                    true // ready or failed: poll now
                }
            };
            if now {
                wake();
            }
            return guard;
        };
        let bell = driver.bell();
        {
            let mut st = self.bridge.state.lock();
            st.s_arm = Some(bell.seq());
            st.wake = Some(wake);
        }
        bell.announce();
        if !driver.idle() {
            let wake = self.bridge.state.lock().wake.take();
            if let Some(wake) = wake {
                wake();
            }
        }
        guard
    }

    /// The longest the host may park: until the next heartbeat, at most
    /// 50 ms.
    pub fn timeout(&self) -> Duration {
        self.driver.as_ref().map_or(BACKSTOP, |d| d.timeout())
    }

    /// Whether the mesh has stopped (shut down, killed, or start-up failed):
    /// the host may stop polling.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    fn finish(&mut self) {
        self.finished = true;
        self.bridge.stop();
        // The control mesh is closed by `Mesh::shutdown`/`kill` (it holds
        // another handle), never here: this thread must not block.
        self.driver = None;
        if let Some(done) = self.done.take() {
            let _ = done.send(());
        }
    }
}

impl Drop for ShmHost {
    fn drop(&mut self) {
        if !self.finished {
            self.bridge.stop();
        }
    }
}
