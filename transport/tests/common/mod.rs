//! Helpers shared by the socket tests: a handler that records what it is
//! told, free ports, bounded waits.
#![allow(dead_code)] // each test binary uses its own subset

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use owl_transport::proto::Msg;
use owl_transport::{Handler, PeerDown};
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
