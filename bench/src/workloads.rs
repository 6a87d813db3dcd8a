//! The standard workloads, each timed inside one root task on shard 0.

use std::time::Instant;

use anyhow::Context as _;
use hdrhistogram::Histogram;
use owl::{ObjectRef, Runtime};
use serde_json::json;

use crate::Figure;

pub const ALL: &[&str] = &[
    "noop_throughput",
    "rtt",
    "chain",
    "tree",
    "nested",
    "big_arg",
    "put_get",
    "pending_memory",
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

fn runtime(shards: Option<usize>) -> anyhow::Result<Runtime> {
    let mut b = Runtime::builder().from_env()?;
    if let Some(n) = shards {
        b = b.shards(n);
    }
    Ok(b.build()?)
}

fn config(rt: &Runtime, extra: serde_json::Value) -> serde_json::Value {
    let mut c =
        json!({ "shards": rt.shards(), "event_loop": rt.event_loop().to_string(), "nodes": 1 });
    if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    c
}

fn fig(
    workload: &'static str,
    metric: impl Into<String>,
    value: f64,
    unit: &'static str,
    config: serde_json::Value,
) -> Figure {
    Figure {
        workload,
        metric: metric.into(),
        value,
        unit,
        config,
    }
}

/// Runs workload `name`; `None` if there is no such workload.
pub fn run(name: &str, shards: Option<usize>) -> anyhow::Result<Option<Vec<Figure>>> {
    let figures = match name {
        "noop_throughput" => noop_throughput(shards)?,
        "rtt" => rtt(shards)?,
        "chain" => chain(shards)?,
        "tree" => tree(shards)?,
        "nested" => nested(shards)?,
        "big_arg" => big_arg(shards)?,
        "put_get" => put_get(shards)?,
        "pending_memory" => pending_memory()?,
        _ => return Ok(None),
    };
    Ok(Some(figures))
}

fn noop_throughput(shards: Option<usize>) -> anyhow::Result<Vec<Figure>> {
    let rt = runtime(shards)?;
    let mut out = Vec::new();
    for n in [10_000usize, 1_000_000] {
        let (submit, total) = rt.block_on(move |rt| async move {
            let t0 = Instant::now();
            let refs: Vec<_> = (0..n).map(|_| noop.remote(&rt).expect("submit")).collect();
            let submitted = t0.elapsed();
            rt.wait(&refs, n, None).await;
            let total = t0.elapsed();
            drop(refs);
            (submitted, total)
        });
        let c = config(&rt, json!({ "tasks": n }));
        out.push(fig(
            "noop_throughput",
            format!("throughput_{n}"),
            n as f64 / total.as_secs_f64(),
            "tasks/s",
            c.clone(),
        ));
        out.push(fig(
            "noop_throughput",
            format!("submit_rate_{n}"),
            n as f64 / submit.as_secs_f64(),
            "tasks/s",
            c,
        ));
    }
    rt.assert_no_leaks();
    Ok(out)
}

fn rtt(shards: Option<usize>) -> anyhow::Result<Vec<Figure>> {
    let rt = runtime(shards)?;
    let hist = rt.block_on(|rt| async move {
        let mut h = Histogram::<u64>::new(3).expect("histogram");
        for i in 0..1_100 {
            let t0 = Instant::now();
            let r = one.remote(&rt).expect("submit");
            let v = r.get().await.expect("get");
            assert_eq!(*v, 1u64);
            if i >= 100 {
                h.record(t0.elapsed().as_nanos() as u64).expect("record");
            }
        }
        h
    });
    rt.assert_no_leaks();
    let c = config(&rt, json!({ "calls": 1000 }));
    Ok(vec![
        fig(
            "rtt",
            "p50",
            hist.value_at_quantile(0.5) as f64 / 1e3,
            "us",
            c.clone(),
        ),
        fig(
            "rtt",
            "p99",
            hist.value_at_quantile(0.99) as f64 / 1e3,
            "us",
            c,
        ),
    ])
}

fn chain(shards: Option<usize>) -> anyhow::Result<Vec<Figure>> {
    let rt = runtime(shards)?;
    let n = 1_000u64;
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
    rt.assert_no_leaks();
    let c = config(&rt, json!({ "tasks": n }));
    Ok(vec![
        fig("chain", "total", total.as_secs_f64() * 1e3, "ms", c.clone()),
        fig(
            "chain",
            "per_task",
            total.as_secs_f64() * 1e6 / n as f64,
            "us",
            c,
        ),
    ])
}

fn tree(shards: Option<usize>) -> anyhow::Result<Vec<Figure>> {
    let rt = runtime(shards)?;
    let leaves = 1_024usize;
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
    rt.assert_no_leaks();
    Ok(vec![fig(
        "tree",
        "total",
        total.as_secs_f64() * 1e3,
        "ms",
        config(&rt, json!({ "leaves": leaves })),
    )])
}

fn nested(shards: Option<usize>) -> anyhow::Result<Vec<Figure>> {
    let rt = runtime(shards)?;
    let total = rt.block_on(|rt| async move {
        let t0 = Instant::now();
        let parents: Vec<_> = (0..100)
            .map(|_| parent.remote(&rt, 100).expect("submit"))
            .collect();
        rt.wait(&parents, parents.len(), None).await;
        t0.elapsed()
    });
    rt.assert_no_leaks();
    Ok(vec![fig(
        "nested",
        "total",
        total.as_secs_f64() * 1e3,
        "ms",
        config(&rt, json!({ "parents": 100, "children": 100 })),
    )])
}

const MIB: usize = 1 << 20;

fn big_arg(shards: Option<usize>) -> anyhow::Result<Vec<Figure>> {
    let rt = runtime(shards)?;
    let len = 100 * MIB / 8;
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
    rt.assert_no_leaks();
    let c = config(&rt, json!({ "bytes": 100 * MIB }));
    Ok(vec![
        fig(
            "big_arg",
            "by_value",
            by_value.as_secs_f64() * 1e3,
            "ms/call",
            c.clone(),
        ),
        fig(
            "big_arg",
            "put_once",
            put.as_secs_f64() * 1e3,
            "ms",
            c.clone(),
        ),
        fig(
            "big_arg",
            "by_reference",
            by_ref.as_secs_f64() * 1e3,
            "ms/call",
            c,
        ),
    ])
}

fn put_get(shards: Option<usize>) -> anyhow::Result<Vec<Figure>> {
    let rt = runtime(shards)?;
    let mut out = Vec::new();
    for (label, size, reps) in [
        ("1KiB", 1024usize, 10_000u32),
        ("1MiB", MIB, 200),
        ("100MiB", 100 * MIB, 5),
    ] {
        let (put, get) = rt.block_on(move |rt| async move {
            let v = vec![0xA5u8; size];
            let t0 = Instant::now();
            for _ in 0..reps {
                drop(rt.put(v.clone()).expect("put"));
            }
            // Cloning the source is part of the loop; time it alone and subtract.
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
                assert_eq!(std::hint::black_box(g.len()), size);
            }
            (put, t1.elapsed() / gets)
        });
        let c = config(&rt, json!({ "bytes": size }));
        out.push(fig(
            "put_get",
            format!("put_{label}"),
            1.0 / put.as_secs_f64(),
            "ops/s",
            c.clone(),
        ));
        out.push(fig(
            "put_get",
            format!("put_{label}_bw"),
            size as f64 / put.as_secs_f64() / 1e9,
            "GB/s",
            c.clone(),
        ));
        out.push(fig(
            "put_get",
            format!("get_{label}"),
            1.0 / get.as_secs_f64(),
            "calls/s",
            c.clone(),
        ));
        out.push(fig(
            "put_get",
            format!("get_{label}_latency"),
            get.as_secs_f64() * 1e6,
            "us",
            c,
        ));
    }
    rt.assert_no_leaks();
    Ok(out)
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

fn pending_memory() -> anyhow::Result<Vec<Figure>> {
    // One shard, so nothing runs while the root task submits.
    let rt = runtime(Some(1))?;
    let n = 1_000_000usize;
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
        json!({ "tasks": n, "note": "caller's Vec of refs preallocated, not counted" }),
    );
    Ok(vec![
        fig(
            "pending_memory",
            "heap_bytes_per_pending_task",
            heap / n as f64,
            "bytes",
            c.clone(),
        ),
        fig(
            "pending_memory",
            "rss_bytes_per_pending_task",
            rss / n as f64,
            "bytes",
            c,
        ),
    ])
}
