//! The standard workloads (BENCHMARKS.md), each timed inside one root task
//! on shard 0. `Size::Tiny` shrinks every count so CI can run them all.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use owl::{ObjectRef, Runtime};
use serde_json::{json, Value};

use crate::harness::{percentiles, Sample};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    Full,
    Tiny,
}

impl Size {
    /// `full` normally, `tiny` for smoke runs.
    pub fn pick(self, full: usize, tiny: usize) -> usize {
        match self {
            Size::Full => full,
            Size::Tiny => tiny,
        }
    }
}

/// Every single-node workload, in the order `all` runs them.
pub const ALL: &[&str] = &[
    "noop_throughput",
    "rtt",
    "chain",
    "tree",
    "nested",
    "big_arg",
    "put_get",
    "grain",
    "pending_memory",
    "spill",
];

#[owl::remote]
fn noop() {}

#[owl::remote]
fn one() -> u64 {
    1
}

#[owl::remote]
fn inc(x: u64) -> u64 {
    x + 1
}

#[owl::remote]
fn add(a: u64, b: u64) -> u64 {
    a + b
}

#[owl::remote]
async fn parent(rt: Runtime, children: u64) -> u64 {
    let kids: Vec<_> = (0..children)
        .map(|_| noop.remote(&rt).expect("submit"))
        .collect();
    rt.wait(&kids, kids.len(), None).await;
    children
}

#[owl::remote]
fn sum_vec(v: Vec<u64>) -> u64 {
    v.iter().sum()
}

#[owl::remote]
async fn sum_ref(r: ObjectRef<Vec<u64>>) -> u64 {
    let v = r.get().await.expect("argument");
    v.iter().map(|x| x.to_native()).sum()
}

/// Spins for `ns` nanoseconds: a task of a given grain.
#[owl::remote]
fn spin_for(ns: u64) {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_nanos(ns) {
        std::hint::spin_loop();
    }
}

pub fn config(rt: &Runtime, extra: Value) -> Value {
    let mut c =
        json!({ "shards": rt.shards(), "event_loop": rt.event_loop().to_string(), "nodes": 1 });
    if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    c
}

/// Runs one repetition of workload `name`; `None` if there is no such workload.
pub fn run_once(name: &str, rt: &Runtime, size: Size) -> Option<anyhow::Result<Vec<Sample>>> {
    Some(match name {
        "noop_throughput" => Ok(noop_throughput(rt, size)),
        "rtt" => Ok(rtt(rt, size)),
        "chain" => Ok(chain(rt, size)),
        "tree" => Ok(tree(rt, size)),
        "nested" => Ok(nested(rt, size)),
        "big_arg" => Ok(big_arg(rt, size)),
        "put_get" => Ok(put_get(rt, size)),
        "grain" => Ok(grain(rt, size)),
        "pending_memory" => pending_memory(size),
        "spill" => crate::spill::run(size),
        _ => return None,
    })
}

fn noop_throughput(rt: &Runtime, size: Size) -> Vec<Sample> {
    let mut out = Vec::new();
    for n in [size.pick(10_000, 100), size.pick(1_000_000, 1_000)] {
        let (submit, total) = rt.block_on(move |rt| async move {
            let t0 = Instant::now();
            let refs: Vec<_> = (0..n).map(|_| noop.remote(&rt).expect("submit")).collect();
            let submitted = t0.elapsed();
            rt.wait(&refs, n, None).await;
            let total = t0.elapsed();
            drop(refs);
            (submitted, total)
        });
        let c = config(rt, json!({ "tasks": n }));
        out.push(Sample::new(
            format!("throughput_{n}"),
            n as f64 / total.as_secs_f64(),
            "tasks/s",
            c.clone(),
        ));
        out.push(Sample::new(
            format!("submit_rate_{n}"),
            n as f64 / submit.as_secs_f64(),
            "tasks/s",
            c,
        ));
    }
    out
}

fn rtt(rt: &Runtime, size: Size) -> Vec<Sample> {
    let calls = size.pick(1_000, 20);
    let hist = rt.block_on(move |rt| async move {
        let mut h =
            Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds");
        for i in 0..calls + calls / 10 {
            let t0 = Instant::now();
            let r = one.remote(&rt).expect("submit");
            let v = r.get().await.expect("get");
            assert_eq!(*v, 1u64);
            if i >= calls / 10 {
                h.saturating_record(t0.elapsed().as_nanos() as u64);
            }
        }
        h
    });
    let c = config(rt, json!({ "calls": calls }));
    let mut out = percentiles(&hist, &c);
    out[0].hist = Some(hist);
    out
}

fn chain(rt: &Runtime, size: Size) -> Vec<Sample> {
    let n = size.pick(1_000, 10) as u64;
    let total = rt.block_on(move |rt| async move {
        let t0 = Instant::now();
        let mut prev = inc.remote(&rt, 0).expect("submit");
        for _ in 1..n {
            prev = inc.remote(&rt, prev).expect("submit");
        }
        let v = prev.get().await.expect("get");
        assert_eq!(*v, n);
        t0.elapsed()
    });
    let c = config(rt, json!({ "tasks": n }));
    vec![
        Sample::new("total", total.as_secs_f64() * 1e3, "ms", c.clone()),
        Sample::new("per_task", total.as_secs_f64() * 1e6 / n as f64, "us", c),
    ]
}

fn tree(rt: &Runtime, size: Size) -> Vec<Sample> {
    let leaves = size.pick(1_024, 16);
    let total = rt.block_on(move |rt| async move {
        let t0 = Instant::now();
        let mut level: Vec<ObjectRef<u64>> = (0..leaves)
            .map(|_| one.remote(&rt).expect("submit"))
            .collect();
        while level.len() > 1 {
            level = level
                .chunks(2)
                .map(|p| add.remote(&rt, &p[0], &p[1]).expect("submit"))
                .collect();
        }
        let v = level[0].get().await.expect("get");
        assert_eq!(*v, leaves as u64);
        t0.elapsed()
    });
    vec![Sample::new(
        "total",
        total.as_secs_f64() * 1e3,
        "ms",
        config(rt, json!({ "leaves": leaves })),
    )]
}

fn nested(rt: &Runtime, size: Size) -> Vec<Sample> {
    let (parents, children) = (size.pick(100, 4), size.pick(100, 4) as u64);
    let total = rt.block_on(move |rt| async move {
        let t0 = Instant::now();
        let ps: Vec<_> = (0..parents)
            .map(|_| parent.remote(&rt, children).expect("submit"))
            .collect();
        rt.wait(&ps, ps.len(), None).await;
        t0.elapsed()
    });
    vec![Sample::new(
        "total",
        total.as_secs_f64() * 1e3,
        "ms",
        config(rt, json!({ "parents": parents, "children": children })),
    )]
}

const MIB: usize = 1 << 20;

fn big_arg(rt: &Runtime, size: Size) -> Vec<Sample> {
    let bytes = size.pick(100 * MIB, 256 << 10);
    let len = bytes / 8;
    let expected: u64 = (0..len as u64).sum();
    let (by_value, put, by_ref) = rt.block_on(move |rt| async move {
        let v: Vec<u64> = (0..len as u64).collect();
        let t0 = Instant::now();
        let s = sum_vec.remote(&rt, v).expect("submit");
        assert_eq!(*s.get().await.expect("get"), expected);
        let by_value = t0.elapsed();
        let v: Vec<u64> = (0..len as u64).collect();
        let t1 = Instant::now();
        let r = rt.put(v).expect("put");
        let put = t1.elapsed();
        let t2 = Instant::now();
        let s = sum_ref.remote(&rt, r.clone()).expect("submit");
        assert_eq!(*s.get().await.expect("get"), expected);
        (by_value, put, t2.elapsed())
    });
    let c = config(rt, json!({ "bytes": bytes }));
    vec![
        Sample::new(
            "by_value",
            by_value.as_secs_f64() * 1e3,
            "ms/call",
            c.clone(),
        ),
        Sample::new("put_once", put.as_secs_f64() * 1e3, "ms", c.clone()),
        Sample::new("by_reference", by_ref.as_secs_f64() * 1e3, "ms/call", c),
    ]
}

fn put_get(rt: &Runtime, size: Size) -> Vec<Sample> {
    let mut out = Vec::new();
    let cases = [
        ("1KiB", 1024usize, size.pick(10_000, 10)),
        ("1MiB", MIB, size.pick(200, 2)),
        ("100MiB", 100 * MIB, size.pick(5, 1)),
    ];
    for (label, bytes, reps) in cases {
        if size == Size::Tiny && bytes > MIB {
            continue;
        }
        let reps = reps as u32;
        let (put, get) = rt.block_on(move |rt| async move {
            let v = vec![0xA5u8; bytes];
            let t0 = Instant::now();
            for _ in 0..reps {
                drop(rt.put(v.clone()).expect("put"));
            }
            // Cloning the source is part of the loop above; time it alone and subtract.
            let t_clone = Instant::now();
            for _ in 0..reps {
                drop(std::hint::black_box(v.clone()));
            }
            let clone = t_clone.elapsed();
            let put = (t_clone - t0).saturating_sub(clone) / reps;
            let r = rt.put(v).expect("put");
            let gets = 10_000u32;
            let t1 = Instant::now();
            for _ in 0..gets {
                let g = r.get().await.expect("get");
                assert_eq!(std::hint::black_box(g.len()), bytes);
            }
            (put.max(Duration::from_nanos(1)), t1.elapsed() / gets)
        });
        let c = config(rt, json!({ "bytes": bytes }));
        out.push(Sample::new(
            format!("put_{label}"),
            1.0 / put.as_secs_f64(),
            "ops/s",
            c.clone(),
        ));
        out.push(Sample::new(
            format!("put_{label}_bw"),
            bytes as f64 / put.as_secs_f64() / 1e9,
            "GB/s",
            c.clone(),
        ));
        out.push(Sample::new(
            format!("get_{label}"),
            1.0 / get.as_secs_f64(),
            "calls/s",
            c.clone(),
        ));
        out.push(Sample::new(
            format!("get_{label}_latency"),
            get.as_secs_f64() * 1e6,
            "us",
            c,
        ));
    }
    out
}

/// Task grains the `grain` workload sweeps, in µs.
pub const GRAINS_US: &[u64] = &[0, 1, 2, 5, 10, 20, 50, 100, 1000];

/// Throughput and efficiency against task size: tasks that each spin for a
/// grain; efficiency = useful time / (elapsed × shards).
fn grain(rt: &Runtime, size: Size) -> Vec<Sample> {
    let mut out = Vec::new();
    for &us in GRAINS_US {
        // About 0.2 s of useful work per point (at least 10,000 tasks).
        let n = match size {
            Size::Full => ((200_000 / us.max(1)) as usize * rt.shards()).max(10_000),
            Size::Tiny => 50,
        };
        let elapsed = rt.block_on(move |rt| async move {
            let t0 = Instant::now();
            let refs: Vec<_> = (0..n)
                .map(|_| spin_for.remote(&rt, us * 1000).expect("submit"))
                .collect();
            rt.wait(&refs, n, None).await;
            t0.elapsed()
        });
        let c = config(rt, json!({ "tasks": n, "grain_us": us }));
        out.push(Sample::new(
            format!("throughput_{us}us"),
            n as f64 / elapsed.as_secs_f64(),
            "tasks/s",
            c.clone(),
        ));
        if us > 0 {
            let eff = (n as f64 * us as f64 * 1e-6) / (elapsed.as_secs_f64() * rt.shards() as f64);
            out.push(Sample::new(
                format!("efficiency_{us}us"),
                eff * 100.0,
                "%",
                c,
            ));
        }
    }
    out
}

fn rss_bytes() -> anyhow::Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").context("reading /proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .context("statm format")?
        .parse()?;
    Ok(pages * 4096)
}

/// Memory per queued task: one shard, so nothing runs while the root task
/// submits; measured by the counting allocator and by RSS.
fn pending_memory(size: Size) -> anyhow::Result<Vec<Sample>> {
    let rt = Runtime::builder().from_env()?.shards(1).build()?;
    let n = size.pick(1_000_000, 1_000);
    let (heap, rss) = rt.block_on(move |rt| async move {
        let mut refs = Vec::with_capacity(n);
        let (heap0, rss0) = (crate::live_heap_bytes(), rss_bytes().expect("rss"));
        for _ in 0..n {
            refs.push(noop.remote(&rt).expect("submit"));
        }
        let (heap1, rss1) = (crate::live_heap_bytes(), rss_bytes().expect("rss"));
        rt.wait(&refs, n, None).await;
        drop(refs);
        ((heap1 - heap0) as f64, rss1.saturating_sub(rss0) as f64)
    });
    rt.assert_no_leaks();
    let c = config(
        &rt,
        json!({ "tasks": n, "note": "the caller's preallocated Vec of refs is not counted" }),
    );
    Ok(vec![
        Sample::new(
            "heap_bytes_per_pending_task",
            heap / n as f64,
            "bytes",
            c.clone(),
        ),
        Sample::new("rss_bytes_per_pending_task", rss / n as f64, "bytes", c),
    ])
}
