//! Open clusters in one process over real sockets on 127.0.0.1: a head
//! that starts alone, a worker and drivers that join and leave while it
//! runs, with exact leak checks on every node that stays.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use owl::{Builder, CallOpts, Membership, Network, NodeId, ObjectRef, Runtime, Transport};

#[owl::remote]
fn add(a: u64, b: u64) -> u64 {
    a + b
}

#[owl::remote]
fn whereami(rt: Runtime) -> u32 {
    rt.node().0
}

#[owl::remote]
fn sum(v: Vec<u8>) -> u64 {
    v.iter().map(|&b| b as u64).sum()
}

#[owl::remote]
fn make_boxed(rt: Runtime, n: u64) -> (u64, ObjectRef<Vec<u64>>) {
    (n, rt.put((0..n).collect::<Vec<u64>>()).expect("put"))
}

/// Naps finished, per tag (tests run side by side in this process).
static NAPS: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

#[owl::remote]
fn nap(ms: u64, tag: usize) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    NAPS[tag].fetch_add(1, Ordering::SeqCst);
    ms
}

fn base() -> Builder {
    Runtime::builder()
        .shards(1)
        .pin(false)
        .store_size(128 << 20)
        .inline_max(1024)
}

struct Cluster {
    head: SocketAddr,
    secret: [u8; 32],
    transport: Transport,
}

impl Cluster {
    fn network(&self, listen: SocketAddr) -> Network {
        Network {
            connect_timeout: Duration::from_secs(20),
            ..Network::new(listen, self.head, self.secret, self.transport)
        }
    }

    fn start_head(transport: Transport) -> (Cluster, Runtime) {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = Cluster {
            head: SocketAddr::from(([127, 0, 0, 1], port)),
            secret: owl_launch::random_secret(),
            transport,
        };
        let rt = base()
            .open_head(c.network(c.head))
            .build()
            .expect("head starts alone");
        (c, rt)
    }

    fn join(&self, worker: bool) -> Runtime {
        base()
            .join(self.network(SocketAddr::from(([127, 0, 0, 1], 0))))
            .worker(worker)
            .build()
            .expect("joins")
    }
}

/// Polls until `rt` holds nothing (peers' releases may still be in flight).
fn settle(rt: &Runtime) {
    let t = Instant::now();
    while !rt.leak_report().is_empty() && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    rt.assert_no_leaks();
}

fn driver_workload(rt: &Runtime, worker: NodeId) {
    let on = |n: NodeId| CallOpts::new().node(n);
    let mut x = rt.put(0u64).unwrap();
    for i in 0..12u32 {
        let to = if i % 2 == 0 { worker } else { NodeId(0) };
        x = add.options(on(to)).remote(rt, x, 1).unwrap();
    }
    assert_eq!(*x.get_blocking().unwrap(), 12);
    let data: Vec<u8> = (0..(5 << 20)).map(|i| (i % 251) as u8).collect();
    let expect: u64 = data.iter().map(|&b| b as u64).sum();
    let big = rt.put(data).unwrap();
    let s = sum.options(on(worker)).remote(rt, &big).unwrap();
    assert_eq!(*s.get_blocking().unwrap(), expect);
    let boxed = make_boxed.options(on(worker)).remote(rt, 300).unwrap();
    let (_, inner) = boxed.get_blocking().unwrap().deserialize().unwrap();
    assert_eq!(inner.get_blocking().unwrap().len(), 300);
    let spread: Vec<_> = (0..12)
        .map(|_| {
            whereami
                .options(CallOpts::new().spread())
                .remote(rt)
                .unwrap()
        })
        .collect();
    let mut seen: Vec<u32> = spread
        .iter()
        .map(|r| r.get_blocking().unwrap().to_native())
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(
        seen,
        vec![0, worker.0, rt.node().0],
        "spread reaches every member"
    );
}

fn join_work_leave(transport: Transport, tag: usize) {
    let (c, head) = Cluster::start_head(transport);
    assert!(head.serves(), "an open cluster's head serves");
    let worker = c.join(true);
    assert_eq!(worker.node(), NodeId(1));
    assert!(worker.serves());
    let serving = {
        let w = worker.clone();
        std::thread::spawn(move || w.serve())
    };

    let driver = c.join(false);
    assert_eq!(driver.node(), NodeId(2));
    assert!(!driver.serves(), "a joining program runs main");
    assert_eq!(driver.nodes(), 3);
    driver_workload(&driver, worker.node());
    driver.assert_no_leaks();
    drop(driver);
    settle(&head);
    settle(&worker);

    // A later driver gets a new id, reaches the same worker, and leaves
    // while its tasks still run and wait there: the worker (one shard)
    // cancels those not started (fate-sharing) instead of running them.
    let second = c.join(false);
    assert_eq!(second.node(), NodeId(3));
    assert_eq!(
        *add.options(CallOpts::new().node(worker.node()))
            .remote(&second, 40, 2)
            .unwrap()
            .get_blocking()
            .unwrap(),
        42
    );
    let naps_before = NAPS[tag].load(Ordering::SeqCst);
    let running: Vec<_> = (0..10)
        .map(|_| {
            nap.options(CallOpts::new().node(worker.node()))
                .remote(&second, 100, tag)
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    drop(running);
    drop(second);
    settle(&head);
    settle(&worker);
    let naps = NAPS[tag].load(Ordering::SeqCst) - naps_before;
    assert!(
        naps < 10,
        "the worker ran all {naps} tasks of a driver that left"
    );

    // The head leaving ends the worker's `serve` without an error.
    drop(head);
    let served = serving.join().unwrap();
    assert!(served.is_ok(), "{served:?}");
    worker.assert_no_leaks();
}

#[test]
fn join_work_and_leave_over_tcp() {
    join_work_leave(Transport::Tcp, 0);
}

#[test]
fn join_work_and_leave_over_quic() {
    join_work_leave(Transport::Quic, 1);
}

#[test]
fn joining_needs_the_right_secret_and_a_socket_transport() {
    let (c, _head) = Cluster::start_head(Transport::TcpPlaintext);
    let mut wrong = c.network(SocketAddr::from(([127, 0, 0, 1], 0)));
    wrong.secret = [1; 32];
    wrong.connect_timeout = Duration::from_secs(3);
    let err = base().join(wrong).build().unwrap_err().to_string();
    assert!(err.contains("secret"), "{err}");

    let shm = Network::new(c.head, c.head, c.secret, Transport::Shm);
    let err = base().open_head(shm).build().unwrap_err().to_string();
    assert!(err.contains("socket transport"), "{err}");
    assert_eq!(Membership::UNASSIGNED.0, u32::MAX);
}
