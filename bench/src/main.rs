//! owl-bench: runs one standard workload (../shared/BENCHMARKS.md) on one
//! node and prints its figures, as a table or as JSON lines.

mod workloads;

use std::process::ExitCode;

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicIsize, Ordering};

use mimalloc::MiMalloc;

/// mimalloc, counting live heap bytes so memory figures are exact.
struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

/// Bytes currently allocated on the heap by this process.
pub fn live_heap_bytes() -> isize {
    LIVE_BYTES.load(Ordering::Relaxed)
}

// SAFETY: forwards every call to mimalloc unchanged; the counter is a side effect.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { MiMalloc.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { MiMalloc.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { MiMalloc.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: same contract as ours.
        unsafe { MiMalloc.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// One figure.
#[derive(Debug)]
pub struct Figure {
    pub workload: &'static str,
    pub metric: String,
    pub value: f64,
    pub unit: &'static str,
    pub config: serde_json::Value,
}

const USAGE: &str = "usage: owl-bench <workload> [--json] [--shards N]

workloads:
  noop_throughput   10,000 and 1,000,000 no-op tasks: tasks/s, submit rate
  rtt               1,000 sequential submit-then-get: p50/p99 µs
  chain             1,000 tasks each taking the previous result
  tree              1,024 leaves reduced by a binary tree of add tasks
  nested            100 parents each waiting on 100 children
  big_arg           a 100 MiB array passed by value and by reference
  put_get           put and get of 1 KiB, 1 MiB, 100 MiB objects
  pending_memory    bytes per pending task with 1,000,000 tasks queued
  all               every workload above";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut json = false;
    let mut shards: Option<usize> = None;
    let mut workload: Option<String> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--json" => json = true,
            "--shards" => match it.next().and_then(|v| v.parse().ok()) {
                Some(n) if n > 0 => shards = Some(n),
                _ => return usage_error("--shards needs a positive number"),
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            w if !w.starts_with('-') && workload.is_none() => workload = Some(w.to_string()),
            other => return usage_error(&format!("unexpected argument `{other}`")),
        }
    }
    let Some(workload) = workload else {
        return usage_error("no workload given");
    };
    let names: Vec<&str> = if workload == "all" {
        workloads::ALL.to_vec()
    } else {
        vec![workload.as_str()]
    };
    for name in names {
        let figures = match workloads::run(name, shards) {
            Ok(Some(f)) => f,
            Ok(None) => return usage_error(&format!("unknown workload `{name}`")),
            Err(e) => {
                eprintln!("owl-bench: {name} failed: {e:#}");
                return ExitCode::FAILURE;
            }
        };
        for f in figures {
            if json {
                let line = serde_json::json!({
                    "workload": f.workload, "metric": f.metric, "value": f.value,
                    "unit": f.unit, "config": f.config,
                });
                println!("{line}");
            } else {
                println!(
                    "{:<16} {:<34} {:>14.3} {}",
                    f.workload, f.metric, f.value, f.unit
                );
            }
        }
    }
    ExitCode::SUCCESS
}

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("owl-bench: {msg}\n\n{USAGE}");
    ExitCode::from(2)
}
