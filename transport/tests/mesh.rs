//! Real sockets on 127.0.0.1: TCP (encrypted and plaintext) and QUIC meshes.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{free_port, free_udp_port, wait_for, Recorder};
use owl_transport::proto::{Msg, OwlMsg};
use owl_transport::{start, Link, Mesh, MeshConfig, MeshError, PeerDown, TransportKind};

const SECRET: [u8; 32] = [42; 32];

fn config(node: u32, nodes: u32, head: SocketAddr, kind: TransportKind) -> MeshConfig {
    let listen = if node == 0 {
        head
    } else {
        "127.0.0.1:0".parse().unwrap()
    };
    let mut c = MeshConfig::new(node, nodes, listen, head, SECRET);
    c.kind = kind;
    c.connect_timeout = Duration::from_secs(5);
    c.heartbeat = Duration::from_millis(50);
    c.dead_after = Duration::from_millis(500);
    c
}

fn cluster(n: u32, kind: TransportKind) -> (Vec<Arc<Mesh>>, Vec<Arc<Recorder>>) {
    cluster_with(n, kind)
}

/// [`cluster`], each node's messages going to a fresh `H`.
fn cluster_with<H: owl_transport::Handler + Default + 'static>(
    n: u32,
    kind: TransportKind,
) -> (Vec<Arc<Mesh>>, Vec<Arc<H>>) {
    let head = match kind {
        TransportKind::Quic => free_udp_port(),
        TransportKind::Tcp { .. } | TransportKind::Shm(_) => free_port(),
    };
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let rec = Arc::new(H::default());
            let cfg = config(i, n, head, kind);
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
    (meshes, recs)
}

fn exchange_in_order(kind: TransportKind) {
    let (meshes, recs) = cluster(3, kind);
    const N: u64 = 500;
    for (i, m) in meshes.iter().enumerate() {
        for to in 0..3u32 {
            if to as usize != i {
                for k in 0..N {
                    m.send(
                        to,
                        Msg::Owl(OwlMsg::Pull {
                            object: owl_transport::proto::WireId {
                                node: i as u32,
                                shard: 0,
                                index: 0,
                                gen: 0,
                            },
                            offset: k,
                            len: 1,
                        }),
                    );
                }
            }
        }
    }
    for (i, rec) in recs.iter().enumerate() {
        wait_for("all messages", || rec.msgs.lock().len() == 2 * N as usize);
        let msgs = rec.msgs.lock();
        for from in 0..3u32 {
            if from as usize == i {
                continue;
            }
            let offsets: Vec<u64> = msgs
                .iter()
                .filter(|(f, _)| *f == from)
                .map(|(_, m)| match m {
                    Msg::Owl(OwlMsg::Pull { offset, .. }) => *offset,
                    other => panic!("unexpected {other:?}"),
                })
                .collect();
            assert_eq!(
                offsets,
                (0..N).collect::<Vec<_>>(),
                "FIFO from {from} to {i}"
            );
        }
    }
    for m in &meshes {
        m.shutdown();
    }
    for rec in &recs {
        assert!(
            rec.down.lock().is_empty(),
            "clean shutdown reports nobody down: {:?}",
            rec.down.lock()
        );
    }
}

#[test]
fn tcp_encrypted_mesh_delivers_in_order() {
    exchange_in_order(TransportKind::Tcp { plaintext: false });
}

#[test]
fn tcp_plaintext_mesh_delivers_in_order() {
    exchange_in_order(TransportKind::Tcp { plaintext: true });
}

#[test]
fn quic_mesh_delivers_in_order() {
    exchange_in_order(TransportKind::Quic);
}

#[test]
fn unreachable_head_times_out_naming_node_0() {
    let head = free_port();
    let mut cfg = config(1, 2, head, TransportKind::Tcp { plaintext: false });
    cfg.connect_timeout = Duration::from_millis(300);
    match start(cfg, Arc::new(Recorder::default())) {
        Err(MeshError::Timeout { missing, .. }) => assert_eq!(missing, vec![0]),
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[test]
fn head_names_nodes_that_never_join() {
    let head = free_port();
    let mut cfg = config(0, 3, head, TransportKind::Tcp { plaintext: false });
    cfg.connect_timeout = Duration::from_millis(800);
    let t = std::thread::spawn(move || start(cfg, Arc::new(Recorder::default())));
    let mut c1 = config(1, 3, head, TransportKind::Tcp { plaintext: false });
    c1.connect_timeout = Duration::from_millis(800);
    let r1 = start(c1, Arc::new(Recorder::default()));
    assert!(matches!(r1, Err(MeshError::Timeout { .. })), "{r1:?}");
    match t.join().unwrap() {
        Err(MeshError::Timeout { missing, .. }) => assert_eq!(missing, vec![2]),
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[test]
fn killed_peer_is_reported_down_and_announced() {
    let (meshes, recs) = cluster(3, TransportKind::Tcp { plaintext: false });
    meshes[2].kill();
    for rec in &recs[..2] {
        wait_for("peer down", || rec.down.lock().iter().any(|(p, _)| *p == 2));
    }
    std::thread::sleep(Duration::from_millis(100));
    for rec in &recs[..2] {
        assert_eq!(
            rec.down.lock().len(),
            1,
            "reported once: {:?}",
            rec.down.lock()
        );
    }
    // The survivors still talk.
    meshes[0].send(
        1,
        Msg::Owl(OwlMsg::Cancel {
            object: owl_transport::proto::WireId {
                node: 0,
                shard: 0,
                index: 1,
                gen: 0,
            },
        }),
    );
    wait_for("message after a death", || !recs[1].msgs.lock().is_empty());
    // Messages to the dead node are dropped, not queued forever.
    meshes[0].send(2, Msg::Shutdown);
    assert!(!meshes[0].is_up(2));
}

/// A hand-rolled client: runs the proto handshake over a blocking socket.
fn raw_handshake(
    addr: SocketAddr,
    me: u32,
    secret: [u8; 32],
    version: u16,
) -> Result<(), HandshakeError> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let cfg = HandshakeConfig {
        me,
        nodes: 3,
        secret,
        plaintext: false,
        max_frame: 1 << 20,
        version,
        accept_unassigned: false,
    };
    let mut hs = Handshake::new(cfg, Role::Initiator, None, [9; 32]);
    s.write_all(&hs.take_output()).unwrap();
    let mut buf = [0u8; 256];
    for _ in 0..4 {
        let n = s.read(&mut buf).unwrap_or(0);
        if n == 0 {
            return Err(hs.eof());
        }
        let r = hs.feed(&buf[..n]);
        let _ = s.write_all(&hs.take_output());
        if r?.is_some() {
            return Ok(());
        }
    }
    Err(hs.eof())
}

use owl_transport::proto::{Handshake, HandshakeConfig, HandshakeError, Role, PROTOCOL_VERSION};

#[test]
fn intruders_are_refused_and_the_mesh_keeps_working() {
    let (meshes, recs) = cluster(3, TransportKind::Tcp { plaintext: false });
    for m in &meshes {
        let addr = m.local_addr();
        // Wrong secret: both sides see it.
        assert_eq!(
            raw_handshake(addr, (m.me() + 1) % 3, [1; 32], PROTOCOL_VERSION),
            Err(HandshakeError::BadSecret { peer: m.me() })
        );
        // Wrong version.
        assert_eq!(
            raw_handshake(addr, (m.me() + 1) % 3, SECRET, PROTOCOL_VERSION + 1),
            Err(HandshakeError::Version {
                ours: PROTOCOL_VERSION + 1,
                theirs: PROTOCOL_VERSION
            })
        );
        // Garbage, then a client that connects and hangs up.
        use std::io::{Read, Write};
        let mut g = std::net::TcpStream::connect(addr).unwrap();
        g.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        g.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut sink = Vec::new();
        let _ = g.read_to_end(&mut sink);
        drop(std::net::TcpStream::connect(addr).unwrap());
    }
    // The good nodes still talk, and nobody was reported down.
    let id = owl_transport::proto::WireId {
        node: 0,
        shard: 0,
        index: 0,
        gen: 0,
    };
    meshes[2].send(
        1,
        Msg::Owl(OwlMsg::Fetch {
            object: id,
            lost: None,
        }),
    );
    meshes[0].send(
        2,
        Msg::Owl(OwlMsg::Fetch {
            object: id,
            lost: None,
        }),
    );
    wait_for("messages after intruders", || {
        !recs[1].msgs.lock().is_empty() && !recs[2].msgs.lock().is_empty()
    });
    std::thread::sleep(Duration::from_millis(200));
    for r in &recs {
        assert!(r.down.lock().is_empty(), "{:?}", r.down.lock());
    }
    for m in &meshes {
        m.shutdown();
    }
}

#[test]
fn node_with_wrong_secret_cannot_join() {
    let head = free_port();
    let mut c0 = config(0, 2, head, TransportKind::Tcp { plaintext: false });
    c0.connect_timeout = Duration::from_millis(800);
    let t = std::thread::spawn(move || start(c0, Arc::new(Recorder::default())));
    let mut c1 = config(1, 2, head, TransportKind::Tcp { plaintext: false });
    c1.connect_timeout = Duration::from_millis(800);
    c1.secret = [0; 32];
    match start(c1, Arc::new(Recorder::default())) {
        Err(MeshError::Timeout { missing, .. }) => assert_eq!(missing, vec![0]),
        other => panic!("{other:?}"),
    }
    match t.join().unwrap() {
        Err(MeshError::Timeout { missing, .. }) => assert_eq!(missing, vec![1]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn half_open_impostor_does_not_disturb_the_mesh() {
    // A client claiming an id already connected, never finishing its handshake, then sending junk.
    let (meshes, recs) = cluster(2, TransportKind::Tcp { plaintext: true });
    // A third party claiming id 1 is refused (already connected); the mesh is unaffected.
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(meshes[0].local_addr()).unwrap();
    let cfg = HandshakeConfig {
        me: 1,
        nodes: 2,
        secret: SECRET,
        plaintext: true,
        max_frame: 1 << 20,
        version: PROTOCOL_VERSION,
        accept_unassigned: false,
    };
    let mut hs = Handshake::new(cfg, Role::Initiator, None, [3; 32]);
    s.write_all(&hs.take_output()).unwrap();
    s.write_all(&u32::MAX.to_le_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let id = owl_transport::proto::WireId {
        node: 0,
        shard: 0,
        index: 0,
        gen: 0,
    };
    meshes[1].send(0, Msg::Owl(OwlMsg::Cancel { object: id }));
    wait_for("message", || !recs[0].msgs.lock().is_empty());
    assert!(recs[0].down.lock().is_empty());
    for m in &meshes {
        m.shutdown();
    }
}

/// Heartbeats go to each node's 3 watchers (the next live ids on the
/// ring) and the head, not to every peer: of 8 nodes, each sends at most 4
/// a period rather than 7 (the head, which every node watches, one to
/// each). A node that hangs (heartbeats stop, links stay up) is found
/// silent by its watchers and the head only; the other nodes learn it
/// from the head's announcement.
#[test]
fn heartbeats_go_to_the_ring_and_the_head_and_a_silent_death_reaches_everyone() {
    let (meshes, recs) = cluster(8, TransportKind::Quic);
    let started = std::time::Instant::now();
    let before: Vec<u64> = meshes.iter().map(|m| m.heartbeats_sent()).collect();
    std::thread::sleep(Duration::from_millis(1000));
    let periods = started.elapsed().as_millis() as u64 / 50 + 1;
    for (i, m) in meshes.iter().enumerate() {
        let sent = m.heartbeats_sent() - before[i];
        let most = if i == 0 { 7 } else { 4 };
        assert!(
            sent <= most * periods && sent > 0,
            "node {i} sent {sent} heartbeats in {periods} periods"
        );
    }
    // Node 1 hangs. Nodes 2, 3 and 4 watch it, and so does the head;
    // 5, 6 and 7 do not.
    meshes[1].mute_heartbeats();
    let mut timed_out = 0;
    for (i, rec) in recs.iter().enumerate().filter(|(i, _)| *i != 1) {
        wait_for("node 1 down", || {
            rec.down.lock().iter().any(|(p, _)| *p == 1)
        });
        let down = rec.down.lock();
        assert_eq!(down.len(), 1, "node {i}: {down:?}");
        match &down[0].1 {
            PeerDown::HeartbeatTimeout(_) => {
                assert!([2, 3, 4, 0].contains(&i), "node {i} does not watch node 1");
                timed_out += 1;
            }
            PeerDown::Announced => {}
            other => panic!("node {i}: {other:?}"),
        }
    }
    assert!(timed_out >= 1, "a watcher found node 1 silent");
}

/// Past 4 nodes a node heartbeats only its ring and the head, so most
/// QUIC connections carry nothing while the cluster idles: they must
/// stay up past QUIC's idle timer (10 s here), or every idle pair would
/// find the other gone.
#[test]
fn idle_quic_links_outside_the_ring_stay_up() {
    // Nodes 1 and 5 are 4 apart on a ring of 9: neither watches the other.
    let (meshes, recs) = cluster(9, TransportKind::Quic);
    std::thread::sleep(Duration::from_secs(12));
    for (i, rec) in recs.iter().enumerate() {
        let down = rec.down.lock();
        assert!(
            down.is_empty(),
            "node {i} found peers down while idle: {down:?}"
        );
    }
    // And the links still carry messages.
    let probe = OwlMsg::Fetch {
        object: owl_transport::proto::WireId {
            node: 5,
            shard: 0,
            index: 0,
            gen: 0,
        },
        lost: None,
    };
    meshes[5].send(1, Msg::Owl(probe));
    wait_for("the message from node 5", || {
        recs[1].msgs.lock().iter().any(|(from, _)| *from == 5)
    });
    for m in &meshes {
        m.shutdown();
    }
}

/// Keeps the room bits of the head's latest heartbeat.
#[derive(Default)]
struct RoomBits(parking_lot::Mutex<Option<Vec<u8>>>);

impl owl_transport::Handler for RoomBits {
    fn on_msgs(&self, from: u32, msgs: Vec<Msg>) {
        for m in msgs {
            if let Msg::Heartbeat { room, .. } = m {
                if from == 0 {
                    *self.0.lock() = Some(room);
                }
            }
        }
    }
    fn on_peer_down(&self, _: u32, _: PeerDown) {}
}

/// Past 4 nodes a node hears the load of its ring only: the head, which
/// hears every node, tells every node which have room for spilled work.
#[test]
fn the_head_tells_every_node_which_nodes_have_room() {
    let (meshes, recs) = cluster_with::<RoomBits>(9, TransportKind::Tcp { plaintext: true });
    for (i, m) in meshes.iter().enumerate() {
        m.set_load(if i == 5 { 1000 } else { 0 }, if i == 5 { 0 } else { 1 });
    }
    // Node 1 does not watch node 5 (4 apart on a ring of 9), nor node 5
    // node 1: only the head's bits tell node 1 that node 5 is full.
    let full = |bits: &[u8], node: usize| {
        bits.get(node / 8)
            .is_some_and(|b| b & (1 << (node % 8)) == 0)
    };
    wait_for("the head's bits: node 5 full, the others with room", || {
        recs[1].0.lock().as_deref().is_some_and(|bits| {
            bits.len() == 2 && (0..9).all(|node| full(bits, node) == (node == 5))
        })
    });
    // A node that died has no room.
    meshes[7].kill();
    wait_for("node 7 without room", || {
        recs[1]
            .0
            .lock()
            .as_deref()
            .is_some_and(|bits| full(bits, 7) && !full(bits, 6))
    });
    for (i, m) in meshes.iter().enumerate() {
        if i != 7 {
            m.shutdown();
        }
    }
}

/// Connections are opened when first needed: past the ring, a node holds
/// links to the head and the nodes that heartbeat it or it heartbeats,
/// whatever the cluster's size; the first message to any other member
/// opens one, from the lower id (a dial) or the higher (a knock, answered
/// by a dial back), and nothing sent meanwhile is lost or reordered.
fn connections_when_first_needed(kind: TransportKind) {
    let (meshes, recs) = cluster(12, kind);
    // A few rounds: every ring link is up.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(meshes[0].connections(), 11, "the head: every node");
    for (i, m) in meshes.iter().enumerate().skip(1) {
        // The head, the 3 it heartbeats, the 3 that heartbeat it.
        assert!(
            m.connections() <= 7,
            "node {i} holds {} connections",
            m.connections()
        );
    }
    // Nodes 2 and 9 are 5 apart on a ring of 12, as are 3 and 10: not
    // connected, yet members.
    for (a, b) in [(2u32, 9u32), (3, 10)] {
        let (ma, mb) = (&meshes[a as usize], &meshes[b as usize]);
        assert!(!ma.is_up(b) && ma.is_live(b), "{a} to {b}");
        assert!(!mb.is_up(a) && mb.is_live(a), "{b} to {a}");
    }
    let before: Vec<usize> = meshes.iter().map(|m| m.connections()).collect();
    const N: u64 = 200;
    for k in 0..N {
        meshes[9].send(2, common::chunk(9, k, 8)); // the higher id knocks
        meshes[3].send(10, common::chunk(3, k, 8)); // the lower id dials
    }
    for (to, from) in [(2usize, 9u32), (10, 3)] {
        wait_for("every message", || {
            common::offsets_from(&recs[to].msgs, from).len() == N as usize
        });
        assert_eq!(
            common::offsets_from(&recs[to].msgs, from),
            (0..N).collect::<Vec<_>>(),
            "FIFO from {from} to {to} across connecting"
        );
    }
    for (a, b) in [(2usize, 9u32), (9, 2), (3, 10), (10, 3)] {
        assert!(meshes[a].is_up(b), "{a} connected to {b}");
        assert_eq!(
            meshes[a].connections(),
            before[a] + 1,
            "node {a}: one more link"
        );
    }
    // Answers go back over the same link.
    meshes[2].send(9, common::chunk(2, 0, 8));
    wait_for("the answer", || {
        recs[9].msgs.lock().iter().any(|(from, _)| *from == 2)
    });
    assert_eq!(meshes[9].connections(), before[9] + 1);
    // A node that leaves tells its links; the head tells the rest, so
    // node 2 (no link to node 7) does not take the silence for a death.
    assert!(!meshes[2].is_up(7));
    meshes[7].shutdown();
    wait_for("node 2 learns node 7 left", || {
        recs[2].left.lock().contains(&7)
    });
    assert!(!meshes[2].is_live(7));
    // After the head (the driver of a launched cluster) leaves, the
    // others leave in any order without accusing each other: once 1 to 4
    // are gone, nodes 5 and 6 are node 1's next live nodes on the ring
    // but never heard that it left.
    for m in &meshes[..5] {
        m.shutdown();
    }
    std::thread::sleep(Duration::from_millis(800));
    for m in &meshes[5..] {
        m.shutdown();
    }
    for (i, rec) in recs.iter().enumerate() {
        assert!(
            rec.down.lock().is_empty(),
            "node {i}: {:?}",
            rec.down.lock()
        );
    }
}

#[test]
fn tcp_connections_are_opened_when_first_needed() {
    connections_when_first_needed(TransportKind::Tcp { plaintext: false });
}

#[test]
fn quic_connections_are_opened_when_first_needed() {
    connections_when_first_needed(TransportKind::Quic);
}
