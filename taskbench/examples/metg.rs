//! Efficiency table and METG of a sweep of Task Bench runs, read from their
//! concatenated output on standard input (as Task Bench's
//! `scripts/chart_metg.py` reads its logs).
//!
//! `... | cargo run -p taskbench --example metg -- CORES [NGRAPHS] [THRESHOLD] [PEAK_FLOPS]`
//!
//! Without PEAK_FLOPS, efficiency is relative to the best FLOP/s observed in
//! the sweep; with it, relative to that peak (of all CORES together).

use std::io::Read;
use std::process::ExitCode;

use taskbench::metg::{metg_of_points, parse_log, points, Baseline};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, default: f64| args.get(i).map_or(Ok(default), |s| s.parse::<f64>());
    let (Ok(cores), Ok(ngraphs), Ok(threshold), Ok(peak)) =
        (num(0, 1.0), num(1, 1.0), num(2, 0.5), num(3, 0.0))
    else {
        eprintln!("usage: metg CORES [NGRAPHS] [THRESHOLD] [PEAK_FLOPS] < logs");
        return ExitCode::FAILURE;
    };
    let mut text = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut text) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let runs = match parse_log(&text, ngraphs as usize, cores as i64) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let baseline = if peak > 0.0 {
        Baseline::PeakFlops(peak)
    } else {
        Baseline::BestObserved
    };
    let pts = match points(&runs, baseline) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "{:>10} {:>4} {:>13} {:>16} {:>13} {:>10}",
        "iterations", "reps", "elapsed_s", "time_per_task_us", "flop_per_s", "efficiency"
    );
    for p in &pts {
        println!(
            "{:>10} {:>4} {:>13.6e} {:>16.3} {:>13.6e} {:>10.4}",
            p.iterations,
            p.reps,
            p.elapsed_seconds,
            p.time_per_task_seconds * 1e6,
            p.flops_per_second,
            p.efficiency
        );
    }
    match metg_of_points(&pts, threshold) {
        Ok(m) => println!("METG({:.0}%) = {:.3} us", threshold * 100.0, m * 1e6),
        Err(e) => println!("METG: {e}"),
    }
    ExitCode::SUCCESS
}
