//! What a connection opened when first needed costs: 24 meshes in one
//! process (past 4 nodes each links only the head and its ring at start),
//! then the one-way time of a first message between two members over a
//! link already up (ring neighbours), a dial (the lower id sends first)
//! and a knock (the higher id sends first: it knocks, the lower dials
//! back), 7 pairs each, over TCP (sealed) and QUIC. Prints one JSON line.
//!
//! `cargo run --release -p owl-transport --example first_message`

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use owl_transport::proto::{Msg, OwlMsg, WireId};
use owl_transport::{start, Handler, Link, Mesh, MeshConfig, PeerDown, TransportKind};

const NODES: u32 = 24;
const PAIRS: u32 = 7;

/// When the first `Pull` from each node arrived.
#[derive(Default)]
struct Arrivals(Mutex<HashMap<u32, Instant>>);

impl Handler for Arrivals {
    fn on_msgs(&self, from: u32, msgs: Vec<Msg>) {
        if msgs
            .iter()
            .any(|m| matches!(m, Msg::Owl(OwlMsg::Pull { .. })))
        {
            self.0.lock().entry(from).or_insert_with(Instant::now);
        }
    }
    fn on_peer_down(&self, peer: u32, why: PeerDown) {
        eprintln!("peer {peer} down: {why:?}");
    }
}

fn pull(from: u32) -> Msg {
    let object = WireId {
        node: from,
        shard: 0,
        index: 0,
        gen: 0,
    };
    Msg::Owl(OwlMsg::Pull {
        object,
        offset: 0,
        len: 0,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Medians (µs) of the first message's one-way time over a ring link, a
/// dial and a knock, and the links node 5 holds before and after.
fn measure(kind: TransportKind) -> anyhow::Result<serde_json::Value> {
    let head = match kind {
        TransportKind::Quic => std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?,
        _ => std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?,
    };
    let starts: Vec<_> = (0..NODES)
        .map(|node| {
            let listen = if node == 0 {
                head
            } else {
                "127.0.0.1:0".parse().unwrap()
            };
            let mut cfg = MeshConfig::new(node, NODES, listen, head, [9; 32]);
            cfg.kind = kind;
            cfg.heartbeat = Duration::from_millis(100);
            cfg.dead_after = Duration::from_secs(5);
            let rec = Arc::new(Arrivals::default());
            let h = rec.clone();
            (std::thread::spawn(move || start(cfg, h)), rec)
        })
        .collect();
    let mut nodes: Vec<(Arc<Mesh>, Arc<Arrivals>)> = Vec::new();
    for (t, rec) in starts {
        nodes.push((t.join().expect("start thread")?, rec));
    }
    // Every ring link is up after a few heartbeat rounds.
    std::thread::sleep(Duration::from_millis(500));
    let links_before = nodes[5].0.connections();
    let one_way = |from: u32, to: u32| -> f64 {
        let (m, _) = &nodes[from as usize];
        let (_, rec) = &nodes[to as usize];
        let t0 = Instant::now();
        m.send(to, pull(from));
        loop {
            if let Some(at) = rec.0.lock().get(&from) {
                return at.duration_since(t0).as_secs_f64() * 1e6;
            }
            std::thread::sleep(Duration::from_micros(20));
        }
    };
    // Ring neighbours; lower to higher 8 apart; higher to lower 12 apart
    // (neither pair linked at start, and no pair used twice).
    let ring: Vec<f64> = (1..=PAIRS).map(|i| one_way(i, i + 1)).collect();
    let dial: Vec<f64> = (1..=PAIRS).map(|i| one_way(i, i + 8)).collect();
    let knock: Vec<f64> = (1..=PAIRS).map(|i| one_way(i + 12, i)).collect();
    let links_after = nodes[5].0.connections();
    let head_links = nodes[0].0.connections();
    for (m, _) in &nodes {
        m.shutdown();
    }
    Ok(serde_json::json!({
        "ring_link_us": median(ring),
        "dial_us": median(dial),
        "knock_us": median(knock),
        "node5_links_at_start": links_before,
        "node5_links_after": links_after,
        "head_links": head_links,
    }))
}

fn main() -> anyhow::Result<()> {
    let tcp = measure(TransportKind::Tcp { plaintext: false })?;
    let quic = measure(TransportKind::Quic)?;
    println!(
        "{}",
        serde_json::json!({
            "bench": "first_message",
            "nodes": NODES,
            "pairs": PAIRS,
            "tcp": tcp,
            "quic": quic,
        })
    );
    Ok(())
}
