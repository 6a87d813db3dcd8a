//! Multi-node workloads: two owl nodes in this process joined by each
//! transport (in-process channels, TCP, plaintext TCP, QUIC), measured next
//! to the raw transport in the same run: remote round trip, cross-node no-op
//! throughput, the transfer of a large object between arenas, and the
//! bytes a large result moves when it is consumed where it was made.

use std::time::Instant;

use hdrhistogram::Histogram;
use owl::{CallOpts, NodeId, ObjectRef, Runtime, Transport};
use serde_json::json;

use crate::harness::{percentiles, repeat, Figure, Sample};
use crate::workloads::Size;

pub const NAMES: &[&str] = &[
    "remote_rtt",
    "remote_throughput",
    "transfer",
    "data_movement",
];

/// The transports a multi-node workload runs over.
pub const TRANSPORTS: &[&str] = &["inproc", "shm", "tcp", "tcp-plain", "quic", "tcp-pull"];

/// `tcp-pull` is TCP with the two nodes' arenas in different directories,
/// as on two hosts: large objects are pulled in chunks over the socket
/// instead of copied from the holder's arena file.
const PULL: &str = "tcp-pull";

#[owl::remote]
fn one() -> u64 {
    1
}

#[owl::remote]
fn noop() {}

/// Reads a large object through its ref (zero-copy once it is here).
#[owl::remote]
async fn byte_len(r: ObjectRef<Vec<u8>>) -> u64 {
    let v = r.get().await.expect("object");
    v.len() as u64 + u64::from(v[v.len() - 1])
}

/// Two nodes joined by `transport`, `shards` each; the arena directories
/// of `tcp-pull` (kept while the nodes run).
pub fn pair(
    transport: &str,
    shards: usize,
) -> anyhow::Result<(Vec<Runtime>, Vec<tempfile::TempDir>)> {
    let apart = transport == PULL;
    let dirs: Vec<tempfile::TempDir> = if apart {
        vec![tempfile::tempdir()?, tempfile::tempdir()?]
    } else {
        Vec::new()
    };
    let paths: Vec<std::path::PathBuf> = dirs.iter().map(|d| d.path().to_path_buf()).collect();
    let store = move |i: u32| {
        let b = Runtime::builder().shards(shards).store_size(6 << 30);
        match paths.get(i as usize) {
            Some(dir) => b.store_dir(dir),
            None => b,
        }
    };
    if transport == "inproc" {
        return Ok((owl::in_process(2, |n| store(n.0))?, dirs));
    }
    let wire = if apart { "tcp" } else { transport };
    let transport: Transport = wire.parse().map_err(anyhow::Error::msg)?;
    let out = owl::on_loopback(2, transport, move |n| store(n.0))?;
    Ok((out, dirs))
}

/// A large value, made where it runs.
#[owl::remote]
fn make_bytes(len: u64) -> Vec<u8> {
    vec![5u8; len as usize]
}

/// Reads a value passed by ref (the value itself is the argument).
#[owl::remote]
fn sum_len(bytes: Vec<u8>) -> u64 {
    bytes.len() as u64 + u64::from(bytes[bytes.len() - 1])
}

/// A result of `len` bytes made on node 1 and consumed by a task on node 1:
/// the bytes node 1 sends meanwhile (to the owner, node 0), counted by the
/// transport; then the owner reads the value itself, which must move it.
fn data_movement(rt: &Runtime, size: Size, transport: &str, peer: &Runtime) -> Vec<Sample> {
    let len = size.pick(100 << 20, 8 << 20) as u64;
    let made = make_bytes
        .options(on_peer())
        .remote(rt, len)
        .expect("submit");
    let before = peer.bytes_sent();
    let t0 = Instant::now();
    let used = sum_len
        .options(on_peer())
        .remote(rt, &made)
        .expect("submit");
    assert_eq!(*used.get_blocking().expect("consumed"), len + 5);
    let consumed = t0.elapsed();
    let moved = peer.bytes_sent() - before;
    let before = peer.bytes_sent();
    let t0 = Instant::now();
    assert_eq!(made.get_blocking().expect("read").len() as u64, len);
    let read = t0.elapsed();
    let read_moved = peer.bytes_sent() - before;
    let config = json!({ "bytes": len, "transport": transport });
    vec![
        Sample::new(
            format!("consumed_where_made_bytes_sent_{transport}"),
            moved as f64,
            "bytes",
            config.clone(),
        ),
        Sample::new(
            format!("consumed_where_made_ms_{transport}"),
            consumed.as_secs_f64() * 1e3,
            "ms",
            config.clone(),
        ),
        Sample::new(
            format!("owner_read_bytes_sent_{transport}"),
            read_moved as f64,
            "bytes",
            config.clone(),
        ),
        Sample::new(
            format!("owner_read_ms_{transport}"),
            read.as_secs_f64() * 1e3,
            "ms",
            config,
        ),
    ]
}

fn on_peer() -> CallOpts {
    CallOpts::new().node(NodeId(1))
}

fn remote_rtt(rt: &Runtime, size: Size, transport: &str) -> Vec<Sample> {
    let calls = size.pick(2_000, 20);
    let hist = rt.block_on(move |rt| async move {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("bounds");
        for i in 0..calls + calls / 10 {
            let t0 = Instant::now();
            let r = one.options(on_peer()).remote(&rt).expect("submit");
            let v = r.get().await.expect("get");
            assert_eq!(*v, 1);
            if i >= calls / 10 {
                h.saturating_record(t0.elapsed().as_nanos() as u64);
            }
        }
        h
    });
    let c = json!({ "calls": calls, "transport": transport, "nodes": 2 });
    let mut out = percentiles(&hist, &c);
    for s in &mut out {
        s.metric = format!("{}_{transport}", s.metric);
    }
    if let Some(first) = out.first_mut() {
        first.hist = Some(hist);
    }
    out
}

fn remote_throughput(rt: &Runtime, size: Size, transport: &str) -> Vec<Sample> {
    let n = size.pick(200_000, 200);
    let elapsed = rt.block_on(move |rt| async move {
        let t0 = Instant::now();
        let refs: Vec<_> = (0..n)
            .map(|_| noop.options(on_peer()).remote(&rt).expect("submit"))
            .collect();
        rt.wait(&refs, n, None).await;
        let t = t0.elapsed();
        for r in &refs {
            r.get().await.expect("no-op task");
        }
        t
    });
    vec![Sample::new(
        format!("throughput_{transport}"),
        n as f64 / elapsed.as_secs_f64(),
        "tasks/s",
        json!({ "tasks": n, "transport": transport, "nodes": 2, "placement": "all on node 1, submitted from node 0" }),
    )]
}

fn transfer(rt: &Runtime, big: &ObjectRef<Vec<u8>>, transport: &str) -> Vec<Sample> {
    let bytes = big.get_blocking().expect("object").len() as u64;
    let big = big.clone();
    let elapsed = rt.block_on(move |rt| async move {
        let t0 = Instant::now();
        let r = byte_len
            .options(on_peer())
            .remote(&rt, big)
            .expect("submit");
        let n = r.get_owned().await.expect("transfer");
        assert!(n >= bytes);
        t0.elapsed()
    });
    vec![Sample::new(
        format!("bw_{transport}"),
        bytes as f64 / elapsed.as_secs_f64() / 1e9,
        "GB/s",
        json!({ "bytes": bytes, "transport": transport, "chunk_bytes": 4 << 20 }),
    )]
}

/// Runs workload `name` over each of `transports`, two nodes each.
pub fn run(
    name: &str,
    transports: &[String],
    size: Size,
    reps: usize,
    shards: usize,
) -> anyhow::Result<Vec<Figure>> {
    let mut figures = Vec::new();
    for t in transports {
        let (nodes, _dirs) = pair(t, shards)?;
        let rt = &nodes[0];
        let figs = match name {
            "remote_rtt" => repeat(name, reps, || Ok(remote_rtt(rt, size, t)))?,
            "remote_throughput" => repeat(name, reps, || Ok(remote_throughput(rt, size, t)))?,
            "transfer" => {
                let len = size.pick(1 << 30, 8 << 20);
                let big = rt.put(vec![7u8; len])?;
                let figs = repeat(name, reps, || Ok(transfer(rt, &big, t)))?;
                drop(big);
                figs
            }
            "data_movement" => repeat(name, reps, || Ok(data_movement(rt, size, t, &nodes[1])))?,
            other => anyhow::bail!("unknown multi-node workload `{other}`"),
        };
        figures.extend(figs);
        for n in &nodes {
            n.assert_no_leaks();
        }
    }
    Ok(figures)
}
