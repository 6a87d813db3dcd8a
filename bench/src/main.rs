//! owl-bench: runs the standard workloads (../shared/BENCHMARKS.md) and the
//! machine's physical limits, and reports medians of repetitions as a table,
//! JSON lines and SVG plots.

mod alloc;
mod cluster;
mod facts;
mod harness;
mod limits;
mod metg_report;
mod plot;
mod recovery;
mod spill;
mod workloads;

use std::path::PathBuf;
use std::process::ExitCode;

use harness::{repeat, Figure};
use owl::Runtime;
use serde_json::{json, Value};
use workloads::Size;

pub use alloc::live_heap_bytes;

const USAGE: &str =
    "usage: owl-bench <workload>... [--json] [--reps N] [--out DIR] [--shards N] [--tiny]

workloads (one node):
  noop_throughput   10,000 and 1,000,000 no-op tasks: tasks/s and submit rate
  rtt               1,000 sequential submit-then-get: p50/p90/p99/p99.9/max µs
  chain             1,000 tasks each taking the previous result
  tree              1,024 leaves reduced by a binary tree of add tasks
  nested            100 parents each waiting on 100 children
  big_arg           a 100 MiB array passed by value and by reference
  put_get           put and get of 1 KiB, 1 MiB, 100 MiB objects
  grain             throughput and efficiency against task size
  pending_memory    bytes per pending task with 1,000,000 tasks queued
  spill             1 GiB of arena blocks spilled to OWL_SPILL_DIR and read
                    back, against a plain write and read of it there: GB/s
  all               every workload above
  limits            the machine's limits (memcpy, core hand-off, loopback TCP
                    and QUIC, tokio spawn) and owl's figures as ratios of them

workloads (two nodes in this process, per transport; see --transport):
  remote_rtt        2,000 sequential remote calls: latency percentiles, and
                    their ratio to the raw loopback TCP/QUIC round trip
  remote_throughput 200,000 no-op tasks placed on the other node
  transfer          a 1 GiB object pulled into the other node's arena, and
                    its ratio to raw loopback TCP/QUIC bandwidth
  data_movement     a 100 MiB result made and consumed on the other node:
                    bytes that node sends meanwhile (counted by the
                    transport), then those the owner's own read moves

workloads (three nodes in this process over loopback TCP):
  recovery          a tree of 10,000 tasks with 1 MiB leaves, undisturbed
                    and with node 1 killed halfway: time to the (same)
                    answer, their ratio, and the tasks that ran again

  owl-bench metg-report DIR [--cores N]
                    METG(50%) of the Task Bench sweeps logged in DIR (see
                    scripts/taskbench-metg.sh), side by side, with a plot

options:
  --json       one JSON line per figure instead of the table
  --reps N     repetitions after one warm-up (default 3); the median is reported
  --out DIR    also write results.jsonl, results.md and SVG plots into DIR
  --shards N   shards per node (default: all cores; 1 for two-node workloads)
  --transport LIST  comma-separated, for two-node workloads: inproc, shm,
               tcp, tcp-plain, quic, tcp-pull (TCP with separate arena
               directories, as across hosts: objects are pulled in chunks
               rather than copied from the holder's arena file); default all
  --tiny       every workload at a tiny size (a smoke test, not a measurement)";

struct Options {
    names: Vec<String>,
    json: bool,
    reps: usize,
    out: Option<PathBuf>,
    shards: Option<usize>,
    size: Size,
    transports: Vec<String>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        names: Vec::new(),
        json: false,
        reps: 3,
        out: None,
        shards: None,
        size: Size::Full,
        transports: cluster::TRANSPORTS.iter().map(|t| t.to_string()).collect(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut number = |flag: &str| -> Result<usize, String> {
            match it.next().map(|v| v.parse::<usize>()) {
                Some(Ok(n)) if n > 0 => Ok(n),
                Some(_) => Err(format!("{flag} needs a positive whole number")),
                None => Err(format!("{flag} needs a value")),
            }
        };
        match a.as_str() {
            "--json" => o.json = true,
            "--tiny" => o.size = Size::Tiny,
            "--reps" => o.reps = number("--reps")?,
            "--shards" => o.shards = Some(number("--shards")?),
            "--out" => o.out = Some(it.next().ok_or("--out needs a directory")?.into()),
            "--transport" => {
                let list = it.next().ok_or("--transport needs a list")?;
                o.transports = list.split(',').map(str::to_string).collect();
                if let Some(bad) = o
                    .transports
                    .iter()
                    .find(|t| !cluster::TRANSPORTS.contains(&t.as_str()))
                {
                    return Err(format!(
                        "unknown transport `{bad}` (expected {})",
                        cluster::TRANSPORTS.join(", ")
                    ));
                }
            }
            w if !w.starts_with('-') => o.names.push(w.to_string()),
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    if o.names.is_empty() {
        return Err("no workload given".into());
    }
    let known = |n: &str| {
        n == "all"
            || n == "limits"
            || n == recovery::NAME
            || workloads::ALL.contains(&n)
            || cluster::NAMES.contains(&n)
    };
    if let Some(bad) = o.names.iter().find(|n| !known(n)) {
        return Err(format!("unknown workload `{bad}`"));
    }
    Ok(o)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if args.first().is_some_and(|a| a == "metg-report") {
        return metg_report_cmd(&args[1..]);
    }
    let opts = match parse(&args) {
        Ok(o) => o,
        Err(msg) => {
            eprintln!("owl-bench: {msg}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("owl-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn metg_report_cmd(args: &[String]) -> ExitCode {
    let mut dir = None;
    let mut cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as i64;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--cores" => match it.next().and_then(|v| v.parse().ok()) {
                Some(n) if n > 0 => cores = n,
                _ => {
                    eprintln!("owl-bench: --cores needs a positive whole number");
                    return ExitCode::from(2);
                }
            },
            d if dir.is_none() && !d.starts_with('-') => dir = Some(PathBuf::from(d)),
            other => {
                eprintln!("owl-bench: unexpected argument `{other}`\n\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let Some(dir) = dir else {
        eprintln!("owl-bench: metg-report needs the directory of sweep logs\n\n{USAGE}");
        return ExitCode::from(2);
    };
    match metg_report::run(&dir, cores, 0.5) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("owl-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime(shards: Option<usize>) -> anyhow::Result<Runtime> {
    let mut b = Runtime::builder().from_env()?;
    if let Some(n) = shards {
        b = b.shards(n);
    }
    Ok(b.build()?)
}

fn run_workload(name: &str, rt: &Runtime, opts: &Options) -> anyhow::Result<Vec<Figure>> {
    let figures = repeat(name, opts.reps, || {
        workloads::run_once(name, rt, opts.size).expect("workload names are checked")
    })?;
    rt.assert_no_leaks();
    Ok(figures)
}

fn run(opts: &Options) -> anyhow::Result<()> {
    let rt = runtime(opts.shards)?;
    let machine = facts::machine(&rt.event_loop().to_string());
    let mut names: Vec<&str> = Vec::new();
    for n in &opts.names {
        match n.as_str() {
            "all" => names.extend(workloads::ALL),
            other => names.push(other),
        }
    }
    let mut figures = Vec::new();
    for name in names {
        let new = if name == "limits" {
            limits_with_ratios(&rt, opts)?
        } else if name == recovery::NAME {
            repeat(name, opts.reps, || recovery::run(opts.size))?
        } else if cluster::NAMES.contains(&name) {
            cluster_with_ratios(name, opts)?
        } else {
            run_workload(name, &rt, opts)?
        };
        emit(&new, opts, &machine);
        figures.extend(new);
    }
    if let Some(dir) = &opts.out {
        write_out(dir, &figures, &machine)?;
    }
    Ok(())
}

/// The limits, the owl workloads they bound, and owl's figure as a multiple of each limit.
fn limits_with_ratios(rt: &Runtime, opts: &Options) -> anyhow::Result<Vec<Figure>> {
    let mut figs = repeat("limits", opts.reps, || limits::run(opts.size))?;
    let mut owl = Vec::new();
    for w in ["noop_throughput", "rtt", "put_get"] {
        owl.extend(run_workload(w, rt, opts)?);
    }
    let find = |set: &[Figure], w: &str, m: &str| {
        set.iter()
            .find(|f| f.workload == w && f.metric == m)
            .map(|f| f.value)
    };
    let pairs = [
        (
            "noop_throughput",
            "throughput_1000000",
            "tokio_spawn",
            "owl tasks/s ÷ tokio spawn rate",
        ),
        (
            "noop_throughput",
            "throughput_1000",
            "tokio_spawn",
            "owl tasks/s ÷ tokio spawn rate",
        ),
        (
            "rtt",
            "p50",
            "pingpong_atomic_rtt",
            "owl rtt ÷ atomic hand-off round trip",
        ),
        (
            "rtt",
            "p50",
            "pingpong_channel_rtt",
            "owl rtt ÷ parking channel round trip",
        ),
        (
            "put_get",
            "put_100MiB_bw",
            "memcpy_100MiB",
            "owl put GB/s ÷ memcpy GB/s",
        ),
        (
            "put_get",
            "put_1MiB_bw",
            "memcpy_1MiB",
            "owl put GB/s ÷ memcpy GB/s",
        ),
    ];
    let mut ratios = Vec::new();
    for (w, m, limit, meaning) in pairs {
        if let (Some(o), Some(l)) = (find(&owl, w, m), find(&figs, "limits", limit)) {
            ratios.push(Figure {
                workload: "limits".into(),
                metric: format!("ratio_{w}.{m}_to_{limit}"),
                value: o / l,
                unit: "x",
                config: json!({ "meaning": meaning, "owl": o, "limit": l }),
                reps: vec![o / l],
                hist: None,
            });
        }
    }
    figs.extend(owl);
    figs.extend(ratios);
    Ok(figs)
}

/// A two-node workload per transport, the raw loopback TCP/QUIC figures of
/// the same run, and owl's figure as a multiple of the raw one.
fn cluster_with_ratios(name: &str, opts: &Options) -> anyhow::Result<Vec<Figure>> {
    let shards = opts.shards.unwrap_or(1);
    let mut figs = cluster::run(name, &opts.transports, opts.size, opts.reps, shards)?;
    let (metric, raw_metric) = match name {
        "remote_rtt" => ("p50", "rtt_p50"),
        "transfer" => ("bw", "bw"),
        _ => return Ok(figs),
    };
    let raw = repeat("limits", opts.reps, || limits::raw_transports(opts.size))?;
    let mut ratios = Vec::new();
    for t in &opts.transports {
        let wire = if t == "quic" { "quic" } else { "tcp" };
        let owl = figs.iter().find(|f| f.metric == format!("{metric}_{t}"));
        // A round trip is compared with the raw socket both blocking and
        // busy-polling: a blocked thread's wake-up varies 5-25 µs with the
        // machine's load here, a spinning one does not.
        let mut bases = vec![format!("{wire}_{raw_metric}")];
        if name == "remote_rtt" && wire == "tcp" {
            bases.push("tcp_rtt_busy_p50".to_string());
        }
        for base in bases {
            let b = raw.iter().find(|f| f.metric == base);
            if let (Some(o), Some(b), false) = (owl, b, t == "inproc" || t == "shm") {
                ratios.push(Figure {
                    workload: name.into(),
                    metric: format!("ratio_{metric}_{t}_to_{}", b.metric),
                    value: o.value / b.value,
                    unit: "x",
                    config: json!({ "owl": o.value, "raw": b.value, "raw_metric": b.metric }),
                    reps: vec![o.value / b.value],
                    hist: None,
                });
            }
        }
    }
    figs.extend(raw);
    figs.extend(ratios);
    Ok(figs)
}

fn emit(figures: &[Figure], opts: &Options, machine: &Value) {
    for f in figures {
        if opts.json {
            println!("{}", f.to_json(machine));
        } else {
            let (lo, hi) = f
                .reps
                .iter()
                .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
            println!(
                "{:<16} {:<44} {:>14.3} {:<8} [{:.3} – {:.3}, n={}]",
                f.workload,
                f.metric,
                f.value,
                f.unit,
                lo,
                hi,
                f.reps.len()
            );
        }
    }
}

fn write_out(dir: &std::path::Path, figures: &[Figure], machine: &Value) -> anyhow::Result<()> {
    use std::fmt::Write as _;
    std::fs::create_dir_all(dir)?;
    let mut jsonl = String::new();
    let mut md = format!("# owl-bench results\n\nmachine: `{machine}`\n\n| workload | metric | median | unit | repetitions |\n| --- | --- | ---: | --- | --- |\n");
    for f in figures {
        writeln!(jsonl, "{}", f.to_json(machine))?;
        let reps: Vec<String> = f.reps.iter().map(|v| format!("{v:.3}")).collect();
        writeln!(
            md,
            "| {} | {} | {:.3} | {} | {} |",
            f.workload,
            f.metric,
            f.value,
            f.unit,
            reps.join(", ")
        )?;
    }
    std::fs::write(dir.join("results.jsonl"), jsonl)?;
    std::fs::write(dir.join("results.md"), md)?;
    let plots = plot::all(dir, figures)?;
    eprintln!("owl-bench: wrote {} ({} plots)", dir.display(), plots.len());
    Ok(())
}
