//! Mesh round trip of a Heartbeat-sized message between two meshes in one
//! process, over TCP (encrypted and plaintext), QUIC and shared memory (Shm).
//! Prints one JSON line.
//!
//! `cargo run --release -p owl-transport --example rtt [rounds]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use owl_transport::proto::Msg;
use owl_transport::{start, Handler, Link, Mesh, MeshConfig, PeerDown, ShmConfig, TransportKind};

/// Echoes every Pull back (node 1) or signals the waiting sender (node 0).
struct Echo {
    link: std::sync::OnceLock<Arc<Mesh>>,
    got: std::sync::atomic::AtomicU64,
}

impl Handler for Echo {
    fn on_msgs(&self, from: u32, msgs: Vec<Msg>) {
        for m in msgs {
            if let Msg::Pull { offset, .. } = m {
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

fn measure(kind: TransportKind, rounds: u64) -> anyhow::Result<(f64, f64)> {
    let head = match kind {
        TransportKind::Quic => std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?,
        TransportKind::Tcp { .. } | TransportKind::Shm(_) => {
            std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?
        }
    };
    let mk = |node: u32| {
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
    };
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
    let id = owl_transport::proto::WireId {
        node: 0,
        shard: 0,
        index: 0,
        gen: 0,
    };
    let mut samples = Vec::with_capacity(rounds as usize);
    for k in 0..rounds + 100 {
        let t0 = Instant::now();
        m0.send(
            1,
            Msg::Pull {
                object: id,
                offset: k,
                len: 0,
            },
        );
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
    samples.sort_by(|a, b| a.total_cmp(b));
    Ok((
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
    ))
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
        })
    );
    Ok(())
}
