//! The shared-memory driver: meshes in one process and across two processes
//! (this test binary re-run as node 1), each in a private directory that
//! must be empty once the meshes are up and after they end.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{chunk, free_port, offsets_from, send_mixed_chunks, wait_for, Dir, Recorder};
use owl_transport::proto::{Msg, OwlMsg};
use owl_transport::{start, Handler, Link, Mesh, MeshConfig, PeerDown, ShmConfig, TransportKind};

const SECRET: [u8; 32] = [7; 32];

fn config(node: u32, nodes: u32, head: SocketAddr, dir: &Dir, ring: usize) -> MeshConfig {
    let listen = if node == 0 {
        head
    } else {
        "127.0.0.1:0".parse().unwrap()
    };
    let mut c = MeshConfig::new(node, nodes, listen, head, SECRET);
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

fn cluster(n: u32, dir: &Dir, ring: usize) -> (Vec<Arc<Mesh>>, Vec<Arc<Recorder>>) {
    let head = free_port();
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let rec = Arc::new(Recorder::default());
            let cfg = config(i, n, head, dir, ring);
            let h = rec.clone();
            (std::thread::spawn(move || start(cfg, h)), rec)
        })
        .collect();
    let mut meshes = Vec::new();
    let mut recs = Vec::new();
    for (h, rec) in handles {
        meshes.push(h.join().unwrap().expect("mesh starts"));
        recs.push(rec);
    }
    assert!(
        dir.files().is_empty(),
        "inboxes unlinked once mapped: {:?}",
        dir.files()
    );
    (meshes, recs)
}

/// Every pair of 3 nodes, small and large messages through 4 KiB rings:
/// frames far larger than a ring are split and reassembled, in order, and
/// writers wait for space instead of dropping.
#[test]
fn shm_mesh_delivers_in_order_through_small_rings() {
    let dir = Dir::new("order");
    let (meshes, recs) = cluster(3, &dir, 4096);
    const N: u64 = 300;
    send_mixed_chunks(&meshes, N);
    for (i, rec) in recs.iter().enumerate() {
        wait_for("all messages", || rec.msgs.lock().len() == 2 * N as usize);
        for from in (0..3u32).filter(|&f| f as usize != i) {
            let got = offsets_from(&rec.msgs, from);
            assert_eq!(got, (0..N).collect::<Vec<_>>(), "FIFO from {from} to {i}");
        }
    }
    for m in &meshes {
        m.shutdown();
    }
    for rec in &recs {
        assert!(
            rec.down.lock().is_empty(),
            "clean shutdown: {:?}",
            rec.down.lock()
        );
    }
}

/// Ping-pong with pauses long enough for both I/O threads to fall asleep on
/// their futexes: every round trip must complete promptly (a lost wake-up
/// would wait for the 50 ms backstop or the next heartbeat).
#[test]
fn shm_wakes_sleeping_peers_without_losing_wake_ups() {
    let dir = Dir::new("wake");
    let (meshes, recs) = cluster(2, &dir, 1 << 16);
    let mut slow = 0;
    for k in 0..300u64 {
        let before = recs[1].count.load(Ordering::Acquire);
        let t0 = Instant::now();
        meshes[0].send(1, chunk(0, k, 8));
        while recs[1].count.load(Ordering::Acquire) == before {
            std::hint::spin_loop();
            assert!(t0.elapsed() < Duration::from_secs(5), "round {k} lost");
        }
        if t0.elapsed() > Duration::from_millis(20) {
            slow += 1;
        }
        // Past the 50 µs spin: the receiver sleeps when the next one comes.
        std::thread::sleep(Duration::from_micros(100 + k * 13 % 900));
    }
    // A lost wake-up costs up to 50 ms; scheduling hiccups on a loaded
    // 2-core machine may cost a few ms, rarely 20.
    assert!(slow <= 3, "{slow} of 300 hand-offs took over 20 ms");
    for m in &meshes {
        m.shutdown();
    }
}

#[test]
fn shm_killed_peer_is_reported_down_once_and_announced() {
    let dir = Dir::new("kill");
    let (meshes, recs) = cluster(3, &dir, 1 << 16);
    meshes[2].kill();
    for rec in &recs[..2] {
        wait_for("peer down", || rec.down.lock().iter().any(|(p, _)| *p == 2));
    }
    std::thread::sleep(Duration::from_millis(200));
    for rec in &recs[..2] {
        assert_eq!(
            rec.down.lock().len(),
            1,
            "reported once: {:?}",
            rec.down.lock()
        );
    }
    meshes[0].send(1, chunk(0, 1, 3));
    wait_for("message after a death", || !recs[1].msgs.lock().is_empty());
    assert!(!meshes[0].is_up(2));
    meshes[0].shutdown();
    meshes[1].shutdown();
}

const CHILD: &str = "OWL_SHM_TEST_CHILD";

/// Node 1 in a second process: echoes every Chunk back to node 0 until told
/// `Shutdown`, or forever (the parent kills it) when asked to.
fn child(head: SocketAddr, dir: PathBuf) {
    /// Echoes every chunk back; what arrives before `start` has returned
    /// (the parent may send as soon as its own start returns) is held and
    /// echoed, in order, once the mesh is known.
    #[derive(Default)]
    struct State {
        mesh: Option<Arc<Mesh>>,
        early: Vec<(u32, Msg)>,
    }
    #[derive(Default)]
    struct Echo(parking_lot::Mutex<State>);
    impl Handler for Echo {
        fn on_msgs(&self, from: u32, msgs: Vec<Msg>) {
            let mut st = self.0.lock();
            for m in msgs
                .into_iter()
                .filter(|m| matches!(m, Msg::Owl(OwlMsg::Chunk { .. })))
            {
                match &st.mesh {
                    Some(link) => link.send(from, m),
                    None => st.early.push((from, m)),
                }
            }
        }
        fn on_peer_down(&self, _: u32, _: PeerDown) {}
    }
    let d = Dir(dir);
    let echo = Arc::new(Echo::default());
    let mesh = start(config(1, 2, head, &d, 4096), echo.clone()).expect("child joins");
    {
        let mut st = echo.0.lock();
        for (from, m) in std::mem::take(&mut st.early) {
            mesh.send(from, m);
        }
        st.mesh = Some(mesh.clone());
    }
    while mesh.is_up(0) {
        std::thread::sleep(Duration::from_millis(5));
    }
    mesh.shutdown();
    std::mem::forget(d); // the parent owns the directory
}

/// Two processes exchange frames through rings (echo, in order, some larger
/// than the ring); then the child is killed with SIGKILL and the parent
/// reports it down once.
#[test]
fn shm_two_processes_echo_then_child_killed() {
    if let Ok(v) = std::env::var(CHILD) {
        let (head, dir) = v.split_once('|').expect("head|dir");
        return child(head.parse().unwrap(), PathBuf::from(dir));
    }
    let dir = Dir::new("procs");
    let head = free_port();
    let mut proc = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "shm_two_processes_echo_then_child_killed",
            "--nocapture",
        ])
        .env(CHILD, format!("{head}|{}", dir.0.display()))
        .spawn()
        .unwrap();
    let rec = Arc::new(Recorder::default());
    let mesh = start(config(0, 2, head, &dir, 4096), rec.clone()).expect("parent starts");
    // The child unlinks its inbox when our "mapped" reaches it, which may
    // be just after our own start returned.
    wait_for("inboxes unlinked once mapped", || dir.files().is_empty());
    const N: u64 = 200;
    for k in 0..N {
        mesh.send(
            1,
            chunk(0, k, if k % 40 == 3 { 20_000 } else { k as usize }),
        );
    }
    wait_for("echoes", || rec.msgs.lock().len() == N as usize);
    let got: Vec<u64> = rec
        .msgs
        .lock()
        .iter()
        .map(|(_, m)| match m {
            Msg::Owl(OwlMsg::Chunk { offset, data, .. }) => {
                assert!(data
                    .iter()
                    .enumerate()
                    .all(|(j, b)| *b == (j as u64 + offset) as u8));
                *offset
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(got, (0..N).collect::<Vec<_>>());
    proc.kill().unwrap();
    proc.wait().unwrap();
    wait_for("child reported down", || !rec.down.lock().is_empty());
    std::thread::sleep(Duration::from_millis(200));
    let down = rec.down.lock().clone();
    assert_eq!(down.len(), 1, "{down:?}");
    assert_eq!(down[0].0, 1);
    mesh.shutdown();
}
