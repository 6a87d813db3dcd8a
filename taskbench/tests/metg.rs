//! METG on synthetic sweeps with known answers.

use taskbench::metg::{analyze, metg, parse_log, points, Baseline, MetgError, Run};

/// A sweep on `cores` cores of `tasks` tasks whose kernel takes
/// `iterations × 1 µs` and whose runtime adds `overhead` seconds per task
/// per core: elapsed = tasks / cores × (iterations µs + overhead).
fn sweep(overhead: f64, tasks: i64, cores: i64, iterations: &[i64]) -> Vec<Run> {
    iterations
        .iter()
        .map(|&it| Run {
            iterations: it,
            elapsed_seconds: tasks as f64 / cores as f64 * (it as f64 * 1e-6 + overhead),
            tasks,
            flops: tasks * (128 * it + 64),
            bytes: 0,
            cores,
        })
        .collect()
}

#[test]
fn known_metg_with_peak() {
    // Peak: 1 iteration per µs per core. Efficiency = it / (it + 10) with a
    // 10 µs overhead; 50% at it = 10, granularity 20 µs — a sweep point.
    let its = [1 << 12, 1 << 10, 256, 64, 16, 10, 4, 1];
    let runs = sweep(10e-6, 1000, 2, &its);
    let peak = 2.0 * (128.0 * 1e6); // FLOP/s of 2 cores, ignoring the +64
    let m = metg(&runs, Baseline::PeakFlops(peak), 0.5).unwrap();
    // Efficiency is (it + 0.5) / (it + 10): 52.5% at it = 10 (20 µs), 32.1%
    // at it = 4 (14 µs); the script interpolates between the two because
    // the next point is finer.
    let (x0, x1) = (4.5 / 14.0, 10.5 / 20.0);
    let want = 14e-6 + (0.5 - x0) * (20e-6 - 14e-6) / (x1 - x0);
    assert!((m - want).abs() < 1e-12, "{m} vs {want}");
    // Exactly at the threshold, no interpolation moves it.
    let at = metg(&runs, Baseline::PeakFlops(peak * 1.05), 0.5).unwrap();
    assert!((at - 20e-6).abs() < 1e-12, "{at}");
}

#[test]
fn interpolates_between_points() {
    // Points at it = 16 (eff 16/26) and 4 (eff 4/14): METG is interpolated
    // linearly in (efficiency, granularity) between (0.2857, 14 µs) and
    // (0.6154, 26 µs).
    let runs = sweep(10e-6, 1000, 2, &[1 << 12, 256, 16, 4]);
    let a = analyze(&runs, Baseline::LargestGrain, 0.5).unwrap();
    let p: Vec<_> = a
        .points
        .iter()
        .map(|p| (p.iterations, p.efficiency, p.time_per_task_seconds))
        .collect();
    assert_eq!(
        p.iter().map(|x| x.0).collect::<Vec<_>>(),
        vec![4096, 256, 16, 4]
    );
    let (e0, e16, e4) = (4096.0 / 4106.0, 16.0 / 26.0, 4.0 / 14.0);
    assert!((p[2].1 - e16 / e0).abs() < 1e-12);
    assert!((p[3].1 - e4 / e0).abs() < 1e-12);
    let (x0, x1, y0, y1) = (e4 / e0, e16 / e0, 14e-6, 26e-6);
    let want = y0 + (0.5 - x0) * (y1 - y0) / (x1 - x0);
    assert!(
        (a.metg_seconds - want).abs() < 1e-12,
        "{} vs {want}",
        a.metg_seconds
    );
    // Best observed FLOP/s: proportional to (128 it + 64) / (it + 10), best
    // at it = 4096; the +64 FLOPs weigh more at small grains.
    let f = |it: f64| (128.0 * it + 64.0) / (it + 10.0);
    let (x0, x1) = (f(4.0) / f(4096.0), f(16.0) / f(4096.0));
    let want_b = y0 + (0.5 - x0) * (y1 - y0) / (x1 - x0);
    let b = metg(&runs, Baseline::BestObserved, 0.5).unwrap();
    assert!((b - want_b).abs() < 1e-12, "{b} vs {want_b}");
}

#[test]
fn repetitions_are_averaged_and_unsorted_input_is_fine() {
    let mut runs = sweep(10e-6, 100, 1, &[64, 1024, 1, 16, 4]);
    let mut again = sweep(10e-6, 100, 1, &[1024, 64, 16, 4, 1]);
    for r in &mut again {
        r.elapsed_seconds *= 1.1;
    }
    for r in &mut runs {
        r.elapsed_seconds *= 0.9;
    }
    runs.extend(again);
    let pts = points(&runs, Baseline::LargestGrain).unwrap();
    assert_eq!(pts.len(), 5);
    assert!(pts.iter().all(|p| p.reps == 2));
    let exact = sweep(10e-6, 100, 1, &[1024]);
    assert!((pts[0].elapsed_seconds - exact[0].elapsed_seconds).abs() < 1e-15);
    assert!(metg(&runs, Baseline::LargestGrain, 0.5).is_ok());
}

#[test]
fn refuses_bad_sweeps() {
    let runs = sweep(10e-6, 1000, 2, &[4096, 1024]);
    assert_eq!(
        metg(&runs, Baseline::LargestGrain, 0.5),
        Err(MetgError::NoneBelowThreshold)
    );
    assert_eq!(
        metg(&[], Baseline::LargestGrain, 0.5),
        Err(MetgError::Empty)
    );
    let runs = sweep(10e-6, 1000, 2, &[16, 4]);
    assert_eq!(
        metg(&runs, Baseline::PeakFlops(1e12), 0.5),
        Err(MetgError::NoneAboveThreshold)
    );
    let runs = sweep(10e-6, 1000, 2, &[4096, 1]);
    assert!(matches!(
        metg(&runs, Baseline::PeakFlops(100e6), 0.5),
        Err(MetgError::SuspiciousEfficiency(_))
    ));
    let mut runs = sweep(10e-6, 1000, 2, &[4096, 1]);
    runs[1].tasks = 5;
    assert_eq!(
        metg(&runs, Baseline::LargestGrain, 0.5),
        Err(MetgError::TasksDiffer)
    );
    // The smallest-granularity point above 50% is the last one.
    let runs = sweep(10e-6, 1000, 2, &[4096, 1]);
    let mut pts = points(&runs, Baseline::LargestGrain).unwrap();
    pts.swap(0, 1);
    assert!(taskbench::metg::metg_of_points(&pts, 0.5).is_err());
}

#[test]
fn parses_reports() {
    let app = taskbench::App::parse(
        "-steps 10 -width 2 -type stencil_1d -kernel compute_bound -iter 100".split(' '),
    )
    .unwrap();
    let log = format!(
        "{}{}{}{}",
        app.display(),
        app.report_timing(0.5),
        app.display(),
        app.report_timing(0.25)
    );
    let runs = parse_log(&log, 1, 2).unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].iterations, 100);
    assert_eq!(runs[0].tasks, 20);
    assert_eq!(runs[0].flops, 20 * (128 * 100 + 64));
    assert_eq!(runs[1].elapsed_seconds, 0.25);
    assert!(parse_log(&log, 3, 2).is_err());
}
