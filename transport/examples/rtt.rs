//! Mesh round trip of a Heartbeat-sized message between two meshes in one
//! process, over TCP (encrypted and plaintext), QUIC and shared memory (Shm,
//! on its I/O threads, and hosted: `start_shm_hosted`, node 0's host thread
//! sending and polling for the reply, node 1's echoing from a poll loop, as
//! two owl shards would). Prints one JSON line.
//!
//! `cargo run --release -p owl-transport --example rtt [rounds]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use owl_transport::proto::{Msg, OwlMsg};
use owl_transport::{
    start, start_shm_hosted, Handler, Link, Mesh, MeshConfig, PeerDown, ShmConfig, TransportKind,
};

/// Echoes every Pull back (node 1) or signals the waiting sender (node 0).
struct Echo {
    link: std::sync::OnceLock<Arc<Mesh>>,
    got: std::sync::atomic::AtomicU64,
}

impl Handler for Echo {
    fn on_msgs(&self, from: u32, msgs: Vec<Msg>) {
        for m in msgs {
            if let Msg::Owl(OwlMsg::Pull { offset, .. }) = m {
                match self.link.get() {
                    Some(link) if link.me() == 1 => link.send(from, m),
                    _ => self
                        .got
                        .store(offset + 1, std::sync::atomic::Ordering::Release),
                }
            }
        }
    }
    fn on_peer_down(&self, _peer: u32, _why: PeerDown) {}
}

fn config(kind: TransportKind, node: u32, head: std::net::SocketAddr) -> MeshConfig {
    let listen = if node == 0 {
        head
    } else {
        "127.0.0.1:0".parse().unwrap()
    };
    let mut c = MeshConfig::new(node, 2, listen, head, [5; 32]);
    c.kind = kind;
    c.heartbeat = Duration::from_secs(1);
    c.dead_after = Duration::from_secs(10);
    c
}

fn pull(k: u64) -> Msg {
    let object = owl_transport::proto::WireId {
        node: 0,
        shard: 0,
        index: 0,
        gen: 0,
    };
    Msg::Owl(OwlMsg::Pull {
        object,
        offset: k,
        len: 0,
    })
}

fn percentiles(mut samples: Vec<f64>) -> (f64, f64) {
    samples.sort_by(|a, b| a.total_cmp(b));
    (
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
    )
}

/// Both nodes hosted: node 1's host thread polls in a loop (its handler
/// echoes), this thread hosts node 0 and polls until each reply is in.
/// `park`: node 1 arms and parks on a condvar whenever a poll finds nothing,
/// so every request wakes it through the doorbell bridge.
fn measure_shm_hosted(rounds: u64, park: bool) -> anyhow::Result<(f64, f64)> {
    use std::sync::atomic::Ordering;
    let kind = TransportKind::Shm(ShmConfig::default());
    let head = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let e0 = Arc::new(Echo {
        link: Default::default(),
        got: Default::default(),
    });
    let e1 = Arc::new(Echo {
        link: Default::default(),
        got: Default::default(),
    });
    let (s0, mut h0) = start_shm_hosted(config(kind, 0, head), e0.clone())?;
    let (s1, mut h1) = start_shm_hosted(config(kind, 1, head), e1.clone())?;
    let host1 = std::thread::spawn(move || {
        let signal = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let sig = signal.clone();
        let wake: owl_transport::Wake = Arc::new(move || {
            *sig.0.lock().unwrap() = true;
            sig.1.notify_one();
        });
        while !h1.is_finished() {
            if h1.poll() || !park {
                continue;
            }
            let _armed = h1.arm(wake.clone());
            let mut woken = signal.0.lock().unwrap();
            if !*woken {
                woken = signal.1.wait_timeout(woken, h1.timeout()).unwrap().0;
            }
            *woken = false;
        }
    });
    let w1 = std::thread::spawn(move || s1.wait());
    let m0 = s0.wait()?;
    let m1 = w1.join().expect("node 1 start")?;
    let _ = e0.link.set(m0.clone());
    let _ = e1.link.set(m1.clone());
    let mut samples = Vec::with_capacity(rounds as usize);
    for k in 0..rounds + 100 {
        let t0 = Instant::now();
        m0.send(1, pull(k));
        while e0.got.load(Ordering::Acquire) != k + 1 {
            h0.poll();
        }
        if k >= 100 {
            samples.push(t0.elapsed().as_secs_f64() * 1e6);
        }
    }
    // Shut down from other threads while the hosts still poll.
    let down = std::thread::spawn(move || m0.shutdown());
    while !h0.is_finished() && !down.is_finished() {
        h0.poll();
    }
    down.join().expect("shutdown");
    m1.shutdown();
    host1.join().expect("host 1");
    Ok(percentiles(samples))
}

fn measure(kind: TransportKind, rounds: u64) -> anyhow::Result<(f64, f64)> {
    let head = match kind {
        TransportKind::Quic => std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?,
        TransportKind::Tcp { .. } | TransportKind::Shm(_) => {
            std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?
        }
    };
    let mk = |node: u32| config(kind, node, head);
    let e0 = Arc::new(Echo {
        link: Default::default(),
        got: Default::default(),
    });
    let e1 = Arc::new(Echo {
        link: Default::default(),
        got: Default::default(),
    });
    let (c0, h0) = (mk(0), e0.clone());
    let t = std::thread::spawn(move || start(c0, h0));
    let m1 = start(mk(1), e1.clone())?;
    let m0 = t.join().expect("head thread")?;
    let _ = e0.link.set(m0.clone());
    let _ = e1.link.set(m1.clone());
    let mut samples = Vec::with_capacity(rounds as usize);
    for k in 0..rounds + 100 {
        let t0 = Instant::now();
        m0.send(1, pull(k));
        // Spin like a shard would: the round trip, not a wake-up, is measured.
        while e0.got.load(std::sync::atomic::Ordering::Acquire) != k + 1 {
            std::hint::spin_loop();
        }
        if k >= 100 {
            samples.push(t0.elapsed().as_secs_f64() * 1e6);
        }
    }
    m0.shutdown();
    m1.shutdown();
    Ok(percentiles(samples))
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let rounds: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(2000);
    let (tcp, tcp99) = measure(TransportKind::Tcp { plaintext: false }, rounds)?;
    let (plain, plain99) = measure(TransportKind::Tcp { plaintext: true }, rounds)?;
    let (quic, quic99) = measure(TransportKind::Quic, rounds)?;
    let (shm, shm99) = measure(TransportKind::Shm(ShmConfig::default()), rounds)?;
    let (hosted, hosted99) = measure_shm_hosted(rounds, false)?;
    let (parked, parked99) = measure_shm_hosted(rounds, true)?;
    println!(
        "{}",
        serde_json::json!({
            "bench": "transport_rtt",
            "rounds": rounds,
            "message": "Pull (heartbeat-sized)",
            "tcp_sealed_p50_us": tcp, "tcp_sealed_p99_us": tcp99,
            "tcp_plaintext_p50_us": plain, "tcp_plaintext_p99_us": plain99,
            "quic_p50_us": quic, "quic_p99_us": quic99,
            "shm_p50_us": shm, "shm_p99_us": shm99,
            "shm_hosted_p50_us": hosted, "shm_hosted_p99_us": hosted99,
            "shm_hosted_parking_p50_us": parked, "shm_hosted_parking_p99_us": parked99,
        })
    );
    Ok(())
}
