//! A sequential Task Bench implementation: runs every graph of the flags
//! in order on one thread, checking every task's inputs, and prints the
//! reference's configuration block and timing report.
//!
//! `cargo run --release -p taskbench --example serial -- -steps 100 -width 4 -type stencil_1d -kernel compute_bound -iter 1000`
//!
//! `--dry-run SECONDS` skips execution and reports SECONDS as the elapsed
//! time (to compare reports with the reference's).

use std::process::ExitCode;
use std::time::Instant;

use taskbench::{App, AppError, TaskGraph};

fn run_graph(g: &TaskGraph) -> Result<(), taskbench::ExecuteError> {
    let width = g.max_width as usize;
    let mut prev = vec![vec![0u8; g.output_bytes_per_task]; width];
    let mut next = prev.clone();
    let mut scratch = vec![0u8; g.scratch_bytes_per_task * width];
    TaskGraph::prepare_scratch(&mut scratch);
    for t in 0..g.timesteps {
        for p in g.points_at_timestep(t).points() {
            let inputs: Vec<&[u8]> = g
                .input_points(t, p)
                .iter()
                .map(|&q| &prev[q as usize][..])
                .collect();
            let s = g.scratch_bytes_per_task;
            let pu = p as usize;
            g.execute_point(
                t,
                p,
                &mut next[pu],
                &inputs,
                &mut scratch[pu * s..(pu + 1) * s],
            )?;
        }
        std::mem::swap(&mut prev, &mut next);
    }
    Ok(())
}

fn main() -> ExitCode {
    let (app, rest) = match App::parse_known(std::env::args().skip(1)) {
        Ok(v) => v,
        Err(AppError::HelpRequested) => {
            print!("{}", App::help_message("serial"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let dry_run = match rest.as_slice() {
        [] => None,
        [flag, secs] if flag == "--dry-run" => secs.parse::<f64>().ok(),
        _ => {
            eprintln!("error: unknown arguments {rest:?}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", app.display());
    let elapsed = match dry_run {
        Some(secs) => secs,
        None => {
            let start = Instant::now();
            for g in &app.graphs {
                if let Err(e) = run_graph(g) {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            }
            start.elapsed().as_secs_f64()
        }
    };
    print!("{}", app.report_timing(elapsed));
    ExitCode::SUCCESS
}
