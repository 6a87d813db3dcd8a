//! Shard behaviour: stealing spreads work, both event loops run the same
//! workload, settings come from the environment.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use owl::{EventLoopKind, Runtime, StartError};

#[owl::remote]
fn busy(ms: u64) -> String {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(ms) {
        std::hint::spin_loop();
    }
    std::thread::current().name().unwrap_or("?").to_string()
}

#[owl::remote]
async fn fib(rt: Runtime, n: u64) -> u64 {
    if n < 2 {
        return n;
    }
    let a = fib.remote(&rt, n - 1).unwrap();
    let b = fib.remote(&rt, n - 2).unwrap();
    a.get_owned().await.unwrap() + b.get_owned().await.unwrap()
}

#[test]
fn idle_shards_steal_queued_work() {
    let rt = Runtime::builder()
        .shards(2)
        .store_size(16 << 20)
        .build()
        .unwrap();
    // Submitted from shard 0's root task, so all start in shard 0's queue.
    let names = rt.block_on(|rt| async move {
        let refs: Vec<_> = (0..8).map(|_| busy.remote(&rt, 20).unwrap()).collect();
        let mut names = HashSet::new();
        for r in refs {
            names.insert(r.get_owned().await.unwrap());
        }
        names
    });
    assert!(
        names.contains("owl-shard-1"),
        "shard 1 never stole: {names:?}"
    );
    rt.assert_no_leaks();
}

#[test]
fn both_event_loops_run_the_same_work() {
    for kind in [EventLoopKind::Tokio, EventLoopKind::IoUring] {
        let rt = Runtime::builder()
            .shards(2)
            .store_size(16 << 20)
            .event_loop(kind)
            .build()
            .unwrap();
        let v = rt
            .block_on(|rt| async move { fib.remote(&rt, 15).unwrap().get_owned().await.unwrap() });
        assert_eq!(v, 610, "{kind}");
        // A timer inside a task works on either loop.
        let slept = rt.block_on(|_| async move {
            let t0 = Instant::now();
            tokio::time::sleep(Duration::from_millis(5)).await;
            t0.elapsed()
        });
        assert!(slept >= Duration::from_millis(5));
        rt.assert_no_leaks();
    }
}

#[test]
fn io_uring_is_detected_and_reported() {
    let rt = Runtime::builder()
        .shards(1)
        .store_size(16 << 20)
        .build()
        .unwrap();
    // These machines run Linux with io_uring; elsewhere the fallback is reported.
    let probe = io_uring_available();
    assert_eq!(rt.event_loop() == EventLoopKind::IoUring, probe);
    assert!(format!("{rt:?}").contains("event_loop"));
}

fn io_uring_available() -> bool {
    io_uring::IoUring::new(2).is_ok()
}

#[test]
fn environment_settings_are_validated() {
    // Each variable is checked in its own child-free way: set, build, unset.
    std::env::set_var("OWL_SHARDS", "lots");
    let err = Runtime::builder().from_env().unwrap_err();
    std::env::remove_var("OWL_SHARDS");
    match err {
        StartError::Env { var, value, .. } => {
            assert_eq!((var, value.as_str()), ("OWL_SHARDS", "lots"))
        }
        other => panic!("unexpected {other:?}"),
    }
    std::env::set_var("OWL_EVENT_LOOP", "epoll");
    let err = Runtime::builder().from_env().unwrap_err();
    std::env::remove_var("OWL_EVENT_LOOP");
    assert!(
        err.to_string().contains("expected `uring` or `tokio`"),
        "{err}"
    );
}

#[owl::remote]
fn add_one(x: u64) -> u64 {
    x + 1
}

/// `add_one` that takes long enough for the caller's shard to park.
#[owl::remote]
fn slow_add_one(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(5));
    x + 1
}

#[test]
fn a_parked_one_shard_node_wakes_for_a_task_its_socket_readies() {
    // A node of one shard hosts its sockets on that shard's event loop.
    // Node 0 parks while node 1 runs `a`; `a`'s result arrives on node 0's
    // socket and readies `b`, queued on node 0 by its event loop on the
    // parked shard's own thread. The park's backstop is an hour here: a
    // missed wake-up hangs the call instead of costing 50 ms a hop.
    let nodes = owl::on_loopback(2, owl::Transport::Tcp, |_| {
        Runtime::builder()
            .shards(1)
            .pin(false)
            .park_bound(Duration::from_secs(3600))
    })
    .expect("two nodes on loopback");
    let on = |n| owl::CallOpts::new().node(owl::NodeId(n));
    let mut x = 0;
    for _ in 0..10 {
        let a = slow_add_one.options(on(1)).remote(&nodes[0], x).unwrap();
        let b = add_one.options(on(0)).remote(&nodes[0], &a).unwrap();
        x = b
            .get_blocking_timeout(Duration::from_secs(20))
            .expect("node 0 woke for the task")
            .to_native();
    }
    assert_eq!(x, 20);
    for rt in &nodes {
        rt.assert_no_leaks();
    }
}
