//! owl-taskbench: Task Bench (StanfordLegion/task-bench) on owl.
//!
//! Every point of every graph is one owl task; its inputs are the
//! `ObjectRef`s of the points it depends on in the previous timestep, so the
//! runtime — not the driver — waits for them. Flags are Task Bench's own
//! (`-steps -width -type -kernel -iter -output -scratch -radix -period
//! -fraction -and ...`); owl's settings come from `OWL_*` variables. Output
//! lines are those of the reference implementations, so the same METG
//! scripts read them.

use std::cell::RefCell;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::Instant;

use mimalloc::MiMalloc;
use owl::{ObjectRef, Runtime};
use taskbench::{App, ExecuteError, TaskGraph};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// The parsed flags. Every node runs the same binary with the same flags
/// (SPMD), so tasks read their graph from here instead of shipping it.
static APP: OnceLock<App> = OnceLock::new();

thread_local! {
    /// Per-shard scratch memory for kernels that use it (memory_bound).
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

fn graph(index: u32) -> &'static TaskGraph {
    &APP.get()
        .expect("APP is set before the runtime starts")
        .graphs[index as usize]
}

/// One point of one graph: checks its inputs, runs the kernel, returns its output.
#[owl::remote]
fn tb_point(
    graph_index: u32,
    timestep: i64,
    point: i64,
    inputs: Vec<Vec<u8>>,
) -> Result<Vec<u8>, ExecuteError> {
    let g = graph(graph_index);
    let mut output = vec![0u8; g.output_bytes_per_task];
    let inputs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
    SCRATCH.with(|s| {
        let mut scratch = s.borrow_mut();
        if scratch.len() != g.scratch_bytes_per_task {
            scratch.resize(g.scratch_bytes_per_task, 0);
            TaskGraph::prepare_scratch(&mut scratch);
        }
        g.execute_point(timestep, point, &mut output, &inputs, &mut scratch)
    })?;
    Ok(output)
}

/// Submits every task of every graph, then waits for them.
///
/// Only the refs of *sinks* (tasks no later task consumes) are kept: every
/// other task is an ancestor of a sink, so the sinks finish last, and a
/// failure anywhere reaches a sink as `DependencyFailed`. Outputs are freed
/// as soon as their consumers have run, as in the MPI reference.
async fn run_graphs(rt: Runtime, app: &'static App) -> Result<f64, String> {
    let t0 = Instant::now();
    let mut sinks: Vec<ObjectRef<Vec<u8>>> = Vec::new();
    for g in &app.graphs {
        let width = g.max_width as usize;
        let mut prev: Vec<Option<ObjectRef<Vec<u8>>>> = vec![None; width];
        for t in 0..g.timesteps {
            let mut cur: Vec<Option<ObjectRef<Vec<u8>>>> = vec![None; width];
            for p in g.points_at_timestep(t).points() {
                let inputs = g
                    .input_points(t, p)
                    .into_iter()
                    .map(|q| {
                        prev[q as usize].clone().ok_or_else(|| {
                            format!(
                                "graph {}: ({t}, {p}) depends on missing point {q}",
                                g.graph_index
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let r = tb_point
                    .remote(&rt, g.graph_index as u32, t, p, inputs)
                    .map_err(|e| e.to_string())?;
                if t + 1 == g.timesteps || g.output_points(t, p).is_empty() {
                    sinks.push(r.clone());
                }
                cur[p as usize] = Some(r);
            }
            prev = cur;
        }
    }
    rt.wait(&sinks, sinks.len(), None).await;
    let elapsed = t0.elapsed().as_secs_f64();
    // Outside the timed region: every task must have succeeded (validation
    // included); a failure upstream shows here as a failed dependency.
    for r in &sinks {
        r.get().await.map_err(|e| e.to_string())?;
    }
    Ok(elapsed)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{}", App::help_message("owl-taskbench"));
        println!("owl settings: OWL_SHARDS, OWL_SPIN_US, OWL_STORE_SIZE, ... (see README)");
        return ExitCode::SUCCESS;
    }
    let app = match App::parse(&args) {
        Ok(app) => app,
        Err(e) => {
            eprintln!(
                "owl-taskbench: {e}\n\n{}",
                App::help_message("owl-taskbench")
            );
            return ExitCode::from(2);
        }
    };
    let app: &'static App = APP.get_or_init(|| app);
    let rt = match Runtime::builder().from_env().and_then(|b| b.build()) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("owl-taskbench: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", app.display());
    match rt.block_on(move |rt| run_graphs(rt, app)) {
        Ok(elapsed) => {
            print!("{}", app.report_timing(elapsed));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("owl-taskbench: {e}");
            ExitCode::FAILURE
        }
    }
}
