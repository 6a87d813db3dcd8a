//! Helpers shared by the socket tests: a handler that records what it is
//! told, free ports, bounded waits.
#![allow(dead_code)] // each test binary uses its own subset

use owl_transport::proto::OwlMsg;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use owl_transport::proto::{Msg, WireId};
use owl_transport::{Handler, Link, PeerDown};
use parking_lot::Mutex;

/// Records every message but heartbeats, and every peer event.
#[derive(Default)]
pub struct Recorder {
    pub msgs: Mutex<Vec<(u32, Msg)>>,
    pub down: Mutex<Vec<(u32, PeerDown)>>,
    pub up: Mutex<Vec<u32>>,
    pub left: Mutex<Vec<u32>>,
    /// Messages recorded so far (readable without the lock).
    pub count: AtomicU64,
}

impl Handler for Recorder {
    fn on_msgs(&self, from: u32, msgs: Vec<Msg>) {
        let mut m = self.msgs.lock();
        for msg in msgs {
            if !matches!(msg, Msg::Heartbeat { .. }) {
                m.push((from, msg));
                self.count.fetch_add(1, Ordering::Release);
            }
        }
    }
    fn on_peer_down(&self, peer: u32, why: PeerDown) {
        self.down.lock().push((peer, why));
    }
    fn on_peer_up(&self, peer: u32) {
        self.up.lock().push(peer);
    }
    fn on_peer_left(&self, peer: u32) {
        self.left.lock().push(peer);
    }
}

/// A TCP port on 127.0.0.1 nobody listens on (just now).
pub fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A UDP port on 127.0.0.1 nobody uses (just now), for QUIC.
pub fn free_udp_port() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Polls `f` until it holds; panics naming `what` after 10 s.
pub fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}
/// A private directory for the ring files; asserts it is empty on drop.
pub struct Dir(pub PathBuf);

impl Dir {
    pub fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("owl-shm-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
    pub fn files(&self) -> Vec<String> {
        std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let left = self.files();
        let _ = std::fs::remove_dir_all(&self.0);
        if !std::thread::panicking() {
            assert!(left.is_empty(), "files left behind: {left:?}");
        }
    }
}

/// A chunk from `from` numbered `k`: its bytes are `(i + k) as u8`, so a
/// receiver can check every byte ([`offsets_from`]).
pub fn chunk(from: u32, k: u64, len: usize) -> Msg {
    Msg::Owl(OwlMsg::Chunk {
        object: WireId {
            node: from,
            shard: 0,
            index: 0,
            gen: 0,
        },
        offset: k,
        data: (0..len).map(|i| (i as u64 + k) as u8).collect(),
    })
}

/// Every node sends `n` chunks to every other, mostly small and every
/// 50th of 100 kB (larger than small rings).
pub fn send_mixed_chunks<L: Link + ?Sized>(nodes: &[std::sync::Arc<L>], n: u64) {
    let count = nodes.len() as u32;
    for (i, m) in nodes.iter().enumerate() {
        for to in (0..count).filter(|&t| t as usize != i) {
            for k in 0..n {
                let len = if k % 50 == 7 {
                    100_000
                } else {
                    (k as usize * 13) % 200
                };
                m.send(to, chunk(i as u32, k, len));
            }
        }
    }
}

/// The numbers of the chunks recorded from `from`, in arrival order, each
/// checked byte for byte.
pub fn offsets_from(msgs: &Mutex<Vec<(u32, Msg)>>, from: u32) -> Vec<u64> {
    msgs.lock()
        .iter()
        .filter(|(f, _)| *f == from)
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
        .collect()
}
