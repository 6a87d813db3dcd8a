//! The shm data plane. [`Driver::poll`] is one non-blocking pass: incoming
//! rings to the handler, the runtime's queues into outgoing rings,
//! heartbeats and silence checks, and after `shutdown` the bounded flush.
//! Threaded ([`Driver::run`]), an I/O thread of its own loops over it,
//! spinning then sleeping on its doorbell, and spinning shards take turns
//! at it ([`help`]); hosted ([`super::host`]), the caller's thread calls
//! it.
#![forbid(unsafe_code)]

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::ring::{Bell, Consumer, Corrupt, Inbox, Producer};
use super::setup::{Ctl, Setup};
use crate::api::PeerDown;
use crate::config::{MeshConfig, ShmConfig};
use crate::peer::{Shared, PENDING, UP};
use crate::proto::{FrameDecoder, FrameEncoder, Msg};
use crate::Mesh;

/// The longest sleep without looking around (the wake protocol does not
/// need it; it bounds the damage of a peer that dies between publishing and
/// ringing).
pub(crate) const BACKSTOP: Duration = Duration::from_millis(50);
/// How long the I/O thread naps while a shard polls for it (see `run`):
/// bounds how late it takes over when that shard starts a task.
const HELPED_NAP: Duration = Duration::from_micros(100);
/// Bytes taken from one ring per turn, so one busy peer cannot starve others.
const READ_CHUNK: usize = 256 << 10;
/// How long `shutdown` waits for `Shutdown` to get into the rings.
const FLUSH: Duration = Duration::from_secs(1);

/// Both directions with one peer.
struct Pipe {
    /// Into the peer's inbox (it owns the bell rung after writing).
    out: Producer,
    /// From our inbox.
    inn: Consumer,
    enc: FrameEncoder,
    dec: FrameDecoder,
    /// Encoded bytes not yet in the ring (back-pressure), from `sent` on.
    pending: Vec<u8>,
    sent: usize,
}

pub(crate) struct Driver {
    cfg: MeshConfig,
    spin: Duration,
    sh: Arc<Shared>,
    control: Arc<Mesh>,
    events: std::sync::mpsc::Receiver<(u32, Ctl)>,
    pending: Arc<std::sync::atomic::AtomicBool>,
    mine: Arc<Inbox>,
    pipes: Vec<Option<Pipe>>,
    epoch: Instant,
    next_beat: Instant,
    beat_seq: u64,
    rbuf: Vec<u8>,
    /// Set once `closing` is seen: the end of the flush.
    flush_until: Option<Instant>,
    /// The flush is over (or the node was killed): nothing more to do.
    done: bool,
}

impl Driver {
    pub(crate) fn new(cfg: MeshConfig, shm: ShmConfig, sh: Arc<Shared>, s: Setup) -> Self {
        let me = cfg.node;
        let epoch = Instant::now();
        let pipes = s
            .peers
            .into_iter()
            .enumerate()
            .map(|(p, theirs)| {
                theirs.map(|theirs| Pipe {
                    out: Producer::new(theirs, me),
                    inn: Consumer::new(s.mine.clone(), p as u32),
                    enc: FrameEncoder::plaintext(cfg.max_frame),
                    dec: FrameDecoder::plaintext(cfg.max_frame),
                    pending: Vec::new(),
                    sent: 0,
                })
            })
            .collect();
        for p in (0..cfg.nodes).filter(|&p| p != me) {
            let peer = &sh.peers[p];
            peer.last_seen_ms.store(0, Ordering::Relaxed);
            let became_up = peer
                .state
                .compare_exchange(PENDING, UP, Ordering::AcqRel, Ordering::Acquire)
                .is_ok();
            if became_up {
                sh.handler.on_peer_up(p);
            }
        }
        Self {
            spin: shm.spin,
            next_beat: epoch + cfg.heartbeat,
            cfg,
            sh,
            control: s.control,
            events: s.events,
            pending: s.pending,
            mine: s.mine,
            pipes,
            epoch,
            beat_seq: 0,
            rbuf: Vec::with_capacity(READ_CHUNK),
            flush_until: None,
            done: false,
        }
    }

    /// One non-blocking pass; true if it moved anything (or is flushing).
    /// After the flush that follows `shutdown` (or at once after `kill`),
    /// [`Driver::done`] is true and this does nothing.
    pub(crate) fn poll(&mut self) -> bool {
        if self.done {
            return false;
        }
        if self.sh.closing.load(Ordering::Acquire) {
            return self.poll_closing();
        }
        let mut busy = self.poll_control();
        busy |= self.poll_in();
        busy |= self.poll_out();
        let now = Instant::now();
        if now >= self.next_beat {
            self.beat(now);
        }
        busy
    }

    pub(crate) fn done(&self) -> bool {
        self.done
    }

    /// How long the node may go without a poll (the next heartbeat, at most
    /// the backstop).
    pub(crate) fn timeout(&self) -> Duration {
        self.next_beat
            .saturating_duration_since(Instant::now())
            .min(BACKSTOP)
    }

    /// This node's doorbell: rung by peers after writing to (or reading
    /// from) its inbox, and by `kick` (local sends, control events, shutdown).
    pub(crate) fn bell(&self) -> Bell<'_> {
        self.mine.bell()
    }

    pub(crate) fn control(&self) -> &Arc<Mesh> {
        &self.control
    }

    /// After `shutdown`: flush `Shutdown` into the rings (bounded by
    /// `FLUSH`); after `kill`: drop everything, as a crash.
    fn poll_closing(&mut self) -> bool {
        if !self.sh.killed.load(Ordering::Acquire) {
            let until = *self
                .flush_until
                .get_or_insert_with(|| Instant::now() + FLUSH);
            self.poll_out();
            let queued = self.sh.shutdown_queued.load(Ordering::SeqCst);
            if !(queued && self.flushed()) && Instant::now() < until {
                return true;
            }
        }
        self.done = true;
        true
    }

    fn flushed(&self) -> bool {
        self.pipes.iter().enumerate().all(|(p, pipe)| {
            pipe.as_ref().is_none_or(|pipe| {
                self.sh.state(p as u32) != UP
                    || (pipe.sent == pipe.pending.len()
                        && self.sh.peers[p as u32].queue.lock().is_empty())
            })
        })
    }

    /// The threaded driver: polls until done, spinning then sleeping on
    /// the doorbell when idle, then closes the control mesh. Shards that
    /// spin for work poll it too (see [`help`]): whoever takes the lock
    /// polls, so a round trip needs no hand-off to this thread while a
    /// shard is awake, and this thread, which runs no task, still polls
    /// whenever every shard is busy.
    pub(crate) fn run(driver: Arc<Mutex<Driver>>) {
        let (mine, spin, sh) = {
            let d = driver.lock();
            (d.mine.clone(), d.spin, d.sh.clone())
        };
        let mut idle_since = None;
        loop {
            let Some(mut d) = driver.try_lock() else {
                // A shard polls right now: it is awake and does the work.
                idle_since = None;
                std::thread::yield_now();
                continue;
            };
            if d.done {
                break;
            }
            let busy = d.poll();
            let closing = d.sh.closing.load(Ordering::Relaxed);
            drop(d);
            if busy {
                idle_since = None;
                if closing {
                    std::thread::yield_now(); // flushing: let peers read
                }
                continue;
            }
            let now = Instant::now();
            let since = *idle_since.get_or_insert(now);
            if sh.helpers.load(Ordering::Relaxed) > 0 {
                // A shard spins and polls the rings: stay off the cores,
                // yet off the doorbell too (a peer would pay a futex wake
                // per message to wake a thread nobody needs); look again
                // soon, as the shard may take up a long task at any time.
                std::thread::sleep(HELPED_NAP);
                // Should the shard stop helping, spin before sleeping on
                // the doorbell: a peer writing to a sleeping driver pays a
                // futex wake.
                idle_since = None;
                continue;
            }
            if now - since < spin {
                // Yield, not a bare pause: with more spinning threads than
                // cores (2-core hosts: a shard, both I/O threads) a pause
                // would hold the core for a whole time slice while the
                // thread we wait for cannot run; when nothing else is
                // runnable, sched_yield returns in a fraction of a µs.
                std::thread::yield_now();
                continue;
            }
            let timeout = driver.lock().timeout();
            mine.bell().sleep(timeout, || driver.lock().idle());
            idle_since = None;
        }
        // Not under the lock: closing the control mesh joins its thread.
        let control = driver.lock().control.clone();
        if sh.killed.load(Ordering::Acquire) {
            control.kill();
        } else {
            control.shutdown();
        }
    }

    /// Checked after announcing sleep: every condition some other thread or
    /// process may change and then ring our bell for.
    pub(crate) fn idle(&self) -> bool {
        if self.sh.closing.load(Ordering::SeqCst) || self.pending.load(Ordering::SeqCst) {
            return false;
        }
        self.pipes.iter().enumerate().all(|(p, pipe)| {
            let Some(pipe) = pipe else { return true };
            if self.sh.state(p as u32) != UP {
                return true;
            }
            let waiting_out = pipe.sent < pipe.pending.len();
            pipe.inn.available() == Ok(0)
                && !(waiting_out && pipe.out.free() != Ok(0))
                && (waiting_out || self.sh.peers[p as u32].queue.lock().is_empty())
        })
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn poll_control(&mut self) -> bool {
        if !self.pending.swap(false, Ordering::AcqRel) {
            return false;
        }
        while let Ok((peer, ctl)) = self.events.try_recv() {
            if let Ctl::Down(why) = ctl {
                if self.sh.state(peer) == UP {
                    self.down(peer, why);
                }
            }
        }
        true
    }

    fn poll_in(&mut self) -> bool {
        let mut busy = false;
        for p in 0..self.pipes.len() {
            if self.pipes[p].is_none() || self.sh.state(p as u32) != UP {
                continue;
            }
            let pipe = self.pipes[p].as_mut().expect("checked");
            self.rbuf.clear();
            match pipe.inn.read(&mut self.rbuf, READ_CHUNK) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(e) => {
                    self.corrupt(p as u32, e);
                    continue;
                }
            }
            busy = true;
            pipe.out.bell().ring(); // its producer may wait for space
            pipe.dec.feed(&self.rbuf);
            loop {
                let pipe = self.pipes[p].as_mut().expect("checked");
                match pipe.dec.next_batch() {
                    Ok(Some(msgs)) => {
                        if !self.deliver(p as u32, msgs) {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(node = self.cfg.node, peer = p, "closing the ring: {e}");
                        self.down(p as u32, PeerDown::Protocol(e));
                        break;
                    }
                }
            }
        }
        busy
    }

    fn corrupt(&mut self, peer: u32, e: Corrupt) {
        tracing::warn!(node = self.cfg.node, peer, "{e}");
        self.down(peer, PeerDown::ConnectionLost(e.to_string()));
    }

    /// Encodes what the runtime queued and writes what fits; the rest waits
    /// in `pending` (the queue keeps filling meanwhile: never dropped).
    fn poll_out(&mut self) -> bool {
        let mut busy = false;
        for p in 0..self.pipes.len() {
            let Some(pipe) = self.pipes[p].as_mut() else {
                continue;
            };
            if self.sh.state(p as u32) != UP {
                continue;
            }
            if pipe.sent == pipe.pending.len() {
                let batch = std::mem::take(&mut *self.sh.peers[p as u32].queue.lock());
                if batch.is_empty() {
                    continue;
                }
                pipe.pending.clear();
                pipe.sent = 0;
                for (i, e) in pipe.enc.encode_split(batch, &mut pipe.pending) {
                    tracing::error!(
                        node = self.cfg.node,
                        peer = p,
                        index = i,
                        "message dropped: {e}"
                    );
                }
                self.sh
                    .bytes_out
                    .fetch_add(pipe.pending.len() as u64, Ordering::Relaxed);
            }
            match pipe.out.write(&pipe.pending[pipe.sent..]) {
                Ok(0) => {}
                Ok(n) => {
                    pipe.sent += n;
                    pipe.out.bell().ring();
                    busy = true;
                }
                Err(e) => self.corrupt(p as u32, e),
            }
        }
        busy
    }

    /// As the socket driver's `deliver`: takes out what the transport
    /// consumes, hands the rest over. False once the peer is gone. (Joining
    /// happened on the control mesh: `Join` and `Members` are dropped.)
    fn deliver(&mut self, peer: u32, msgs: Vec<Msg>) -> bool {
        let Some(c) = self.sh.deliver(peer, self.now_ms(), msgs) else {
            return false;
        };
        for node in c.dead {
            if self.sh.state(node) == UP {
                self.down(node, PeerDown::Announced);
            }
        }
        for node in c.left_nodes {
            self.sh.announced_left(node);
        }
        if c.left {
            self.sh.mark_left(peer);
            return false;
        }
        true
    }

    /// Reports `peer` down (once), and tells the others as
    /// `Shared::telling` says.
    fn down(&mut self, peer: u32, why: PeerDown) {
        let telling = self.sh.telling(peer, &why);
        if self.sh.mark_dead(peer, why) {
            self.sh.tell_dead(peer, telling);
        }
    }

    fn beat(&mut self, now: Instant) {
        self.next_beat = now + self.cfg.heartbeat;
        self.beat_seq += 1;
        let now_ms = self.now_ms();
        let dead_after = self.cfg.dead_after.as_millis() as u64;
        for (peer, silent) in self.sh.heartbeat_round(self.beat_seq, now_ms, dead_after) {
            self.down(
                peer,
                PeerDown::HeartbeatTimeout(Duration::from_millis(silent)),
            );
        }
    }
}

/// What a shard spinning for work calls (`Mesh::help_poll`): one pass
/// over the rings if no other thread is polling them, as the I/O thread
/// would; whether it moved anything. Holds the driver weakly, so that the
/// help registered in `Shared` keeps no driver alive past its I/O thread.
pub(crate) fn help(driver: &std::sync::Weak<Mutex<Driver>>) -> bool {
    let Some(driver) = driver.upgrade() else {
        return false;
    };
    let Some(mut d) = driver.try_lock() else {
        return false;
    };
    !d.done && d.poll()
}
