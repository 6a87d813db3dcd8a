//! The shm mesh hosted on threads the test drives (`start_shm_hosted`): a
//! host thread per node polls, and when idle arms the doorbell bridge and
//! parks on a condvar, as an owl shard would on its `Notify`.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{chunk, free_port, offsets_from, send_mixed_chunks, wait_for, Dir};
use owl_transport::proto::{Msg, OwlMsg};
use owl_transport::{
    start, start_shm_hosted, Handler, Link, Mesh, MeshConfig, PeerDown, ShmConfig, ShmHost,
    TransportKind, Wake,
};
use parking_lot::{Condvar, Mutex};

/// Records what arrives; echoes `Chunk`s back when `echo` is set.
#[derive(Default)]
struct Recorder {
    msgs: Mutex<Vec<(u32, Msg)>>,
    down: Mutex<Vec<(u32, PeerDown)>>,
    count: AtomicU64,
    echo: OnceLock<Arc<Mesh>>,
    /// The thread that called `on_msgs` last.
    thread: Mutex<Option<String>>,
}

impl Handler for Recorder {
    fn on_msgs(&self, from: u32, msgs: Vec<Msg>) {
        *self.thread.lock() = std::thread::current().name().map(str::to_owned);
        let mut m = self.msgs.lock();
        for msg in msgs {
            if matches!(msg, Msg::Heartbeat { .. }) {
                continue;
            }
            if let (Some(link), Msg::Owl(OwlMsg::Chunk { .. })) = (self.echo.get(), &msg) {
                link.send(from, msg.clone());
            }
            m.push((from, msg));
            self.count.fetch_add(1, Ordering::Release);
        }
    }
    fn on_peer_down(&self, peer: u32, why: PeerDown) {
        self.down.lock().push((peer, why));
    }
}

fn config(node: u32, nodes: u32, head: SocketAddr, dir: &Dir, ring: usize) -> MeshConfig {
    let listen = if node == 0 {
        head
    } else {
        "127.0.0.1:0".parse().unwrap()
    };
    let mut c = MeshConfig::new(node, nodes, listen, head, [9; 32]);
    c.kind = TransportKind::Shm(ShmConfig {
        ring_bytes: ring,
        ..ShmConfig::default()
    });
    c.shm_dir = Some(dir.0.clone());
    c.connect_timeout = Duration::from_secs(10);
    c.heartbeat = Duration::from_millis(50);
    c.dead_after = Duration::from_millis(1000);
    c
}

/// What a host thread did.
#[derive(Default)]
struct Stats {
    /// Times it armed and parked.
    parks: AtomicU64,
    /// Times `wake` was called.
    wakes: AtomicU64,
    /// Set while it is parked (armed, on the condvar).
    parked: AtomicBool,
    /// `poll` returned false after the mesh finished.
    quiet_after: AtomicBool,
}

/// A thread playing the shard: polls; idle longer than `spin`, arms and
/// parks (bounded by `ShmHost::timeout`) until woken.
struct HostThread {
    stats: Arc<Stats>,
    thread: Option<JoinHandle<()>>,
}

impl HostThread {
    fn spawn(node: u32, mut host: ShmHost, spin: Duration) -> Self {
        let stats = Arc::new(Stats::default());
        let st = stats.clone();
        let thread = std::thread::Builder::new()
            .name(format!("host-{node}"))
            .spawn(move || {
                let signal = Arc::new((Mutex::new(false), Condvar::new()));
                let (sig, st2) = (signal.clone(), st.clone());
                let wake: Wake = Arc::new(move || {
                    st2.wakes.fetch_add(1, Ordering::SeqCst);
                    *sig.0.lock() = true;
                    sig.1.notify_one();
                });
                let mut idle_since: Option<Instant> = None;
                while !host.is_finished() {
                    if host.poll() {
                        idle_since = None;
                        continue;
                    }
                    let since = *idle_since.get_or_insert_with(Instant::now);
                    if since.elapsed() < spin {
                        std::thread::yield_now();
                        continue;
                    }
                    let armed = host.arm(wake.clone());
                    st.parks.fetch_add(1, Ordering::Relaxed);
                    {
                        let mut woken = signal.0.lock();
                        if !*woken {
                            st.parked.store(true, Ordering::SeqCst);
                            signal.1.wait_for(&mut woken, host.timeout());
                            st.parked.store(false, Ordering::SeqCst);
                        }
                        *woken = false;
                    }
                    drop(armed);
                    idle_since = None;
                }
                let quiet = (0..100).all(|_| !host.poll());
                st.quiet_after.store(quiet, Ordering::SeqCst);
            })
            .unwrap();
        Self {
            stats,
            thread: Some(thread),
        }
    }

    /// Waits (bounded) for the host to see the mesh finished.
    fn join(mut self) -> Arc<Stats> {
        let t = self.thread.take().unwrap();
        let start = Instant::now();
        while !t.is_finished() {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "host thread did not end"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        t.join().unwrap();
        self.stats.clone()
    }
}

type Cluster = (Vec<Arc<Mesh>>, Vec<Arc<Recorder>>, Vec<Option<HostThread>>);

/// `n` nodes; those in `hosted` on host threads spinning `spin` before they
/// park, the others threaded (`start`). Hosts poll from the first moment,
/// before start-up ends.
fn cluster(
    n: u32,
    hosted: &[u32],
    dir: &Dir,
    ring: usize,
    spin: Duration,
    tweak: impl Fn(&mut MeshConfig),
) -> Cluster {
    let head = free_port();
    let mut waits = Vec::new();
    let mut recs = Vec::new();
    let mut hosts = Vec::new();
    for i in 0..n {
        let rec = Arc::new(Recorder::default());
        let mut cfg = config(i, n, head, dir, ring);
        tweak(&mut cfg);
        let h = rec.clone();
        if hosted.contains(&i) {
            let (starting, host) = start_shm_hosted(cfg, h).expect("hosted start");
            hosts.push(Some(HostThread::spawn(i, host, spin)));
            waits.push(std::thread::spawn(move || starting.wait()));
        } else {
            hosts.push(None);
            waits.push(std::thread::spawn(move || start(cfg, h)));
        }
        recs.push(rec);
    }
    let meshes = waits
        .into_iter()
        .map(|w| w.join().unwrap().expect("mesh starts"))
        .collect();
    (meshes, recs, hosts)
}

/// Two hosted nodes and a threaded one, 4 KiB rings: frames far larger than
/// a ring are split, reassembled and delivered in order on the host thread.
#[test]
fn hosted_shm_delivers_in_order_through_small_rings() {
    let dir = Dir::new("order");
    let (meshes, recs, hosts) = cluster(3, &[0, 1], &dir, 4096, Duration::from_micros(50), |_| {});
    assert!(dir.files().is_empty(), "inboxes unlinked once mapped");
    const N: u64 = 300;
    send_mixed_chunks(&meshes, N);
    for (i, rec) in recs.iter().enumerate() {
        wait_for("all messages", || rec.msgs.lock().len() == 2 * N as usize);
        for from in (0..3u32).filter(|&f| f as usize != i) {
            assert_eq!(
                offsets_from(&rec.msgs, from),
                (0..N).collect::<Vec<_>>(),
                "FIFO from {from} to {i}"
            );
        }
    }
    for (i, rec) in recs.iter().enumerate().take(2) {
        assert_eq!(
            rec.thread.lock().as_deref(),
            Some(format!("host-{i}").as_str()),
            "delivered on the host"
        );
    }
    for m in &meshes {
        m.shutdown();
    }
    for h in hosts.into_iter().flatten() {
        let st = h.join();
        assert!(st.quiet_after.load(Ordering::SeqCst));
    }
    for rec in &recs {
        assert!(rec.down.lock().is_empty(), "{:?}", rec.down.lock());
    }
}

/// 300 round trips with pauses, both hosts parking as soon as they are idle
/// (no spin): every hop wakes a parked host (a local send, then a peer's
/// frame), and a lost wake-up would cost the 50 ms park bound.
#[test]
fn hosted_shm_ping_pong_across_sleeps_loses_no_wake_up() {
    let dir = Dir::new("pingpong");
    let (meshes, recs, hosts) = cluster(2, &[0, 1], &dir, 1 << 16, Duration::ZERO, |c| {
        c.heartbeat = Duration::from_millis(200);
        c.dead_after = Duration::from_secs(5);
    });
    let _ = recs[1].echo.set(meshes[1].clone());
    let mut slow = 0;
    let t_all = Instant::now();
    for k in 0..300u64 {
        let t0 = Instant::now();
        meshes[0].send(1, chunk(0, k, 8));
        while recs[0].count.load(Ordering::Acquire) == k {
            std::hint::spin_loop();
            assert!(t0.elapsed() < Duration::from_secs(5), "round {k} lost");
        }
        if t0.elapsed() > Duration::from_millis(20) {
            slow += 1;
        }
        std::thread::sleep(Duration::from_micros(100 + k * 13 % 900));
    }
    assert!(slow <= 3, "{slow} of 300 round trips took over 20 ms");
    assert!(t_all.elapsed() < Duration::from_secs(10));
    assert_eq!(offsets_from(&recs[0].msgs, 1), (0..300).collect::<Vec<_>>());
    let stats: Vec<_> = hosts.iter().flatten().map(|h| h.stats.clone()).collect();
    for st in &stats {
        assert!(
            st.parks.load(Ordering::Relaxed) >= 300,
            "hosts parked between rounds"
        );
        assert!(st.wakes.load(Ordering::Relaxed) >= 300);
    }
    for m in &meshes {
        m.shutdown();
    }
    for h in hosts.into_iter().flatten() {
        h.join();
    }
}

/// A parked, armed host is woken by a local `Link::send` from another
/// thread (not by its park bound: heartbeats are 1 s apart).
#[test]
fn hosted_shm_local_send_wakes_the_armed_host() {
    let dir = Dir::new("localwake");
    let (meshes, recs, hosts) = cluster(2, &[0, 1], &dir, 1 << 16, Duration::ZERO, |c| {
        c.heartbeat = Duration::from_secs(1);
        c.dead_after = Duration::from_secs(10);
    });
    let st0 = hosts[0].as_ref().unwrap().stats.clone();
    for k in 0..20u64 {
        wait_for("host 0 parked", || st0.parked.load(Ordering::SeqCst));
        let wakes = st0.wakes.load(Ordering::SeqCst);
        let t0 = Instant::now();
        meshes[0].send(1, chunk(0, k, 16));
        wait_for("delivery", || {
            recs[1].count.load(Ordering::Acquire) == k + 1
        });
        assert!(st0.wakes.load(Ordering::SeqCst) > wakes, "woken by wake()");
        assert!(
            t0.elapsed() < Duration::from_millis(30),
            "woken promptly: {:?}",
            t0.elapsed()
        );
    }
    for m in &meshes {
        m.shutdown();
    }
    for h in hosts.into_iter().flatten() {
        h.join();
    }
}

/// `shutdown` from another thread while the hosts poll (one spinning, one
/// parked): `Shutdown` reaches the peer (no down report, it sees us left),
/// it returns promptly, the host ends and `poll` stays quiet afterwards.
#[test]
fn hosted_shm_shutdown_while_hosting() {
    let dir = Dir::new("shutdown");
    let (meshes, recs, mut hosts) =
        cluster(2, &[0, 1], &dir, 1 << 16, Duration::from_millis(1), |_| {});
    for k in 0..50 {
        meshes[0].send(1, chunk(0, k, 100));
    }
    wait_for("traffic", || recs[1].count.load(Ordering::Acquire) == 50);
    let t0 = Instant::now();
    meshes[0].shutdown();
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    let st = hosts[0].take().unwrap().join();
    assert!(st.quiet_after.load(Ordering::SeqCst), "poll quiet after");
    wait_for("peer sees us leave", || !meshes[1].is_up(0));
    std::thread::sleep(Duration::from_millis(300));
    assert!(recs[1].down.lock().is_empty(), "{:?}", recs[1].down.lock());
    let t1 = Instant::now();
    meshes[1].shutdown();
    assert!(t1.elapsed() < Duration::from_secs(2));
    hosts[1].take().unwrap().join();
    meshes[0].send(1, chunk(0, 99, 1)); // after shutdown: dropped, no panic
}

/// A killed hosted node is reported down once by each hosted peer (its
/// control connection drops), and the others still talk.
#[test]
fn hosted_shm_killed_peer_is_reported_down_once() {
    let dir = Dir::new("kill");
    let (meshes, recs, mut hosts) = cluster(
        3,
        &[0, 1, 2],
        &dir,
        1 << 16,
        Duration::from_micros(50),
        |_| {},
    );
    meshes[2].kill();
    hosts[2].take().unwrap().join();
    for rec in &recs[..2] {
        wait_for("peer down", || rec.down.lock().iter().any(|(p, _)| *p == 2));
    }
    std::thread::sleep(Duration::from_millis(300));
    for rec in &recs[..2] {
        assert_eq!(rec.down.lock().len(), 1, "once: {:?}", rec.down.lock());
    }
    meshes[0].send(1, chunk(0, 1, 3));
    wait_for("message after a death", || {
        recs[1].count.load(Ordering::Acquire) == 1
    });
    assert!(!meshes[0].is_up(2));
    meshes[0].shutdown();
    meshes[1].shutdown();
    for h in hosts.into_iter().flatten() {
        h.join();
    }
}

/// `start_shm_hosted` needs the shm kind.
#[test]
fn hosted_shm_rejects_other_kinds() {
    let head = free_port();
    let cfg = MeshConfig::new(0, 1, head, head, [1; 32]);
    let err = start_shm_hosted(cfg, Arc::new(Recorder::default())).unwrap_err();
    assert!(err.to_string().contains("Shm"), "{err}");
}
