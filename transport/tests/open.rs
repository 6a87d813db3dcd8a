//! Open clusters (`owl start`): a head that starts alone, nodes that join
//! and leave while it runs, over real sockets on 127.0.0.1.

mod common;

use owl_transport::proto::OwlMsg;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{free_port, free_udp_port, wait_for, Recorder};
use owl_transport::proto::{Msg, WireId};
use owl_transport::{
    request_id, start, Link, Mesh, MeshConfig, MeshError, PeerDown, TransportKind,
};

const SECRET: [u8; 32] = [5; 32];

fn config(node: u32, head: SocketAddr, kind: TransportKind, secret: [u8; 32]) -> MeshConfig {
    let listen = if node == 0 {
        head
    } else {
        "127.0.0.1:0".parse().unwrap()
    };
    let mut c = MeshConfig::new(node, 1, listen, head, secret);
    c.kind = kind;
    c.open = true;
    c.connect_timeout = Duration::from_secs(5);
    c.heartbeat = Duration::from_millis(50);
    c.dead_after = Duration::from_millis(500);
    c
}

fn head(kind: TransportKind) -> (Arc<Mesh>, Arc<Recorder>, SocketAddr) {
    let addr = match kind {
        TransportKind::Quic => free_udp_port(),
        _ => free_port(),
    };
    let rec = Arc::new(Recorder::default());
    let mesh = start(config(0, addr, kind, SECRET), rec.clone()).expect("head starts alone");
    (mesh, rec, addr)
}

fn join(head: SocketAddr, kind: TransportKind) -> (Arc<Mesh>, Arc<Recorder>) {
    let mut cfg = config(0, head, kind, SECRET);
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    let id = request_id(&cfg).expect("the head hands out an id");
    cfg.node = id;
    let rec = Arc::new(Recorder::default());
    (start(cfg, rec.clone()).expect("joins"), rec)
}

fn ping(from: &Mesh, to: u32, tag: u64) {
    let object = WireId {
        node: from.me(),
        shard: 0,
        index: 0,
        gen: 0,
    };
    from.send(
        to,
        Msg::Owl(OwlMsg::Pull {
            object,
            offset: tag,
            len: 0,
        }),
    );
}

fn got(rec: &Recorder, from: u32, tag: u64) -> bool {
    rec.msgs.lock().iter().any(|(f, m)| {
        *f == from && matches!(m, Msg::Owl(OwlMsg::Pull { offset, .. }) if *offset == tag)
    })
}

/// Every pair of `nodes` exchanges a message both ways.
fn all_pairs_talk(nodes: &[(&Mesh, &Recorder)], tag: u64) {
    for (a, _) in nodes {
        for (b, _) in nodes {
            if a.me() != b.me() {
                ping(a, b.me(), tag);
            }
        }
    }
    for (a, _) in nodes {
        for (b, rb) in nodes {
            if a.me() != b.me() {
                wait_for(&format!("{} -> {} (tag {tag})", a.me(), b.me()), || {
                    got(rb, a.me(), tag)
                });
            }
        }
    }
}

fn join_leave_and_crash(kind: TransportKind) {
    let (h, hr, addr) = head(kind);
    assert_eq!(h.nodes(), 1);
    let (a, ar) = join(addr, kind);
    let (b, br) = join(addr, kind);
    assert_eq!((a.me(), b.me()), (1, 2), "ids are handed out in order");
    all_pairs_talk(&[(&h, &hr), (&a, &ar), (&b, &br)], 1);
    wait_for("b sees a up", || br.up.lock().contains(&1));

    // A node leaving cleanly is reported as left (not down) everywhere.
    b.shutdown();
    wait_for("head sees b leave", || hr.left.lock().contains(&2));
    wait_for("a sees b leave", || ar.left.lock().contains(&2));
    assert!(!h.is_up(2));

    // A later node gets a fresh id and reaches everyone still there.
    let (c, cr) = join(addr, kind);
    assert_eq!(c.me(), 3, "ids are never reused");
    all_pairs_talk(&[(&h, &hr), (&a, &ar), (&c, &cr)], 2);
    assert!(!c.is_up(2));

    // A crash is a death, announced by the head.
    c.kill();
    wait_for("head sees c down", || {
        hr.down.lock().iter().any(|(p, _)| *p == 3)
    });
    wait_for("a sees c down", || {
        ar.down.lock().iter().any(|(p, _)| *p == 3)
    });
    assert!(hr.left.lock().iter().all(|&p| p != 3));
    all_pairs_talk(&[(&h, &hr), (&a, &ar)], 3);
    a.shutdown();
    h.shutdown();
}

#[test]
fn nodes_join_leave_and_crash_over_tcp() {
    join_leave_and_crash(TransportKind::Tcp { plaintext: false });
}

#[test]
fn nodes_join_leave_and_crash_over_quic() {
    join_leave_and_crash(TransportKind::Quic);
}

#[test]
fn many_nodes_join_at_once() {
    let kind = TransportKind::Tcp { plaintext: true };
    let (h, hr, addr) = head(kind);
    let joined: Vec<_> = (0..6)
        .map(|_| std::thread::spawn(move || join(addr, kind)))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let mut ids: Vec<u32> = joined.iter().map(|(m, _)| m.me()).collect();
    ids.sort();
    assert_eq!(ids, (1..=6).collect::<Vec<_>>());
    let mut all = vec![(&*h, &*hr)];
    all.extend(joined.iter().map(|(m, r)| (&**m, &**r)));
    all_pairs_talk(&all, 7);
}

#[test]
fn a_wrong_secret_or_a_closed_cluster_gives_no_id() {
    let kind = TransportKind::Tcp { plaintext: false };
    let (_h, _hr, addr) = head(kind);
    let mut cfg = config(0, addr, kind, [6; 32]);
    cfg.connect_timeout = Duration::from_secs(2);
    let err = request_id(&cfg).unwrap_err();
    assert!(
        matches!(&err, MeshError::Setup(m) if m.contains("secret")),
        "{err}"
    );

    // The head of a launched (fixed-size) cluster hands out no ids.
    let fixed = free_port();
    let mut fcfg = config(0, fixed, kind, SECRET);
    fcfg.open = false;
    fcfg.nodes = 2;
    let t = std::thread::spawn(move || start(fcfg, Arc::new(Recorder::default())));
    let mut ask = config(0, fixed, kind, SECRET);
    ask.connect_timeout = Duration::from_secs(2);
    let err = request_id(&ask).unwrap_err();
    assert!(matches!(&err, MeshError::Setup(_)), "{err}");
    let _ = t.join();

    // Nobody listening: a timeout naming the head.
    let mut none = config(0, free_port(), kind, SECRET);
    none.connect_timeout = Duration::from_millis(500);
    match request_id(&none) {
        Err(MeshError::Timeout { missing, .. }) => assert_eq!(missing, vec![0]),
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[test]
fn shared_memory_is_refused_for_open_clusters() {
    let mut cfg = config(
        0,
        free_port(),
        TransportKind::Shm(Default::default()),
        SECRET,
    );
    cfg.open = true;
    let err = start(cfg, Arc::new(Recorder::default())).unwrap_err();
    assert!(
        matches!(&err, MeshError::Config(m) if m.contains("socket transport")),
        "{err}"
    );
    let _ = PeerDown::Announced;
}
