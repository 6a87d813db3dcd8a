//! Efficiency and METG (minimum effective task granularity), computed as
//! Task Bench's `scripts/chart_metg.py` does.
//!
//! A sweep runs the same graph(s) with decreasing kernel iterations. For
//! each iteration count (repetitions are averaged):
//!
//! - task granularity = `elapsed × cores / tasks`, the wall time a core
//!   spends per task (the script reports it in milliseconds; this module
//!   keeps seconds);
//! - efficiency = achieved throughput ÷ a baseline ([`Baseline`]).
//!
//! METG(threshold) is the smallest granularity whose efficiency is at least
//! `threshold`; when the next smaller iteration count has a smaller
//! granularity (and, necessarily, an efficiency below the threshold), the
//! granularity is linearly interpolated between those two points at
//! efficiency = threshold.

use std::fmt;

/// One measured run (one line of a sweep).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Run {
    /// Kernel iterations per task (the grain being swept).
    pub iterations: i64,
    /// Elapsed seconds (the "Elapsed Time" line).
    pub elapsed_seconds: f64,
    /// Total tasks ("Total Tasks").
    pub tasks: i64,
    /// Total FLOPs ("Total FLOPs").
    pub flops: i64,
    /// Total kernel bytes ("Total Bytes").
    pub bytes: i64,
    /// Cores used in all (nodes × cores per node).
    pub cores: i64,
}

/// What efficiency is relative to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Baseline {
    /// The script's default without a peak: throughput relative to the run
    /// with the most iterations, `(iterations / elapsed) / (iterations₀ /
    /// elapsed₀)`.
    LargestGrain,
    /// FLOP/s relative to the highest FLOP/s observed in the sweep.
    BestObserved,
    /// FLOP/s relative to a peak FLOP/s of all the cores used (the paper's
    /// method, with the peak measured separately; the script takes a peak
    /// per node and divides the achieved FLOP/s by the node count, which is
    /// the same ratio).
    PeakFlops(f64),
    /// B/s relative to a peak memory bandwidth of all the nodes used (for
    /// memory-bound sweeps).
    PeakBytes(f64),
}

/// One iteration count of an analysed sweep.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    /// Kernel iterations per task.
    pub iterations: i64,
    /// Number of runs averaged.
    pub reps: usize,
    /// Mean elapsed seconds.
    pub elapsed_seconds: f64,
    /// Population standard deviation of the elapsed seconds.
    pub elapsed_std: f64,
    /// Total tasks.
    pub tasks: i64,
    /// Total FLOPs.
    pub flops: i64,
    /// Total bytes.
    pub bytes: i64,
    /// Cores used.
    pub cores: i64,
    /// `elapsed × cores / tasks`, seconds.
    pub time_per_task_seconds: f64,
    /// `flops / elapsed`.
    pub flops_per_second: f64,
    /// `bytes / elapsed`.
    pub bytes_per_second: f64,
    /// Relative to the [`Baseline`].
    pub efficiency: f64,
}

/// An analysed sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct Analysis {
    /// One point per iteration count, most iterations first.
    pub points: Vec<Point>,
    /// The efficiency threshold (0.5 for METG(50%)).
    pub threshold: f64,
    /// METG at the threshold, seconds per task per core.
    pub metg_seconds: f64,
}

/// Why a sweep gives no METG (the script's assertions).
#[derive(Clone, Debug, PartialEq)]
pub enum MetgError {
    /// No runs.
    Empty,
    /// A run with a non-positive elapsed time, task count or core count.
    InvalidRun(Run),
    /// Runs with different task counts (the sweep must vary only the grain).
    TasksDiffer,
    /// Runs of one iteration count with different FLOP or byte totals.
    TotalsDiffer {
        /// The iteration count.
        iterations: i64,
    },
    /// No point reaches the threshold ("was run properly configured?").
    NoneAboveThreshold,
    /// No point falls below the threshold ("maybe run was truncated?").
    NoneBelowThreshold,
    /// An efficiency of 1.5 or more ("was run timed correctly?").
    SuspiciousEfficiency(f64),
    /// The smallest granularity above the threshold is the last point.
    NoPointAfterThreshold,
    /// The point after the chosen one has fewer repetitions.
    TruncatedSweep,
}

impl fmt::Display for MetgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetgError::Empty => write!(f, "logs are empty"),
            MetgError::InvalidRun(r) => write!(f, "invalid run {r:?}"),
            MetgError::TasksDiffer => write!(f, "tasks are not identical"),
            MetgError::TotalsDiffer { iterations } => {
                write!(
                    f,
                    "flops or bytes are not identical across runs of {iterations} iterations"
                )
            }
            MetgError::NoneAboveThreshold => {
                write!(f, "no data above threshold, was run properly configured?")
            }
            MetgError::NoneBelowThreshold => {
                write!(f, "no data below threshold, maybe run was truncated?")
            }
            MetgError::SuspiciousEfficiency(e) => {
                write!(
                    f,
                    "suspiciously high efficiency {e} (>= 150%), was run timed correctly?"
                )
            }
            MetgError::NoPointAfterThreshold => {
                write!(f, "no data following the point above the threshold")
            }
            MetgError::TruncatedSweep => {
                write!(
                    f,
                    "final data point has fewer reps, maybe run was truncated?"
                )
            }
        }
    }
}

impl std::error::Error for MetgError {}

/// Group runs by iteration count (most iterations first), average them and
/// compute every column, without looking for the METG.
pub fn points(runs: &[Run], baseline: Baseline) -> Result<Vec<Point>, MetgError> {
    let first = runs.first().ok_or(MetgError::Empty)?;
    for r in runs {
        if r.elapsed_seconds.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
            || r.tasks <= 0
            || r.cores <= 0
            || r.iterations < 0
        {
            return Err(MetgError::InvalidRun(*r));
        }
        if r.tasks != first.tasks {
            return Err(MetgError::TasksDiffer);
        }
    }
    let mut sorted: Vec<Run> = runs.to_vec();
    sorted.sort_by_key(|r| std::cmp::Reverse(r.iterations));

    let mut out: Vec<Point> = Vec::new();
    for group in sorted.chunk_by(|a, b| a.iterations == b.iterations) {
        let g0 = group[0];
        if group
            .iter()
            .any(|r| r.flops != g0.flops || r.bytes != g0.bytes)
        {
            return Err(MetgError::TotalsDiffer {
                iterations: g0.iterations,
            });
        }
        let n = group.len() as f64;
        let mean = group.iter().map(|r| r.elapsed_seconds).sum::<f64>() / n;
        let var = group
            .iter()
            .map(|r| (r.elapsed_seconds - mean).powi(2))
            .sum::<f64>()
            / n;
        out.push(Point {
            iterations: g0.iterations,
            reps: group.len(),
            elapsed_seconds: mean,
            elapsed_std: var.sqrt(),
            tasks: g0.tasks,
            flops: g0.flops,
            bytes: g0.bytes,
            cores: g0.cores,
            time_per_task_seconds: mean * g0.cores as f64 / g0.tasks as f64,
            flops_per_second: g0.flops as f64 / mean,
            bytes_per_second: g0.bytes as f64 / mean,
            efficiency: 0.0,
        });
    }

    let best_flops = out.iter().map(|p| p.flops_per_second).fold(0.0, f64::max);
    let (it0, e0) = (out[0].iterations as f64, out[0].elapsed_seconds);
    for p in &mut out {
        p.efficiency = match baseline {
            Baseline::LargestGrain => {
                if p.iterations == 0 {
                    0.0
                } else {
                    e0 / (p.elapsed_seconds * (it0 / p.iterations as f64))
                }
            }
            Baseline::BestObserved => {
                if best_flops > 0.0 {
                    p.flops_per_second / best_flops
                } else {
                    0.0
                }
            }
            Baseline::PeakFlops(peak) => p.flops_per_second / peak,
            Baseline::PeakBytes(peak) => p.bytes_per_second / peak,
        };
    }
    Ok(out)
}

/// Analyse a sweep and find its METG at `threshold` (0.5 for METG(50%)).
pub fn analyze(runs: &[Run], baseline: Baseline, threshold: f64) -> Result<Analysis, MetgError> {
    let points = points(runs, baseline)?;
    let metg_seconds = metg_of_points(&points, threshold)?;
    Ok(Analysis {
        points,
        threshold,
        metg_seconds,
    })
}

/// METG at `threshold`, in seconds of core time per task.
pub fn metg(runs: &[Run], baseline: Baseline, threshold: f64) -> Result<f64, MetgError> {
    analyze(runs, baseline, threshold).map(|a| a.metg_seconds)
}

/// The METG step of [`analyze`] on points already computed (most
/// iterations first, as [`points`] returns them).
pub fn metg_of_points(points: &[Point], threshold: f64) -> Result<f64, MetgError> {
    if points.is_empty() {
        return Err(MetgError::Empty);
    }
    if !points.iter().any(|p| p.efficiency >= threshold) {
        return Err(MetgError::NoneAboveThreshold);
    }
    if !points.iter().any(|p| p.efficiency < threshold) {
        return Err(MetgError::NoneBelowThreshold);
    }
    if let Some(p) = points
        .iter()
        .find(|p| p.efficiency.is_nan() || p.efficiency >= 1.5)
    {
        return Err(MetgError::SuspiciousEfficiency(p.efficiency));
    }
    // The smallest granularity at or above the threshold (first on ties).
    let mut min_i = None::<usize>;
    for (i, p) in points.iter().enumerate() {
        if p.efficiency >= threshold
            && min_i.is_none_or(|m| p.time_per_task_seconds < points[m].time_per_task_seconds)
        {
            min_i = Some(i);
        }
    }
    let i = min_i.expect("some point is above the threshold");
    let Some(next) = points.get(i + 1) else {
        return Err(MetgError::NoPointAfterThreshold);
    };
    let cur = &points[i];
    if next.reps < cur.reps {
        return Err(MetgError::TruncatedSweep);
    }
    let mut min_time = cur.time_per_task_seconds;
    if next.time_per_task_seconds < min_time {
        // numpy.interp(threshold, [eff_next, eff_cur], [tpt_next, tpt_cur]).
        let (x0, x1) = (next.efficiency, cur.efficiency);
        let (y0, y1) = (next.time_per_task_seconds, cur.time_per_task_seconds);
        min_time = if threshold <= x0 {
            y0
        } else if threshold >= x1 {
            y1
        } else {
            y0 + (threshold - x0) * (y1 - y0) / (x1 - x0)
        };
    }
    Ok(min_time)
}

/// Read runs from Task Bench output (one or more runs concatenated, as the
/// script's logs are): the "Iterations:" line of each graph (`ngraphs` per
/// run; they must agree), "Total Tasks", "Total FLOPs", "Total Bytes" and
/// "Elapsed Time ... seconds". `cores` is the total core count of the runs.
pub fn parse_log(text: &str, ngraphs: usize, cores: i64) -> Result<Vec<Run>, String> {
    let mut iterations = Vec::new();
    let mut tasks = Vec::new();
    let mut flops = Vec::new();
    let mut bytes = Vec::new();
    let mut elapsed = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        let num = |rest: &str| rest.trim().to_string();
        if let Some(rest) = line.strip_prefix("Iterations: ") {
            iterations.push(
                num(rest)
                    .parse::<i64>()
                    .map_err(|e| format!("{line}: {e}"))?,
            );
        } else if let Some(rest) = line.strip_prefix("Total Tasks ") {
            tasks.push(
                num(rest)
                    .parse::<i64>()
                    .map_err(|e| format!("{line}: {e}"))?,
            );
        } else if let Some(rest) = line.strip_prefix("Total FLOPs ") {
            flops.push(
                num(rest)
                    .parse::<i64>()
                    .map_err(|e| format!("{line}: {e}"))?,
            );
        } else if let Some(rest) = line.strip_prefix("Total Bytes ") {
            bytes.push(
                num(rest)
                    .parse::<i64>()
                    .map_err(|e| format!("{line}: {e}"))?,
            );
        } else if let Some(rest) = line.strip_prefix("Elapsed Time ") {
            let v = rest.trim().strip_suffix("seconds").unwrap_or(rest).trim();
            elapsed.push(v.parse::<f64>().map_err(|e| format!("{line}: {e}"))?);
        }
    }
    if ngraphs == 0 || iterations.len() % ngraphs != 0 {
        return Err("number of graphs is not divisible by ngraphs".into());
    }
    let per_run: Vec<i64> = iterations
        .chunks(ngraphs)
        .map(|c| {
            if c.iter().all(|&x| x == c[0]) {
                Ok(c[0])
            } else {
                Err("graphs are not identical".to_string())
            }
        })
        .collect::<Result<_, _>>()?;
    let n = tasks.len();
    if [per_run.len(), flops.len(), bytes.len(), elapsed.len()]
        .iter()
        .any(|&l| l != n)
    {
        return Err("columns are uneven".into());
    }
    Ok((0..n)
        .map(|i| Run {
            iterations: per_run[i],
            elapsed_seconds: elapsed[i],
            tasks: tasks[i],
            flops: flops[i],
            bytes: bytes[i],
            cores,
        })
        .collect())
}
