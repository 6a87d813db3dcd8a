//! Several nodes in one process (in-process links): remote tasks, refs that
//! cross nodes in every direction, objects pulled between arenas, and exact
//! reference counts (every node's tables empty at the end).

mod common;

use common::kill;
use owl::{CallOpts, GetError, NodeId, ObjectRef, Runtime, TaskErrorKind};

fn cluster(n: u32) -> Vec<Runtime> {
    owl::in_process(n, |_| {
        Runtime::builder()
            .shards(2)
            .pin(false)
            .store_size(256 << 20)
            .inline_max(1024)
    })
    .expect("cluster starts")
}

fn no_leaks(nodes: &[Runtime]) {
    for rt in nodes {
        rt.assert_no_leaks();
    }
}

fn on(node: u32) -> CallOpts {
    CallOpts::new().node(NodeId(node))
}

#[owl::remote]
fn add(a: u64, b: u64) -> u64 {
    a + b
}

#[owl::remote]
fn where_am_i(rt: Runtime) -> u32 {
    rt.node().0
}

#[owl::remote]
fn sum(v: Vec<u8>) -> u64 {
    v.iter().map(|&b| b as u64).sum()
}

#[owl::remote]
fn boom(x: u64) -> u64 {
    panic!("boom {x}")
}

/// Puts a value on the node it runs on and returns the ref inside a value.
#[owl::remote]
fn make_boxed(rt: Runtime, n: u64) -> (u64, ObjectRef<Vec<u64>>) {
    let r = rt.put((0..n).collect::<Vec<u64>>()).expect("put");
    (n, r)
}

/// Receives a ref (not its value) and reads it: a get through the owner.
#[owl::remote]
async fn read_len(r: ObjectRef<Vec<u64>>) -> u64 {
    r.get().await.expect("value").len() as u64
}

/// Passes a ref on to a task on another node (a borrower of a borrower).
#[owl::remote]
async fn forward(rt: Runtime, r: ObjectRef<Vec<u64>>, next: u32) -> u64 {
    let len = read_len.options(on(next)).remote(&rt, r).expect("submit");
    len.get_owned().await.expect("len")
}

/// Stores a received ref inside a new object and returns that object's ref.
#[owl::remote]
fn wrap(rt: Runtime, r: ObjectRef<Vec<u64>>) -> ObjectRef<(u32, ObjectRef<Vec<u64>>)> {
    rt.put((rt.node().0, r)).expect("put")
}

#[test]
fn tasks_run_where_placed_and_results_come_back() {
    let nodes = cluster(3);
    let rt = &nodes[0];
    for n in 0..3 {
        let r = where_am_i.options(on(n)).remote(rt).unwrap();
        assert_eq!(*r.get_blocking().unwrap(), n);
    }
    let r = add.options(on(2)).remote(rt, 40, 2).unwrap();
    assert_eq!(*r.get_blocking().unwrap(), 42);
    // A chain that hops between nodes, each step taking the previous ref.
    let mut x = rt.put(0u64).unwrap();
    for i in 0..30u32 {
        x = add.options(on(i % 3)).remote(rt, x, 1).unwrap();
    }
    assert_eq!(*x.get_blocking().unwrap(), 30);
    drop((r, x));
    no_leaks(&nodes);
}

/// Node 1 reads a 10 MiB object of node 0 by reference; nothing is left.
fn sum_big_object_on_node_1(nodes: &[Runtime]) {
    let rt = &nodes[0];
    let data: Vec<u8> = (0..(10 << 20)).map(|i| (i % 251) as u8).collect();
    let expect: u64 = data.iter().map(|&b| b as u64).sum();
    let big = rt.put(data).unwrap();
    let s = sum.options(on(1)).remote(rt, &big).unwrap();
    assert_eq!(*s.get_blocking().unwrap(), expect);
    drop((s, big));
    no_leaks(nodes);
}

#[test]
fn large_values_are_copied_from_a_peer_arena_on_the_same_host() {
    sum_big_object_on_node_1(&cluster(2));
}

#[test]
fn large_values_are_pulled_in_chunks() {
    // Different store directories: node 1 cannot read node 0's arena file
    // (as across hosts), so it pulls the value over the link.
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let paths: Vec<_> = dirs.iter().map(|d| d.path().to_path_buf()).collect();
    let nodes = owl::in_process(2, |n| {
        Runtime::builder()
            .shards(2)
            .pin(false)
            .store_size(256 << 20)
            .inline_max(1024)
            .store_dir(&paths[n.0 as usize])
    })
    .unwrap();
    sum_big_object_on_node_1(&nodes);
}

#[test]
fn refs_returned_inside_values_stay_alive_and_are_freed() {
    let nodes = cluster(2);
    let rt = &nodes[0];
    let boxed = make_boxed.options(on(1)).remote(rt, 1000).unwrap();
    let (n, inner) = boxed.get_blocking().unwrap().deserialize().unwrap();
    assert_eq!(n, 1000);
    assert_eq!(inner.id().node, NodeId(1), "owned where it was put");
    drop(boxed);
    // The outer object is gone; the inner one lives while `inner` does.
    let v = inner.get_blocking().unwrap();
    assert_eq!(v.len(), 1000);
    assert_eq!(v[999], 999);
    drop((v, inner));
    no_leaks(&nodes);
}

#[test]
fn borrowers_of_borrowers_are_counted() {
    let nodes = cluster(3);
    let rt = &nodes[0];
    let x = rt.put((0..500u64).collect::<Vec<u64>>()).unwrap();
    let len = forward.options(on(1)).remote(rt, x.clone(), 2).unwrap();
    drop(x);
    assert_eq!(*len.get_blocking().unwrap(), 500);
    drop(len);
    no_leaks(&nodes);
}

#[test]
fn refs_stored_in_objects_on_other_nodes() {
    let nodes = cluster(3);
    let rt = &nodes[0];
    let x = rt.put((0..64u64).collect::<Vec<u64>>()).unwrap();
    let wrapped = wrap.options(on(1)).remote(rt, x.clone()).unwrap();
    drop(x);
    let outer: ObjectRef<(u32, ObjectRef<Vec<u64>>)> =
        wrapped.get_blocking().unwrap().deserialize().unwrap();
    drop(wrapped);
    assert_eq!(outer.id().node, NodeId(1));
    // Read it from node 2: it holds the outer ref, which holds x.
    let len = read_len.options(on(2)).remote(rt, {
        let (node, inner) = outer.get_blocking().unwrap().deserialize().unwrap();
        assert_eq!(node, 1);
        inner
    });
    assert_eq!(*len.unwrap().get_blocking().unwrap(), 64);
    drop(outer);
    no_leaks(&nodes);
}

#[test]
fn remote_errors_name_the_node() {
    let nodes = cluster(2);
    let rt = &nodes[0];
    let r = boom.options(on(1)).remote(rt, 7).unwrap();
    match r.get_blocking() {
        Err(GetError::Task(e)) => {
            assert!(
                matches!(&e.kind, TaskErrorKind::Panicked(m) if m == "boom 7"),
                "{e}"
            );
            assert_eq!(e.node, NodeId(1));
        }
        other => panic!("expected a task error, got {other:?}"),
    }
    // A dependent on another node fails with the cause.
    let d = add.options(on(0)).remote(rt, &r, 1).unwrap();
    assert!(
        matches!(d.get_blocking(), Err(GetError::Task(e)) if matches!(e.kind, TaskErrorKind::DependencyFailed(_)))
    );
    let bad = add.options(on(9)).remote(rt, 1, 1).unwrap();
    assert!(
        matches!(bad.get_blocking(), Err(GetError::Task(e)) if matches!(&e.kind, TaskErrorKind::Unplaceable(m) if m.contains("node n9")))
    );
    drop((r, d, bad));
    no_leaks(&nodes);
}

#[owl::remote]
async fn slow_add(a: u64, b: u64, ms: u64) -> u64 {
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    a + b
}

#[owl::remote]
async fn hold(r: ObjectRef<Vec<u64>>, ms: u64) -> u64 {
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    r.id().index as u64
}

/// Starts a slow task where it runs and returns its (pending) ref.
#[owl::remote]
fn start_slow(rt: Runtime) -> ObjectRef<u64> {
    slow_add.remote(&rt, 1, 1, 10_000).unwrap()
}

#[test]
fn a_dead_worker_s_tasks_are_retried_and_its_objects_fail_fast() {
    let mut nodes: Vec<Option<Runtime>> = cluster(3).into_iter().map(Some).collect();
    let rt = nodes[0].clone().unwrap();
    // Running on node 1 when it dies: retried here (system failure).
    let slow = slow_add.options(on(1)).remote(&rt, 40, 2, 300).unwrap();
    // Owned by node 1 and still pending there: fate-shares with it. (A
    // value already fetched stays readable: it is a correct copy.)
    let outer = start_slow.options(on(1)).remote(&rt).unwrap();
    let orphan: ObjectRef<u64> = outer.get_blocking().unwrap().deserialize().unwrap();
    drop(outer);
    // Node 2 borrows an object of ours; node 1 too, then dies holding it.
    let mine = rt.put((0..8u64).collect::<Vec<u64>>()).unwrap();
    let held = hold
        .options(on(1))
        .remote(&rt, mine.clone(), 10_000)
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    kill(&mut nodes, 1);
    assert_eq!(
        *slow
            .get_blocking_timeout(std::time::Duration::from_secs(5))
            .unwrap(),
        42
    );
    match orphan.get_blocking_timeout(std::time::Duration::from_secs(5)) {
        Err(GetError::Task(e)) => assert_eq!(e.kind, TaskErrorKind::OwnerDied(NodeId(1))),
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    // `hold` is retried here too and finishes (it only sleeps).
    held.get_blocking_timeout(std::time::Duration::from_secs(15))
        .unwrap();
    // Placing work on the dead node fails with WorkerDied, not a hang.
    let late = add.options(on(1).max_retries(0)).remote(&rt, 1, 1).unwrap();
    assert!(
        matches!(late.get_blocking(), Err(GetError::Task(e)) if e.kind == TaskErrorKind::WorkerDied(NodeId(1)))
    );
    drop((slow, orphan, mine, held, late, rt));
    for rt in nodes.iter().flatten() {
        rt.assert_no_leaks();
    }
}

#[test]
fn a_busy_node_spills_tasks_to_idle_peers() {
    let nodes = owl::in_process(2, |_| {
        Runtime::builder().shards(1).pin(false).store_size(64 << 20)
    })
    .unwrap();
    let counts = nodes[0].block_on(|rt| async move {
        let refs: Vec<_> = (0..2000).map(|_| where_am_i.remote(&rt).unwrap()).collect();
        let mut counts = [0u32; 2];
        for r in refs {
            counts[r.get_owned().await.unwrap() as usize] += 1;
        }
        counts
    });
    assert_eq!(counts[0] + counts[1], 2000);
    assert!(counts[1] > 0, "nothing spilled: {counts:?}");
    assert!(counts[0] > 0, "everything spilled: {counts:?}");
    for rt in &nodes {
        rt.assert_no_leaks();
    }
}

#[test]
fn placement_by_label_and_spread() {
    let nodes = owl::in_process(3, |n| {
        let b = Runtime::builder().shards(1).pin(false).store_size(64 << 20);
        match n.0 {
            1 => b.labels(["gpu"]),
            2 => b.labels(["gpu", "bigmem"]),
            _ => b,
        }
    })
    .unwrap();
    let rt = &nodes[0];
    let gpu: Vec<_> = (0..20)
        .map(|_| {
            where_am_i
                .options(CallOpts::new().label("gpu"))
                .remote(rt)
                .unwrap()
        })
        .collect();
    let mut seen = [0u32; 3];
    for r in &gpu {
        seen[r.get_blocking().unwrap().to_native() as usize] += 1;
    }
    assert_eq!(seen, [0, 10, 10], "round-robin over the labelled nodes");
    let big = where_am_i
        .options(CallOpts::new().label("bigmem"))
        .remote(rt)
        .unwrap();
    assert_eq!(*big.get_blocking().unwrap(), 2);
    let none = where_am_i
        .options(CallOpts::new().label("tpu"))
        .remote(rt)
        .unwrap();
    match none.get_blocking() {
        Err(GetError::Task(e)) => {
            assert!(
                matches!(&e.kind, TaskErrorKind::Unplaceable(m) if m.contains("`tpu`") && m.contains("n2: [\"gpu\", \"bigmem\"]")),
                "{e}"
            );
        }
        other => panic!("expected Unplaceable, got {other:?}"),
    }
    let spread: Vec<_> = (0..30)
        .map(|_| {
            where_am_i
                .options(CallOpts::new().spread())
                .remote(rt)
                .unwrap()
        })
        .collect();
    let mut seen = [0u32; 3];
    for r in &spread {
        seen[r.get_blocking().unwrap().to_native() as usize] += 1;
    }
    assert_eq!(seen, [10, 10, 10]);
    drop((gpu, big, none, spread));
    no_leaks(&nodes);
}

#[owl::remote]
async fn slow_parent(rt: Runtime, ms: u64) -> u64 {
    let child = slow_add.remote(&rt, 1, 1, ms).unwrap();
    child.get_owned().await.unwrap()
}

#[test]
fn cancelling_a_remote_task_stops_it_and_its_children_there() {
    let nodes = cluster(2);
    let rt = &nodes[0];
    let r = slow_parent.options(on(1)).remote(rt, 10_000).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let t0 = std::time::Instant::now();
    assert!(rt.cancel(&r));
    assert!(matches!(r.get_blocking(), Err(GetError::Cancelled { .. })));
    drop(r);
    // Node 1 dropped the parent and its 10 s child: nothing is left there
    // long before the child would have finished.
    no_leaks(&nodes);
    assert!(t0.elapsed() < std::time::Duration::from_secs(5));
}
