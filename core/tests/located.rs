//! Results stay where they were made: a task that consumes a large result
//! on the node that made it moves none of its bytes, a reader elsewhere
//! pulls it from that node (and its own node is a location from then on),
//! and a result lost with every node that held it is rebuilt from its task
//! (lineage) on a live node when it is read again.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::kill;
use owl::{CallOpts, NodeId, Runtime, Transport};

const MIB: u64 = 1 << 20;
const WAIT: Duration = Duration::from_secs(60);

/// Runs of `make_bytes` per seed (tests run in parallel: each uses its
/// own seeds).
static MADE: [AtomicU32; 256] = [const { AtomicU32::new(0) }; 256];

fn runs_of(seed: u8) -> u32 {
    MADE[seed as usize].load(Ordering::SeqCst)
}

#[owl::remote]
fn make_bytes(len: u64, seed: u8) -> Vec<u8> {
    MADE[seed as usize].fetch_add(1, Ordering::SeqCst);
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

#[owl::remote]
fn digest(bytes: Vec<u8>) -> (u64, u64) {
    (bytes.len() as u64, checksum(&bytes))
}

fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().enumerate().fold(0u64, |h, (i, &b)| {
        h.wrapping_mul(31).wrapping_add(b as u64 ^ i as u64)
    })
}

fn expected(len: u64, seed: u8) -> (u64, u64) {
    let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8 ^ seed).collect();
    (len, checksum(&bytes))
}

fn on(n: u32) -> CallOpts {
    CallOpts::new().node(NodeId(n))
}

/// `n` nodes over TCP on loopback, each with its own store directory (as on
/// separate hosts: values move over the links, never through a shared file).
fn cluster(n: u32, dirs: &[tempfile::TempDir]) -> Vec<Runtime> {
    let paths: Vec<PathBuf> = dirs.iter().map(|d| d.path().to_path_buf()).collect();
    owl::on_loopback(n, Transport::Tcp, move |id| {
        Runtime::builder()
            .shards(2)
            .pin(false)
            .store_size(512 * MIB)
            .store_dir(&paths[id.0 as usize])
    })
    .expect("nodes on loopback")
}

fn dirs(n: usize) -> Vec<tempfile::TempDir> {
    (0..n).map(|_| tempfile::tempdir().unwrap()).collect()
}

#[test]
fn a_result_consumed_where_it_was_made_never_crosses_the_network() {
    let d = dirs(2);
    let nodes = cluster(2, &d);
    let len = 100 * MIB;
    let made = make_bytes.options(on(1)).remote(&nodes[0], len, 7).unwrap();
    let before = nodes[1].bytes_sent();
    let used = digest.options(on(1)).remote(&nodes[0], &made).unwrap();
    let got = used.get_blocking_timeout(WAIT).expect("the digest arrives");
    assert_eq!(*got, expected(len, 7));
    drop(got);
    let moved = nodes[1].bytes_sent() - before;
    assert!(
        moved < MIB,
        "node 1 made and consumed 100 MiB, yet sent {moved} bytes"
    );
    // Read on the owner, the value comes over (so the count above could
    // have shown it).
    let before = nodes[1].bytes_sent();
    let bytes = made.get_blocking_timeout(WAIT).expect("the value arrives");
    assert_eq!(checksum(&bytes), expected(len, 7).1);
    let moved = nodes[1].bytes_sent() - before;
    assert!(
        moved >= len,
        "the owner read 100 MiB; node 1 sent {moved} bytes"
    );
    drop((bytes, made, used));
    for rt in &nodes {
        rt.assert_no_leaks();
    }
}

#[test]
fn a_task_taking_a_large_result_runs_where_the_result_is() {
    let d = dirs(2);
    let nodes = cluster(2, &d);
    let len = 16 * MIB;
    let made = make_bytes.options(on(1)).remote(&nodes[0], len, 5).unwrap();
    let before = nodes[1].bytes_sent();
    // No node asked for: placed with its argument.
    let used = digest.remote(&nodes[0], &made).unwrap();
    let got = used.get_blocking_timeout(WAIT).expect("the digest arrives");
    assert_eq!(*got, expected(len, 5));
    let moved = nodes[1].bytes_sent() - before;
    assert!(
        moved < MIB,
        "the task ran away from its 16 MiB argument: {moved} bytes moved"
    );
    drop((got, made, used));
    for rt in &nodes {
        rt.assert_no_leaks();
    }
}

#[test]
fn a_reader_on_a_third_node_pulls_from_the_node_that_made_it() {
    let d = dirs(3);
    let nodes = cluster(3, &d);
    let len = 8 * MIB;
    let made = make_bytes.options(on(1)).remote(&nodes[0], len, 3).unwrap();
    let before = nodes[0].bytes_sent();
    let used = digest.options(on(2)).remote(&nodes[0], &made).unwrap();
    let got = used.get_blocking_timeout(WAIT).expect("the digest arrives");
    assert_eq!(*got, expected(len, 3));
    drop(got);
    let through_owner = nodes[0].bytes_sent() - before;
    assert!(
        through_owner < MIB,
        "node 2 read node 1's value, yet the owner sent {through_owner} bytes"
    );
    drop((made, used));
    for rt in &nodes {
        rt.assert_no_leaks();
    }
}

#[test]
fn a_result_lost_with_its_node_is_rebuilt_from_its_task() {
    let d = dirs(3);
    let mut nodes: Vec<Option<Runtime>> = cluster(3, &d).into_iter().map(Some).collect();
    let rt = nodes[0].clone().unwrap();
    let len = 4 * MIB;
    let made = make_bytes.options(on(2)).remote(&rt, len, 9).unwrap();
    // Done on node 2 (a task there read it), and held only there.
    let used = digest.options(on(2)).remote(&rt, &made).unwrap();
    assert_eq!(*used.get_blocking_timeout(WAIT).unwrap(), expected(len, 9));
    // Another result held there, which nobody reads again.
    let unread = make_bytes.options(on(2)).remote(&rt, len, 11).unwrap();
    let used_too = digest.options(on(2)).remote(&rt, &unread).unwrap();
    assert_eq!(
        *used_too.get_blocking_timeout(WAIT).unwrap(),
        expected(len, 11)
    );
    let (runs, unread_runs) = (runs_of(9), runs_of(11));
    kill(&mut nodes, 2);
    let bytes = made
        .get_blocking_timeout(WAIT)
        .expect("rebuilt on a live node");
    assert_eq!(checksum(&bytes), expected(len, 9).1);
    assert_eq!(runs_of(9) - runs, 1, "the read result's task ran once more");
    assert_eq!(
        runs_of(11),
        unread_runs,
        "the unread one's did not run again"
    );
    drop((bytes, made, used, unread, used_too));
    for rt in nodes.iter().flatten() {
        rt.assert_no_leaks();
    }
}

#[test]
fn a_reader_s_node_becomes_a_location_and_serves_after_the_maker_dies() {
    let d = dirs(4);
    let mut nodes: Vec<Option<Runtime>> = cluster(4, &d).into_iter().map(Some).collect();
    let rt = nodes[0].clone().unwrap();
    let len = 4 * MIB;
    let made = make_bytes.options(on(1)).remote(&rt, len, 17).unwrap();
    // Node 2 reads it from node 1, and keeps a copy the owner counts.
    let read = digest.options(on(2)).remote(&rt, &made).unwrap();
    assert_eq!(*read.get_blocking_timeout(WAIT).unwrap(), expected(len, 17));
    wait_for_copies(&rt, &made, 2);
    let runs = runs_of(17);
    kill(&mut nodes, 1);
    let before = rt.bytes_sent();
    let again = digest.options(on(3)).remote(&rt, &made).unwrap();
    assert_eq!(
        *again.get_blocking_timeout(WAIT).unwrap(),
        expected(len, 17)
    );
    assert_eq!(
        runs_of(17),
        runs,
        "read from node 2's copy: no task ran again"
    );
    let from_owner = rt.bytes_sent() - before;
    assert!(
        from_owner < MIB,
        "node 3 read node 2's copy, yet the owner sent {from_owner} bytes"
    );
    drop((read, again, made));
    for rt in nodes.iter().flatten() {
        rt.assert_no_leaks();
    }
}

/// On one host (one store directory), a reader's copy is read in one copy
/// from its arena file by the next reader there, once the node that made
/// the value is gone.
#[test]
fn a_reader_s_copy_serves_readers_on_its_host_from_its_arena_file() {
    let d = dirs(1);
    let path = d[0].path().to_path_buf();
    let nodes = owl::on_loopback(4, Transport::Tcp, move |_| {
        Runtime::builder()
            .shards(2)
            .pin(false)
            .store_size(256 * MIB)
            .store_dir(&path)
    })
    .expect("nodes on loopback");
    let mut nodes: Vec<Option<Runtime>> = nodes.into_iter().map(Some).collect();
    let rt = nodes[0].clone().unwrap();
    let len = 8 * MIB;
    let made = make_bytes.options(on(1)).remote(&rt, len, 19).unwrap();
    let read = digest.options(on(2)).remote(&rt, &made).unwrap();
    assert_eq!(*read.get_blocking_timeout(WAIT).unwrap(), expected(len, 19));
    wait_for_copies(&rt, &made, 2);
    let runs = runs_of(19);
    kill(&mut nodes, 1);
    let node2 = nodes[2].clone().unwrap();
    let before = (rt.bytes_sent(), node2.bytes_sent());
    let again = digest.options(on(3)).remote(&rt, &made).unwrap();
    assert_eq!(
        *again.get_blocking_timeout(WAIT).unwrap(),
        expected(len, 19)
    );
    assert_eq!(runs_of(19), runs, "no task ran again");
    let sent = (rt.bytes_sent() - before.0, node2.bytes_sent() - before.1);
    assert!(
        sent.0 < MIB && sent.1 < MIB,
        "node 3 copied node 2's block from its file, yet nodes 0 and 2 sent {sent:?} bytes"
    );
    drop((read, again, made, node2));
    for rt in nodes.iter().flatten() {
        rt.assert_no_leaks();
    }
}

/// A reader's copies give way to values it reads next when its store is
/// full: node 2's store fits one of the two values it reads in turn.
#[test]
fn a_reader_s_copies_give_way_when_its_store_is_full() {
    let d = dirs(3);
    let paths: Vec<PathBuf> = d.iter().map(|d| d.path().to_path_buf()).collect();
    let nodes = owl::on_loopback(3, Transport::Tcp, move |id| {
        let size = if id.0 == 2 { 40 * MIB } else { 256 * MIB };
        Runtime::builder()
            .shards(2)
            .pin(false)
            .store_size(size)
            .store_dir(&paths[id.0 as usize])
    })
    .expect("nodes on loopback");
    let rt = &nodes[0];
    let len = 24 * MIB;
    let a = make_bytes.options(on(1)).remote(rt, len, 23).unwrap();
    let b = make_bytes.options(on(1)).remote(rt, len, 25).unwrap();
    let read_a = digest.options(on(2)).remote(rt, &a).unwrap();
    assert_eq!(
        *read_a.get_blocking_timeout(WAIT).unwrap(),
        expected(len, 23)
    );
    wait_for_copies(rt, &a, 2);
    let runs = (runs_of(23), runs_of(25));
    let read_b = digest.options(on(2)).remote(rt, &b).unwrap();
    assert_eq!(
        *read_b.get_blocking_timeout(WAIT).unwrap(),
        expected(len, 25)
    );
    // Node 2 dropped its copy of `a` for room, and said so.
    wait_for_copies(rt, &a, 1);
    wait_for_copies(rt, &b, 2);
    assert_eq!((runs_of(23), runs_of(25)), runs, "no task ran again");
    drop((read_a, read_b, a, b));
    for rt in &nodes {
        rt.assert_no_leaks();
    }
}

/// Waits (bounded) until `rt` counts `want` copies of `r`'s value.
fn wait_for_copies(rt: &Runtime, r: &owl::ObjectRef<Vec<u8>>, want: usize) {
    let deadline = std::time::Instant::now() + WAIT;
    while rt.copies(r) != want {
        assert!(
            std::time::Instant::now() < deadline,
            "{} copies, not {want}",
            rt.copies(r)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_replicated_result_survives_its_holder_without_running_again() {
    let d = dirs(4);
    let mut nodes: Vec<Option<Runtime>> = cluster(4, &d).into_iter().map(Some).collect();
    let rt = nodes[0].clone().unwrap();
    let len = 4 * MIB;
    let made = make_bytes
        .options(on(1).replicas(2))
        .remote(&rt, len, 13)
        .unwrap();
    wait_for_copies(&rt, &made, 2);
    let runs = runs_of(13);
    kill(&mut nodes, 1);
    // The copy lost with node 1 is made again on a live node.
    wait_for_copies(&rt, &made, 2);
    let bytes = made.get_blocking_timeout(WAIT).expect("read from the copy");
    assert_eq!(checksum(&bytes), expected(len, 13).1);
    assert_eq!(runs_of(13), runs, "no task ran again");
    drop((bytes, made));
    for rt in nodes.iter().flatten() {
        rt.assert_no_leaks();
    }
}

#[test]
fn a_replicated_put_keeps_its_copies_and_readers_take_turns_over_them() {
    let d = dirs(4);
    let mut nodes: Vec<Option<Runtime>> = cluster(4, &d).into_iter().map(Some).collect();
    let rt = nodes[0].clone().unwrap();
    let len = 4 * MIB;
    let value: Vec<u8> = (0..len).map(|i| (i % 251) as u8 ^ 21).collect();
    let put = rt.put_with(value, 3).unwrap();
    wait_for_copies(&rt, &put, 3);
    let before = rt.bytes_sent();
    let reads: Vec<_> = (1..4)
        .map(|n| digest.options(on(n)).remote(&rt, &put).unwrap())
        .collect();
    for r in &reads {
        assert_eq!(*r.get_blocking_timeout(WAIT).unwrap(), expected(len, 21));
    }
    let from_owner = rt.bytes_sent() - before;
    assert!(
        from_owner < 2 * len,
        "three readers took turns over three copies, yet the owner sent {from_owner} bytes"
    );
    drop(reads);
    // The copy lost with node 1 is made again on a live node, and the
    // value still reads right from wherever it is.
    kill(&mut nodes, 1);
    wait_for_copies(&rt, &put, 3);
    let again = digest.options(on(3)).remote(&rt, &put).unwrap();
    assert_eq!(
        *again.get_blocking_timeout(WAIT).unwrap(),
        expected(len, 21)
    );
    drop((again, put));
    for rt in nodes.iter().flatten() {
        rt.assert_no_leaks();
    }
}

/// A link of a chain: a large value and the node that made it.
#[owl::remote]
fn link(rt: Runtime, prev: (Vec<u8>, u32)) -> (Vec<u8>, u32) {
    (prev.0, rt.node().0)
}

#[test]
fn spread_tasks_taking_held_results_run_on_every_node() {
    // Each link waits for the one before, whose value is held where it
    // was made: a link placed on the owner brings that value here and must
    // then run here, not be placed again (which sent every such link
    // away, so the owner ran none of them).
    let d = dirs(3);
    let nodes = cluster(3, &d);
    let spread = CallOpts::new().spread();
    let first = (vec![1u8; 256 << 10], 0u32);
    // The first made on node 1, so that no link's input is on the owner.
    let mut links = vec![link.options(on(1)).remote(&nodes[0], first).unwrap()];
    for _ in 0..8 {
        let prev = links.last().unwrap();
        links.push(
            link.options(spread.clone())
                .remote(&nodes[0], prev)
                .unwrap(),
        );
    }
    let mut ran = [0; 3];
    for r in &links[1..] {
        let got = r.get_blocking_timeout(WAIT).expect("a link");
        ran[got.1.to_native() as usize] += 1;
    }
    assert!(ran.iter().all(|&n| n > 0), "links per node: {ran:?}");
    drop(links);
    for rt in &nodes {
        rt.assert_no_leaks();
    }
}
