//! An in-process simulated network for deterministic tests.
//!
//! Every endpoint is a [`Link`] delivering to a [`Handler`], like a real
//! mesh, and every frame goes through the real [`FrameEncoder`] and
//! [`FrameDecoder`], so the faults injected here are caught by the same
//! sequence checks as on a socket: a duplicated frame is dropped silently, a
//! lost frame makes the next one a gap, which closes the link and reports
//! both ends down.
//!
//! Time is a manual clock ([`SimNet::advance`], [`SimNet::run_until_idle`])
//! or real time ([`SimNet::start_auto`]). Delays come from a seeded
//! generator, so a seed replays a run exactly. Invariant: each directed
//! link delivers its frames in the order they were sent (a link is a FIFO
//! queue whose head waits for its delay), unless a fault is injected.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::api::{Handler, Link, PeerDown};
use crate::proto::{FrameDecoder, FrameEncoder, Msg, DEFAULT_MAX_FRAME};

/// The simulated network's parameters.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Per-frame delay, drawn uniformly from `min_delay..=max_delay`.
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// Send heartbeats and declare silent peers dead (only while the clock
    /// advances with [`SimNet::advance`] or auto mode).
    pub heartbeat: Option<Duration>,
    pub dead_after: Duration,
    pub max_frame: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_micros(10),
            max_delay: Duration::from_micros(100),
            heartbeat: None,
            dead_after: Duration::from_millis(500),
            max_frame: DEFAULT_MAX_FRAME,
        }
    }
}

/// One direction of one link.
struct Dir {
    up: bool,
    pending: Vec<Msg>,
    enc: FrameEncoder,
    dec: FrameDecoder,
    /// Frames on the wire, oldest first, with their earliest arrival time.
    inflight: VecDeque<(Duration, Vec<u8>)>,
    drop_next: bool,
    dup_next: bool,
    last_heard: Duration,
}

struct State {
    cfg: SimConfig,
    now: Duration,
    rng: u64,
    handlers: Vec<Arc<dyn Handler>>,
    crashed: Vec<bool>,
    /// `dirs[from][to]`.
    dirs: Vec<Vec<Dir>>,
    /// Cut directions `(from, to)` and what happens to their frames.
    partitioned: BTreeMap<(u32, u32), Cut>,
    /// "Look at the head of link (from, to) at time t."
    events: BTreeSet<(Duration, u64, u32, u32)>,
    event_seq: u64,
    next_beat: Duration,
    beat_seq: u64,
}

/// What a partitioned direction does with its frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cut {
    /// Held until healed, then delivered in order (a congested or stalled
    /// path).
    Hold,
    /// Lost (a dropping path): after healing, the next frame that gets
    /// through shows the gap and closes the link, as on a socket.
    Lose,
}

enum Callback {
    Msgs(Arc<dyn Handler>, u32, Vec<Msg>),
    Down(Arc<dyn Handler>, u32, PeerDown),
}

impl State {
    fn rand(&mut self) -> u64 {
        // splitmix64: tiny, seedable, good enough for delays.
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn delay(&mut self) -> Duration {
        let lo = self.cfg.min_delay.as_nanos() as u64;
        let hi = self.cfg.max_delay.as_nanos().max(lo as u128) as u64;
        Duration::from_nanos(lo + self.rand() % (hi - lo + 1))
    }

    fn arm(&mut self, from: u32, to: u32, at: Duration) {
        self.event_seq += 1;
        self.events.insert((at, self.event_seq, from, to));
    }

    fn cut(&self, from: u32, to: u32) -> Option<Cut> {
        self.partitioned.get(&(from, to)).copied()
    }

    /// Turns every non-empty send queue into one frame on the wire.
    fn flush(&mut self) {
        let n = self.handlers.len() as u32;
        for from in 0..n {
            for to in 0..n {
                if self.dirs[from as usize][to as usize].pending.is_empty() {
                    continue;
                }
                let at = self.now + self.delay();
                let lost = self.cut(from, to) == Some(Cut::Lose);
                let d = &mut self.dirs[from as usize][to as usize];
                let batch = std::mem::take(&mut d.pending);
                let mut frame = Vec::new();
                for (i, e) in d.enc.encode_split(batch, &mut frame) {
                    tracing::error!(from, to, index = i, "sim: message dropped: {e}");
                }
                if std::mem::take(&mut d.drop_next) || lost {
                    continue; // lost on the wire; the next frame will show a gap
                }
                let copies = if std::mem::take(&mut d.dup_next) {
                    2
                } else {
                    1
                };
                let was_empty = d.inflight.is_empty();
                for _ in 0..copies {
                    d.inflight.push_back((at, frame.clone()));
                }
                if was_empty {
                    self.arm(from, to, at);
                }
            }
        }
    }

    /// Closes the link between `a` and `b` (both directions) and reports
    /// each live end once.
    fn link_down(
        &mut self,
        a: u32,
        b: u32,
        why_at_a: PeerDown,
        why_at_b: PeerDown,
        out: &mut Vec<Callback>,
    ) {
        for (x, y, why) in [(a, b, why_at_a), (b, a, why_at_b)] {
            let d = &mut self.dirs[x as usize][y as usize];
            let was_up = std::mem::replace(&mut d.up, false);
            d.pending.clear();
            d.inflight.clear();
            if was_up && !self.crashed[x as usize] {
                out.push(Callback::Down(self.handlers[x as usize].clone(), y, why));
            }
        }
    }

    /// Delivers the frame at the head of link (from, to).
    fn deliver(&mut self, from: u32, to: u32, out: &mut Vec<Callback>) {
        let cut = self.cut(from, to);
        if cut == Some(Cut::Hold) {
            return; // held; `heal` re-arms the link
        }
        let now = self.now;
        let d = &mut self.dirs[from as usize][to as usize];
        let Some((at, frame)) = d.inflight.pop_front() else {
            return;
        };
        if cut == Some(Cut::Lose) {
            // Already on the wire when the path began to drop: lost too.
            if let Some(t) = d.inflight.front().map(|(t, _)| (*t).max(now)) {
                self.arm(from, to, t);
            }
            return;
        }
        debug_assert!(at <= now);
        let next = d.inflight.front().map(|(t, _)| (*t).max(now));
        d.dec.feed(&frame);
        d.last_heard = now;
        let mut failure = None;
        loop {
            match d.dec.next_batch() {
                Ok(Some(msgs)) => {
                    if d.up && !self.crashed[to as usize] {
                        out.push(Callback::Msgs(
                            self.handlers[to as usize].clone(),
                            from,
                            msgs,
                        ));
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failure {
            tracing::warn!(from, to, "sim: closing the link: {e}");
            let lost = PeerDown::ConnectionLost("the peer closed the connection".into());
            return self.link_down(to, from, PeerDown::Protocol(e), lost, out);
        }
        if let Some(t) = next {
            self.arm(from, to, t);
        }
    }

    fn beat(&mut self, out: &mut Vec<Callback>) {
        self.beat_seq += 1;
        let n = self.handlers.len() as u32;
        let dead_after = self.cfg.dead_after;
        for a in 0..n {
            for b in 0..n {
                if a == b || self.crashed[a as usize] || !self.dirs[a as usize][b as usize].up {
                    continue;
                }
                let silent = self
                    .now
                    .saturating_sub(self.dirs[b as usize][a as usize].last_heard);
                if silent > dead_after {
                    let why = PeerDown::HeartbeatTimeout(silent);
                    // Only `a` has noticed; `b` finds out on its own beat.
                    let d = &mut self.dirs[a as usize][b as usize];
                    d.up = false;
                    d.pending.clear();
                    out.push(Callback::Down(self.handlers[a as usize].clone(), b, why));
                    continue;
                }
                let seq = self.beat_seq;
                self.dirs[a as usize][b as usize]
                    .pending
                    .push(Msg::Heartbeat {
                        seq,
                        queued: 0,
                        idle_shards: 0,
                        room: Vec::new(),
                    });
            }
        }
    }
}

/// The simulated network. Cloning gives another handle to the same network.
#[derive(Clone)]
pub struct SimNet {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for SimNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.state.lock();
        f.debug_struct("SimNet")
            .field("nodes", &st.handlers.len())
            .field("now", &st.now)
            .finish()
    }
}

/// One simulated node's [`Link`].
#[derive(Debug)]
pub struct SimLink {
    net: SimNet,
    me: u32,
    nodes: u32,
}

impl Link for SimLink {
    fn send(&self, to: u32, msg: Msg) {
        let mut st = self.net.state.lock();
        if to >= self.nodes || to == self.me || st.crashed[self.me as usize] {
            return;
        }
        let d = &mut st.dirs[self.me as usize][to as usize];
        if d.up {
            d.pending.push(msg);
        }
    }
    fn me(&self) -> u32 {
        self.me
    }
    fn nodes(&self) -> u32 {
        self.nodes
    }
}

impl SimNet {
    /// A network of `handlers.len()` nodes, all connected, clock at zero.
    pub fn new(
        seed: u64,
        cfg: SimConfig,
        handlers: Vec<Arc<dyn Handler>>,
    ) -> (SimNet, Vec<Arc<SimLink>>) {
        let n = handlers.len();
        let dirs = (0..n)
            .map(|a| {
                (0..n)
                    .map(|b| Dir {
                        up: a != b,
                        pending: Vec::new(),
                        enc: FrameEncoder::plaintext(cfg.max_frame),
                        dec: FrameDecoder::plaintext(cfg.max_frame),
                        inflight: VecDeque::new(),
                        drop_next: false,
                        dup_next: false,
                        last_heard: Duration::ZERO,
                    })
                    .collect()
            })
            .collect();
        let next_beat = cfg.heartbeat.unwrap_or(Duration::MAX);
        let net = SimNet {
            state: Arc::new(Mutex::new(State {
                cfg,
                now: Duration::ZERO,
                rng: seed,
                handlers,
                crashed: vec![false; n],
                dirs,
                partitioned: BTreeMap::new(),
                events: BTreeSet::new(),
                event_seq: 0,
                next_beat,
                beat_seq: 0,
            })),
        };
        let links = (0..n as u32)
            .map(|me| {
                Arc::new(SimLink {
                    net: net.clone(),
                    me,
                    nodes: n as u32,
                })
            })
            .collect();
        (net, links)
    }

    /// The simulated clock.
    pub fn now(&self) -> Duration {
        self.state.lock().now
    }

    /// Runs everything due up to `now + dt` (deliveries, heartbeats, timeouts),
    /// then sets the clock there.
    pub fn advance(&self, dt: Duration) {
        let target = self.now() + dt;
        self.run(Some(target));
    }

    /// Delivers every frame in flight, moving the clock as needed, without
    /// heartbeats; returns when no frame is left (held frames of a partition
    /// stay held). Bounded: at most a million deliveries.
    pub fn run_until_idle(&self) {
        self.run(None);
    }

    fn run(&self, target: Option<Duration>) {
        for _ in 0..1_000_000 {
            let mut out = Vec::new();
            {
                let mut st = self.state.lock();
                st.flush();
                let ev = st.events.first().copied();
                let beat = st.next_beat;
                let limit = target.unwrap_or(Duration::MAX);
                match ev {
                    Some((at, _, from, to)) if at <= limit && (target.is_none() || at <= beat) => {
                        st.events.pop_first();
                        st.now = st.now.max(at);
                        st.deliver(from, to, &mut out);
                    }
                    _ if target.is_some() && beat <= limit => {
                        st.now = st.now.max(beat);
                        st.next_beat = beat + st.cfg.heartbeat.unwrap_or(Duration::MAX / 2);
                        st.beat(&mut out);
                    }
                    _ => {
                        if let Some(t) = target {
                            st.now = st.now.max(t);
                        }
                        return;
                    }
                }
            }
            // Handlers run without the lock: they may send.
            for cb in out {
                match cb {
                    Callback::Msgs(h, from, msgs) => h.on_msgs(from, msgs),
                    Callback::Down(h, peer, why) => h.on_peer_down(peer, why),
                }
            }
        }
        tracing::warn!("sim: run stopped after a million steps");
    }

    /// Holds every frame between `a` and `b` until [`Self::heal`]. Held
    /// long enough, each side declares the other dead (heartbeats are
    /// frames too).
    pub fn partition(&self, a: u32, b: u32) {
        let mut st = self.state.lock();
        st.partitioned.insert((a, b), Cut::Hold);
        st.partitioned.insert((b, a), Cut::Hold);
    }

    /// Holds frames from `from` to `to` only: `to` hears nothing while
    /// `from` still hears `to`, until [`Self::heal`].
    pub fn partition_one_way(&self, from: u32, to: u32) {
        self.state.lock().partitioned.insert((from, to), Cut::Hold);
    }

    /// Loses every frame between `a` and `b` (those in flight included)
    /// until [`Self::heal`]; the first frame after healing shows the gap
    /// and closes the link, reporting both ends down.
    pub fn partition_lossy(&self, a: u32, b: u32) {
        let mut st = self.state.lock();
        st.partitioned.insert((a, b), Cut::Lose);
        st.partitioned.insert((b, a), Cut::Lose);
    }

    /// Ends every partition between `a` and `b`, both directions; held
    /// frames go out in their order.
    pub fn heal(&self, a: u32, b: u32) {
        let mut st = self.state.lock();
        st.partitioned.remove(&(a, b));
        st.partitioned.remove(&(b, a));
        for (x, y) in [(a, b), (b, a)] {
            if !st.dirs[x as usize][y as usize].inflight.is_empty() {
                let at = st.now + st.delay();
                st.arm(x, y, at);
            }
        }
    }

    /// Stops `node` dead: its frames vanish, its peers are told at once.
    pub fn crash(&self, node: u32) {
        let mut out = Vec::new();
        {
            let mut st = self.state.lock();
            st.crashed[node as usize] = true;
            for peer in 0..st.handlers.len() as u32 {
                if peer != node {
                    st.link_down(peer, node, PeerDown::Crashed, PeerDown::Crashed, &mut out);
                }
            }
        }
        for cb in out {
            if let Callback::Down(h, peer, why) = cb {
                h.on_peer_down(peer, why);
            }
        }
    }

    /// The next frame from `from` to `to` is lost.
    pub fn drop_next_frame(&self, from: u32, to: u32) {
        self.state.lock().dirs[from as usize][to as usize].drop_next = true;
    }

    /// The next frame from `from` to `to` arrives twice.
    pub fn duplicate_next_frame(&self, from: u32, to: u32) {
        self.state.lock().dirs[from as usize][to as usize].dup_next = true;
    }

    /// Whether `from` still considers its link to `to` open.
    pub fn link_up(&self, from: u32, to: u32) -> bool {
        self.state.lock().dirs[from as usize][to as usize].up
    }

    /// Duplicate frames the receiver `to` dropped on the link from `from`.
    pub fn duplicates_dropped(&self, from: u32, to: u32) -> u64 {
        self.state.lock().dirs[from as usize][to as usize]
            .dec
            .duplicates()
    }

    /// Drives the clock from a thread in real time, `tick` at a time, until
    /// the returned guard is dropped: for code under a real runtime.
    pub fn start_auto(&self, tick: Duration) -> SimAuto {
        let stop = Arc::new(AtomicBool::new(false));
        let (net, s) = (self.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("owl-sim-clock".into())
            .spawn(move || {
                while !s.load(Ordering::Acquire) {
                    std::thread::sleep(tick);
                    net.advance(tick);
                }
            })
            .expect("spawn the sim clock thread");
        SimAuto {
            stop,
            thread: Some(thread),
        }
    }
}

/// Stops auto mode when dropped.
#[derive(Debug)]
pub struct SimAuto {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for SimAuto {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
