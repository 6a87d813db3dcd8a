//! Results too large for one message (the transport refuses frames over
//! 64 MiB) come back from a remote task: the executor keeps the value and
//! the owner pulls it, in one copy from the executor's arena file on the
//! same host, or in chunks over the link. Before this, such a result was
//! dropped by the transport and the caller waited forever.

use std::path::PathBuf;
use std::time::Duration;

use owl::{CallOpts, NodeId, Runtime, Transport};

const MIB: u64 = 1 << 20;

#[owl::remote]
fn make_bytes(len: u64) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().enumerate().fold(0u64, |h, (i, &b)| {
        h.wrapping_mul(31).wrapping_add(b as u64 ^ i as u64)
    })
}

/// Two nodes over TCP on loopback; `dirs` gives each its own store
/// directory (as on two hosts) or leaves them both in the default one.
fn pair(store_size: u64, dirs: Option<[PathBuf; 2]>) -> Vec<Runtime> {
    owl::on_loopback(2, Transport::Tcp, move |n| {
        let b = Runtime::builder()
            .shards(2)
            .pin(false)
            .store_size(store_size);
        match &dirs {
            Some(d) => b.store_dir(&d[n.0 as usize]),
            None => b,
        }
    })
    .expect("two nodes on loopback")
}

fn result_comes_back(nodes: &[Runtime], len: u64) {
    let want = checksum(&(0..len).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let r = make_bytes
        .options(CallOpts::new().node(NodeId(1)))
        .remote(&nodes[0], len)
        .unwrap();
    let got = r
        .get_blocking_timeout(Duration::from_secs(60))
        .expect("the result arrives");
    assert_eq!(got.len() as u64, len);
    assert_eq!(checksum(&got), want);
    drop((got, r));
    for rt in nodes {
        rt.assert_no_leaks();
    }
}

#[test]
fn a_1_gib_result_of_a_remote_task_comes_back() {
    // Same host, same store directory: one copy from the executor's arena.
    result_comes_back(&pair(3 << 30, None), 1 << 30);
}

#[test]
fn a_100_mib_result_is_pulled_in_chunks_over_the_link() {
    // Separate store directories: the owner cannot read the executor's
    // arena file, so the value comes in 4 MiB chunks.
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let paths = [dirs[0].path().to_path_buf(), dirs[1].path().to_path_buf()];
    result_comes_back(&pair(512 * MIB, Some(paths)), 100 * MIB);
}

#[owl::remote]
fn digest(bytes: Vec<u8>) -> (u64, u64) {
    (bytes.len() as u64, checksum(&bytes))
}

#[test]
fn a_100_mib_by_value_argument_reaches_a_remote_task() {
    // The argument is too large for one message: the caller makes it an
    // object, and the executor pulls it in chunks (separate store
    // directories, as across hosts).
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let paths = [dirs[0].path().to_path_buf(), dirs[1].path().to_path_buf()];
    let nodes = pair(512 * MIB, Some(paths));
    let len = 100 * MIB;
    let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let want = (len, checksum(&bytes));
    let r = digest
        .options(CallOpts::new().node(NodeId(1)))
        .remote(&nodes[0], bytes)
        .unwrap();
    let got = r
        .get_blocking_timeout(Duration::from_secs(60))
        .expect("the call arrives and answers");
    assert_eq!(*got, want);
    drop((got, r));
    for rt in &nodes {
        rt.assert_no_leaks();
    }
}
