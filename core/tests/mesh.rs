//! Nodes in one process joined by the real transport on loopback (TCP with
//! encryption, plaintext TCP, QUIC, shared-memory rings): the cross-node workloads and exact
//! leak checks on every node.

use owl::{CallOpts, NodeId, ObjectRef, Runtime, Transport};

#[owl::remote]
fn add(a: u64, b: u64) -> u64 {
    a + b
}

#[owl::remote]
fn sum(v: Vec<u8>) -> u64 {
    v.iter().map(|&b| b as u64).sum()
}

#[owl::remote]
fn make_boxed(rt: Runtime, n: u64) -> (u64, ObjectRef<Vec<u64>>) {
    (n, rt.put((0..n).collect::<Vec<u64>>()).expect("put"))
}

#[owl::remote]
async fn read_len(r: ObjectRef<Vec<u64>>) -> u64 {
    r.get().await.expect("value").len() as u64
}

/// Starts `n` nodes on loopback over `transport`.
fn mesh(n: u32, transport: Transport) -> Vec<Runtime> {
    owl::on_loopback(n, transport, |_| {
        Runtime::builder()
            .shards(1)
            .pin(false)
            .store_size(128 << 20)
            .inline_max(1024)
    })
    .expect("nodes join")
}

fn workload(nodes: &[Runtime]) {
    let rt = &nodes[0];
    let on = |n: u32| CallOpts::new().node(NodeId(n));
    let n = nodes.len() as u32;
    let mut x = rt.put(0u64).unwrap();
    for i in 0..20u32 {
        x = add.options(on(i % n)).remote(rt, x, 1).unwrap();
    }
    assert_eq!(*x.get_blocking().unwrap(), 20);
    let data: Vec<u8> = (0..(6 << 20)).map(|i| (i % 253) as u8).collect();
    let expect: u64 = data.iter().map(|&b| b as u64).sum();
    let big = rt.put(data).unwrap();
    let s = sum.options(on(n - 1)).remote(rt, &big).unwrap();
    assert_eq!(*s.get_blocking().unwrap(), expect);
    let boxed = make_boxed.options(on(1)).remote(rt, 300).unwrap();
    let (_, inner) = boxed.get_blocking().unwrap().deserialize().unwrap();
    drop(boxed);
    let len = read_len.options(on(n - 1)).remote(rt, inner).unwrap();
    assert_eq!(*len.get_blocking().unwrap(), 300);
    drop((x, big, s, len));
    for rt in nodes {
        rt.assert_no_leaks();
    }
}

#[test]
fn tcp_encrypted() {
    workload(&mesh(3, Transport::Tcp));
}

#[test]
fn tcp_plaintext() {
    workload(&mesh(2, Transport::TcpPlaintext));
}

#[test]
fn shared_memory() {
    workload(&mesh(3, Transport::Shm));
}

#[test]
fn quic() {
    workload(&mesh(3, Transport::Quic));
}

#[owl::remote]
fn where_am_i(rt: Runtime) -> u32 {
    rt.node().0
}

/// Past the ring's size nodes connect when they first talk, so what a
/// node offers reaches the others through the head's member list: node 2
/// places work by label on node 6 (no link between them at start), and
/// values made on nodes it never talked to come through.
#[test]
fn every_node_knows_every_member_s_labels_before_it_connects() {
    let nodes = owl::on_loopback(9, Transport::Tcp, |n| {
        let b = Runtime::builder()
            .shards(1)
            .pin(false)
            .store_size(64 << 20)
            .inline_max(1024);
        if n.0 == 6 {
            b.labels(["gpu"])
        } else {
            b
        }
    })
    .expect("nodes join");
    let rt = &nodes[2];
    let six = rt
        .members()
        .into_iter()
        .find(|m| m.node == NodeId(6))
        .expect("node 6 listed");
    assert!(six.up, "a member not connected to yet is up");
    assert_eq!(six.labels, ["gpu"]);
    let gpu = where_am_i
        .options(CallOpts::new().label("gpu"))
        .remote(rt)
        .unwrap();
    assert_eq!(*gpu.get_blocking().unwrap(), 6);
    // A value made on node 7, read on node 6 by a task node 2 placed.
    let on = |n: u32| CallOpts::new().node(NodeId(n));
    let boxed = make_boxed.options(on(7)).remote(rt, 500).unwrap();
    let (_, inner) = boxed.get_blocking().unwrap().deserialize().unwrap();
    drop(boxed);
    let len = read_len.options(on(6)).remote(rt, inner).unwrap();
    assert_eq!(*len.get_blocking().unwrap(), 500);
    drop((gpu, len));
    for rt in &nodes {
        rt.assert_no_leaks();
    }
}
