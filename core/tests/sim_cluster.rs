//! The standard workloads and failures on simulated clusters: nodes in one
//! process over the transport's simulated network (seeded per-frame delays,
//! partitions, crashes), every node's tables empty afterwards.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use owl::sim::SimConfig;
use owl::{CallOpts, GetError, NodeId, ObjectRef, Runtime, SimCluster, TaskErrorKind};

fn sim(n: u32, seed: u64) -> SimCluster {
    sim_dead_after(n, seed, Duration::from_secs(5))
}

fn sim_dead_after(n: u32, seed: u64, dead_after: Duration) -> SimCluster {
    let cfg = SimConfig {
        min_delay: Duration::from_micros(5),
        max_delay: Duration::from_micros(300),
        heartbeat: Some(Duration::from_millis(20)),
        dead_after,
        ..SimConfig::default()
    };
    SimCluster::start(n, seed, cfg, Duration::from_micros(100), |_| {
        Runtime::builder()
            .shards(1)
            .pin(false)
            .store_size(64 << 20)
            .inline_max(1024)
            .spin(Duration::ZERO)
    })
    .expect("sim cluster starts")
}

fn on(n: u32) -> CallOpts {
    CallOpts::new().node(NodeId(n))
}

#[owl::remote]
fn add(a: u64, b: u64) -> u64 {
    a + b
}

#[owl::remote]
fn one() -> u64 {
    1
}

#[owl::remote]
async fn tree(rt: Runtime, lo: u64, hi: u64) -> u64 {
    if hi - lo == 1 {
        return lo;
    }
    let mid = (lo + hi) / 2;
    let n = rt.nodes() as u64;
    let left = tree
        .options(on((lo % n) as u32))
        .remote(&rt, lo, mid)
        .unwrap();
    let right = tree
        .options(on((mid % n) as u32))
        .remote(&rt, mid, hi)
        .unwrap();
    add.remote(&rt, left, right)
        .unwrap()
        .get_owned()
        .await
        .unwrap()
}

#[owl::remote]
async fn fan_out(rt: Runtime, children: u32) -> u64 {
    let n = rt.nodes();
    let kids: Vec<_> = (0..children)
        .map(|i| one.options(on(i % n)).remote(&rt).unwrap())
        .collect();
    let mut total = 0;
    for k in kids {
        total += k.get_owned().await.unwrap();
    }
    total
}

#[owl::remote]
fn sum_bytes(v: Vec<u8>) -> u64 {
    v.iter().map(|&b| b as u64).sum()
}

#[owl::remote]
async fn slow(x: u64, ms: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    x
}

/// Runs of `where_run` per tag (tests run concurrently: each uses its own).
static RUNS: Mutex<Option<HashMap<u64, Vec<u32>>>> = Mutex::new(None);

/// Records that it ran (tag, node) and returns the node it ran on.
#[owl::remote]
fn where_run(rt: Runtime, tag: u64) -> u32 {
    let me = rt.node().0;
    RUNS.lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .entry(tag)
        .or_default()
        .push(me);
    me
}

fn runs(tag: u64) -> Vec<u32> {
    let runs = RUNS.lock().unwrap();
    let mut v = runs
        .as_ref()
        .and_then(|m| m.get(&tag).cloned())
        .unwrap_or_default();
    v.sort();
    v
}

#[owl::remote]
fn boxed(rt: Runtime, v: u64) -> ObjectRef<u64> {
    rt.put(v).unwrap()
}

#[test]
fn standard_workloads_on_four_simulated_nodes() {
    let c = sim(4, 7);
    let rt = c.node(0);
    // chain across nodes
    let mut x = rt.put(0u64).unwrap();
    for i in 0..200u32 {
        x = add.options(on(i % 4)).remote(rt, x, 1).unwrap();
    }
    assert_eq!(*x.get_blocking().unwrap(), 200);
    // tree of 256 leaves spread over the nodes
    let t = tree.remote(rt, 0, 256).unwrap();
    assert_eq!(*t.get_blocking().unwrap(), (0..256).sum::<u64>());
    // nested: 10 parents on different nodes, each with 50 children everywhere
    let parents: Vec<_> = (0..10)
        .map(|i| fan_out.options(on(i % 4)).remote(rt, 50).unwrap())
        .collect();
    for p in &parents {
        assert_eq!(*p.get_blocking().unwrap(), 50);
    }
    // a 6 MiB argument by reference to another node
    let data: Vec<u8> = (0..(6 << 20)).map(|i| (i % 241) as u8).collect();
    let expect: u64 = data.iter().map(|&b| b as u64).sum();
    let big = rt.put(data).unwrap();
    let s = sum_bytes.options(on(3)).remote(rt, &big).unwrap();
    assert_eq!(*s.get_blocking().unwrap(), expect);
    drop((x, t, parents, big, s));
    c.assert_no_leaks();
}

#[test]
fn a_partition_delays_but_loses_nothing() {
    let c = sim(3, 11);
    let rt = c.node(0);
    c.net().partition(0, 2);
    let r = add.options(on(2)).remote(rt, 20, 22).unwrap();
    assert!(matches!(
        r.get_blocking_timeout(Duration::from_millis(200)),
        Err(GetError::Timeout { .. })
    ));
    c.net().heal(0, 2);
    assert_eq!(
        *r.get_blocking_timeout(Duration::from_secs(10)).unwrap(),
        42
    );
    drop(r);
    c.assert_no_leaks();
}

/// How a partition between nodes 0 and 2 is cut in the tests below.
#[derive(Clone, Copy, Debug)]
enum Cut {
    /// Both directions held (delivered after healing, if the link lives).
    Held,
    /// Only 2 -> 0 held: node 2 hears node 0, node 0 hears nothing.
    OneWay,
    /// Both directions lose every frame; after healing the next frame shows
    /// the gap and closes the link.
    Lossy,
}

/// A partition longer than `dead_after`: node 0 declares node 2 dead and
/// runs the task it had placed there itself; after healing, nothing node 2
/// sent during the partition (its stale reply included) is applied, and
/// every node ends leak-free. `ran_on_2` says whether the task's `Submit`
/// reached node 2 (it does when only 2 -> 0 is cut).
fn long_partition(cut: Cut, tag: u64, seed: u64, ran_on_2: bool) {
    let dead_after = Duration::from_millis(300);
    let c = sim_dead_after(3, seed, dead_after);
    let rt = c.node(0);
    match cut {
        Cut::Held => c.net().partition(0, 2),
        Cut::OneWay => c.net().partition_one_way(2, 0),
        Cut::Lossy => c.net().partition_lossy(0, 2),
    }
    let r = where_run.options(on(2)).remote(rt, tag).unwrap();
    // Before `dead_after` nothing is decided: the task waits.
    assert!(matches!(
        r.get_blocking_timeout(dead_after / 3),
        Err(GetError::Timeout { .. })
    ));
    let answer = *r.get_blocking_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(answer, 0, "{cut:?}: the retry on node 0 answers");
    assert!(
        !c.net().link_up(0, 2),
        "{cut:?}: node 0 declared node 2 dead"
    );
    // Node 2 notices too: at once when it hears nothing, or once node 0,
    // which stopped talking to it, stays silent for `dead_after`.
    let t = std::time::Instant::now();
    while c.net().link_up(2, 0) && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        !c.net().link_up(2, 0),
        "{cut:?}: node 2 declared node 0 dead"
    );
    c.net().heal(0, 2);
    // Whatever was held is delivered now (or shows its gap): all of it is
    // dropped, as messages of a node declared dead.
    std::thread::sleep(dead_after);
    assert_eq!(*r.get_blocking().unwrap(), 0, "{cut:?}: the answer stands");
    let expect = if ran_on_2 { vec![0, 2] } else { vec![0] };
    assert_eq!(runs(tag), expect, "{cut:?}: runs per node");
    // Node 1 was never cut off and still works with both.
    let via_1 = where_run.options(on(1)).remote(c.node(2), tag + 1).unwrap();
    assert_eq!(*via_1.get_blocking().unwrap(), 1);
    drop((r, via_1));
    c.assert_no_leaks();
}

#[test]
fn a_long_partition_declares_the_node_dead_and_its_task_reruns() {
    long_partition(Cut::Held, 100, 21, false);
}

#[test]
fn a_one_way_partition_declares_the_silent_node_dead() {
    long_partition(Cut::OneWay, 200, 23, true);
}

#[test]
fn a_lossy_partition_closes_the_link_and_loses_no_answer() {
    long_partition(Cut::Lossy, 300, 29, false);
}

#[owl::remote]
fn fails_at_the_root() -> u64 {
    panic!("the root cause")
}

/// Builds a chain of `n` tasks on its own node whose first task fails, and
/// returns a ref to the last: its error nests `n` causes deep.
#[owl::remote]
fn failing_chain(rt: Runtime, n: u32) -> ObjectRef<u64> {
    let mut x = fails_at_the_root.remote(&rt).unwrap();
    for _ in 0..n {
        x = add.remote(&rt, x, 1).unwrap();
    }
    x
}

/// A chain of failed dependencies is as deep as the chain of tasks; sent to
/// another node it must stay under the decoder's nesting limit (else the
/// frame is refused and the link closed), and the root cause must survive.
#[test]
fn a_thousand_failed_dependencies_cross_nodes_with_their_root_cause() {
    let c = sim(2, 31);
    let rt = c.node(0);
    let outer = failing_chain.options(on(1)).remote(rt, 1000).unwrap();
    let inner: ObjectRef<u64> = outer.get_blocking().unwrap().deserialize().unwrap();
    drop(outer);
    let err = match inner.get_blocking_timeout(Duration::from_secs(30)) {
        Err(GetError::Task(e)) => e,
        other => panic!("expected a dependency failure, got {other:?}"),
    };
    let mut depth = 0;
    let mut e = &*err;
    while let TaskErrorKind::DependencyFailed(cause) = &e.kind {
        e = cause;
        depth += 1;
    }
    assert!(
        matches!(&e.kind, TaskErrorKind::Panicked(m) if m.contains("the root cause")),
        "{:?}",
        e.kind
    );
    assert!(depth >= 60, "the outer causes are kept too ({depth})");
    assert!(
        c.net().link_up(0, 1) && c.net().link_up(1, 0),
        "the link stays up"
    );
    let after = add.options(on(1)).remote(rt, 1, 2).unwrap();
    assert_eq!(*after.get_blocking().unwrap(), 3);
    drop((inner, after, err));
    c.assert_no_leaks();
}

#[test]
fn a_crashed_node_s_work_is_retried_and_its_objects_fail() {
    let mut c = sim(3, 13);
    let rt = c.node(0).clone();
    let running = slow.options(on(1)).remote(&rt, 5, 300).unwrap();
    let outer = boxed.options(on(2)).remote(&rt, 9).unwrap();
    let owned_by_2: ObjectRef<u64> = outer.get_blocking().unwrap().deserialize().unwrap();
    drop(outer);
    let pending_on_2 = slow.options(on(2)).remote(&rt, 1, 10_000).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    c.crash(1);
    assert_eq!(
        *running
            .get_blocking_timeout(Duration::from_secs(10))
            .unwrap(),
        5
    );
    c.crash(2);
    // Retried here; the object node 2 owned was fetched before the crash
    // and stays readable (a correct copy).
    assert_eq!(*owned_by_2.get_blocking().unwrap(), 9);
    assert_eq!(
        *pending_on_2
            .get_blocking_timeout(Duration::from_secs(20))
            .unwrap(),
        1
    );
    let late = add.options(on(2).max_retries(0)).remote(&rt, 1, 1).unwrap();
    assert!(
        matches!(late.get_blocking(), Err(GetError::Task(e)) if e.kind == TaskErrorKind::WorkerDied(NodeId(2)))
    );
    drop((running, owned_by_2, pending_on_2, late, rt));
    c.assert_no_leaks();
}
